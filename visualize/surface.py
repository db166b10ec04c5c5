"""Weight surfaces: a curriculum's or a MentorNet's weight over a (loss, loss_diff) grid, per epoch.

This is the computation behind ``python cli.py plot``; drawing lives in :mod:`visualize.draw`. The 2018
visualiser (spec §3) fed a MentorNet points with ``loss_diff`` on a grid over [-bound, bound), ``loss``
uniform in [0, bound), label 0 and a fixed epoch, at the epochs "0,10,18,20,30,40,50,60,70,80,90,95,99".
Like it, we treat ``loss`` and ``loss_diff`` as independent: on a real StudentNet they are not
(``loss_diff`` is the loss minus a moving-average loss percentile), so parts of each surface are never
visited in training.

Every frame here is tidy: one row per grid point and epoch, with the columns
``loss, loss_diff, epoch, label, weight`` (``loss`` and ``loss_diff`` in nats, ``epoch`` in percent of
training, 0..99).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from curricula import MentorFeatures, check_curriculum, get_curriculum, list_curricula
from curricula.registry import checked_weights
from curricula.features import MAX_EPOCH, NUM_EPOCHS

DEFAULT_EPOCHS = (0, 10, 18, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99)  # the 2018 commands (spec §3)
SUMMARY_EPOCHS = (10, 50, 95)  # one epoch in each phase of mentornet_pd: baseline, self-paced, SPCL
DEFAULT_LOSS_RANGE = (0.0, 10.0)  # the fine part of the 2018 target grid (spec §2.2)
DEFAULT_LOSS_DIFF_RANGE = (-5.0, 5.0)  # the 2018 grid's loss_diff domain
DEFAULT_RESOLUTION = 101
COLUMNS = ["loss", "loss_diff", "epoch", "label", "weight"]


def check_range(name: str, value) -> tuple[float, float]:
    """``(lo, hi)`` as floats; an empty, reversed or non-finite range is an error that names it."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers LO,HI, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got {lo:g},{hi:g}")
    if lo >= hi:
        raise ValueError(f"{name} {lo:g},{hi:g} is empty: LO must be below HI")
    return lo, hi


def check_loss_range(value) -> tuple[float, float]:
    lo, hi = check_range("loss range", value)
    if lo < 0:
        raise ValueError(f"loss range {lo:g},{hi:g} starts below 0; a cross-entropy loss is never negative")
    return lo, hi


def check_epochs(epochs: Iterable) -> tuple[int, ...]:
    """Epochs as distinct integers in 0..99 (training progress in percent), in the order given."""
    checked: list[int] = []
    for epoch in epochs:
        if isinstance(epoch, bool) or not float(epoch).is_integer():
            raise ValueError(f"epochs must be integers in 0..{MAX_EPOCH}, got {epoch!r}")
        if not 0 <= int(epoch) <= MAX_EPOCH:
            raise ValueError(f"epoch {int(epoch)} is outside 0..{MAX_EPOCH} (training progress in percent)")
        if int(epoch) in checked:
            raise ValueError(f"epoch {int(epoch)} is given twice")
        checked.append(int(epoch))
    if not checked:
        raise ValueError("no epochs given")
    return tuple(checked)


MAX_RESOLUTION = 1001
"""The most grid points per axis: a million points a panel, more than a figure can show."""


def check_resolution(resolution) -> int:
    """``resolution`` as an int in 2..:data:`MAX_RESOLUTION`, else ``ValueError``."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or not 2 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be an integer in 2..{MAX_RESOLUTION} (grid points per axis), "
                         f"got {resolution!r}")
    return int(resolution)


def parse_range(text: str, *, name: str) -> tuple[float, float]:
    """``"LO,HI"`` -> ``(lo, hi)``; for ``--loss-range`` and ``--loss-diff-range``."""
    parts = str(text).split(",")
    if len(parts) != 2:
        raise ValueError(f"{name} must be given as LO,HI, got {text!r}")
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"{name} must be two numbers LO,HI, got {text!r}") from None


def parse_epochs(text: str) -> tuple[int, ...]:
    """``"0,10,18"`` -> ``(0, 10, 18)``, checked."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    values = []
    for item in items:
        try:
            values.append(int(item))
        except ValueError:
            raise ValueError(f"epochs must be integers in 0..{MAX_EPOCH}, got {item!r}") from None
    return check_epochs(values)


