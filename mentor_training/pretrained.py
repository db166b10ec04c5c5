"""Resolving MentorNets by pretrained name or path, with the sha256 of shipped files verified on load."""

from __future__ import annotations

import json
import os
from pathlib import Path

from curricula.files import sha256_of
from pretrained import MANIFEST_PATH, PRETRAINED_DIR

from .checkpoint import CheckpointError, mentornet_from_checkpoint, read_checkpoint
from .model import MentorNet


def read_manifest(path: str | os.PathLike | None = None) -> dict:
    """The pretrained manifest: ``{name: {file, sha256, command, source, metrics, ...}}``."""
    path = Path(path if path is not None else MANIFEST_PATH)
    if not path.exists():
        return {}
    with open(path) as handle:
        return json.load(handle)


def list_pretrained() -> list[str]:
    """The names of the MentorNets shipped in ``pretrained/`` (its manifest), sorted."""
    return sorted(read_manifest())


def pretrained_path(name: str) -> Path:
    """The verified file of pretrained MentorNet ``name``; a sha256 mismatch is an error."""
    manifest = read_manifest()
    if name not in manifest:
        raise CheckpointError(f"no pretrained MentorNet named {name!r}; shipped: {', '.join(sorted(manifest))}")
    entry = manifest[name]
    path = PRETRAINED_DIR / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"pretrained MentorNet {name!r} is missing its file {path}")
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise CheckpointError(f"pretrained MentorNet {name!r} fails its sha256 check "
                              f"(manifest {entry['sha256'][:12]}…, file {actual[:12]}…)")
    return path


def _shipped_name(path: Path) -> str | None:
    """The pretrained name whose shipped file ``path`` is, if any (however the path is spelled)."""
    try:
        resolved = path.resolve()
    except OSError:
        return None
    for name, entry in read_manifest().items():
        if (PRETRAINED_DIR / entry["file"]).resolve() == resolved:
            return name
    return None


def resolve_mentornet_path(name_or_path: str | os.PathLike) -> Path:
    """The file behind a pretrained name or an existing path. A shipped file is sha256-verified either way."""
    text = str(name_or_path)
    if text in read_manifest():
        return pretrained_path(text)
    if Path(text).exists():
        shipped = _shipped_name(Path(text))
        return pretrained_path(shipped) if shipped is not None else Path(text)
    shipped = ", ".join(list_pretrained()) or "none"
    raise CheckpointError(f"{text!r} is neither a pretrained MentorNet ({shipped}) nor an existing file")


def load_mentornet(name_or_path: str | os.PathLike, *, device="cpu") -> MentorNet:
    """A frozen MentorNet in eval mode on ``device``, from a pretrained name (see ``list_pretrained()``) or a file
    path. Raises :class:`~mentor_training.checkpoint.CheckpointError` (a ``ValueError``) for an unknown name, a
    missing or invalid file, a pretrained file whose sha256 differs from the manifest's, or weights that do not
    fit the MentorNet."""
    path = resolve_mentornet_path(name_or_path)
    return mentornet_from_checkpoint(read_checkpoint(path), origin=str(path)).to(device)
