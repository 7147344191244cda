"""Zone axes: reading them as users type them, writing them as microscopists do, and
reducing Miller–Bravais [uvtw] to three-index [UVW]."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = ["parse_zone", "zone_label", "zone_to_three_index"]


def zone_to_three_index(zone: Sequence[int]) -> tuple[int, int, int]:
    """Return the 3-index direction [UVW] of a zone axis, reduced by the gcd.

    Accepts [uvw] or Miller-Bravais [uvtw] (u + v + t = 0), converted with
    U = u - t, V = v - t, W = w; e.g. [11-20] -> [110], [0001] -> [001].

    Raises
    ------
    ValueError
        For the wrong number of indices, non-integer indices, u + v + t != 0, or [000].
    """
    values = list(zone)
    if len(values) not in (3, 4):
        raise ValueError(f"a zone axis needs 3 or 4 indices, got {values!r}")
    ints = []
    for value in values:
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f"zone axis indices must be integers, got {values!r}")
        ints.append(int(value))
    if len(ints) == 4:
        u, v, t, w = ints
        if u + v + t != 0:
            raise ValueError(f"4-index zone axis {zone_label(ints)} must have u + v + t = 0")
        ints = [u - t, v - t, w]
    divisor = math.gcd(*ints)
    if divisor == 0:
        raise ValueError("zone axis [000] is not a direction")
    u, v, w = (i // divisor for i in ints)
    return (u, v, w)


_ZONE_DIGIT = re.compile(r"-?\d")


def parse_zone(text: str) -> tuple[int, ...]:
    """Read a zone axis typed by the user.

    Accepts indices separated by spaces or commas (``"1 1 -2 0"``, ``"1,1,0"``) and the
    compact bracket notation microscopists write (``"[11-20]"``, one digit per index).

    Raises
    ------
    ValueError
        If the text holds anything but integers, or not 3 or 4 of them.
    """
    stripped = text.strip().strip("[]<>()").strip()
    if not stripped:
        raise ValueError("zone axis is empty; type 3 or 4 integers, e.g. 0 0 1")
    digits = _ZONE_DIGIT.findall(stripped)
    if re.fullmatch(r"(-?\d)+", stripped) and len(digits) in (3, 4):
        tokens = digits
    else:
        tokens = [t for t in re.split(r"[\s,;]+", stripped) if t]
    if not all(re.fullmatch(r"[+-]?\d+", t) for t in tokens):
        raise ValueError(f"zone axis {text!r} must be integers, e.g. '1 1 0' or '1 1 -2 0'")
    zone = tuple(int(t) for t in tokens)
    if len(zone) not in (3, 4):
        raise ValueError(f"zone axis {text!r} needs 3 or 4 indices, got {len(zone)}")
    return zone


def zone_label(zone: Sequence[int]) -> str:
    """Format a zone axis as microscopists write it: (1, 1, -2, 0) -> "[11-20]".

    Indices of magnitude 10 or more are comma-separated to stay unambiguous.
    """
    ints = [int(i) for i in zone]
    separator = "," if any(abs(i) >= 10 for i in ints) else ""
    return "[" + separator.join(str(i) for i in ints) + "]"
