"""Argument checks shared by the API, the CLI and the docks: one check per kind of value.

Each raises ``ValueError`` with one line naming the argument and what was wrong, and
returns the value in the type the caller computes with.  (Images are checked by
:func:`napari_pinned._util.intensity.check_image`.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_pinned.settings import MAX_STRENGTH

__all__ = ["check_shape", "check_strength"]


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
