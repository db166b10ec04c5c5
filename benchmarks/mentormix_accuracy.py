"""MentorMix against its baselines on real noisy labels, over seeds (issue #14's evidence grid).

    python benchmarks/mentormix_accuracy.py --out runs/mentormix_accuracy --learned my_mentornet.pt
        [--methods baseline,mixup,mentornet_pd,small_loss_mentornet,mentormix_pd,mentormix_learned]
        [--seeds 0,1,2] [--noise 0.2,0.4,0.8] [--dataset fashion-mnist] [--subset 5000] [--studentnet mlp]
        [--epochs 100] [--batch-size 128] [--lr LR] [--alpha A] [--p P] [--second-reweight auto|on|off]
        [--tune [--alphas 2,4,8] [--ps 0.5,0.6,0.7,0.8] [--tune-seeds 0] [--validation-fraction 0.1]
                [--validation-labels noisy|clean]]
        [--smoke]

Every run goes through ``train-student``'s one loop with the same student, data subset, noisy labels, epochs,
optimiser and seed (README's CPU regime by default: ``mlp`` on 5,000 Fashion-MNIST images, 100 epochs, SGD
momentum 0.9, cosine lr from 0.1, batch 128, no weight decay); only the weighting differs:

* ``baseline``: ``--mentornet none`` (cross-entropy);
* ``mixup``: ``--mentormix --mentornet baseline_mentornet --no-second-reweight``, plain mixup on the same code
  path (every weight 1 to within 3e-4);
* ``mentornet_pd``, ``small_loss_mentornet``: the 2018 weighting with that MentorNet and its checkpoint's
  ``student_defaults``;
* ``mentormix_pd``: ``--mentormix --mentornet mentornet_pd``;
* ``mentormix_learned``: ``--mentormix --mentornet LEARNED`` (``--learned PATH``: a checkpoint made by
  ``learn-curriculum``, e.g. a data-driven one).

MentorMix's α, p and second reweighting (mixup: α) per noise rate are, by default, the official CIFAR-10
values at that rate (2020 spec §3.1: 0.2 → α 2, p 0.8, off; 0.4 → 8, 0.6, off; 0.6 → 8, 0.6, on; 0.8 → 4,
0.2, on). ``--alpha``/``--p`` fix them instead. ``--tune`` chooses them on a validation split, never on the
test set: for each noise rate and tuned method, every candidate of ``--alphas`` × ``--ps`` (mixup: α only)
is trained on the training set minus a held-out ``--validation-fraction`` (the toolkit's clean-subset
split, class-balanced and seeded), scored by the final model's accuracy on the held-out images against
their noisy labels (``--validation-labels noisy``, all a practitioner has) or their true ones (``clean``),
averaged over ``--tune-seeds``; the best candidate (the first on a tie) is then trained on the whole
training set for every seed. Second reweighting follows the official rule (on from noise 0.6) unless
``--second-reweight on|off`` is given; it is not tuned.

Outputs under ``--out``: ``runs/<run>/`` (one train-student run folder each, kept for
``python cli.py plot --run ...``), ``tune/<run>/`` (with ``validation.json``), ``results.csv`` (one row per
run), ``tuning.csv`` (one row per candidate) and ``results.md`` (mean ± sd over seeds of final and best test
accuracy, fitted noisy labels and detector AUC, the choices and the command). The grid is incremental: a
complete run folder is read, not retrained; an interrupted one is resumed from its ``last.pt``; a folder
holding a run with other options is an error. ``--smoke`` is a tiny setting for tests (bundled digits, 3
epochs, noise 0.4, seeds 0 and 1, 2 α and 1 p).
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from _grid import add_regime_arguments, apply_smoke, mean_sd, say, summary_of, train_folder, did as _did  # noqa: E402
from _table import markdown_table  # noqa: E402
from student_training.config import StudentConfig  # noqa: E402
from student_training.host_memory import keep_freed_memory  # noqa: E402
from student_training.mentormix import OFFICIAL_SETTINGS  # noqa: E402

METHODS = ("baseline", "mixup", "mentornet_pd", "small_loss_mentornet", "mentormix_pd", "mentormix_learned")
TUNED = {"mixup": ("alpha",), "mentormix_pd": ("alpha", "p"), "mentormix_learned": ("alpha", "p")}
SUMMARY = ("final_accuracy", "best_accuracy", "fit_noisy", "detector_auc")
SMOKE = {"dataset": "digits", "subset": None, "epochs": 3, "batch_size": 64, "noise": "0.4", "seeds": "0,1",
         "alphas": "2,8", "ps": "0.7", "tune_seeds": "0"}


@dataclass(frozen=True)
class Hyper:
    """MentorMix's settings for one method at one noise rate (None where the method has no such setting)."""

    alpha: float | None = None
    p: float | None = None
    second_reweight: bool | None = None

    def tag(self) -> str:
        parts = [f"a{self.alpha:g}" if self.alpha is not None else "", f"p{self.p:g}" if self.p is not None else "",
                 {True: "sr", False: "", None: ""}[self.second_reweight]]
        return "".join(f"_{part}" for part in parts if part)


