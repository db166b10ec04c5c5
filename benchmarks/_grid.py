"""What the accuracy grids share: one ``train-student`` run folder per (method, setting, seed), trained,
resumed or read back, and mean ± sd summaries over seeds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from curricula.files import write_json
from student_training.config import StudentConfig, describe_changes


def folder_state(folder: Path, config: StudentConfig) -> str:
    """``new``, ``partial`` (resume it) or ``complete``; a folder holding another run (other options, or another
    file behind the same --mentornet path) is an error."""
    from student_training.run_folder import read_config
    from student_training.trainer import mentornet_file_change

    if not (folder / "last.pt").is_file() or not (folder / "metrics.csv").is_file():
        return "new"
    saved, payload = read_config(folder)
    changes = describe_changes(saved, config)
    if changes:
        listed = ", ".join(f"{name} {saved.shown(name)} (asked {config.shown(name)})" for name, _, _ in changes)
        raise SystemExit(f"Error: {folder} holds a run with other options: {listed}; choose another --out")
    change = mentornet_file_change(folder, config)  # the same path, another file behind it
    if change:
        raise SystemExit(f"Error: {change}; choose another --out")
    done = len(pd.read_csv(folder / "metrics.csv"))
    return "complete" if done >= payload["resolved"]["epochs"] else "partial"


def validation_accuracy(run, labels: str) -> float:
    """Accuracy of the run's final model on its held-out split (never the test set)."""
    from student_training.evaluation import accuracy
    from student_training.loader import DeviceLoader

    held_out = run.data.clean_subset_indices
    targets = run.noise.noisy_labels if labels == "noisy" else run.data.train_labels
    loader = DeviceLoader(run.data.train_images, targets, held_out, batch_size=1000, augment=False, shuffle=False,
                          drop_last=False, device=run.device, channels_last=run.recipe.channels_last)
    return accuracy(run.model, loader, autocast_dtype=run.autocast_dtype)


def train_folder(folder: Path, config: StudentConfig, *, validation_labels: str | None = None) -> tuple[str, float]:
    """Train (or resume, or skip) the run in ``folder``; returns its state before and, for a tuning run, the
    validation accuracy (recorded in ``validation.json``, so a complete folder is not loaded again)."""
    from student_training.trainer import prepare_run, train

    state = folder_state(folder, config)
    record = folder / "validation.json"
    if state == "complete" and (validation_labels is None or record.is_file()):
        return state, _read_validation(record, validation_labels)
    folder.parent.mkdir(parents=True, exist_ok=True)
    run = prepare_run(config, folder, resume=state != "new", force=state == "new")
    train(run)
    if validation_labels is None:
        return state, float("nan")
    score = validation_accuracy(run, validation_labels)
    write_json(record, {"labels": validation_labels, "accuracy": score,
                        "held_out": int(len(run.data.clean_subset_indices))}, force=True)
    return state, score


def _read_validation(record: Path, labels: str | None) -> float:
    if labels is None:
        return float("nan")
    import json

    saved = json.loads(record.read_text())
    if saved["labels"] != labels:
        raise SystemExit(f"Error: {record} scored {saved['labels']} labels, this grid asks for {labels}")
    return float(saved["accuracy"])


def summary_of(folder: Path) -> dict:
    from student_training.trainer import summarize

    rows = pd.read_csv(folder / "metrics.csv").to_dict("records")
    summary = summarize(rows)
    return {"final_accuracy": summary["final_test_accuracy"], "best_accuracy": summary["best_test_accuracy"],
            "selected_accuracy": summary["selected_test_accuracy"],
            "fit_noisy": summary["final_fit_noisy"], "detector_auc": summary["final_detector_auc"],
            "epochs": summary["epochs"]}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def did(state: str, start: float) -> str:
    if state == "complete":
        return "complete: read, not retrained"
    return f"{'resumed' if state == 'partial' else 'trained'} in {time.perf_counter() - start:.0f} s"


def mean_sd(values: pd.Series) -> str:
    values = values.astype(float)
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.4f} ± {sd:.4f}" if np.isfinite(sd) else f"{values.mean():.4f}"


def add_regime_arguments(parser) -> None:
    """The options of the README's CPU regime that every accuracy grid takes (mlp on 5,000 Fashion-MNIST images,
    100 epochs, batch 128, learning rate 0.1)."""
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--subset", type=int, default=5000, help="training images (0: the whole training set)")
    parser.add_argument("--studentnet", default="mlp")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: the student's own, as train-student)")


def apply_smoke(args, argv: list[str] | None, smoke: dict) -> None:
    """With ``--smoke``, set every value of ``smoke`` that the command line did not give."""
    if not args.smoke:
        return
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:]) if a.startswith("--")}
    for key, value in smoke.items():
        if key not in given:
            setattr(args, key, value)
