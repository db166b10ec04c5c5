"""Speed of our MentorNet-weighted training loop against a minimal hand-written PyTorch loop.

    python benchmarks/student_speed.py [--students small_cnn,mlp] [--dataset fashion-mnist] [--subset 5000]
        [--epochs 2] [--schedule-epochs 100] [--repeats 3] [--mentornet mentornet_pd] [--device auto]

For each student, on the same data, network, loader and optimiser, over ``--epochs`` epochs taken from the
middle of a ``--schedule-epochs`` run (100: the README's regime, so the MentorNet's epoch input changes once an
epoch, as in a real run):

* ``minimal img/s``: ``for x, y, _ in loader: F.cross_entropy(model(x), y).backward(); opt.step()``;
* ``ours img/s``: ``student_training.trainer.train_one_epoch`` with the MentorNet weighting, the
  per-sample bookkeeping and the learning-rate schedule;
* ``ratio``: ours / minimal images/s, the median over ``--repeats`` back-to-back pairs of timings
  (pairing cancels the drifts of a shared machine); within a pair the loop that runs first alternates
  (ABBA: minimal first in pairs 1, 3, ..., ours first in pairs 2, 4, ...), so that whatever running first
  or second in a pair does to a loop falls on both alike (an even ``--repeats`` balances it exactly); the
  images/s columns are the best of the repeats;
* ``weighting ms`` and ``weighting share``: the time of one ``MentorWeighter`` call on a batch of losses,
  repeated on the same losses (so its code and data stay in the caches), and its share of one of our
  training steps;
* ``in-loop weighting ms`` and ``in-loop share``: the same call (``mentor_weights`` then
  ``example_dropout``) timed where it runs, inside ``train_one_epoch``, right after the student's forward
  pass (the median over one epoch's steps, in a further epoch of its own). On the CPU it is several times
  the repeated figure: the student's forward and backward pass evict the caches, so every small operation
  of the weighting starts cold. On a GPU both time the launches, not the kernels (unless the launch queue
  is full after a large forward pass, when a launch waits for the GPU).

A second table, ``per-step overhead``, times what our loop does per step besides the student's forward,
backward and optimiser step, replayed over a 100-epoch run (``--overhead-steps``) on the student's own
per-sample losses, in ``--overhead-repeats`` windows of ``--overhead-window`` consecutive steps taken one
after the other round the run (short windows: on a shared machine the minimum is the least disturbed), for
each part in turn: the weighting (``mentor_weights`` then ``example_dropout``), the bookkeeping
(``EpochStats.add``, and one read of the sums per epoch of steps), the loop glue (the run's step
callbacks, learning rate and param groups, ``distributed.gather_batch`` (the predictions' argmax under DDP), this
rank's shard under DDP, the mean weight where the student's scaled decay uses it) and all of it together, in the order
of ``train_one_epoch``. ``cpu`` columns are this thread's CPU time (``time.thread_time``: steadier on a
shared machine), ``wall`` columns wall-clock time; ``min`` and ``median`` are over the windows, in microseconds per step.
``--overhead-only`` prints only this table (it also runs against a tree from before ``EpochStats`` that
has the step callbacks and ``TrainingRecipe``, such as main before the fast path, for before/after pairs).

GPU mode (``--device cuda``): every student by default (small_cnn, resnet32, preact_resnet18, resnet101,
mlp) on 20,000 Fashion-MNIST images for one timed epoch, under bf16 autocast where the card has it and
channels-last, with ``--compile`` optional; it names the card and adds our loop's peak GPU memory::

    python benchmarks/student_speed.py --device cuda [--compile] [--subset 20000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
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
from student_training import distributed  # noqa: E402
from student_training.host_memory import keep_freed_memory  # noqa: E402
from student_training.callbacks import step_callbacks  # noqa: E402
from student_training.trainer import StudentConfig, learning_rate, prepare_run, train_one_epoch  # noqa: E402
from student_training.weighting import MentorWeighter  # noqa: E402

try:
    from student_training.epoch_stats import EpochStats  # noqa: E402
except ImportError:  # a tree from before EpochStats (for before/after pairs)
    from student_training.trainer import _EpochStats as EpochStats  # noqa: E402
try:
    from student_training.losses import per_sample_cross_entropy  # noqa: E402
except ImportError:  # a tree from before it
    def per_sample_cross_entropy(logits, labels):
        return F.cross_entropy(logits, labels, reduction="none")

# A tree from before gather_batch took the logits (and EpochStats their argmax) takes the predicted classes.
_GATHER_TAKES_LOGITS = "logits" in inspect.signature(distributed.gather_batch).parameters


def gather_batch(losses, logits, world):
    """``distributed.gather_batch`` as ``train_one_epoch`` calls it, in this tree."""
    return distributed.gather_batch(losses, logits if _GATHER_TAKES_LOGITS else logits.detach().argmax(dim=1), world)


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


def timed(function, run, epochs: int, first: int = 0) -> float:
    """Seconds for ``epochs`` epochs of ``function(run, epoch)``, from epoch ``first`` of the run's schedule."""
    _sync(run.device)
    start = time.perf_counter()
    for epoch in range(first, first + epochs):
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


