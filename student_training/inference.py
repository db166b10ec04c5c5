"""Using a trained StudentNet: load it from a run, score it on labelled images, export it.

* :func:`load_student` rebuilds the student of a run folder (or of one ``best.pt``/``last.pt`` file) from
  the checkpoint alone, read with ``torch.load(weights_only=True)``: the architecture, the classes, the
  input shape and the input normalisation all come from the checkpoint's ``student`` entry (run format 2,
  :func:`student_training.run_folder.student_args`). It returns a :class:`StudentClassifier`, which takes
  raw pixel values, and the run's :class:`~student_training.config.StudentConfig`.
* :func:`evaluation_data` picks the images and labels to score (the run's test set, another data set,
  or the training images against the labels of a noise file) and checks that they fit the student;
  :func:`evaluate_student` scores them.
* :func:`export_student` writes the classifier with ``torch.export`` (a ``.pt2`` file), so that plain
  ``torch.export.load(path).module()`` runs it, normalisation included, without this toolkit.

The normalisation is TF's ``per_image_standardization`` (:func:`student_training.loader.per_image_standardize`),
the only transformation the training loader applies to every image; the random crop and flip of
``--augment`` are training-time only.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from curricula.files import TOOLKIT_VERSION, atomic_write, check_output_path, load_plain

from .config import StudentConfig, rebase_paths, run_config_values
from .data import ImageDataset, load_dataset
from .loader import per_image_standardize
from .models import create_student
from .noise import load_noise_file
from .run_folder import NORMALIZATION, READABLE_VERSIONS, read_config, recover_replaced_run, working_directory

CHECKPOINTS = ("best", "last")
SPLITS = ("test", "train")
EXPORT_METADATA = "student.json"  # the name of the metadata entry inside an exported .pt2 file


class StudentClassifier(nn.Module):
    """A trained StudentNet with its input normalisation: raw pixels in, logits out.

    ``forward(images)`` takes pixel values as the data sets hold them, a uint8 (or any numeric) tensor
    ``N x C x H x W`` with values in 0..255, standardises each image (``(x - mean) / max(std, 1/sqrt(C·H·W))``,
    TF's ``per_image_standardization``, as in training) and returns float32 logits ``N x num_classes``
    (N may be 0). Raises ``ValueError`` for images that are not ``N x`` :attr:`image_shape` (the ``C x H x W``
    the student was trained on). ``network`` is the bare StudentNet, which expects standardised float images.
    """

    def __init__(self, network: nn.Module, *, class_names, image_shape, normalization: str = NORMALIZATION):
        super().__init__()
        if normalization != NORMALIZATION:
            raise ValueError(f"unknown input normalisation {normalization!r}; this toolkit knows {NORMALIZATION!r}")
        self.network = network
        self.class_names = tuple(str(name) for name in class_names)
        self.image_shape = tuple(int(size) for size in image_shape)
        self.normalization = normalization

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """Pixel values ``N x C x H x W`` to the standardised float32 images the network was trained on."""
        return per_image_standardize(images.float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_image_shape(images, self.image_shape)  # static sizes: no op in an export
        return self.network(self.preprocess(images)).float()


def check_image_shape(images: torch.Tensor, image_shape: tuple[int, ...]) -> None:
    """``ValueError`` unless ``images`` is ``N x C x H x W`` with ``C x H x W`` the student's ``image_shape``."""
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"images must be N x {' x '.join(map(str, image_shape))} (N x C x H x W, as the student was "
                         f"trained), got shape {tuple(images.shape)}")


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a loaded student came from: the file, which checkpoint, the epoch it was saved at, and the run's
    epochs (``None`` when the file is read without its run folder)."""

    path: Path
    which: str
    epoch: int
    run_epochs: int | None
    epochs_done: int | None = None  # the epochs the run has trained (last.pt's), whichever checkpoint this is

    @property
    def finished(self) -> bool | None:
        """Whether the run trained all its epochs (best.pt may be from an earlier epoch of a finished run)."""
        if self.run_epochs is None:
            return None
        done = self.epoch if self.epochs_done is None else self.epochs_done  # last.pt's, not best.pt's own
        return done >= self.run_epochs


def checkpoint_path(run_dir_or_checkpoint: str | os.PathLike, which: str | None = None) -> tuple[Path, str]:
    """The checkpoint file a run folder (``which``: ``best``, the default, or ``last``) or a file path names, and
    which one it is. ``ValueError`` if it does not exist, or if ``which`` is given with a file it does not name
    (``which="best"`` with ``last.pt``, or with a file of another name): it picks a file of a folder."""
    if which is not None and which not in CHECKPOINTS:
        raise ValueError(f"which must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
    path = Path(run_dir_or_checkpoint)
    if path.is_dir():
        recover_replaced_run(path)  # an earlier run that a killed --force run set aside: back in place
        which = which or "best"
        file = path / f"{which}.pt"
        if not file.is_file() and which == "best" and (path / "last.pt").is_file():
            raise ValueError(f"{path} holds no best.pt: {_why_no_best(path)}; use its last.pt (--checkpoint last)")
        if not file.is_file():
            raise ValueError(f"{path} holds no finished checkpoint: {file.name} does not exist (was the run "
                             "stopped before its first epoch ended?)")
        return file, which
    if not path.exists():
        raise ValueError(f"{path} does not exist: give a train-student run folder or its best.pt/last.pt")
    named = {"last.pt": "last", "best.pt": "best"}.get(path.name)
    if which is not None and which != named:
        raise ValueError(f"--checkpoint {which} (which={which!r}) picks a file of a run folder, and {path} is a file: "
                         "give the run folder, or drop it")
    return path, named or "best"


def _why_no_best(run_dir: Path) -> str:
    """Why a run folder with a last.pt has no best.pt, from its config.json's record of its validation split."""
    try:
        validation = (read_config(run_dir)[1].get("resolved") or {}).get("validation")
    except ValueError:
        validation = None
    if validation in (None, "none"):
        return "a run without a validation split (--validation-fraction 0) keeps none"
    return f"the run chose it on {validation}, and it is not there (deleted or moved?)"


