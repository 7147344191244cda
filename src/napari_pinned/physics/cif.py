"""Reading CIF files into a :class:`~napari_pinned.physics.structure.Crystal`.

gemmi parses the file; the asymmetric unit is expanded to the full unit cell with the
file's symmetry operators (or those of its Hall or Hermann–Mauguin symbol), keeping
partial occupancies so that random alloys are represented.  The atom counts are checked
against ``_chemical_formula_sum`` × ``_cell_formula_units_Z`` where the file gives
them, which catches a wrong space-group setting (origin choice).
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from dataclasses import dataclass

import gemmi
import numpy as np

from napari_pinned.physics.structure import (
    DEDUP_TOLERANCE,
    Atom,
    Crystal,
    check_cell,
    cluster_periodic,
    lattice_matrix,
    wrap_fractional,
)

__all__ = ["CIFError", "read_cif", "read_cif_text"]

#: Occupancies of atoms sharing one position may exceed 1 by this much (rounding in CIFs).
_OCCUPANCY_TOLERANCE = 0.02
#: Atom counts may differ from formula x Z by this fraction plus this absolute amount.
_FORMULA_REL_TOLERANCE = 0.02
_FORMULA_ABS_TOLERANCE = 0.05


class CIFError(ValueError):
    """A CIF file (or CIF text) that cannot be turned into a crystal structure."""


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
    lattice = lattice_matrix(cell)
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
        lattice_matrix(values)
    except ValueError as exc:
        raise CIFError(f"{source}: invalid unit cell: {exc}") from exc
    try:
        check_cell(values, source)  # a cell no crystal has, before it is tiled
    except ValueError as exc:
        raise CIFError(str(exc)) from None
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
        images = wrap_fractional(np.einsum("nij,j->ni", rot, site.frac) + tran)
        labels = cluster_periodic(images, lattice, DEDUP_TOLERANCE)
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
    labels = cluster_periodic(frac, lattice, DEDUP_TOLERANCE)
    totals = np.bincount(labels, weights=[atom.occupancy for atom in atoms])
    worst = int(np.argmax(totals))
    if totals[worst] > 1.0 + _OCCUPANCY_TOLERANCE:
        where = atoms[int(np.flatnonzero(labels == worst)[0])].frac
        raise CIFError(
            f"{source}: atoms overlapping at {tuple(round(v, 4) for v in where)} have a total "
            f"occupancy of {totals[worst]:.3f} > 1"
        )
