"""The 2018 experiment grid as one command (spec §4.3), with our table beside the 2018 README's (spec §5.1),
plus MentorMix rows beside the 2020 README's (2020 spec §4.1).

    python benchmarks/reproduce_2018.py --data-dir data --out runs/2018 [--protocol paper|fast]
        [--gpus 0,1,2] [--datasets cifar10,cifar100] [--noise 0.2,0.4,0.8]
        [--methods baseline,self_paced,focal,pd,dd,mentormix] [--baseline-schedule 2018|mentornet] [--dry-run]
        [--smoke]

Every cell is one ``train-student`` run in ``OUT/<dataset>_<noise>_<method>/``: CIFAR-10 and CIFAR-100 ×
noise 0.2, 0.4, 0.8 × baseline, self-paced, focal loss, MentorNet PD, MentorNet DD and MentorMix.

* ``--protocol paper``: the 2018 ResNet runs (``commands/train_studentnet_resnet.sh``): ``resnet101``,
  39,000 steps of batch 128, lr 0.1 with the piecewise schedule, pad-2 crops, and per method the
  MentorNet, burn-in, fixed epoch and example-dropout schedule of spec §4.3 with p = 0.7, the value every
  released run really used (the commands' ``--loss_p_precentile`` typo was silently ignored). The 2018
  baseline (``cifar_train_baseline.py``) used another schedule, 0.1 then 0.01 from step 19531
  (``--baseline-schedule 2018``, the default); ``--baseline-schedule mentornet`` gives it the MentorNet runs'.
* ``--protocol fast``: ``small_cnn``, 30 epochs, cosine schedule; the same weighting flags.
* ``mentormix`` (2020 spec §3.1): ``--mentormix`` with ``mentornet_pd``, burn-in 10, decay 0.5, no example
  dropout, and per cell the official α, p and second reweighting (``training_mentormix_command.sh``). Under
  ``--protocol paper`` it runs the 2020 setting: ``resnet32``, 200,000 steps of batch 128, lr 0.1 with the
  ``mentormix_2020`` schedule, weight decay 2e-4 without second reweighting and none with it. Its reference
  is the 2020 README's table (column "2020 (ResNet-32)"), not the 2018 one.

With ``--gpus 0,1,2`` the cells run in parallel, one ``cli.py train-student`` process per GPU
(``CUDA_VISIBLE_DEVICES``); without it they run one after another in this process. A cell whose folder
already holds ``last.pt`` is resumed, so an interrupted grid picks up where it stopped. A DD cell whose
MentorNet (``mentornet_dd``) cannot be loaded is skipped, with the reason in the table.

``--smoke`` builds tiny random CIFAR folders and runs every cell for 2 steps on the CPU: plumbing only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import pandas as pd  # noqa: E402

from _table import markdown_table  # noqa: E402

DATASETS = ("cifar10", "cifar100")
NOISE_RATES = (0.2, 0.4, 0.8)
# Spec §4.3: MentorNet and StudentNet-side flags per method (p = 0.7 as really run).
METHODS = {
    "baseline": {"mentornet": "none"},
    "self_paced": {"mentornet": "self_paced_mentornet", "loss_p_percentile": 0.7, "burn_in_epoch": 0,
                   "fixed_epoch_after_burn_in": False, "example_dropout_rates": "0.0,100"},
    "focal": {"mentornet": "focal_loss_mentornet", "loss_p_percentile": 0.7, "burn_in_epoch": 0,
              "fixed_epoch_after_burn_in": False, "example_dropout_rates": "0.0,100"},
    "pd": {"mentornet": "mentornet_pd", "loss_p_percentile": 0.7, "burn_in_epoch": 0,
           "fixed_epoch_after_burn_in": False, "example_dropout_rates": "0.5,17,0.05,83"},
    "dd": {"mentornet": "mentornet_dd", "loss_p_percentile": 0.7, "burn_in_epoch": 18,
           "fixed_epoch_after_burn_in": True, "example_dropout_rates": "0.5,17,0.05,78,0.9,5"},
}
PROTOCOLS = {
    "paper": {"studentnet": "resnet101", "max_steps": 39000, "batch_size": 128, "lr": 0.1, "lr_schedule": "auto"},
    "fast": {"studentnet": "small_cnn", "epochs": 30, "batch_size": 128, "lr": 0.1, "lr_schedule": "cosine"},
}
# 2020 spec §3.1-3.2: the official MentorMix runs; alpha, p and second reweighting come per cell from OFFICIAL_SETTINGS.
MENTORMIX = {"mentornet": "mentornet_pd", "mentormix": True, "burn_in_epoch": 10, "loss_moving_average_decay": 0.5,
             "fixed_epoch_after_burn_in": False, "example_dropout_rates": "0.0,100"}
MENTORMIX_PAPER = {"studentnet": "resnet32", "max_steps": 200000, "batch_size": 128, "lr": 0.1,
                   "lr_schedule": "mentormix_2020"}
METHODS["mentormix"] = MENTORMIX
SMOKE = {"max_steps": 2, "batch_size": 16, "epochs": 1}
# Spec §5.1: the 2018 README's test accuracy, ResNet StudentNet (google/mentornet README.md at 76d6be2).
PAPER_2018 = {
    ("cifar10", 0.2): {"baseline": 0.796, "self_paced": 0.822, "focal": 0.797, "pd": 0.910, "dd": 0.914},
    ("cifar10", 0.4): {"baseline": 0.568, "self_paced": 0.802, "focal": 0.634, "pd": 0.776, "dd": 0.887},
    ("cifar10", 0.8): {"baseline": 0.238, "self_paced": 0.297, "focal": 0.25, "pd": 0.283, "dd": 0.463},
    ("cifar100", 0.2): {"baseline": 0.624, "self_paced": 0.652, "focal": 0.613, "pd": 0.733, "dd": 0.726},
    ("cifar100", 0.4): {"baseline": 0.448, "self_paced": 0.509, "focal": 0.467, "pd": 0.567, "dd": 0.675},
    ("cifar100", 0.8): {"baseline": 0.084, "self_paced": 0.089, "focal": 0.079, "pd": 0.193, "dd": 0.301},
}
# 2020 spec §4.1: the MentorMix README's test accuracy, ResNet-32 (google-research mentormix/README.md).
PAPER_2020 = {("cifar10", 0.2): 0.962, ("cifar10", 0.4): 0.944, ("cifar10", 0.6): 0.890, ("cifar10", 0.8): 0.820,
              ("cifar100", 0.2): 0.778, ("cifar100", 0.4): 0.704, ("cifar100", 0.6): 0.660, ("cifar100", 0.8): 0.392}
FLAG_OF = {"fixed_epoch_after_burn_in": ("--fixed-epoch-after-burn-in", "--no-fixed-epoch-after-burn-in"),
           "mentormix": ("--mentormix", "--no-mentormix"), "second_reweight": ("--second-reweight", "--no-second-reweight")}


def cell_options(dataset: str, noise: float, method: str, args) -> dict:
    """Every train-student option of one cell, named as StudentConfig and WeighterConfig fields."""
    options = {"dataset": dataset, "data_dir": args.data_dir, "noise": noise, "noise_type": args.noise_type,
               "seed": args.seed, **PROTOCOLS[args.protocol], **METHODS[method]}
    if method == "baseline" and args.protocol == "paper" and args.baseline_schedule == "2018":
        options["lr_schedule"] = "baseline_2018"
    if method == "mentormix":
        options.update(mentormix_options(dataset, noise, args.protocol))
    if args.smoke:
        options.update(SMOKE, subset=None, device="cpu")
    return options


def mentormix_options(dataset: str, noise: float, protocol: str) -> dict:
    """A MentorMix cell's official alpha, p and second reweighting (and, for the paper protocol, the 2020 run)."""
    from student_training.mentormix import OFFICIAL_SETTINGS, OFFICIAL_WEIGHT_DECAY

    alpha, p, second_reweight = OFFICIAL_SETTINGS[(dataset, noise)]
    options = {"mixup_alpha": alpha, "loss_p_percentile": p, "second_reweight": second_reweight}
    if protocol == "paper":
        options.update(MENTORMIX_PAPER)
        if not second_reweight:  # with it the official regulariser is 0, which --mentormix does by itself
            options["weight_decay"] = OFFICIAL_WEIGHT_DECAY
    return options


