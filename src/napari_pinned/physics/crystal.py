"""Crystal structures from CIF files, projected along a zone axis into atomic columns.

The synthetic-image generator needs, for a crystal seen down a zone axis, the 2D
positions of the atomic columns and how strongly each scatters.  This module

1. reads a CIF with gemmi and expands the asymmetric unit to the full unit cell
   (keeping partial occupancies, so random alloys are represented);
2. projects the cell along a zone axis [uvw] onto the plane normal to the beam,
   giving a 2D cell whose columns carry the atoms of one repeat along the beam;
3. tiles that 2D cell over a field of view, with rotation, shift, vacancies and
   random alloy disorder.

Column weights follow the incoherent HAADF approximation: intensity of a column
~ sum over its atoms of Z**n with n ~ 1.7 (Pennycook & Jesson, Ultramicroscopy 37,
14 (1991); Hartel et al., Ultramicroscopy 63, 93 (1996)).

A small library of hand-written CIFs is bundled in ``napari_pinned/data/cif``;
:func:`list_materials` lists them with their usual zone axes.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import gemmi
import numpy as np

from napari_pinned._util.checks import check_shape

__all__ = [
    "Z_EXPONENT_HAADF",
    "Atom",
    "CIFError",
    "ColumnSet",
    "Crystal",
    "Material",
    "ProjectedCell",
    "get_material",
    "list_materials",
    "load_material",
    "parse_zone",
    "project",
    "read_cif",
    "read_cif_text",
    "tile_columns",
    "zone_label",
    "zone_to_three_index",
]

#: Exponent n of the HAADF column weight sum(occ * Z**n) (Pennycook & Jesson 1991).
Z_EXPONENT_HAADF = 1.7

#: Symmetry images closer than this (Å, periodic) are the same atom.
_DEDUP_TOLERANCE = 0.01
#: Occupancies of atoms sharing one position may exceed 1 by this much (rounding in CIFs).
_OCCUPANCY_TOLERANCE = 0.02
#: Atom counts may differ from formula x Z by this fraction plus this absolute amount.
_FORMULA_REL_TOLERANCE = 0.02
_FORMULA_ABS_TOLERANCE = 0.05


class CIFError(ValueError):
    """A CIF file (or CIF text) that cannot be turned into a crystal structure."""


# --------------------------------------------------------------------------- data types


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
        """Return the (3, 3) matrix whose rows are a, b, c in Cartesian Å.

        a lies along x and b in the xy plane (the usual PDB/CIF orthogonalisation).
        """
        return _lattice_matrix(self.cell)

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


# --------------------------------------------------------------------------- lattice


def _lattice_matrix(cell: Sequence[float]) -> np.ndarray:
    a, b, c, alpha, beta, gamma = (float(v) for v in cell)
    ca, cb, cg = (math.cos(math.radians(v)) for v in (alpha, beta, gamma))
    sg = math.sin(math.radians(gamma))
    cy = (ca - cb * cg) / sg
    cz2 = 1.0 - cb * cb - cy * cy
    if cz2 <= 0.0:
        raise ValueError(f"cell angles {alpha}, {beta}, {gamma} do not describe a 3D cell")
    return np.array([[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [c * cb, c * cy, c * math.sqrt(cz2)]])


def _wrap(frac: np.ndarray) -> np.ndarray:
    """Map fractional coordinates into [0, 1), sending values within 1e-9 of 1 to 0."""
    out = frac - np.floor(frac)
    out[out > 1.0 - 1e-9] = 0.0
    return out


def _cluster_periodic(frac: np.ndarray, lattice: np.ndarray, tol: float) -> np.ndarray:
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


# --------------------------------------------------------------------------- CIF reading


def read_cif(path: str | os.PathLike, *, name: str | None = None) -> Crystal:
    """Read a CIF file into a :class:`Crystal` (full unit cell).

    Parameters
    ----------
    path : str or os.PathLike
        CIF file.
    name : str, optional
        Display name; defaults to the file's stem.

    Returns
    -------
    Crystal

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CIFError
        If the file is not a CIF or does not describe a crystal (no cell, no atoms,
        unknown element, atom counts inconsistent with the formula...).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIF file not found: {path}")
    try:
        doc = gemmi.cif.read(str(path))
    except (RuntimeError, ValueError) as exc:
        raise CIFError(f"{path}: not a readable CIF file ({exc})") from exc
    return _crystal_from_document(doc, str(path), name if name is not None else path.stem)


