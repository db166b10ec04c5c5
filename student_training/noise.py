"""Label-noise models, noisy-label files and the ``noisy_labels.npz`` record (spec §4.8).

The 2018 code never released its noise generator, and "symmetric noise at rate r" means two
different things in the literature (peer-results.md). Both are offered, under distinct names:

- ``symmetric``: exactly round(r·N) samples, chosen at random, each get a *different* class drawn
  uniformly. The realised rate is r (to within 1/N).
- ``uniform``: each label is redrawn over *all* C classes with probability r (Zhang et al. 2017,
  DivideMix). The realised rate is about r·(1 − 1/C).
- ``pairflip``: every class c sends about r·n_c samples to class (c + 1) mod C (Co-teaching's pair
  flipping): round(r·N) in all, shared over the classes by largest remainder, so the realised rate is r
  to within 1/N even when classes are small.
- ``asymmetric``: about r·n_c samples of each mapped class c flip to map(c), round(r·N_mapped) in all,
  shared the same way. CIFAR-10 uses
  the usual map truck→automobile, bird→airplane, deer→horse, cat↔dog (Patrini et al. 2017); CIFAR-100
  flips each class to the next class of its superclass (the five fine classes of a superclass taken in
  label order, circularly). Other classes keep their label.

Every result carries the realised transition matrix P(noisy | clean) and the realised noise rate,
and :func:`save_noisy_labels` writes them to ``noisy_labels.npz``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from curricula.files import atomic_write, load_plain, numpy_file_problem

from .data import CIFAR100_COARSE_OF_FINE

__all__ = [
    "CIFAR10_ASYMMETRIC_MAP",
    "NoiseResult",
    "list_noise_types",
    "load_noise_file",
    "load_noisy_labels",
    "make_noisy_labels",
    "noise_from_labels",
    "save_noisy_labels",
    "split_key",
    "split_noise_path",
    "transition_matrix",
]

RATE_TOLERANCE = 0.01  # a realised rate further than this from the one asked is warned about


class NoiseRateWarning(UserWarning):
    """The realised noise rate differs from the one asked for by more than :data:`RATE_TOLERANCE`."""


# airplane 0, automobile 1, bird 2, cat 3, deer 4, dog 5, frog 6, horse 7, ship 8, truck 9
CIFAR10_ASYMMETRIC_MAP = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
_NOISE_TYPES = ("asymmetric", "pairflip", "symmetric", "uniform")
# Keys tried, in order, when a label file holds several arrays and no key is given.
_DEFAULT_KEYS = ("noisy_labels", "noisy_label")
_CLEAN_KEYS = ("clean_labels", "clean_label")
_LABEL_FILE_SUFFIXES = (".npy", ".npz", ".pt", ".pth")  # the label files a noise file can be


@dataclasses.dataclass(frozen=True)
class NoiseResult:
    """Noisy labels next to the clean ones they came from.

    ``transition_matrix[i, j]`` is the realised fraction of clean-class-``i`` samples labelled ``j``
    (rows sum to 1; a class with no samples gets an identity row). ``noise_rate`` is the realised
    fraction of labels that differ from the clean ones.
    """

    noisy_labels: torch.Tensor
    clean_labels: torch.Tensor
    transition_matrix: torch.Tensor
    noise_rate: float
    noise_type: str
    nominal_rate: float
    seed: int | None
    source: str = ""

    @property
    def is_noisy(self) -> torch.Tensor:
        return self.noisy_labels != self.clean_labels

    def summary(self) -> str:
        """One line for the CLI to print: the noise definition and the realised rate."""
        changed = int(self.is_noisy.sum())
        origin = f" from {self.source}" if self.source else f" at nominal rate {self.nominal_rate:g}"
        return (f"{self.noise_type} noise{origin}: realised rate {self.noise_rate:.4f} "
                f"({changed}/{len(self.noisy_labels)} labels changed)")


def list_noise_types() -> list[str]:
    """Names accepted by :func:`make_noisy_labels`."""
    return list(_NOISE_TYPES)


def make_noisy_labels(
    clean_labels: torch.Tensor | np.ndarray,
    *,
    noise_type: str,
    rate: float,
    num_classes: int,
    seed: int,
    dataset: str | None = None,
) -> NoiseResult:
    """Corrupt ``clean_labels`` with ``noise_type`` at ``rate``; the same seed gives the same labels."""
    clean = _check_labels(clean_labels, num_classes, what="clean labels")
    rate = _check_rate(rate)
    if noise_type not in _NOISE_TYPES:
        raise ValueError(f"unknown noise type {noise_type!r}; choose one of: {', '.join(_NOISE_TYPES)}")
    rng = np.random.default_rng(int(seed))
    if noise_type == "symmetric":
        noisy = _symmetric(clean, rate, num_classes, rng)
    elif noise_type == "uniform":
        noisy = _uniform(clean, rate, num_classes, rng)
    else:
        target = _pairflip_map(num_classes) if noise_type == "pairflip" else _asymmetric_map(dataset, num_classes)
        noisy = _flip_by_map(clean, rate, target, rng)
    return _result(noisy, clean, num_classes, noise_type=noise_type, nominal_rate=rate, seed=int(seed))


def transition_matrix(noisy: np.ndarray, clean: np.ndarray, num_classes: int) -> np.ndarray:
    """Realised row-normalised P(noisy | clean), ``num_classes`` x ``num_classes``, float64."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (np.asarray(clean), np.asarray(noisy)), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    empty = totals[:, 0] == 0
    counts[empty] = np.eye(num_classes)[empty]
    return counts / counts.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------ noise models


