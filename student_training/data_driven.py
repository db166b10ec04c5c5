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
import torch.nn.functional as F

from curricula.features import DEFAULT_WEIGHTER, MAX_EPOCH, progress_percent
from curricula.targets import DUMP_COLUMNS, Dump, data_driven_targets
from curricula.files import atomic_write
from mentor_training.trainer import fit_mentornet

DEFAULT_RELEARN_PERCENTILE = 90.0  # the released DD MentorNet's percentile
RELEARN_STEPS = 500  # a re-fit starts from the current MentorNet, so it needs fewer steps than a fresh fit
RELEARN_COLUMNS = ("progress_epoch", "step", "rows", "noisy_fraction", "percentile", "loss_threshold",
                   "heldout_mae", "heldout_accuracy", "fit_seconds")
# Progress epochs at which the 2018 schedules drop the learning rate (spec §4.6).
LR_DROP_EPOCHS = {"piecewise_2018": (50, 64), "exponential_2018": (65,)}


def parse_relearn(text: str, lr_schedule: str) -> tuple[int, ...]:
    """``never``, ``lr-drops`` (the first two drops of the 2018 schedule, as in the paper), or progress
    epochs ``E1,E2,...`` in 0..99."""
    text = str(text).strip()
    if text == "never":
        return ()
    if text == "lr-drops":
        if lr_schedule not in LR_DROP_EPOCHS:
            raise ValueError(f"--relearn-mentor lr-drops needs a stepped learning-rate schedule (piecewise_2018 "
                             f"or exponential_2018), this run uses {lr_schedule}; give progress epochs, e.g. 30,60")
        return LR_DROP_EPOCHS[lr_schedule]
    try:
        epochs = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise ValueError(f"--relearn-mentor must be never, lr-drops or progress epochs like 30,60; got {text!r}") from None
    if not epochs or epochs[0] < 1 or epochs[-1] > MAX_EPOCH:
        raise ValueError(f"--relearn-mentor epochs must lie in 1..{MAX_EPOCH}, got {text!r}")
    return tuple(epochs)


def check_dump_epoch(epoch: int | None) -> None:
    if epoch is not None and not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"dump epoch {epoch} is beyond the run: training progress runs over epochs 0..{MAX_EPOCH}")


@torch.no_grad()
def clean_subset_dump(run, step: int) -> Dump:
    """The dump of the clean subset for the student as it is at ``step`` (eval mode)."""
    indices = run.data.clean_subset_indices
    model = run.model
    was_training = model.training
    model.eval()
    losses = []
    for start in range(0, len(indices), 1000):
        batch = indices[start:start + 1000]
        images = run.test_loader.prepare(run.data.train_images[batch].to(run.device))
        with torch.autocast(run.device.type, dtype=run.autocast_dtype or torch.bfloat16,
                            enabled=run.autocast_dtype is not None):
            logits = model(images)
        losses.append(F.cross_entropy(logits.float(), run.noise.noisy_labels[batch].to(run.device),
                                      reduction="none").cpu())
    model.train(was_training)
    epoch = run.weighter.epoch_at(step) if run.weighter is not None else progress_percent(step, run.total_steps)
    # The loss as written (6 decimals), so an in-memory dump equals the file read back, sha256 included.
    loss = np.array([float(f"{value:.6f}") for value in torch.cat(losses).double().tolist()])
    table = pd.DataFrame({
        "sample_id": run.data.source_indices[indices].numpy(),
        "epoch": np.full(len(indices), epoch, dtype=np.int64),
        "noisy_label": run.noise.noisy_labels[indices].numpy(),
        "clean_label": run.data.train_labels[indices].numpy(),
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


def relearn_percentile(run) -> float:
    if run.config.relearn_percentile is not None:
        return float(run.config.relearn_percentile)
    source = getattr(run.weighter.mentor, "source", {}) or {}
    return float(source["percentile"]) if source.get("type") == "data_driven" else DEFAULT_RELEARN_PERCENTILE


def relearn(run, step: int, point: int) -> dict:
    """Re-fit the MentorNet from its current weights on a dump of the current student; returns the log row."""
    mentor = run.weighter.mentor
    percentile = relearn_percentile(run)
    dump = clean_subset_dump(run, step)
    split = data_driven_targets(dump, percentile, seed=run.config.seed + point)
    result = fit_mentornet(split, recipe="fast", steps=RELEARN_STEPS, seed=run.config.seed + point, init=mentor.cpu())
    fitted = result.model.to(run.device)
    fitted.source = {**split.source, "relearned_from": getattr(mentor, "source", None)}
    fitted.student_defaults = getattr(mentor, "student_defaults", DEFAULT_WEIGHTER)
    run.weighter.mentor = fitted
    test = result.metrics["test"]
    return {"progress_epoch": point, "step": step, "rows": len(dump),
            "noisy_fraction": float(np.mean(dump.noisy_label != dump.clean_label)), "percentile": percentile,
            "loss_threshold": split.source["loss_threshold"], "heldout_mae": test["mae"],
            "heldout_accuracy": test.get("binary_accuracy", float("nan")), "fit_seconds": round(result.seconds, 3)}


def run_due_events(run, step: int) -> None:
    """Take the dump and any re-fits whose progress epoch has been reached at ``step``."""
    epoch = progress_percent(step, run.total_steps)
    config = run.config
    writes = getattr(run, "is_main", True)  # under torchrun only rank 0 writes files
    if config.dump and not run.dump_done and epoch >= config.dump_at_epoch:
        if writes:
            write_dump(clean_subset_dump(run, step), config.dump)
        run.dump_done = True
    for point in run.relearn_pending():
        if epoch >= point:
            run.relearn_rows.append(relearn(run, step, point))
            frame = pd.DataFrame(run.relearn_rows, columns=list(RELEARN_COLUMNS))
            if writes:
                atomic_write(run.out / "relearn.csv", lambda tmp: frame.to_csv(tmp, index=False), force=True)