def in_loop_weighting_ms(run, epoch: int) -> float:
    """The median time of the weighting (``mentor_weights`` then ``example_dropout``) inside one epoch of
    ``train_one_epoch``, timed where the training loop calls it."""
    weighter, times = run.weighter, []
    mentor_weights, example_dropout = weighter.mentor_weights, weighter.example_dropout
    start = [0.0]

    def timed_mentor_weights(*args, **kwargs):
        start[0] = time.perf_counter()
        return mentor_weights(*args, **kwargs)

    def timed_example_dropout(*args, **kwargs):
        weights = example_dropout(*args, **kwargs)
        times.append(time.perf_counter() - start[0])
        return weights

    weighter.mentor_weights, weighter.example_dropout = timed_mentor_weights, timed_example_dropout
    try:
        train_one_epoch(run, epoch)
    finally:
        del weighter.mentor_weights, weighter.example_dropout  # the instance attributes: the methods again
    return statistics.median(times) * 1000


def _replay(run, weighter, batches, steps: int, window: range, part: str) -> tuple[float, float]:
    """(cpu, wall) seconds for the steps ``window`` of a ``steps``-step run, one part of our loop's per-step
    work (see the module doc)."""
    config, world = run.config, run.world
    stats = EpochStats(run.data.num_train, run.device)
    schedule, stepping = run.recipe.lr_schedule, step_callbacks(run.callbacks)
    scaled = run.recipe.decay_mode == "scaled"  # train_one_epoch takes the batch's mean weight only then
    prepared = []
    for losses, logits, indices in batches:  # inputs of the later parts, computed outside the timing
        all_losses, predictions = gather_batch(losses, logits, world)
        mentor_weights = weighter.mentor_weights(all_losses, 0)
        prepared.append((all_losses, predictions, mentor_weights, weighter.example_dropout(mentor_weights, 0)))
    count, epoch_steps = len(batches), len(run.train_loader)
    _sync(run.device)
    cpu, wall = time.thread_time(), time.perf_counter()
    for step in window:
        losses, logits, indices = batches[step % count]
        if step % epoch_steps == 0 and part in ("bookkeeping", "total"):
            stats.loss  # the epoch's metrics row reads the sums (EpochStats folds its batches in here)
        if part == "weighting":
            all_losses = prepared[step % count][0]
            mentor_weights = weighter.mentor_weights(all_losses, step)
            weighter.example_dropout(mentor_weights, weighter.last["epoch"])
        elif part == "bookkeeping":
            all_losses, predictions, mentor_weights, all_weights = prepared[step % count]
            stats.add(all_losses, all_weights, mentor_weights, predictions, indices)
        elif part == "glue":
            for callback in stepping:
                callback.on_step(run, step)
            lr = learning_rate(step, steps, run.recipe.lr, schedule)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            all_losses, predictions = gather_batch(losses, logits, world)
            all_weights = prepared[step % count][3]
            if world.enabled:  # train_one_epoch takes this rank's shard only under DDP
                all_weights[world.shard(len(all_weights))]
            if scaled:
                all_weights.mean()
        else:  # everything, in the order of train_one_epoch
            for callback in stepping:
                callback.on_step(run, step)
            lr = learning_rate(step, steps, run.recipe.lr, schedule)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            all_losses, predictions = gather_batch(losses, logits, world)
            mentor_weights = weighter.mentor_weights(all_losses, step)
            all_weights = weighter.example_dropout(mentor_weights, weighter.last["epoch"])
            if world.enabled:  # train_one_epoch takes this rank's shard only under DDP
                all_weights[world.shard(len(all_weights))]
            if scaled:
                all_weights.mean()
            stats.add(all_losses, all_weights, mentor_weights, predictions, indices)
    stats.loss
    _sync(run.device)
    return time.thread_time() - cpu, time.perf_counter() - wall


