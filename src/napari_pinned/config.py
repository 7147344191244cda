"""One ``to_dict``/``from_dict`` for every settings dataclass of the package.

:class:`ModelConfig`, :class:`LossWeights`, :class:`TrainConfig` and :class:`AdaptSettings`
are frozen dataclasses of plain values; they are written into model files, checkpoints and
JSON as plain dicts and read back with one rule: nested settings become their dataclass
again, lists become the tuples the fields hold, unknown keys are refused with one line
naming them, missing keys take their defaults, and the dataclass's own checks run.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, get_args, get_origin

__all__ = ["config_from_dict", "config_to_dict"]

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain, JSON-able dict of a settings dataclass (nested ones become dicts, tuples
    lists)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def config_from_dict(cls: type[T], d: Mapping[str, Any], *, what: str = "setting") -> T:
    """Inverse of :func:`config_to_dict` for the dataclass ``cls``.

    Parameters
    ----------
    cls : dataclass type
        What to build.
    d : mapping
        Its settings by field name.
    what : str
        How a setting is called in messages ("model setting", "loss weight").

    Raises
    ------
    ValueError
        For a value that is not a dict, unknown keys, or settings ``cls`` refuses.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{what}s must be a dict, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in d if k not in fields)
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    values = {name: _typed(hints.get(name), value) for name, value in d.items()}
    return cls(**values)


def _typed(hint: Any, value: Any) -> Any:
    """``value`` as the field of type ``hint`` holds it."""
    for kind in (hint, *get_args(hint)):
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            return config_from_dict(kind, value)
    if isinstance(value, list) and tuple in (get_origin(hint), *map(get_origin, get_args(hint))):
        return tuple(value)
    return value