def read_cif_text(text: str, *, name: str = "<string>") -> Crystal:
    """Read CIF content given as a string; see :func:`read_cif`.

    The crystal's ``source`` is ``"<string>"``.
    """
    try:
        doc = gemmi.cif.read_string(text)
    except (RuntimeError, ValueError) as exc:
        raise CIFError(f"<string>: not a readable CIF ({exc})") from exc
    return _crystal_from_document(doc, "<string>", name)


def _crystal_from_document(doc: gemmi.cif.Document, source: str, name: str) -> Crystal:
    if len(doc) == 0:
        raise CIFError(f"{source}: not a CIF (no data_ block found)")
    block = _structure_block(doc, source)
    cell = _read_cell(block, source)
    lattice = _lattice_matrix(cell)
    try:
        small = gemmi.make_small_structure_from_block(block)
    except (RuntimeError, ValueError) as exc:
        raise CIFError(f"{source}: cannot read the structure ({exc})") from exc
    sites = _read_sites(small, source)
    formula = _read_formula(block)
    accepted: list[list[Atom]] = []
    error: CIFError | None = None
    for ops in _symmetry_candidates(block, small, cell, source):
        atoms = _expand(sites, ops, lattice)
        try:
            _check_formula(atoms, formula, source)
        except CIFError as exc:
            error = error or exc
            continue
        accepted.append(atoms)
    if not accepted:
        assert error is not None
        raise error
    # Several candidates only arise for an H-M symbol with two origin choices and no
    # explicit operators.  Coordinates written for the other origin put atoms off
    # their special positions, which multiplies them, so the fewest atoms wins.
    atoms = min(accepted, key=len)
    _check_site_occupancy(atoms, lattice, source)
    return Crystal(name=name, cell=cell, atoms=tuple(atoms), source=source)


def _structure_block(doc: gemmi.cif.Document, source: str) -> gemmi.cif.Block:
    for block in doc:
        if block.find_value("_cell_length_a") is not None:
            return block
    raise CIFError(f"{source}: no unit cell (_cell_length_a/_b/_c missing)")


def _read_cell(block: gemmi.cif.Block, source: str) -> tuple[float, ...]:
    values = []
    for tag, default in (
        ("_cell_length_a", None),
        ("_cell_length_b", None),
        ("_cell_length_c", None),
        ("_cell_angle_alpha", 90.0),
        ("_cell_angle_beta", 90.0),
        ("_cell_angle_gamma", 90.0),
    ):
        raw = block.find_value(tag)
        value = gemmi.cif.as_number(raw) if raw is not None else math.nan
        if math.isnan(value):
            if default is None:
                raise CIFError(f"{source}: no unit cell ({tag} missing or not a number)")
            value = default
        values.append(value)
    if min(values[:3]) <= 0 or not all(0 < v < 180 for v in values[3:]):
        raise CIFError(f"{source}: invalid unit cell {tuple(values)}")
    try:
        _lattice_matrix(values)
    except ValueError as exc:
        raise CIFError(f"{source}: invalid unit cell: {exc}") from exc
    return tuple(values)


@dataclass(frozen=True)
class _Site:
    label: str
    element: str
    z: int
    frac: np.ndarray
    occupancy: float


def _read_sites(small: gemmi.SmallStructure, source: str) -> list[_Site]:
    if len(small.sites) == 0:
        raise CIFError(
            f"{source}: no atoms (no _atom_site_ loop with _atom_site_fract_x/y/z found)"
        )
    sites = []
    for site in small.sites:
        z = site.element.atomic_number
        if z <= 0:
            symbol = site.type_symbol or site.label
            raise CIFError(f"{source}: atom {site.label!r} has an unknown element {symbol!r}")
        frac = np.array([site.fract.x, site.fract.y, site.fract.z], dtype=float)
        if not np.all(np.isfinite(frac)):
            raise CIFError(f"{source}: atom {site.label!r} has no fractional coordinates")
        occ = float(site.occ)
        if not math.isfinite(occ) or occ > 1.0 + _OCCUPANCY_TOLERANCE or occ < 0.0:
            raise CIFError(f"{source}: atom {site.label!r} has occupancy {occ} outside [0, 1]")
        if occ == 0.0:
            continue
        sites.append(_Site(site.label, site.element.name, z, frac, min(occ, 1.0)))
    if not sites:
        raise CIFError(f"{source}: no atoms (all occupancies are zero)")
    return sites


