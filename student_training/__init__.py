"""StudentNet training: data sets, label noise, student architectures and the device loader (spec §4).

``from student_training import load_dataset, create_student`` is the contract other code relies on;
``MentorWeighter`` (2018) and ``MentorMix`` (2020) are the weightings usable from any training loop.
The student registry is filled by importing :mod:`student_training.models`.
"""

from __future__ import annotations

from .data import ImageDataset, list_datasets, load_dataset
from .loader import DeviceLoader
from .mentormix import MENTORMIX_WEIGHTING, MentorMix, MixedBatch
from .models import create_student, list_students, register_student
from .weighting import MentorWeighter, WeighterConfig
from .noise import (
    NoiseResult,
    list_noise_types,
    load_noise_file,
    load_noisy_labels,
    make_noisy_labels,
    save_noisy_labels,
)

__all__ = [
    "DeviceLoader",
    "MENTORMIX_WEIGHTING",
    "MentorMix",
    "MixedBatch",
    "MentorWeighter",
    "WeighterConfig",
    "ImageDataset",
    "NoiseResult",
    "create_student",
    "list_datasets",
    "list_noise_types",
    "list_students",
    "load_dataset",
    "load_noise_file",
    "load_noisy_labels",
    "make_noisy_labels",
    "register_student",
    "save_noisy_labels",
]