def step_overhead(run, steps: int, window: int, repeats: int) -> list[dict]:
    """The per-step overhead table: windows of ``window`` consecutive steps of a ``steps``-step run, one
    after the other round the run, on the student's own losses."""
    batches = []
    for images, labels, indices in run.train_loader.epoch_batches(0):
        logits = run.forward_model(images)  # losses with their autograd graph, as in training
        batches.append((per_sample_cross_entropy(logits.float(), labels), logits, indices))
        if len(batches) == 16:
            break
    parts = ("weighting", "bookkeeping", "glue", "total")
    times = {part: [] for part in parts}
    for repeat in range(repeats + 1):  # the first round warms up
        start = (repeat * window) % steps
        for part in parts:  # interleaved, so that drifts of a shared machine touch every part alike
            weighter = MentorWeighter(run.weighter.mentor, run.weighter.config, total_steps=steps)
            cpu, wall = _replay(run, weighter, batches, steps, range(start, start + window), part)
            if repeat:
                times[part].append((cpu / window * 1e6, wall / window * 1e6))
    rows = []
    for part in parts:
        cpu, wall = [t[0] for t in times[part]], [t[1] for t in times[part]]
        rows.append({"part": part, "batch": run.config.batch_size, "run steps": steps, "window": window,
                     "windows": repeats,
                     "cpu µs min": round(min(cpu), 1), "cpu µs median": round(statistics.median(cpu), 1),
                     "wall µs min": round(min(wall), 1), "wall µs median": round(statistics.median(wall), 1)})
    return rows


CPU_DEFAULTS = {"students": "small_cnn,mlp", "subset": 5000, "epochs": 2, "repeats": 3}
GPU_DEFAULTS = {"students": "small_cnn,resnet32,preact_resnet18,resnet101,mlp", "subset": 20000, "epochs": 1,
                "repeats": 2}