# ------------------------------------------------------------------------------------------ configs


def official(noise: float) -> tuple[float, float, bool]:
    """The official CIFAR-10 (alpha, p, second reweight) at ``noise`` (2020 spec §3.1)."""
    if ("cifar10", noise) not in OFFICIAL_SETTINGS:
        rates = sorted(n for d, n in OFFICIAL_SETTINGS if d == "cifar10")
        raise SystemExit(f"Error: noise {noise} has no official MentorMix setting (only {rates}); "
                         "give --alpha and --p, or --tune")
    return OFFICIAL_SETTINGS[("cifar10", noise)]


def second_reweight_for(noise: float, args) -> bool:
    if args.second_reweight != "auto":
        return args.second_reweight == "on"
    return noise >= 0.6  # the official rule (2020 spec §3.1)


@functools.lru_cache(maxsize=None)
def _uses_loss_diff(mentornet: str) -> bool:
    from mentor_training.pretrained import load_mentornet

    return load_mentornet(mentornet).config.uses_loss_diff


def has_p(method: str, args) -> bool:
    """Whether MentorMix's loss percentile p changes the method's weights: it defines loss_diff (2020 spec §2,
    steps a-c), which a MentorNet fitted on the loss alone (``--learned`` from ``--mentornet learn``) ignores;
    train-student refuses p for such a MentorNet."""
    if method == "mixup":
        return False
    return method != "mentormix_learned" or _uses_loss_diff(args.learned)


def default_hyper(method: str, noise: float, args) -> Hyper:
    """The hyper-parameters a method uses without --tune: --alpha/--p, else the official CIFAR-10 values."""
    if method not in TUNED:
        return Hyper()
    alpha, p = args.alpha, args.p
    if alpha is None or (p is None and has_p(method, args)):
        official_alpha, official_p, _ = official(noise)
        alpha = official_alpha if alpha is None else alpha
        p = official_p if p is None else p
    if method == "mixup":
        return Hyper(alpha=alpha, second_reweight=False)
    return Hyper(alpha=alpha, p=p if has_p(method, args) else None, second_reweight=second_reweight_for(noise, args))


def run_config(method: str, noise: float, seed: int, hyper: Hyper, args, *, validation: float = 0.0) -> StudentConfig:
    """The train-student options of one run (``validation``: the fraction held out for --tune)."""
    mentornet = {"baseline": "none", "mixup": "baseline_mentornet", "mentormix_pd": "mentornet_pd",
                 "mentormix_learned": args.learned}.get(method, method)
    options = {"dataset": args.dataset, "subset": args.subset, "noise": noise, "noise_type": args.noise_type,
               "studentnet": args.studentnet, "mentornet": mentornet, "epochs": args.epochs,
               "batch_size": args.batch_size, "lr": args.lr, "seed": seed,
               "clean_subset_fraction": validation or args.clean_subset_fraction, "record_samples": False}
    if method in TUNED:
        options.update(mentormix=True, mixup_alpha=hyper.alpha, second_reweight=hyper.second_reweight)
    weighter = {"loss_p_percentile": hyper.p} if hyper.p is not None else {}
    return StudentConfig(**options, weighter=weighter)


# ------------------------------------------------------------------------------------------ tuning


def candidates(method: str, noise: float, args) -> list[Hyper]:
    second = second_reweight_for(noise, args)
    if method == "mixup":
        return [Hyper(alpha=a, second_reweight=False) for a in args.alphas]
    ps = args.ps if has_p(method, args) else [None]
    return [Hyper(alpha=a, p=p, second_reweight=second) for a in args.alphas for p in ps]


