"""The toolkit's one file I/O module: atomic writes, output-path checks, hashing and JSON.

It sits in the lowest package so that every stage (curricula, mentor_training, student_training,
visualize, the CLI) writes files the same way and no stage imports another stage's private helpers.

Every file a command writes goes through :func:`atomic_write`: the content is written to a hidden
temporary file in the destination's folder (same extension, for writers that choose the format by
it), flushed to disk and moved into place with one rename, so a crash or a kill never leaves a
half-written file behind, and an existing file is replaced only with ``force``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

TOOLKIT_VERSION = "0.2.0"
_CHUNK = 1 << 20


def check_output_path(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Raise ``FileExistsError``/``ValueError`` unless ``path`` may be written; call before long work.

    The folder must exist and be a folder; an existing ``path`` needs ``force``; a folder at ``path``
    is refused whatever ``force`` says.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, expected a file path")
    if not path.parent.is_dir():
        raise ValueError(f"output folder {path.parent} does not exist")
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, force: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one rename.

    Without ``force`` an existing ``path`` is an error, checked before anything is written. Whatever
    happens inside ``write`` (an exception, KeyboardInterrupt), the temporary file is removed.
    """
    path = Path(path)
    check_output_path(path, force=force)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would keep the file from other users
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), force=force)


def write_json(path: str | os.PathLike, payload, *, force: bool = False) -> Path:
    """Write ``payload`` as indented, key-sorted JSON with a final newline, atomically."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n", force=force)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5_of(path: str | os.PathLike) -> str:
    """Hex md5 of a file's bytes (the checksum data-set publishers give)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["TOOLKIT_VERSION", "atomic_write", "check_output_path", "md5_of", "sha256_of", "write_json",
           "write_text"]