def measure(student: str, args, workdir: Path) -> dict:
    # The run has a --schedule-epochs schedule and the timed epochs are taken from its middle, so that what
    # changes once per progress epoch (the MentorNet's epoch input, the burn-in floor, the dropout rate) changes
    # as often as in a real run of that length: in a schedule of 2 epochs every step is a new progress epoch.
    config = StudentConfig(dataset=args.dataset, subset=args.subset, noise=0.4, studentnet=student,
                           mentornet=args.mentornet, epochs=max(args.schedule_epochs, args.epochs + 1),
                           batch_size=args.batch_size, device=args.device, compile=args.compile)
    run = prepare_run(config, workdir / student)
    first = (config.epochs - args.epochs) // 2
    images = args.epochs * len(run.train_loader) * config.batch_size
    minimal, ours = [], []
    timed(minimal_epoch, run, 1, first)  # warm-up (and compilation, with --compile)
    timed(lambda r, e: train_one_epoch(r, e), run, 1, first)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for repeat in range(args.repeats):  # ABBA: the loop that runs first alternates from pair to pair
        for loop in ((minimal, ours) if repeat % 2 == 0 else (ours, minimal)):
            if loop is minimal:
                minimal.append(timed(minimal_epoch, run, args.epochs, first))
            else:
                ours.append(timed(lambda r, e: train_one_epoch(r, e), run, args.epochs, first))
    step_ms = min(ours) / (args.epochs * len(run.train_loader)) * 1000
    row = {"student": student, "device": str(run.device), "batch": config.batch_size,
           "minimal img/s": round(images / min(minimal)), "ours img/s": round(images / min(ours)),
           "ratio": round(statistics.median(m / o for m, o in zip(minimal, ours)), 3), "step ms": round(step_ms, 2),
           "weighting ms": round(weighting_ms(run), 3)}
    row["weighting share"] = f"{row['weighting ms'] / step_ms:.1%}"
    row["in-loop weighting ms"] = round(in_loop_weighting_ms(run, first), 3)
    row["in-loop share"] = f"{row['in-loop weighting ms'] / step_ms:.1%}"
    if run.device.type == "cuda":
        row["peak GPU MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
        row["autocast"] = str(run.autocast_dtype).replace("torch.", "") if run.autocast_dtype else "fp32"
    print(row, file=sys.stderr, flush=True)
    return row


def main() -> None:
    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default=None, help=f"CPU: {CPU_DEFAULTS['students']}; GPU: all")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--subset", type=int, default=None, help="CPU: 5000; GPU: 20000")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per repeat; CPU: 2, GPU: 1")
    parser.add_argument("--repeats", type=int, default=None, help="CPU: 3, GPU: 2")
    parser.add_argument("--schedule-epochs", type=int, default=100,
                        help="the length of the timed run's schedule; the timed epochs are taken from its middle "
                             "(default 100, the README's regime)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mentornet", default="mentornet_pd")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the student (our loop only)")
    parser.add_argument("--overhead-steps", type=int, default=3900,
                        help="steps of the replayed run for the per-step overhead table (100 epochs of 39)")
    parser.add_argument("--overhead-window", type=int, default=390, help="steps timed at a time (10 epochs)")
    parser.add_argument("--overhead-repeats", type=int, default=30, help="windows timed per part")
    parser.add_argument("--overhead-only", action="store_true", help="only the per-step overhead table")
    args = parser.parse_args()
    gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    for key, value in (GPU_DEFAULTS if gpu else CPU_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.mentornet == "none":
        sys.exit("Error: --mentornet none has no weighting to time; name a MentorNet (default mentornet_pd)")
    if gpu and not torch.cuda.is_available():
        sys.exit("Error: --device cuda was asked for, but no CUDA GPU is available")
    if gpu:
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
              f"bf16 {torch.cuda.is_bf16_supported()}, compile {args.compile}")
    with tempfile.TemporaryDirectory() as workdir:
        if not args.overhead_only:
            rows = [measure(student, args, Path(workdir)) for student in args.students.split(",")]
            print(markdown_table(pd.DataFrame(rows), index=False))
        config = StudentConfig(dataset=args.dataset, subset=args.subset, noise=0.4, studentnet="mlp",
                               mentornet=args.mentornet, epochs=args.epochs, batch_size=args.batch_size,
                               device=args.device)
        run = prepare_run(config, Path(workdir) / "overhead")
        print(f"\nper-step overhead ({args.mentornet}, {run.device}, torch threads {torch.get_num_threads()}):")
        rows = step_overhead(run, args.overhead_steps, args.overhead_window, args.overhead_repeats)
        print(markdown_table(pd.DataFrame(rows), index=False))


if __name__ == "__main__":
    main()
