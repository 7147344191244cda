"""Argument checks shared by the API, the CLI and the docks: one check per kind of value.

Each raises ``ValueError`` with one line naming the argument and what was wrong; the
shape and strength checks return the value in the type the caller computes with.
(Images are checked by :func:`napari_pinned._util.intensity.check_image`.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_pinned.settings import MAX_STRENGTH

__all__ = [
    "check_count",
    "check_finite",
    "check_fraction",
    "check_non_negative",
    "check_positive",
    "check_shape",
    "check_strength",
]


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_shape(shape: int | tuple[int, int], name: str = "shape") -> tuple[int, int]:
    """``(rows, cols)`` of an image: a positive integer (square) or a pair of them."""
    dims = (shape, shape) if _is_integer(shape) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        dims = ()
    if len(dims) != 2 or not all(_is_integer(d) and d > 0 for d in dims):
        raise ValueError(
            f"{name} must be a positive integer or a pair of them (rows, cols), got {shape!r}"
        )
    return int(dims[0]), int(dims[1])


def check_strength(strength: Any) -> float:
    """The denoising strength as a float: a number in [0, :data:`MAX_STRENGTH`]."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.number)):
        raise ValueError(f"strength must be a number, got {strength!r}")
    if not (math.isfinite(strength) and 0 <= strength <= MAX_STRENGTH):
        raise ValueError(f"strength must be in [0, {MAX_STRENGTH:g}], got {strength!r}")
    return float(strength)


def check_count(name: str, value: Any) -> int:
    """``value`` as an int: an integer of at least 0 (a number of workers, say)."""
    if not _is_integer(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_finite(name: str, value: float) -> None:
    """``value`` must be a finite number."""
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_positive(name: str, value: float) -> None:
    """``value`` must be a finite number above 0."""
    check_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def check_non_negative(name: str, value: float) -> None:
    """``value`` must be a finite number of at least 0."""
    check_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")


def check_fraction(name: str, value: float, *, closed: bool) -> None:
    """``value`` must lie in [0, 1] (``closed``) or [0, 1)."""
    check_finite(name, value)
    if value < 0 or value > 1 or (not closed and value == 1):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
