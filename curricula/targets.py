"""Target sets a MentorNet is fitted to: features plus target weights v*.

* :func:`seed_grid` and :func:`curriculum_targets`: the 2018 synthetic grid (spec §2.2), labelled by
  any curriculum, subsampled and split with an explicit seed. Unlike 2018, no row is dropped.
* :func:`read_dump` and :func:`data_driven_targets`: the data-driven set (spec §2.3) from a StudentNet
  dump of ``sample_id epoch noisy_label clean_label loss``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .features import MAX_EPOCH, NUM_EPOCHS, MentorFeatures, WeighterConfig, check_percentile

GRID_SIZE = 1_200_000
DEFAULT_SAMPLE_SIZE = 100_000
DEFAULT_TRAIN_FRACTION = 0.8
DEFAULT_DD_PERCENTILES = (0.4, 0.5, 0.6, 0.75, 0.8, 0.9)  # fractions, as every percentile here
DUMP_COLUMNS = ("sample_id", "epoch", "noisy_label", "clean_label", "loss")
# Spec §4.3, MentorNet DD: burn-in 18 with the epoch fixed after it, and 50 % example dropout until
# then. The 2018 ResNet string ends in "0.9,5", a segment the fixed epoch never reaches, so the
# equivalent reachable schedule is stored.
DATA_DRIVEN_WEIGHTER = WeighterConfig(burn_in_epoch=18, fixed_epoch_after_burn_in=True,
                                      example_dropout_rates="0.5,17,0.05,83")


@dataclass(frozen=True)
class TargetSet:
    features: MentorFeatures
    targets: torch.Tensor  # float32, shaped like features.loss

    def __post_init__(self):
        if self.targets.shape != self.features.loss.shape:
            raise ValueError(f"targets shape {tuple(self.targets.shape)} does not match "
                             f"features {tuple(self.features.loss.shape)}")

    def __len__(self) -> int:
        return len(self.targets)

    def select(self, index) -> "TargetSet":
        return TargetSet(self.features.select(index), self.targets[index])

    @property
    def is_binary(self) -> bool:
        """True when the targets are exactly {0, 1}: the 2018 trainer then fits with BCE (spec §3)."""
        return set(torch.unique(self.targets).tolist()) == {0.0, 1.0}


@dataclass(frozen=True)
class TargetSplit:
    train: TargetSet
    test: TargetSet
    source: dict  # what the checkpoint records as its ``source``


def seed_grid() -> MentorFeatures:
    """The 1,200,000-row grid of spec §2.2, with np.arange values exactly as in 2018.

    loss in {0, 0.1, ..., 9.9} ∪ {10, ..., 29} (120 values), loss_diff in np.arange(-5, 5, 0.1)
    (100 values), label 0, epoch 0..99; the full Cartesian product.
    """
    loss = np.concatenate([np.arange(0, 10, 0.1), np.arange(10, 30, 1.0)])
    loss_diff = np.arange(-5, 5, 0.1)
    epoch = np.arange(NUM_EPOCHS)
    grid_loss, grid_diff, grid_epoch = np.meshgrid(loss, loss_diff, epoch, indexing="ij")
    n = grid_loss.size
    return MentorFeatures(
        loss=torch.from_numpy(grid_loss.reshape(-1).astype(np.float32)),
        loss_diff=torch.from_numpy(grid_diff.reshape(-1).astype(np.float32)),
        label=torch.zeros(n, dtype=torch.long),
        epoch=torch.from_numpy(grid_epoch.reshape(-1).astype(np.int64)),
    )


def split_indices(n: int, *, train_fraction: float = DEFAULT_TRAIN_FRACTION, seed: int) -> tuple:
    """Shuffle ``range(n)`` with ``seed``; the first ``int(train_fraction * n)`` rows train, the rest test.

    2018 started the test set one row late and so dropped a row; here every row lands in one split.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must lie in (0, 1), got {train_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 rows to split, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = min(max(int(train_fraction * n), 1), n - 1)
    return order[:cut], order[cut:]


def curriculum_targets(curriculum, *, sample_size: int = DEFAULT_SAMPLE_SIZE,
                       train_fraction: float = DEFAULT_TRAIN_FRACTION, seed: int = 0) -> TargetSplit:
    """Label the seed grid with ``curriculum``, keep ``sample_size`` random rows and split them."""
    from .registry import checked_weights, curriculum_source

    if not 2 <= sample_size <= GRID_SIZE:
        raise ValueError(f"sample size must lie in 2..{GRID_SIZE}, got {sample_size}")
    grid = seed_grid()
    keep = torch.randperm(GRID_SIZE, generator=torch.Generator().manual_seed(seed))[:sample_size]
    features = grid.select(keep)
    data = TargetSet(features, checked_weights(curriculum, features).to(torch.float32))
    train, test = split_indices(sample_size, train_fraction=train_fraction, seed=seed + 1)
    source = {**curriculum_source(curriculum), "sample_size": sample_size,
              "train_fraction": train_fraction, "seed": seed}
    return TargetSplit(data.select(train), data.select(test), source)


@dataclass(frozen=True)
class Dump:
    """A StudentNet dump (spec §2.3): one row per sample of the clean subset."""

    sample_id: np.ndarray
    epoch: np.ndarray
    noisy_label: np.ndarray
    clean_label: np.ndarray
    loss: np.ndarray
    sha256: str
    duplicates_dropped: int = 0

    def __len__(self) -> int:
        return len(self.sample_id)


def _parse_row(fields: list[str], line_number: int, path) -> tuple:
    if len(fields) != 5:
        raise ValueError(f"{path}, line {line_number}: expected 5 fields "
                         f"({' '.join(DUMP_COLUMNS)}), got {len(fields)}")
    try:
        sample_id, epoch, noisy, clean = (int(float(x)) if float(x).is_integer() else None for x in fields[:4])
        loss = float(fields[4])
    except ValueError:
        raise ValueError(f"{path}, line {line_number}: fields must be numbers, got {' '.join(fields)!r}") from None
    if None in (sample_id, epoch, noisy, clean):
        raise ValueError(f"{path}, line {line_number}: id, epoch and labels must be integers, "
                         f"got {' '.join(fields[:4])!r}")
    if not math.isfinite(loss) or loss < 0:
        raise ValueError(f"{path}, line {line_number}: loss must be finite and >= 0, got {fields[4]!r}")
    if not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"{path}, line {line_number}: epoch {epoch} is outside 0..{MAX_EPOCH} (training progress "
                         "in percent, the MentorNet's epoch input)")
    if noisy < 0 or clean < 0:
        raise ValueError(f"{path}, line {line_number}: labels must be >= 0")
    return sample_id, epoch, noisy, clean, loss


