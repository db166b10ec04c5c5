"""The student's per-sample loss, defined once for every path that needs one loss per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of each sample: ``[B]`` (nats, the dtype of ``logits``) for ``logits`` ``[B, C]``
    (floating point) and class ``labels`` ``[B]`` (int64, each in 0..C-1). Its values and its gradient are
    those of ``F.cross_entropy(logits, labels, reduction="none")`` bit for bit (a gradient entry that is 0 may
    differ in the sign of the zero). Raises what ``F.cross_entropy`` raises for mismatched shapes, and
    ``RuntimeError`` for a label outside 0..C-1.

    On the CPU it is ``-log_softmax(logits).gather(labels)``: ATen's ``nll_loss`` with ``reduction='none'``
    splits its loop over the samples between the intra-op threads whatever the batch size, in the forward and
    the backward pass, and right after the student's pass waking the second thread for 128 samples cost about
    30 µs each way in the ``mlp`` training loop on two cores (README, Speed); ``gather`` runs on the calling
    thread at that size. On other devices it is ``F.cross_entropy``, one kernel fewer."""
    if logits.is_cpu and logits.dim() == 2 and labels.dim() == 1:
        return torch.log_softmax(logits, 1).gather(1, labels.unsqueeze(1)).squeeze(1).neg()
    return F.cross_entropy(logits, labels, reduction="none")


__all__ = ["per_sample_cross_entropy"]
