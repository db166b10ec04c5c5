"""The per-epoch sums and per-sample records of StudentNet training, kept on the device.

:class:`EpochStats` replaces the trainer's ``_EpochStats`` with the same attributes (``loss``,
``weighted_loss``, ``weight``, ``utilized``, ``count``, ``sample_weight``, ``sample_prediction``), so
``epoch_row`` reads it unchanged; :class:`MentorMixStats` replaces ``_MentorMixStats`` (``mixed_loss``,
``mixing``, ``partner_share``, ``second_weight``) the same way. :meth:`EpochStats.add` runs no tensor
operation at all: it keeps the batch's tensors, and the first read of a sum or record folds every batch
kept so far in, with a dozen operations for the whole epoch instead of eleven per step (four reductions,
four additions, a product, a comparison and two indexed assignments); it also takes the logits in place of the
predicted classes, and takes their argmax there. Nothing reads a value back to the
host, so on a GPU neither the step nor the fold waits; the values are read once per epoch, when the
metrics row is written.
"""

from __future__ import annotations

import torch

UTILIZED_WEIGHT = 1e-3  # a sample counts as used when its weight exceeds this (data utilisation)
LOGITS_KEPT_BYTES = 64 * 2**20  # logits kept beyond this are folded in at once (a data set with many classes)


class EpochStats:
    """Per-epoch sums and per-sample records, on the device, folded in when they are read.

    ``sums`` holds, in this order, the sums over the epoch's samples of the loss, the weighted loss
    ``v·loss``, the weight ``v`` and the count of samples with ``v > 1e-3``; ``loss``, ``weighted_loss``,
    ``weight`` and ``utilized`` are 0-d views of it (float32, summed in float64). ``sample_weight[i]`` is
    the MentorNet weight (before example dropout) of sample ``i`` at its last visit this epoch (NaN if not
    visited), and ``sample_prediction[i]`` its predicted class (-1 if not visited).

    :meth:`add` keeps references to the tensors it is given until the next read: they must not be
    changed in place meanwhile (the training loop makes fresh ones every step).
    """

    def __init__(self, num_samples: int, device: torch.device | str):
        self._sums = torch.zeros(4, device=device)
        self.count = 0
        self._sample_weight = torch.full((num_samples,), float("nan"), device=device)
        self._sample_prediction = torch.full((num_samples,), -1, dtype=torch.long, device=device)
        self._pending: list[tuple[torch.Tensor, ...]] = []  # batches added since the last fold
        self._logits_bytes = 0  # the size of the logits among them

    def add(self, losses: torch.Tensor, weights: torch.Tensor, mentor_weights: torch.Tensor,
            predictions: torch.Tensor, indices: torch.Tensor) -> None:
        """Record one (global) batch: per-sample ``losses``, final ``weights`` (after example dropout),
        ``mentor_weights`` (before it), ``predictions`` and the samples' dataset ``indices`` (on the device).

        ``predictions`` are the predicted classes ``[B]`` or the student's logits ``[B, C]``, whose argmax over
        the classes is then taken when the records are read, once for every batch kept (in the training loop
        an argmax a step cost 30-40 µs on the CPU, right after the student's pass). Once the logits kept exceed
        :data:`LOGITS_KEPT_BYTES` (64 MiB: CIFAR-100's 50,000 x 100 float32 logits are 20 MB), the batches kept
        are folded in at once, so that a data set with many classes keeps no more than that."""
        if predictions.requires_grad:
            predictions = predictions.detach()
        if losses.requires_grad:
            losses = losses.detach()
        if weights.requires_grad:
            weights = weights.detach()
        if mentor_weights.requires_grad:
            mentor_weights = mentor_weights.detach()
        self._pending.append((losses, weights, mentor_weights, predictions, indices))
        self.count += losses.shape[0]
        if predictions.dim() == 2:
            self._logits_bytes += predictions.numel() * predictions.element_size()
            if self._logits_bytes > LOGITS_KEPT_BYTES:
                self._fold()

    def _fold(self) -> None:
        """Fold the batches added since the last read into the sums and the per-sample records."""
        pending, self._pending, self._logits_bytes = self._pending, [], 0
        if not pending:
            return
        columns = list(zip(*pending))
        if len({p.dim() for p in columns[3]}) > 1:  # classes and logits mixed: each batch's logits to classes
            columns[3] = [p.argmax(dim=1) if p.dim() == 2 else p for p in columns[3]]
        losses, weights, mentor_weights, predictions, indices = (
            column[0] if len(column) == 1 else torch.cat(column) for column in columns)
        if predictions.dim() == 2:  # logits: the predicted classes
            predictions = predictions.argmax(dim=1)
        used = weights > torch.full((), UTILIZED_WEIGHT, dtype=weights.dtype, device=weights.device)
        sums = torch.stack([losses, weights * losses, weights, used.to(weights.dtype)]).sum(1, dtype=torch.float64)
        self._sums += sums
        sample_weight, sample_prediction = self._sample_weight, self._sample_prediction
        if len(pending) > 1:
            # A sample may have been visited twice: every entry takes the values of its sample's last visit,
            # so that the scatter below is the same whatever order it writes in.
            position = torch.arange(len(indices), device=indices.device)
            last = torch.full(sample_weight.shape, -1, dtype=torch.long, device=indices.device)
            last = last.scatter_reduce_(0, indices, position, reduce="amax")[indices]
            mentor_weights, predictions = mentor_weights[last], predictions[last]
        sample_weight.index_copy_(0, indices, mentor_weights.to(sample_weight.dtype))
        sample_prediction.index_copy_(0, indices, predictions.to(sample_prediction.dtype))

    @property
    def sums(self) -> torch.Tensor:
        self._fold()
        return self._sums

    @property
    def loss(self) -> torch.Tensor:
        return self.sums[0]

    @property
    def weighted_loss(self) -> torch.Tensor:
        return self.sums[1]

    @property
    def weight(self) -> torch.Tensor:
        return self.sums[2]

    @property
    def utilized(self) -> torch.Tensor:
        return self.sums[3]

    @property
    def sample_weight(self) -> torch.Tensor:
        self._fold()
        return self._sample_weight

    @property
    def sample_prediction(self) -> torch.Tensor:
        self._fold()
        return self._sample_prediction


