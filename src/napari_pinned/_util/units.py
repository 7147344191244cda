"""Length units, once for the whole package: readers, layers and the command line.

Microscope files (RosettaSciIO), TIFF tags and napari layers spell lengths in many ways
(``"nm"``, ``"nanometer"``, ``"µm"`` with the micro sign or the Greek mu...); every
place that turns a calibration into Å reads this one table.
"""

from __future__ import annotations

__all__ = ["LENGTH_IN_ANGSTROM", "angstrom_per"]

#: Length unit spellings (pint's names, SI symbols, ASCII stand-ins) → Å per unit.
LENGTH_IN_ANGSTROM: dict[str, float] = {
    "m": 1e10,
    "meter": 1e10,
    "meters": 1e10,
    "mm": 1e7,
    "millimeter": 1e7,
    "µm": 1e4,  # micro sign U+00B5
    "μm": 1e4,  # Greek mu U+03BC
    "um": 1e4,
    "micrometer": 1e4,
    "nm": 10.0,
    "nanometer": 10.0,
    "Å": 1.0,
    "A": 1.0,
    "angstrom": 1.0,
    "pm": 0.01,
    "picometer": 0.01,
}


def angstrom_per(unit: str) -> float | None:
    """Å per ``unit`` (surrounding spaces ignored), or None for a unit that is not a
    length (``"pixel"``, ``""``, ``"1/nm"``)."""
    return LENGTH_IN_ANGSTROM.get(str(unit).strip())