def read_student_checkpoint(path: str | os.PathLike) -> dict:
    """A ``best.pt`` or ``last.pt`` of a run, read with ``weights_only=True`` and checked: its kind, run
    format, ``student`` description, ``config`` and ``model`` are there. ``ValueError`` otherwise."""
    path = Path(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":  # torch.save writes a zip archive (a pickle before 1.6)
        raise ValueError(f"{path} is not a checkpoint (not a file torch.save writes): give a train-student run folder "
                         "or its best.pt/last.pt")
    state = load_plain(path, what="checkpoint")
    if not isinstance(state, dict) or state.get("kind") not in ("student", "student_run"):
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a StudentNet checkpoint of a train-student run (kind: {found!r})")
    version = state.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path} has run format version {version!r}; this toolkit reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    if not isinstance(state.get("student"), dict):
        raise ValueError(f"{path} (run format {version}) does not say how to rebuild its network (no 'student' "
                         "entry, added in run format 2): retrain the run with this toolkit to use it")
    missing = [key for key in ("config", "model", "epoch") if key not in state]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return state


def student_from_checkpoint(state: dict, *, origin: str = "checkpoint") -> StudentClassifier:
    """Rebuild the :class:`StudentClassifier` of a checked checkpoint dict, on the CPU, in eval mode."""
    student = state["student"]
    try:
        network = create_student(student["name"], num_classes=int(student["num_classes"]),
                                 in_channels=int(student["in_channels"]), image_size=int(student["image_size"]))
        network.load_state_dict(state["model"])
    except KeyError as error:
        raise ValueError(f"{origin}: its student description lacks {error}") from None
    except RuntimeError as error:
        raise ValueError(f"{origin}: weights do not fit a {student['name']} network "
                         f"({str(error).strip().splitlines()[0][:160]})") from None
    shape = (int(student["in_channels"]), int(student["image_size"]), int(student["image_size"]))
    names = student.get("class_names") or [str(c) for c in range(int(student["num_classes"]))]
    model = StudentClassifier(network, class_names=names, image_shape=shape,
                              normalization=student.get("normalization", NORMALIZATION))
    return model.eval().requires_grad_(False)