class MentorMixStats(EpochStats):
    """:class:`EpochStats` plus the epoch's sums of what MentorMix did, each weighted by the batch size:
    ``mixed_loss`` (the mixed pass's loss), ``mixing`` (mean mixing coefficient m), ``partner_share`` (share
    of partners with v >= 0.5) and ``second_weight`` (mean second weight; NaN without second reweighting).
    :meth:`add_mix` keeps the step's 0-d tensors, and the first read folds them in, as :meth:`EpochStats.add`.
    """

    MIX_METRICS = ("mixing_mean", "partner_high_weight_share", "second_weight_mean")

    def __init__(self, num_samples: int, device: torch.device | str):
        super().__init__(num_samples, device)
        self._mix_sums = torch.zeros(4, device=device)
        self._pending_mix: list[tuple[tuple[torch.Tensor, ...], int]] = []

    def add_mix(self, mixed_loss: torch.Tensor, metrics: dict, batch_size: int) -> None:
        """Record one step: its mixed loss and :attr:`MentorMix.metrics` (0-d device tensors), for
        ``batch_size`` samples."""
        values = (mixed_loss.detach(), *(metrics[name] for name in self.MIX_METRICS))
        self._pending_mix.append((values, batch_size))

    def _fold_mix(self) -> None:
        pending, self._pending_mix = self._pending_mix, []
        if not pending:
            return
        rows = [torch.stack(values).to(self._mix_sums.dtype) * batch_size for values, batch_size in pending]
        self._mix_sums += torch.stack(rows).sum(0, dtype=torch.float64)

    @property
    def mix_sums(self) -> torch.Tensor:
        self._fold_mix()
        return self._mix_sums

    @property
    def mixed_loss(self) -> torch.Tensor:
        return self.mix_sums[0]

    @property
    def mixing(self) -> torch.Tensor:
        return self.mix_sums[1]

    @property
    def partner_share(self) -> torch.Tensor:
        return self.mix_sums[2]

    @property
    def second_weight(self) -> torch.Tensor:
        return self.mix_sums[3]


__all__ = ["EpochStats", "LOGITS_KEPT_BYTES", "MentorMixStats", "UTILIZED_WEIGHT"]
