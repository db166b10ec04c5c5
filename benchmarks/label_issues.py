"""Finding wrong labels: a run's own ranking (find-label-issues) against cleanlab on the same labels.

    python benchmarks/label_issues.py [--settings symmetric:0.4,pairflip:0.45] [--seeds 0,1,2]
        [--methods mentornet_pd,small_loss_mentornet] [--select-seed 0] [--folds 4] [--cleanlab-epochs 3,5,10,20]
        [--workdir runs/label_issues] [--out docs/label_issues]

Needs cleanlab (``pip install -e .[bench]``); the toolkit itself does not.

For each label-noise setting and seed, every method trains the README's mlp regime (5,000 Fashion-MNIST
images, 100 epochs, SGD momentum 0.9, cosine from 0.1, batch 128) on the same noisy labels, and
:func:`student_training.label_issues.find_label_issues` ranks its training samples by each candidate
score. The score is chosen on the ``--select-seed`` runs only (highest mean AUC over every setting and
MentorNet there; ``none``, the plain baseline, has only the loss scores), then reported for every seed. cleanlab gets out-of-sample probabilities from the same
student: ``--folds`` stratified folds of the same noisy training set, each predicted by a plain
cross-entropy mlp trained on the other folds (same recipe, cosine schedule over its own epochs), and
``cleanlab.filter.find_label_issues`` runs on those probabilities and the same labels. Its ranking is
cleanlab's label-quality score (self-confidence, the order in which find_label_issues returns issues).
The folds' epochs are chosen per setting on the ``--select-seed`` runs among ``--cleanlab-epochs``, without
the truth, as a cleanlab user would: the epochs whose out-of-sample accuracy against the given labels is
highest.

Metrics: precision of the top 20% of the ranking (the fraction of those samples whose label is really
wrong), AUC of the ranking as a detector of wrong labels, and for cleanlab also the size, precision and
recall of the set it flags. Finished runs in ``--workdir`` are reused. Prints the tables and writes
``OUT.csv`` (one row per setting, seed and ranking), ``OUT_selection.csv`` and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from _table import markdown_table  # noqa: E402
from student_training.data import load_dataset  # noqa: E402
from student_training.host_memory import keep_freed_memory  # noqa: E402
from student_training.inference import load_student, predict  # noqa: E402
from student_training.label_issues import SCORES, find_label_issues, ranking_auc  # noqa: E402
from student_training.noise import load_noisy_labels  # noqa: E402
from student_training.trainer import StudentConfig, prepare_run, train  # noqa: E402

TOP_FRACTION = 0.2


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def base_config(args, noise_type: str, rate: float, seed: int, **changes) -> StudentConfig:
    values = dict(dataset="fashion-mnist", subset=args.subset, studentnet="mlp", epochs=args.epochs, noise=rate,
                  noise_type=noise_type, seed=seed)
    return StudentConfig(**{**values, **changes})


def train_if_needed(config: StudentConfig, folder: Path) -> Path:
    if (folder / "last.pt").is_file():
        try:
            find_label_issues(folder)
            return folder
        except ValueError:
            pass  # unfinished or without a record: train again
    start = time.perf_counter()
    run = prepare_run(config, folder, force=True)
    rows = train(run)
    log(f"  trained {folder.name}: final test accuracy {rows[-1]['test_accuracy']:.4f} "
        f"({time.perf_counter() - start:.0f} s)")
    return folder


def metrics(scores: np.ndarray, is_wrong: np.ndarray) -> dict:
    """Precision of the top 20% and AUC of ``scores`` (higher: more likely wrong) against the truth."""
    k = int(round(TOP_FRACTION * len(scores)))
    top = np.argsort(-scores, kind="stable")[:k]
    return {"precision_top20": float(is_wrong[top].mean()), "auc": ranking_auc(scores, is_wrong)}


def score_run(folder: Path, method: str) -> list[dict]:
    rows = []
    for score in SCORES:
        try:
            issues = find_label_issues(folder, score=score)
        except ValueError:  # a weight score on a run without a MentorNet
            continue
        values = issues.ranking["score"].to_numpy()
        rows.append({"ranking": f"{method}/{score}", "method": method, "score": score,
                     **metrics(values, issues.is_wrong)})
    return rows


def cleanlab_row(args, noise_type: str, rate: float, seed: int, workdir: Path, epochs: int) -> dict:
    """cleanlab on out-of-sample probabilities from ``--folds`` plain mlps trained on the other folds."""
    from cleanlab.filter import find_label_issues as cleanlab_find
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold

    data = load_dataset("fashion-mnist", subset=args.subset, seed=seed)
    noise = load_noisy_labels(workdir / f"{args.methods[0]}_{noise_type}{rate}_s{seed}" / "noisy_labels.npz")
    given, wrong = noise.noisy_labels.numpy(), (noise.noisy_labels != noise.clean_labels).numpy()
    images = data.train_images.numpy()
    probabilities = np.zeros((len(given), data.num_classes), dtype=np.float32)
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=seed).split(images, given)
    for fold, (fit, held) in enumerate(folds):
        folder = workdir / f"cleanlab_e{epochs}_{noise_type}{rate}_s{seed}_fold{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / "data.npz"
        np.savez(file, train_images=images[fit][:, 0], train_labels=given[fit], test_images=images[held][:, 0],
                 test_labels=given[held], class_names=np.array(data.class_names))
        config = StudentConfig(dataset=f"npz:{file}", studentnet="mlp", epochs=epochs, seed=seed)
        run_folder = folder / "run"
        if not (run_folder / "last.pt").is_file():
            train(prepare_run(config, run_folder, force=True))
        model, _ = load_student(run_folder, which="last")
        probabilities[held] = predict(model, torch.from_numpy(images[held])).numpy()
    accuracy = float((probabilities.argmax(1) == given).mean())
    log(f"  cleanlab, folds of {epochs} epochs: out-of-sample accuracy against the given labels {accuracy:.4f}")
    flagged = cleanlab_find(labels=given, pred_probs=probabilities, n_jobs=1)
    quality = get_label_quality_scores(given, probabilities)  # self_confidence: low means likely wrong
    found = int((flagged & wrong).sum())
    return {"ranking": "cleanlab", "method": "cleanlab", "score": "self_confidence", **metrics(-quality, wrong),
            "flagged": int(flagged.sum()), "flagged_precision": found / max(int(flagged.sum()), 1),
            "flagged_recall": found / max(int(wrong.sum()), 1), "cleanlab_epochs": epochs,
            "oos_accuracy": accuracy}


def mean_sd(values: pd.Series) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def main() -> None:
    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="symmetric:0.4,pairflip:0.45", help="NOISE_TYPE:RATE,...")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="mentornet_pd,small_loss_mentornet",
                        help="MentorNets (or none for the plain baseline) whose runs are ranked")
    parser.add_argument("--select-seed", type=int, default=0, help="the seed whose runs choose the score")
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--folds", type=int, default=4, help="cleanlab's cross-validation folds")
    parser.add_argument("--cleanlab-epochs", default="3,5,10,20",
                        help="candidate epochs of each fold's plain mlp, chosen per setting on --select-seed by "
                             "out-of-sample accuracy against the given labels")
    parser.add_argument("--workdir", default="runs/label_issues", help="run folders (finished ones are reused)")
    parser.add_argument("--out", default="docs/label_issues", help="prefix of the files written")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from OUT.csv")
    args = parser.parse_args()
    if args.report_only:
        report(pd.read_csv(f"{args.out}.csv"), args, Path(args.out))
        return
    args.methods = args.methods.split(",")
    args.cleanlab_epochs = [int(e) for e in args.cleanlab_epochs.split(",")]
    settings = [(kind, float(rate)) for kind, rate in (item.split(":") for item in args.settings.split(","))]
    seeds = [int(s) for s in args.seeds.split(",")]
    seeds = sorted(seeds, key=lambda s: s != args.select_seed)  # the selection runs first
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    rows, cleanlab_epochs = [], {}
    for seed in seeds:
        for noise_type, rate in settings:
            log(f"{noise_type} {rate} seed {seed}")
            setting = {"noise_type": noise_type, "rate": rate, "seed": seed}
            for method in args.methods:
                folder = workdir / f"{method}_{noise_type}{rate}_s{seed}"
                train_if_needed(base_config(args, noise_type, rate, seed, mentornet=method), folder)
                rows += [{**setting, **row} for row in score_run(folder, method)]
            if seed == args.select_seed or (noise_type, rate) not in cleanlab_epochs:
                tried = [cleanlab_row(args, noise_type, rate, seed, workdir, e) for e in args.cleanlab_epochs]
                best = max(tried, key=lambda row: row["oos_accuracy"])
                cleanlab_epochs[noise_type, rate] = best["cleanlab_epochs"]
                rows += [{**setting, **row, "chosen": row is best} for row in tried]
            else:
                epochs = cleanlab_epochs[noise_type, rate]
                rows.append({**setting, **cleanlab_row(args, noise_type, rate, seed, workdir, epochs), "chosen": True})
            pd.DataFrame(rows).to_csv(out.parent / f"{out.name}.csv", index=False)  # partial results survive
    report(pd.DataFrame(rows), args, out)


def report(table: pd.DataFrame, args, out: Path) -> None:
    tried = table[table["method"] == "cleanlab"]
    table = table[(table["method"] != "cleanlab") | (table["chosen"] == True)]  # noqa: E712 (a pandas column)
    table = table.assign(ranking=[f"cleanlab ({int(e)} epochs)" if m == "cleanlab" else r for m, r, e in
                                  zip(table["method"], table["ranking"], table["cleanlab_epochs"].fillna(0))])
    ours = table[table["method"] != "cleanlab"]
    chosen_runs = ours[(ours["seed"] == args.select_seed) & (ours["method"] != "none")]  # runs with every score
    selection = chosen_runs.groupby("score", sort=False)[["auc", "precision_top20"]].mean() \
        .sort_values("auc", ascending=False)
    chosen = selection.index[0]
    shown = table[(table["score"] == chosen) | (table["method"] == "cleanlab")]
    summary = shown.groupby(["noise_type", "rate", "ranking"], sort=False).agg(
        seeds=("seed", "count"), precision_top20=("precision_top20", mean_sd), auc=("auc", mean_sd)).reset_index()
    sensitivity = tried[tried["seed"] == args.select_seed][["noise_type", "rate", "cleanlab_epochs", "oos_accuracy",
                                                             "precision_top20", "auc", "chosen"]]
    flagged = table[table["method"] == "cleanlab"].groupby(["noise_type", "rate"], sort=False).agg(
        flagged=("flagged", "mean"), flagged_precision=("flagged_precision", mean_sd),
        flagged_recall=("flagged_recall", mean_sd)).reset_index()
    every = table[table["method"] != "cleanlab"].groupby(["noise_type", "rate", "ranking"], sort=False).agg(
        precision_top20=("precision_top20", mean_sd), auc=("auc", mean_sd)).reset_index()
    selection.to_csv(out.parent / f"{out.name}_selection.csv")
    command = "python benchmarks/label_issues.py " + shlex.join(sys.argv[1:])
    text = "\n\n".join([
        f"`{command.strip()}`",
        f"Score chosen on the seed-{args.select_seed} runs (mean over settings and methods, highest AUC first):",
        markdown_table(selection.map(lambda v: f"{v:.4f}")),
        f"Chosen: **{chosen}**. Precision of the top 20% and AUC, mean ± sd over seeds:",
        markdown_table(summary, index=False),
        f"cleanlab's folds on the seed-{args.select_seed} runs: epochs tried, out-of-sample accuracy against the "
        "given labels (what chooses them), and the result:",
        markdown_table(sensitivity.round(4), index=False),
        "cleanlab's own flagged set (find_label_issues, prune_by_noise_rate), mean over seeds:",
        markdown_table(flagged.assign(flagged=flagged["flagged"].map("{:.0f}".format)), index=False),
        "Every candidate score, mean ± sd over seeds:",
        markdown_table(every, index=False)]) + "\n"
    (out.parent / f"{out.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
