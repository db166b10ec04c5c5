"""The per-epoch sums and per-sample records of StudentNet training, kept on the device.

:class:`EpochStats` replaces the trainer's ``_EpochStats`` with the same attributes (``loss``,
``weighted_loss``, ``weight``, ``utilized``, ``count``, ``sample_weight``, ``sample_prediction``), so
``epoch_row`` reads it unchanged, but :meth:`EpochStats.add` is five tensor operations and two
``index_copy_`` instead of ten small reductions and additions and two indexed assignments. Nothing in
``add`` reads a value back to the host, so on a GPU the training step never waits for it; the sums are
read once per epoch, when the metrics row is written.
"""

from __future__ import annotations

import torch

UTILIZED_WEIGHT = 1e-3  # a sample counts as used when its weight exceeds this (data utilisation)


class EpochStats:
    """Per-epoch sums kept on the device, so the inner loop never waits for the host.

    ``sums`` holds, in this order, the sums over the epoch's samples of the loss, the weighted loss
    ``v·loss``, the weight ``v`` and the count of samples with ``v > 1e-3``; ``loss``, ``weighted_loss``,
    ``weight`` and ``utilized`` are 0-d views of it. ``sample_weight[i]`` is the MentorNet weight
    (before example dropout) of sample ``i`` at its last visit this epoch (NaN if not visited), and
    ``sample_prediction[i]`` its predicted class (-1 if not visited).
    """

    def __init__(self, num_samples: int, device: torch.device | str):
        self.sums = torch.zeros(4, device=device)
        self.count = 0
        self.sample_weight = torch.full((num_samples,), float("nan"), device=device)
        self.sample_prediction = torch.full((num_samples,), -1, dtype=torch.long, device=device)
        # The threshold as a 0-d float32 tensor (compared in float32, like the Python float it stands for).
        self._threshold = torch.full((), UTILIZED_WEIGHT, device=device)
        self._used = {}  # batch size -> a reused [B] float buffer for the 0/1 "weight > threshold"

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

    def add(self, losses: torch.Tensor, weights: torch.Tensor, mentor_weights: torch.Tensor,
            predictions: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one (global) batch: per-sample ``losses``, final ``weights`` (after example dropout),
        ``mentor_weights`` (before it), ``predictions`` and the samples' dataset ``indices`` (on the device)."""
        if losses.requires_grad:
            losses = losses.detach()
        if weights.requires_grad:
            weights = weights.detach()
        batch = weights.shape[0]
        used = self._used.get(batch)
        if used is None:
            used = self._used[batch] = self.sums.new_empty(batch)
        torch.gt(weights, self._threshold, out=used)  # written before the stack below reads it
        # One [4, B] stack and one row sum for the four sums (float32, the values of four separate sums).
        self.sums += torch.stack([losses, weights * losses, weights, used]).sum(1)
        self.count += batch
        sample_weight, sample_prediction = self.sample_weight, self.sample_prediction
        if mentor_weights.requires_grad:
            mentor_weights = mentor_weights.detach()
        if mentor_weights.dtype != sample_weight.dtype:
            mentor_weights = mentor_weights.to(sample_weight.dtype)
        if predictions.dtype != sample_prediction.dtype:
            predictions = predictions.to(sample_prediction.dtype)
        sample_weight.index_copy_(0, indices, mentor_weights)
        sample_prediction.index_copy_(0, indices, predictions)


__all__ = ["EpochStats", "UTILIZED_WEIGHT"]
