"""The curriculum registry: ``register_curriculum``, ``get_curriculum`` and ``list_curricula``.

A curriculum is a frozen dataclass whose fields are its parameters (validated in ``__post_init__``)
and whose one method, ``weight(features)``, returns a float tensor shaped like ``features.loss`` with
values in [0, 1]. The registry is filled by explicit imports in ``curricula/__init__.py``.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Callable, Iterable

import torch

from .features import DEFAULT_WEIGHTER, NUM_EPOCHS, MentorFeatures, WeighterConfig
from .options import unwrap_optional

_REGISTRY: dict[str, type] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_FIELDS = ("name", "student_defaults")
"""Class attributes that :func:`register_curriculum` sets, so no parameter (dataclass field) may have these names."""
PARAMETER_TYPES = (bool, int, float, str)
"""The parameter types that ``-p key=value`` (and a string value given in Python) converts, each also as
``Optional[...]`` (``none`` gives ``None``), besides ``Literal[...]``; a container type is refused."""


class DuplicateCurriculumError(ValueError):
    """A curriculum name was registered twice (for instance by a plugin)."""


def register_curriculum(name: str) -> Callable[[type], type]:
    """Class decorator that registers a frozen dataclass curriculum under ``name``.

    A class of the same module and qualified name as the one registered replaces it: the same definition run
    again (a notebook cell re-run, a plugin file edited and loaded again). Any other class under a taken name
    raises :class:`DuplicateCurriculumError`; a name that is not lower_snake_case raises ``ValueError``; a
    class that is not a frozen dataclass with ``weight(features)``, or that has a parameter named ``name`` or
    ``student_defaults`` (:data:`RESERVED_FIELDS`), raises ``TypeError``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"curriculum name must be lower_snake_case, got {name!r}")

    def decorator(cls: type) -> type:
        taken = _REGISTRY.get(name)
        if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
            raise DuplicateCurriculumError(
                f"curriculum {name!r} is already registered (by {_REGISTRY[name].__module__})")
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
            raise TypeError(f"curriculum {name!r} must be a frozen dataclass")
        if not callable(getattr(cls, "weight", None)):
            raise TypeError(f"curriculum {name!r} must define weight(features)")
        reserved = [f.name for f in dataclasses.fields(cls) if f.name in RESERVED_FIELDS]
        if reserved:
            raise TypeError(f"curriculum {name!r}: a parameter may not be called {reserved[0]!r} (the registry sets "
                            f"{', '.join(RESERVED_FIELDS)} on the class); rename it")
        cls.name = name
        # The StudentNet settings learned MentorNets of this curriculum carry: the curriculum's own
        # (a WeighterConfig, or a dict of its fields), else the plain 2018 flags (spec §4.3), so that a
        # user's ten-line curriculum can be learned without knowing about them.
        defaults = getattr(cls, "student_defaults", None)
        cls.student_defaults = DEFAULT_WEIGHTER if defaults is None else \
            WeighterConfig.coerce(defaults, origin=f"curriculum {name!r} student_defaults")
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_plugins_once() -> None:
    """Load the ``mentornet.curricula`` entry-point plugins the first time the registry is read."""
    from .plugins import load_entry_point_plugins  # imported here: plugins imports this module

    load_entry_point_plugins()


def list_curricula() -> list[str]:
    """Registered curriculum names, sorted (installed plugins included)."""
    _load_plugins_once()
    return sorted(_REGISTRY)


def curriculum_class(name: str) -> type:
    if name not in _REGISTRY:
        _load_plugins_once()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown curriculum {name!r}; choose one of: {', '.join(list_curricula())} (a curriculum of your own "
            f"is known once its file is loaded: cli.py --plugin FILE, or an import in Python)"
        ) from None


def curriculum_parameters(name: str) -> dict[str, object]:
    """The parameters of curriculum ``name`` and their defaults (:data:`REQUIRED` for one without a default)."""
    return {f.name: _default(f) for f in dataclasses.fields(curriculum_class(name))}


class _Required:
    def __repr__(self) -> str:
        return "(required)"

    __str__ = __repr__


REQUIRED = _Required()
"""The default :func:`curriculum_parameters` gives a parameter that has none (it must be given)."""


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


def is_registered_curriculum(value) -> bool:
    """Whether ``value`` is an instance of a curriculum class registered with :func:`register_curriculum`."""
    kind = type(value)
    return _REGISTRY.get(getattr(kind, "name", None)) is kind


def get_curriculum(name: str, **params):
    """Build curriculum ``name`` with the given parameters (the others keep their defaults).

    Raises ``ValueError`` for an unknown curriculum or parameter, a parameter without a default that is not
    given, or a value the curriculum's own checks (``__post_init__``) refuse."""
    cls = curriculum_class(name)
    allowed = curriculum_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) or "none"
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for curriculum {name!r}; valid: {valid}")
    missing = [key for key, default in allowed.items() if default is REQUIRED and key not in params]
    if missing:
        raise ValueError(f"curriculum {name!r} has no default for {', '.join(missing)}; give "
                         + " ".join(f"-p {key}=VALUE" for key in missing) + " (in Python: "
                         + ", ".join(f"{key}=..." for key in missing) + ")")
    return cls(**params)


def curriculum_source(curriculum) -> dict:
    """The ``source`` record stored in a checkpoint: the curriculum's name and parameters."""
    return {"type": "curriculum", "name": curriculum.name, "params": dataclasses.asdict(curriculum)}


