"""Brief runs of every StudentNet through train-student, to show that each one trains end to end.

    python benchmarks/students_brief.py [--students small_cnn,inception,resnet32,preact_resnet18,resnet101]
        [--dataset fashion-mnist] [--subset 2000] [--max-steps 10] [--batch-size 64] [--mentornet mentornet_pd]
        [--mentormix]

Prints, per student: parameters, steps, images/s of the whole run (data, weighting, evaluation
included), the last epoch's mean training loss, and the test accuracy. ``--mentormix`` trains each with
MentorMix (the official defaults: alpha 8, second reweighting on) instead of the 2018 weighting. These runs are far
too short to memorise noise, so they say nothing about robustness: see noisy_accuracy.py for that.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import pandas as pd  # noqa: E402

from _table import markdown_table  # noqa: E402
from student_training.trainer import StudentConfig, prepare_run, train  # noqa: E402
from student_training.host_memory import keep_freed_memory  # noqa: E402


def main() -> None:
    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default="small_cnn,inception,resnet32,preact_resnet18,resnet101")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mentornet", default="mentornet_pd")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mentormix", action="store_true", help="train with --mentormix (MentorMix, 2020)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for student in args.students.split(","):
            config = StudentConfig(dataset=args.dataset, subset=args.subset, noise=0.4, studentnet=student,
                                   mentornet=args.mentornet, max_steps=args.max_steps, batch_size=args.batch_size,
                                   device=args.device, mentormix=args.mentormix)
            run = prepare_run(config, Path(workdir) / student)
            start = time.perf_counter()
            history = train(run)
            seconds = time.perf_counter() - start
            rows.append({"student": student, "parameters": sum(p.numel() for p in run.model.parameters()),
                         "steps": history[-1]["step"], "img/s": round(history[-1]["step"] * args.batch_size / seconds, 1),
                         "train loss (last epoch)": round(history[-1]["loss"], 3),
                         "test accuracy": round(history[-1]["test_accuracy"], 4), "device": str(run.device)})
            print(rows[-1], file=sys.stderr, flush=True)
    print(markdown_table(pd.DataFrame(rows), index=False))


if __name__ == "__main__":
    main()
