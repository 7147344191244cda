"""Projecting a crystal along a zone axis into a 2D cell of weighted atomic columns.

The zone axis [uvw] picks the beam direction; the crystal lattice projected onto the
plane normal to it is a 2D lattice, whose reduced basis is the 2D cell.  Each of the
unit cell's atoms lands in exactly one column of one repeat along the beam.  Column
weights follow the incoherent HAADF approximation: intensity of a column ~ sum over its
atoms of Z**n with n ~ 1.7 (Pennycook & Jesson, Ultramicroscopy 37, 14 (1991); Hartel
et al., Ultramicroscopy 63, 93 (1996)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gemmi
import numpy as np

from napari_pinned.physics.structure import (
    DEDUP_TOLERANCE,
    Crystal,
    cluster_periodic,
    wrap_fractional,
)
from napari_pinned.physics.zones import zone_label, zone_to_three_index

__all__ = ["Z_EXPONENT_HAADF", "ProjectedCell", "project"]

#: Exponent n of the HAADF column weight sum(occ * Z**n) (Pennycook & Jesson 1991).
Z_EXPONENT_HAADF = 1.7


@dataclass(frozen=True, eq=False)
class ProjectedCell:
    """A crystal projected along a zone axis: a 2D cell of atomic columns.

    Attributes
    ----------
    zone : tuple of int
        Zone axis [uvw] (3-index, reduced by the gcd).
    vectors : numpy.ndarray
        (2, 2) Å; rows are the in-plane cell vectors (x, y).  The first lies along +x
        and the second has y > 0.
    positions : numpy.ndarray
        (M, 2) Å column positions (x, y) inside the 2D cell.
    site_z : tuple of numpy.ndarray
        Per column: atomic numbers of the atoms in one repeat along the beam.
    site_occupancy : tuple of numpy.ndarray
        Per column: the matching occupancies.
    weights : numpy.ndarray
        (M,) sum of occupancy * Z**z_exponent per repeat.
    repeat : float
        Repeat distance along the beam, Å.
    z_exponent : float
        The exponent used for ``weights``.
    site_groups : tuple of numpy.ndarray
        Per column: an integer label per atom; atoms with the same label share one
        3D position (the elements of a mixed alloy site).  Empty means every atom is
        its own site.
    """

    zone: tuple[int, int, int]
    vectors: np.ndarray
    positions: np.ndarray
    site_z: tuple[np.ndarray, ...]
    site_occupancy: tuple[np.ndarray, ...]
    weights: np.ndarray
    repeat: float
    z_exponent: float
    site_groups: tuple[np.ndarray, ...] = ()

    @property
    def area(self) -> float:
        """Area of the 2D cell, Å^2."""
        return float(abs(np.linalg.det(self.vectors)))

    def nearest_column_distance(self) -> float:
        """Return the smallest distance (Å) between two distinct columns, periodic.

        A column and its own periodic image count as distinct columns.
        """
        shifts = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=float)
        image_offsets = shifts @ self.vectors  # (25, 2)
        delta = self.positions[None, :, :] - self.positions[:, None, :]  # (M, M, 2)
        dist = np.linalg.norm(delta[:, :, None, :] + image_offsets[None, None], axis=-1)
        zero_shift = np.flatnonzero((shifts == 0).all(axis=1))[0]
        diagonal = np.arange(len(self.positions))
        dist[diagonal, diagonal, zero_shift] = np.inf
        return float(dist.min())

    def compositions(self) -> list[dict[str, float]]:
        """Return, per column, element symbol -> atoms per repeat (occupancy-weighted)."""
        result = []
        for zs, occ in zip(self.site_z, self.site_occupancy, strict=True):
            comp: dict[str, float] = {}
            for z, o in zip(zs.tolist(), occ.tolist(), strict=True):
                symbol = gemmi.Element(int(z)).name
                comp[symbol] = comp.get(symbol, 0.0) + float(o)
            result.append(comp)
        return result


def project(
    crystal: Crystal,
    zone: Sequence[int],
    *,
    z_exponent: float = Z_EXPONENT_HAADF,
    merge_tolerance: float = 0.05,
    max_repeat: float = 60.0,
) -> ProjectedCell:
    """Project a crystal along a zone axis into a 2D cell of atomic columns.

    The 2D cell is a reduced basis of the projection of the crystal lattice onto the
    plane normal to the beam; each of the cell's atoms lands in exactly one column of
    one repeat, so ``area * repeat == cell volume``.

    Parameters
    ----------
    crystal : Crystal
    zone : sequence of int
        Zone axis [uvw] or Miller-Bravais [uvtw] (direct-lattice indices).
    z_exponent : float
        n in the column weight sum(occ * Z**n).
    merge_tolerance : float
        Atoms whose projections lie closer than this (Å, periodic) form one column.
    max_repeat : float
        Largest accepted repeat distance along the beam (Å); high-index zones with
        longer repeats are rejected.

    Returns
    -------
    ProjectedCell

    Raises
    ------
    ValueError
        For an invalid zone axis or one whose repeat exceeds ``max_repeat``.
    """
    where = f"{crystal.name} ({crystal.source})"
    uvw = _check_projection(crystal, zone, where, z_exponent, merge_tolerance)
    lattice = crystal.lattice_matrix()
    beam_vector = np.asarray(uvw, dtype=float) @ lattice
    repeat = float(np.linalg.norm(beam_vector))
    if repeat > max_repeat:
        raise ValueError(
            f"{where}: zone axis {zone_label(zone)} repeats every {repeat:.1f} Å along the "
            f"beam, more than max_repeat={max_repeat:g} Å; choose a lower-index zone axis"
        )
    vectors, frame = _projected_basis(uvw, lattice, beam_vector / repeat)
    _check_projected_area(vectors, repeat, crystal.volume(), where)

    frac3 = crystal.fractional_coordinates()
    frac2 = wrap_fractional(((frac3 @ lattice) @ frame.T) @ np.linalg.inv(vectors))
    column_of_atom, positions = _merge_columns(frac2, vectors, merge_tolerance)
    site_z, site_occ, site_groups = _column_sites(crystal, lattice, column_of_atom, len(positions))
    weights = np.array(
        [np.sum(o * z.astype(float) ** z_exponent) for z, o in zip(site_z, site_occ, strict=True)]
    )
    return ProjectedCell(
        zone=uvw,
        vectors=vectors,
        positions=positions,
        site_z=site_z,
        site_occupancy=site_occ,
        weights=weights,
        repeat=repeat,
        z_exponent=float(z_exponent),
        site_groups=site_groups,
    )


def _check_projection(
    crystal: Crystal, zone: Sequence[int], where: str, z_exponent: float, merge_tolerance: float
) -> tuple[int, int, int]:
    """The three-index zone axis, after checking that ``crystal`` can be seen along it."""
    try:
        uvw = zone_to_three_index(zone)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if len(zone) == 4 and not _is_hexagonal(crystal.cell):
        raise ValueError(
            f"{where}: 4-index zone axis {zone_label(zone)} needs a hexagonal cell "
            f"(a = b, gamma = 120 deg), got cell {crystal.cell}"
        )
    if not (math.isfinite(merge_tolerance) and merge_tolerance >= 0):
        raise ValueError(
            f"merge_tolerance must be a non-negative number of Å, got {merge_tolerance!r}"
        )
    if not math.isfinite(z_exponent):
        raise ValueError(f"z_exponent must be finite, got {z_exponent!r}")
    return uvw


def _column_sites(
    crystal: Crystal, lattice: np.ndarray, column_of_atom: np.ndarray, columns: int
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Per column: the atomic numbers, occupancies and 3D-site labels of its atoms."""
    site_of_atom = cluster_periodic(crystal.fractional_coordinates(), lattice, DEDUP_TOLERANCE)
    z_all = np.array([atom.z for atom in crystal.atoms], dtype=int)
    occ_all = np.array([atom.occupancy for atom in crystal.atoms], dtype=float)
    site_z, site_occ, site_groups = [], [], []
    for column in range(columns):
        members = np.flatnonzero(column_of_atom == column)
        site_z.append(z_all[members])
        site_occ.append(occ_all[members])
        site_groups.append(np.unique(site_of_atom[members], return_inverse=True)[1])
    return tuple(site_z), tuple(site_occ), tuple(site_groups)


