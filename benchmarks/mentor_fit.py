"""Wall time and held-out error of the MentorNet recipes, for every seed curriculum.

    python benchmarks/mentor_fit.py [--curricula a,b] [--recipes paper,fast,fast+strata] [--seed 0] [--csv FILE]

Prints Markdown tables: per curriculum, the paper and fast recipes' wall time, held-out mean absolute
error (MAE) and graded-region MAE (rows whose target lies strictly between 0 and 1), and the ratio of
their times; then every row measured. ``RECIPE+strata`` fits with ``balance="strata"``. Targets are
the 2018 grid sample (100k rows, 80/20 split) with the given seed; every recipe sees the same split.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import pandas as pd  # noqa: E402

from _table import markdown_table  # noqa: E402
from curricula import get_curriculum  # noqa: E402
from curricula.targets import curriculum_targets  # noqa: E402
from mentor_training.trainer import fit_mentornet  # noqa: E402

SEED_CURRICULA = ["baseline", "self_paced", "spcl_linear", "hard_example_mining", "focal_loss", "mentornet_pd"]


def run(curricula: list[str], recipes: list[str], seed: int) -> pd.DataFrame:
    rows = []
    for name in curricula:
        split = curriculum_targets(get_curriculum(name), seed=seed)
        for recipe in recipes:
            base, _, balance = recipe.partition("+")
            result = fit_mentornet(split, recipe=base, balance=balance or "none", seed=seed)
            test = result.metrics["test"]
            rows.append({"curriculum": name, "recipe": recipe, "objective": test["objective"],
                         "steps": result.recipe.steps, "batch": result.recipe.batch_size,
                         "seconds": round(result.seconds, 2), "heldout_mae": round(test["mae"], 6),
                         "graded_mae": round(test.get("graded_mae", float("nan")), 4)})
            print(f"{name:<20} {recipe:<6} {result.seconds:7.2f} s  MAE {test['mae']:.5f}", file=sys.stderr)
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    wide = frame.pivot(index="curriculum", columns="recipe", values=["seconds", "heldout_mae", "graded_mae"])
    table = pd.DataFrame({
        "paper s": wide["seconds"]["paper"], "fast s": wide["seconds"]["fast"],
        "speed-up": (wide["seconds"]["paper"] / wide["seconds"]["fast"]).round(1),
        "paper MAE": wide["heldout_mae"]["paper"].map("{:.5f}".format),
        "fast MAE": wide["heldout_mae"]["fast"].map("{:.5f}".format),
        "fast − paper": (wide["heldout_mae"]["fast"] - wide["heldout_mae"]["paper"]).map("{:+.5f}".format),
        "paper graded MAE": wide["graded_mae"]["paper"].map("{:.4f}".format),
        "fast graded MAE": wide["graded_mae"]["fast"].map("{:.4f}".format),
    })
    return table.reindex([c for c in SEED_CURRICULA if c in table.index] +
                         [c for c in table.index if c not in SEED_CURRICULA])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curricula", default=",".join(SEED_CURRICULA))
    parser.add_argument("--recipes", default="paper,fast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", help="also write the raw rows to this CSV file")
    args = parser.parse_args()
    frame = run(args.curricula.split(","), args.recipes.split(","), args.seed)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    if {"paper", "fast"} <= set(frame["recipe"]):
        print(markdown_table(summarise(frame)))
        print()
    print(markdown_table(frame, index=False))


if __name__ == "__main__":
    main()
