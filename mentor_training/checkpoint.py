"""Self-describing MentorNet checkpoints (``../shared/design.md``, "Checkpoints").

A checkpoint is a ``torch.save`` of a dict of plain types and tensors, so ``torch.load(path,
weights_only=True)`` reads it and an untrusted file cannot run code. It holds ``format_version``,
``kind``, ``model_config``, ``feature_spec``, ``source``, ``student_defaults``, ``metrics``,
``provenance`` and ``state_dict``. Files are written atomically: a temporary file in the same folder,
then a rename, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from curricula.features import WeighterConfig, check_feature_spec
from curricula.files import TOOLKIT_VERSION, atomic_write, load_plain

from .model import MentorNet, MentorNetConfig

FORMAT_VERSION = 1
KIND = "mentornet"


class CheckpointError(ValueError):
    """A file that is not a MentorNet checkpoint this toolkit can load."""


def provenance(command: str | None = None) -> dict:
    return {
        "toolkit_version": TOOLKIT_VERSION,
        "torch_version": str(torch.__version__),
        "command": command if command is not None else " ".join(sys.argv),
    }


def build_checkpoint(model: MentorNet, *, source: dict, feature_spec: dict, student_defaults: WeighterConfig | dict,
                     metrics: dict, command: str | None = None) -> dict:
    """The checkpoint dict for ``model``; every value is a plain type or a tensor."""
    check_feature_spec(feature_spec)
    return _plain({
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "model_config": model.config.to_dict(),
        "feature_spec": dict(feature_spec),
        "source": dict(source),
        "student_defaults": WeighterConfig.coerce(student_defaults).to_dict(),
        "metrics": dict(metrics),
        "provenance": provenance(command),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    })


def _plain(value):
    """Builtin types only (str subclasses such as torch's version string would not load safely)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if value is None:
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"checkpoint values must be plain data, got {type(value).__name__}")


def save_checkpoint(checkpoint: dict, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Validate ``checkpoint`` (a dict from :func:`build_checkpoint`) and write it to ``path`` in one rename; returns
    the path. Raises :class:`CheckpointError` (a ``ValueError``) for an invalid checkpoint, ``FileExistsError`` for
    an existing ``path`` without ``force``, ``ValueError`` for a missing or unwritable folder."""
    validate_checkpoint(checkpoint, origin=str(path))
    return atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), force=force)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a MentorNet checkpoint (``torch.load(weights_only=True)``: never arbitrary objects).

    Raises :class:`CheckpointError` (a ``ValueError``) for a missing, unreadable or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no MentorNet checkpoint at {path}")
    try:
        checkpoint = load_plain(path, what="checkpoint")
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    validate_checkpoint(checkpoint, origin=str(path))
    return checkpoint


def validate_checkpoint(checkpoint, *, origin: str = "checkpoint") -> None:
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != KIND:
        found = checkpoint.get("kind") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{origin} is not a MentorNet checkpoint (kind: {found!r})")
    version = checkpoint.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{origin} has no valid format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{origin} has format version {version}, newer than this toolkit's "
                              f"{FORMAT_VERSION}; upgrade the toolkit to read it")
    missing = [key for key in ("model_config", "feature_spec", "source", "student_defaults", "metrics",
                               "provenance", "state_dict") if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{origin} lacks {', '.join(missing)}")
    not_dicts = [key for key in ("model_config", "feature_spec", "source", "student_defaults", "metrics", "provenance")
                 if not isinstance(checkpoint[key], dict)]
    if not_dicts:
        raise CheckpointError(f"{origin}: {', '.join(not_dicts)} must be a dict (a mapping of names to values)")
    try:
        check_feature_spec(checkpoint["feature_spec"])
    except ValueError as error:
        raise CheckpointError(f"{origin}: {error}") from None
    state = checkpoint["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{origin}: state_dict must map names to tensors")
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise CheckpointError(f"{origin}: the weights {', '.join(broken)} hold NaN or infinite values; "
                              "this MentorNet would weight every sample NaN")


def mentornet_from_checkpoint(checkpoint: dict, *, origin: str = "checkpoint") -> MentorNet:
    """Rebuild the MentorNet from a validated checkpoint dict, frozen and in eval mode."""
    try:
        model = MentorNet(MentorNetConfig(**checkpoint["model_config"]))
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, RuntimeError) as error:
        # torch's load_state_dict message is a header line, then one line per mismatch: keep them on one line
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
        message = message.replace("Error(s) in loading state_dict for MentorNet: ", "")
        raise CheckpointError(f"{origin}: weights do not fit the MentorNet architecture ({message[:240]})") from None
    try:
        model.student_defaults = WeighterConfig.coerce(checkpoint["student_defaults"],
                                                       origin=f"{origin} student_defaults")
    except (TypeError, ValueError) as error:
        raise CheckpointError(str(error)) from None
    model.requires_grad_(False)
    model.source = checkpoint["source"]
    model.feature_spec = checkpoint["feature_spec"]
    model.metrics = checkpoint["metrics"]
    return model.eval()