def cli_args(options: dict) -> list[str]:
    args = []
    for key, value in options.items():
        if value is None:
            continue
        if key in FLAG_OF:
            args.append(FLAG_OF[key][0] if value else FLAG_OF[key][1])
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def mentor_problem(name: str) -> str | None:
    """Why a cell's MentorNet cannot be used (e.g. mentornet_dd not yet shipped), or None."""
    if name == "none":
        return None
    from mentor_training.pretrained import load_mentornet

    try:
        load_mentornet(name)
    except (ValueError, FileNotFoundError, KeyError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None


def run_in_process(options: dict, out: Path) -> None:
    from student_training.trainer import StudentConfig, prepare_run, train

    config = StudentConfig().with_options(options)
    resume = (out / "last.pt").is_file()
    train(prepare_run(config, out, resume=resume, force=not resume))


def run_on_gpu(options: dict, out: Path, gpus: Queue) -> None:
    """One cell as its own ``cli.py train-student`` process on the next free GPU."""
    gpu = gpus.get()
    try:
        command = [sys.executable, str(ROOT / "cli.py"), "train-student", "--out", str(out)]
        command += ["--resume"] if (out / "last.pt").is_file() else [*cli_args(options), "--device", "cuda", "--force"]
        with open(out.with_suffix(".log"), "w") as log:
            subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True,
                           env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu})
    finally:
        gpus.put(gpu)


