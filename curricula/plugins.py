"""Curricula from outside the toolkit: installed packages (entry points) and single files (``--plugin``).

A package declares, in its ``setup.cfg``::

    [options.entry_points]
    mentornet.curricula =
        my_curricula = my_package.curricula

and importing ``my_package.curricula`` registers its curricula with ``@register_curriculum``. The
registry loads every such entry point once, the first time curricula are listed or looked up. A plugin
that fails to import is skipped with a one-line :class:`PluginWarning` naming it; one that registers
a name already taken is an error (``ValueError``), since silently dropping either curriculum would
make a run mean something other than what its command says.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import warnings
from importlib import metadata
from pathlib import Path

from .registry import DuplicateCurriculumError

ENTRY_POINT_GROUP = "mentornet.curricula"

_loaded = False


class PluginWarning(UserWarning):
    """A curriculum plugin could not be loaded and was skipped."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _warn(message: str, plugin: str) -> None:
    # warn_explicit with a source-less "filename" keeps the printed warning on one line.
    warnings.warn_explicit(message, PluginWarning, filename=f"<curriculum plugin {plugin}>", lineno=0)


def load_entry_point_plugins(*, force: bool = False) -> list[str]:
    """Load every ``mentornet.curricula`` entry point once; returns the names of those loaded now."""
    global _loaded
    if _loaded and not force:
        return []
    _loaded = True
    loaded = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except DuplicateCurriculumError as error:
            raise ValueError(f"curriculum plugin {entry_point.name!r} ({entry_point.value}): {error}") from None
        except Exception as error:  # noqa: BLE001  (a broken plugin must not break the toolkit)
            _warn(f"curriculum plugin {entry_point.name!r} ({entry_point.value}) failed to load and was "
                  f"skipped: {_one_line(error)}", entry_point.name)
            continue
        loaded.append(entry_point.name)
    return loaded


def load_plugin_file(path) -> str:
    """Import a ``.py`` file that registers curricula; returns the module name it was imported as.

    The same file again is not run again, unless it changed since: then it is (its curricula replace their
    earlier versions, so a notebook can edit a plugin and load it again). A missing file, an import error or a
    name already taken by another module raise ``ValueError`` with one line.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"plugin file {path} does not exist")
    if not path.is_file() or path.suffix != ".py":
        raise ValueError(f"plugin file {path} must be a .py file")
    resolved = path.resolve()
    module_name = f"mentornet_plugin_{path.stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"
    contents = hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__plugin_sha256__", None) == contents:
        return module_name  # the same file again (say, a second command in one process): already registered
    # New, or edited since it was loaded (a notebook): run it (again); its curricula replace their earlier versions.
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    module.__plugin_sha256__ = contents
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except DuplicateCurriculumError as error:
        _forget(module_name, loaded)
        raise ValueError(f"plugin file {path}: {error}") from None
    except Exception as error:  # noqa: BLE001
        _forget(module_name, loaded)
        raise ValueError(f"plugin file {path} failed to load: {_one_line(error)}") from None
    return module_name


def _forget(module_name: str, loaded) -> None:
    """Undo a failed load: the earlier version of the file stays loaded, if there was one."""
    if loaded is None:
        del sys.modules[module_name]
    else:
        sys.modules[module_name] = loaded
