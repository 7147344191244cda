"""Where the random generators draw from: their ranges, and the draws themselves.

:class:`SimulationRanges` serves
:func:`napari_pinned.physics.simulate.random_simulation` (one bundled crystal under
random imaging conditions); :class:`StructureRanges` serves
:func:`napari_pinned.physics.specimens.random_structure` (diverse scenes: lattices,
films, particles, boundaries ...).  Ranges are ``(low, high)`` pairs; :func:`uniform`,
:func:`loguniform` and :func:`pick` are the draws both generators make from them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from napari_pinned._util.checks import check_fraction

__all__ = [
    "DEFAULT_KIND_PROBABILITIES",
    "KINDS",
    "SimulationRanges",
    "SpecimenRanges",
    "StructureRanges",
    "loguniform",
    "pick",
    "uniform",
]

_T = TypeVar("_T")

#: Every kind :func:`~napari_pinned.physics.specimens.random_structure` can draw.
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


# --------------------------------------------------------------------------- draws


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A number drawn uniformly from ``[low, high)``."""
    return float(rng.uniform(*bounds))


def loguniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A number drawn log-uniformly from ``[low, high)`` (both positive)."""
    low, high = bounds
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def pick(rng: np.random.Generator, options: Sequence[_T]) -> _T:
    """One of ``options``, drawn uniformly (the same draw as ``rng.choice``)."""
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class SimulationRanges:
    """Ranges from which :func:`~napari_pinned.physics.simulate.random_simulation` draws
    the imaging conditions.

    The defaults span what an aberration-corrected STEM records of a crystalline
    specimen at atomic resolution: 0.05–0.2 Å/px (log-uniform), 60–400 Å thick, any
    in-plane rotation, up to 3 % vacancies, rms displacements of 0.03–0.10 Å, a
    background up to 25 % of the range, and either an aberrated probe (200 or 300 kV,
    18–30 mrad, ±40 Å defocus, 0.2–0.7 Å source) or, one time in four, a Gaussian probe
    of 0.6–1.2 Å FWHM as in the paper.
    """

    pixel_size: tuple[float, float] = (0.05, 0.2)
    thickness: tuple[float, float] = (60.0, 400.0)
    vacancy_fraction: tuple[float, float] = (0.0, 0.03)
    debye_waller: tuple[float, float] = (0.03, 0.10)
    background: tuple[float, float] = (0.0, 0.25)
    background_variation: tuple[float, float] = (0.0, 0.4)
    convergence_mrad: tuple[float, float] = (18.0, 30.0)
    defocus: tuple[float, float] = (-40.0, 40.0)
    source_size: tuple[float, float] = (0.2, 0.7)
    gaussian_fwhm: tuple[float, float] = (0.6, 1.2)
    gaussian_probe_fraction: float = 0.25
    voltages_kv: tuple[float, ...] = (200.0, 300.0)

    def __post_init__(self) -> None:
        _check_pairs(self, skip=("voltages_kv",))
        _check_positive_lows(self, ("pixel_size",))
        _check_voltages(self.voltages_kv)
        check_fraction("gaussian_probe_fraction", self.gaussian_probe_fraction, closed=True)


#: The name of :class:`SimulationRanges` before 0.2, kept as an alias.
SpecimenRanges = SimulationRanges


@dataclass(frozen=True)
class StructureRanges:
    """Where :func:`~napari_pinned.physics.specimens.random_structure` draws its specimens
    and imaging conditions from.

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
        :func:`napari_pinned.physics.rendering.render_columns`).
    voltages_kv : tuple of float
        Accelerating voltages, one drawn uniformly (the instruments' usual settings).
    convergence_mrad : (float, float)
        Aberrated probe: convergence semi-angle α, mrad.
    defocus_phase, cs_phase : (float, float)
        Aberrated probe: the phase (rad) that defocus and residual Cs add at the edge of
        the aperture, ``π Δf α² / λ`` and ``(π/2) Cs α⁴ / λ`` (the terms of χ in
        :class:`~napari_pinned.physics.probe.AberratedProbe`).  Given as phases because
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
        _check_pairs(self, skip=("kind_probabilities", "voltages_kv"))
        _check_positive_lows(self, _POSITIVE_STRUCTURE_RANGES)
        _check_voltages(self.voltages_kv)
        for name in (
            "gaussian_probe_fraction",
            "listed_zone_fraction",
            "random_lattice_fraction",
            "support_fraction",
            "modifier_probability",
            "inverted_fraction",
        ):
            check_fraction(name, getattr(self, name), closed=True)
        for name in ("vacancy_fraction", "dopant_fraction", "diffuse_fraction", "abf_contrast"):
            low, high = getattr(self, name)
            if low < 0 or high > 1 or (name == "abf_contrast" and high >= 1):
                raise ValueError(f"{name} must lie in [0, 1), got {(low, high)}")
        if self.motif_columns[0] < 1:
            raise ValueError("motif_columns must start at 1 or more")
        if self.motif_weight_span < 1 or self.max_probe_pixels <= 0:
            raise ValueError("motif_weight_span must be >= 1 and max_probe_pixels > 0")
        _check_kinds(self.kind_probabilities)


# --------------------------------------------------------------------------- checks

_POSITIVE_STRUCTURE_RANGES = (
    "pixel_size",
    "thickness",
    "convergence_mrad",
    "lattice_constant",
    "weak_ratio",
    "amorphous_thickness",
    "support_thickness",
    "adatom_density",
    "diffuse_sigma",
)


def _check_pairs(ranges: Any, skip: Sequence[str]) -> None:
    """Every tuple field but those in ``skip`` must be a finite ``(low, high)`` pair."""
    for f in dataclasses.fields(ranges):
        value = getattr(ranges, f.name)
        if f.name in skip or not isinstance(value, tuple):
            continue
        if not (len(value) == 2 and all(math.isfinite(v) for v in value) and value[0] <= value[1]):
            raise ValueError(f"{f.name} must be a (low, high) pair with low <= high")


def _check_positive_lows(ranges: Any, names: Sequence[str]) -> None:
    for name in names:
        if getattr(ranges, name)[0] <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(ranges, name)}")


def _check_voltages(voltages: tuple[float, ...]) -> None:
    if not voltages or min(voltages) <= 0:
        raise ValueError("voltages_kv must hold at least one positive voltage")


def _check_kinds(kind_probabilities: tuple[tuple[str, float], ...]) -> None:
    kinds = dict(kind_probabilities)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; kinds are {', '.join(KINDS)}")
    if any(p < 0 or not math.isfinite(p) for p in kinds.values()) or sum(kinds.values()) <= 0:
        raise ValueError("kind_probabilities must be non-negative with a positive sum")
