"""Tiny CIFAR-10/100 folders in the official "python version" layout, for smoke runs without the real data.

The loader reads an extracted folder (``cifar-10-batches-py/``, ``cifar-100-python/``) without an md5
check, so these random images stand in for the real ones. Not for accuracy: for plumbing only.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from student_training.data import CIFAR100_COARSE_OF_FINE


def _batch(rng: np.random.Generator, labels: dict[bytes, np.ndarray]) -> bytes:
    count = len(next(iter(labels.values())))
    batch = {b"batch_label": b"tiny", b"data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
             b"filenames": [b"x.png"] * count}
    batch.update({key: [int(v) for v in values] for key, values in labels.items()})
    return pickle.dumps(batch, protocol=2)


def _labels(rng: np.random.Generator, count: int, classes: int) -> np.ndarray:
    """Every class present, so balanced subsets and noise models have something of each."""
    return rng.permutation(np.arange(count) % classes)


def build_tiny_cifar(data_dir: str | Path, *, train: int = 200, test: int = 100, seed: int = 0) -> Path:
    """Write both data sets under ``data_dir`` (``train`` and ``test`` images each) and return it."""
    root = Path(data_dir)
    rng = np.random.default_rng(seed)
    c10 = root / "cifar-10-batches-py"
    c10.mkdir(parents=True, exist_ok=True)
    per_batch = -(-train // 5)
    for index in range(1, 6):
        (c10 / f"data_batch_{index}").write_bytes(_batch(rng, {b"labels": _labels(rng, per_batch, 10)}))
    (c10 / "test_batch").write_bytes(_batch(rng, {b"labels": _labels(rng, test, 10)}))
    (c10 / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)],
                                                     b"num_vis": 3072}, protocol=2))
    c100 = root / "cifar-100-python"
    c100.mkdir(parents=True, exist_ok=True)
    coarse_of = np.asarray(CIFAR100_COARSE_OF_FINE)
    for split, count in (("train", train), ("test", test)):
        fine = _labels(rng, count, 100)
        (c100 / split).write_bytes(_batch(rng, {b"fine_labels": fine, b"coarse_labels": coarse_of[fine]}))
    (c100 / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                              b"coarse_label_names": [f"c{i}".encode() for i in range(20)]},
                                             protocol=2))
    return root