def tune(args, out: Path) -> tuple[dict, pd.DataFrame]:
    """Pick each tuned method's hyper-parameters per noise rate by validation accuracy."""
    chosen, rows = {}, []
    for noise in args.noise:
        for method in [m for m in args.methods if m in TUNED]:
            scores = []
            for hyper in candidates(method, noise, args):
                accuracies = []
                for seed in args.tune_seeds:
                    name = f"{method}_noise{noise:g}{hyper.tag()}_seed{seed}"
                    config = run_config(method, noise, seed, hyper, args, validation=args.validation_fraction)
                    start = time.perf_counter()
                    state, score = train_folder(out / "tune" / name, config, validation_labels=args.validation_labels)
                    accuracies.append(score)
                    rows.append({"method": method, "noise": noise, "seed": seed, "mixup_alpha": hyper.alpha,
                                 "loss_p_percentile": hyper.p, "second_reweight": hyper.second_reweight,
                                 "validation_accuracy": score, "validation_labels": args.validation_labels,
                                 "folder": str(out / "tune" / name)})
                    say(f"tune {name}: validation accuracy {score:.4f} ({_did(state, start)})")
                scores.append((float(np.mean(accuracies)), hyper))
            best = max(range(len(scores)), key=lambda i: (scores[i][0], -i))  # the first on a tie
            chosen[(method, noise)] = scores[best][1]
            say(f"tune {method} noise {noise:g}: chose {scores[best][1].tag().lstrip('_')} "
                f"(validation accuracy {scores[best][0]:.4f})")
    return chosen, pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ the grid


def run_grid(args, out: Path, chosen: dict) -> pd.DataFrame:
    rows = []
    for noise in args.noise:
        for method in args.methods:
            hyper = chosen.get((method, noise)) or default_hyper(method, noise, args)
            for seed in args.seeds:
                name = f"{method}_noise{noise:g}{hyper.tag()}_seed{seed}"
                folder = out / "runs" / name
                start = time.perf_counter()
                state, _ = train_folder(folder, run_config(method, noise, seed, hyper, args))
                result = {"method": method, "noise": noise, "seed": seed,
                          "mentornet": run_config(method, noise, seed, hyper, args).mentornet,
                          "mixup_alpha": hyper.alpha, "loss_p_percentile": hyper.p,
                          "second_reweight": hyper.second_reweight,
                          "chosen_by": "validation" if (method, noise) in chosen else
                          ("official/fixed" if method in TUNED else ""),
                          **summary_of(folder), "folder": str(folder)}
                rows.append(result)
                say(f"{name}: final {result['final_accuracy']:.4f} best {result['best_accuracy']:.4f} "
                    f"fit_noisy {result['fit_noisy']:.3f} ({_did(state, start)})")
    return pd.DataFrame(rows)


def summary_table(results: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    rows = []
    for (noise, method), group in results.groupby(["noise", "method"], sort=False):
        first = group.iloc[0]
        setting = ", ".join(part for part in (
            f"α {first['mixup_alpha']:g}" if pd.notna(first["mixup_alpha"]) else "",
            f"p {first['loss_p_percentile']:g}" if pd.notna(first["loss_p_percentile"]) else "",
            "2nd reweight" if first["second_reweight"] in (True,) else "") if part)
        rows.append({"noise": noise, "method": method, "setting": setting or "–", "seeds": len(group),
                     **{column: mean_sd(group[column]) for column in SUMMARY}})
    table = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(methods)}
    return table.sort_values(["noise", "method"], key=lambda s: s.map(order) if s.name == "method" else s)


