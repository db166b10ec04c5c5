"""What the noisy set is worth to a student that has the clean subset: the trusted images alone, plus an oracle's
choice of the noisy set's right labels, and plus the selections a student can make itself (issue #13's "why").

    python benchmarks/selection_ceiling.py [--settings symmetric:0.8] [--seeds 0,1,2] [--out docs/selection_ceiling]
        [--dataset fashion-mnist] [--subset 5000] [--studentnet mlp] [--epochs 100] [--clean-subset-fraction 0.1]

The README's CPU regime by default (mlp on 5,000 Fashion-MNIST images, 100 epochs, batch 128) and the student's
own recipe as train-student uses it (for the mlp: SGD momentum 0.9, cosine from 0.1, no weight decay), with the
grid's noisy labels and clean subset for each seed: ``make_noisy_labels`` and ``split_clean_subset`` as
``train-student --train-on clean_subset`` draws them (a fifth of the clean subset is the validation split, the
other 400 images are trained on). Each row trains a fresh student, the same initialisation and loop for every row,
on the 400 verified images plus a set S of noisy-set samples:

* ``clean_only``: S empty (this loop's own clean-only student, M0);
* ``oracle_right``: every noisy-set sample whose noisy label is its true one (an oracle: no method knows this);
* ``oracle_easy``: those of them M0 already classifies right (an oracle too: what a perfect filter of M0's
  agreements keeps);
* ``agreement``: M0's prediction equals the noisy label (the small-loss idea, from M0 once);
* ``agreement_0.99``: and M0's softmax probability of it is at least 0.99;
* ``self_training_0.99``: every noisy-set sample M0 predicts with probability at least 0.99, on M0's prediction.

S trains on the noisy label in every row but the last (where the noisy label is the true one in the oracle rows).
Reported per row, mean ± sd over seeds: the size of S, the share of S whose training label is its true class
(precision), and the final test and validation accuracy. Nothing is chosen on test: every row is a fixed rule,
reported, not selected. Writes ``results.csv`` and ``results.md`` under ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _grid import add_regime_arguments, mean_sd, say  # noqa: E402
from _table import markdown_table  # noqa: E402
from student_training.data import load_dataset  # noqa: E402
from student_training.evaluation import accuracy  # noqa: E402
from student_training.learned_mentornet import split_clean_subset  # noqa: E402
from student_training.loader import DeviceLoader  # noqa: E402
from student_training.models import create_student  # noqa: E402
from student_training.noise import make_noisy_labels  # noqa: E402
from student_training.config import StudentConfig  # noqa: E402
from student_training.trainer import learning_rate, make_optimizer  # noqa: E402

ROWS = ("clean_only", "oracle_right", "oracle_easy", "agreement", "agreement_0.99", "self_training_0.99")
CONFIDENCE = 0.99


def run_config(args, noise_type: str, rate: float, seed: int) -> StudentConfig:
    """``train-student --train-on clean_subset``'s configuration for one setting and seed: it validates every
    option (the noise type and rate, epochs, learning rate, batch, clean-subset fraction) before anything trains,
    and its recipe (learning rate, schedule, weight decay, augmentation) is the one each row trains with."""
    config = StudentConfig(dataset=args.dataset, data_dir=args.data_dir, subset=args.subset or None,
                           noise=rate, noise_type=noise_type, studentnet=args.studentnet, mentornet="none",
                           epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                           clean_subset_fraction=args.clean_subset_fraction, train_on="clean_subset",
                           record_samples=False, device="cpu")
    if config.recipe.decay_mode == "scaled":
        raise ValueError(f"--studentnet {args.studentnet}'s 2018 weight decay is scaled by the sample weights of "
                         "train-student's weighting, which this benchmark does not run; choose another student")
    return config


def train_student(data, labels: torch.Tensor, indices: torch.Tensor, config: StudentConfig) -> torch.nn.Module:
    """A fresh student (seeded) trained on the pool ``indices`` with ``labels`` (a pool-sized label tensor), as
    train-student trains one: its recipe's optimiser, schedule, augmentation and weight decay, one batch of
    at most ``--batch-size`` of the pool a step."""
    recipe = config.recipe
    model = create_student(config.studentnet, num_classes=data.num_classes, in_channels=data.in_channels,
                           image_size=data.image_size, seed=config.seed)
    optimizer = make_optimizer(model, recipe, config.momentum)
    loader = DeviceLoader(data.train_images, labels, indices, batch_size=min(config.batch_size, len(indices)),
                          augment=config.augmented, pad=recipe.pad, seed=config.seed, device="cpu",
                          channels_last=recipe.channels_last)
    total, step = config.epochs * len(loader), 0
    model.train()
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        for images, targets, _ in loader:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total, recipe.lr, recipe.lr_schedule)
            loss = F.cross_entropy(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return model.eval()


@torch.no_grad()
def probabilities(model: torch.nn.Module, data, indices: torch.Tensor) -> torch.Tensor:
    loader = DeviceLoader(data.train_images, data.train_labels, indices, batch_size=1000, augment=False,
                          shuffle=False, drop_last=False, device="cpu")
    return torch.cat([F.softmax(model(images), dim=1) for images, _, _ in loader])


def setting_data(config: StudentConfig):
    """The data, noisy labels and clean-subset parts of one setting and seed, as train-student draws them;
    ``ValueError`` when the trusted part is too small to train on or the validation split is empty (as
    ``train-student --train-on clean_subset`` refuses them)."""
    data = load_dataset(config.dataset, data_dir=config.data_dir, subset=config.subset,
                        clean_subset_fraction=config.clean_subset_fraction, seed=config.seed)
    truth = data.train_labels
    noisy = torch.as_tensor(make_noisy_labels(truth, noise_type=config.noise_type, rate=config.noise,
                                              num_classes=data.num_classes, seed=config.seed,
                                              dataset=config.dataset).noisy_labels)
    subset = data.clean_subset_indices
    parts = split_clean_subset(subset, truth[subset], probe_fraction=None, validation=True, seed=config.seed)
    if len(parts.trusted) < 2 or len(parts.validation) < 1:
        trusted, held = len(parts.trusted), len(parts.validation)
        raise ValueError(f"--clean-subset-fraction {config.clean_subset_fraction:g} leaves {trusted} verified "
                         f"training image{'s' * (trusted != 1)} and {held} validation image{'s' * (held != 1)}; "
                         "raise it")
    return data, noisy, parts


def one_setting(config: StudentConfig, data, noisy: torch.Tensor, parts) -> list[dict]:
    """The rows of one setting and seed, from :func:`setting_data`'s data, noisy labels and clean-subset parts."""
    noise_type, rate, seed = config.noise_type, config.noise, config.seed
    truth = data.train_labels
    trusted, noisy_set = parts.trusted, data.train_indices
    test = DeviceLoader(data.test_images, data.test_labels, None, batch_size=1000, augment=False, shuffle=False,
                        drop_last=False, device="cpu")
    validation = DeviceLoader(data.train_images, truth, parts.validation, batch_size=1000, augment=False,
                              shuffle=False, drop_last=False, device="cpu")
    labels = noisy.clone()
    labels[trusted] = truth[trusted]
    m0 = train_student(data, labels, trusted, config)
    p0 = probabilities(m0, data, noisy_set)
    confidence, predicted = p0.max(dim=1)
    right = noisy[noisy_set] == truth[noisy_set]
    agree = predicted == noisy[noisy_set]
    choices = {"oracle_right": (right, noisy), "oracle_easy": (right & agree, noisy), "agreement": (agree, noisy),
               "agreement_0.99": (agree & (confidence >= CONFIDENCE), noisy),
               "self_training_0.99": (confidence >= CONFIDENCE, None)}
    rows = []
    for name in ROWS:
        start = time.perf_counter()
        if name == "clean_only":
            model, chosen, chosen_labels = m0, noisy_set[:0], truth[:0]
        else:
            mask, source = choices[name]
            chosen = noisy_set[mask]
            step_labels = labels.clone()
            step_labels[chosen] = predicted[mask] if source is None else source[chosen]
            chosen_labels = step_labels[chosen]
            model = train_student(data, step_labels, torch.cat([trusted, chosen]), config)
        rows.append({"setting": f"{noise_type} {rate:g}", "row": name, "seed": seed, "added": len(chosen),
                     "precision": float((chosen_labels == truth[chosen]).float().mean()) if len(chosen) else math.nan,
                     "test_accuracy": accuracy(model, test), "val_accuracy": accuracy(model, validation)})
        say(f"{noise_type} {rate:g} seed {seed} {name}: {rows[-1]['added']} added, test "
            f"{rows[-1]['test_accuracy']:.4f} ({time.perf_counter() - start:.0f} s)")
    return rows


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    table = []
    for (setting, row), group in frame.groupby(["setting", "row"], sort=False):
        table.append({"setting": setting, "row": row, "seeds": len(group), "added": f"{group['added'].mean():.0f}",
                      "precision": mean_sd(group["precision"]) if group["added"].sum() else "-",
                      "final test accuracy": mean_sd(group["test_accuracy"]),
                      "final val accuracy": mean_sd(group["val_accuracy"])})
    return pd.DataFrame(table)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="symmetric:0.8",
                        help="noise settings TYPE:RATE,... (e.g. symmetric:0.4,pairflip:0.45) [symmetric:0.8]")
    parser.add_argument("--seeds", default="0,1,2", help="seeds, each a noise draw, clean subset and student [0,1,2]")
    parser.add_argument("--out", default="runs/selection_ceiling",
                        help="folder for results.csv and results.md [runs/selection_ceiling]")
    parser.add_argument("--data-dir", default=None, help="the Fashion-MNIST folder (default: the toolkit's search)")
    parser.add_argument("--clean-subset-fraction", type=float, default=0.1,
                        help="share of the pool with verified labels; a fifth of it validates, the rest trains [0.1]")
    add_regime_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    try:
        settings = [(kind, float(rate)) for kind, rate in (part.split(":") for part in args.settings.split(","))]
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"Error: --settings are TYPE:RATE,... and --seeds integers; got {args.settings!r} and "
                         f"{args.seeds!r}") from None
    if any(seed < 0 for seed in seeds):
        raise SystemExit(f"Error: --seeds must be integers >= 0, got {args.seeds!r}")
    rows = []
    try:
        configs = [run_config(args, kind, rate, seed) for kind, rate in settings for seed in seeds]  # all, first
        prepared = [(config, *setting_data(config)) for config in configs]  # the data-dependent checks, likewise
        for config, data, noisy, parts in prepared:
            rows += one_setting(config, data, noisy, parts)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"Error: {error}") from None
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "results.csv", index=False)
    table = markdown_table(summary(frame), index=False)
    (out / "results.md").write_text(table + "\n")
    print(table)
    return frame


if __name__ == "__main__":
    main()
