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
import math
import os
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from curricula.files import atomic_write, check_writable_folder, load_plain, process_alive, sha256_of, write_json

from .config import StudentConfig, rebase_paths, run_config_values, working_directory

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Run

RUN_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# What a run writes in its folder (clean_subset.npz: a --clean-subset-file's ids and labels; label_issues.csv:
# find-label-issues' default output), and its MentorNets learned in the run (--mentornet learn).
RUN_FILES = ("config.json", "noisy_labels.npz", "clean_subset.npz", "metrics.csv", "last.pt", "best.pt", "relearn.csv",
             "label_issues.csv")
LEARNED_MENTORNETS = "mentornets/epoch_*.pt"
# Where --force keeps the earlier run's files until the new run has saved its first epoch (then they are deleted;
# if the new run stops before that, they are put back): --force never leaves a folder with neither run in it.
REPLACED_RUN = ".replaced-run"
# Written once; last.pt records their sha256.
GUARDED_FILES = ("config.json", "noisy_labels.npz", "clean_subset.npz")
NORMALIZATION = "per_image_standardization"  # what the loader does to every image (loader.per_image_standardize)


class RunLock:
    """A run folder's lock: ``.lock`` holds the pid, host, start time and command of the run using it.

    Taken before anything is read for writing or written, released when the run ends. A second run on
    the same folder is refused with a one-line error naming the holder; a lock whose process no longer
    runs on this host (a killed run) is taken over. The lock file is created with ``O_EXCL``, so of two
    runs started at the same moment exactly one gets it.
    """

    NAME = ".lock"

    def __init__(self, out: Path):
        self.path = Path(out) / self.NAME
        self.held = False

    def acquire(self) -> "RunLock":
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or not self._stale(holder):
                    raise RunInUseError(self._describe(holder)) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)
            self.held = True
            return self
        raise RunInUseError(self._describe(self._holder()))

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}  # released meanwhile: try again
        except (OSError, ValueError):
            return None  # unreadable: never taken over silently
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def _stale(holder: dict) -> bool:
        if not holder:
            return True
        if holder.get("host") != socket.gethostname():
            return False  # another machine's process: we cannot tell whether it still runs
        pid = holder.get("pid")
        return pid == os.getpid() or not (isinstance(pid, int) and process_alive(pid))

    def _describe(self, holder: dict | None) -> str:
        folder = self.path.parent
        if not holder:
            return f"{folder} is locked by {self.path}, which cannot be read; if no run uses the folder, delete it"
        return (f"{folder} is in use by process {holder.get('pid')} on {holder.get('host')} since "
                f"{holder.get('started')} ({holder.get('command')}); wait for it, or stop it and run again")


class RunInUseError(ValueError):
    """Another process is using the run folder."""


def run_files(out: Path) -> list[Path]:
    """The files of a run present in ``out``: :data:`RUN_FILES` and the MentorNets learned in the run."""
    return [out / name for name in RUN_FILES if (out / name).exists()] + sorted(out.glob(LEARNED_MENTORNETS))


def run_file_names(out: Path) -> list[str]:
    """The names in ``out`` of :func:`run_files`, ``mentornets`` once for its learned MentorNets."""
    return list(dict.fromkeys(path.relative_to(out).parts[0] for path in run_files(out)))


def remove_run_files(out: Path) -> None:
    """Delete every file of a run in ``out`` (and ``mentornets/`` once empty); the folder and other files stay."""
    for path in run_files(out):
        path.unlink(missing_ok=True)
    _remove_empty_mentornets(out)


def _remove_empty_mentornets(out: Path) -> None:
    try:
        (out / "mentornets").rmdir()
    except OSError:  # absent, or it holds files that are not the run's
        pass


def check_not_run_file(path: Path, *, option: str = "the output") -> None:
    """``ValueError`` if ``path`` is a file a train-student run in its folder writes and reads back (its
    config.json, metrics.csv, checkpoints, noisy labels, relearn.csv or a learned MentorNet): overwriting it, even
    with ``--force``, would break the run. ``label_issues.csv``, find-label-issues' own default, is allowed."""
    in_mentornets = path.parent.name == "mentornets"  # every file there is the run's (its learned MentorNets)
    run_folder = path.parent.parent if in_mentornets else path.parent
    if not (run_folder / "config.json").is_file():
        return
    if in_mentornets or (path.name in RUN_FILES and path.name != "label_issues.csv"):
        raise ValueError(f"{option} {path} is a file of the run in {run_folder}; writing it would break that run: "
                         "choose another name")


