"""Options declared once, as fields of frozen dataclasses.

An option is a dataclass field made with :func:`option`: its type is the field's annotation, its
default the field's default, and its help text, command-line spelling and resume rule live in the
field's metadata. Everything else is derived from that one declaration: the command-line options
(``cli.py`` builds click options from the fields), ``config.json`` (``dataclasses.asdict``),
hand-written config files (:func:`options_from_mapping` refuses unknown keys) and the type checks
(:func:`check_option_types`, called from each config's ``__post_init__``).

Supported annotations: ``int``, ``float``, ``str``, ``bool`` and ``X | None`` of those.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Callable, Iterable, Mapping

_NONE_TYPE = type(None)
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def option(default: Any = dataclasses.MISSING, *, help: str, flags: str | None = None, metavar: str | None = None,
           choices: Iterable[str] | Callable[[], Iterable[str]] | None = None, resume_safe: bool = False,
           cli: bool = True) -> Any:
    """A dataclass field that is also a user-facing option.

    ``help``: the text ``--help`` shows. ``flags``: a custom spelling such as ``"--burn-in-2018/--burn-in-exact"``
    (default ``--field-name``, and ``--field-name/--no-field-name`` for booleans). ``choices``: the valid values
    (or a function returning them, for registries that plugins extend), shown in ``--help``; validation
    itself happens in the dataclass. ``resume_safe``: the option may differ when a run is resumed
    (it changes how, not what, is computed). ``cli=False``: not a command-line option (config files only).
    """
    metadata = {"help": help, "flags": flags, "metavar": metavar, "choices": choices, "resume_safe": resume_safe,
                "cli": cli}
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(cls) -> list[dataclasses.Field]:
    """The fields of ``cls`` declared with :func:`option`, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def field_type(cls, name: str) -> tuple[type, bool]:
    """``(base type, accepts None)`` of field ``name`` of ``cls``, from its (possibly string) annotation."""
    return unwrap_optional(typing.get_type_hints(cls)[name])


def unwrap_optional(hint) -> tuple[type, bool]:
    """``(X, True)`` for ``X | None`` (``Optional[X]``), else ``(hint, False)``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and _NONE_TYPE in args:
        rest = [a for a in args if a is not _NONE_TYPE]
        return rest[0], True
    return hint, False


def choices_of(f: dataclasses.Field) -> list[str] | None:
    choices = f.metadata.get("choices")
    if choices is None:
        return None
    return list(choices() if callable(choices) else choices)


def flag_name(name: str) -> str:
    """The command-line spelling of option ``name``: ``--max-steps`` for ``max_steps``."""
    return "--" + name.replace("_", "-")


def _describe(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def coerce_option(cls, name: str, value, *, origin: str | None = None):
    """``value`` checked against the annotation of ``cls.name``; an int is accepted (and converted) for a float.

    Raises ``TypeError`` naming the option, its expected type and the value given.
    """
    kind, nullable = field_type(cls, name)
    if value is None and nullable:
        return None
    ok = (isinstance(value, kind) and not (kind is int and isinstance(value, bool))) or \
        (kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        where = f" in {origin}" if origin else ""
        expected = _TYPE_WORDS.get(kind, kind.__name__) + (" or null" if nullable else "")
        raise TypeError(f"option {name!r}{where} must be {expected}, got {_describe(value)}")
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"option {name!r} must be a finite number, got {value}")
    return value


def check_option_types(instance) -> None:
    """Check (and normalise, int to float) every option field of a frozen dataclass instance."""
    cls = type(instance)
    for f in option_fields(cls):
        value = coerce_option(cls, f.name, getattr(instance, f.name))
        object.__setattr__(instance, f.name, value)


def options_from_mapping(cls, mapping: Mapping, *, origin: str) -> dict:
    """The entries of ``mapping`` that name options of ``cls``; an unknown key is a ``ValueError`` listing
    the valid ones, a wrong type a ``TypeError``."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{origin} must hold a table of options, got {type(mapping).__name__}")
    names = [f.name for f in option_fields(cls)]
    unknown = [key for key in mapping if key not in names]
    if unknown:
        raise ValueError(f"{origin}: unknown option {unknown[0]!r}; valid options: {', '.join(names)}")
    return {key: coerce_option(cls, key, value, origin=origin) for key, value in mapping.items()}


__all__ = ["check_option_types", "choices_of", "coerce_option", "field_type", "flag_name", "option",
           "option_fields", "options_from_mapping"]


MAX_SEED = 2**63 - 1
"""The largest seed: ``torch.Generator.manual_seed`` takes a 64-bit integer, and numpy's generators any
non-negative one."""


def check_seed(seed, *, name: str = "--seed") -> int:
    """``seed`` as an int in 0..:data:`MAX_SEED`, else ``ValueError`` (``TypeError`` for a non-integer)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{name} must be an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must lie in 0..{MAX_SEED} (2**63 - 1), got {seed}")
    return seed