def _parameter_type(cls: type, key: str) -> tuple[object, bool]:
    """``(type, accepts None)`` of parameter ``key`` of ``cls``, resolved on its own (another field's annotation that
    does not resolve does not matter); an annotation that does not resolve is read by its plain name, else as text."""
    annotation = {f.name: f.type for f in dataclasses.fields(cls)}[key]
    if isinstance(annotation, str):  # postponed: resolved in the curriculum's module, as typing.get_type_hints does
        holder = type("_Parameter", (), {"__annotations__": {key: annotation}, "__module__": cls.__module__})
        try:
            annotation = typing.get_type_hints(holder)[key]
        except Exception:  # noqa: BLE001 - a name the module does not define
            return {t.__name__: t for t in PARAMETER_TYPES}.get(annotation.strip(), str), False
    return unwrap_optional(annotation)


def _convert(text: str, cls: type, key: str):
    """Convert ``text`` to the type of parameter ``key`` of ``cls``: :data:`PARAMETER_TYPES`, ``Literal`` and
    ``Optional`` of those; text for other scalar types; ``ValueError`` for a container (tuple, list, dict, set)."""
    kind, nullable = _parameter_type(cls, key)
    if nullable and text.strip().lower() == "none":
        return None
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"parameter {key} expects true or false, got {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"parameter {key} expects {kind.__name__}, got {text!r}") from None
    if typing.get_origin(kind) is typing.Literal:
        allowed = typing.get_args(kind)
        match = [value for value in allowed if str(value) == text.strip()]
        if not match:
            raise ValueError(f"parameter {key} expects one of {', '.join(map(str, allowed))}, got {text!r}")
        return match[0]
    container = typing.get_origin(kind) or kind
    if isinstance(container, type) and issubclass(container, (tuple, list, dict, set, frozenset)):
        raise ValueError(f"parameter {key} of curriculum {cls.name!r} is a {container.__name__}, which a key=value "
                         "text cannot give; pass it as a Python value (get_curriculum, or learn_curriculum's params)")
    return text


def parse_params(name: str, assignments: Iterable[str]) -> dict[str, object]:
    """Turn ``["gamma=2", ...]`` into typed keyword arguments for curriculum ``name``."""
    cls = curriculum_class(name)
    types = {f.name: f.type for f in dataclasses.fields(cls)}  # the names, in order
    params: dict[str, object] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"parameters are given as key=value, got {item!r}")
        if key not in types:
            valid = ", ".join(types) or "none"
            raise ValueError(f"unknown parameter {key!r} for curriculum {name!r}; valid: {valid}")
        if key in params:
            raise ValueError(f"parameter {key!r} is given twice ({key}={params[key]!r} and {item!r}); give it once")
        params[key] = _convert(value, cls, key)
    return params


def probe_features(num_points: int = 4096, *, seed: int = 0) -> MentorFeatures:
    """Random points over the 2018 grid's domain (spec §2.2), for checking a curriculum's output."""
    generator = torch.Generator().manual_seed(seed)
    loss = torch.rand(num_points, generator=generator) * 29.0
    loss_diff = torch.rand(num_points, generator=generator) * 10.0 - 5.0
    epoch = torch.randint(0, NUM_EPOCHS, (num_points,), generator=generator)
    return MentorFeatures(loss, loss_diff, torch.zeros(num_points, dtype=torch.long), epoch)


def checked_weights(curriculum, features: MentorFeatures) -> torch.Tensor:
    """``curriculum.weight(features)``, checked in full: a float tensor shaped like the loss with every
    value finite and in [0, 1]. Anything else, and any exception (or ``sys.exit``) inside ``weight()``,
    is a ``ValueError`` naming the curriculum and, for a bad value, the first point where it occurs."""
    name = getattr(curriculum, "name", type(curriculum).__name__)
    try:
        with torch.no_grad():
            weights = curriculum.weight(features)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a plugin's code may fail in any way
        text = str(error).strip().splitlines()
        raise ValueError(f"curriculum {name!r}: weight() raised {type(error).__name__}"
                         + (f": {text[0]}" if text else "")) from None
    if not isinstance(weights, torch.Tensor):
        raise ValueError(f"curriculum {name!r}: weight() must return a tensor, got {type(weights).__name__}")
    if weights.shape != features.loss.shape:
        raise ValueError(f"curriculum {name!r}: weight() returned shape {tuple(weights.shape)}, "
                         f"expected {tuple(features.loss.shape)}")
    if not weights.dtype.is_floating_point:
        raise ValueError(f"curriculum {name!r}: weight() must return floats, got {weights.dtype}")
    bad = ~torch.isfinite(weights) | (weights < 0) | (weights > 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"curriculum {name!r}: weight() must lie in [0, 1], got {float(weights[i]):g} at loss "
                         f"{float(features.loss[i]):g}, loss_diff {float(features.loss_diff[i]):g}, epoch "
                         f"{int(features.epoch[i])} ({int(bad.sum())} of {bad.numel()} points)")
    return weights


def check_curriculum(curriculum) -> None:
    """Raise ``ValueError`` unless ``curriculum.weight`` returns a finite [0, 1] tensor shaped like the loss
    on random points of the grid's domain. Run once before a curriculum is learned or plotted, so a user's
    own curriculum fails early and clearly; the target set and the plotted surface are checked in full."""
    checked_weights(curriculum, probe_features())
