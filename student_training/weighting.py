"""``MentorWeighter``: the per-batch weighting of spec §4.1 (``code/utils.py::mentornet``), usable from
any PyTorch training loop.

For the batch at global step t of T:

1. progress epoch ``e_t = floor(100 t / T)`` (clipped at 99); with ``fixed_epoch_after_burn_in`` the
   epoch used everywhere below is ``ê = min(e_t, burn_in_epoch)``, else ``ê = e_t``;
2. burn-in: every weight is at least ``u = 1`` while ``ê < burn_in_epoch − 1`` (the 2018 off-by-one,
   the default) or ``ê < burn_in_epoch`` (``burn_in_2018=False``), else ``u = 0``;
3. the batch p-percentile of the losses ("nearest", TF rounding) updates the moving average
   ``M_t = decay · M_{t−1} + (1 − decay) · P_t``, which starts at 0; ``loss_diff = loss − M_t``;
4. ``v = max(mentor(loss, loss_diff, label=0, ê), u)``, computed without gradient by a frozen mentor;
5. example dropout: ``K = int(B · (1 − r_ê))`` samples drawn uniformly without replacement keep their
   weight, the others get 0 (independent of v).

Example, in any loop::

    mentor = MentorWeighter(load_mentornet("mentornet_pd"), total_steps=epochs * len(loader))
    for step, (x, y) in enumerate(batches):
        losses = F.cross_entropy(model(x), y, reduction="none")
        weights = mentor(losses, step)                 # detached, shape [B]
        loss = (weights * losses).mean()               # the mean over B, as in 2018
        loss.backward(); optimizer.step(); optimizer.zero_grad()
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from curricula.features import (LossMovingAverage, MentorFeatures, WeighterConfig, parse_dropout_schedule,
                                progress_percent)

class MentorWeighter:
    """Turns per-sample losses into MentorNet weights, step by step (spec §4.1)."""

    def __init__(self, mentor, config: WeighterConfig | None = None, *, total_steps: int, seed: int = 0):
        if not callable(getattr(mentor, "weight", None)):
            raise TypeError("mentor must have a weight(features) method (a MentorNet or a curriculum)")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.mentor = mentor
        self.config = config or WeighterConfig()
        self.total_steps = int(total_steps)
        self.dropout_rates = parse_dropout_schedule(self.config.example_dropout_rates)
        self.moving_average = LossMovingAverage(self.config.loss_p_percentile,
                                                self.config.loss_moving_average_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.last = {}  # what the last call used: epoch, dropout rate, percentile average, burn-in

    def epoch_at(self, step: int) -> int:
        """ê: the progress epoch the MentorNet sees at ``step``."""
        epoch = progress_percent(step, self.total_steps)
        if self.config.fixed_epoch_after_burn_in:
            epoch = min(epoch, self.config.burn_in_epoch)
        return epoch

    def burn_in_floor(self, epoch: int) -> float:
        burn_in = self.config.burn_in_epoch
        return 1.0 if epoch < (burn_in - 1 if self.config.burn_in_2018 else burn_in) else 0.0

    @torch.no_grad()
    def mentor_weights(self, loss: torch.Tensor, step: int, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Steps 1-4: the MentorNet weight with the burn-in floor, before example dropout. ``indices`` (the batch's
        sample indices) are not needed here; a weighter that learns from samples by index takes them."""
        loss = loss.detach().reshape(-1).float()
        epoch = self.epoch_at(step)
        loss_diff = self.moving_average.loss_diff(loss)
        weights = self._weight(loss, loss_diff, epoch)
        floor = self.burn_in_floor(epoch)
        if floor:
            weights = weights.clamp(min=floor)
        self.last = {"epoch": epoch, "dropout_rate": self.dropout_rates[epoch], "burn_in": bool(floor),
                     "loss_moving_average": self.moving_average.value}
        return weights

    def _weight(self, loss: torch.Tensor, loss_diff: torch.Tensor, epoch: int) -> torch.Tensor:
        """The mentor's weights for this batch (no host synchronisation on a GPU)."""
        features = MentorFeatures.build(loss, loss_diff, epoch=epoch)
        return self.mentor.weight(features).to(loss.device, torch.float32)

    def example_dropout(self, weights: torch.Tensor, epoch: int) -> torch.Tensor:
        """Step 5: keep ``int(B (1 − r))`` uniformly drawn samples, zero the rest."""
        rate = self.dropout_rates[epoch]
        if rate == 0.0:
            return weights
        batch = weights.numel()
        keep = int(batch * (1.0 - rate))
        mask = torch.zeros(batch, dtype=weights.dtype, pin_memory=weights.is_cuda)
        mask[torch.randperm(batch, generator=self.generator)[:keep]] = 1.0
        return weights * mask.to(weights.device, non_blocking=True)  # pinned: no wait for the GPU

    def __call__(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """Detached per-sample weights in [0, 1] for the losses of the batch at global ``step``."""
        weights = self.mentor_weights(loss, step)
        return self.example_dropout(weights, self.last["epoch"])

    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "total_steps": self.total_steps,
                "moving_average": self.moving_average.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"weighter state is for {state['total_steps']} steps, this run has {self.total_steps}")
        self.moving_average.load_state_dict(state["moving_average"])
        self.generator.set_state(state["generator"])
