"""The curriculum zoo: curricula that the 2018 README said MentorNet could learn but did not ship.

Every formula is written with MentorNet's features (``features.py``): the loss ℓ, ``loss_diff``
Δ = ℓ − M where M is the moving-average p-percentile of the batch losses (p = 0.7), and the training
progress e in 0..99. Papers state their rules in terms of an "age" threshold λ on the loss; here that
threshold is the running percentile, λ = age · M with M = ℓ − Δ, which is what a MentorNet can see.

* Soft self-paced regularisers (Jiang et al., ACM MM 2014; Jiang et al., AAAI 2015): ``spl_linear``,
  ``spl_logarithmic``, ``spl_mixture``. Their weights depend on ℓ/λ.
* Implicit self-paced regularisers from robust losses (Fan et al., AAAI 2017): ``implicit_huber``,
  ``implicit_cauchy``, ``implicit_l1_l2``, ``implicit_welsch``. Their argument is the excess loss
  x = max(Δ, 0), so samples below the running percentile keep weight 1.
* Small-loss selection with a forget-rate schedule (Han et al., NeurIPS 2018): ``small_loss``.

Where λ ≤ 0 (possible on the 2018 grid, where Δ may exceed ℓ) no loss lies below the threshold, and
the soft self-paced curricula give weight 0; they never divide by zero and never return NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .features import DEFAULT_LOSS_P_PERCENTILE, MentorFeatures
from .registry import register_curriculum

ZOO = ("spl_linear", "spl_logarithmic", "spl_mixture", "implicit_huber", "implicit_cauchy", "implicit_l1_l2",
       "implicit_welsch", "small_loss")


def _check_positive(curriculum: str, key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{curriculum} {key} must be a finite number > 0, got {value!r}")


def _check_open_unit(curriculum: str, key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{curriculum} {key} must lie strictly between 0 and 1, got {value!r}")


def age_threshold(features: MentorFeatures, age: float) -> torch.Tensor:
    """λ = age · M, where M = ℓ − Δ is the moving-average loss percentile the sample was compared with."""
    return age * (features.loss - features.loss_diff)


def normalized_loss(features: MentorFeatures, age: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, valid): u = ℓ/λ where λ > 0; ``valid`` is False where λ ≤ 0 (u is then set to 1)."""
    threshold = age_threshold(features, age)
    valid = threshold > 0
    ratio = features.loss / torch.where(valid, threshold, torch.ones_like(threshold))
    return torch.where(valid, ratio, torch.ones_like(ratio)), valid


def excess_loss(features: MentorFeatures) -> torch.Tensor:
    """x = max(Δ, 0): how far the loss lies above the running percentile."""
    return features.loss_diff.clamp(min=0.0)


@register_curriculum("spl_linear")
@dataclass(frozen=True)
class SplLinear:
    """Linear soft self-paced weighting (Jiang, Meng, Mitamura, Hauptmann, "Easy samples first: self-paced
    reranking for zero-example multimedia search", ACM MM 2014; Jiang et al., SPCL, AAAI 2015).

    Regulariser f(v; λ) = λ(v²/2 − v), whose minimiser is v* = max(0, 1 − ℓ/λ), with λ = age · (ℓ − Δ).
    v* = 0 where λ ≤ 0. (The 2018 ``spcl_linear`` is a different rule, clip(1 − Δ/γ, 0, 1).)
    """

    age: float = 1.0

    def __post_init__(self):
        _check_positive("spl_linear", "age", self.age)

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        ratio, valid = normalized_loss(features, self.age)
        return torch.where(valid, (1.0 - ratio).clamp(0.0, 1.0), torch.zeros_like(ratio))


@register_curriculum("spl_logarithmic")
@dataclass(frozen=True)
class SplLogarithmic:
    """Logarithmic soft self-paced weighting (Jiang et al., ACM MM 2014).

    The paper's rule, for an age 0 < λ₀ < 1 and ζ = 1 − λ₀: v* = log(ℓ + ζ)/log ζ if ℓ < λ₀, else 0.
    MentorNet's threshold λ = age · (ℓ − Δ) is not confined to (0, 1), so the loss is measured in units
    of the threshold first, ℓ' = λ₀ · ℓ/λ, which maps λ onto λ₀:
    v* = log(λ₀ ℓ/λ + 1 − λ₀)/log(1 − λ₀) if ℓ < λ, else 0 (and 0 where λ ≤ 0).
    ``lam`` (λ₀) sets the curvature: small values approach the linear rule, large ones fall faster.
    """

    age: float = 1.0
    lam: float = 0.5

    def __post_init__(self):
        _check_positive("spl_logarithmic", "age", self.age)
        _check_open_unit("spl_logarithmic", "lam", self.lam)

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        ratio, valid = normalized_loss(features, self.age)
        zeta = 1.0 - self.lam
        inside = valid & (ratio < 1.0)
        scaled = torch.where(inside, self.lam * ratio + zeta, torch.ones_like(ratio))
        weight = (torch.log(scaled) / math.log(zeta)).clamp(0.0, 1.0)
        return torch.where(inside, weight, torch.zeros_like(weight))


