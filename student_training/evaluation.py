"""Evaluation helpers: test accuracy, and how well weights separate clean from noisy samples."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import mannwhitneyu


def detector_auc(scores, is_clean) -> float:
    """ROC AUC of ``scores`` as a detector of clean samples: the Mann-Whitney U of the clean samples'
    scores against the corrupted ones', over the number of pairs (ties count half).

    0.5 means the scores say nothing about which labels are clean; 1.0 means every clean sample
    scores above every corrupted one. NaN when either group is empty.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_clean = np.asarray(is_clean, dtype=bool).reshape(-1)
    if scores.shape != is_clean.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape[0]} vs {is_clean.shape[0]}")
    clean, corrupted = scores[is_clean], scores[~is_clean]
    if not len(clean) or not len(corrupted):
        return float("nan")
    return float(mannwhitneyu(clean, corrupted, method="asymptotic").statistic / (len(clean) * len(corrupted)))


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader, *, autocast_dtype: torch.dtype | None = None) -> float:
    """Top-1 accuracy of ``model`` in eval mode over a loader of ``(images, labels, indices)``."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    total = 0
    for images, labels, _ in loader:
        with torch.autocast(loader.device.type, dtype=autocast_dtype or torch.bfloat16,
                            enabled=autocast_dtype is not None):
            logits = model(images)
        correct += (logits.argmax(dim=1) == labels).sum()
        total += len(labels)
    model.train(was_training)
    return float(correct) / max(total, 1)
