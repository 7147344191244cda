"""Diverse, realistic clean HAADF-STEM specimens with ground truth, for training and benchmarks.

A denoiser trained only on perfect crystals learns a lattice prior: it erases weak
sublattices (Ti–O beside Sr, S₂ beside Mo) and paints lattice texture onto amorphous
carbon.  :func:`random_structure` draws the *expected* HAADF signal (no noise) of the
scenes a microscopist actually records, each with the positions of its atomic columns:

* bundled crystals (:mod:`napari_pinned.physics.crystal`) along their usual and other
  low-index zone axes; monolayers (MoS2, WSe2, hBN, graphene) one layer thick;
* random 2D Bravais lattices with random motifs of 1–5 columns whose weights span
  ~20×, so that no particular lattice can be learned;
* strong lattices with a much weaker sublattice (weight ratio 0.05–0.5);
* amorphous films (random atoms; a-C, a-SiN, a-SiO2) and single heavy atoms on them,
  vacuum;
* nanoparticles on amorphous support, grain boundaries, surfaces and edges, thickness
  gradients, vacancies, single heavy dopant atoms in columns;
* optionally an ABF-like inverted contrast (flagged).

Intensities are physical within and across images: the image is the column weight
density ``Σ Z^1.7`` per Å² (Pennycook & Jesson, Ultramicroscopy 37, 14 (1991); see
:mod:`napari_pinned.physics.crystal`) blurred by the probe, so a uniform film of areal weight
density D reads D, an amorphous carbon film is one to two orders of magnitude weaker
per area than a 20 nm crystal, and vacuum is 0 plus at most a small background.  Any
overall scale (the detector's efficiency, the dose) is left to the noise model.

Rendering is :func:`napari_pinned.physics.simulate.render_columns` (incoherent imaging: probe ⊛
weighted points) with probes from :class:`~napari_pinned.physics.simulate.AberratedProbe` or
:class:`~napari_pinned.physics.simulate.GaussianProbe`.  The approximations are the usual ones
of incoherent HAADF simulation: no channelling (column weight ∝ thickness), no
depth-dependent probe spreading beyond a smooth "diffuse" redistribution of part of the
signal, and projected (2D Poisson) positions for amorphous atoms.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import gemmi
import numpy as np
from scipy import fft as sfft
from scipy import ndimage, special
from scipy.spatial import cKDTree

from napari_pinned._util.checks import check_shape
from napari_pinned.physics.crystal import (
    Z_EXPONENT_HAADF,
    ColumnSet,
    ProjectedCell,
    get_material,
    list_materials,
    load_material,
    project,
    tile_columns,
    zone_label,
)
from napari_pinned.physics.simulate import (
    FWHM_PER_SIGMA,
    AberratedProbe,
    GaussianProbe,
    Probe,
    electron_wavelength,
    render_columns,
    render_margin,
)

__all__ = [
    "BENCHMARK_SEED_START",
    "HELD_OUT_MATERIALS",
    "KINDS",
    "Specimen",
    "StructureRanges",
    "held_out_materials",
    "random_structure",
    "structure_pool",
    "training_materials",
]

#: Every kind :func:`random_structure` can draw.
KINDS = (
    "crystal",
    "random_lattice",
    "weak_strong",
    "amorphous",
    "vacuum",
    "nanoparticle",
    "grain_boundary",
    "surface",
    "thickness_gradient",
    "vacancies",
    "dopants",
    "adatoms",
)

#: Default probability of each kind.  About a seventh of the images hold no lattice at
#: all (amorphous, adatoms, vacuum) and a further third have amorphous or vacuum regions
#: beside a crystal, so that "no lattice" is as familiar to a network as a lattice.
DEFAULT_KIND_PROBABILITIES: tuple[tuple[str, float], ...] = (
    ("crystal", 0.16),
    ("random_lattice", 0.16),
    ("weak_strong", 0.14),
    ("amorphous", 0.08),
    ("vacuum", 0.03),
    ("nanoparticle", 0.09),
    ("grain_boundary", 0.07),
    ("surface", 0.07),
    ("thickness_gradient", 0.06),
    ("vacancies", 0.05),
    ("dopants", 0.06),
    ("adatoms", 0.03),
)

#: Materials never shown in training: the paper's validation materials (BaTiO3, Al,
#: ZnMgTe), the tetragonal polymorph of one of them, and one monolayer (WSe2), so that
#: benchmarks score crystals and a 2D material the network never saw.
HELD_OUT_MATERIALS = ("BaTiO3", "BaTiO3-P4mm", "Al", "ZnMgTe", "WSe2")

#: Seeds of held-out benchmark specimens start here; training pools use seeds below it.
#: Random lattices, films and geometry come from the seed, so disjoint seed ranges give
#: benchmark structures the training pool never held.
BENCHMARK_SEED_START = 1_000_000_000

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

# Heavy single atoms seen on supports and as dopants (Pt, Au, W, Hf, Ir, Ce, ...).
_ADATOM_Z = (58, 72, 74, 77, 78, 79)


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True, eq=False)
class Specimen:
    """A clean (noise-free) HAADF-STEM image with its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``(rows, cols)``, ≥ 0: the expected signal in Σ Z^1.7 per Å² (column
        weights per area, blurred by the probe), or its ABF-like inversion when
        ``inverted``.
    columns : ColumnSet
        Atomic columns (and single heavy atoms) whose positions lie in the field
        ``[-0.5, shape - 0.5)``, in pixel coordinates ``(row, col)``, where they were
        rendered (after the static Debye–Waller offsets), with their weights Σ Z^1.7.
        ``column_type`` numbers the distinct columns of every region's 2D cell.  Empty
        for amorphous films and vacuum: their atoms are not columns.
    pixel_size : float
        Å per pixel.
    kind : str
        One of :data:`KINDS`.
    label : str
        A short description, e.g. ``"SrTiO3 [110], 180 Å, on a-C 25 Å"``.
    inverted : bool
        ABF-like contrast: bright background, dark columns.
    probe : GaussianProbe or AberratedProbe
        The probe (without the thermal part of the Debye–Waller smearing).
    debye_waller : float
        rms atomic displacement u per axis, Å.
    materials : tuple of str
        Bundled materials shown (empty for random lattices, films and vacuum).
    params : dict
        Drawn parameters worth checking, e.g. ``"weight_ratio"`` for ``weak_strong``.
    """

    image: np.ndarray
    columns: ColumnSet
    pixel_size: float
    kind: str
    label: str
    inverted: bool
    probe: Probe
    debye_waller: float
    materials: tuple[str, ...] = ()
    params: Mapping[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True)
class StructureRanges:
    """Where :func:`random_structure` draws its specimens and imaging conditions from.

    Ranges are ``(low, high)`` pairs, drawn uniformly unless said otherwise.

    Attributes
    ----------
    kind_probabilities : tuple of (str, float)
        Relative probability of each kind (normalised; kinds left out are never drawn).
    pixel_size : (float, float)
        Å per pixel, log-uniform.
    thickness : (float, float)
        Crystal thickness in Å, log-uniform (monolayers are always one layer).
    debye_waller : (float, float)
        rms displacement u per axis in Å (split into static offsets and a blur, as in
        :func:`napari_pinned.physics.simulate.simulate`).
    voltages_kv : tuple of float
        Accelerating voltages, one drawn uniformly (the instruments' usual settings).
    convergence_mrad : (float, float)
        Aberrated probe: convergence semi-angle α, mrad.
    defocus_phase, cs_phase : (float, float)
        Aberrated probe: the phase (rad) that defocus and residual Cs add at the edge of
        the aperture, ``π Δf α² / λ`` and ``(π/2) Cs α⁴ / λ`` (the terms of χ in
        :class:`~napari_pinned.physics.simulate.AberratedProbe`).  Given as phases because
        that is what an operator keeps small: ±3 rad of defocus is about ±1 depth of
        field λ/α² (a probe that is slightly out of focus, not a ring), ±1 rad of Cs a
        corrector tuned to α.
    source_size : (float, float)
        Aberrated probe: effective source FWHM, Å.
    gaussian_probe_fraction : float
        Share of Gaussian probes (the paper's "Gaussian filtering").
    gaussian_fwhm : (float, float)
        FWHM of those, Å.
    max_probe_pixels : float
        Largest λ/α (Gaussian: FWHM) in pixels; a probe blurrier than this for the drawn
        pixel size is drawn again, since nobody samples a probe that finely and its
        kernel costs time.
    listed_zone_fraction : float
        Share of bundled crystals seen along one of their listed zone axes; the rest
        along another low-index zone.
    random_lattice_fraction : float
        Share of the crystals in nanoparticles, grain boundaries, surfaces, gradients,
        vacancies and dopants that are random lattices rather than bundled materials.
    lattice_constant : (float, float)
        Random Bravais lattices: the first cell edge, Å.
    motif_columns : (int, int)
        Columns per cell of a random lattice (inclusive).
    motif_weight_span : float
        Strongest / weakest column weight of a random motif, at most.
    min_column_distance : float
        Smallest distance between columns of a random motif, Å.
    weak_ratio : (float, float)
        ``weak_strong``: weak / strong column weight, log-uniform.
    amorphous_thickness : (float, float)
        Amorphous films of the ``amorphous`` and ``adatoms`` kinds, Å, log-uniform.
    support_fraction : float
        Share of crystals lying on an amorphous support film.
    support_thickness : (float, float)
        Support films, Å, log-uniform.
    vacancy_fraction : (float, float)
        ``vacancies``: share of columns (monolayers: of atoms) missing.
    dopant_fraction : (float, float)
        ``dopants``: share of columns holding one heavy dopant atom.
    dopant_z : (int, int)
        Atomic numbers of dopants (inclusive), at least 8 above the host's; in
        monolayers only the upper end applies (Se in MoS2 shows, Se in Si would not).
    adatom_density : (float, float)
        ``adatoms``: heavy atoms per Å², log-uniform.
    modifier_probability : float
        ``crystal`` and ``random_lattice``: chance of each of a few vacancies, a few
        dopants and a thickness gradient.
    diffuse_fraction : (float, float)
        Share of the signal spread smoothly around where it came from (beam spreading
        and thermal diffuse scattering between columns).
    diffuse_sigma : (float, float)
        rms width of that spreading, Å.
    background : (float, float)
        Smooth additive background as a fraction of the image's mean signal.
    vacuum_background : (float, float)
        ``vacuum``: the background level in Σ Z^1.7 per Å² (a 30 Å a-C film reads ~60).
    inverted_fraction : float
        Share of images with ABF-like inverted contrast.
    abf_contrast : (float, float)
        Depth of the dark columns of an inverted image, as a fraction of its background.
    """

    kind_probabilities: tuple[tuple[str, float], ...] = DEFAULT_KIND_PROBABILITIES
    pixel_size: tuple[float, float] = (0.03, 0.3)
    thickness: tuple[float, float] = (20.0, 400.0)
    debye_waller: tuple[float, float] = (0.03, 0.12)
    voltages_kv: tuple[float, ...] = (60.0, 80.0, 100.0, 120.0, 200.0, 300.0)
    convergence_mrad: tuple[float, float] = (15.0, 35.0)
    defocus_phase: tuple[float, float] = (-3.0, 3.0)
    cs_phase: tuple[float, float] = (-1.0, 1.0)
    source_size: tuple[float, float] = (0.2, 0.8)
    gaussian_probe_fraction: float = 0.2
    gaussian_fwhm: tuple[float, float] = (0.5, 1.5)
    max_probe_pixels: float = 40.0
    listed_zone_fraction: float = 0.5
    random_lattice_fraction: float = 0.35
    lattice_constant: tuple[float, float] = (2.5, 6.0)
    motif_columns: tuple[int, int] = (1, 5)
    motif_weight_span: float = 20.0
    min_column_distance: float = 0.9
    weak_ratio: tuple[float, float] = (0.05, 0.5)
    amorphous_thickness: tuple[float, float] = (10.0, 150.0)
    support_fraction: float = 0.4
    support_thickness: tuple[float, float] = (10.0, 80.0)
    vacancy_fraction: tuple[float, float] = (0.02, 0.15)
    dopant_fraction: tuple[float, float] = (0.003, 0.03)
    dopant_z: tuple[int, int] = (50, 83)
    adatom_density: tuple[float, float] = (0.002, 0.02)
    modifier_probability: float = 0.15
    diffuse_fraction: tuple[float, float] = (0.0, 0.25)
    diffuse_sigma: tuple[float, float] = (1.0, 4.0)
    background: tuple[float, float] = (0.0, 0.05)
    vacuum_background: tuple[float, float] = (0.0, 0.5)
    inverted_fraction: float = 0.05
    abf_contrast: tuple[float, float] = (0.15, 0.6)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("kind_probabilities", "voltages_kv"):
                continue
            if isinstance(value, tuple) and not (
                len(value) == 2 and all(math.isfinite(v) for v in value) and value[0] <= value[1]
            ):
                raise ValueError(f"{f.name} must be a (low, high) pair with low <= high")
        positive = (
            "pixel_size thickness convergence_mrad lattice_constant weak_ratio "
            "amorphous_thickness support_thickness adatom_density diffuse_sigma"
        )
        for name in positive.split():
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.voltages_kv or min(self.voltages_kv) <= 0:
            raise ValueError("voltages_kv must hold at least one positive voltage")
        for name in (
            "gaussian_probe_fraction",
            "listed_zone_fraction",
            "random_lattice_fraction",
            "support_fraction",
            "modifier_probability",
            "inverted_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        for name in ("vacancy_fraction", "dopant_fraction", "diffuse_fraction", "abf_contrast"):
            low, high = getattr(self, name)
            if low < 0 or high > 1 or (name == "abf_contrast" and high >= 1):
                raise ValueError(f"{name} must lie in [0, 1), got {(low, high)}")
        if self.motif_columns[0] < 1:
            raise ValueError("motif_columns must start at 1 or more")
        if self.motif_weight_span < 1 or self.max_probe_pixels <= 0:
            raise ValueError("motif_weight_span must be >= 1 and max_probe_pixels > 0")
        kinds = dict(self.kind_probabilities)
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; kinds are {', '.join(KINDS)}")
        if any(p < 0 or not math.isfinite(p) for p in kinds.values()) or sum(kinds.values()) <= 0:
            raise ValueError("kind_probabilities must be non-negative with a positive sum")


# --------------------------------------------------------------------------- the split


def training_materials() -> tuple[str, ...]:
    """Bundled materials for training: every bundled material not in the held-out split."""
    return tuple(m.name for m in list_materials() if m.name not in HELD_OUT_MATERIALS)


def held_out_materials() -> tuple[str, ...]:
    """Bundled materials kept for benchmarks (:data:`HELD_OUT_MATERIALS`)."""
    return HELD_OUT_MATERIALS


def structure_pool(
    count: int,
    shape: int | tuple[int, int] = 256,
    *,
    split: str = "train",
    seed: int = 0,
    ranges: StructureRanges | None = None,
) -> list[Specimen]:
    """``count`` random specimens of one split, reproducible from ``seed``.

    Parameters
    ----------
    count : int
        Number of specimens.
    shape : int or (int, int)
        Image size.
    split : {"train", "held_out"}
        ``"train"``: :func:`training_materials`, generator seeded with ``seed``, which
        must lie below :data:`BENCHMARK_SEED_START`.  ``"held_out"``: the held-out
        materials, generator seeded with ``BENCHMARK_SEED_START + seed``.
    seed : int
        Non-negative seed.
    ranges : StructureRanges, optional

    Returns
    -------
    list of Specimen
    """
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    if not 0 <= seed < BENCHMARK_SEED_START:
        raise ValueError(f"seed must lie in [0, {BENCHMARK_SEED_START}), got {seed}")
    if split == "train":
        materials, rng = training_materials(), np.random.default_rng(seed)
    elif split == "held_out":
        materials = held_out_materials()
        rng = np.random.default_rng(BENCHMARK_SEED_START + seed)
    else:
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    return [random_structure(rng, shape, materials, ranges=ranges) for _ in range(count)]


# --------------------------------------------------------------------------- entry point


def random_structure(
    rng: np.random.Generator,
    shape: int | tuple[int, int] = 256,
    materials: Sequence[str] | None = None,
    *,
    kind: str | None = None,
    pixel_size: float | None = None,
    ranges: StructureRanges | None = None,
) -> Specimen:
    """Draw one clean HAADF-STEM specimen with its ground-truth columns.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice; equal generator states give identical specimens.
    shape : int or (int, int)
        Image size in pixels.
    materials : sequence of str, optional
        Bundled materials the crystal kinds choose from (default
        :func:`training_materials`).  Empty: every crystal is a random lattice.
    kind : str, optional
        One of :data:`KINDS`; default drawn with ``ranges.kind_probabilities``.
    pixel_size : float, optional
        Å per pixel; default drawn log-uniformly from ``ranges.pixel_size``.
    ranges : StructureRanges, optional

    Returns
    -------
    Specimen

    Raises
    ------
    ValueError
        For an unknown kind or material, or a bad shape or pixel size.
    """
    ranges = StructureRanges() if ranges is None else ranges
    shape = check_shape(shape)
    names = training_materials() if materials is None else tuple(materials)
    names = tuple(get_material(name).name for name in names)
    if kind is None:
        kinds, weights = zip(*ranges.kind_probabilities, strict=True)
        p = np.asarray(weights, dtype=float)
        kind = str(kinds[int(rng.choice(len(kinds), p=p / p.sum()))])
    elif kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    if pixel_size is None:
        pixel_size = _loguniform(rng, ranges.pixel_size)
    elif not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of Å, got {pixel_size!r}")
    pixel_size = float(pixel_size)
    # Drawn first, so that switching the inversion on or off leaves every other draw alone.
    inverted = bool(rng.random() < ranges.inverted_fraction)

    probe = _draw_probe(rng, ranges, pixel_size)
    u = float(rng.uniform(*ranges.debye_waller))
    static = thermal = u / math.sqrt(2.0)  # u² split equally, as simulate() does
    render_probe = _with_blur(probe, thermal)
    scene = _Scene(shape, pixel_size, render_margin(render_probe, pixel_size) + 5.0 * static)

    _BUILDERS[kind](_Draw(rng, scene, ranges, names))

    columns = scene.ground_truth()
    if len(columns.weights):
        columns = dataclasses.replace(
            columns,
            positions=columns.positions
            + rng.normal(0.0, static / pixel_size, (len(columns.weights), 2)),
        )
    atoms_pos, atoms_w = scene.amorphous()
    everything = ColumnSet(
        positions=np.concatenate([columns.positions, atoms_pos]),
        weights=np.concatenate([columns.weights, atoms_w]),
    )
    if len(everything.weights):
        raw = render_columns(everything, shape, pixel_size, render_probe)
    else:
        raw = np.zeros(shape)  # vacuum: no probe kernel to compute
    image = raw / pixel_size**2  # weight per pixel -> weight density per Å²
    image = _diffuse(rng, image, pixel_size, ranges)
    image = _add_background(rng, image, pixel_size, ranges, vacuum=kind == "vacuum")
    label = scene.label()
    params = dict(scene.params, debye_waller=u)
    if inverted:
        image, contrast = _invert(rng, image, ranges)
        params["abf_contrast"] = contrast
        label += " (ABF-like)"
    return Specimen(
        image=np.maximum(image, 0.0).astype(np.float32),
        columns=columns.inside(shape),
        pixel_size=pixel_size,
        kind=kind,
        label=label,
        inverted=inverted,
        probe=probe,
        debye_waller=u,
        materials=tuple(dict.fromkeys(scene.materials)),
        params=params,
    )


# --------------------------------------------------------------------------- the scene


@dataclass(eq=False)
class _Columns:
    """Columns of one region in pixel coordinates, with what modifiers need to know."""

    positions: np.ndarray  # (N, 2) row, col
    weights: np.ndarray  # (N,) Σ Z^1.7 over the column
    host: np.ndarray  # (N,) Z^1.7 of one (average) atom of the column
    atoms: np.ndarray  # (N,) atoms in the column (occupancy-weighted)
    ctype: np.ndarray  # (N,) column of the 2D cell

    def take(self, keep: np.ndarray) -> _Columns:
        return _Columns(
            self.positions[keep], self.weights[keep], self.host[keep], self.atoms[keep],
            self.ctype[keep],
        )  # fmt: skip


class _Draw(NamedTuple):
    """What every specimen builder draws from and into (one builder per kind)."""

    rng: np.random.Generator
    scene: _Scene
    ranges: StructureRanges
    names: Sequence[str]


class _Scene:
    """Everything a builder puts into the field: regions of columns, amorphous atoms."""

    def __init__(self, shape: tuple[int, int], pixel_size: float, margin: float) -> None:
        self.shape = shape
        self.pixel_size = pixel_size
        self.margin = margin  # Å around the field from which light still reaches it
        self.regions: list[_Columns] = []
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

    def add_lattice(self, columns: _Columns, lattice: _Lattice, description: str | None) -> None:
        """Add a crystal's columns, its description (unless given already) and material."""
        self.add(columns)
        if description is not None:
            self.parts.append(description)
        if lattice.material:
            self.materials.append(lattice.material)

    def add(self, columns: _Columns) -> None:
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


# --------------------------------------------------------------------------- lattices


@dataclass(frozen=True, eq=False)
class _Lattice:
    cell: ProjectedCell
    name: str
    material: str | None
    two_dimensional: bool
    alloy: bool  # draw alloy disorder (bundled CIFs) or use the cell's weights as they are


@functools.cache
def _zone_cells(name: str) -> tuple[tuple[_Lattice, ...], tuple[_Lattice, ...]]:
    """(listed zones, extra low-index zones) of a bundled material, projected once."""
    material = get_material(name)
    crystal = load_material(name)
    listed = tuple(
        _Lattice(
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
            _Lattice(cell, f"{material.name} {zone_label(zone)}", material.name, False, True)
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
) -> _Lattice | None:
    candidates = [n for n in names if allow_2d or not get_material(n).two_dimensional]
    if not candidates:
        return None
    listed, extra = _zone_cells(candidates[int(rng.integers(len(candidates)))])
    pool = listed if (not extra or rng.random() < ranges.listed_zone_fraction) else extra
    return pool[int(rng.integers(len(pool)))]


_BRAVAIS = ("square", "rectangular", "hexagonal", "centred rectangular", "oblique")


def _bravais(rng: np.random.Generator, ranges: StructureRanges) -> tuple[np.ndarray, str]:
    """Two in-plane cell vectors (rows, Å) of a random 2D Bravais lattice, and its name."""
    kind = _BRAVAIS[int(rng.integers(len(_BRAVAIS)))]
    a = float(rng.uniform(*ranges.lattice_constant))
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
) -> np.ndarray:
    """Up to ``count`` fractional positions at least ``min_distance`` Å apart, periodic.

    The first sits at the origin; points are drawn by rejection and the motif is cut
    short when the cell is too crowded.
    """
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
    return np.asarray(points)


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


def _random_lattice(rng: np.random.Generator, ranges: StructureRanges) -> _Lattice:
    vectors, bravais = _bravais(rng, ranges)
    count = int(rng.integers(ranges.motif_columns[0], ranges.motif_columns[1] + 1))
    # Real crystals project to 0.1-0.3 columns per Å²; a motif that would crowd its
    # cell far beyond that stretches the cell instead.
    area = abs(np.linalg.det(vectors))
    if area / count < 3.0:
        vectors = vectors * math.sqrt(3.0 * count / area)
    frac = _motif(rng, vectors, count, ranges.min_column_distance)
    relative = np.exp(-rng.uniform(0.0, math.log(ranges.motif_weight_span), len(frac)))
    relative[int(rng.integers(len(frac)))] = 1.0  # the strongest column sets the span
    z_max = rng.uniform(14.0, 83.0)
    weights = relative * z_max**Z_EXPONENT_HAADF
    cell = _cell_from(vectors, frac, weights, repeat=rng.uniform(2.0, 4.5))
    name = f"random {bravais} lattice, {len(frac)} column{'s' if len(frac) > 1 else ''}/cell"
    return _Lattice(cell, name, None, False, False)


def _weak_strong_lattice(
    rng: np.random.Generator, ranges: StructureRanges, ratio: float
) -> _Lattice:
    """A lattice of equal strong columns plus a sublattice of weight ``ratio`` x strong.

    Templates: a honeycomb (Mo beside S₂ in monolayer MoS2 [0001]), a centred cell (Ti–O
    beside Sr in SrTiO3 [001], with or without the edge-centre columns), or a random
    Bravais lattice with 1–2 strong and 1–3 weak columns.
    """
    template = ("honeycomb", "centred", "random")[int(rng.integers(3))]
    if template == "random":
        vectors, _ = _bravais(rng, ranges)
        n_strong, n_weak = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        area = abs(np.linalg.det(vectors))
        if area / (n_strong + n_weak) < 3.0:
            vectors = vectors * math.sqrt(3.0 * (n_strong + n_weak) / area)
        frac = _motif(rng, vectors, n_strong + n_weak, ranges.min_column_distance)
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
    return _Lattice(cell, f"weak/strong {template}, ratio {ratio:.2f}", None, False, False)


def _any_lattice(
    rng: np.random.Generator,
    ranges: StructureRanges,
    names: Sequence[str],
    *,
    allow_2d: bool = True,
    random_fraction: float | None = None,
) -> _Lattice:
    share = ranges.random_lattice_fraction if random_fraction is None else random_fraction
    lattice = None
    if rng.random() >= share:
        lattice = _bundled_lattice(rng, ranges, names, allow_2d)
    return lattice if lattice is not None else _random_lattice(rng, ranges)


def _thickness(rng: np.random.Generator, lattice: _Lattice, ranges: StructureRanges) -> float:
    if lattice.two_dimensional:
        return lattice.cell.repeat  # one layer: tile_columns makes round(t / repeat) = 1
    if lattice.material is None and rng.random() < 0.15:
        # Made-up monolayers and few-atom columns: single atoms must look like atoms.
        return lattice.cell.repeat * int(rng.integers(1, 4))
    return _loguniform(rng, ranges.thickness)


def _tile(
    rng: np.random.Generator,
    scene: _Scene,
    lattice: _Lattice,
    thickness: float,
    *,
    vacancy_fraction: float = 0.0,
) -> _Columns:
    cell = lattice.cell
    columns = tile_columns(
        cell,
        scene.shape,
        scene.pixel_size,
        thickness=thickness,
        rotation=float(rng.uniform(0.0, 360.0)),
        shift=(float(rng.random()), float(rng.random())),
        vacancy_fraction=vacancy_fraction,
        alloy_disorder=lattice.alloy,
        margin=scene.margin,
        rng=rng,
    )
    ctype = np.asarray(columns.column_type, dtype=int)
    repeats = max(1, math.floor(thickness / cell.repeat + 0.5))  # as tile_columns counts
    atoms_per_repeat = np.array([max(float(np.sum(o)), 1e-9) for o in cell.site_occupancy])
    host = cell.weights / atoms_per_repeat
    return _Columns(
        positions=np.asarray(columns.positions, dtype=float),
        weights=np.asarray(columns.weights, dtype=float),
        host=host[ctype],
        atoms=atoms_per_repeat[ctype] * repeats,
        ctype=ctype,
    )


def _describe(lattice: _Lattice, thickness: float) -> str:
    if lattice.two_dimensional:
        return f"{lattice.name} monolayer"
    return f"{lattice.name}, {thickness:.0f} Å"


# --------------------------------------------------------------------------- modifiers


def _atom_vacancies(rng: np.random.Generator, cols: _Columns, fraction: float) -> _Columns:
    """Remove single atoms (monolayers): S₂ becomes S, a one-atom column disappears."""
    hit = rng.random(len(cols.weights)) < fraction
    weights = cols.weights.copy()
    weights[hit] -= cols.host[hit]
    atoms = cols.atoms - hit
    keep = atoms > 0.5
    out = _Columns(cols.positions, np.maximum(weights, 0.0), cols.host, atoms, cols.ctype)
    return out.take(keep)


def _dopants(
    rng: np.random.Generator,
    cols: _Columns,
    fraction: float,
    ranges: StructureRanges,
    monolayer: bool,
) -> np.ndarray:
    """Replace one atom in a share of the columns by a heavy dopant; returns their indices.

    Incoherent imaging adds the dopant's Z^1.7 less the host atom's to the column (as
    for single Sb atoms in Si columns, Voyles et al., Nature 416, 826 (2002)); the
    depth dependence of channelling is ignored.  In a monolayer any atom 8 or more
    above the host shows (Se in the S₂ columns of MoS2), so only the upper end of
    ``dopant_z`` applies there.
    """
    hit = np.flatnonzero(rng.random(len(cols.weights)) < fraction)
    if hit.size == 0:
        return hit
    host_z = cols.host[hit] ** (1.0 / Z_EXPONENT_HAADF)
    low = np.maximum(0 if monolayer else ranges.dopant_z[0], np.ceil(host_z) + 8)
    high = np.maximum(low, ranges.dopant_z[1])
    z = np.floor(rng.uniform(low, high + 1)).clip(max=high)
    cols.weights[hit] += z**Z_EXPONENT_HAADF - cols.host[hit]
    return hit


def _gradient(rng: np.random.Generator, scene: _Scene, cols: _Columns) -> float:
    """Scale the weights by a linear thickness ramp across the field; returns its low end."""
    low = float(rng.uniform(0.05, 0.5))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    direction = np.array([math.sin(angle), math.cos(angle)])
    along = (cols.positions - scene.centre) @ direction
    half = 0.5 * float(np.abs(np.asarray(scene.shape) * direction).sum())
    ramp = low + (1.0 - low) * np.clip((along + half) / (2.0 * half), 0.0, 1.0)
    cols.weights *= ramp
    return low


def _maybe_modify(
    rng: np.random.Generator,
    scene: _Scene,
    cols: _Columns,
    lattice: _Lattice,
    ranges: StructureRanges,
) -> _Columns:
    p = ranges.modifier_probability
    if rng.random() < p:
        fraction = float(rng.uniform(0.0, 0.03))
        if lattice.two_dimensional:
            cols = _atom_vacancies(rng, cols, fraction)
        else:
            cols = cols.take(rng.random(len(cols.weights)) >= fraction)
        scene.parts.append(f"{100 * fraction:.1f} % vacancies")
    if rng.random() < p:
        fraction = float(rng.uniform(*ranges.dopant_fraction))
        hit = _dopants(rng, cols, fraction, ranges, lattice.two_dimensional)
        scene.parts.append(_count(scene.inside(cols.positions[hit]).sum(), "dopant"))
    if rng.random() < p and not lattice.two_dimensional:
        low = _gradient(rng, scene, cols)
        scene.parts.append(f"thickness ramp {low:.2f}-1")
    return cols


# --------------------------------------------------------------------------- films


def _film(
    rng: np.random.Generator,
    scene: _Scene,
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
        uneven = _SmoothField(rng, scene, correlation=rng.uniform(20.0, 200.0))
        positions = positions[rng.random(count) < 1.0 - variation * uneven.at(positions)]
    z = np.asarray(zs)[rng.choice(len(zs), size=len(positions), p=np.asarray(fractions))]
    scene.films.append((positions, z.astype(float) ** Z_EXPONENT_HAADF))
    return f"{name} {thickness:.0f} Å"


def _maybe_support(
    rng: np.random.Generator, scene: _Scene, ranges: StructureRanges, probability: float
) -> None:
    if rng.random() < probability:
        scene.parts.append("on " + _film(rng, scene, _loguniform(rng, ranges.support_thickness)))


class _SmoothField:
    """A smooth random field over the field and its margin, uniform in [0, 1] at each point.

    White noise on a coarse grid (a quarter of the correlation length per cell) blurred
    by a Gaussian of the correlation length, mapped through the normal CDF with its
    known rms, 1 / (2 √π σ) for unit white noise blurred by a unit-sum Gaussian of σ
    cells, and read off by linear interpolation.  A field much smaller than the
    correlation length therefore sees a small variation, as it should.
    """

    _SIGMA_CELLS = 4.0

    def __init__(self, rng: np.random.Generator, scene: _Scene, correlation: float) -> None:
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


# --------------------------------------------------------------------------- geometry


def _half_plane(
    rng: np.random.Generator, scene: _Scene, share: tuple[float, float]
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """Signed distance (Å) to a random straight line, and the line's direction.

    The distance is negative on the side that covers about a share of the field drawn
    from ``share``.
    """
    angle = rng.uniform(0.0, 2.0 * math.pi)
    normal = np.array([math.sin(angle), math.cos(angle)])
    half = 0.5 * float(np.abs(np.asarray(scene.shape) * normal).sum())
    # A line at offset c from the centre leaves about (c + half) / (2 half) on its
    # negative side for a square field.
    offset = (2.0 * rng.uniform(*share) - 1.0) * half
    centre, px = scene.centre, scene.pixel_size

    def distance(points: np.ndarray) -> np.ndarray:
        return ((points - centre) @ normal - offset) * px

    return distance, np.array([-normal[1], normal[0]])


def _particle(
    rng: np.random.Generator, centre: np.ndarray, radius: float
) -> Callable[[np.ndarray], np.ndarray]:
    """Relative radius ρ (0 at the centre, 1 on the outline) of a disc or faceted particle.

    The outline is a disc or a star-shaped polygon of 5–9 facets; ρ = |p| / s, where s
    is where the ray from the centre through p crosses the outline.
    """
    if rng.random() < 0.4:
        return lambda points: np.linalg.norm(points - centre, axis=1) / radius
    n = int(rng.integers(5, 10))
    # Evenly spread, jittered vertex angles: no facet degenerates to a sliver.
    angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n) + rng.random()) * (2.0 * math.pi / n)
    angles = np.sort(angles % (2.0 * math.pi))
    r = radius * rng.uniform(0.85, 1.1, n)
    vertices = np.column_stack([r * np.sin(angles), r * np.cos(angles)])

    def rho(points: np.ndarray) -> np.ndarray:
        p = points - centre
        phi = np.arctan2(p[:, 0], p[:, 1]) % (2.0 * math.pi)
        i = np.searchsorted(angles, phi) - 1  # -1 wraps to the last vertex
        a, edge = vertices[i % n], vertices[(i + 1) % n] - vertices[i % n]
        # The ray s·u (u = p / |p|) meets the facet a + t·edge at s = (a × e) / (u × e).
        norm = np.linalg.norm(p, axis=1)
        u = p / np.maximum(norm, 1e-12)[:, None]
        u_cross_e = u[:, 0] * edge[:, 1] - u[:, 1] * edge[:, 0]
        a_cross_e = a[:, 0] * edge[:, 1] - a[:, 1] * edge[:, 0]
        s = np.abs(a_cross_e) / np.maximum(np.abs(u_cross_e), 1e-12)
        return norm / np.maximum(s, 1e-12)

    return rho


# --------------------------------------------------------------------------- builders


def _build_crystal(draw: _Draw, *, random_only: bool = False) -> None:
    rng, scene, ranges, names = draw
    lattice = (
        _random_lattice(rng, ranges)
        if random_only
        else _any_lattice(rng, ranges, names, random_fraction=0.0)
    )
    thickness = _thickness(rng, lattice, ranges)
    cols = _tile(rng, scene, lattice, thickness)
    scene.parts.append(_describe(lattice, thickness))
    cols = _maybe_modify(rng, scene, cols, lattice, ranges)
    scene.add_lattice(cols, lattice, None)
    scene.params["thickness"] = thickness
    _maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_random_lattice(draw: _Draw) -> None:
    _build_crystal(draw, random_only=True)


def _build_weak_strong(draw: _Draw) -> None:
    rng, scene, ranges, _ = draw
    ratio = _loguniform(rng, ranges.weak_ratio)
    lattice = _weak_strong_lattice(rng, ranges, ratio)
    thickness = _thickness(rng, lattice, ranges)
    scene.add(_tile(rng, scene, lattice, thickness))
    scene.parts.append(_describe(lattice, thickness))
    scene.params.update(weight_ratio=ratio, thickness=thickness)
    _maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_amorphous(draw: _Draw) -> None:
    rng, scene, ranges, _ = draw
    scene.parts.append(_film(rng, scene, _loguniform(rng, ranges.amorphous_thickness)))


def _build_vacuum(draw: _Draw) -> None:
    draw.scene.parts.append("vacuum")


def _build_adatoms(draw: _Draw) -> None:
    rng, scene, ranges, _ = draw
    scene.parts.append(_film(rng, scene, _loguniform(rng, ranges.amorphous_thickness), name="a-C"))
    density = _loguniform(rng, ranges.adatom_density)
    low, high = scene.bounds
    area = float(np.prod(high - low)) * scene.pixel_size**2
    count = int(rng.poisson(density * area))
    z = float(_ADATOM_Z[int(rng.integers(len(_ADATOM_Z)))])
    positions = low + rng.random((count, 2)) * (high - low)
    weight = np.full(count, z**Z_EXPONENT_HAADF)
    scene.add(_Columns(positions, weight, weight.copy(), np.ones(count), np.zeros(count, int)))
    scene.parts.append(f"single {gemmi.Element(int(z)).name} atoms, {density:.3f}/Å²")


def _build_nanoparticle(draw: _Draw) -> None:
    rng, scene, ranges, names = draw
    support = None
    if rng.random() < 0.85:
        support = "on " + _film(rng, scene, _loguniform(rng, ranges.support_thickness))
    field_size = min(scene.shape) * scene.pixel_size  # Å
    earlier: list[Callable[[np.ndarray], np.ndarray]] = []
    for index in range(int(rng.integers(1, 4))):
        # Particles of 1.5-12 nm diameter (later ones smaller); the outline must cross
        # the field, so a small particle lies inside it and a large one shows an edge.
        radius = _loguniform(rng, (8.0, 60.0)) / (1.0 + 0.4 * index)
        if radius < 0.4 * field_size:
            offset = rng.uniform(0.0, 0.4 * field_size - 0.5 * radius)
        else:
            offset = rng.uniform(radius - 0.4 * field_size, radius + 0.3 * field_size)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        centre = scene.centre + offset / scene.pixel_size * np.array(
            [math.sin(angle), math.cos(angle)]
        )
        rho_of = _particle(rng, centre, radius / scene.pixel_size)
        lattice = _any_lattice(rng, ranges, names, allow_2d=False)
        # Roughly spherical, somewhat flattened on its support: the central column is
        # 0.6-1 diameters long and the others follow the chord, sqrt(1 - ρ²).
        thickness = 2.0 * radius * rng.uniform(0.6, 1.0)
        cols = _tile(rng, scene, lattice, thickness)
        rho = rho_of(cols.positions)
        inside = rho < 1.0
        for other in earlier:
            inside &= other(cols.positions) >= 1.0  # an earlier particle lies on top
        cols = cols.take(inside)
        cols.weights *= np.sqrt(np.clip(1.0 - rho[inside] ** 2, 0.02, 1.0))
        earlier.append(rho_of)
        scene.add_lattice(cols, lattice, f"{lattice.name} particle {2 * radius / 10:.1f} nm")
    scene.parts.append(support or "in vacuum")


def _build_grain_boundary(draw: _Draw) -> None:
    rng, scene, ranges, names = draw
    first = _any_lattice(rng, ranges, names, allow_2d=False)
    # Mostly one material on both sides (a tilt or twist boundary), else an interface.
    second = first if rng.random() < 0.6 else _any_lattice(rng, ranges, names, allow_2d=False)
    thickness = _thickness(rng, first, ranges)
    side, tangent = _half_plane(rng, scene, (0.3, 0.7))
    amplitude = rng.uniform(0.0, 3.0)
    wavelength = rng.uniform(10.0, 60.0)
    phase = rng.uniform(0.0, 2.0 * math.pi)

    def distance(points: np.ndarray) -> np.ndarray:
        # A wavy boundary: facets and steps are the rule, not a ruler-straight line.
        along = (points @ tangent) * scene.pixel_size
        return side(points) + amplitude * np.sin(2.0 * math.pi * along / wavelength + phase)

    a = _tile(rng, scene, first, thickness)
    a = a.take(distance(a.positions) < 0)
    b = _tile(rng, scene, second, thickness * rng.uniform(0.8, 1.25))
    b = b.take(distance(b.positions) >= 0)
    if len(a.weights) and len(b.weights):
        # Two columns closer than a bond would be one atom on top of another.
        near, _ = cKDTree(a.positions).query(b.positions, distance_upper_bound=10.0)
        b = b.take(near * scene.pixel_size >= ranges.min_column_distance)
    scene.add(a)
    scene.add(b)
    scene.parts.append(f"grain boundary {_describe(first, thickness)} | {second.name}")
    scene.materials.extend(m for m in (first.material, second.material) if m)
    scene.params["thickness"] = thickness
    _maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_surface(draw: _Draw) -> None:
    rng, scene, ranges, names = draw
    lattice = _any_lattice(rng, ranges, names)
    thickness = _thickness(rng, lattice, ranges)
    distance, _ = _half_plane(rng, scene, (0.3, 0.8))
    cols = _tile(rng, scene, lattice, thickness)
    d = distance(cols.positions)
    roughness = rng.uniform(0.0, 4.0)
    # A rough edge: columns within `roughness` Å of the line survive at random.
    keep = (d < -roughness) | ((d < 0) & (rng.random(len(d)) < 0.5))
    cols = cols.take(keep)
    d = d[keep]
    description = f"edge of {_describe(lattice, thickness)}"
    if not lattice.two_dimensional and rng.random() < 0.5:
        wedge = rng.uniform(10.0, 80.0)  # Å over which a wedge thins to its edge
        cols.weights *= np.clip(-d / wedge, 0.1, 1.0)
        description += f", {wedge:.0f} Å wedge"
    scene.add_lattice(cols, lattice, description)
    scene.params["thickness"] = thickness
    if rng.random() < 0.5:
        scene.parts.append("on " + _film(rng, scene, _loguniform(rng, ranges.support_thickness)))
    else:
        scene.parts.append("vacuum beyond")


def _build_thickness_gradient(draw: _Draw) -> None:
    rng, scene, ranges, names = draw
    lattice = _any_lattice(rng, ranges, names, allow_2d=False)
    thickness = _thickness(rng, lattice, ranges)
    cols = _tile(rng, scene, lattice, thickness)
    low = _gradient(rng, scene, cols)
    scene.add_lattice(cols, lattice, f"{_describe(lattice, thickness)}, thickness ramp {low:.2f}-1")
    scene.params.update(thickness=thickness, ramp_low=low)
    _maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_vacancies(draw: _Draw) -> None:
    rng, scene, ranges, names = draw
    lattice = _any_lattice(rng, ranges, names)
    thickness = _thickness(rng, lattice, ranges)
    fraction = float(rng.uniform(*ranges.vacancy_fraction))
    if lattice.two_dimensional:
        cols = _atom_vacancies(rng, _tile(rng, scene, lattice, thickness), fraction)
    else:
        cols = _tile(rng, scene, lattice, thickness, vacancy_fraction=fraction)
    scene.add_lattice(
        cols, lattice, f"{_describe(lattice, thickness)}, {100 * fraction:.0f} % vacancies"
    )
    scene.params.update(thickness=thickness, vacancy_fraction=fraction)
    _maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_dopants(draw: _Draw) -> None:
    rng, scene, ranges, names = draw
    lattice = _any_lattice(rng, ranges, names)
    # Single dopants show in thin specimens: a heavy atom in a 50-atom column adds little.
    if lattice.two_dimensional:
        thickness = lattice.cell.repeat
    else:
        thickness = _loguniform(rng, (ranges.thickness[0], max(ranges.thickness[0], 150.0)))
    cols = _tile(rng, scene, lattice, thickness)
    fraction = float(rng.uniform(*ranges.dopant_fraction))
    hit = _dopants(rng, cols, fraction, ranges, lattice.two_dimensional)
    n = int(scene.inside(cols.positions[hit]).sum())
    scene.add_lattice(cols, lattice, f"{_describe(lattice, thickness)}, {_count(n, 'dopant')}")
    scene.params.update(thickness=thickness, dopants=n)
    _maybe_support(rng, scene, ranges, ranges.support_fraction)


_BUILDERS: dict[str, Callable[[_Draw], None]] = {
    "crystal": _build_crystal,
    "random_lattice": _build_random_lattice,
    "weak_strong": _build_weak_strong,
    "amorphous": _build_amorphous,
    "vacuum": _build_vacuum,
    "nanoparticle": _build_nanoparticle,
    "grain_boundary": _build_grain_boundary,
    "surface": _build_surface,
    "thickness_gradient": _build_thickness_gradient,
    "vacancies": _build_vacancies,
    "dopants": _build_dopants,
    "adatoms": _build_adatoms,
}


# --------------------------------------------------------------------------- imaging


def _draw_probe(rng: np.random.Generator, ranges: StructureRanges, pixel_size: float) -> Probe:
    """A random probe no blurrier than ``max_probe_pixels`` for this pixel size."""
    for _ in range(30):
        if rng.random() < ranges.gaussian_probe_fraction:
            probe: Probe = GaussianProbe(fwhm=float(rng.uniform(*ranges.gaussian_fwhm)))
            scale = probe.fwhm
        else:
            voltage = float(ranges.voltages_kv[int(rng.integers(len(ranges.voltages_kv)))])
            alpha = float(rng.uniform(*ranges.convergence_mrad)) * 1e-3
            wavelength = electron_wavelength(voltage)
            # Invert the aperture-edge phases π Δf α²/λ and (π/2) Cs α⁴/λ (Cs in Å).
            defocus = float(rng.uniform(*ranges.defocus_phase)) * wavelength / (math.pi * alpha**2)
            cs = float(rng.uniform(*ranges.cs_phase)) * 2.0 * wavelength / (math.pi * alpha**4)
            probe = AberratedProbe(
                voltage_kv=voltage,
                convergence_mrad=alpha * 1e3,
                defocus=defocus,
                cs_mm=cs * 1e-7,
                source_size=float(rng.uniform(*ranges.source_size)),
            )
            scale = wavelength / alpha
        if scale / pixel_size <= ranges.max_probe_pixels:
            return probe
    # The sharpest probe the ranges allow.
    return AberratedProbe(
        voltage_kv=max(ranges.voltages_kv),
        convergence_mrad=ranges.convergence_mrad[1],
        defocus=0.0,
        cs_mm=0.0,
        source_size=ranges.source_size[0],
    )


def _with_blur(probe: Probe, sigma: float) -> Probe:
    """The probe convolved with a Gaussian of rms ``sigma`` (Å).

    Gaussian blurs add in quadrature, and the source size of an AberratedProbe is
    exactly such a blur, so the thermal part of the Debye–Waller smearing folds into it.
    """
    if isinstance(probe, GaussianProbe):
        return GaussianProbe(fwhm=FWHM_PER_SIGMA * math.hypot(probe.sigma, sigma))
    source = math.hypot(probe.source_size / FWHM_PER_SIGMA, sigma) * FWHM_PER_SIGMA
    return dataclasses.replace(probe, source_size=source)


def _gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur by FFT over a mirrored border (no wrap-around of bright regions)."""
    pad = int(min(math.ceil(3.0 * sigma_px), max(image.shape)))
    padded = np.pad(image, pad, mode="symmetric")
    ky = sfft.fftfreq(padded.shape[0])
    kx = sfft.rfftfreq(padded.shape[1])
    transfer = np.exp(-2.0 * math.pi**2 * sigma_px**2 * (ky[:, None] ** 2 + kx[None, :] ** 2))
    out = sfft.irfft2(sfft.rfft2(padded) * transfer, s=padded.shape)
    return out[pad : pad + image.shape[0], pad : pad + image.shape[1]]


def _diffuse(
    rng: np.random.Generator, image: np.ndarray, pixel_size: float, ranges: StructureRanges
) -> np.ndarray:
    """Move a share of the signal into a smooth halo around where it came from.

    In a thick crystal the probe spreads with depth and thermal diffuse scattering lands
    between the columns, so real HAADF images have a background under crystals that
    follows the crystal (and fades beyond its edges); the total is conserved.
    """
    fraction = float(rng.uniform(*ranges.diffuse_fraction))
    sigma = float(rng.uniform(*ranges.diffuse_sigma)) / pixel_size
    if fraction <= 0.0 or not image.any():
        return image
    return (1.0 - fraction) * image + fraction * np.maximum(_gaussian_blur(image, sigma), 0.0)


def _add_background(
    rng: np.random.Generator,
    image: np.ndarray,
    pixel_size: float,
    ranges: StructureRanges,
    *,
    vacuum: bool,
) -> np.ndarray:
    """A smooth, slowly varying additive background (detector, contamination, tails)."""
    if vacuum:
        level = float(rng.uniform(*ranges.vacuum_background))
    else:
        level = float(rng.uniform(*ranges.background)) * float(image.mean())
    if level <= 0.0:
        return image
    scene = _Scene(image.shape, pixel_size, 0.0)  # only for the field's geometry
    smooth = _SmoothField(rng, scene, correlation=rng.uniform(30.0, 300.0)).image(image.shape)
    depth = rng.uniform(0.0, 0.8)
    return image + level * (1.0 - depth * smooth)


def _invert(
    rng: np.random.Generator, image: np.ndarray, ranges: StructureRanges
) -> tuple[np.ndarray, float]:
    """ABF-like contrast: a bright background with dark columns.

    Not an ABF simulation: the HAADF-like signal s is compressed, s^γ with γ in
    [0.5, 1] (ABF contrast grows far more slowly with Z, about Z^1/3; Findlay et al.,
    Ultramicroscopy 110, 903 (2010)), and subtracted from a bright level L:
    ``L (1 − c (s / s_max)^γ)``, with the contrast c drawn from ``abf_contrast``.
    """
    contrast = float(rng.uniform(*ranges.abf_contrast))
    gamma = float(rng.uniform(0.5, 1.0))
    peak = float(image.max())
    level = peak * float(rng.uniform(1.0, 2.0)) if peak > 0 else 1.0
    relative = (image / peak) ** gamma if peak > 0 else np.zeros_like(image)
    return level * (1.0 - contrast * relative), contrast


# --------------------------------------------------------------------------- helpers


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _loguniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))