def set_aside_run_files(out: Path) -> None:
    """Move every file of the run in ``out`` into ``out/.replaced-run`` (renames within the folder), where it
    stays until :func:`discard_replaced_run` (the new run saved an epoch) or :func:`restore_replaced_run` (it
    stopped before). Other files in ``out`` stay where they are."""
    replaced = out / REPLACED_RUN
    for path in run_files(out):
        target = replaced / path.relative_to(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
    _remove_empty_mentornets(out)


def discard_replaced_run(out: Path) -> None:
    """Delete the earlier run that ``--force`` set aside, if any (the new run has saved an epoch)."""
    if (out / REPLACED_RUN).is_dir():
        shutil.rmtree(out / REPLACED_RUN)


def restore_replaced_run(out: Path) -> bool:
    """Remove the files of a run that stopped before saving an epoch and put back the run that ``--force`` set
    aside for it. Returns whether there was one to put back."""
    replaced = out / REPLACED_RUN
    if not replaced.is_dir():
        return False
    remove_run_files(out)
    for path in sorted(replaced.rglob("*")):
        if path.is_file():
            target = out / path.relative_to(replaced)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
    shutil.rmtree(replaced)
    return True


def recover_replaced_run(out: Path) -> bool:
    """Settle what a ``--force`` run killed without unwinding (SIGKILL, a power cut) left: if it saved an epoch,
    the earlier run it replaced is deleted; if not, its files are removed and the earlier run is put back
    (returns True, and warns). Takes the folder's lock for it, so a live run's set-aside files are never
    touched (:class:`RunInUseError`)."""
    if not (out / REPLACED_RUN).is_dir():
        return False
    lock = RunLock(out).acquire()
    try:
        if (out / "last.pt").is_file():
            discard_replaced_run(out)
            return False
        restore_replaced_run(out)
    finally:
        lock.release()
    warnings.warn(f"{out}: a --force run was stopped before its first epoch was saved; the run it was to replace "
                  "is back in place", stacklevel=2)
    return True


def check_run_folder(out: Path, *, force: bool, delete: bool = True) -> None:
    """Refuse a file at ``out``, a missing parent, or an existing run without ``force``; with ``delete``, set the
    earlier run's files aside (:func:`set_aside_run_files`): a new run starts with nothing of an earlier one in
    the folder, and the earlier one comes back if the new one stops before its first epoch is saved."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    if not out.parent.is_dir():
        raise ValueError(f"the folder above --out, {out.parent}, does not exist; create it first (mkdir -p "
                         f"{out.parent}), or check the path for a typo")
    check_writable_folder(out if out.is_dir() else out.parent, what="run folder" if out.is_dir() else "folder")
    present = run_files(out) if out.is_dir() else []
    started_only = {path.name for path in present} <= set(GUARDED_FILES)  # what a run writes before its first epoch
    if present and not force and started_only:  # killed (SIGKILL, a power cut) before its first epoch was saved
        raise FileExistsError(f"{out} holds a run that saved no epoch ({', '.join(run_file_names(out))}: it was "
                              "stopped before its first epoch ended), so there is nothing to resume; pass --force to "
                              "start over")
    if present and not force:
        raise FileExistsError(f"{out} already holds a run ({', '.join(run_file_names(out))}); pass --resume to "
                              "continue it or --force to start over")
    if present and delete:
        set_aside_run_files(out)


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
    config = StudentConfig.from_dict(run_config_values(payload, origin=str(path)), origin=str(path))
    return rebase_paths(config, working_directory(payload)), payload


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
    row = state.rows[-1]
    if state.best_epoch == state.epoch:  # this epoch's validation accuracy is the best so far
        best = {"kind": "student", **common, "val_accuracy": row["val_accuracy"],
                "test_accuracy": row["test_accuracy"], "selected_on": run.validation_description()}
        atomic_write(run.out / "best.pt", lambda tmp: torch.save(best, tmp), force=True)
    last = {"kind": "student_run", **common, "optimizer": run.optimizer.state_dict(),
            "weighter": run.weighter.state_dict() if run.weighter is not None else None,
            "best_validation": state.best_validation, "best_epoch": state.best_epoch,
            "torch_rng": torch.get_rng_state(), "world_size": run.world.size,
            "callbacks": {callback.name: callback.state_dict() for callback in run.callbacks},
            "files": {name: sha256_of(run.out / name) for name in GUARDED_FILES if (run.out / name).is_file()},
            "cuda_rng": None}
    if run.device.type == "cuda":
        last["cuda_rng"] = torch.cuda.get_rng_state()
    atomic_write(run.out / "last.pt", lambda tmp: torch.save(last, tmp), force=True)


def read_last(out: Path) -> dict:
    """``last.pt`` as a format-2 dict (a format-1 file's callback state is moved under ``callbacks``)."""
    state = load_plain(out / "last.pt", what="run checkpoint")
    if not isinstance(state, dict) or state.get("kind") != "student_run" \
            or state.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{out / 'last.pt'} is not a student run checkpoint of this toolkit")
    if state["format_version"] == 1:  # 0.1 chose best.pt on test accuracy; the resumed run has no validation
        state["callbacks"] = {"clean_subset_dump": {"done": state.pop("dump_done")},
                              "relearn": {"rows": state.pop("relearn_rows"), "mentornet": state.pop("mentornet")}}
        state.pop("best_accuracy")
        state.update(best_validation=-math.inf, best_epoch=0)
    return state


def check_guarded_files(out: Path, state: dict, *, names: tuple[str, ...] = GUARDED_FILES,
                        action: str = "resume") -> None:
    """Refuse to ``action`` (resume the run, or read it) when a file written once at the start (``names``, of
    :data:`GUARDED_FILES`) is missing or is not the one ``last.pt`` (``state``, from :func:`read_last`) recorded the
    sha256 of. A run saved before the sha256 were recorded is not checked."""
    advice = "put it back, or start over with --force" if action == "resume" else "put it back"
    for name, recorded in state.get("files", {}).items():
        if name not in names:
            continue
        path = out / name
        if not path.is_file():
            raise ValueError(f"cannot {action}: {path} is missing (last.pt recorded it); {advice}")
        if sha256_of(path) != recorded:
            raise ValueError(f"cannot {action}: {path} is not the file last.pt recorded (its sha256 differs: it was "
                             f"changed after the run began, or last.pt is another run's); "
                             f"{advice.replace('it back', 'the original back')}")


def restore(run: "Run", state: dict | None = None) -> None:
    """Load ``last.pt`` (or ``state``, read from it by :func:`read_last`) into a prepared run: student, optimiser,
    weighter, RNGs, callbacks, metrics so far."""
    if state is None:
        state = read_last(run.out)
        check_guarded_files(run.out, state)
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
    run.state.epoch = state["epoch"]
    run.state.best_validation, run.state.best_epoch = state["best_validation"], state["best_epoch"]
    run.state.rows = read_metrics(run.out, run.state.epoch)


def read_metrics(out: Path, epochs: int) -> list[dict]:
    """``metrics.csv``'s rows of epochs 1..``epochs`` (a run killed after writing a later epoch's row keeps
    only those last.pt covers). A file that lacks one of them, or holds a damaged row, is an error."""
    path = out / "metrics.csv"
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot resume: {path} cannot be read ({str(error).splitlines()[0]})") from None
    if "epoch" not in frame.columns or "test_accuracy" not in frame.columns:
        raise ValueError(f"cannot resume: {path} lacks its epoch or test_accuracy column")
    frame = frame[pd.to_numeric(frame["epoch"], errors="coerce") <= epochs]
    present = pd.to_numeric(frame["epoch"], errors="coerce").tolist()
    missing = [epoch for epoch in range(1, epochs + 1) if epoch not in present]
    damaged = frame[["epoch", "loss", "test_accuracy"]].isna().any(axis=1) if "loss" in frame else frame["epoch"]
    if missing or len(present) != epochs or bool(damaged.any()):
        problem = f"lacks epochs {', '.join(map(str, missing))}" if missing else "holds a damaged or repeated row"
        raise ValueError(f"cannot resume: {path} {problem} of the {epochs} that last.pt has (was it cut or edited?); "
                         "restore it, or start over with --force")
    return frame.to_dict("records")


__all__ = ["GUARDED_FILES", "NORMALIZATION", "READABLE_VERSIONS", "REPLACED_RUN", "RUN_FILES", "RUN_FORMAT_VERSION",
           "RunInUseError", "RunLock", "check_guarded_files", "check_run_folder", "discard_replaced_run", "read_config",
           "read_last", "read_metrics", "recover_replaced_run", "remove_run_files", "restore", "restore_replaced_run",
           "run_file_names", "run_files", "save_epoch", "set_aside_run_files", "student_args", "working_directory",
           "write_config"]