def write_outputs(out: Path, results: pd.DataFrame, tuning: pd.DataFrame, args, argv: list[str]) -> str:
    results.to_csv(out / "results.csv", index=False)
    if not tuning.empty:
        tuning.to_csv(out / "tuning.csv", index=False)
    title = (f"{args.studentnet} on {args.subset or 'all'} {args.dataset} training images, {args.epochs} epochs, "
             f"{args.noise_type} noise, seeds {','.join(map(str, args.seeds))}: mean ± sd over seeds")
    command = "python benchmarks/mentormix_accuracy.py " + shlex.join(argv)
    text = f"{title}\n\n`{command.strip()}`\n\n{markdown_table(summary_table(results, args.methods), index=False)}\n"
    if not tuning.empty:
        picked = tuning.groupby(["noise", "method", "mixup_alpha", "loss_p_percentile"], dropna=False, sort=False)[
            "validation_accuracy"].mean().reset_index()
        text += (f"\nValidation accuracy ({args.validation_labels} labels of the held-out "
                 f"{args.validation_fraction:g} of the training set, mean over tune seeds "
                 f"{','.join(map(str, args.tune_seeds))}) of every candidate:\n\n"
                 f"{markdown_table(picked.round(4), index=False)}\n")
    seed = args.seeds[0]
    for noise in args.noise:
        folders = results[(results["noise"] == noise) & (results["seed"] == seed)]["folder"]
        runs = " ".join(f"--run {folder}" for folder in folders)
        text += f"\nCurves at noise {noise:g}, seed {seed}: `python cli.py plot {runs} --out curves_{noise:g}.png`\n"
    (out / "results.md").write_text(text)
    return text


# ------------------------------------------------------------------------------------------ main


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"Error: expected numbers separated by commas, got {text!r}") from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/mentormix_accuracy", help="folder of run folders and results")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--learned", default=None, metavar="PATH",
                        help="the learned MentorNet of mentormix_learned (a learn-curriculum checkpoint)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--noise", default="0.2,0.4,0.8")
    parser.add_argument("--noise-type", default="symmetric")
    add_regime_arguments(parser)
    parser.add_argument("--clean-subset-fraction", type=float, default=0.0,
                        help="hold this clean subset out of every run (it then chooses best.pt); 0.1 shares the "
                             "runs of benchmarks/learned_accuracy.py given the same --out")
    parser.add_argument("--alpha", type=float, default=None, help="fix mixup/MentorMix alpha for every noise rate")
    parser.add_argument("--p", type=float, default=None,
                        help="fix MentorMix's loss percentile for every noise rate (not used with a --learned MentorNet "
                        "fitted on the loss alone, which has no loss_diff input)")
    parser.add_argument("--second-reweight", choices=("auto", "on", "off"), default="auto",
                        help="auto: on from noise 0.6, as in the official runs")
    parser.add_argument("--tune", action="store_true", help="choose alpha and p on a validation split")
    parser.add_argument("--alphas", default="2,4,8")
    parser.add_argument("--ps", default="0.5,0.6,0.7,0.8")
    parser.add_argument("--tune-seeds", default="0")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--validation-labels", choices=("noisy", "clean"), default="noisy")
    parser.add_argument("--smoke", action="store_true", help="tiny setting for tests: digits, 3 epochs, 2 seeds")
    args = parser.parse_args(argv)
    apply_smoke(args, argv, SMOKE)
    args.subset = args.subset or None
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        parser.error(f"--methods: choose from {', '.join(METHODS)}")
    if "mentormix_learned" in args.methods:
        if args.learned is None:
            parser.error("mentormix_learned needs --learned PATH (or drop it from --methods)")
        from mentor_training.pretrained import resolve_mentornet_path

        try:
            resolve_mentornet_path(args.learned)
        except (ValueError, FileNotFoundError) as error:
            parser.error(f"--learned: {str(error).splitlines()[0]}")
    args.seeds = [int(s) for s in _floats(args.seeds)]
    args.tune_seeds = [int(s) for s in _floats(args.tune_seeds)]
    args.noise, args.alphas, args.ps = _floats(args.noise), _floats(args.alphas), _floats(args.ps)
    if not 0 < args.validation_fraction < 1:
        parser.error("--validation-fraction must lie in (0, 1)")
    if args.tune and (args.alpha is not None or args.p is not None):
        parser.error("--tune chooses alpha and p; drop --alpha/--p")
    for noise in args.noise:  # fail now, not hours in
        for method in args.methods:
            if not args.tune:
                default_hyper(method, noise, args)
    return args


def main(argv=None) -> pd.DataFrame:
    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chosen, tuning = tune(args, out) if args.tune else ({}, pd.DataFrame())
    results = run_grid(args, out, chosen)
    text = write_outputs(out, results, tuning, args, argv)
    say(f"{len(results)} runs in {time.perf_counter() - start:.0f} s; wrote {out}/results.csv, results.md"
        + (", tuning.csv" if not tuning.empty else ""))
    print(text)
    return results


if __name__ == "__main__":
    main()
