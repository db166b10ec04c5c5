"""Image data sets for StudentNet training, held in memory as uint8 tensors (spec §4.8).

Every data set is read with numpy alone (no torchvision) and returned as an :class:`ImageDataset`:

- ``cifar10`` / ``cifar100`` from the official "python version" archives (``cifar-10-python.tar.gz``,
  ``cifar-100-python.tar.gz``) or their extracted folders. An archive's md5 is checked against the
  official one; ``download=True`` fetches a missing archive from the official address.
- ``fashion-mnist`` from its idx(.gz) files, looked for in ``data_dir`` and then where Debian's
  ``dataset-fashion-mnist`` package puts them.
- ``digits``: scikit-learn's copy of the UCI optical digits (8x8, 1797 images), bundled in
  ``student_training/data_files/digits.npz`` so that demos need no download. Its test split is a fixed,
  class-stratified 20 % stored in the file.

The training *pool* (``train_images``/``train_labels``, clean labels) may be cut to a seeded,
class-balanced ``subset``. A seeded, class-balanced clean held-out split of the pool
(``clean_subset_indices``) is kept out of the indices used for noisy training (``train_indices``).
Label noise is applied to the whole pool, so the held-out samples keep both their clean and their
noisy label, which the data-driven MentorNet dump (spec §2.3) needs.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from curricula.files import atomic_write, md5_of, numpy_file_problem

__all__ = [
    "CIFAR100_COARSE_OF_FINE",
    "DataError",
    "DatasetNotFoundError",
    "ImageDataset",
    "balanced_subset",
    "list_datasets",
    "load_dataset",
]

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGITS_FILE = Path(__file__).with_name("data_files") / "digits.npz"
DEFAULT_DATA_DIR = Path("data")  # used when data_dir is None

# Superclass (coarse label) of each CIFAR-100 fine label, in the official label order.
CIFAR100_COARSE_OF_FINE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)


class DataError(ValueError):
    """A data file is corrupt or not in the expected format."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A data set's files are missing; the message says how to get them."""


@dataclasses.dataclass(frozen=True)
class _Archive:
    filename: str
    url: str
    md5: str
    folder: str


CIFAR_ARCHIVES = {
    "cifar10": _Archive(
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
    ),
    "cifar100": _Archive(
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
    ),
}

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# md5 of the official gzip files (the Debian package recompresses them, so local files are checked
# by their idx headers instead).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12e480ee83cd310",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """A data set in memory. Images are uint8 ``N x C x H x W``; labels are clean int64.

    ``train_images``/``train_labels`` are the whole training pool. ``train_indices`` (the samples for
    noisy training), ``clean_subset_indices`` (the clean held-out split) and ``validation_indices`` (a
    noisy held-out split for choosing checkpoints) partition it.
    ``source_indices`` maps each pool sample to its position in the official training set, so
    that per-sample label files (CIFAR-10N) can be indexed after ``subset``.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    train_indices: torch.Tensor
    clean_subset_indices: torch.Tensor
    source_indices: torch.Tensor
    source: str
    noisy_train_labels: torch.Tensor | None = None  # labels the data set itself brings as noisy (npz:)
    source_size: int = 0  # images in the official training set, before ``subset``
    validation_indices: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[2])

    @property
    def num_train(self) -> int:
        return int(self.train_images.shape[0])


@dataclasses.dataclass(frozen=True)
class _RawData:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    noisy_train_labels: np.ndarray | None = None


# ----------------------------------------------------------------------------------------- public API


_LOADERS: dict[str, Callable[[Path | None, bool], _RawData]] = {}
NPZ_PREFIX = "npz:"


def register_dataset(name: str) -> Callable:
    """Decorator that registers a loader ``f(data_dir: Path | None, download: bool) -> _RawData``."""

    def decorator(loader: Callable[[Path | None, bool], _RawData]) -> Callable:
        if name in _LOADERS:
            raise ValueError(f"data set {name!r} is already registered")
        _LOADERS[name] = loader
        return loader

    return decorator


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted; ``npz:PATH`` reads a user's own arrays besides."""
    return sorted(_LOADERS)