def evenly_spaced_epochs(count: int) -> tuple[int, ...]:
    """``count`` distinct epochs from 0 to 99, evenly spaced (the frames of an animation)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= NUM_EPOCHS:
        raise ValueError(f"number of frames must be an integer in 1..{NUM_EPOCHS}, got {count!r}")
    return tuple(int(e) for e in np.unique(np.round(np.linspace(0, MAX_EPOCH, count)).astype(int)))


def _grid(loss_range, loss_diff_range, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    loss_axis = np.linspace(*loss_range, resolution)
    loss_diff_axis = np.linspace(*loss_diff_range, resolution)
    loss_diff, loss = np.meshgrid(loss_diff_axis, loss_axis, indexing="ij")
    return loss.ravel(), loss_diff.ravel()


def _weights(weighter, features: MentorFeatures) -> np.ndarray:
    return checked_weights(weighter, features).detach().cpu().double().numpy()


def weight_surface(weighter, loss_range: Sequence[float] = DEFAULT_LOSS_RANGE,
                   loss_diff_range: Sequence[float] = DEFAULT_LOSS_DIFF_RANGE,
                   epochs: Iterable[int] = DEFAULT_EPOCHS, *, resolution: int = DEFAULT_RESOLUTION,
                   label: int = 0) -> pd.DataFrame:
    """``weighter.weight`` on a ``resolution`` x ``resolution`` grid over (loss, loss_diff), per epoch.

    ``weighter`` is anything with ``weight(features)``: a registered curriculum or a loaded MentorNet.
    Returns a tidy frame with the columns ``loss, loss_diff, epoch, label, weight``: one row per grid
    point and epoch, epochs in the order given, and within an epoch ``loss`` varying fastest.
    """
    if not callable(getattr(weighter, "weight", None)):
        raise TypeError(f"weighter must have a weight(features) method, got {type(weighter).__name__}")
    loss_range = check_loss_range(loss_range)
    loss_diff_range = check_range("loss_diff range", loss_diff_range)
    epochs = check_epochs(epochs)
    loss, loss_diff = _grid(loss_range, loss_diff_range, check_resolution(resolution))
    epoch = np.repeat(np.asarray(epochs, dtype=np.int64), len(loss))
    loss, loss_diff = np.tile(loss, len(epochs)), np.tile(loss_diff, len(epochs))
    features = MentorFeatures.build(torch.from_numpy(loss), torch.from_numpy(loss_diff),
                                    epoch=torch.from_numpy(epoch), label=int(label))
    weights = _weights(weighter, features)
    return pd.DataFrame({"loss": loss, "loss_diff": loss_diff, "epoch": epoch,
                         "label": np.full(len(loss), int(label), dtype=np.int64), "weight": weights})


def surface_grid(frame: pd.DataFrame, epoch: int, *, value: str = "weight"):
    """``(loss_axis, loss_diff_axis, values)`` of one epoch; ``values[i, j]`` is at
    ``(loss_axis[j], loss_diff_axis[i])``, the layout of ``imshow`` and ``plot_surface``."""
    rows = frame[frame["epoch"] == epoch]
    if rows.empty:
        raise ValueError(f"epoch {epoch} is not in the frame (epochs: {sorted(frame['epoch'].unique())})")
    table = rows.pivot_table(index="loss_diff", columns="loss", values=value, aggfunc="first")
    return table.columns.to_numpy(), table.index.to_numpy(), table.to_numpy()


def reference_curriculum(mentornet):
    """The curriculum a MentorNet was fitted to, rebuilt from its checkpoint's ``source``."""
    source = getattr(mentornet, "source", None) or {}
    if source.get("type") != "curriculum":
        kind = source.get("type", "unknown")
        raise ValueError(f"this MentorNet was not fitted to a curriculum (source type {kind!r}), "
                         "so there is nothing to compare it with")
    curriculum = get_curriculum(source["name"], **dict(source.get("params") or {}))
    check_curriculum(curriculum)
    return curriculum


def compare_surfaces(mentornet, curriculum, loss_range: Sequence[float] = DEFAULT_LOSS_RANGE,
                     loss_diff_range: Sequence[float] = DEFAULT_LOSS_DIFF_RANGE,
                     epochs: Iterable[int] = SUMMARY_EPOCHS, *, resolution: int = DEFAULT_RESOLUTION) -> pd.DataFrame:
    """A MentorNet beside a curriculum on one grid: the columns ``loss, loss_diff, epoch, label``, then
    ``mentornet``, ``curriculum`` (their weights) and ``abs_diff`` (``|mentornet - curriculum|``)."""
    options = dict(loss_range=loss_range, loss_diff_range=loss_diff_range, epochs=epochs, resolution=resolution)
    frame = weight_surface(mentornet, **options).rename(columns={"weight": "mentornet"})
    frame["curriculum"] = weight_surface(curriculum, **options)["weight"].to_numpy()
    frame["abs_diff"] = (frame["mentornet"] - frame["curriculum"]).abs()
    return frame


def gallery_surfaces(names: Iterable[str] | None = None, loss_range: Sequence[float] = DEFAULT_LOSS_RANGE,
                     loss_diff_range: Sequence[float] = DEFAULT_LOSS_DIFF_RANGE,
                     epochs: Iterable[int] = SUMMARY_EPOCHS, *, resolution: int = DEFAULT_RESOLUTION) -> pd.DataFrame:
    """Weight surfaces of several curricula (default: every registered one, default parameters), stacked,
    with a leading ``curriculum`` column."""
    names = list_curricula() if names is None else list(names)
    if not names:
        raise ValueError("no curricula to plot")
    frames = []
    for name in names:
        curriculum = get_curriculum(name)
        check_curriculum(curriculum)
        frame = weight_surface(curriculum, loss_range, loss_diff_range, epochs, resolution=resolution)
        frames.append(frame.assign(curriculum=name))
    frame = pd.concat(frames, ignore_index=True)
    return frame[["curriculum", *COLUMNS]]
