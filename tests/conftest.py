"""Shared test helpers: tiny CIFAR archives in exactly the official "python version" format, and the
one-line CLI error check."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from student_training import data
from student_training.data import CIFAR100_COARSE_OF_FINE
from student_training.host_memory import keep_freed_memory

keep_freed_memory()  # as cli.main does: the tests' students train as train-student trains them


def assert_one_line_error(result, *fragments):
    """A CLI result that failed with exactly one line, ``Error: ...``, containing every fragment."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


@pytest.fixture
def isolated_plugins(monkeypatch):
    """A copy of the curriculum registry and a fresh plugin state: curricula registered by plugin files in
    the test are forgotten afterwards, as are the plugin modules it imported."""
    import sys

    from curricula import plugins, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(plugins, "_loaded", False)
    before = set(sys.modules)
    yield monkeypatch
    for name in set(sys.modules) - before:
        if name.startswith(("ep_plugin_", "mentornet_plugin_")):
            del sys.modules[name]


# Subprocesses the tests start (killed runs that the test then resumes in process, torchrun, the CLI) compute at
# one thread too, as the in-process runs do (_one_thread): on some CPUs a matrix product at two threads rounds
# differently, so a run cut at two threads and resumed at one would not end where an uninterrupted one does.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine is small and shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _batch(rng: np.random.Generator, count: int, label_keys: dict[bytes, np.ndarray]) -> bytes:
    images = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"tiny", b"data": images, b"filenames": [b"x.png"] * count}
    batch.update({key: [int(v) for v in values] for key, values in label_keys.items()})
    return pickle.dumps(batch, protocol=2)


def _write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def build_cifar10(path: Path, *, per_batch: int = 6, test_count: int = 5, seed: int = 0) -> Path:
    """``cifar-10-python.tar.gz`` with 5 training batches of ``per_batch`` images."""
    rng = np.random.default_rng(seed)
    members = {}
    for index in range(1, 6):
        labels = rng.integers(0, 10, size=per_batch)
        members[f"cifar-10-batches-py/data_batch_{index}"] = _batch(rng, per_batch, {b"labels": labels})
    members["cifar-10-batches-py/test_batch"] = _batch(rng, test_count, {b"labels": rng.integers(0, 10, test_count)})
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                                   "frog", "horse", "ship", "truck")], b"num_vis": 3072}
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(meta, protocol=2)
    return _write_tar(path, members)


def build_cifar100(path: Path, *, train_count: int = 30, test_count: int = 7, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    coarse_of = np.asarray(CIFAR100_COARSE_OF_FINE)
    members = {}
    for split, count in (("train", train_count), ("test", test_count)):
        fine = rng.integers(0, 100, size=count)
        members[f"cifar-100-python/{split}"] = _batch(rng, count, {b"fine_labels": fine,
                                                                   b"coarse_labels": coarse_of[fine]})
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
    members["cifar-100-python/meta"] = pickle.dumps(meta, protocol=2)
    return _write_tar(path, members)


def read_members(path: Path) -> dict[str, dict]:
    """The archive's pickles, read back independently of the code under test."""
    with tarfile.open(path, "r:gz") as tar:
        return {m.name.split("/")[-1]: pickle.loads(tar.extractfile(m).read(), encoding="bytes")
                for m in tar.getmembers()}


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def trust_archive(monkeypatch):
    """Make ``name``'s expected md5 that of a test archive (the real one is the official md5)."""

    def trust(name: str, path: Path) -> None:
        spec = data.CIFAR_ARCHIVES[name]
        monkeypatch.setitem(data.CIFAR_ARCHIVES, name, data._Archive(spec.filename, spec.url, md5_of(path),
                                                                     spec.folder))

    return trust


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """No test may use the network: any download attempt fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to use the network: {args[:1]}")

    monkeypatch.setattr("urllib.request.urlretrieve", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)