def _symmetry_candidates(
    block: gemmi.cif.Block,
    small: gemmi.SmallStructure,
    cell: tuple[float, ...],
    source: str,
) -> list[list[gemmi.Op]]:
    """Symmetry operator sets to try.

    Explicit operators in the CIF are authoritative.  Otherwise the Hall symbol, else
    the H-M symbol from gemmi's tables -- with both origin choices when the symbol
    does not name one (e.g. Fd-3m) -- else P1.
    """
    if small.symops:
        try:
            return [[gemmi.Op(triplet) for triplet in small.symops]]
        except (RuntimeError, ValueError) as exc:
            raise CIFError(f"{source}: cannot parse a symmetry operator ({exc})") from exc
    hall = block.find_value("_space_group_name_Hall") or block.find_value(
        "_symmetry_space_group_name_Hall"
    )
    if hall and gemmi.cif.as_string(hall).strip() not in ("", "?", "."):
        try:
            return [list(gemmi.symops_from_hall(gemmi.cif.as_string(hall)))]
        except (RuntimeError, ValueError) as exc:
            raise CIFError(f"{source}: unknown Hall symbol {hall!r} ({exc})") from exc
    hm = small.spacegroup_hm.strip()
    if not hm:
        return [[gemmi.Op("x,y,z")]]
    # The cell angles pick hexagonal or rhombohedral axes for R groups.
    spacegroup = gemmi.find_spacegroup_by_name(hm, alpha=cell[3], gamma=cell[5])
    if spacegroup is None:
        raise CIFError(f"{source}: unknown space group {hm!r} and no symmetry operators given")
    settings = [spacegroup]
    if ":" not in hm and spacegroup.ext in ("1", "2"):
        settings += [
            sg
            for sg in gemmi.spacegroup_table()
            if sg.number == spacegroup.number and sg.ext in ("1", "2") and sg.ext != spacegroup.ext
        ]
    return [list(sg.operations()) for sg in settings]


def _expand(sites: list[_Site], ops: list[gemmi.Op], lattice: np.ndarray) -> list[Atom]:
    """Apply the symmetry operators to each site and drop coincident images."""
    rot = np.array([op.rot for op in ops], dtype=float) / gemmi.Op.DEN
    tran = np.array([op.tran for op in ops], dtype=float) / gemmi.Op.DEN
    atoms = []
    for site in sites:
        images = _wrap(np.einsum("nij,j->ni", rot, site.frac) + tran)
        labels = _cluster_periodic(images, lattice, _DEDUP_TOLERANCE)
        _, first = np.unique(labels, return_index=True)
        for idx in np.sort(first):
            frac = tuple(float(v) for v in images[idx])
            atoms.append(Atom(site.element, site.z, frac, site.occupancy))  # type: ignore[arg-type]
    return atoms


def _read_formula(block: gemmi.cif.Block) -> tuple[dict[str, float], float | None] | None:
    """Parse ``_chemical_formula_sum`` and ``_cell_formula_units_Z``; None if absent.

    Formulas this simple parser does not understand (parentheses, charges) are
    skipped rather than rejected, since the check is only a safety net.
    """
    raw = block.find_value("_chemical_formula_sum")
    if raw is None:
        return None
    text = gemmi.cif.as_string(raw).strip()
    if not re.fullmatch(r"(\s*[A-Z][a-z]?(\d+(\.\d*)?|\.\d+)?)+\s*", text):
        return None
    counts: dict[str, float] = {}
    for symbol, number in re.findall(r"([A-Z][a-z]?)(\d+(?:\.\d*)?|\.\d+)?", text):
        if gemmi.Element(symbol).atomic_number == 0:
            return None
        counts[symbol] = counts.get(symbol, 0.0) + (float(number) if number else 1.0)
    raw_z = block.find_value("_cell_formula_units_Z")
    z = gemmi.cif.as_number(raw_z) if raw_z is not None else math.nan
    return counts, (z if math.isfinite(z) and z > 0 else None)


