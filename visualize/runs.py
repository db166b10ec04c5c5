"""StudentNet runs (finished or not) as numbers: their per-epoch ``metrics.csv`` with a legend label from each
run's ``config.json`` (no matplotlib here; :func:`visualize.draw.runs_figure` draws them).

The label of a run names the options in which the runs drawn together differ (for instance
``mentornet=mentornet_pd, noise=0.4``), so the legend says what was compared; one run alone, or runs
that differ in no option, are labelled by their folder names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from student_training.config import RECIPE_DEPENDS_ON, format_value, recipe_pins
from student_training.run_folder import read_config, recover_replaced_run

RUN_METRICS = ("test_accuracy", "weight_clean", "weight_noisy", "detector_auc", "fit_noisy")
_LABEL_OPTIONS_SHOWN = 4  # more differing options than this: the folder names say it better


def read_runs(folders: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per run and epoch: ``run`` (the legend label), ``folder``, ``epoch``, :data:`RUN_METRICS` and
    ``planned_epochs`` (the run's length, from its ``config.json``: more than the last ``epoch`` for a run that
    has not finished).

    Raises ``ValueError`` naming a folder that holds no finished epoch (``metrics.csv``) or no
    ``config.json``, or whose ``metrics.csv`` lacks a column or holds a cell that is not a number.
    """
    folders = [Path(folder) for folder in folders]
    if not folders:
        raise ValueError("give at least one run folder")
    if len(set(folders)) != len(folders):
        raise ValueError("the same run folder is given twice")
    frames, options, pinned = [], [], []
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"run folder {folder} {'is a file' if folder.exists() else 'does not exist'}: give a "
                             "train-student run folder")
        recover_replaced_run(folder)  # an earlier run that a killed --force run set aside: back in place
        metrics_path = folder / "metrics.csv"
        if not metrics_path.is_file():
            raise ValueError(f"{folder} holds no metrics.csv: not a run folder, or no epoch has finished yet")
        try:
            frame = pd.read_csv(metrics_path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read {metrics_path}: {str(error).splitlines()[0]}") from None
        missing = [column for column in ("epoch", *RUN_METRICS) if column not in frame.columns]
        if missing or frame.empty:
            raise ValueError(f"{metrics_path} lacks {', '.join(missing) or 'rows'}")
        frame = _numeric(frame[["epoch", *RUN_METRICS]], metrics_path)
        config, payload = read_config(folder)
        planned = (payload.get("resolved") or {}).get("epochs", config.epochs)
        frames.append(frame.assign(folder=str(folder), planned_epochs=planned))
        options.append(config.applicable_options())  # another run's --learn-* defaults are no difference
        pinned.append(set(recipe_pins(payload)))
    labels = run_labels(folders, options, pinned)
    return pd.concat([frame.assign(run=label) for frame, label in zip(frames, labels)], ignore_index=True)


def _numeric(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``frame`` with every column as floats (an empty cell is NaN); a cell that is not a number is a ``ValueError``
    naming the file, its line and the column."""
    converted = frame.apply(pd.to_numeric, errors="coerce")
    bad = converted.isna() & frame.notna()
    if bad.any().any():
        row, column = next((r, c) for c in frame.columns for r in frame.index[bad[c]])
        raise ValueError(f"{path}, line {row + 2}: {column} is {frame.at[row, column]!r}, not a number")
    return converted


def run_labels(folders: list[Path], options: list[dict], pinned: list[set] | None = None) -> list[str]:
    """A legend label per run: the options in which the runs differ, else the folder names. An option a run
    lacks (one that does not apply to it) is left out of its label and does not count as a difference, and so
    does a default that every run left to the student (its learning rate, schedule, weight decay; the data set's
    augmentation), its value ``pinned`` from the run's ``config.json`` (one set of such names per run), that
    differs only where what it depends on differs (``RECIPE_DEPENDS_ON``: mlp's weight decay beside small_cnn's)."""
    pinned = pinned if pinned is not None else [set() for _ in options]
    names = list(dict.fromkeys(name for o in options for name in o))
    differing = [name for name in names
                 if _differs(name, [o for o in options if name in o],
                             all(name in p for o, p in zip(options, pinned) if name in o))]
    if not differing or len(differing) > _LABEL_OPTIONS_SHOWN:
        labels = [folder.name or str(folder) for folder in folders]
    else:
        labels = [", ".join(f"{name}={format_value(o[name])}" for name in differing if name in o) for o in options]
    if len(set(labels)) < len(labels):  # e.g. two folders of the same name
        labels = [str(folder) for folder in folders]
    return labels


def _differs(name: str, options: list[dict], defaults: bool) -> bool:
    """Whether runs with ``options`` differ in option ``name``; for one of ``RECIPE_DEPENDS_ON`` that every run
    left to its default (``defaults``), whether two runs that agree on what it depends on differ in it."""
    depends_on = RECIPE_DEPENDS_ON.get(name, ()) if defaults else ()
    values: dict[tuple, set] = {}
    for o in options:
        values.setdefault(tuple(repr(o.get(dep)) for dep in depends_on), set()).add(repr(o[name]))
    return any(len(group) > 1 for group in values.values())


__all__ = ["RUN_METRICS", "read_runs", "run_labels"]
