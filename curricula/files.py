"""The toolkit's one file I/O module: atomic writes, output-path checks, hashing and JSON.

It sits in the lowest package so that every stage (curricula, mentor_training, student_training,
visualize, the CLI) writes files the same way and no stage imports another stage's private helpers.

Every file a command writes goes through :func:`atomic_write`: the content is written to a hidden
temporary file in the destination's folder (same extension, for writers that choose the format by
it), flushed to disk and moved into place with one rename, so a crash or a kill never leaves a
half-written file behind, and an existing file is replaced only with ``force``. A temporary file
names the process that writes it; one left by a process that was killed (SIGKILL leaves no chance to
clean up) is removed the next time anything is written beside it (:func:`sweep_stale_temporaries`).

:func:`load_plain` reads a ``torch.save`` file without ever running code from it, and turns every way
such a file can be wrong into one ``ValueError`` that names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterable

TOOLKIT_VERSION = "0.2.0"
_CHUNK = 1 << 20
_TEMPORARY = re.compile(r"^\..+\.pid(\d+)\.[^.]+\.tmp")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def sweep_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove this toolkit's temporary files in ``folder`` whose writing process no longer runs."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def numpy_file_problem(path: str | os.PathLike, kind: str | None = None) -> str | None:
    """Why the file ``path`` is not a numpy file of ``kind`` (``"npy"`` or ``"npz"``; by default its suffix), or
    ``None`` if it is one; asked before ``np.load``, which takes any other file for a pickle and refuses it with a
    message about pickled data. Reads only the first bytes (the ``.npy`` magic string, or a zip archive's)."""
    path = Path(path)
    if (kind or path.suffix.lower().lstrip(".")) == "npz":
        return None if zipfile.is_zipfile(path) else "is not an .npz archive (np.savez writes one)"
    with open(path, "rb") as file:
        return None if file.read(6) == b"\x93NUMPY" else "is not an .npy file (np.save writes one)"


def check_writable_folder(folder: str | os.PathLike, *, what: str = "output folder") -> Path:
    """Raise ``ValueError`` unless a file can be created in ``folder`` (tried, then removed): a read-only
    folder or file system is found before any work, not after it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{what} {folder} {'is a file, not a folder' if folder.exists() else 'does not exist'}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"cannot write in {what} {folder}: {error.strerror or error}") from None
    return folder


def check_output_path(path: str | os.PathLike, *, force: bool = False, option: str | None = None,
                      advice: str = "pass --force (force=True in Python) to overwrite it") -> Path:
    """Raise ``FileExistsError``/``ValueError`` unless ``path`` may be written; call before long work.

    The folder must exist and be a folder; an existing ``path`` needs ``force``; a folder at ``path``
    is refused whatever ``force`` says. ``option`` (e.g. ``"--out"``) is named in the messages, and ``advice``
    follows "already exists" (where ``--force`` does more than allow the overwrite, say so there).
    """
    path = Path(path)
    given = f" (for {option} {path})" if option else ""
    if path.is_dir():  # before the --force hint, which could not help
        raise ValueError(f"{option + ' ' if option else ''}{path} is a folder, expected a file path")
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; {advice}")
    if not path.parent.is_dir():
        state = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise ValueError(f"output folder {path.parent} {state}{given}")
    check_writable_folder(path.parent)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, force: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one rename.

    Without ``force`` an existing ``path`` is an error, checked before anything is written. Whatever
    happens inside ``write`` (an exception, KeyboardInterrupt), the temporary file is removed.
    """
    path = Path(path)
    check_output_path(path, force=force)
    sweep_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.pid{os.getpid()}.",
                               suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would keep the file from other users
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno is not None:  # name the file meant, not the temporary one
            raise OSError(error.errno, error.strerror or str(error), str(path)) from None
        raise
    return path


def write_text(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), force=force)


def write_json(path: str | os.PathLike, payload, *, force: bool = False) -> Path:
    """Write ``payload`` as indented, key-sorted JSON with a final newline, atomically."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n", force=force)


def _digest(path: str | os.PathLike, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    return _digest(path, "sha256")


def load_plain(path: str | os.PathLike, *, what: str, allowed: Iterable = ()):
    """``torch.load(path, weights_only=True)``: plain data and tensors only, never code.

    ``allowed`` lists extra globals the file may name (e.g. numpy array reconstruction). Every failure
    is a ``ValueError`` naming ``path`` and ``what`` it should have been: missing, unreadable, truncated
    or corrupt, or holding objects other than plain data (then refused, never executed).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(allowed)):
            warnings.simplefilter("ignore")  # e.g. torch's notice about old pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = [line.strip() for line in str(error).splitlines() if "Unsupported global" in line]
        if unsafe:
            detail = unsafe[0].split(" was not")[0].replace("WeightsUnpickler error: ", "")
            raise ValueError(f"{path} holds objects other than plain data and tensors; refusing to load it as a "
                             f"{what} ({detail})") from None
        _refuse_text(path, what)
        raise ValueError(f"{path} is not a readable {what} (corrupt, truncated, or not plain data); refusing to "
                         "load it") from None
    except OSError as error:
        raise ValueError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except Exception as error:  # noqa: BLE001 - the safe unpickler fails in many ways on junk input
        _refuse_text(path, what)
        raise ValueError(f"{path} is not a readable {what} (corrupt or truncated: {type(error).__name__})") from None


def _refuse_text(path: Path, what: str) -> None:
    """A text file (a CSV, a dump) given where a torch.save file belongs: say so, not "corrupt"."""
    if _looks_like_text(path):
        raise ValueError(f"{path} is a text file, not a {what} (a torch.save file); a dump or label file is "
                         "read by the option made for it") from None


def _looks_like_text(path: Path) -> bool:
    """Whether the file starts with printable UTF-8 text (a CSV, a dump), which no torch.save file does."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
        text = head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(text) and all(char.isprintable() or char in "\r\n\t" for char in text.lstrip("\ufeff"))


def md5_of(path: str | os.PathLike) -> str:
    """Hex md5 of a file's bytes (the checksum data-set publishers give)."""
    return _digest(path, "md5")


__all__ = ["TOOLKIT_VERSION", "atomic_write", "check_output_path", "check_writable_folder", "load_plain", "md5_of", "process_alive",
           "sha256_of", "sweep_stale_temporaries", "write_json", "write_text"]
