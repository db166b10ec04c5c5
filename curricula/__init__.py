"""Curricula: the target weights v*(loss, loss_diff, label, epoch) that a MentorNet learns.

``from curricula import MentorFeatures, get_curriculum, list_curricula, register_curriculum``
"""

from .features import (
    FEATURE_NAMES,
    LossMovingAverage,
    MentorFeatures,
    batch_loss_percentile,
    encode_epoch,
    progress_percent,
)
from .registry import (
    check_curriculum,
    curriculum_parameters,
    curriculum_source,
    get_curriculum,
    list_curricula,
    parse_params,
    register_curriculum,
)
from . import seed  # noqa: F401  (registers the 2018 curricula)
from . import zoo  # noqa: F401  (registers the curriculum zoo)

__all__ = [
    "FEATURE_NAMES", "LossMovingAverage", "MentorFeatures", "batch_loss_percentile", "encode_epoch",
    "progress_percent", "check_curriculum", "curriculum_parameters", "curriculum_source", "get_curriculum",
    "list_curricula", "parse_params", "register_curriculum",
]
