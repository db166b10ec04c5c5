"""``MentorMix``: MentorNet-weighted mixup (Jiang, Huang, Liu, Yang, "Beyond Synthetic Noise: Deep
Learning on Controlled Noisy Labels", ICML 2020), usable from any PyTorch training loop.

It follows the per-batch algorithm of ``reference/mentormix-2020-spec.md`` §2 as the official code
(google-research ``mentormix/code``: ``cifar_train_mentormix.py`` and ``utils.py::mentor_mix_up``)
executes it. For the batch at global step t of T:

* S1 (the caller, inside :meth:`MentorMix.clean_pass`): a no-grad forward in train mode, so BN uses
  the batch statistics, and per-sample cross-entropy losses ℓ on the noisy labels;
* S2-S3: v = the first weighting, a :class:`MentorWeighter` on ℓ with its own moving average (progress
  epoch, "nearest" percentile, moving average from 0 with decay, 2018 burn-in floor, example dropout);
* S4: partners j_i drawn i.i.d. from softmax(v), with replacement, self-pairs allowed;
* S5: one λ_i ~ Beta(α, α) per example, folded to max(λ_i, 1 − λ_i) ∈ [0.5, 1]; the mixing
  coefficient is m_i = λ_i if v_i ≥ 0.5 (ties included) else 1 − λ_i, so a low-weight example is
  dominated by its partner;
* S6: x̃_i = m_i x_i + (1 − m_i) x_j, ỹ_i = m_i y_i + (1 − m_i) y_j from the one-hot noisy labels;
* S7 (the caller): the mixed forward; ℓ̃_i = −Σ_c ỹ_ic log softmax(logits̃_i)_c;
* S8a (``second_reweight=False``): L = (1/B) Σ ℓ̃_i; S8b (``True``): v2 = a second
  :class:`MentorWeighter` (same mentor, same config, its own moving average) on ℓ̃ and
  L = (1/B) Σ v2_i ℓ̃_i, normalised by B, never by Σ v2 (spec §5 item 10).

Choices where the official code is TF-specific or accidental (spec §5), all deliberate:

* **BN in the clean pass** (item 13): the official clean pass builds BN updates that never run. Here
  :func:`frozen_bn_statistics` saves every ``running_mean``, ``running_var`` and
  ``num_batches_tracked`` buffer before the pass and copies them back afterwards. Setting BN momentum
  to 0 was rejected: it still counts ``num_batches_tracked`` and does nothing for ``momentum=None``
  (cumulative averages). ``clean_pass_updates_bn=True`` instead lets both passes update the statistics,
  as naive ports (LJY-HY) do.
* **Randomness** is drawn on the CPU from one explicitly seeded ``torch.Generator`` (the official code is
  unseeded): per batch B Beta(α, α) draws, then B uniforms u_i. The partner is the inverse CDF of
  softmax(v) at u_i, computed on v's device; the draws go there from pinned memory without making the
  host wait (:func:`~student_training.accelerator.to_device`). The same seed gives the same numbers on
  the CPU and the same draws on any device (partners can differ between devices only where u_i lies
  within float32 rounding of a CDF step). A step neither reads a device value on the host nor branches
  on one; a weighter's moving average goes to the device at its first step (after construction or a
  load) as a fill from its host value, not a copy. Both weightings take the fast path of
  :class:`~student_training.weighting.MentorWeighter` (a MentorNet's fused forward) and run in fp32
  outside autocast, even when :meth:`MentorMix.mix` and :meth:`MentorMix.loss` are called inside a
  caller's autocast region.
  Beta draws use ``torch._sample_dirichlet``, the sampler behind ``torch.distributions.Beta``, because
  only it takes a generator.
* **α ≤ 0**: :func:`mentor_mix_up` returns the batch unmixed, as ``utils.mentor_mix_up`` does;
  :class:`MentorMix` refuses α ≤ 0, because MentorMix without mixing is not MentorMix.
* **Resume**: both moving averages and all generators are in :meth:`MentorMix.state_dict`. The official
  moving averages restart at 0 after a restore (spec §5 item 11); a resumed run here continues exactly.

Plain mixup is the same code path with every v = 1 (:meth:`MentorMix.plain_mixup`, the ``baseline``
curriculum): partners are uniform and the example always dominates, i.e. mixup with a per-example
λ folded to [0.5, 1] and partners drawn with replacement.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from curricula import get_curriculum

from .accelerator import fp32_region, to_device
from .weighting import MentorWeighter, WeighterConfig

__all__ = ["DEFAULT_MIXUP_ALPHA", "DEFAULT_SECOND_REWEIGHT", "MENTORMIX_WEIGHTING", "OFFICIAL_SETTINGS",
           "OFFICIAL_WEIGHT_DECAY", "MentorMix", "MixedBatch", "draw_mixup_noise", "frozen_bn_statistics",
           "mentor_mix_up", "soft_target_cross_entropy"]

RUNNING_STAT_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

# The weighting both MentorNet passes use in the official runs (spec §3.1, S3): burn-in 10 (with the 2018
# off-by-one), moving-average decay 0.5, no example dropout ("0.0, 100"), the epoch never fixed, and p =
# 0.7, the flag default (each official command sets its own p: OFFICIAL_SETTINGS). A 2018 checkpoint's
# ``student_defaults`` carry the 2018 dropout schedule instead, which the MentorMix runs did not use.
MENTORMIX_WEIGHTING = WeighterConfig(loss_p_percentile=0.7, loss_moving_average_decay=0.5, burn_in_epoch=10,
                                     fixed_epoch_after_burn_in=False, example_dropout_rates="0.0,100",
                                     burn_in_2018=True)
DEFAULT_MIXUP_ALPHA = 8.0  # the official --mixup_alpha default
DEFAULT_SECOND_REWEIGHT = True  # the official --second_reweight default (the README's own example keeps it)
# Spec §3.1 (training_mentormix_command.sh): (data set, noise) -> (alpha, p, second reweight). With second
# reweighting on, the official runs had no weight decay (spec §5 item 5); without it, 2e-4.
OFFICIAL_SETTINGS = {
    ("cifar10", 0.2): (2.0, 0.8, False), ("cifar10", 0.4): (8.0, 0.6, False),
    ("cifar10", 0.6): (8.0, 0.6, True), ("cifar10", 0.8): (4.0, 0.2, True),
    ("cifar100", 0.2): (2.0, 0.7, False), ("cifar100", 0.4): (8.0, 0.5, False),
    ("cifar100", 0.6): (4.0, 0.3, True), ("cifar100", 0.8): (8.0, 0.1, True),
}
OFFICIAL_WEIGHT_DECAY = 2e-4


@dataclass(frozen=True)
class MixedBatch:
    """One mixed batch (S4-S6). Every tensor is detached and lives on the inputs' device.

    ``inputs`` x̃ and ``targets`` ỹ ([B, C] float32, soft) are what the caller trains on;
    ``partners`` j ([B] int64), ``mixing`` m ([B] float32), the first weights ``weights`` v (after
    example dropout, what steered S4-S5) and ``mentor_weights`` (before example dropout, for detector
    statistics such as a clean/noisy AUC) are for logging. ``step`` is the global step it was mixed at.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    partners: torch.Tensor
    mixing: torch.Tensor
    weights: torch.Tensor
    mentor_weights: torch.Tensor
    step: int


