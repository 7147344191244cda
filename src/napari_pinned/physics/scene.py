"""The scene a random specimen is built in: regions of atomic columns and amorphous films.

A builder of :mod:`~napari_pinned.physics.specimen_kinds` tiles lattices over the field
(:meth:`Scene.tile`), cuts, thins and dopes the columns, and scatters amorphous films
(:func:`film`); :func:`~napari_pinned.physics.specimens.random_structure` then renders
everything the scene holds.  Positions are pixels ``(row, col)``; the scene reaches a
margin beyond the field, from which light still shines into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from napari_pinned.physics.lattices import Lattice
from napari_pinned.physics.projection import Z_EXPONENT_HAADF
from napari_pinned.physics.ranges import StructureRanges, loguniform
from napari_pinned.physics.tiling import ColumnSet, repeat_count, tile_columns

__all__ = ["Region", "Scene", "SmoothField", "film", "maybe_support"]

# Amorphous films: atomic numbers, their atom fractions, the mean atomic mass (g/mol)
# and a density range (g/cm³).  Evaporated/sputtered a-C 1.8–2.2 g/cm³ (Robertson,
# Mater. Sci. Eng. R 37, 129 (2002)); LPCVD silicon nitride membranes ~3.0 g/cm³ and
# amorphous SiO2 2.2 g/cm³ (CRC Handbook of Chemistry and Physics, fused silica).
_FILMS: dict[str, tuple[tuple[int, ...], tuple[float, ...], float, tuple[float, float]]] = {
    "a-C": ((6,), (1.0,), 12.011, (1.8, 2.2)),
    "a-SiN": ((14, 7), (3 / 7, 4 / 7), 140.28 / 7, (2.8, 3.1)),
    "a-SiO2": ((14, 8), (1 / 3, 2 / 3), 60.08 / 3, (2.0, 2.3)),
}
_FILM_CHOICE = (("a-C", 0.7), ("a-SiN", 0.15), ("a-SiO2", 0.15))
# N_A / (1 cm³ in Å³): atoms per Å³ = density (g/cm³) x this / molar mass (g/mol).
_AVOGADRO_PER_CM3_IN_A3 = 0.60221408


@dataclass(eq=False)
class Region:
    """Columns of one region in pixel coordinates, with what modifiers need to know."""

    positions: np.ndarray  # (N, 2) row, col
    weights: np.ndarray  # (N,) Σ Z^1.7 over the column
    host: np.ndarray  # (N,) Z^1.7 of one (average) atom of the column
    atoms: np.ndarray  # (N,) atoms in the column (occupancy-weighted)
    ctype: np.ndarray  # (N,) column of the 2D cell

    def take(self, keep: np.ndarray) -> Region:
        """The columns selected by ``keep`` (a mask or indices)."""
        return Region(
            self.positions[keep], self.weights[keep], self.host[keep], self.atoms[keep],
            self.ctype[keep],
        )  # fmt: skip


class Scene:
    """Everything a builder puts into the field: regions of columns, amorphous atoms."""

    def __init__(self, shape: tuple[int, int], pixel_size: float, margin: float) -> None:
        self.shape = shape
        self.pixel_size = pixel_size
        self.margin = margin  # Å around the field from which light still reaches it
        self.regions: list[Region] = []
        self.films: list[tuple[np.ndarray, np.ndarray]] = []
        self.parts: list[str] = []
        self.materials: list[str] = []
        self.params: dict[str, float | str] = {}

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.shape, dtype=float) - 1.0) / 2.0

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Low and high corner (pixels) of the field plus its margin."""
        m = self.margin / self.pixel_size
        return np.array([-0.5 - m, -0.5 - m]), np.asarray(self.shape, dtype=float) - 0.5 + m

    def inside(self, positions: np.ndarray) -> np.ndarray:
        """Which positions (pixels) lie in the field."""
        return np.all((positions >= -0.5) & (positions < np.asarray(self.shape) - 0.5), axis=1)

    def add_lattice(self, columns: Region, lattice: Lattice, description: str | None) -> None:
        """Add a crystal's columns, its description (unless given already) and material."""
        self.add(columns)
        if description is not None:
            self.parts.append(description)
        if lattice.material:
            self.materials.append(lattice.material)

    def add(self, columns: Region) -> None:
        """Add a region; its column types are numbered after those already in the scene."""
        offset = max((int(r.ctype.max()) + 1 for r in self.regions if len(r.ctype)), default=0)
        columns.ctype = columns.ctype + offset
        self.regions.append(columns)

    def ground_truth(self) -> ColumnSet:
        if not self.regions:
            return ColumnSet(np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=int))
        return ColumnSet(
            positions=np.concatenate([r.positions for r in self.regions]),
            weights=np.concatenate([r.weights for r in self.regions]),
            column_type=np.concatenate([r.ctype for r in self.regions]).astype(int),
        )

    def amorphous(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.films:
            return np.zeros((0, 2)), np.zeros(0)
        return (
            np.concatenate([f[0] for f in self.films]),
            np.concatenate([f[1] for f in self.films]),
        )

    def label(self) -> str:
        return ", ".join(self.parts) if self.parts else "vacuum"

    def tile(
        self,
        rng: np.random.Generator,
        lattice: Lattice,
        thickness: float,
        *,
        vacancy_fraction: float = 0.0,
    ) -> Region:
        """The lattice's columns over the field and margin, randomly rotated and shifted.

        Not added to the scene: the builder cuts and modifies them first.
        """
        cell = lattice.cell
        columns = tile_columns(
            cell,
            self.shape,
            self.pixel_size,
            thickness=thickness,
            rotation=float(rng.uniform(0.0, 360.0)),
            shift=(float(rng.random()), float(rng.random())),
            vacancy_fraction=vacancy_fraction,
            alloy_disorder=lattice.alloy,
            margin=self.margin,
            rng=rng,
        )
        ctype = np.asarray(columns.column_type, dtype=int)
        atoms_per_repeat = np.array([max(float(np.sum(o)), 1e-9) for o in cell.site_occupancy])
        host = cell.weights / atoms_per_repeat
        return Region(
            positions=np.asarray(columns.positions, dtype=float),
            weights=np.asarray(columns.weights, dtype=float),
            host=host[ctype],
            atoms=atoms_per_repeat[ctype] * repeat_count(thickness, cell.repeat),
            ctype=ctype,
        )


# --------------------------------------------------------------------------- films


def film(
    rng: np.random.Generator,
    scene: Scene,
    thickness: float,
    *,
    name: str | None = None,
) -> str:
    """Scatter the atoms of an amorphous film over the field; returns its description.

    Projected through many atomic layers, the positions of an amorphous film are as good
    as uncorrelated, so a Poisson process of the film's areal density stands in for
    them; the thickness varies smoothly by up to 60 % (real support films are uneven).
    """
    if name is None:
        names, weights = zip(*_FILM_CHOICE, strict=True)
        name = names[int(rng.choice(len(names), p=np.asarray(weights) / sum(weights)))]
    zs, fractions, molar_mass, density_range = _FILMS[name]
    density = rng.uniform(*density_range) * _AVOGADRO_PER_CM3_IN_A3 / molar_mass  # 1/Å³
    low, high = scene.bounds
    area = float(np.prod(high - low)) * scene.pixel_size**2
    count = int(rng.poisson(density * thickness * area))
    positions = low + rng.random((count, 2)) * (high - low)
    variation = rng.uniform(0.0, 0.6)
    if variation > 0 and count:
        uneven = SmoothField(rng, scene, correlation=rng.uniform(20.0, 200.0))
        positions = positions[rng.random(count) < 1.0 - variation * uneven.at(positions)]
    z = np.asarray(zs)[rng.choice(len(zs), size=len(positions), p=np.asarray(fractions))]
    scene.films.append((positions, z.astype(float) ** Z_EXPONENT_HAADF))
    return f"{name} {thickness:.0f} Å"


def maybe_support(
    rng: np.random.Generator, scene: Scene, ranges: StructureRanges, probability: float
) -> None:
    if rng.random() < probability:
        scene.parts.append("on " + film(rng, scene, loguniform(rng, ranges.support_thickness)))


class SmoothField:
    """A smooth random field over the field and its margin, uniform in [0, 1] at each point.

    White noise on a coarse grid (a quarter of the correlation length per cell) blurred
    by a Gaussian of the correlation length, mapped through the normal CDF with its
    known rms, 1 / (2 √π σ) for unit white noise blurred by a unit-sum Gaussian of σ
    cells, and read off by linear interpolation.  A field much smaller than the
    correlation length therefore sees a small variation, as it should.
    """

    _SIGMA_CELLS = 4.0

    def __init__(self, rng: np.random.Generator, scene: Scene, correlation: float) -> None:
        low, high = scene.bounds
        step = max(correlation / self._SIGMA_CELLS / scene.pixel_size, 1.0)  # px per cell
        cells = np.ceil((high - low) / step).astype(int) + 1
        pad = 3 * int(self._SIGMA_CELLS)  # cells on each side: the blur sees no wrap-around
        noise = rng.standard_normal(tuple(cells + 2 * pad))
        smooth = ndimage.gaussian_filter(noise, sigma=self._SIGMA_CELLS, mode="wrap")
        rms = 1.0 / (2.0 * math.sqrt(math.pi) * self._SIGMA_CELLS)
        self.values = special.ndtr(smooth[pad:-pad, pad:-pad] / rms)
        self.low, self.step = low, step

    def at(self, points: np.ndarray) -> np.ndarray:
        coords = ((np.asarray(points, dtype=float) - self.low) / self.step).T
        return ndimage.map_coordinates(self.values, coords, order=1, mode="nearest")

    def image(self, shape: tuple[int, int]) -> np.ndarray:
        rows, cols = np.indices(shape, dtype=float)
        return self.at(np.column_stack([rows.ravel(), cols.ravel()])).reshape(shape)