def _is_hexagonal(cell: tuple[float, ...]) -> bool:
    a, b, _, alpha, beta, gamma = cell
    return (
        math.isclose(a, b, rel_tol=1e-4)
        and math.isclose(alpha, 90.0, abs_tol=1e-3)
        and math.isclose(beta, 90.0, abs_tol=1e-3)
        and math.isclose(gamma, 120.0, abs_tol=1e-3)
    )


def _projected_basis(
    uvw: tuple[int, int, int], lattice: np.ndarray, beam: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the reduced 2D cell vectors (2, 2) and the in-plane frame (2, 3).

    The frame's rows e1, e2 are orthonormal and normal to the beam, with e1 along the
    first cell vector and e2 = beam x e1.
    """
    in_plane = _complete_basis(uvw).astype(float) @ lattice
    in_plane -= np.outer(in_plane @ beam, beam)
    b1, b2 = _gauss_reduce(in_plane[0], in_plane[1])
    e1 = b1 / np.linalg.norm(b1)
    e2 = np.cross(beam, e1)
    frame = np.vstack([e1, e2])
    vectors = np.vstack([b1, b2]) @ frame.T
    if vectors[1, 1] < 0:
        vectors[1] = -vectors[1]
    # Exact zeros keep right-angle cells free of -1e-17 noise in fractional coordinates.
    vectors[np.abs(vectors) < 1e-10 * np.abs(vectors).max()] = 0.0
    vectors[0, 1] = 0.0
    return vectors, frame


def _check_projected_area(vectors: np.ndarray, repeat: float, volume: float, where: str) -> None:
    cells = abs(np.linalg.det(vectors)) * repeat / volume
    if round(cells) < 1 or abs(cells - round(cells)) > 1e-6 * max(1.0, cells):
        raise RuntimeError(
            f"{where}: projected cell area x repeat is {cells:.6f} unit cells, not an integer"
        )


def _merge_columns(
    frac2: np.ndarray, vectors: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Group projected atoms into columns; return the column of each atom and positions.

    Column positions are the periodic mean of their atoms, wrapped into the cell.
    """
    lattice3 = np.zeros((3, 3))
    lattice3[:2, :2] = vectors
    lattice3[2, 2] = 1.0e6  # a huge third axis turns the 3D clustering into 2D
    frac3 = np.column_stack([frac2, np.zeros(len(frac2))])
    labels = cluster_periodic(frac3, lattice3, tol)
    positions = []
    for column in range(labels.max() + 1):
        members = frac2[labels == column]
        offsets = members - members[0]
        offsets -= np.round(offsets)
        mean = wrap_fractional((members[0] + offsets.mean(axis=0))[None])[0]
        positions.append(mean @ vectors)
    return labels, np.array(positions).reshape(-1, 2)


# --------------------------------------------------------------------------- 2D basis


def _ext_gcd(a: int, b: int) -> tuple[int, int, int]:
    """Return (g, x, y) with x*a + y*b = g = gcd(a, b) >= 0."""
    old_r, r, old_x, x, old_y, y = a, b, 1, 0, 0, 1
    while r:
        q = old_r // r
        old_r, r = r, old_r - q * r
        old_x, x = x, old_x - q * x
        old_y, y = y, old_y - q * y
    if old_r < 0:
        old_r, old_x, old_y = -old_r, -old_x, -old_y
    return old_r, old_x, old_y


def _complete_basis(uvw: tuple[int, int, int]) -> np.ndarray:
    """Two integer rows that, with the primitive vector uvw, form a unimodular matrix.

    Their lattice vectors project onto a basis of the 2D lattice seen down uvw.
    """
    u, v, w = uvw
    g, x, y = _ext_gcd(u, v)
    if g == 0:
        rows = np.array([[1, 0, 0], [0, 1, 0]])
    else:
        # det[[u,v,w],[-y,x,0],[k u/g, k v/g, p]] = p g - k w; choose p g + q w = 1, k = -q.
        _, p, q = _ext_gcd(g, w)
        rows = np.array([[-y, x, 0], [-q * u // g, -q * v // g, p]])
    det = round(np.linalg.det(np.vstack([uvw, rows])))
    assert abs(det) == 1, "basis completion must be unimodular"
    return rows


def _gauss_reduce(b1: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange-Gauss reduction of a 2D lattice basis (shortest vectors first)."""
    if b1 @ b1 > b2 @ b2:
        b1, b2 = b2, b1
    while True:
        b2 = b2 - round(float(b1 @ b2) / float(b1 @ b1)) * b1
        if b2 @ b2 >= b1 @ b1 * (1.0 - 1e-12):
            return b1, b2
        b1, b2 = b2, b1