def load_student(run_dir_or_checkpoint: str | os.PathLike, *, which: str | None = None,
                 device: str | torch.device = "cpu") -> tuple[StudentClassifier, StudentConfig]:
    """The trained StudentNet of a run and the run's config.

    ``run_dir_or_checkpoint`` is a ``train-student`` run folder, of which ``which`` picks ``best.pt``
    (``"best"``, the default: the student at the epoch the run chose as its best) or ``last.pt`` (``"last"``: the
    student at the last epoch trained), or the path of one such file (then ``which``, if given, must name it).
    The file is read with ``torch.load(weights_only=True)``, so it cannot run code, and the network is rebuilt
    from it alone (architecture, number of classes, input channels and size, class names, normalisation).

    Returns ``(model, config)``: ``model`` is a :class:`StudentClassifier` in eval mode on ``device`` that
    maps uint8 images ``N x C x H x W`` to logits ``N x num_classes``, with ``model.network`` the bare
    StudentNet and ``model.checkpoint`` a :class:`CheckpointInfo`; ``config`` is the run's
    :class:`~student_training.config.StudentConfig`.

    Raises ``ValueError`` for a missing file, a run stopped before its first checkpoint, a file that is not
    a student checkpoint of run format 2 or that holds pickled code, weights that do not fit the network, or a
    CUDA ``device`` where no CUDA GPU is available.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for, but no CUDA GPU is available")
    path, which = checkpoint_path(run_dir_or_checkpoint, which)
    state = read_student_checkpoint(path)
    model = student_from_checkpoint(state, origin=str(path))
    try:
        # as config.json is read: a run of an earlier release gets the values its release had for newer options
        config = StudentConfig.from_dict(run_config_values(state, origin=str(path)), origin=f"{path} config")
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: its run config does not load ({error})") from None
    payload = _run_payload(path.parent)
    config = rebase_paths(config, working_directory(payload))  # its relative paths, from wherever the run began
    model.checkpoint = CheckpointInfo(path=path, which=which, epoch=int(state["epoch"]),
                                      run_epochs=_run_epochs(payload), epochs_done=_epochs_done(path.parent))
    return model.to(device), config


def _run_payload(folder: Path) -> dict:
    """``config.json`` of the run in ``folder`` ({} if it is no readable run folder)."""
    try:
        return read_config(folder)[1]
    except ValueError:
        return {}


def _run_epochs(payload: dict) -> int | None:
    """The epochs the run was to train (``config.json``'s ``resolved``, as read by :func:`_run_payload`)."""
    epochs = (payload.get("resolved") or {}).get("epochs")
    return int(epochs) if isinstance(epochs, int) else None


def _epochs_done(folder: Path) -> int | None:
    """The epochs the run in ``folder`` has finished: the epoch of its ``last.pt``, the file an epoch is
    saved to last (after ``metrics.csv`` and ``best.pt``), so a run killed between them is not counted
    as done (None without a readable one). Memory-mapped: the tensors are not read."""
    path = folder / "last.pt"
    if not path.is_file():
        return None
    for mmap in (True, False):  # a file in torch's legacy (non-zip) format cannot be memory-mapped
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            return int(state["epoch"])
        except Exception:  # noqa: BLE001 - a foreign or corrupt file: nothing is known
            continue
    return None


# ------------------------------------------------------------------------------------------ scoring


@dataclass(frozen=True)
class EvaluationData:
    """Labelled images to score: uint8 ``images`` ``N x C x H x W``, int64 ``labels`` ``[N]`` (the labels
    scored against), ``sample_ids`` ``[N]`` (test-set index, or for the training split the index in the
    official training set), ``true_labels`` (the clean labels when ``labels`` are noisy, else ``None``),
    the data set's ``class_names`` and a one-line ``description``."""

    images: torch.Tensor
    labels: torch.Tensor
    sample_ids: torch.Tensor
    true_labels: torch.Tensor | None
    class_names: tuple[str, ...]
    description: str


def evaluation_data(model: StudentClassifier, config: StudentConfig, *, dataset: str | None = None,
                    data_dir: str | None = None, split: str = "test",
                    noise_file: str | None = None) -> EvaluationData:
    """The images and labels :func:`evaluate_student` scores, checked against ``model``.

    By default the test set of the run's own data set (``config.dataset``, read from ``config.data_dir``).
    ``dataset``/``data_dir`` name another one (any name :func:`~student_training.data.load_dataset` takes,
    ``npz:PATH`` included). ``split="train"`` scores the training images (the run's ``subset`` when the data
    set is the run's own) against their true labels, or against the labels of ``noise_file`` (read as
    ``train-student --noise-file`` reads it: full-length, in the official order; it implies the training
    split).

    Raises ``ValueError`` when the data set's number of classes, class names or image shape (C x H x W)
    differ from the student's, and for the errors of ``load_dataset`` and ``load_noise_file``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if noise_file is not None:
        split = "train"
    own = dataset is None or dataset == config.dataset
    name = config.dataset if dataset is None else dataset
    recorded = data_dir is None and own and config.data_dir is not None  # the run's own --data-dir, as it gave it
    try:
        data = load_dataset(name, data_dir=data_dir if data_dir is not None else config.data_dir if own else None,
                            subset=config.subset if own else None, seed=config.seed)
    except ValueError as error:  # evaluate has no --download; and say where a folder it did not give came from
        message = str(error).replace("or pass download=True (--download)",
                                     "or fetch it with train-student --download (evaluate does not download)")
        if recorded:
            message += (f" (the run's own --data-dir {config.data_dir}, as recorded in its config.json; give "
                        "--data-dir to read the data set from elsewhere)")
        raise ValueError(message) from None
    check_compatible(model, data)
    if split == "test":
        return EvaluationData(data.test_images, data.test_labels, torch.arange(len(data.test_labels)), None,
                              data.class_names, f"{name} test set ({len(data.test_labels)} images)")
    true = data.train_labels
    if noise_file is not None:
        labels = load_noise_file(noise_file, true, data.num_classes, indices=data.source_indices).noisy_labels
        origin = f"labels of {noise_file}"
    elif data.noisy_train_labels is not None:
        labels, origin = data.noisy_train_labels, "the labels it brings"
    elif data.name.startswith("npz:"):  # an npz without clean_labels: its train_labels are the labels given
        labels, true, origin = true, None, "the labels it brings"
    else:
        labels, true, origin = true, None, "true labels"
    return EvaluationData(data.train_images, labels, data.source_indices, true, data.class_names,
                          f"{name} training images ({len(labels)}) against {origin}")


def check_compatible(model: StudentClassifier, data: ImageDataset) -> None:
    """``ValueError`` unless ``data``'s image shape (C x H x W) and number of classes are the student's, and
    its class names too where both name their classes (names ``"0"``, ``"1"``, ... mean unnamed)."""
    shape = tuple(data.train_images.shape[1:])
    if shape != model.image_shape:
        raise ValueError(f"data set {data.name} has images of shape {'x'.join(map(str, shape))} (C x H x W), the "
                         f"student takes {'x'.join(map(str, model.image_shape))}")
    if data.num_classes != model.num_classes:
        raise ValueError(f"data set {data.name} has {data.num_classes} classes, the student {model.num_classes}")
    numbered = tuple(str(c) for c in range(data.num_classes))  # what a data set without class names gets
    if numbered not in (tuple(data.class_names), model.class_names) and tuple(data.class_names) != model.class_names:
        differ = next(i for i, (a, b) in enumerate(zip(data.class_names, model.class_names)) if a != b)
        raise ValueError(f"data set {data.name} names its classes differently from the student's (class {differ}: "
                         f"{data.class_names[differ]!r} vs {model.class_names[differ]!r})")


@dataclass(frozen=True)
class Evaluation:
    """Per-sample results of :func:`evaluate_student`, all ``[N]`` numpy arrays: ``sample_id``, ``label``
    (scored against), ``prediction`` (top-1 class), ``confidence`` (its softmax probability, in [0, 1])."""

    sample_id: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    confidence: np.ndarray
    class_names: tuple[str, ...]

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy: the fraction of samples whose prediction equals their label (NaN when empty)."""
        return float(np.mean(self.prediction == self.label)) if len(self.label) else float("nan")

    def per_class(self) -> pd.DataFrame:
        """One row per class: ``class``, ``name``, ``count`` (samples labelled so), ``correct``, ``accuracy``
        (NaN for a class with no samples)."""
        classes = np.arange(len(self.class_names))
        count = np.bincount(self.label, minlength=len(classes))
        correct = np.bincount(self.label[self.prediction == self.label], minlength=len(classes))
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(count > 0, correct / np.maximum(count, 1), np.nan)
        return pd.DataFrame({"class": classes, "name": list(self.class_names), "count": count, "correct": correct,
                             "accuracy": accuracy})

    def to_frame(self) -> pd.DataFrame:
        """The predictions CSV: ``sample_id, label, prediction, confidence``, in sample order."""
        return pd.DataFrame({"sample_id": self.sample_id, "label": self.label, "prediction": self.prediction,
                             "confidence": self.confidence})


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 1000,
            device: str | torch.device | None = None,
            progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Softmax probabilities ``N x num_classes`` (float32, on the CPU) of ``model`` (e.g. a
    :class:`StudentClassifier`) for uint8 ``images`` ``N x C x H x W``, in batches of ``batch_size``;
    ``progress(done, N)`` is called after each batch.

    Raises ``ValueError`` for a bad ``batch_size``, and for images whose ``C x H x W`` is not the
    ``image_shape`` of a :class:`StudentClassifier` (the student was trained on that size)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if getattr(model, "image_shape", None) is not None:  # before the first batch (also for N = 0)
        check_image_shape(images, model.image_shape)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        chunks.append(torch.softmax(model(images[start:start + batch_size].to(device)).float(), dim=1).cpu())
        if progress is not None:
            progress(min(start + batch_size, len(images)), len(images))
    return torch.cat(chunks) if chunks else torch.zeros(0, getattr(model, "num_classes", 0))


def evaluate_student(model: StudentClassifier, data: EvaluationData, *, batch_size: int = 1000,
                     progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Score ``model`` on ``data``: top-1 prediction and its softmax confidence for every image (``progress`` as
    :func:`predict`'s)."""
    probabilities = predict(model, data.images, batch_size=batch_size, progress=progress)
    confidence, prediction = probabilities.max(dim=1)
    return Evaluation(sample_id=data.sample_ids.numpy(), label=data.labels.numpy(), prediction=prediction.numpy(),
                      confidence=confidence.numpy(), class_names=data.class_names)


def write_predictions(evaluation: Evaluation, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write ``sample_id, label, prediction, confidence`` (confidence to 6 decimals) atomically."""
    frame = evaluation.to_frame()
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6f"), force=force)


# ------------------------------------------------------------------------------------------- export


def export_student(model: StudentClassifier, path: str | os.PathLike, *, force: bool = False,
                   source: str | None = None) -> Path:
    """Write ``model`` with ``torch.export`` to ``path`` (``.pt2``), the batch size left free.

    The exported program takes uint8 images ``N x C x H x W`` (pixel values 0..255) and returns float32
    logits ``N x num_classes``; the normalisation is inside it. Plain PyTorch runs it without this toolkit::

        program = torch.export.load("student.pt2")
        logits = program.module()(images_uint8)

    The file also holds ``student.json`` (class names, image shape, normalisation, ``source``, toolkit and
    torch versions); read it with ``torch.export.load(path, extra_files={"student.json": ""})``.
    The export is checked before the file is moved into place: its logits on a sample batch must equal
    the model's. Raises ``FileExistsError`` for an existing ``path`` without ``force``, ``ValueError`` for
    a path not ending in ``.pt2``.
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"export path {path} must end in .pt2 (torch.export's file format)")
    check_output_path(path, force=force)
    model = model.cpu().eval()
    example = torch.randint(0, 256, (2, *model.image_shape), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(example), model(example), rtol=1e-5, atol=1e-5)
    metadata = json.dumps({"class_names": list(model.class_names), "image_shape": list(model.image_shape),
                           "input": "uint8 N x C x H x W, pixel values 0..255", "output": "float32 logits N x "
                           f"{model.num_classes}", "normalization": model.normalization, "source": source,
                           "toolkit_version": TOOLKIT_VERSION, "torch_version": str(torch.__version__)}, indent=2)
    return atomic_write(path, lambda tmp: torch.export.save(program, tmp, extra_files={EXPORT_METADATA: metadata}),
                        force=force)


__all__ = ["CHECKPOINTS", "CheckpointInfo", "Evaluation", "EvaluationData", "SPLITS", "StudentClassifier",
           "check_compatible", "checkpoint_path", "evaluate_student", "evaluation_data", "export_student",
           "load_student", "predict", "read_student_checkpoint", "student_from_checkpoint", "write_predictions"]
