"""How closely a MentorNet follows the curriculum it was fitted to, on fresh points of the grid's domain.

Points are drawn like the 2018 grid (spec §2.2) but off its lattice: loss uniform in [0, 10) with
probability 100/120 and in [10, 29] otherwise (the grid's density), loss_diff uniform in [-5, 4.9],
epoch uniform in 0..99, label 0. Where the target is exactly 0 or 1 and |loss_diff| > 0.05, we count
how often the weight lands on the right side of 0.5; where the target lies strictly between 0 and 1,
we report the mean absolute error.
"""

from __future__ import annotations

import torch

from curricula.features import NUM_EPOCHS, MentorFeatures
from curricula.registry import checked_weights

BINARY_MARGIN = 0.05


def fidelity_points(num_points: int, *, seed: int) -> MentorFeatures:
    generator = torch.Generator().manual_seed(seed)
    fine = torch.rand(num_points, generator=generator) < 100 / 120
    loss = torch.where(fine, torch.rand(num_points, generator=generator) * 10.0,
                       10.0 + torch.rand(num_points, generator=generator) * 19.0)
    loss_diff = torch.rand(num_points, generator=generator) * 9.9 - 5.0
    epoch = torch.randint(0, NUM_EPOCHS, (num_points,), generator=generator)
    return MentorFeatures(loss, loss_diff, torch.zeros(num_points, dtype=torch.long), epoch)


@torch.no_grad()
def fidelity(weighter, curriculum, *, num_points: int = 200_000, seed: int = 12345) -> dict:
    """Agreement of ``weighter.weight`` with ``curriculum.weight`` on ``num_points`` fresh random points.

    Raises ``ValueError`` naming the curriculum if its ``weight()`` fails or leaves [0, 1] on them
    (:func:`~curricula.registry.checked_weights`)."""
    features = fidelity_points(num_points, seed=seed)
    target = checked_weights(curriculum, features).float()
    weight = weighter.weight(features).float()
    binary = ((target == 0) | (target == 1)) & (features.loss_diff.abs() > BINARY_MARGIN)
    graded = (target > 0) & (target < 1)
    result = {"num_points": num_points, "seed": seed, "binary_points": int(binary.sum()),
              "graded_points": int(graded.sum())}
    if bool(binary.any()):
        result["binary_agreement"] = float(((weight >= 0.5) == (target >= 0.5))[binary].float().mean())
    if bool(graded.any()):
        result["graded_mae"] = float((weight - target).abs()[graded].mean())
    return result