@register_curriculum("spl_mixture")
@dataclass(frozen=True)
class SplMixture:
    """Mixture soft self-paced weighting (Jiang et al., ACM MM 2014; Zhao et al., "Self-paced learning for
    matrix factorization", AAAI 2015).

    Regulariser f(v; λ, λ') = −ζ log(v + ζ/λ), ζ = λλ'/(λ − λ'), λ > λ' > 0. Its minimiser is
    v* = 1 if ℓ ≤ λ', 0 if ℓ ≥ λ, and ζ/ℓ − ζ/λ in between. Here λ = age · (ℓ − Δ) and λ' = ratio · λ,
    so the graded part is v* = ratio/(1 − ratio) · (λ/ℓ − 1). v* = 0 where λ ≤ 0.
    """

    age: float = 1.0
    ratio: float = 0.5

    def __post_init__(self):
        _check_positive("spl_mixture", "age", self.age)
        _check_open_unit("spl_mixture", "ratio", self.ratio)

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        ratio, valid = normalized_loss(features, self.age)  # u = ℓ/λ
        safe = torch.where(ratio > 0, ratio, torch.ones_like(ratio))
        graded = (self.ratio / (1.0 - self.ratio) * (1.0 / safe - 1.0)).clamp(0.0, 1.0)
        weight = torch.where(ratio <= self.ratio, torch.ones_like(ratio), graded)
        weight = torch.where(ratio >= 1.0, torch.zeros_like(ratio), weight)
        return torch.where(valid, weight, torch.zeros_like(weight))


class _ImplicitRegularizer:
    """Shared validation for Fan et al.'s family: one ``scale`` c > 0 (the robust loss's λ)."""

    def __post_init__(self):
        _check_positive(self.name, "scale", self.scale)


@register_curriculum("implicit_huber")
@dataclass(frozen=True)
class ImplicitHuber(_ImplicitRegularizer):
    """Implicit self-paced regulariser of the Huber loss (Fan, He, Liang, Hu, "Self-paced learning: an
    implicit regularization perspective", AAAI 2017, Table 1): the half-quadratic minimiser function
    σ(x) = 1 if √x ≤ c, else c/√x, applied to the excess loss x = max(Δ, 0)."""

    scale: float = 1.0

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        root = excess_loss(features).sqrt()
        return torch.where(root <= self.scale, torch.ones_like(root), self.scale / root.clamp(min=self.scale))


@register_curriculum("implicit_cauchy")
@dataclass(frozen=True)
class ImplicitCauchy(_ImplicitRegularizer):
    """Implicit self-paced regulariser of the Cauchy loss (Fan et al., AAAI 2017, Table 1):
    σ(x) = 1/(1 + x/c²), applied to the excess loss x = max(Δ, 0)."""

    scale: float = 1.0

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        return 1.0 / (1.0 + excess_loss(features) / self.scale ** 2)


@register_curriculum("implicit_l1_l2")
@dataclass(frozen=True)
class ImplicitL1L2(_ImplicitRegularizer):
    """Implicit self-paced regulariser of the L1-L2 loss (Fan et al., AAAI 2017, Table 1):
    σ(x) = 1/√(1 + x/c²), applied to the excess loss x = max(Δ, 0)."""

    scale: float = 1.0

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        return torch.rsqrt(1.0 + excess_loss(features) / self.scale ** 2)


@register_curriculum("implicit_welsch")
@dataclass(frozen=True)
class ImplicitWelsch(_ImplicitRegularizer):
    """Implicit self-paced regulariser of the Welsch loss (Fan et al., AAAI 2017, Table 1):
    σ(x) = exp(−x/c²), applied to the excess loss x = max(Δ, 0)."""

    scale: float = 1.0

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        return torch.exp(-excess_loss(features) / self.scale ** 2)


@register_curriculum("small_loss")
@dataclass(frozen=True)
class SmallLoss:
    """Small-loss selection with a forget-rate schedule, in the spirit of Co-teaching (Han et al.,
    "Co-teaching: robust training of deep neural networks with extremely noisy labels", NeurIPS 2018).

    Co-teaching keeps the R(e) = 1 − τ(e) fraction of each batch with the smallest loss, where the forget
    rate τ(e) = forget_rate · min(e / ramp_epochs, 1) rises linearly during the first ``ramp_epochs``
    percent of training. A MentorNet sees one sample at a time, so the batch's (1 − τ)-quantile is
    estimated from the running p-percentile M = ℓ − Δ (p = 0.7) by assuming an exponential loss tail:
    q(1 − τ) ≈ k · M with k = log τ / log(1 − p). The weight is v* = 1 if τ(e) = 0 or ℓ ≤ k(e) · M,
    else 0. With forget_rate = 1 − p it keeps exactly the samples below the running percentile. Only the
    small-loss selection is taken from Co-teaching, not its two networks that pick samples for each other.
    """

    forget_rate: float = 0.5
    ramp_epochs: int = 10

    def __post_init__(self):
        _check_open_unit("small_loss", "forget_rate", self.forget_rate)
        value = self.ramp_epochs
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise ValueError(f"small_loss ramp_epochs must be an integer in 1..100, got {value!r}")

    def forget_rate_at(self, epoch: torch.Tensor) -> torch.Tensor:
        """τ(e) = forget_rate · min(e / ramp_epochs, 1)."""
        return self.forget_rate * (epoch.to(torch.float64) / self.ramp_epochs).clamp(max=1.0)

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        forget = self.forget_rate_at(features.epoch)
        log_keep = math.log(1.0 - DEFAULT_LOSS_P_PERCENTILE)  # log(1 − p) < 0
        factor = torch.log(forget.clamp(min=1e-300)) / log_keep  # k(e) > 0
        percentile = (features.loss - features.loss_diff).to(torch.float64)
        keep = (forget <= 0) | (features.loss.to(torch.float64) <= factor * percentile)
        return keep.to(features.loss.dtype)
