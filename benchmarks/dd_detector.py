"""How well a MentorNet's weights pick out the clean samples of a held-out dump.

    python benchmarks/dd_detector.py DUMP.csv [--mentornets mentornet_dd,mentornet_pd] [--percentile 0.9]

For every row of the dump (a clean subset with its noisy and clean labels and the student's loss), the
features are those the data-driven fit uses: loss_diff = loss − the dump's loss percentile P (a fraction), label 0,
the dump's epoch. A sample is positive when its noisy label is clean. Printed per weighter: the ROC AUC
of the weight as a clean-vs-noisy detector, and the accuracy of "weight ≥ 0.5 means clean". The
loss-only references are ``self_paced`` at the same percentile (weight 1 when loss_diff ≤ 0) and the
ranking by −loss itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from _table import markdown_table  # noqa: E402
from curricula import get_curriculum  # noqa: E402
from curricula.targets import data_driven_set, read_dump  # noqa: E402
from mentor_training import load_mentornet  # noqa: E402
from student_training.evaluation import detector_auc  # noqa: E402


def detector_table(dump_path: str, mentornets: list[str], percentile: float) -> tuple[pd.DataFrame, int, float]:
    data, _ = data_driven_set(read_dump(dump_path), percentile)
    features, clean = data.features, data.targets.numpy() == 1.0
    scores = {name: load_mentornet(name).weight(features).numpy() for name in mentornets}
    scores[f"self_paced (P={percentile:g})"] = get_curriculum("self_paced").weight(features).numpy()
    scores["−loss (ranking)"] = -features.loss.numpy()
    rows = []
    for name, score in scores.items():
        row = {"weighter": name, "AUC clean-vs-noisy": round(detector_auc(score, clean), 4)}
        if not name.startswith("−loss"):
            row["accuracy of weight ≥ 0.5"] = round(float(np.mean((score >= 0.5) == clean)), 4)
        rows.append(row)
    return pd.DataFrame(rows), len(clean), float(np.mean(~clean))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dump")
    parser.add_argument("--mentornets", default="mentornet_dd,mentornet_pd")
    parser.add_argument("--percentile", type=float, default=0.9, help="a fraction in (0, 1]")
    args = parser.parse_args()
    table, rows, noisy = detector_table(args.dump, args.mentornets.split(","), args.percentile)
    print(f"{args.dump}: {rows} samples, {noisy:.1%} with corrupted labels\n")
    print(markdown_table(table.astype(object).fillna("–"), index=False))


if __name__ == "__main__":
    main()
