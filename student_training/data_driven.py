"""The data-driven MentorNet, end to end: dumps of the clean subset and re-learning during training.

* A **dump** (spec §2.3) holds, for every sample of the clean held-out subset, its id in the official
  training set, the MentorNet epoch, its noisy label as the noise model made it, its clean label, and
  the student's cross-entropy against the noisy label. It is taken when training progress reaches
  ``dump_at_epoch`` and written as CSV with the header ``sample_id,epoch,noisy_label,clean_label,loss``,
  which ``learn-curriculum --dump`` reads.
* **Re-learning** (paper, Algorithm 1 step 6; never in the 2018 code, issue #18 there): at each given
  progress epoch the MentorNet is re-fitted, from its current weights, to the data-driven targets of a
  dump taken from the current student, and training continues with the new MentorNet.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from typing import TYPE_CHECKING

from curricula.features import DEFAULT_WEIGHTER, progress_percent
from curricula.files import atomic_write
from curricula.targets import DUMP_COLUMNS, Dump, data_driven_targets, dump_percentile
from mentor_training.trainer import fit_mentornet

from . import distributed
from .callbacks import Callback
from .config import parse_relearn
from .losses import per_sample_cross_entropy

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Run

DEFAULT_RELEARN_PERCENTILE = 0.9  # the released DD MentorNet's percentile (the 90th)
RELEARN_STEPS = 500  # a re-fit starts from the current MentorNet, so it needs fewer steps than a fresh fit
RELEARN_COLUMNS = ("progress_epoch", "step", "rows", "noisy_fraction", "percentile", "loss_threshold",
                   "heldout_mae", "heldout_accuracy", "fit_seconds", "status")
@torch.no_grad()
def clean_subset_dump(run: "Run", step: int) -> Dump:
    """The dump of the clean subset for the student as it is at ``step`` (eval mode)."""
    indices = run.data.clean_subset_indices
    model = run.model
    was_training = model.training
    model.eval()
    losses = []
    for start in range(0, len(indices), 1000):
        batch = indices[start:start + 1000]
        images = run.test_loader.prepare(run.data.train_images[batch].to(run.device))
        with run.precision.autocast():  # the forward only: the loss below is fp32
            logits = model(images)
        losses.append(per_sample_cross_entropy(logits.float(), run.noise.noisy_labels[batch].to(run.device)).cpu())
    model.train(was_training)
    epoch = run.weighter.epoch_at(step) if run.weighter is not None else progress_percent(step, run.total_steps)
    # The loss as written (6 decimals), so an in-memory dump equals the file read back, sha256 included.
    loss = np.array([float(f"{value:.6f}") for value in torch.cat(losses).double().tolist()])
    table = pd.DataFrame({
        "sample_id": run.data.source_indices[indices].numpy(),
        "epoch": np.full(len(indices), epoch, dtype=np.int64),
        "noisy_label": run.noise.noisy_labels[indices].numpy(),
        "clean_label": (run.data.train_labels if run.verified_labels is None else run.verified_labels)[indices].numpy(),
        "loss": loss,
    }, columns=list(DUMP_COLUMNS))
    text = dump_text(table)
    return Dump(sample_id=table["sample_id"].to_numpy(), epoch=table["epoch"].to_numpy(),
                noisy_label=table["noisy_label"].to_numpy(), clean_label=table["clean_label"].to_numpy(),
                loss=loss, sha256=hashlib.sha256(text.encode()).hexdigest())


def dump_text(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format="%.6f", lineterminator="\n")


def write_dump(dump: Dump, path: str | Path) -> Path:
    table = pd.DataFrame({"sample_id": dump.sample_id, "epoch": dump.epoch, "noisy_label": dump.noisy_label,
                          "clean_label": dump.clean_label, "loss": dump.loss}, columns=list(DUMP_COLUMNS))
    return atomic_write(path, lambda tmp: Path(tmp).write_text(dump_text(table)), force=True)


def relearn_percentile(run: "Run") -> float:
    if run.config.relearn_percentile is not None:
        return float(run.config.relearn_percentile)
    source = getattr(run.weighter.mentor, "source", {}) or {}
    return dump_percentile(source) if source.get("type") == "data_driven" else DEFAULT_RELEARN_PERCENTILE


def relearn(run: "Run", step: int, point: int) -> dict:
    """Re-fit the MentorNet from its current weights on a dump of the current student; returns the log row."""
    mentor = run.weighter.mentor
    percentile = relearn_percentile(run)
    dump = clean_subset_dump(run, step)
    row = {"progress_epoch": point, "step": step, "rows": len(dump),
           "noisy_fraction": float(np.mean(dump.noisy_label != dump.clean_label)), "percentile": percentile}
    if row["noisy_fraction"] in (0.0, 1.0):  # nothing to learn: keep the MentorNet, log why, train on
        kind = "clean" if row["noisy_fraction"] == 0.0 else "corrupted"
        return {**row, "loss_threshold": float("nan"), "heldout_mae": float("nan"), "heldout_accuracy": float("nan"),
                "fit_seconds": 0.0, "status": f"skipped: the dump holds only {kind} samples"}
    split = data_driven_targets(dump, percentile, seed=run.config.seed + point)
    result = fit_mentornet(split, recipe="fast", steps=RELEARN_STEPS, seed=run.config.seed + point, init=mentor.cpu())
    fitted = result.model.to(run.device)
    fitted.source = {**split.source, "relearned_from": getattr(mentor, "source", None)}
    fitted.student_defaults = getattr(mentor, "student_defaults", DEFAULT_WEIGHTER)
    run.weighter.mentor = fitted
    test = result.metrics["test"]
    return {**row, "loss_threshold": split.source["loss_threshold"], "heldout_mae": test["mae"],
            "heldout_accuracy": test.get("binary_accuracy", float("nan")), "fit_seconds": round(result.seconds, 3),
            "status": "fitted"}


class CleanSubsetDump(Callback):
    """Writes the clean subset's dump to ``config.dump`` at the first step whose progress epoch is at least
    ``dump_at_epoch`` (a later one when no step falls on it: a run of 20 steps has progress epochs 0, 5, 10, ...);
    ``progress`` is the progress epoch it was taken at (None until then)."""

    name = "clean_subset_dump"

    def __init__(self):
        self.done = False
        self.progress = None

    def on_step(self, run: "Run", step: int) -> None:
        if self.done:
            return
        progress = progress_percent(step, run.total_steps)
        if progress < run.config.dump_at_epoch:
            return
        if run.is_main:  # under torchrun only rank 0 writes files
            write_dump(clean_subset_dump(run, step), run.config.dump)
        self.done, self.progress = True, progress

    def state_dict(self) -> dict:
        return {"done": self.done, "progress": self.progress}

    def load_state_dict(self, state: dict) -> None:
        self.done, self.progress = bool(state["done"]), state.get("progress")  # none in earlier last.pt files


class ScheduledFits(Callback):
    """A callback that fits a MentorNet at given progress epochs and logs each fit as a row of ``relearn.csv``."""

    columns: tuple[str, ...] = ()

    def __init__(self, points: tuple[int, ...]):
        self.points = points
        self.rows: list[dict] = []

    def pending(self) -> list[int]:
        done = {row["progress_epoch"] for row in self.rows}
        return [point for point in self.points if point not in done]

    def write_log(self, run: "Run") -> None:
        """Rewrite ``relearn.csv`` with every fit so far (rank 0 only)."""
        if run.is_main:
            frame = pd.DataFrame(self.rows, columns=list(self.columns))
            atomic_write(run.out / "relearn.csv", lambda tmp: frame.to_csv(tmp, index=False), force=True)


class Relearn(ScheduledFits):
    """Re-fits the MentorNet at the progress epochs of ``--relearn-mentor`` and logs each fit to ``relearn.csv``.

    Its state (the fits so far and the MentorNet as re-fitted) is saved in ``last.pt``, so a resumed run
    continues with the re-fitted MentorNet.
    """

    name = "relearn"
    columns = RELEARN_COLUMNS

    def __init__(self, points: tuple[int, ...], weighter):
        super().__init__(points)
        self.weighter = weighter  # its ``mentor`` is the MentorNet being re-fitted

    def on_step(self, run: "Run", step: int) -> None:
        epoch = progress_percent(step, run.total_steps)
        due = [point for point in self.pending() if epoch >= point]
        for point in due:
            self.rows.append(relearn(run, step, point))
            self.write_log(run)
        if due:  # every rank re-fits deterministically; rank 0's MentorNet is made the one for all
            distributed.broadcast_module(self.weighter.mentor, run.world)

    def state_dict(self) -> dict:
        mentor = self.weighter.mentor
        return {"rows": list(self.rows),
                "mentornet": {"state_dict": {k: v.detach().cpu() for k, v in mentor.state_dict().items()},
                              "source": mentor.source}}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])
        if state["mentornet"] is not None:  # the MentorNet as re-fitted so far
            self.weighter.mentor.load_state_dict(state["mentornet"]["state_dict"])
            self.weighter.mentor.source = state["mentornet"]["source"]


def data_driven_callbacks(run: "Run") -> list[Callback]:
    """The dump and re-fit callbacks ``run.config`` asks for."""
    config = run.config
    callbacks: list[Callback] = []
    if config.dump:
        callbacks.append(CleanSubsetDump())
    points = parse_relearn(config.relearn_mentor, run.recipe.lr_schedule)
    if points:
        if not hasattr(run.weighter.mentor, "state_dict"):
            raise ValueError("--relearn-mentor needs a learned MentorNet, not a curriculum")
        callbacks.append(Relearn(points, run.weighter))
    return callbacks