def check_dataset_name(name: str) -> str:
    """``name`` if :func:`load_dataset` accepts it (a registered name or ``npz:PATH``), else ``ValueError``."""
    if isinstance(name, str) and name.startswith(NPZ_PREFIX):
        if not name[len(NPZ_PREFIX):]:
            raise ValueError("npz: needs a file path, e.g. npz:my_data.npz")
        return name
    if name not in _LOADERS:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(list_datasets())}, "
                         f"or npz:PATH for your own arrays")
    return name


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    subset: int | None = None,
    clean_subset_fraction: float = 0.0,
    validation_fraction: float = 0.0,
    seed: int = 0,
) -> ImageDataset:
    """Load data set ``name`` into memory.

    ``subset`` keeps a seeded, class-balanced subset of that many training images (the test set is
    kept whole). ``clean_subset_fraction`` holds that fraction of the pool out of ``train_indices``
    as a seeded, class-balanced clean split. ``validation_fraction`` holds a further fraction of the
    pool out as a validation split, drawn at random (not balanced: that would consult the clean labels),
    which keeps its noisy labels.
    """
    check_dataset_name(name)
    fraction = _check_fraction(clean_subset_fraction)
    validation_fraction = _check_fraction(validation_fraction, what="validation fraction")
    if fraction + validation_fraction >= 1.0:
        raise ValueError(f"the clean subset ({fraction:g}) and the validation split ({validation_fraction:g}) "
                         "leave no training images")
    if data_dir is not None and (name in ("digits",) or name.startswith(NPZ_PREFIX)):
        raise ValueError(f"--data-dir does not apply to {name} (it reads no data folder)")
    if data_dir is not None and not download and not Path(data_dir).is_dir():
        raise ValueError(f"data folder {data_dir} does not exist")
    if name.startswith(NPZ_PREFIX):
        raw = _load_npz(Path(name[len(NPZ_PREFIX):]))
    else:
        raw = _LOADERS[name](Path(data_dir) if data_dir is not None else None, download)
    source_indices = np.arange(len(raw.train_labels))
    if subset is not None:
        source_indices = _subset_indices(raw.train_labels, subset, seed)
    labels = raw.train_labels[source_indices]
    num_classes = len(raw.class_names)
    clean = clean_subset_at(labels, fraction, seed=seed)
    rest = np.setdiff1d(np.arange(len(labels)), clean)
    num_validation = int(round(validation_fraction * len(labels)))
    validation = np.sort(np.random.default_rng(_child_seed(seed, 3)).permutation(rest)[:num_validation])
    train = np.setdiff1d(rest, validation)
    if len(train) == 0:  # the fractions sum below 1, but rounding on a tiny pool took every image
        raise ValueError(f"the clean subset ({len(clean)} images, {fraction:g}) and the validation split "
                         f"({len(validation)} images, {validation_fraction:g}) leave none of the {len(labels)} "
                         "training images to train on; lower the fractions, or use more images")
    return ImageDataset(
        name=name,
        train_images=torch.from_numpy(np.ascontiguousarray(raw.train_images[source_indices])),
        train_labels=torch.from_numpy(labels.astype(np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(raw.test_images)),
        test_labels=torch.from_numpy(raw.test_labels.astype(np.int64)),
        num_classes=num_classes,
        class_names=raw.class_names,
        train_indices=torch.from_numpy(train.astype(np.int64)),
        clean_subset_indices=torch.from_numpy(clean.astype(np.int64)),
        validation_indices=torch.from_numpy(validation.astype(np.int64)),
        source_indices=torch.from_numpy(source_indices.astype(np.int64)),
        source=raw.source,
        noisy_train_labels=None if raw.noisy_train_labels is None else
        torch.from_numpy(raw.noisy_train_labels[source_indices].astype(np.int64)),
        source_size=len(raw.train_labels),
    )


def clean_subset_at(labels: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """The clean subset (sorted pool indices) that ``fraction`` of a pool with clean ``labels`` holds out:
    seeded and class-balanced."""
    return np.sort(balanced_subset(labels, int(round(fraction * len(labels))), seed=_child_seed(seed, 2)))


def balanced_subset(labels: np.ndarray, size: int, *, seed: int) -> np.ndarray:
    """``size`` indices into ``labels``, seeded, with class counts that differ by at most one
    (classes that run out give their share to the others). Returned in draw order."""
    labels = np.asarray(labels)
    if not 0 <= size <= len(labels):
        raise ValueError(f"subset size must be in [0, {len(labels)}], got {size}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    shuffled = labels[order]
    rank = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(shuffled):
        members = np.flatnonzero(shuffled == cls)
        rank[members] = np.arange(len(members))
    # Take rank 0 of every class, then rank 1, ...; ties go in the shuffled order.
    picked = np.lexsort((np.arange(len(labels)), rank))[:size]
    return order[picked]


# ------------------------------------------------------------------------------------------ helpers


def _check_fraction(fraction: float, *, what: str = "clean subset fraction") -> float:
    if not isinstance(fraction, (int, float)) or not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {fraction!r}")
    return float(fraction)


def _subset_indices(labels: np.ndarray, subset: int, seed: int) -> np.ndarray:
    if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
        raise ValueError(f"subset must be a positive integer, got {subset!r}")
    if subset > len(labels):
        raise ValueError(f"subset {subset} is larger than the {len(labels)} training images")
    return np.sort(balanced_subset(labels, int(subset), seed=_child_seed(seed, 1)))


def _child_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1)[0])


def _fetch(url: str, destination: Path, md5: str) -> None:
    """Download ``url`` to ``destination`` atomically, checking its md5."""
    destination.parent.mkdir(parents=True, exist_ok=True)

    def download(temporary: str) -> None:
        urllib.request.urlretrieve(url, temporary)
        actual = md5_of(Path(temporary))
        if actual != md5:
            raise DataError(f"downloaded {url} has md5 {actual}, expected {md5}; try again later")

    atomic_write(destination, download, force=True)


# -------------------------------------------------------------------------------------------- CIFAR


class _ArrayUnpickler(pickle.Unpickler):
    """Reads the CIFAR pickles (dicts of lists and numpy arrays) and nothing that could run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 protocol-2 pickles spell bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch file")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _unpickle(data: bytes) -> dict:
    loaded = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(loaded, dict):
        raise pickle.UnpicklingError("a CIFAR batch file must hold a dict")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def _cifar_members(name: str) -> dict[str, str]:
    if name == "cifar10":
        members = {f"data_batch_{i}": f"data_batch_{i}" for i in range(1, 6)}
        return {**members, "test_batch": "test_batch", "meta": "batches.meta"}
    return {"train": "train", "test": "test", "meta": "meta"}


def _how_to_get(name: str, data_dir: Path | None) -> str:
    archive = CIFAR_ARCHIVES[name]
    where = data_dir if data_dir is not None else DEFAULT_DATA_DIR
    return (
        f"download {archive.url} (md5 {archive.md5}) into {where}, "
        f"or pass download=True (--download)"
    )


def _read_cifar_files(name: str, data_dir: Path | None, download: bool) -> tuple[dict, str]:
    archive = CIFAR_ARCHIVES[name]
    root = data_dir if data_dir is not None else DEFAULT_DATA_DIR
    for folder in (root / archive.folder, root):
        if all((folder / member).is_file() for member in _cifar_members(name).values()):
            return _read_folder(name, folder), str(folder)
    path = root / archive.filename if not root.is_file() else root
    if not path.is_file() and download:
        _fetch(archive.url, path, archive.md5)
    if not path.is_file():
        raise DatasetNotFoundError(f"{name}: no {archive.filename} or {archive.folder}/ in {root}; "
                                   + _how_to_get(name, data_dir))
    return _read_archive(name, path, data_dir), str(path)


def _read_folder(name: str, folder: Path) -> dict:
    try:
        return {key: _unpickle((folder / member).read_bytes())
                for key, member in _cifar_members(name).items()}
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DataError(f"{name}: corrupt batch file in {folder} ({error}); delete the folder and "
                        + _how_to_get(name, folder.parent)) from None


def _read_archive(name: str, path: Path, data_dir: Path | None) -> dict:
    archive = CIFAR_ARCHIVES[name]
    actual = md5_of(path)
    if actual != archive.md5:
        raise DataError(f"{name}: {path} has md5 {actual}, expected {archive.md5} (corrupt or "
                        f"incomplete); delete it and " + _how_to_get(name, data_dir))
    try:
        with tarfile.open(path, "r:gz") as tar:
            return {key: _unpickle(tar.extractfile(f"{archive.folder}/{member}").read())
                    for key, member in _cifar_members(name).items()}
    except (tarfile.TarError, KeyError, OSError, EOFError, pickle.UnpicklingError, AttributeError) as error:
        raise DataError(f"{name}: cannot read {path} ({error}); delete it and "
                        + _how_to_get(name, data_dir)) from None


def _cifar_images(batch: dict, source: str) -> np.ndarray:
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{source}: 'data' must be N x 3072 uint8, got {data.dtype} {data.shape}")
    return data.reshape(-1, 3, 32, 32)


def _cifar_labels(batch: dict, key: str, count: int, source: str) -> np.ndarray:
    labels = np.asarray(batch.get(key, []), dtype=np.int64)
    if labels.shape != (count,):
        raise DataError(f"{source}: expected {count} {key}, got {labels.shape[0]}")
    return labels


@register_dataset("cifar10")
def _load_cifar10(data_dir: Path | None, download: bool) -> _RawData:
    return _load_cifar("cifar10", data_dir, download)


@register_dataset("cifar100")
def _load_cifar100(data_dir: Path | None, download: bool) -> _RawData:
    return _load_cifar("cifar100", data_dir, download)


def _load_cifar(name: str, data_dir: Path | None, download: bool) -> _RawData:
    files, source = _read_cifar_files(name, data_dir, download)
    try:
        if name == "cifar10":
            train = [files[f"data_batch_{i}"] for i in range(1, 6)]
            test, key, names_key = files["test_batch"], "labels", "label_names"
        else:
            train, test, key, names_key = [files["train"]], files["test"], "fine_labels", "fine_label_names"
        train_images = np.concatenate([_cifar_images(batch, source) for batch in train])
        train_labels = np.concatenate([_cifar_labels(b, key, len(b["data"]), source) for b in train])
        test_images = _cifar_images(test, source)
        test_labels = _cifar_labels(test, key, len(test_images), source)
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in files["meta"][names_key])
    except KeyError as error:
        raise DataError(f"{name}: {source} lacks the key {error}; " + _how_to_get(name, data_dir)) from None
    if name == "cifar100":
        _check_coarse(files["train"], train_labels, source)
    _check_labels(name, train_labels, test_labels, len(class_names), source)
    return _RawData(train_images, train_labels, test_images, test_labels, class_names, source)


def _check_coarse(batch: dict, fine: np.ndarray, source: str) -> None:
    """The superclass table drives asymmetric noise; make sure the archive agrees with it."""
    if "coarse_labels" not in batch:
        return
    coarse = np.asarray(batch["coarse_labels"], dtype=np.int64)
    expected = np.asarray(CIFAR100_COARSE_OF_FINE)[fine]
    if coarse.shape != fine.shape or not np.array_equal(coarse, expected):
        raise DataError(f"{source}: coarse_labels disagree with the CIFAR-100 superclass table")


def _check_labels(name: str, train: np.ndarray, test: np.ndarray, num_classes: int, source: str) -> None:
    for labels in (train, test):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(f"{name}: labels in {source} fall outside [0, {num_classes})")


# ------------------------------------------------------------------------------------ Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): uint8 data only, as in (Fashion-)MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path} ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not a uint8 idx file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {body.size} values, its header says {shape} (truncated?)")
    return body.reshape(shape).copy()


def _find_idx(stem: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
    return None


def _fashion_folders(data_dir: Path | None) -> list[Path]:
    """Where the idx files are looked for: only in ``data_dir`` when one is given (never silently another
    copy), else where Debian's ``dataset-fashion-mnist`` puts them."""
    if data_dir is not None:
        return [data_dir, data_dir / "fashion-mnist", data_dir / "FashionMNIST" / "raw"]
    return [DEBIAN_FASHION_MNIST_DIR]


def _fashion_path(stem: str, data_dir: Path | None, download: bool) -> Path:
    found = _find_idx(stem, _fashion_folders(data_dir))
    if found is None and download:
        target = (data_dir if data_dir is not None else DEFAULT_DATA_DIR) / f"{stem}.gz"
        _fetch(FASHION_MNIST_URL + f"{stem}.gz", target, FASHION_MNIST_FILES[stem])
        found = target
    if found is None:
        where = ", ".join(str(folder) for folder in _fashion_folders(data_dir))
        raise DatasetNotFoundError(
            f"fashion-mnist: {stem}(.gz) not found in {where}; install Debian's dataset-fashion-mnist, "
            f"download {FASHION_MNIST_URL}{stem}.gz into the data dir, or pass download=True (--download)"
        )
    return found


@register_dataset("fashion-mnist")
def _load_fashion_mnist(data_dir: Path | None, download: bool) -> _RawData:
    arrays = {stem: _read_idx(_fashion_path(stem, data_dir, download)) for stem in FASHION_MNIST_FILES}
    parts = []
    for split in ("train", "t10k"):
        images = arrays[f"{split}-images-idx3-ubyte"]
        labels = arrays[f"{split}-labels-idx1-ubyte"].astype(np.int64)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise DataError(f"fashion-mnist: {split} images {images.shape} and labels {labels.shape} disagree")
        parts += [images[:, None], labels]
    source = str(_fashion_path("train-images-idx3-ubyte", data_dir, False).parent)
    _check_labels("fashion-mnist", parts[1], parts[3], 10, source)
    return _RawData(*parts, FASHION_MNIST_CLASSES, source)


# ------------------------------------------------------------------------------------------- digits


@register_dataset("digits")
def _load_digits(data_dir: Path | None, download: bool) -> _RawData:
    with np.load(DIGITS_FILE, allow_pickle=False) as bundle:
        images, labels, is_test = bundle["images"], bundle["labels"], bundle["is_test"]
    # 0..16 counts of "on" pixels in 4x4 blocks, rescaled to the 0..255 range of the other sets.
    images = np.round(images.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return _RawData(images[~is_test], labels[~is_test], images[is_test], labels[is_test],
                    tuple(str(digit) for digit in range(10)), str(DIGITS_FILE))


# ------------------------------------------------------------------------------------- npz:PATH

NPZ_REQUIRED = ("train_images", "train_labels", "test_images", "test_labels")


def _load_npz(path: Path) -> _RawData:
    """A user's own data set: ``train_images`` and ``test_images`` (N x H x W or N x H x W x C, uint8,
    square), ``train_labels`` and ``test_labels`` (integers in [0, C)), optional ``clean_labels`` (the
    true labels of the training images when ``train_labels`` are noisy) and optional ``class_names``."""
    if not path.is_file():
        raise DatasetNotFoundError(f"npz data set {path} does not exist")
    problem = numpy_file_problem(path, "npz")
    if problem:
        raise DataError(f"npz data set {path} {problem}")
    try:
        with np.load(path, allow_pickle=False) as bundle:
            arrays = {key: bundle[key] for key in bundle.files}
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"cannot read npz data set {path}: {str(error).splitlines()[0]}") from None
    missing = [key for key in NPZ_REQUIRED if key not in arrays]
    if missing:
        raise DataError(f"npz data set {path} lacks {', '.join(missing)} (it needs {', '.join(NPZ_REQUIRED)})")
    train_images = _npz_images(arrays["train_images"], "train_images", path)
    test_images = _npz_images(arrays["test_images"], "test_images", path)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(f"{path}: train_images are {train_images.shape[1:]} (C x H x W) but test_images are "
                        f"{test_images.shape[1:]}")
    given = _npz_labels(arrays["train_labels"], "train_labels", len(train_images), path)
    test_labels = _npz_labels(arrays["test_labels"], "test_labels", len(test_images), path)
    clean = _npz_labels(arrays["clean_labels"], "clean_labels", len(train_images), path) \
        if "clean_labels" in arrays else None
    num_classes = int(max(given.max(initial=0), test_labels.max(initial=0),
                          clean.max(initial=0) if clean is not None else 0)) + 1
    class_names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else \
        tuple(str(c) for c in range(max(num_classes, 2)))
    if len(class_names) < num_classes:
        raise DataError(f"{path}: {len(class_names)} class_names for labels up to {num_classes - 1}")
    train_labels, noisy = (given, None) if clean is None else (clean, given)
    return _RawData(train_images, train_labels, test_images, test_labels, class_names, str(path), noisy)


def _npz_images(images: np.ndarray, key: str, path: Path) -> np.ndarray:
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(f"{path}: {key} must be uint8 N x H x W or N x H x W x C, got {images.dtype} "
                        f"{images.shape}")
    images = images[:, None] if images.ndim == 3 else np.moveaxis(images, 3, 1)
    if len(images) == 0:
        raise DataError(f"{path}: {key} holds no images")
    if images.shape[2] != images.shape[3] or images.shape[2] < 4:
        raise DataError(f"{path}: {key} must hold square images of at least 4 x 4, got H x W = "
                        f"{images.shape[2]} x {images.shape[3]} for {len(images)} images")
    return np.ascontiguousarray(images)


def _npz_labels(labels: np.ndarray, key: str, count: int, path: Path) -> np.ndarray:
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {key} must be {count} integers (one per image), got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: {key} must be >= 0, found {labels.min()}")
    return labels.astype(np.int64)


def check_clean_subset_file(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path``; ``ValueError`` unless it is a file (a folder or a missing path is named as such)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"clean subset file {path} {'is a folder' if path.is_dir() else 'does not exist'}")
    return path


def read_clean_subset_file(path: str | os.PathLike, data: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A user's clean subset: a CSV with the header ``sample_id,label`` (positions in the official training set
    and their verified labels). Returns ``(pool indices, verified labels)``, sorted by pool index.

    Raises ``ValueError`` naming the file and line for a malformed file, an id outside the pool (e.g. dropped by
    ``--subset``), a repeated id, or a label outside ``0..num_classes-1``.
    """
    import csv

    path = check_clean_subset_file(path)
    position = {int(source): pool for pool, source in enumerate(data.source_indices.tolist())}
    pool, labels, first_line = [], [], {}  # first_line: pool position -> the line that listed it
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if header != ["sample_id", "label"]:
                raise ValueError(f"clean subset file {path} must start with the header sample_id,label, got "
                                 f"{','.join(header) or 'nothing'}")
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    sample, label = (int(value) for value in row)
                except ValueError:
                    raise ValueError(f"clean subset file {path}, line {line}: expected two integers sample_id,label, "
                                     f"got {','.join(row)!r}") from None
                if sample not in position:
                    if len(position) < (data.source_size or 0):
                        raise ValueError(f"clean subset file {path}, line {line}: sample_id {sample} is not among "
                                         f"the {len(position)} images --subset drew from the {data.source_size} of "
                                         "the training set (a seeded draw): drop --subset, or list only ids it keeps "
                                         f"(load_dataset({data.name!r}, subset={len(position)}, seed=SEED)"
                                         ".source_indices, in student_training.data, lists them)")
                    raise ValueError(f"clean subset file {path}, line {line}: sample_id {sample} is not in the training "
                                     f"set (ids 0..{len(position) - 1})")
                if not 0 <= label < data.num_classes:
                    raise ValueError(f"clean subset file {path}, line {line}: label {label} is outside "
                                     f"0..{data.num_classes - 1}")
                if position[sample] in first_line:
                    raise ValueError(f"clean subset file {path}, line {line}: sample_id {sample} is listed again "
                                     f"(first on line {first_line[position[sample]]}); list each sample once")
                first_line[position[sample]] = line
                pool.append(position[sample])
                labels.append(label)
    except UnicodeDecodeError as error:
        raise ValueError(f"clean subset file {path} is not UTF-8 text: {error.reason}") from None
    if not pool:
        raise ValueError(f"clean subset file {path} lists no samples")
    order = np.argsort(pool)
    return torch.tensor(pool, dtype=torch.long)[order], torch.tensor(labels, dtype=torch.long)[order]


def with_clean_subset(data: ImageDataset, indices: torch.Tensor) -> ImageDataset:
    """``data`` with ``indices`` (pool indices) as its clean subset, taken out of the other splits."""
    taken = torch.zeros(len(data.train_labels), dtype=torch.bool)
    taken[indices] = True
    keep = lambda part: part[~taken[part]]  # noqa: E731
    return dataclasses.replace(data, clean_subset_indices=indices.clone(), train_indices=keep(data.train_indices),
                               validation_indices=keep(data.validation_indices))
