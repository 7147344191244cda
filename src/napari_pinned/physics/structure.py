"""A crystal structure: the unit cell and every atom in it, and the lattice arithmetic on it.

:func:`napari_pinned.physics.cif.read_cif` makes a :class:`Crystal` from a CIF file;
:func:`napari_pinned.physics.projection.project` projects it along a zone axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Atom", "Crystal"]

#: Symmetry images closer than this (Å, periodic) are the same atom.
DEDUP_TOLERANCE = 0.01
#: No crystal repeats itself over less than this (Å): atoms are at least ~0.74 Å apart
#: (the H–H bond), and the shortest lattice constants of real crystals exceed 2 Å
#: (graphene's 2.46 Å is among the shortest of the bundled ones).
MIN_LATTICE_CONSTANT = 1.0
#: Nor holds an atom in less than this (Å³): the densest solids take over 5 Å³ per atom
#: (diamond 5.7 Å³), and a cell holds at least one atom.
MIN_CELL_VOLUME = 1.0


@dataclass(frozen=True)
class Atom:
    """One atom of the full unit cell.

    Attributes
    ----------
    element : str
        Element symbol, e.g. ``"Ga"``.
    z : int
        Atomic number.
    frac : tuple of float
        Fractional coordinates in [0, 1).
    occupancy : float
        Site occupancy in (0, 1]; atoms of a random alloy share one position.
    """

    element: str
    z: int
    frac: tuple[float, float, float]
    occupancy: float


@dataclass(frozen=True)
class Crystal:
    """A crystal: unit cell and all atoms in it.

    Attributes
    ----------
    name : str
        Display name.
    cell : tuple of float
        ``(a, b, c, alpha, beta, gamma)`` in Å and degrees.
    atoms : tuple of Atom
        Every atom of the unit cell after symmetry expansion.
    source : str
        File path, or ``"<string>"`` for CIF text.
    """

    name: str
    cell: tuple[float, float, float, float, float, float]
    atoms: tuple[Atom, ...]
    source: str

    def lattice_matrix(self) -> np.ndarray:
        """Return :func:`lattice_matrix`: rows a, b, c in Cartesian Å."""
        return lattice_matrix(self.cell)

    def volume(self) -> float:
        """Return the unit-cell volume in Å^3."""
        return float(abs(np.linalg.det(self.lattice_matrix())))

    def fractional_coordinates(self) -> np.ndarray:
        """Return the (N, 3) fractional coordinates of all atoms."""
        return np.array([atom.frac for atom in self.atoms], dtype=float).reshape(-1, 3)

    def element_counts(self) -> dict[str, float]:
        """Return element -> number of atoms per unit cell, weighted by occupancy."""
        counts: dict[str, float] = {}
        for atom in self.atoms:
            counts[atom.element] = counts.get(atom.element, 0.0) + atom.occupancy
        return counts


# --------------------------------------------------------------------------- lattice


def check_cell(cell: Sequence[float], source: str) -> None:
    """Refuse a unit cell no crystal has, before anything is built from it.

    A cell edge below :data:`MIN_LATTICE_CONSTANT` (often lengths written in nm) or a
    volume below :data:`MIN_CELL_VOLUME` (a nearly flat cell) would tile a field of
    view with millions of columns per Å² and exhaust the memory.

    Raises
    ------
    ValueError
        One line naming ``source`` and the offending length or volume.
    """
    a, b, c, alpha, beta, gamma = (float(v) for v in cell)
    for label, length in (("a", a), ("b", b), ("c", c)):
        if length < MIN_LATTICE_CONSTANT:
            raise ValueError(
                f"{source}: {label} = {length:g} Å, but no crystal has a lattice constant "
                f"below {MIN_LATTICE_CONSTANT:g} Å (are the lengths in Å, not nm?)"
            )
    volume = float(abs(np.linalg.det(lattice_matrix(cell))))
    if volume < MIN_CELL_VOLUME:
        raise ValueError(
            f"{source}: the unit cell's volume is {volume:.3g} Å³ (angles {alpha:g}°, "
            f"{beta:g}°, {gamma:g}°), but no crystal has a cell below "
            f"{MIN_CELL_VOLUME:g} Å³; check the cell angles"
        )


def lattice_matrix(cell: Sequence[float]) -> np.ndarray:
    """(3, 3) rows a, b, c in Cartesian Å of the cell ``(a, b, c, alpha, beta, gamma)``.

    a lies along x and b in the xy plane (the usual PDB/CIF orthogonalisation).
    """
    a, b, c, alpha, beta, gamma = (float(v) for v in cell)
    ca, cb, cg = (math.cos(math.radians(v)) for v in (alpha, beta, gamma))
    sg = math.sin(math.radians(gamma))
    cy = (ca - cb * cg) / sg
    cz2 = 1.0 - cb * cb - cy * cy
    if cz2 <= 0.0:
        raise ValueError(f"cell angles {alpha}, {beta}, {gamma} do not describe a 3D cell")
    return np.array([[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [c * cb, c * cy, c * math.sqrt(cz2)]])


def wrap_fractional(frac: np.ndarray) -> np.ndarray:
    """Map fractional coordinates into [0, 1), sending values within 1e-9 of 1 to 0."""
    out = frac - np.floor(frac)
    out[out > 1.0 - 1e-9] = 0.0
    return out


def cluster_periodic(frac: np.ndarray, lattice: np.ndarray, tol: float) -> np.ndarray:
    """Greedy clustering of periodic points; returns a cluster label per point.

    Points are taken in order: each joins the nearest earlier cluster representative
    closer than ``tol`` (Å, minimum-image distance), or starts a new cluster.  The
    neighbours within ``tol`` come from a k-d tree over the points and their images in
    the 26 neighbouring cells, so a cell of N atoms costs O(N log N) rather than the
    O(N²) of comparing every point with every representative (a 10,000-atom P1 CIF
    took minutes that way).  The 27 cells hold the minimum image for the short
    distances (<< cell size) that matter here.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(frac, dtype=float)
    count = len(points)
    labels = np.full(count, -1, dtype=int)
    if count == 0:
        return labels
    wrapped = points - np.floor(points)
    cart = wrapped @ lattice
    shifts = np.array(
        [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float
    )
    # Image m of point p sits at row m * count + p.
    images = (cart[None, :, :] + (shifts @ lattice)[:, None, :]).reshape(-1, 3)
    neighbours = cKDTree(images).query_ball_point(cart, r=tol) if tol > 0 else None
    rep_label = np.full(count, -1, dtype=int)  # cluster label of a representative, else -1
    clusters = 0
    for idx in range(count):
        best_label = -1
        if neighbours is not None:
            rows = np.asarray(neighbours[idx], dtype=int)
            points_of = rows % count
            keep = (points_of < idx) & (rep_label[points_of] >= 0)
            if keep.any():
                rows, points_of = rows[keep], points_of[keep]
                dist = np.linalg.norm(images[rows] - cart[idx], axis=1)
                # Nearest representative; ties go to the earliest cluster.
                order = np.lexsort((rep_label[points_of], dist))
                if dist[order[0]] < tol:
                    best_label = int(rep_label[points_of[order[0]]])
        if best_label < 0:
            best_label = clusters
            rep_label[idx] = clusters
            clusters += 1
        labels[idx] = best_label
    return labels