def result_row(cell: dict, out: Path, skipped: str | None) -> dict:
    row = {"dataset": cell["dataset"], "noise": cell["noise"], "method": cell["method"],
           "2018 (ResNet)": PAPER_2018[(cell["dataset"], cell["noise"])].get(cell["method"], ""),
           "2020 (ResNet-32)": PAPER_2020[(cell["dataset"], cell["noise"])] if cell["method"] == "mentormix" else ""}
    metrics = out / "metrics.csv"
    if skipped:
        return {**row, "ours final": "skipped", "ours best": "", "note": skipped}
    if not metrics.is_file():
        return {**row, "ours final": "failed", "ours best": "", "note": f"no {metrics}"}
    frame = pd.read_csv(metrics)
    return {**row, "ours final": round(float(frame["test_accuracy"].iloc[-1]), 4),
            "ours best": round(float(frame["test_accuracy"].max()), 4), "note": f"{int(frame['step'].iloc[-1])} steps"}


def grid(args) -> list[dict]:
    return [{"dataset": d, "noise": n, "method": m} for d in args.datasets for n in args.noise for m in args.methods]


def run_grid(args) -> pd.DataFrame:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = {m: mentor_problem(METHODS[m]["mentornet"]) for m in args.methods}
    for method, problem in problems.items():
        if problem:
            print(f"skipping the {method} cells: {problem}", flush=True)
    gpus: Queue = Queue()
    for gpu in args.gpus:
        gpus.put(gpu)
    jobs = []
    for cell in grid(args):
        folder = out / f"{cell['dataset']}_{cell['noise']}_{cell['method']}"
        options = cell_options(cell["dataset"], cell["noise"], cell["method"], args)
        jobs.append((cell, folder, options, problems[cell["method"]]))
    errors = {}

    def work(job):
        cell, folder, options, problem = job
        if problem:
            return
        try:
            run_on_gpu(options, folder, gpus) if args.gpus else run_in_process(options, folder)
        except Exception as error:  # one failed cell must not lose the others' results
            errors[folder] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"

    if args.gpus:
        with ThreadPoolExecutor(max_workers=len(args.gpus)) as pool:
            list(pool.map(work, jobs))
    else:
        for job in jobs:
            work(job)
    rows = []
    for cell, folder, _, problem in jobs:
        row = result_row(cell, folder, f"{METHODS[cell['method']]['mentornet']} not available" if problem else None)
        if folder in errors:
            row["note"] = errors[folder]
        rows.append(row)
    return pd.DataFrame(rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="paper")
    parser.add_argument("--data-dir", default="data", help="Folder with the CIFAR python archives or folders.")
    parser.add_argument("--out", default="runs/reproduce_2018")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--noise", default=",".join(map(str, NOISE_RATES)))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--noise-type", default="symmetric", help="symmetric or uniform (spec §4.8: unknown).")
    parser.add_argument("--baseline-schedule", choices=("2018", "mentornet"), default="2018",
                        help="paper protocol: the 2018 baseline's own LR schedule, or the MentorNet runs' one.")
    parser.add_argument("--gpus", default="", help="Comma list of GPU ids; one cell per GPU at a time.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="Print each cell's train-student command and stop.")
    parser.add_argument("--smoke", action="store_true", help="Tiny random CIFAR, 2 steps per cell, on the CPU.")
    args = parser.parse_args(argv)
    args.datasets = _choices(args.datasets, DATASETS, "--datasets")
    args.noise = [float(n) for n in _choices(args.noise, [str(n) for n in NOISE_RATES], "--noise")]
    args.methods = _choices(args.methods, METHODS, "--methods")
    args.gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    if args.smoke and args.gpus:
        parser.error("--smoke runs on the CPU; drop --gpus")
    return args


def _choices(text: str, valid, flag: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in valid]
    if bad or not values:
        raise SystemExit(f"Error: {flag} {text!r}: choose from {', '.join(map(str, valid))}")
    return values


def main(argv=None) -> pd.DataFrame | None:
    args = parse_args(argv)
    from student_training.host_memory import keep_freed_memory

    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    with tempfile.TemporaryDirectory() as scratch:
        if args.smoke:
            from _tiny_cifar import build_tiny_cifar

            args.data_dir = str(build_tiny_cifar(Path(scratch) / "tiny_cifar"))
        if args.dry_run:
            for cell in grid(args):
                folder = Path(args.out) / f"{cell['dataset']}_{cell['noise']}_{cell['method']}"
                options = cell_options(cell["dataset"], cell["noise"], cell["method"], args)
                print(shlex.join(["python", "cli.py", "train-student", *cli_args(options), "--out", str(folder)]))
            return None
        start = time.perf_counter()
        table = run_grid(args)
    print(f"protocol {args.protocol}{' (smoke: tiny random data, 2 steps)' if args.smoke else ''}: "
          f"{len(table)} cells in {time.perf_counter() - start:.0f} s; 2018 = README ResNet numbers (spec §5.1); "
          f"2020 = MentorMix README ResNet-32 numbers (2020 spec §4.1)")
    print(markdown_table(table, index=False))
    return table


if __name__ == "__main__":
    main()
