"""Tiling a projected cell over a field of view: the atomic columns an image shows.

The 2D cell of :func:`napari_pinned.physics.projection.project` is repeated over the
field and a margin around it, rotated and shifted, with vacancies and the random
occupation of alloy sites drawn column by column.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from napari_pinned._util.checks import check_shape
from napari_pinned._util.memory import check_memory, columns_bytes
from napari_pinned.physics.defaults import DEFAULT_THICKNESS
from napari_pinned.physics.projection import ProjectedCell

__all__ = ["ColumnSet", "tile_columns"]


@dataclass(frozen=True, eq=False)
class ColumnSet:
    """Atomic columns tiled over a field of view.

    Attributes
    ----------
    positions : numpy.ndarray
        (N, 2) float64 pixel coordinates (row, col).  Columns in the margin lie
        outside ``[0, shape)``.
    weights : numpy.ndarray
        (N,) float64 total column weight (per-repeat weight x repeats, with disorder).
    column_type : numpy.ndarray or None
        (N,) index of the :class:`ProjectedCell` column each entry came from.
    """

    positions: np.ndarray
    weights: np.ndarray
    column_type: np.ndarray | None = None

    def inside(self, shape: tuple[int, int]) -> ColumnSet:
        """The columns whose centres lie on a field of ``shape`` pixels."""
        pos = np.asarray(self.positions, dtype=np.float64).reshape(-1, 2)
        keep = np.all((pos >= -0.5) & (pos < np.asarray(shape) - 0.5), axis=1)
        kind = None if self.column_type is None else np.asarray(self.column_type)[keep]
        weights = np.asarray(self.weights, dtype=np.float64)[keep]
        return ColumnSet(positions=pos[keep], weights=weights, column_type=kind)


def tile_columns(
    cell: ProjectedCell,
    shape: tuple[int, int],
    pixel_size: float,
    *,
    thickness: float = DEFAULT_THICKNESS,
    rotation: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    vacancy_fraction: float = 0.0,
    alloy_disorder: bool = True,
    margin: float = 5.0,
    rng: np.random.Generator | int | None = None,
) -> ColumnSet:
    """Tile a projected cell over a field of view.

    The cell origin sits at the centre of the field of view, moved by ``shift``
    (fractions of the two cell vectors); the lattice is then rotated about the centre.

    Parameters
    ----------
    cell : ProjectedCell
    shape : tuple of int
        Field of view (rows, cols) in pixels.
    pixel_size : float
        Å per pixel.  x (Å) maps to column x / pixel_size, y to row y / pixel_size.
    thickness : float
        Specimen thickness, Å; the number of repeats along the beam is
        ``max(1, round(thickness / cell.repeat))``.
    rotation : float
        In-plane rotation in degrees, counter-clockwise as displayed (rows pointing
        down): a column to the right of the centre moves towards row 0 for +90.
    shift : tuple of float
        Fractional shift of the cell origin along the two cell vectors.
    vacancy_fraction : float
        Probability that a column is removed entirely.
    alloy_disorder : bool
        Draw the occupation of every partially occupied site: over R repeats, a site
        holds element e in a Multinomial(R, occupancies) number of repeats (so each
        element's count is Binomial(R, occ_e)).  If False, use the mean weight.
    margin : float
        Columns are generated this far (Å) beyond the field of view so that a probe
        convolution has no edge fall-off.
    rng : numpy.random.Generator or int or None
        Random source or seed.

    Returns
    -------
    ColumnSet
    """
    rows, cols = check_shape(shape)
    _check_tiling_numbers(pixel_size, thickness, vacancy_fraction, margin, rotation, shift)
    _check_column_memory(cell, rows, cols, pixel_size, margin)
    rng = np.random.default_rng(rng)
    repeats = repeat_count(thickness, cell.repeat)

    xy, column_type = _lattice_points(cell, rows, cols, pixel_size, rotation, shift, margin)
    keep = rng.random(len(xy)) >= vacancy_fraction
    xy, column_type = xy[keep], column_type[keep]
    if alloy_disorder:
        weights = _disordered_weights(cell, column_type, repeats, rng)
    else:
        weights = cell.weights[column_type] * repeats
    positions = np.column_stack([xy[:, 1], xy[:, 0]]) / pixel_size
    return ColumnSet(
        positions=positions.astype(np.float64),
        weights=np.asarray(weights, dtype=np.float64),
        column_type=column_type,
    )


def _check_column_memory(
    cell: ProjectedCell, rows: int, cols: int, pixel_size: float, margin: float
) -> None:
    """Refuse, before any is made, more columns than the memory holds: their number is
    the field (with its margin) over the cell's area, times the columns per cell."""
    field = (cols * pixel_size + 2 * margin) * (rows * pixel_size + 2 * margin)
    count = field / cell.area * len(cell.positions)
    check_memory(
        columns_bytes(count),
        f"a field of {rows}×{cols} px at {pixel_size:g} Å/px with {count:.3g} atomic columns",
        advice="use a smaller size or pixel size",
    )


def repeat_count(thickness: float, repeat: float) -> int:
    """Repeats of the cell along the beam in ``thickness`` Å: the nearest count, at least 1."""
    return max(1, math.floor(thickness / repeat + 0.5))


def _check_tiling_numbers(
    pixel_size: float,
    thickness: float,
    vacancy_fraction: float,
    margin: float,
    rotation: float,
    shift: tuple[float, float],
) -> None:
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of Å, got {pixel_size!r}")
    if not (math.isfinite(thickness) and thickness > 0):
        raise ValueError(f"thickness must be a positive number of Å, got {thickness!r}")
    if not 0.0 <= vacancy_fraction <= 1.0:
        raise ValueError(f"vacancy_fraction must lie in [0, 1], got {vacancy_fraction!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a non-negative number of Å, got {margin!r}")
    if not math.isfinite(rotation):
        raise ValueError(f"rotation must be a finite angle in degrees, got {rotation!r}")
    if len(shift) != 2 or not all(math.isfinite(s) for s in shift):
        raise ValueError(f"shift must be two finite fractions, got {shift!r}")


def _lattice_points(
    cell: ProjectedCell,
    rows: int,
    cols: int,
    pixel_size: float,
    rotation: float,
    shift: tuple[float, float],
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """All column positions (x, y in Å) within the field of view plus margin."""
    theta = math.radians(rotation)
    # Counter-clockwise on screen, where y (rows) points down.
    rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    width, height = cols * pixel_size, rows * pixel_size
    centre = np.array([width / 2, height / 2])
    origin = np.asarray(shift, dtype=float)
    corners = np.array(
        [[x, y] for x in (-margin, width + margin) for y in (-margin, height + margin)]
    )
    # Fractional cell coordinates of the corners: xy = centre + rot @ (f @ vectors)
    corner_frac = ((corners - centre) @ rot) @ np.linalg.inv(cell.vectors) - origin
    low = np.floor(corner_frac.min(axis=0)).astype(int) - 1
    high = np.ceil(corner_frac.max(axis=0)).astype(int) + 1
    i, j = np.meshgrid(
        np.arange(low[0], high[0] + 1), np.arange(low[1], high[1] + 1), indexing="ij"
    )
    cell_origins = (np.column_stack([i.ravel(), j.ravel()]) + origin) @ cell.vectors
    local = cell_origins[:, None, :] + cell.positions[None, :, :]  # (cells, M, 2)
    column_type = np.broadcast_to(np.arange(len(cell.positions)), local.shape[:2]).ravel()
    xy = local.reshape(-1, 2) @ rot.T + centre
    inside = (
        (xy[:, 0] >= -margin)
        & (xy[:, 0] < width + margin)
        & (xy[:, 1] >= -margin)
        & (xy[:, 1] < height + margin)
    )
    return xy[inside], column_type[inside]


@functools.lru_cache(maxsize=32)
def _site_table(cell: ProjectedCell) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flatten the cell's 3D sites: (column start offsets, probabilities, Z**n, counts).

    Row g of the probabilities holds the occupancies of site g's elements, padded
    with zeros, and finally the vacancy probability.
    """
    groups_per_column = []
    entries: list[tuple[np.ndarray, np.ndarray]] = []
    for index, (zs, occ) in enumerate(zip(cell.site_z, cell.site_occupancy, strict=True)):
        groups = cell.site_groups[index] if cell.site_groups else np.arange(len(zs))
        labels = np.unique(groups)
        groups_per_column.append(len(labels))
        entries.extend((zs[groups == g], occ[groups == g]) for g in labels)
    width = max((len(z) for z, _ in entries), default=1)
    probabilities = np.zeros((len(entries), width + 1))
    zpower = np.zeros((len(entries), width))
    for row, (zs, occ) in enumerate(entries):
        occ = occ / max(1.0, float(occ.sum()))  # tolerate CIF rounding just above 1
        probabilities[row, : len(occ)] = occ
        probabilities[row, -1] = max(0.0, 1.0 - float(occ.sum()))
        zpower[row, : len(zs)] = zs.astype(float) ** cell.z_exponent
    counts = np.array(groups_per_column, dtype=int)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return starts, probabilities, zpower, counts


def _disordered_weights(
    cell: ProjectedCell, column_type: np.ndarray, repeats: int, rng: np.random.Generator
) -> np.ndarray:
    """Column weights with the occupation of each 3D site drawn over the repeats."""
    starts, probabilities, zpower, counts = _site_table(cell)
    per_column = counts[column_type]
    owner = np.repeat(np.arange(len(column_type)), per_column)
    first_of_owner = np.repeat(np.cumsum(per_column) - per_column, per_column)
    site = np.repeat(starts[column_type], per_column) + np.arange(len(owner)) - first_of_owner
    draws = rng.multinomial(repeats, probabilities[site])[:, :-1]
    site_weight = (draws * zpower[site]).sum(axis=1)
    return np.bincount(owner, weights=site_weight, minlength=len(column_type))
