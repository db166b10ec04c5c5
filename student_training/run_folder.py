"""A StudentNet run folder: what is written, when, and how it is read back.

A run folder holds ``config.json`` (the run's :class:`~student_training.config.StudentConfig` as given,
plus what it resolved to), ``noisy_labels.npz``, ``metrics.csv`` (one row per epoch), ``last.pt`` (the
whole training state, every epoch) and ``best.pt`` (the student at its best epoch), and ``relearn.csv``
when the MentorNet is re-fitted. Every file is written atomically (:mod:`curricula.files`).

Format 2 (toolkit 0.2): ``config.json`` gains ``resolved`` and keeps only the weighting options given;
``last.pt`` keeps each callback's state under ``callbacks``, and both checkpoints carry ``student``, the
arguments that rebuild the network. Format 1 folders (toolkit 0.1) are read and resumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from curricula.files import atomic_write, write_json

from .config import StudentConfig, run_config_values

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Run

RUN_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
RUN_FILES = ("config.json", "noisy_labels.npz", "metrics.csv", "last.pt", "best.pt", "relearn.csv")
NORMALIZATION = "per_image_standardization"  # what the loader does to every image (loader.per_image_standardize)


def check_run_folder(out: Path, *, force: bool, delete: bool = True) -> None:
    """Refuse a file at ``out``, a missing parent, or an existing run without ``force`` (then delete it)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    if not out.parent.is_dir():
        raise ValueError(f"the folder above --out, {out.parent}, does not exist")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and not force:
        raise FileExistsError(f"{out} already holds a run ({', '.join(present)}); pass --resume to continue it "
                              "or --force to start over")
    for name in present if delete else ():
        (out / name).unlink(missing_ok=True)


def write_config(run: "Run") -> None:
    write_json(run.out / "config.json", {"format_version": RUN_FORMAT_VERSION, "config": run.config.to_dict(),
                                         "resolved": run.resolved(), "world_size": run.world.size}, force=True)


def read_config(out: Path) -> tuple[StudentConfig, dict]:
    """The run's config and the whole ``config.json`` payload (format 1 or 2)."""
    path = out / "config.json"
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({str(error).splitlines()[0]})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path} does not hold a run config")
    return StudentConfig.from_dict(run_config_values(payload, origin=str(path)), origin=str(path)), payload


def student_args(run: "Run") -> dict:
    """What rebuilds the network from a checkpoint alone (``create_student(**args)`` plus input handling)."""
    data = run.data
    return {"name": run.config.studentnet, "num_classes": data.num_classes, "in_channels": data.in_channels,
            "image_size": data.image_size, "class_names": list(data.class_names), "normalization": NORMALIZATION}


def save_epoch(run: "Run") -> None:
    """metrics.csv, then best.pt if improved, then last.pt: a run killed in between resumes correctly."""
    state = run.state
    frame = pd.DataFrame(state.rows, columns=list(run.metric_columns))
    atomic_write(run.out / "metrics.csv", lambda tmp: frame.to_csv(tmp, index=False), force=True)
    model_state = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
    common = {"format_version": RUN_FORMAT_VERSION, "config": run.config.to_dict(), "epoch": state.epoch,
              "student": student_args(run), "model": model_state}
    accuracy_now = state.rows[-1]["test_accuracy"]
    if accuracy_now > state.best_accuracy:
        state.best_accuracy = accuracy_now
        best = {"kind": "student", **common, "test_accuracy": accuracy_now}
        atomic_write(run.out / "best.pt", lambda tmp: torch.save(best, tmp), force=True)
    last = {"kind": "student_run", **common, "optimizer": run.optimizer.state_dict(),
            "weighter": run.weighter.state_dict() if run.weighter is not None else None,
            "best_accuracy": state.best_accuracy, "torch_rng": torch.get_rng_state(), "world_size": run.world.size,
            "callbacks": {callback.name: callback.state_dict() for callback in run.callbacks},
            "cuda_rng": torch.cuda.get_rng_state() if run.device.type == "cuda" else None}
    atomic_write(run.out / "last.pt", lambda tmp: torch.save(last, tmp), force=True)


def read_last(out: Path) -> dict:
    """``last.pt`` as a format-2 dict (a format-1 file's callback state is moved under ``callbacks``)."""
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("kind") != "student_run" \
            or state.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{out / 'last.pt'} is not a student run checkpoint of this toolkit")
    if state["format_version"] == 1:
        state["callbacks"] = {"clean_subset_dump": {"done": state.pop("dump_done")},
                              "relearn": {"rows": state.pop("relearn_rows"), "mentornet": state.pop("mentornet")}}
    return state


def restore(run: "Run") -> None:
    """Load ``last.pt`` into a prepared run: student, optimiser, weighter, RNGs, callbacks, metrics so far."""
    state = read_last(run.out)
    run.check_world_size(state.get("world_size", 1))
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.weighter is not None:
        run.weighter.load_state_dict(state["weighter"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"])
    saved = state["callbacks"]
    for callback in run.callbacks:
        if callback.name in saved:
            callback.load_state_dict(saved[callback.name])
    run.state.epoch, run.state.best_accuracy = state["epoch"], state["best_accuracy"]
    rows = pd.read_csv(run.out / "metrics.csv").to_dict("records")
    run.state.rows = [row for row in rows if row["epoch"] <= run.state.epoch]


__all__ = ["NORMALIZATION", "READABLE_VERSIONS", "RUN_FILES", "RUN_FORMAT_VERSION", "check_run_folder",
           "read_config", "read_last", "restore", "save_epoch", "student_args", "write_config"]
