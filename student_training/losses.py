"""The student's per-sample loss, defined once for every path that needs one loss per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of each sample: ``[B]`` (nats, the dtype of ``logits``) for ``logits`` ``[B, C]``
    (floating point) and class ``labels`` ``[B]`` (int64, each in 0..C-1; there is no ``ignore_index``). Its
    values and its gradient are those of ``F.cross_entropy(logits, labels, reduction="none")`` bit for bit (a
    gradient entry that is 0 may differ in the sign of the zero), outside autocast, where every caller here
    computes it (from ``logits.float()``): inside CPU autocast ``F.cross_entropy`` computes in fp32 and this
    path in the logits' dtype. Labels of another shape or dtype go to ``F.cross_entropy`` and get its errors;
    a label outside 0..C-1 raises ``RuntimeError`` on the CPU (on a GPU, ``F.cross_entropy``'s device-side
    assertion).

    On the CPU it is ``-log_softmax(logits).gather(labels)``: ATen's ``nll_loss`` with ``reduction='none'``
    splits its loop over the samples between the intra-op threads whatever the batch size, in the forward and
    the backward pass, and each split first wakes a sleeping thread (in the ``mlp`` training loop on two cores
    this path saved about 30 µs each way, and the loop as a whole more: README, Speed); ``gather`` over a
    batch of this size runs on the calling thread. On other devices it is ``F.cross_entropy``, one kernel
    fewer."""
    if logits.is_cpu and logits.dim() == 2 and labels.dtype == torch.int64 and labels.shape == logits.shape[:1]:
        return torch.log_softmax(logits, 1).gather(1, labels.unsqueeze(1)).squeeze(1).neg()
    return F.cross_entropy(logits, labels, reduction="none")


__all__ = ["per_sample_cross_entropy"]
