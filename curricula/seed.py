"""The six curricula of the 2018 release, exactly as spec §2.1 writes them
(``code/training_mentornet/models.py``).

Each is a frozen dataclass: its fields are its parameters and ``weight(features)`` is its target
weight v*. ``student_defaults`` are the StudentNet flags that the 2018 commands used with each
MentorNet (spec §4.3; the registry's plain defaults unless a class sets its own); a checkpoint
carries them so that users need not re-type them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .features import MentorFeatures
from .features import WeighterConfig
from .registry import curriculum_class, register_curriculum

@register_curriculum("baseline")
@dataclass(frozen=True)
class Baseline:
    """No curriculum: every sample has weight 1 (``vstar_baseline``)."""


    def weight(self, features: MentorFeatures) -> torch.Tensor:
        return torch.ones_like(features.loss)


@register_curriculum("self_paced")
@dataclass(frozen=True)
class SelfPaced:
    """Self-paced learning (Kumar et al., NeurIPS 2010): v* = 1 if loss_diff <= 0, else 0.

    Equivalently, keep a sample when its loss is at most the moving-average loss percentile.
    """


    def weight(self, features: MentorFeatures) -> torch.Tensor:
        return (features.loss_diff <= 0).to(features.loss.dtype)


@register_curriculum("hard_example_mining")
@dataclass(frozen=True)
class HardExampleMining:
    """Hard example mining (Felzenszwalb et al., 2008): v* = 1 if loss_diff >= 0, else 0.

    As in 2018, a sample whose label feature is positive always gets 1 (the label is 0 in practice).
    """


    def weight(self, features: MentorFeatures) -> torch.Tensor:
        return ((features.loss_diff >= 0) | (features.label > 0)).to(features.loss.dtype)


@register_curriculum("focal_loss")
@dataclass(frozen=True)
class FocalLoss:
    """Focal loss (Lin et al., ICCV 2017): v* = (1 - exp(-loss))^gamma, i.e. (1 - p_true)^gamma for
    cross-entropy."""

    gamma: float = 2.0

    def __post_init__(self):
        if not (isinstance(self.gamma, (int, float)) and math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"focal_loss gamma must be a finite number > 0, got {self.gamma!r}")

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        return (1.0 - torch.exp(-features.loss)).clamp(0.0, 1.0) ** self.gamma


@register_curriculum("spcl_linear")
@dataclass(frozen=True)
class SpclLinear:
    """Self-paced curriculum learning, linear scheme (Jiang et al., AAAI 2015):
    v* = clip(1 - loss_diff / gamma, 0, 1)."""

    gamma: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.gamma, (int, float)) and math.isfinite(self.gamma) and self.gamma != 0):
            raise ValueError(f"spcl_linear gamma must be a finite non-zero number, got {self.gamma!r}")

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        return (1.0 - features.loss_diff / self.gamma).clamp(0.0, 1.0)


@register_curriculum("mentornet_pd")
@dataclass(frozen=True)
class MentorNetPD:
    """The 2018 predefined mixture (``vstar_mentornet_pd``), switching by training progress:

    * ``early`` (baseline: weight 1) while epoch <= ``first_threshold`` (18);
    * ``middle`` (self-paced) while ``first_threshold`` < epoch < ``second_threshold`` (90);
    * ``late`` (SPCL linear, gamma 1) from ``second_threshold`` on.

    Each part is a registered curriculum, built with its default parameters.
    """

    first_threshold: int = 18
    second_threshold: int = 90
    early: str = "baseline"
    middle: str = "self_paced"
    late: str = "spcl_linear"
    student_defaults: ClassVar[WeighterConfig] = WeighterConfig(example_dropout_rates="0.5,17,0.05,83")

    def __post_init__(self):
        for key in ("first_threshold", "second_threshold"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise ValueError(f"mentornet_pd {key} must be an integer in 0..100, got {value!r}")
        if self.first_threshold >= self.second_threshold:
            raise ValueError(
                f"mentornet_pd first_threshold ({self.first_threshold}) must be below "
                f"second_threshold ({self.second_threshold})"
            )
        for key in ("early", "middle", "late"):
            part = getattr(self, key)
            if part == "mentornet_pd":
                raise ValueError(f"mentornet_pd {key} cannot be mentornet_pd itself")
            curriculum_class(part)  # raises with the valid names

    def _part(self, key: str):
        return curriculum_class(getattr(self, key))()

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        epoch = features.epoch
        early = self._part("early").weight(features)
        middle = self._part("middle").weight(features)
        late = self._part("late").weight(features)
        result = torch.where(epoch >= self.second_threshold, late, middle)
        return torch.where(epoch <= self.first_threshold, early, result)