def _running_stat_buffers(model: nn.Module) -> Iterator[torch.Tensor]:
    for module in model.modules():
        for name in RUNNING_STAT_BUFFERS:
            buffer = getattr(module, name, None)
            if isinstance(buffer, torch.Tensor) and not nn.parameter.is_lazy(buffer):
                yield buffer


@contextmanager
def frozen_bn_statistics(model: nn.Module):
    """Leave the BN running statistics of ``model`` as they were on entry (spec §5 item 13).

    Inside, BN layers behave as their mode says (train mode: batch statistics) and may update their
    buffers; on exit, even by an exception, every ``running_mean``, ``running_var`` and
    ``num_batches_tracked`` of every submodule (BatchNorm, SyncBatchNorm, InstanceNorm with running
    statistics) gets its saved value back. Saving and restoring are device copies of a few kilobytes,
    with no host synchronisation. Lazy modules must be materialised (one forward) beforehand.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    saved = [(buffer, buffer.clone()) for buffer in _running_stat_buffers(model)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"mixup alpha must be a number, got {alpha!r}")
    if not math.isfinite(alpha):
        raise ValueError(f"mixup alpha must be finite, got {alpha!r}")
    return float(alpha)


def draw_mixup_noise(batch_size: int, alpha: float, generator: torch.Generator,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The randomness of one batch, drawn on the CPU from ``generator`` in this order: B unfolded
    λ_i ~ Beta(α, α), then B uniforms u_i ~ U[0, 1). Returns both as float32 ``[B]`` tensors on ``device``.

    Beta(α, α) is the first coordinate of Dirichlet(α, α), the sampler behind ``torch.distributions.Beta``
    (which takes no generator).
    """
    alpha = _check_alpha(alpha)
    if alpha <= 0:
        raise ValueError(f"Beta(alpha, alpha) needs alpha > 0, got {alpha}")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError(f"generator must be a CPU torch.Generator, got {generator!r}")
    concentration = torch.full((batch_size, 2), alpha, dtype=torch.float64)
    lam = torch._sample_dirichlet(concentration, generator=generator)[:, 0]
    uniforms = torch.rand(batch_size, dtype=torch.float64, generator=generator)
    noise = to_device(torch.stack([lam, uniforms]).float(), device)  # pinned: the host does not wait for a GPU
    return noise[0], noise[1]


