"""Speed of our MentorNet-weighted training loop against a minimal hand-written PyTorch loop.

    python benchmarks/student_speed.py [--students small_cnn,mlp] [--dataset fashion-mnist] [--subset 5000]
        [--epochs 2] [--repeats 3] [--mentornet mentornet_pd] [--device auto]

For each student, on the same data, network, loader and optimiser:

* ``minimal img/s``: ``for x, y, _ in loader: F.cross_entropy(model(x), y).backward(); opt.step()``;
* ``ours img/s``: ``student_training.trainer.train_one_epoch`` with the MentorNet weighting, the
  per-sample bookkeeping and the learning-rate schedule;
* ``ratio``: ours / minimal (best of ``--repeats`` alternating timings each);
* ``weighting share``: the time of one ``MentorWeighter`` call on a batch of losses divided by the time
  of one of our training steps.

On a GPU it also reports the peak GPU memory of our loop.
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
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _table import markdown_table  # noqa: E402
from student_training.trainer import StudentConfig, prepare_run, train_one_epoch  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def minimal_epoch(run, epoch: int) -> None:
    model, optimizer = run.model, run.optimizer
    model.train()
    for images, labels, _ in run.train_loader.epoch_batches(epoch):
        with torch.autocast(run.device.type, dtype=run.autocast_dtype or torch.bfloat16,
                            enabled=run.autocast_dtype is not None):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def timed(function, run, epochs: int) -> float:
    _sync(run.device)
    start = time.perf_counter()
    for epoch in range(epochs):
        function(run, epoch)
    _sync(run.device)
    return time.perf_counter() - start


def weighting_ms(run, repeats: int = 300) -> float:
    losses = torch.rand(run.config.batch_size, device=run.device) * 3
    for step in range(20):
        run.weighter(losses, step)
    _sync(run.device)
    start = time.perf_counter()
    for step in range(repeats):
        run.weighter(losses, step)
    _sync(run.device)
    return (time.perf_counter() - start) / repeats * 1000


def measure(student: str, args, workdir: Path) -> dict:
    config = StudentConfig(dataset=args.dataset, subset=args.subset, noise=0.4, studentnet=student,
                           mentornet=args.mentornet, epochs=args.epochs, batch_size=args.batch_size,
                           device=args.device)
    run = prepare_run(config, workdir / student)
    images = args.epochs * len(run.train_loader) * config.batch_size
    minimal, ours = [], []
    timed(minimal_epoch, run, 1)  # warm-up
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.repeats):
        minimal.append(timed(minimal_epoch, run, args.epochs))
        ours.append(timed(lambda r, e: train_one_epoch(r, e), run, args.epochs))
    step_ms = min(ours) / (args.epochs * len(run.train_loader)) * 1000
    row = {"student": student, "device": str(run.device), "batch": config.batch_size,
           "minimal img/s": round(images / min(minimal)), "ours img/s": round(images / min(ours)),
           "ratio": round(min(minimal) / min(ours), 3), "step ms": round(step_ms, 2),
           "weighting ms": round(weighting_ms(run), 3)}
    row["weighting share"] = f"{row['weighting ms'] / step_ms:.1%}"
    if run.device.type == "cuda":
        row["peak GPU MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(row, file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default="small_cnn,mlp")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mentornet", default="mentornet_pd")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        rows = [measure(student, args, Path(workdir)) for student in args.students.split(",")]
    print(markdown_table(pd.DataFrame(rows), index=False))


if __name__ == "__main__":
    main()