def _decode_dump(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save the dump as "
                         "UTF-8 or plain ASCII") from None


def read_dump(path: str | os.PathLike) -> Dump:
    """Read a dump in the 2018 space-separated format or as a CSV with a header row.

    As in 2018, a sample id that appears more than once keeps its **last** line; the number of
    dropped lines is reported in ``duplicates_dropped``. A malformed line is an error naming its number,
    and so are an epoch outside 0..99 (the progress epoch the MentorNet sees) and a byte that is not
    UTF-8. A UTF-8 byte-order mark (as spreadsheet programs write) is ignored, so such a file reads like
    the same file without it.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"dump file {path} does not exist")
    raw = path.read_bytes()
    text = _decode_dump(raw, path)
    rows: dict[int, tuple] = {}
    total = 0
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ValueError(f"dump file {path} is empty")
    header = [cell.strip() for cell in lines[first].split(",")]
    is_csv = "," in lines[first]
    if is_csv:
        if header != list(DUMP_COLUMNS):
            raise ValueError(f"{path}, line {first + 1}: a CSV dump needs the header "
                             f"{','.join(DUMP_COLUMNS)}, got {lines[first].strip()!r}")
        reader = csv.reader(io.StringIO("\n".join(lines[first + 1:])))
        numbered = ((first + 2 + i, [c.strip() for c in cells]) for i, cells in enumerate(reader))
    else:
        numbered = ((i + 1, line.split()) for i, line in enumerate(lines))
    for line_number, fields in numbered:
        if not fields or fields == [""]:
            continue
        row = _parse_row(fields, line_number, path)
        rows[row[0]] = row
        total += 1
    if not rows:
        raise ValueError(f"dump file {path} has no data rows")
    table = np.array(list(rows.values()), dtype=np.float64)
    return Dump(
        sample_id=table[:, 0].astype(np.int64), epoch=table[:, 1].astype(np.int64),
        noisy_label=table[:, 2].astype(np.int64), clean_label=table[:, 3].astype(np.int64),
        loss=table[:, 4], sha256=hashlib.sha256(raw).hexdigest(), duplicates_dropped=total - len(rows),
    )


def data_driven_set(dump: Dump, percentile: float) -> tuple[TargetSet, float]:
    """Every row of ``dump`` as features and targets (spec §2.3), and the loss threshold Q.

    loss_diff = loss − Q with Q the percentile P, a fraction in (0, 1] (0.9 is the 90th percentile), of
    every loss in the dump (linear interpolation), the label feature is 0, and v* = 1 when the noisy label
    equals the clean label, else 0.
    """
    percentile = check_percentile(percentile, name="dump percentile P")
    targets = (dump.noisy_label == dump.clean_label).astype(np.float32)
    threshold = float(np.quantile(dump.loss, percentile))
    n = len(dump)
    features = MentorFeatures(
        loss=torch.from_numpy(dump.loss.astype(np.float32)),
        loss_diff=torch.from_numpy((dump.loss - threshold).astype(np.float32)),
        label=torch.zeros(n, dtype=torch.long),
        epoch=torch.from_numpy(np.minimum(dump.epoch, NUM_EPOCHS - 1)),
    )
    return TargetSet(features, torch.from_numpy(targets)), threshold


def data_driven_targets(dump: Dump, percentile: float, *, train_fraction: float = DEFAULT_TRAIN_FRACTION,
                        seed: int = 0) -> TargetSplit:
    """The data-driven target set for one percentile P (see :func:`data_driven_set`), split 80/20.

    A dump without both clean and corrupted samples is an error: there is nothing to learn."""
    data, threshold = data_driven_set(dump, percentile)
    if float(data.targets.min()) == float(data.targets.max()):
        kind = "clean" if float(data.targets[0]) == 1 else "corrupted"
        raise ValueError(f"the dump has only {kind} samples (every target is {int(data.targets[0])}); "
                         "a data-driven MentorNet needs both clean and corrupted ones")
    train, test = split_indices(len(data), train_fraction=train_fraction, seed=seed)
    source = {"type": "data_driven", "dump_sha256": dump.sha256, "percentile": float(percentile),
              "loss_threshold": threshold, "num_rows": len(data), "duplicates_dropped": dump.duplicates_dropped,
              "train_fraction": train_fraction, "seed": seed}
    return TargetSplit(data.select(train), data.select(test), source)


def dump_percentile(source: dict) -> float:
    """The percentile a data-driven MentorNet was fitted at, as a fraction (files of toolkit 0.1 recorded
    it in percent: 90 there is 0.9 here)."""
    value = float(source["percentile"])
    return value / 100.0 if value > 1.0 else value


def data_driven_target_sets(dump: Dump, percentiles=DEFAULT_DD_PERCENTILES, **options) -> dict[float, TargetSplit]:
    """One target set per requested percentile (2018 default: the 40th, 50th, 60th, 75th, 80th, 90th)."""
    return {float(p): data_driven_targets(dump, p, **options) for p in percentiles}
