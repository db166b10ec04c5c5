"""A MentorNet learned in the run from its clean subset (``--mentornet learn``) against every hand-written
curriculum and the obvious uses of the clean subset, over seeds (issue #13's evidence grid).

    python benchmarks/learned_accuracy.py --out runs/grid [--methods baseline,...,learned] [--seeds 0,1,2]
        [--settings symmetric:0.2,symmetric:0.4,symmetric:0.8,pairflip:0.45] [--dataset fashion-mnist]
        [--subset 5000] [--studentnet mlp] [--epochs 100] [--clean-subset-fraction 0.1] [--report-only] [--smoke]

Every run is one ``train-student`` run folder with the same student, data subset, noisy labels, clean subset
(10%, seeded and class-balanced), epochs, optimiser and seed; the README's CPU regime by default (``mlp`` on
5,000 Fashion-MNIST images, 100 epochs, SGD momentum 0.9, cosine from 0.1, batch 128). Methods:

* ``baseline`` (``--mentornet none``), ``self_paced_mentornet``, ``mentornet_pd``, ``small_loss_mentornet`` and
  ``mentornet_dd`` (the shipped 2018-style DD): the noisy training set, the clean subset held out (it chooses
  best.pt);
* ``clean_only``: ``--train-on clean_subset``, the clean subset alone with its clean labels;
* ``noisy_plus_clean``: ``--train-on noisy+clean_subset``, the noisy set plus the clean subset's clean labels;
* ``learned``: ``--mentornet learn`` with its defaults;
* ablations, not in the default grid: ``learned_soft``, ``learned_loss_diff``, ``learned_late``,
  ``learned_burn_in``, ``learned_one_epoch``, ``learned_no_trusted`` set one choice of the learned mode back
  to its 2018 value; ``learned_threshold_0.8``, ``learned_first_half`` and ``learned_trusted_mean`` set one
  back to a previous release's; ``learned_keep_rate``, ``learned_keep_rate_probe_0.3``, ``learned_probe_0.3``,
  ``learned_threshold_0.95``, ``learned_precision_0.95``, ``learned_trusted_batch_32``,
  ``learned_trusted_batch_16``, ``learned_threshold_fallback``, ``learned_threshold_min``,
  ``learned_small_probe``, ``learned_fits_to_50``, ``learned_fits_to_70``, ``learned_probe_verified``,
  ``learned_relabel_posterior``, ``learned_relabel_0.9``, ``learned_threshold_odds`` and ``learned_relabel_other``
  are candidates that were measured,
  ``learned_no_relabel`` is the previous release's defaults and ``learned_trusted_batch_64`` the defaults of the
  release before (see ``ABLATIONS`` and docs/learned_choice.md); every ablation but the relabelling ones keeps
  ``--learn-relabel-confidence 0``, as it was measured.

The last three hold a fifth of the clean subset out as their validation split. Nothing is tuned on the test
set: ``learned``'s defaults were chosen on validation accuracy (see docs/learned_choice.md). The grid is
incremental (a complete run folder is read back, a partial one resumed). Writes ``results.csv`` (one row per
run), ``results.md`` (mean ± sd over seeds of final, validation-selected and best test accuracy, fitted noisy
labels and detector AUC at the last epoch) and prints ``plot --run`` commands for the curves. ``--smoke`` is a
tiny setting for tests (digits, 6 epochs, one setting, seeds 0 and 1).
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

import pandas as pd  # noqa: E402

from _grid import add_regime_arguments, apply_smoke, did, folder_state, mean_sd, say, summary_of, train_folder  # noqa: E402
from _table import markdown_table  # noqa: E402
from student_training.config import StudentConfig  # noqa: E402
from student_training.host_memory import keep_freed_memory  # noqa: E402

METHODS = ("baseline", "self_paced_mentornet", "mentornet_pd", "small_loss_mentornet", "mentornet_dd", "clean_only",
           "noisy_plus_clean", "learned")
PREVIOUS = {"learn_trusted_batch": 64, "learn_threshold_fallback": "none"}  # the learned defaults two releases ago
# The learned mode with one choice set back to the 2018 value (issue #13's leads; not in the default grid).
ABLATIONS = {
    "learned_soft": {"learn_weights": "soft"},  # the MentorNet's probability as the weight (2018)
    "learned_loss_diff": {"learn_features": "loss_diff"},  # loss_diff = loss - moving average as an input (2018)
    "learned_late": {"learn_epochs": "30,60"},  # two late re-fits, as --relearn-mentor 30,60
    "learned_burn_in": {"learn_burn_in_weight": 1.0},  # plain training until the first fit (2018 burn-in)
    "learned_one_epoch": {"learn_window": 1},  # each fit sees one epoch's losses, as one dump
    # the trusted part is not trained on (2018: held out), with 2018's plain burn-in (weight 0 would train nothing)
    "learned_no_trusted": {"learn_trusted_batch": 0, "learn_burn_in_weight": 1.0},
    # not 2018 choices, the defaults of the previous release: threshold 0.8, fits in the first half only
    "learned_threshold_0.8": {"learn_threshold": 0.8},
    "learned_first_half": {"learn_epochs": ",".join(str(e) for e in range(5, 55, 5))},
    "learned_keep_rate": {"learn_keep_rate": "probe"},  # a rank cap at the share the fit selected on the probe
    "learned_keep_rate_probe_0.3": {"learn_keep_rate": "probe", "learn_probe_fraction": 0.3},  # and a smaller probe
    # the trusted batch's mean loss added (the default two releases ago; now each trusted sample counts as one)
    "learned_trusted_mean": {"learn_trusted_loss": "mean"},
    # Candidates measured beside the defaults of two releases ago (64 trusted samples a step, an empty fit selecting
    # nothing), which they keep but for the one choice they name; see docs/learned_choice.md.
    "learned_probe_0.3": {**PREVIOUS, "learn_probe_fraction": 0.3},  # a smaller probe, so a larger trusted part
    "learned_threshold_0.95": {**PREVIOUS, "learn_threshold": 0.95},  # a stricter selection
    "learned_precision_0.95": {"learn_trusted_batch": 64, "learn_precision": 0.95},  # a threshold for each fit
    "learned_trusted_batch_64": PREVIOUS,  # the defaults of two releases ago
    # fewer trusted samples a step: at 80% noise a noisy batch selects ~19 of 128 samples, so 64 trusted samples of
    # weight 1 a step see each of the 200 trusted images ~11 times as often as a selected noisy one
    "learned_trusted_batch_32": {**PREVIOUS, "learn_trusted_batch": 32},
    "learned_trusted_batch_16": {**PREVIOUS, "learn_trusted_batch": 16},
    # a fit whose outputs never reach the threshold selects the top probe rows down to a clean share of 0.9 instead
    # of nothing (at 80% noise fits with a probe AUC of 0.98 selected nothing)
    "learned_threshold_fallback": {**PREVIOUS, "learn_threshold_fallback": "precision"},
    # beside the previous defaults: every fit selects down to that clean share where it is below the threshold
    # (the fallback fires only when no row reaches it: a fit with one row at 0.9 selected ~1%)
    "learned_threshold_min": {"learn_threshold_fallback": "min"},
    # beside the previous defaults: learned_probe_0.3's smaller probe (a larger trusted part, 280 images of 400)
    "learned_small_probe": {"learn_probe_fraction": 0.3},
    # beside the previous defaults: the last fit earlier, so that the probe joins the trusted part earlier (the
    # loss bound keeps the last MentorNet from selecting the losses it was not fitted on)
    "learned_fits_to_50": {"learn_epochs": ",".join(str(e) for e in range(5, 55, 5))},
    "learned_fits_to_70": {"learn_epochs": ",".join(str(e) for e in range(5, 75, 5))},
    # beside the previous defaults: the probe trains with its verified labels from the start (the fits still see
    # its losses under the noisy labels), so all 400 verified images train throughout, as in clean_only
    "learned_probe_verified": {"learn_probe_labels": "verified"},
}
# Every ablation above was measured without relabelling (the default until --learn-relabel-confidence's release).
ABLATIONS = {name: {"learn_relabel_confidence": 0.0, **options} for name, options in ABLATIONS.items()}
ABLATIONS.update({
    # the defaults of the previous release: no relabelling
    "learned_no_relabel": {"learn_relabel_confidence": 0.0},
    # candidates measured beside them, relabelling the samples of weight 0 from the first fit on (docs/learned_choice.md):
    # by the posterior given the noisy label (the class of highest softmax x the probe's noise transition) at 0.9
    "learned_relabel_posterior": {"learn_relabel_confidence": 0.9, "learn_relabel_target": "posterior",
                                  "learn_relabel_in_burn_in": False},
    # by the student's predicted class at 0.9
    "learned_relabel_0.9": {"learn_relabel_confidence": 0.9, "learn_relabel_target": "prediction",
                            "learn_relabel_in_burn_in": False},
    # (the posterior rule in the burn-in too, where every noisy sample has weight 0, was the fourth: the defaults now)
    # beside the defaults: the threshold read at an even prior, so at low noise (a mostly clean probe) each fit asks
    # the same likelihood ratio (9) as at an even one (at 20% noise it selected 13% of the corrupted samples)
    "learned_threshold_odds": {"learn_threshold_prior": "odds"},
    # beside the defaults: a refurbished label is never the noisy label the MentorNet gave weight 0 (the posterior
    # among the other classes), so no rejected sample trains on its noisy label past the MentorNet's verdict
    "learned_relabel_other": {"learn_relabel_target": "other"},
})
OPTIONS = {"baseline": {"mentornet": "none"}, "clean_only": {"train_on": "clean_subset", "mentornet": "none"},
           "noisy_plus_clean": {"train_on": "noisy+clean_subset", "mentornet": "none"},
           "learned": {"mentornet": "learn"}}
SUMMARY = ("final_accuracy", "selected_accuracy", "best_accuracy", "fit_noisy", "detector_auc")
SMOKE = {"dataset": "digits", "subset": None, "epochs": 6, "batch_size": 64, "settings": "symmetric:0.4",
         "seeds": "0,1", "clean_subset_fraction": 0.3, "learn_epochs": "20,40"}


def setting_name(noise_type: str, rate: float) -> str:
    """The folder-name tag of a setting (``noise0.4`` for symmetric, as benchmarks/mentormix_accuracy.py names it)."""
    return f"noise{rate:g}" if noise_type == "symmetric" else f"{noise_type}{rate:g}"


def run_config(method: str, noise_type: str, rate: float, seed: int, args) -> StudentConfig:
    options = {"dataset": args.dataset, "subset": args.subset, "noise": rate, "noise_type": noise_type,
               "studentnet": args.studentnet, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
               "seed": seed, "clean_subset_fraction": args.clean_subset_fraction, "record_samples": False,
               "mentornet": method}
    options.update(OPTIONS.get(method, {}))
    if args.learn_epochs and (method == "learned" or method in ABLATIONS):
        options["learn_epochs"] = args.learn_epochs  # an ablation that sets its own (learned_late) keeps it
    if method in ABLATIONS:
        options.update(mentornet="learn", **ABLATIONS[method])
    return StudentConfig(**options)


def run_grid(args, out: Path) -> pd.DataFrame:
    rows = []
    for noise_type, rate in args.settings:
        for method in args.methods:
            for seed in args.seeds:
                name = f"{method}_{setting_name(noise_type, rate)}_seed{seed}"
                folder = out / "runs" / name
                start = time.perf_counter()
                config = run_config(method, noise_type, rate, seed, args)
                if args.report_only and folder_state(folder, config) != "complete":
                    say(f"{name}: not complete, left out (--report-only)")
                    continue
                state, _ = train_folder(folder, config)
                row = {"method": method, "noise_type": noise_type, "noise": rate, "seed": seed, **summary_of(folder),
                       "folder": str(folder)}
                rows.append(row)
                say(f"{name}: final {row['final_accuracy']:.4f} selected {row['selected_accuracy']:.4f} "
                    f"fit_noisy {row['fit_noisy']:.3f} auc {row['detector_auc']:.3f} ({did(state, start)})")
    return pd.DataFrame(rows)


def summary_table(results: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    rows = []
    for (noise_type, noise, method), group in results.groupby(["noise_type", "noise", "method"], sort=False):
        rows.append({"noise": f"{noise_type} {noise:g}", "method": method, "seeds": len(group),
                     **{column: mean_sd(group[column]) for column in SUMMARY}})
    return pd.DataFrame(rows)


def final_by_setting(results: pd.DataFrame) -> pd.DataFrame:
    """Methods as rows, settings as columns: mean ± sd of the final test accuracy (and the seed count)."""
    rows = {}
    for (noise_type, noise, method), group in results.groupby(["noise_type", "noise", "method"], sort=False):
        rows.setdefault(method, {"method": method})[f"{noise_type} {noise:g}"] = \
            f"{mean_sd(group['final_accuracy'])} (n={len(group)})"
    return pd.DataFrame(list(rows.values())).fillna("–")


def write_outputs(out: Path, results: pd.DataFrame, args, argv: list[str]) -> str:
    if results.empty:
        raise SystemExit("Error: no complete run to report")
    results.to_csv(out / "results.csv", index=False)
    title = (f"{args.studentnet} on {args.subset or 'all'} {args.dataset} training images, {args.epochs} epochs, "
             f"clean subset {args.clean_subset_fraction:g}, seeds {','.join(map(str, args.seeds))}: mean ± sd over "
             "seeds (final: last epoch; selected: the epoch the validation split chose; best: the best epoch on "
             "test, an oracle)")
    command = "python benchmarks/learned_accuracy.py " + shlex.join(argv)
    text = (f"{title}\n\n`{command.strip()}`\n\nFinal test accuracy, mean ± sd over seeds (n: seeds):\n\n"
            f"{markdown_table(final_by_setting(results), index=False)}\n\nEvery summary:\n\n"
            f"{markdown_table(summary_table(results, args.methods), index=False)}\n")
    seed = args.seeds[0]
    for noise_type, rate in args.settings:
        chosen = results[(results["noise_type"] == noise_type) & (results["noise"] == rate) & (results["seed"] == seed)]
        runs = " ".join(f"--run {folder}" for folder in chosen["folder"])
        text += (f"\nCurves, {noise_type} {rate:g}, seed {seed}: `python cli.py plot {runs} "
                 f"--out curves_{setting_name(noise_type, rate)}.png`\n")
    (out / "results.md").write_text(text)
    return text


def parse_settings(text: str) -> list[tuple[str, float]]:
    settings = []
    for part in text.split(","):
        kind, _, rate = part.strip().partition(":")
        try:
            settings.append((kind, float(rate)))
        except ValueError:
            raise SystemExit(f"Error: --settings entries are TYPE:RATE, e.g. symmetric:0.4; got {part!r}") from None
    return settings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/learned_accuracy", help="folder of run folders and results")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default="symmetric:0.2,symmetric:0.4,symmetric:0.8,pairflip:0.45")
    add_regime_arguments(parser)
    parser.add_argument("--clean-subset-fraction", type=float, default=0.1)
    parser.add_argument("--learn-epochs", default=None, help="--learn-epochs of the learned runs (default: its own)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: summarise the complete run folders, list the others")
    parser.add_argument("--smoke", action="store_true", help="tiny setting for tests: digits, 6 epochs, 2 seeds")
    args = parser.parse_args(argv)
    apply_smoke(args, argv, SMOKE)
    args.subset = args.subset or None
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS and m not in ABLATIONS]
    if bad or not args.methods:
        parser.error(f"--methods: choose from {', '.join(METHODS + tuple(ABLATIONS))}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.settings = parse_settings(args.settings)
    for noise_type, rate in args.settings:  # every config is checked now, not hours in
        for method in args.methods:
            try:
                run_config(method, noise_type, rate, args.seeds[0], args)
            except (ValueError, TypeError) as error:
                parser.error(f"{method} at {noise_type} {rate:g}: {error}")
    return args


def main(argv=None) -> pd.DataFrame:
    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run_grid(args, out)
    text = write_outputs(out, results, args, argv)
    say(f"{len(results)} runs in {time.perf_counter() - start:.0f} s; wrote {out}/results.csv, results.md")
    print(text)
    return results


if __name__ == "__main__":
    main()