def _sample_partners(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """S4 by inversion: j_i = the first index whose cumulative softmax(v) exceeds u_i."""
    cdf = torch.softmax(weights.float(), dim=0).cumsum(dim=0)
    partners = torch.searchsorted(cdf, uniforms * cdf[-1:], right=True)
    return partners.clamp_(max=len(weights) - 1)  # guards u_i · total rounding up to total


def _mixing_coefficients(weights: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """S5: fold λ to [0.5, 1]; the example dominates where v ≥ 0.5, its partner elsewhere."""
    folded = torch.maximum(lam, 1.0 - lam)
    return torch.where(weights >= 0.5, folded, 1.0 - folded)


def _mix(values: torch.Tensor, partners: torch.Tensor, mixing: torch.Tensor) -> torch.Tensor:
    """S6: m_i · values_i + (1 − m_i) · values_{j_i}, with m broadcast over the trailing dimensions."""
    m = mixing.reshape(-1, *[1] * (values.dim() - 1)).to(values.dtype)
    return m * values + (1 - m) * values[partners]


def _check_floating(name: str, tensor, batch_size: int | None = None) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.dtype.is_floating_point:
        why = " (a student whose input cannot be mixed cannot use MentorMix)" if name == "inputs" else ""
        raise TypeError(f"{name} must be floating point, got {tensor.dtype}{why}")
    if tensor.dim() < 1 or tensor.shape[0] < 1:
        raise ValueError(f"{name} must hold a batch of at least one sample, got shape {tuple(tensor.shape)}")
    if batch_size is not None and tensor.shape[0] != batch_size:
        raise ValueError(f"{name} has {tensor.shape[0]} samples, the batch has {batch_size}")


def mentor_mix_up(inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, *, alpha: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """S4-S6 (``utils.mentor_mix_up``): returns ``(mixed_inputs, mixed_targets, partners, mixing)``.

    ``inputs`` is any float batch ``[B, ...]``, ``targets`` the soft or one-hot targets ``[B, C]``, and
    ``weights`` the first MentorNet weights v ``[B]``. The results are detached. As in the official code,
    ``alpha <= 0`` returns the batch unmixed (partners = self, m = 1) and draws nothing.
    """
    _check_floating("inputs", inputs)
    batch_size = inputs.shape[0]
    _check_floating("targets", targets, batch_size)
    _check_floating("weights", weights, batch_size)
    if targets.dim() != 2:
        raise ValueError(f"targets must be [B, C], got shape {tuple(targets.shape)}")
    if weights.dim() != 1:
        raise ValueError(f"weights must be [B], got shape {tuple(weights.shape)}")
    if _check_alpha(alpha) <= 0:
        partners = torch.arange(batch_size, device=inputs.device)
        return inputs.detach(), targets.detach(), partners, torch.ones(batch_size, device=inputs.device)
    with torch.no_grad():
        lam, uniforms = draw_mixup_noise(batch_size, alpha, generator, weights.device)
        partners = _sample_partners(weights, uniforms)
        mixing = _mixing_coefficients(weights, lam)
        return _mix(inputs, partners, mixing), _mix(targets, partners, mixing), partners, mixing


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """S7: per-sample ℓ̃_i = −Σ_c targets_ic · log softmax(logits_i)_c, in float32 (``[B]``)."""
    return -(targets * torch.log_softmax(logits.float(), dim=1)).sum(dim=1)


class MentorMix:
    """MentorMix's per-batch procedure (spec §2, S1-S8) around a caller's own forward passes.

    ``mentor`` is a MentorNet or any object with a ``weight(features)`` method (a curriculum), and
    ``config`` the :class:`WeighterConfig` of both weightings (MentorMix's code: p from the command,
    decay 0.5, ``burn_in_epoch`` 10, no example dropout). ``WeighterConfig()`` has the 2018 defaults and a
    2018 checkpoint's ``student_defaults`` carry the 2018 dropout schedule, so pass the MentorMix values
    explicitly (:data:`MENTORMIX_WEIGHTING`, with your p). The first weighting, the optional second one and the mixing randomness each get a seed
    derived from ``seed`` (``numpy.random.SeedSequence``). Everything works on the batch it is given:
    the percentiles and the partners come from that batch (on one device, the official setting).

    Example, in any loop::

        mix = MentorMix(load_mentornet("mentornet_pd"), WeighterConfig(loss_p_percentile=0.6, burn_in_epoch=10),
                        num_classes=10, alpha=8.0, second_reweight=False, total_steps=T, seed=0)
        for step, (x, y) in enumerate(batches):
            with mix.clean_pass(model):               # no grad, batch-statistics BN, BN buffers kept
                losses = F.cross_entropy(model(x), y, reduction="none")
            batch = mix.mix(x, y, losses, step)       # S2-S6
            loss = mix.loss(model(batch.inputs), batch)   # S7-S8; BN statistics update here
            loss.backward(); optimizer.step(); optimizer.zero_grad()

    Call :meth:`loss` once per :meth:`mix` (the second weighting advances its moving average). After
    each batch, :attr:`metrics` holds 0-d device tensors (read them when logging, not every step):
    ``mixing_mean`` (mean m), ``partner_high_weight_share`` (share of partners with v_j ≥ 0.5) and
    ``second_weight_mean`` (mean v2; NaN when ``second_reweight`` is off).
    """

    def __init__(self, mentor, config: WeighterConfig | None = None, *, num_classes: int, alpha: float,
                 second_reweight: bool, total_steps: int, seed: int = 0, clean_pass_updates_bn: bool = False):
        if _check_alpha(alpha) <= 0:
            raise ValueError(f"MentorMix needs mixup alpha > 0, got {alpha} (alpha <= 0 would not mix at all)")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        for name, flag in (("second_reweight", second_reweight), ("clean_pass_updates_bn", clean_pass_updates_bn)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        mixing_seed, first_seed, second_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
        self.alpha = float(alpha)
        self.num_classes = num_classes
        self.second_reweight = second_reweight
        self.clean_pass_updates_bn = clean_pass_updates_bn
        self.first_weighter = MentorWeighter(mentor, config, total_steps=total_steps, seed=first_seed)
        self.second_weighter = (MentorWeighter(mentor, config, total_steps=total_steps, seed=second_seed)
                                if second_reweight else None)
        self.generator = torch.Generator().manual_seed(mixing_seed)
        self.metrics: dict[str, torch.Tensor] = {}

    @classmethod
    def plain_mixup(cls, *, num_classes: int, alpha: float, total_steps: int, seed: int = 0) -> "MentorMix":
        """Mixup on the same code path: the ``baseline`` curriculum gives every v = 1, so partners are
        uniform and every example dominates its mix (m = max(λ, 1 − λ))."""
        return cls(get_curriculum("baseline"), num_classes=num_classes, alpha=alpha, second_reweight=False,
                   total_steps=total_steps, seed=seed)

    @contextmanager
    def clean_pass(self, model: nn.Module):
        """Context for S1: no gradient, and the BN running statistics unchanged on exit (unless
        ``clean_pass_updates_bn``). ``model`` must be in train mode: the pass uses batch statistics."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not model.training:
            raise ValueError("the clean pass runs the model in train mode (BN batch statistics, spec S1); "
                             "got a model in eval mode")
        batch_norm = nullcontext() if self.clean_pass_updates_bn else frozen_bn_statistics(model)
        with torch.no_grad(), batch_norm:
            yield

    def mix(self, inputs: torch.Tensor, labels: torch.Tensor, losses: torch.Tensor, step: int) -> MixedBatch:
        """S2-S6 for the batch ``inputs`` ``[B, ...]`` with noisy integer ``labels`` ``[B]`` and their
        clean-pass losses ``[B]``, at global ``step``."""
        _check_floating("inputs", inputs)
        batch_size = inputs.shape[0]
        self._check_labels(labels, batch_size, inputs.device)
        _check_floating("losses", losses, batch_size)
        if losses.numel() != batch_size:
            raise ValueError(f"losses must be [B] (one per sample), got shape {tuple(losses.shape)}")
        if losses.device != inputs.device:
            raise ValueError(f"losses are on {losses.device}, inputs on {inputs.device}")
        with fp32_region(losses.device):  # the weighting stays fp32 inside a caller's autocast region
            mentor_weights = self.first_weighter.mentor_weights(losses, step)
            weights = self.first_weighter.example_dropout(mentor_weights, self.first_weighter.last["epoch"])
        targets = torch.zeros(batch_size, self.num_classes, device=inputs.device)
        targets.scatter_(1, labels.reshape(-1, 1).long(), 1.0)
        mixed_inputs, mixed_targets, partners, mixing = mentor_mix_up(
            inputs, targets, weights, alpha=self.alpha, generator=self.generator)
        self.metrics = {"mixing_mean": mixing.mean(),
                        "partner_high_weight_share": (weights[partners] >= 0.5).float().mean(),
                        "second_weight_mean": torch.full((), math.nan, device=inputs.device)}
        return MixedBatch(mixed_inputs, mixed_targets, partners, mixing, weights, mentor_weights, step)

    def loss(self, logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
        """S7-S8: the scalar loss of the mixed forward's ``logits`` ``[B, C]`` (mean over B)."""
        if not isinstance(batch, MixedBatch):
            raise TypeError(f"batch must be the MixedBatch that mix() returned, got {type(batch).__name__}")
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != tuple(batch.targets.shape):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"logits must be [B, C] = {tuple(batch.targets.shape)}, got {shape}")
        with fp32_region(logits.device):
            mixed_losses = soft_target_cross_entropy(logits, batch.targets)
            if self.second_weighter is None:
                return mixed_losses.mean()
            second_weights = self.second_weighter(mixed_losses, batch.step)  # detached
        self.metrics["second_weight_mean"] = second_weights.mean()
        return (second_weights * mixed_losses).mean()  # over B, not over Σ v2 (spec §5 item 10)

    def _check_labels(self, labels, batch_size: int, device: torch.device) -> None:
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"labels must be integer class indices, got {labels.dtype}")
        if tuple(labels.shape) != (batch_size,):
            raise ValueError(f"labels must be [B] = ({batch_size},), got shape {tuple(labels.shape)}")
        if labels.device != device:
            raise ValueError(f"labels are on {labels.device}, inputs on {device}")
        if labels.device.type == "cpu":  # on a GPU, reading values would stall it; scatter asserts there
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_classes:
                bad = low if low < 0 else high
                raise ValueError(f"label {bad} is outside 0..{self.num_classes - 1} (num_classes={self.num_classes})")

    def state_dict(self) -> dict:
        """Both weighters (moving averages, dropout generators) and the mixing generator."""
        return {"alpha": self.alpha, "num_classes": self.num_classes, "second_reweight": self.second_reweight,
                "first_weighter": self.first_weighter.state_dict(),
                "second_weighter": None if self.second_weighter is None else self.second_weighter.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        for key in ("alpha", "num_classes", "second_reweight"):
            if state[key] != getattr(self, key):
                raise ValueError(f"MentorMix state has {key}={state[key]!r}, this object has {getattr(self, key)!r}")
        self.first_weighter.load_state_dict(state["first_weighter"])
        if self.second_weighter is not None:
            self.second_weighter.load_state_dict(state["second_weighter"])
        self.generator.set_state(state["generator"])
