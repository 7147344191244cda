"""Diverse, realistic clean HAADF-STEM specimens with ground truth, for training and benchmarks.

A denoiser trained only on perfect crystals learns a lattice prior: it erases weak
sublattices (Ti–O beside Sr, S₂ beside Mo) and paints lattice texture onto amorphous
carbon.  :func:`random_structure` draws the *expected* HAADF signal (no noise) of the
scenes a microscopist actually records, each with the positions of its atomic columns:

* bundled crystals (:mod:`napari_pinned.physics.materials`) along their usual and other
  low-index zone axes; monolayers (MoS2, WSe2, hBN, graphene) one layer thick;
* random 2D Bravais lattices with random motifs of 1–5 columns whose weights span
  ~20×, so that no particular lattice can be learned;
* strong lattices with a much weaker sublattice (weight ratio 0.05–0.5);
* amorphous films (random atoms; a-C, a-SiN, a-SiO2) and single heavy atoms on them,
  vacuum;
* nanoparticles on amorphous support, grain boundaries, surfaces and edges, thickness
  gradients, vacancies, single heavy dopant atoms in columns;
* optionally an ABF-like inverted contrast (flagged).

Each kind is built in a :class:`~napari_pinned.physics.scene.Scene` by its builder in
:mod:`~napari_pinned.physics.specimen_kinds`, from the lattices of
:mod:`~napari_pinned.physics.lattices`; the ranges it draws from are a
:class:`~napari_pinned.physics.ranges.StructureRanges`.

Intensities are physical within and across images: the image is the column weight
density ``Σ Z^1.7`` per Å² (Pennycook & Jesson, Ultramicroscopy 37, 14 (1991); see
:mod:`napari_pinned.physics.projection`) blurred by the probe, so a uniform film of areal
weight density D reads D, an amorphous carbon film is one to two orders of magnitude
weaker per area than a 20 nm crystal, and vacuum is 0 plus at most a small background.
Any overall scale (the detector's efficiency, the dose) is left to the noise model.

Rendering is :func:`napari_pinned.physics.rendering.render_columns` (incoherent imaging:
probe ⊛ weighted points) with probes from
:class:`~napari_pinned.physics.probe.AberratedProbe` or
:class:`~napari_pinned.physics.probe.GaussianProbe`.  The approximations are the usual
ones of incoherent HAADF simulation: no channelling (column weight ∝ thickness), no
depth-dependent probe spreading beyond a smooth "diffuse" redistribution of part of the
signal, and projected (2D Poisson) positions for amorphous atoms.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft

from napari_pinned._util.checks import check_count, check_shape
from napari_pinned.physics.materials import (
    get_material,
    held_out_materials,
    training_materials,
)
from napari_pinned.physics.probe import (
    AberratedProbe,
    GaussianProbe,
    Probe,
    blurred,
    electron_wavelength,
)
from napari_pinned.physics.ranges import (
    KINDS,
    StructureRanges,
    loguniform,
    pick,
    uniform,
)
from napari_pinned.physics.rendering import (
    displace,
    render_columns,
    render_margin,
    split_debye_waller,
)
from napari_pinned.physics.scene import Scene, SmoothField
from napari_pinned.physics.specimen_kinds import BUILDERS, Draw
from napari_pinned.physics.tiling import ColumnSet

__all__ = [
    "BENCHMARK_SEED_START",
    "Specimen",
    "random_structure",
    "structure_pool",
]

#: Seeds of held-out benchmark specimens start here; training pools use seeds below it.
#: Random lattices, films and geometry come from the seed, so disjoint seed ranges give
#: benchmark structures the training pool never held.
BENCHMARK_SEED_START = 1_000_000_000


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


# --------------------------------------------------------------------------- entry points


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

    The same arguments, in the same order, as
    :func:`~napari_pinned.physics.simulate.random_simulation` (one perfect crystal),
    plus ``kind``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice; equal generator states give identical specimens.
    shape : int or (int, int)
        Image size in pixels.
    materials : sequence of str, optional
        Bundled materials the crystal kinds choose from (default
        :func:`~napari_pinned.physics.materials.training_materials`).  Empty: every
        crystal is a random lattice.
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
    kind = _draw_kind(rng, ranges) if kind is None else _check_kind(kind)
    if pixel_size is None:
        pixel_size = loguniform(rng, ranges.pixel_size)
    pixel_size = _check_pixel_size(pixel_size)
    # Drawn first, so that switching the inversion on or off leaves every other draw alone.
    inverted = bool(rng.random() < ranges.inverted_fraction)
    probe = _draw_probe(rng, ranges, pixel_size)
    u = uniform(rng, ranges.debye_waller)
    static, thermal = split_debye_waller(u)
    render_probe = blurred(probe, thermal)
    scene = Scene(shape, pixel_size, render_margin(render_probe, pixel_size) + 5.0 * static)
    BUILDERS[kind](Draw(rng, scene, ranges, names))
    columns = scene.ground_truth()
    if len(columns.weights):
        columns = displace(columns, static / pixel_size, rng)
    image = _image(rng, scene, columns, render_probe, ranges, vacuum=kind == "vacuum")
    label, params = scene.label(), dict(scene.params, debye_waller=u)
    if inverted:
        image, params["abf_contrast"] = _invert(rng, image, ranges)
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


def structure_pool(
    count: int,
    shape: int | tuple[int, int] = 256,
    *,
    split: str = "train",
    seed: int = 0,
    ranges: StructureRanges | None = None,
    workers: int = 0,
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
    workers : int
        0: draw the specimens one after the other from one generator.  ≥ 1: draw
        specimen i from its own generator (seeded with the split's seed and i) in
        that many processes; the pool is then the same for any number of workers,
        but not the one of ``workers=0``.

    Returns
    -------
    list of Specimen
    """
    workers = check_count("workers", workers)
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
    if workers == 0:
        return [random_structure(rng, shape, materials, ranges=ranges) for _ in range(count)]
    base = seed if split == "train" else BENCHMARK_SEED_START + seed
    draw = functools.partial(_seeded_structure, base, shape, materials, ranges)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(draw, range(count), chunksize=max(1, count // (4 * workers))))


def _seeded_structure(
    base: int, shape, materials, ranges: StructureRanges | None, index: int
) -> Specimen:
    """Specimen ``index`` of a pool drawn item by item (``structure_pool(workers=...)``)."""
    return random_structure(np.random.default_rng([base, index]), shape, materials, ranges=ranges)


def _draw_kind(rng: np.random.Generator, ranges: StructureRanges) -> str:
    kinds, weights = zip(*ranges.kind_probabilities, strict=True)
    p = np.asarray(weights, dtype=float)
    return str(kinds[int(rng.choice(len(kinds), p=p / p.sum()))])


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    return kind


def _check_pixel_size(pixel_size: float) -> float:
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of Å, got {pixel_size!r}")
    return float(pixel_size)


# --------------------------------------------------------------------------- imaging


def _draw_probe(rng: np.random.Generator, ranges: StructureRanges, pixel_size: float) -> Probe:
    """A random probe no blurrier than ``max_probe_pixels`` for this pixel size."""
    for _ in range(30):
        if rng.random() < ranges.gaussian_probe_fraction:
            probe: Probe = GaussianProbe(fwhm=uniform(rng, ranges.gaussian_fwhm))
            scale = probe.fwhm
        else:
            voltage = float(pick(rng, ranges.voltages_kv))
            alpha = uniform(rng, ranges.convergence_mrad) * 1e-3
            wavelength = electron_wavelength(voltage)
            # Invert the aperture-edge phases π Δf α²/λ and (π/2) Cs α⁴/λ (Cs in Å).
            defocus = uniform(rng, ranges.defocus_phase) * wavelength / (math.pi * alpha**2)
            cs = uniform(rng, ranges.cs_phase) * 2.0 * wavelength / (math.pi * alpha**4)
            probe = AberratedProbe(
                voltage_kv=voltage,
                convergence_mrad=alpha * 1e3,
                defocus=defocus,
                cs_mm=cs * 1e-7,
                source_size=uniform(rng, ranges.source_size),
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


def _image(
    rng: np.random.Generator,
    scene: Scene,
    columns: ColumnSet,
    probe: Probe,
    ranges: StructureRanges,
    *,
    vacuum: bool,
) -> np.ndarray:
    """The scene's columns and amorphous atoms rendered as weight per Å², with the
    diffuse halo and the background."""
    atoms_pos, atoms_w = scene.amorphous()
    everything = ColumnSet(
        positions=np.concatenate([columns.positions, atoms_pos]),
        weights=np.concatenate([columns.weights, atoms_w]),
    )
    shape, pixel_size = scene.shape, scene.pixel_size
    if len(everything.weights):
        raw = render_columns(everything, shape, pixel_size, probe)
    else:
        raw = np.zeros(shape)  # vacuum: no probe kernel to compute
    image = raw / pixel_size**2  # weight per pixel -> weight density per Å²
    image = _diffuse(rng, image, pixel_size, ranges)
    return _add_background(rng, image, pixel_size, ranges, vacuum=vacuum)


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
    fraction = uniform(rng, ranges.diffuse_fraction)
    sigma = uniform(rng, ranges.diffuse_sigma) / pixel_size
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
        level = uniform(rng, ranges.vacuum_background)
    else:
        level = uniform(rng, ranges.background) * float(image.mean())
    if level <= 0.0:
        return image
    scene = Scene(image.shape, pixel_size, 0.0)  # only for the field's geometry
    smooth = SmoothField(rng, scene, correlation=rng.uniform(30.0, 300.0)).image(image.shape)
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
    contrast = uniform(rng, ranges.abf_contrast)
    gamma = float(rng.uniform(0.5, 1.0))
    peak = float(image.max())
    level = peak * float(rng.uniform(1.0, 2.0)) if peak > 0 else 1.0
    relative = (image / peak) ** gamma if peak > 0 else np.zeros_like(image)
    return level * (1.0 - contrast * relative), contrast