def _symmetric(clean: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    noisy = clean.copy()
    chosen = rng.permutation(len(clean))[: int(round(rate * len(clean)))]
    # An offset in 1..C-1 gives a different class, uniformly over the other C-1 classes.
    offsets = rng.integers(1, num_classes, size=len(chosen)) if num_classes > 1 else np.zeros(len(chosen), int)
    noisy[chosen] = (clean[chosen] + offsets) % num_classes
    return noisy


def _uniform(clean: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    redraw = rng.random(len(clean)) < rate
    drawn = rng.integers(0, num_classes, size=len(clean))
    return np.where(redraw, drawn, clean)


def flip_quotas(class_sizes: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """How many samples of each class flip: round(rate · N) in all (N = sum of the class sizes), shared out
    by the largest-remainder method over the exact quotas rate · n_c (ties broken at random with ``rng``),
    so small classes cannot round the total away from the rate asked for."""
    sizes = np.asarray(class_sizes, dtype=np.int64)
    exact = rate * sizes
    quotas = np.floor(exact).astype(np.int64)
    left = int(round(rate * sizes.sum())) - int(quotas.sum())
    if left > 0:
        remainder = exact - quotas
        order = np.lexsort((rng.random(len(sizes)), -remainder))  # largest remainder first
        quotas[order[:left]] += 1
    return np.minimum(quotas, sizes)


def _flip_by_map(clean: np.ndarray, rate: float, target: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    noisy = clean.copy()
    classes = sorted(target)
    members = [np.flatnonzero(clean == source_class) for source_class in classes]
    quotas = flip_quotas(np.array([len(m) for m in members]), rate, rng)
    for source_class, group, quota in zip(classes, members, quotas):
        noisy[rng.permutation(group)[:quota]] = target[source_class]
    flipped, total = int(quotas.sum()), int(sum(len(m) for m in members))
    if total and abs(flipped / total - rate) > RATE_TOLERANCE:
        warnings.warn(f"noise rate {rate:g} asked, {flipped / total:.4f} realised: {total} samples of the "
                      f"flipped classes allow {flipped} flips", NoiseRateWarning, stacklevel=3)
    return noisy


def _pairflip_map(num_classes: int) -> dict[int, int]:
    return {c: (c + 1) % num_classes for c in range(num_classes)}


def _asymmetric_map(dataset: str | None, num_classes: int) -> dict[int, int]:
    if dataset == "cifar10" and num_classes == 10:
        return dict(CIFAR10_ASYMMETRIC_MAP)
    if dataset == "cifar100" and num_classes == 100:
        return _cifar100_superclass_map()
    raise ValueError(f"asymmetric noise is defined for cifar10 and cifar100, got dataset={dataset!r} "
                     f"with {num_classes} classes; use pairflip for other data sets")


def _cifar100_superclass_map() -> dict[int, int]:
    coarse = np.asarray(CIFAR100_COARSE_OF_FINE)
    target = {}
    for superclass in range(20):
        members = np.flatnonzero(coarse == superclass)
        for position, fine in enumerate(members):
            target[int(fine)] = int(members[(position + 1) % len(members)])
    return target


# ---------------------------------------------------------------------------------------- checking


def _check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not math.isfinite(rate):
        raise ValueError(f"noise rate must be a number in [0, 1], got {rate!r}")
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"noise rate must be in [0, 1], got {rate!r}")
    return float(rate)


def _check_labels(labels, num_classes: int, *, what: str) -> np.ndarray:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {tuple(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise ValueError(f"{what} must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        bad = array[(array < 0) | (array >= num_classes)][0]
        raise ValueError(f"{what} must be in [0, {num_classes}), found {bad}")
    return array


def _result(noisy: np.ndarray, clean: np.ndarray, num_classes: int, **fields) -> NoiseResult:
    matrix = transition_matrix(noisy, clean, num_classes)
    rate = float(np.mean(noisy != clean)) if len(clean) else 0.0
    return NoiseResult(
        noisy_labels=torch.from_numpy(noisy.astype(np.int64)),
        clean_labels=torch.from_numpy(clean.astype(np.int64)),
        transition_matrix=torch.from_numpy(matrix),
        noise_rate=rate,
        **fields,
    )


def noise_from_labels(noisy_labels, clean_labels, num_classes: int, *, source: str) -> NoiseResult:
    """A :class:`NoiseResult` for labels that came noisy with the data (e.g. ``npz:`` with ``clean_labels``)."""
    clean = _check_labels(clean_labels, num_classes, what="clean labels")
    noisy = _check_labels(noisy_labels, num_classes, what=f"noisy labels of {source}")
    if len(noisy) != len(clean):
        raise ValueError(f"{source} holds {len(noisy)} noisy labels for {len(clean)} clean ones")
    return _result(noisy, clean, num_classes, noise_type="given", nominal_rate=float(np.mean(noisy != clean)),
                   seed=None, source=source)


# ----------------------------------------------------------------------------------- label files


def load_noise_file(
    path: str | os.PathLike,
    clean_labels: torch.Tensor | np.ndarray,
    num_classes: int,
    *,
    key: str | None = None,
    indices: torch.Tensor | np.ndarray | None = None,
    source_size: int | None = None,
) -> NoiseResult:
    """Import noisy labels from ``.npy``, ``.npz`` or ``.pt`` (e.g. CIFAR-10N ``CIFAR-10_human.pt``).

    The array is picked with ``key=`` or a ``path.pt:KEY`` suffix (e.g. ``worse_label``,
    ``aggre_label``, ``random_label1``; CIFAR-100N uses ``noisy_label``). ``indices`` selects the
    entries of a full-length file that belong to a subset (``ImageDataset.source_indices``); then the
    file must hold exactly ``source_size`` labels (when given), one per image of the official training
    set: a longer or shorter file belongs to another data set and is refused, never cut to fit. If the
    file also holds clean labels, they must agree with ``clean_labels``.
    """
    path, key = split_key(path, key)
    clean = _check_labels(clean_labels, num_classes, what="clean labels")
    arrays = _read_label_arrays(path)
    name = _pick_key(arrays, key, path)
    expected = source_size or (len(clean) if indices is None else None)
    if expected is not None and len(arrays[name]) != expected:
        raise ValueError(f"{path} holds {len(arrays[name])} labels, the training set has {expected} (one label per "
                         f"image, under {name!r})")
    noisy = _select(_check_labels(arrays[name], num_classes, what=f"labels {name!r} in {path}"), indices, path)
    if len(noisy) != len(clean):
        raise ValueError(f"{path} holds {len(noisy)} labels, the training set has {len(clean)}")
    _check_file_clean_labels(arrays, indices, clean, path, num_classes)
    return _result(noisy, clean, num_classes, noise_type="file", nominal_rate=float(np.mean(noisy != clean)),
                   seed=None, source=f"{path}:{name}")


def split_key(path: str | os.PathLike, key: str | None = None) -> tuple[Path, str | None]:
    """``(file, key)`` of a label-file value ``FILE[:KEY]`` (``key``: one given beside it, which must agree)."""
    text = os.fspath(path)
    stem, sep, suffix = text.rpartition(":")
    if sep and stem.endswith(_LABEL_FILE_SUFFIXES) and suffix:
        if key is not None and key != suffix:
            raise ValueError(f"key given twice: {suffix!r} in the path and key={key!r}")
        return Path(stem), suffix
    return Path(text), key


def split_noise_path(path: str | os.PathLike) -> tuple[Path, str | None]:
    """``(file, key)`` of a ``--noise-file`` value ``FILE[:KEY]``; the file must exist and be a label file."""
    file, key = split_key(path, None)
    _check_is_file(file)
    if file.suffix.lower() not in _LABEL_FILE_SUFFIXES:
        raise ValueError(f"noise file {file} must end in .npy, .npz or .pt, got {file.suffix!r}")
    return file, key


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"noise file {path} is a folder; give the label file in it (.npy, .npz or .pt)")
    if not path.is_file():
        raise ValueError(f"noise file {path} does not exist")


def _read_label_arrays(path: Path) -> dict[str, np.ndarray]:
    _check_is_file(path)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        problem = numpy_file_problem(path)
        if problem:
            raise ValueError(f"noise file {path} {problem}")
    try:
        if suffix == ".npy":
            return {"labels": np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as bundle:
                return {name: bundle[name] for name in bundle.files}
        if suffix in (".pt", ".pth"):
            return _read_torch_labels(path)
    except (OSError, ValueError, RuntimeError, EOFError) as error:
        raise ValueError(f"cannot read noise file {path}: {str(error).splitlines()[0]}") from None
    raise ValueError(f"noise file {path} must end in .npy, .npz or .pt, got {suffix!r}")


# numpy types a label file may hold: arrays of any integer, float or bool dtype, and numpy scalars.
_LABEL_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
                 "float64", "bool")


def _numpy_globals() -> list:
    """What a ``torch.save``d numpy array or scalar names when unpickled; plain data, never code.

    Files pickled under numpy 1 (CIFAR-10N/100N) name ``numpy.core``, numpy 2 names ``numpy._core``.
    """
    multiarray = np._core.multiarray
    names = []
    for function in (multiarray._reconstruct, multiarray.scalar):
        names += [function, (function, f"numpy.core.multiarray.{function.__name__}")]
    return [np.ndarray, np.dtype, *names, *(type(np.dtype(name)) for name in _LABEL_DTYPES)]


def _read_torch_labels(path: Path) -> dict[str, np.ndarray]:
    """Read a ``torch.save``d tensor, array or dict of them without running code from the file."""
    loaded = load_plain(path, what="noise file", allowed=_numpy_globals())
    if not isinstance(loaded, dict):
        loaded = {"labels": loaded}
    arrays = {}
    for name, value in loaded.items():
        if isinstance(value, torch.Tensor):
            arrays[str(name)] = value.numpy()
        elif isinstance(value, (np.ndarray, np.generic, list, tuple)):
            arrays[str(name)] = np.asarray(value)
    return arrays


def _pick_key(arrays: dict[str, np.ndarray], key: str | None, path: Path) -> str:
    if key is not None:
        if key not in arrays:
            raise ValueError(f"noise file {path} has no key {key!r}; keys: {', '.join(sorted(arrays))}")
        return key
    candidates = [name for name in arrays if name not in _CLEAN_KEYS and arrays[name].ndim == 1]
    for name in _DEFAULT_KEYS:
        if name in arrays:
            return name
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        shapes = ", ".join(f"{name} {'x'.join(map(str, array.shape)) or 'scalar'}"
                           for name, array in sorted(arrays.items()))
        raise ValueError(f"noise file {path} holds no one-dimensional label array (one label per training image); "
                         f"it holds: {shapes}")
    raise ValueError(f"noise file {path} holds several label arrays ({', '.join(sorted(candidates))}); choose one "
                     f"as FILE:KEY, e.g. --noise-file {path}:{sorted(candidates)[0]}")


def _select(labels: np.ndarray, indices, path: Path) -> np.ndarray:
    if indices is None:
        return labels
    index = indices.cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
    if index.size and (index.min() < 0 or index.max() >= len(labels)):
        raise ValueError(f"{path} holds {len(labels)} labels, too few for the data set's indices")
    return labels[index.astype(np.int64)]


def _check_file_clean_labels(arrays, indices, clean: np.ndarray, path: Path, num_classes: int) -> None:
    for name in _CLEAN_KEYS:
        if name in arrays:
            stored = _select(_check_labels(arrays[name], num_classes, what=f"{name} in {path}"), indices, path)
            mismatched = int(np.sum(stored != clean)) if len(stored) == len(clean) else len(clean)
            if mismatched:
                raise ValueError(f"{path}: its {name} disagree with the data set's at {mismatched} of "
                                 f"{len(clean)} positions (wrong data set or order?)")


# ----------------------------------------------------------------------------- noisy_labels.npz


def save_noisy_labels(path: str | os.PathLike, result: NoiseResult) -> Path:
    """Write ``result`` to ``path`` (``noisy_labels.npz``) atomically: temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(temporary: str) -> None:
        with open(temporary, "wb") as stream:
            np.savez(
                stream,
                noisy_labels=result.noisy_labels.numpy(),
                clean_labels=result.clean_labels.numpy(),
                transition_matrix=result.transition_matrix.numpy(),
                noise_rate=np.float64(result.noise_rate),
                noise_type=np.str_(result.noise_type),
                nominal_rate=np.float64(result.nominal_rate),
                seed=np.int64(-1 if result.seed is None else result.seed),
                source=np.str_(result.source),
            )

    atomic_write(path, write, force=True)
    return path


def load_noisy_labels(path: str | os.PathLike) -> NoiseResult:
    """Read a ``noisy_labels.npz`` written by :func:`save_noisy_labels` (e.g. to resume a run).

    Raises ``ValueError`` naming the file if it is missing, not an .npz archive, or lacks the arrays
    ``noisy_labels``, ``clean_labels``, ``transition_matrix`` and ``noise_rate``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"noisy-label file {path} does not exist (a train-student run writes it as it starts)")
    problem = numpy_file_problem(path, "npz")
    if problem:
        raise ValueError(f"noisy-label file {path} {problem}")
    try:
        return _read_noisy_labels(path)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"noisy-label file {path} is not one that train-student wrote "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


def _read_noisy_labels(path: Path) -> NoiseResult:
    with np.load(path, allow_pickle=False) as bundle:
        seed = int(bundle["seed"]) if "seed" in bundle.files else -1
        return NoiseResult(
            noisy_labels=torch.from_numpy(bundle["noisy_labels"].astype(np.int64)),
            clean_labels=torch.from_numpy(bundle["clean_labels"].astype(np.int64)),
            transition_matrix=torch.from_numpy(bundle["transition_matrix"]),
            noise_rate=float(bundle["noise_rate"]),
            noise_type=str(bundle["noise_type"]) if "noise_type" in bundle.files else "unknown",
            nominal_rate=float(bundle["nominal_rate"]) if "nominal_rate" in bundle.files else float("nan"),
            seed=None if seed < 0 else seed,
            source=str(bundle["source"]) if "source" in bundle.files else "",
        )
