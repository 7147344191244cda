"""The lattices a random specimen shows: bundled crystals along many zone axes, random
2D Bravais lattices with random motifs, and strong lattices with a weak sublattice."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_pinned.physics.materials import get_material, load_material
from napari_pinned.physics.projection import Z_EXPONENT_HAADF, ProjectedCell, project
from napari_pinned.physics.ranges import StructureRanges, loguniform, pick, uniform
from napari_pinned.physics.zones import zone_label

__all__ = [
    "Lattice",
    "any_lattice",
    "describe",
    "draw_thickness",
    "random_lattice",
    "weak_strong_lattice",
    "zone_cells",
]

# Low-index directions tried besides a material's listed zone axes ("many zone axes").
_EXTRA_ZONES = (
    (1, 0, 0),
    (0, 1, 0),
    (0, 0, 1),
    (1, 1, 0),
    (1, -1, 0),
    (1, 0, 1),
    (0, 1, 1),
    (1, 1, 1),
    (2, 1, 0),
    (1, 2, 0),
    (2, 1, 1),
    (1, 1, 2),
    (3, 1, 0),
)
# An extra zone is kept when its columns can be told apart at all and the cell stays
# small: beyond these the projection is a blur that no microscopist would orient to.
_EXTRA_ZONE_MAX_REPEAT = 20.0  # Å
_EXTRA_ZONE_MIN_DISTANCE = 0.8  # Å
_EXTRA_ZONE_MAX_COLUMNS = 24


@dataclass(frozen=True, eq=False)
class Lattice:
    """A projected cell to tile, with its description and where it came from."""

    cell: ProjectedCell
    name: str
    material: str | None
    two_dimensional: bool
    alloy: bool  # draw alloy disorder (bundled CIFs) or use the cell's weights as they are


@functools.cache
def zone_cells(name: str) -> tuple[tuple[Lattice, ...], tuple[Lattice, ...]]:
    """(listed zones, extra low-index zones) of a bundled material, projected once."""
    material = get_material(name)
    crystal = load_material(name)
    listed = tuple(
        Lattice(
            project(crystal, zone),
            f"{material.name} {zone_label(zone)}",
            material.name,
            material.two_dimensional,
            True,
        )
        for zone in material.zone_axes
    )
    if material.two_dimensional:
        return listed, ()
    seen = {_signature(lat.cell) for lat in listed}
    extra = []
    for zone in _EXTRA_ZONES:
        try:
            cell = project(crystal, zone, max_repeat=_EXTRA_ZONE_MAX_REPEAT)
        except ValueError:
            continue
        signature = _signature(cell)
        if (
            signature in seen
            or len(cell.positions) > _EXTRA_ZONE_MAX_COLUMNS
            or cell.nearest_column_distance() < _EXTRA_ZONE_MIN_DISTANCE
        ):
            continue
        seen.add(signature)
        extra.append(
            Lattice(cell, f"{material.name} {zone_label(zone)}", material.name, False, True)
        )
    return listed, tuple(extra)


def _signature(cell: ProjectedCell) -> tuple:
    """Equivalent zones (e.g. [100] and [010] of a cubic crystal) project alike."""
    return (
        round(cell.area, 2),
        round(cell.repeat, 2),
        tuple(np.round(np.sort(cell.weights), 1)),
        round(cell.nearest_column_distance(), 2),
    )


def _bundled_lattice(
    rng: np.random.Generator, ranges: StructureRanges, names: Sequence[str], allow_2d: bool
) -> Lattice | None:
    candidates = [n for n in names if allow_2d or not get_material(n).two_dimensional]
    if not candidates:
        return None
    listed, extra = zone_cells(pick(rng, candidates))
    pool = listed if (not extra or rng.random() < ranges.listed_zone_fraction) else extra
    return pick(rng, pool)


_BRAVAIS = ("square", "rectangular", "hexagonal", "centred rectangular", "oblique")


def _bravais(rng: np.random.Generator, ranges: StructureRanges) -> tuple[np.ndarray, str]:
    """Two in-plane cell vectors (rows, Å) of a random 2D Bravais lattice, and its name."""
    kind = pick(rng, _BRAVAIS)
    a = uniform(rng, ranges.lattice_constant)
    if kind == "square":
        b, gamma = a, 90.0
    elif kind == "rectangular":
        b, gamma = a * rng.uniform(1.15, 2.0), 90.0
    elif kind == "hexagonal":
        b, gamma = a, 120.0
    elif kind == "centred rectangular":
        # A rhombic primitive cell: equal edges at any angle but 60°, 90° and 120°.
        b, gamma = a, rng.uniform(65.0, 85.0)
    else:
        b, gamma = a * rng.uniform(1.05, 1.8), rng.uniform(65.0, 85.0)
    g = math.radians(gamma)
    return np.array([[a, 0.0], [b * math.cos(g), b * math.sin(g)]]), kind


def _motif(
    rng: np.random.Generator, vectors: np.ndarray, count: int, min_distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """The cell vectors, stretched if need be, and up to ``count`` fractional positions
    at least ``min_distance`` Å apart, periodic.

    Real crystals project to 0.1-0.3 columns per Å²; a motif that would crowd its cell
    far beyond that stretches the cell instead.  The first position sits at the origin;
    the others are drawn by rejection and the motif is cut short when the cell is still
    too crowded.
    """
    area = abs(np.linalg.det(vectors))
    if area / count < 3.0:
        vectors = vectors * math.sqrt(3.0 * count / area)
    points = [np.zeros(2)]
    images = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=float)
    for _ in range(40 * count):
        if len(points) >= count:
            break
        trial = rng.random(2)
        delta = np.asarray(points) - trial
        delta -= np.round(delta)
        dist = np.linalg.norm((delta[:, None, :] + images[None]) @ vectors, axis=-1)
        if dist.min() >= min_distance:
            points.append(trial)
    return vectors, np.asarray(points)


def _cell_from(
    vectors: np.ndarray, frac: np.ndarray, weights: np.ndarray, repeat: float
) -> ProjectedCell:
    """A ProjectedCell for made-up columns: one pseudo-atom of weight w per repeat."""
    z = np.maximum(1, np.round(weights ** (1.0 / Z_EXPONENT_HAADF))).astype(int)
    return ProjectedCell(
        zone=(0, 0, 1),
        vectors=vectors,
        positions=(frac - np.floor(frac)) @ vectors,
        site_z=tuple(np.array([zi]) for zi in z),
        site_occupancy=tuple(np.ones(1) for _ in z),
        weights=np.asarray(weights, dtype=float),
        repeat=float(repeat),
        z_exponent=Z_EXPONENT_HAADF,
    )


def random_lattice(rng: np.random.Generator, ranges: StructureRanges) -> Lattice:
    """A random 2D Bravais lattice with a random motif of columns spanning ~20× in weight."""
    vectors, bravais = _bravais(rng, ranges)
    count = int(rng.integers(ranges.motif_columns[0], ranges.motif_columns[1] + 1))
    vectors, frac = _motif(rng, vectors, count, ranges.min_column_distance)
    relative = np.exp(-rng.uniform(0.0, math.log(ranges.motif_weight_span), len(frac)))
    relative[int(rng.integers(len(frac)))] = 1.0  # the strongest column sets the span
    z_max = rng.uniform(14.0, 83.0)
    weights = relative * z_max**Z_EXPONENT_HAADF
    cell = _cell_from(vectors, frac, weights, repeat=rng.uniform(2.0, 4.5))
    name = f"random {bravais} lattice, {len(frac)} column{'s' if len(frac) > 1 else ''}/cell"
    return Lattice(cell, name, None, False, False)


def weak_strong_lattice(rng: np.random.Generator, ranges: StructureRanges, ratio: float) -> Lattice:
    """A lattice of equal strong columns plus a sublattice of weight ``ratio`` x strong.

    Templates: a honeycomb (Mo beside S₂ in monolayer MoS2 [0001]), a centred cell (Ti–O
    beside Sr in SrTiO3 [001], with or without the edge-centre columns), or a random
    Bravais lattice with 1–2 strong and 1–3 weak columns.
    """
    template = pick(rng, ("honeycomb", "centred", "random"))
    if template == "random":
        vectors, _ = _bravais(rng, ranges)
        n_strong, n_weak = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        vectors, frac = _motif(rng, vectors, n_strong + n_weak, ranges.min_column_distance)
        strong = np.arange(len(frac)) < min(n_strong, len(frac) - 1)
        if not strong.any() or strong.all():
            template = "honeycomb"  # the cell was too crowded for a weak column
    if template == "honeycomb":
        a = rng.uniform(2.8, 3.6)
        vectors = np.array([[a, 0.0], [-a / 2, a * math.sqrt(3) / 2]])
        frac = np.array([[0.0, 0.0], [2 / 3, 1 / 3]])
        strong = np.array([True, False])
    elif template == "centred":
        a = rng.uniform(3.5, 4.2)
        b = a * (math.sqrt(2.0) if rng.random() < 0.5 else 1.0)
        vectors = np.array([[a, 0.0], [0.0, b]])
        frac = np.array([[0.0, 0.0], [0.5, 0.5], [0.5, 0.0], [0.0, 0.5]])
        strong = np.array([True, False, False, False])
        if rng.random() < 0.5:
            frac, strong = frac[:2], strong[:2]
    z_strong = rng.uniform(30.0, 83.0)
    weights = np.where(strong, 1.0, ratio) * z_strong**Z_EXPONENT_HAADF
    cell = _cell_from(vectors, frac, weights, repeat=rng.uniform(2.5, 4.5))
    return Lattice(cell, f"weak/strong {template}, ratio {ratio:.2f}", None, False, False)


def any_lattice(
    rng: np.random.Generator,
    ranges: StructureRanges,
    names: Sequence[str],
    *,
    allow_2d: bool = True,
    random_fraction: float | None = None,
) -> Lattice:
    """A bundled crystal from ``names`` (monolayers only if ``allow_2d``), or a random lattice.

    A random lattice a share ``random_fraction`` of the time (default
    ``ranges.random_lattice_fraction``), and whenever no bundled material qualifies.
    """
    share = ranges.random_lattice_fraction if random_fraction is None else random_fraction
    lattice = None
    if rng.random() >= share:
        lattice = _bundled_lattice(rng, ranges, names, allow_2d)
    return lattice if lattice is not None else random_lattice(rng, ranges)


def draw_thickness(rng: np.random.Generator, lattice: Lattice, ranges: StructureRanges) -> float:
    """A specimen thickness (Å) for the lattice: one layer of a monolayer, else drawn."""
    if lattice.two_dimensional:
        return lattice.cell.repeat  # one layer: tile_columns makes round(t / repeat) = 1
    if lattice.material is None and rng.random() < 0.15:
        # Made-up monolayers and few-atom columns: single atoms must look like atoms.
        return lattice.cell.repeat * int(rng.integers(1, 4))
    return loguniform(rng, ranges.thickness)


def describe(lattice: Lattice, thickness: float) -> str:
    """The lattice's part of a specimen's label, e.g. ``"Si [110], 180 Å"``."""
    if lattice.two_dimensional:
        return f"{lattice.name} monolayer"
    return f"{lattice.name}, {thickness:.0f} Å"