def _check_formula(
    atoms: list[Atom], formula: tuple[dict[str, float], float | None] | None, source: str
) -> None:
    if formula is None:
        return
    per_formula, z = formula
    found: dict[str, float] = {}
    for atom in atoms:
        found[atom.element] = found.get(atom.element, 0.0) + atom.occupancy
    # Without Z only the proportions can be checked.
    scale = z if z is not None else sum(found.values()) / sum(per_formula.values())
    expected = {el: n * scale for el, n in per_formula.items()}
    for element in set(expected) | set(found):
        want, got = expected.get(element, 0.0), found.get(element, 0.0)
        if abs(got - want) > _FORMULA_REL_TOLERANCE * want + _FORMULA_ABS_TOLERANCE:
            described = "_chemical_formula_sum x _cell_formula_units_Z" if z else "the formula"
            raise CIFError(
                f"{source}: the unit cell after symmetry expansion holds "
                f"{_format_counts(found)} atoms, but {described} gives "
                f"{_format_counts(expected)}; check the space-group setting (origin "
                "choice) and the atom list"
            )


def _format_counts(counts: dict[str, float]) -> str:
    return ", ".join(f"{el} {n:g}" for el, n in sorted(counts.items()))


def _check_site_occupancy(atoms: list[Atom], lattice: np.ndarray, source: str) -> None:
    frac = np.array([atom.frac for atom in atoms])
    labels = _cluster_periodic(frac, lattice, _DEDUP_TOLERANCE)
    totals = np.bincount(labels, weights=[atom.occupancy for atom in atoms])
    worst = int(np.argmax(totals))
    if totals[worst] > 1.0 + _OCCUPANCY_TOLERANCE:
        where = atoms[int(np.flatnonzero(labels == worst)[0])].frac
        raise CIFError(
            f"{source}: atoms overlapping at {tuple(round(v, 4) for v in where)} have a total "
            f"occupancy of {totals[worst]:.3f} > 1"
        )


# --------------------------------------------------------------------------- zone axes


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


# --------------------------------------------------------------------------- projection


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
    lattice = crystal.lattice_matrix()
    beam_vector = np.asarray(uvw, dtype=float) @ lattice
    repeat = float(np.linalg.norm(beam_vector))
    if repeat > max_repeat:
        raise ValueError(
            f"{where}: zone axis {zone_label(zone)} repeats every {repeat:.1f} Å along the "
            f"beam, more than max_repeat={max_repeat:g} Å; choose a lower-index zone axis"
        )
    beam = beam_vector / repeat
    vectors, frame = _projected_basis(uvw, lattice, beam)
    _check_projected_area(vectors, repeat, crystal.volume(), where)

    frac3 = crystal.fractional_coordinates()
    xy = (frac3 @ lattice) @ frame.T
    frac2 = _wrap(xy @ np.linalg.inv(vectors))
    column_of_atom, positions = _merge_columns(frac2, vectors, merge_tolerance)
    site_of_atom = _cluster_periodic(frac3, lattice, _DEDUP_TOLERANCE)

    z_all = np.array([atom.z for atom in crystal.atoms], dtype=int)
    occ_all = np.array([atom.occupancy for atom in crystal.atoms], dtype=float)
    site_z, site_occ, site_groups = [], [], []
    for column in range(len(positions)):
        members = np.flatnonzero(column_of_atom == column)
        site_z.append(z_all[members])
        site_occ.append(occ_all[members])
        site_groups.append(np.unique(site_of_atom[members], return_inverse=True)[1])
    weights = np.array(
        [np.sum(o * z.astype(float) ** z_exponent) for z, o in zip(site_z, site_occ, strict=True)]
    )
    return ProjectedCell(
        zone=uvw,
        vectors=vectors,
        positions=positions,
        site_z=tuple(site_z),
        site_occupancy=tuple(site_occ),
        weights=weights,
        repeat=repeat,
        z_exponent=float(z_exponent),
        site_groups=tuple(site_groups),
    )


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
    labels = _cluster_periodic(frac3, lattice3, tol)
    positions = []
    for column in range(labels.max() + 1):
        members = frac2[labels == column]
        offsets = members - members[0]
        offsets -= np.round(offsets)
        mean = _wrap((members[0] + offsets.mean(axis=0))[None])[0]
        positions.append(mean @ vectors)
    return labels, np.array(positions).reshape(-1, 2)


# --------------------------------------------------------------------------- tiling


def tile_columns(
    cell: ProjectedCell,
    shape: tuple[int, int],
    pixel_size: float,
    *,
    thickness: float = 200.0,
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
    rng = np.random.default_rng(rng)
    repeats = max(1, math.floor(thickness / cell.repeat + 0.5))

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


# --------------------------------------------------------------------------- library


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
