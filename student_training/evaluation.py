"""Evaluation helpers: test accuracy, and how well weights separate clean from noisy samples."""

from __future__ import annotations

import numpy as np
import torch


def detector_auc(scores, is_clean) -> float:
    """ROC AUC of ``scores`` as a detector of clean samples (Mann-Whitney, ties counted half).

    0.5 means the scores say nothing about which labels are clean; 1.0 means every clean sample
    scores above every noisy one. NaN when either group is empty.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_clean = np.asarray(is_clean, dtype=bool).reshape(-1)
    if scores.shape != is_clean.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape[0]} vs {is_clean.shape[0]}")
    positives, negatives = int(is_clean.sum()), int((~is_clean).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks, ties shared
    return float((ranks[is_clean].sum() - positives * (positives + 1) / 2) / (positives * negatives))


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
