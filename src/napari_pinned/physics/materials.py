"""The bundled materials: hand-written CIFs in ``napari_pinned/data/cif`` with their
usual zone axes, and the split into training and held-out (benchmark) materials."""

from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass
from importlib import resources

from napari_pinned.physics.cif import read_cif
from napari_pinned.physics.structure import Crystal

__all__ = [
    "HELD_OUT_MATERIALS",
    "Material",
    "get_material",
    "held_out_materials",
    "list_materials",
    "load_material",
    "training_materials",
]

#: Materials never shown in training: the paper's validation materials (BaTiO3, Al,
#: ZnMgTe), the tetragonal polymorph of one of them, and one monolayer (WSe2), so that
#: benchmarks score crystals and a 2D material the network never saw.
HELD_OUT_MATERIALS = ("BaTiO3", "BaTiO3-P4mm", "Al", "ZnMgTe", "WSe2")


@dataclass(frozen=True)
class Material:
    """A bundled crystal structure.

    Attributes
    ----------
    name : str
        Key, e.g. ``"GaN"``.
    cif : pathlib.Path
        Bundled CIF file.
    zone_axes : tuple of tuple of int
        Usual zone axes as written by microscopists (4-index for hexagonal cells);
        the first is the default.
    description : str
        One-line description.
    two_dimensional : bool
        A monolayer in a cell padded with vacuum along c: one repeat along the first
        zone axis is the whole specimen, so it is tiled with ``thickness = repeat``
        (see :mod:`napari_pinned.physics.specimens`).
    """

    name: str
    cif: pathlib.Path
    zone_axes: tuple[tuple[int, ...], ...]
    description: str
    two_dimensional: bool = False


def _bundled(filename: str) -> pathlib.Path:
    return pathlib.Path(str(resources.files("napari_pinned") / "data" / "cif" / filename))


_HEX_ZONES = ((1, 1, -2, 0), (0, 0, 0, 1))
_MATERIALS: tuple[Material, ...] = (
    Material(
        "Si",
        _bundled("Si.cif"),
        ((1, 1, 0), (0, 0, 1)),
        "Silicon, diamond cubic Fd-3m, a = 5.431 Å",
    ),
    Material(
        "GaN",
        _bundled("GaN.cif"),
        _HEX_ZONES,
        "Gallium nitride, wurtzite P6_3mc, a = 3.189 Å, c = 5.185 Å",
    ),
    Material(
        "InN",
        _bundled("InN.cif"),
        _HEX_ZONES,
        "Indium nitride, wurtzite P6_3mc, a = 3.538 Å, c = 5.703 Å",
    ),
    Material(
        "AlN",
        _bundled("AlN.cif"),
        _HEX_ZONES,
        "Aluminium nitride, wurtzite P6_3mc, a = 3.112 Å, c = 4.982 Å",
    ),
    Material(
        "AlGaN",
        _bundled("AlGaN.cif"),
        _HEX_ZONES,
        "Al0.5Ga0.5N random alloy, wurtzite (Vegard's law), mixed cation site",
    ),
    Material(
        "SrTiO3",
        _bundled("SrTiO3.cif"),
        ((0, 0, 1), (1, 1, 0)),
        "Strontium titanate, cubic perovskite Pm-3m, a = 3.905 Å",
    ),
    Material(
        "BaTiO3",
        _bundled("BaTiO3.cif"),
        ((0, 0, 1), (1, 1, 0)),
        "Barium titanate, cubic perovskite Pm-3m, a = 4.00 Å",
    ),
    Material(
        "BaTiO3-P4mm",
        _bundled("BaTiO3_P4mm.cif"),
        ((0, 0, 1), (1, 1, 0)),
        "Barium titanate, tetragonal ferroelectric P4mm, a = 3.992 Å, c = 4.036 Å",
    ),
    Material(
        "graphene",
        _bundled("graphene.cif"),
        ((0, 0, 1),),
        "Graphene monolayer, P6/mmm, a = 2.46 Å (10 Å vacuum spacing)",
        two_dimensional=True,
    ),
    Material(
        "MoS2",
        _bundled("MoS2.cif"),
        ((0, 0, 0, 1),),
        "Molybdenum disulfide 1H monolayer, P-6m2, a = 3.160 Å (20 Å vacuum spacing)",
        two_dimensional=True,
    ),
    Material(
        "WSe2",
        _bundled("WSe2.cif"),
        ((0, 0, 0, 1),),
        "Tungsten diselenide 1H monolayer, P-6m2, a = 3.282 Å (20 Å vacuum spacing)",
        two_dimensional=True,
    ),
    Material(
        "hBN",
        _bundled("hBN.cif"),
        ((0, 0, 0, 1),),
        "Hexagonal boron nitride monolayer, P-6m2, a = 2.504 Å (10 Å vacuum spacing)",
        two_dimensional=True,
    ),
    Material(
        "ZrO2",
        _bundled("ZrO2.cif"),
        ((1, 1, 0), (0, 0, 1)),
        "Zirconia, cubic fluorite Fm-3m, a = 5.07 Å",
    ),
    Material(
        "ZrO2-P21c",
        _bundled("ZrO2_P21c.cif"),
        ((0, 0, 1), (1, 0, 0)),
        "Zirconia, monoclinic baddeleyite P2_1/c (Howard et al. 1988)",
    ),
    Material(
        "NaCN",
        _bundled("NaCN.cif"),
        ((0, 0, 1), (1, 1, 0)),
        "Sodium cyanide, cubic Fm-3m, a = 5.88 Å, C/N disordered on one site",
    ),
    Material(
        "Al", _bundled("Al.cif"), ((1, 1, 0), (0, 0, 1)), "Aluminium, fcc Fm-3m, a = 4.0495 Å"
    ),
    Material(
        "ZnTe",
        _bundled("ZnTe.cif"),
        ((1, 1, 0), (0, 0, 1)),
        "Zinc telluride, zincblende F-43m, a = 6.101 Å",
    ),
    Material(
        "ZnMgTe",
        _bundled("ZnMgTe.cif"),
        ((1, 1, 0), (0, 0, 1)),
        "Zn0.5Mg0.5Te random alloy, zincblende (Vegard's law), mixed cation site",
    ),
)


def list_materials() -> list[Material]:
    """Return the bundled materials with their usual zone axes (default first)."""
    return list(_MATERIALS)


def _material_key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def get_material(name: str) -> Material:
    """Return the bundled material called ``name`` (case-insensitive, ``_`` = ``-``).

    Raises
    ------
    ValueError
        If no bundled material has that name; the message lists the names.
    """
    for material in _MATERIALS:
        if _material_key(material.name) == _material_key(name):
            return material
    names = ", ".join(material.name for material in _MATERIALS)
    raise ValueError(f"unknown material {name!r}; bundled materials are: {names}")


def load_material(name: str) -> Crystal:
    """Read the bundled CIF of a material into a :class:`Crystal`."""
    return _load_bundled(get_material(name).name)


@functools.cache
def _load_bundled(name: str) -> Crystal:
    material = get_material(name)
    return read_cif(material.cif, name=material.name)


def training_materials() -> tuple[str, ...]:
    """Bundled materials for training: every bundled material not in the held-out split."""
    return tuple(m.name for m in list_materials() if m.name not in HELD_OUT_MATERIALS)


def held_out_materials() -> tuple[str, ...]:
    """Bundled materials kept for benchmarks (:data:`HELD_OUT_MATERIALS`)."""
    return HELD_OUT_MATERIALS
