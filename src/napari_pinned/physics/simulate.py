"""Clean incoherent (HAADF-like) STEM images of a crystal along a zone axis, with ground truth.

:func:`simulate` projects a crystal (:mod:`~napari_pinned.physics.projection`), tiles its
columns over the field (:mod:`~napari_pinned.physics.tiling`), renders them with a probe
(:mod:`~napari_pinned.physics.rendering`, :mod:`~napari_pinned.physics.probe`) and maps
the result to an 8-bit-like range over an optional background.
:func:`random_simulation` does the same for a random bundled material under random
imaging conditions (:class:`~napari_pinned.physics.ranges.SimulationRanges`).

The probe and rendering names this module offered before 0.2 (``AberratedProbe``,
``render_columns``, ...) are still importable from it; they live in
:mod:`~napari_pinned.physics.probe` and :mod:`~napari_pinned.physics.rendering`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import fft as sfft

from napari_pinned._util.checks import (
    check_finite,
    check_fraction,
    check_non_negative,
    check_positive,
    check_shape,
)
from napari_pinned.physics.cif import read_cif
from napari_pinned.physics.defaults import (
    DEFAULT_MATERIAL,
    DEFAULT_PIXEL_SIZE,
    DEFAULT_SIZE,
    DEFAULT_THICKNESS,
)
from napari_pinned.physics.materials import (
    get_material,
    list_materials,
    load_material,
    training_materials,
)
from napari_pinned.physics.probe import (
    AberratedProbe,
    GaussianProbe,
    Probe,
    check_probe,
    probe_kernel,
)
from napari_pinned.physics.projection import Z_EXPONENT_HAADF, project
from napari_pinned.physics.ranges import SimulationRanges, pick, uniform
from napari_pinned.physics.rendering import (
    check_simulation_memory,
    displace,
    render,
    render_margin,
    split_debye_waller,
)
from napari_pinned.physics.structure import Crystal
from napari_pinned.physics.tiling import ColumnSet, tile_columns
from napari_pinned.physics.zones import zone_label

__all__ = [
    "COLUMN_MARKER_SIZE",
    "SimulationResult",
    "column_points",
    "matched_specimens",
    "random_simulation",
    "random_specimen",
    "simulate",
]

#: Diameter, in Å, of the ground-truth column markers (about a column's width at the
#: usual 0.05–0.2 Å/px: visible without hiding the column).
COLUMN_MARKER_SIZE = 0.5

# Correlation length (Å) of the optional amorphous-like background variation.
_BACKGROUND_CORRELATION = 6.0


@dataclass(frozen=True)
class SimulationResult:
    """A simulated image with its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        float32 image ``(rows, cols)`` in ``[floor, ceiling]``.
    columns : ColumnSet
        The columns whose positions lie in the field of view ``[-0.5, shape - 0.5)``,
        in pixel coordinates ``(row, col)``, where they were rendered (after the static
        Debye–Waller offsets), with their weights.
    pixel_size : float
        Å per pixel.
    material : str
        Crystal name.
    zone : tuple of int
        Zone axis as given (three- or four-index).
    """

    image: np.ndarray
    columns: ColumnSet
    pixel_size: float
    material: str
    zone: tuple[int, ...]

    def label(self) -> str:
        """A short description such as ``"SrTiO3 [001]"``."""
        return f"{self.material} {zone_label(self.zone)}"


def column_points(result: SimulationResult, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The ground-truth columns of ``result`` as napari Points data and layer settings.

    One marker style for every place that shows them (the generator dock, the sample
    data): open yellow circles of :data:`COLUMN_MARKER_SIZE` Å on the image's Å grid,
    with each column's ``weight`` as a feature (what column metrics read).

    Returns
    -------
    positions : ndarray, shape (n, 2)
        Column positions (row, col) in pixels.
    kwargs : dict
        ``name``, ``scale``, ``units``, ``size``, colours and ``features``.
    """
    positions = np.asarray(result.columns.positions, dtype=float).reshape(-1, 2)
    return positions, {
        "name": name,
        "scale": (result.pixel_size, result.pixel_size),
        "units": ("Å", "Å"),
        "features": {"weight": np.asarray(result.columns.weights, dtype=float)},
        "size": COLUMN_MARKER_SIZE / result.pixel_size,
        "face_color": "transparent",
        "border_color": "yellow",
        "border_width": 0.1,
    }


# ----------------------------------------------------------------------- simulation


def simulate(
    material: str | os.PathLike | Crystal = DEFAULT_MATERIAL,
    zone: Sequence[int] | None = None,
    *,
    shape: tuple[int, int] | int = (DEFAULT_SIZE, DEFAULT_SIZE),
    pixel_size: float = DEFAULT_PIXEL_SIZE,
    probe: Probe | None = None,
    z_exponent: float = Z_EXPONENT_HAADF,
    thickness: float = DEFAULT_THICKNESS,
    rotation: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    vacancy_fraction: float = 0.0,
    alloy_disorder: bool = True,
    debye_waller: float = 0.05,
    background: float = 0.0,
    floor: float = 0.0,
    ceiling: float = 255.0,
    seed: int | np.random.Generator | None = None,
    background_variation: float = 0.0,
) -> SimulationResult:
    """Simulate a clean incoherent (HAADF-like) STEM image of a crystal along a zone axis.

    Parameters
    ----------
    material : str, path or Crystal
        A bundled material (:func:`~napari_pinned.physics.materials.list_materials`), a
        CIF file (a string ending in ``.cif`` or any ``os.PathLike``) or a ``Crystal``.
    zone : sequence of int, optional
        Zone axis, 3 or 4 indices; default the material's first listed one, else [001].
    shape, pixel_size
        Image size in pixels (an int: square) and Å per pixel.
    probe : GaussianProbe or AberratedProbe, optional
        Default ``AberratedProbe()`` (its fields are the probe defaults).
    z_exponent, thickness, rotation, shift, vacancy_fraction, alloy_disorder
        The exponent n of the Z^n column weights, and the specimen as
        :func:`~napari_pinned.physics.tiling.tile_columns` takes it.
    debye_waller : float
        rms displacement u per axis in Å: half of u² seeded static column offsets (in
        the ground truth), half a blur (:mod:`~napari_pinned.physics.rendering`).
    background, background_variation, floor, ceiling : float
        The image is ``floor + (ceiling − floor) · (b · B + (1 − b) · raw / raw_max)``:
        b in [0, 1), B a smooth random (amorphous-like, 6 Å) field between
        ``1 − background_variation`` and 1.  The paper's images are 8-bit-like.
    seed : int or numpy.random.Generator, optional
        Drives alloy disorder, vacancies, Debye–Waller offsets and the background.

    Returns
    -------
    SimulationResult

    Raises
    ------
    ValueError
        A parameter out of range, an unknown material, an invalid CIF, or an image
        the memory cannot hold (refused before the work).
    """
    shape = check_shape(shape)
    pixel_size = _check_specimen(pixel_size, z_exponent, thickness, rotation, vacancy_fraction)
    output = _OutputRange(background, background_variation, floor, ceiling)
    probe = AberratedProbe() if probe is None else check_probe(probe)
    kernel, static = _kernel_that_fits(shape, pixel_size, probe, debye_waller)
    rng = np.random.default_rng(seed)
    crystal, zone_axis = _resolve_material(material, zone)
    columns = tile_columns(
        project(crystal, zone_axis, z_exponent=z_exponent),
        shape,
        pixel_size,
        thickness=thickness,
        rotation=rotation,
        shift=shift,
        vacancy_fraction=vacancy_fraction,
        alloy_disorder=alloy_disorder,
        margin=render_margin(probe, pixel_size, debye_waller),
        rng=rng,
    )
    if static > 0.0:
        columns = displace(columns, static / pixel_size, rng)
    image = output.apply(render(columns, shape, kernel), pixel_size, rng)
    return SimulationResult(image, columns.inside(shape), pixel_size, crystal.name, zone_axis)


def _check_specimen(
    pixel_size: float,
    z_exponent: float,
    thickness: float,
    rotation: float,
    vacancy_fraction: float,
) -> float:
    """The pixel size as a float, once the numbers describing the specimen are checked."""
    check_positive("pixel_size", pixel_size)
    check_finite("z_exponent", z_exponent)
    check_positive("thickness", thickness)
    check_finite("rotation", rotation)
    check_fraction("vacancy_fraction", vacancy_fraction, closed=True)
    return float(pixel_size)


def _kernel_that_fits(
    shape: tuple[int, int], pixel_size: float, probe: Probe, debye_waller: float
) -> tuple[np.ndarray, float]:
    """The probe kernel and the static Debye–Waller rms (Å), once the image is known to fit
    in memory."""
    check_non_negative("debye_waller", debye_waller)
    static, thermal = split_debye_waller(debye_waller)
    # A probe too wide for the pixels is refused here, with that reason, before the
    # memory check would refuse its canvas.
    kernel = probe_kernel(probe, pixel_size, thermal)
    check_simulation_memory(shape, pixel_size, probe, debye_waller=debye_waller)
    return kernel, static


@dataclass(frozen=True)
class _OutputRange:
    """How the raw image maps to ``[floor, ceiling]`` over a (varying) background."""

    background: float
    variation: float
    floor: float
    ceiling: float

    def __post_init__(self) -> None:
        check_fraction("background", self.background, closed=False)
        check_fraction("background_variation", self.variation, closed=True)
        check_finite("floor", self.floor)
        check_finite("ceiling", self.ceiling)
        if self.floor >= self.ceiling:
            raise ValueError(f"floor ({self.floor}) must be below ceiling ({self.ceiling})")

    def apply(self, raw: np.ndarray, pixel_size: float, rng: np.random.Generator) -> np.ndarray:
        peak = float(raw.max())
        signal = raw / peak if peak > 0 else np.zeros_like(raw)
        level = self.background
        if self.background > 0 and self.variation > 0:
            level = self.background * _background_field(raw.shape, pixel_size, self.variation, rng)
        span = self.ceiling - self.floor
        image = self.floor + span * (level + (1.0 - self.background) * signal)
        return image.astype(np.float32)


def _background_field(
    shape: tuple[int, int], pixel_size: float, variation: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random field in [1 − variation, 1]: low-pass filtered white noise."""
    noise = rng.standard_normal(shape)
    ky = sfft.fftfreq(shape[0], d=pixel_size)
    kx = sfft.rfftfreq(shape[1], d=pixel_size)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    smooth = sfft.irfft2(
        sfft.rfft2(noise) * np.exp(-2.0 * np.pi**2 * _BACKGROUND_CORRELATION**2 * k2), s=shape
    )
    span = float(smooth.max() - smooth.min())
    unit = (smooth - smooth.min()) / span if span > 0 else np.zeros(shape)
    return 1.0 - variation * unit


def _resolve_material(
    material: object, zone: Sequence[int] | None
) -> tuple[Crystal, tuple[int, ...]]:
    """The crystal and the zone axis: ``zone`` checked, else the crystal's default."""
    if isinstance(material, Crystal):
        crystal, default = material, _listed_zone(name=material.name)
    elif isinstance(material, os.PathLike) or (
        isinstance(material, str)
        and (material.lower().endswith(".cif") or Path(material).is_file())
    ):
        path = Path(material)
        crystal, default = read_cif(path), _listed_zone(path=path)
    elif isinstance(material, str):
        entry = get_material(material)
        crystal, default = load_material(material), tuple(int(i) for i in entry.zone_axes[0])
    else:
        raise ValueError(
            "material must be a material name, a CIF path or a Crystal, "
            f"got {type(material).__name__}"
        )
    return crystal, default if zone is None else _check_zone(zone)


def _listed_zone(*, name: str | None = None, path: Path | None = None) -> tuple[int, ...]:
    """Default zone of the bundled material with this name or CIF file, else [001]."""
    resolved = path.resolve() if path is not None else None
    for entry in list_materials():
        if (name is not None and entry.name == name) or (
            resolved is not None and Path(entry.cif).resolve() == resolved
        ):
            return tuple(int(i) for i in entry.zone_axes[0])
    return (0, 0, 1)


def _check_zone(zone: Sequence[int]) -> tuple[int, ...]:
    try:
        axis = tuple(int(i) for i in zone)
    except (TypeError, ValueError):
        raise ValueError(f"zone must be a sequence of integers, got {zone!r}") from None
    if len(axis) not in (3, 4) or any(a != b for a, b in zip(axis, zone, strict=True)):
        raise ValueError(f"zone must be three or four integers, got {zone!r}")
    if not any(axis):
        raise ValueError("zone must not be [000]")
    return axis


# ------------------------------------------------------------------ random simulations


def random_simulation(
    rng: np.random.Generator,
    shape: int | tuple[int, int] = 256,
    materials: Sequence[str] | None = None,
    *,
    pixel_size: float | None = None,
    ranges: SimulationRanges | None = None,
) -> SimulationResult:
    """Simulate one clean image of a random material under random imaging conditions.

    The same arguments, in the same order, as
    :func:`~napari_pinned.physics.specimens.random_structure`, which draws diverse
    scenes (films, particles, boundaries ...) rather than one perfect crystal.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice (material, zone axis, optics, specimen, seed).
    shape : int or (int, int)
        Image size in pixels.
    materials : sequence of str, optional
        Bundled material names (or CIF paths) to choose from, uniformly; default
        :func:`~napari_pinned.physics.materials.training_materials`.  A bundled
        material is shown along one of its listed zone axes, chosen uniformly.
    pixel_size : float, optional
        Use this pixel size (Å) instead of drawing one, e.g. to match a real image.
    ranges : SimulationRanges, optional
        Where the conditions are drawn from; default :class:`SimulationRanges`.

    Returns
    -------
    SimulationResult
    """
    names = training_materials() if materials is None else tuple(materials)
    if not names:
        raise ValueError("give at least one material")
    ranges = SimulationRanges() if ranges is None else ranges
    material = str(pick(rng, names))
    zone = None
    if not material.lower().endswith(".cif"):
        zone = pick(rng, get_material(material).zone_axes)
    if pixel_size is None:
        low, high = ranges.pixel_size
        # NumPy's log and exp, as drawn since 0.1 (math.exp differs in the last bit for
        # about one draw in ten), so that seeded training sets reproduce exactly.
        pixel_size = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    probe = _random_probe(rng, ranges)
    return simulate(
        material,
        zone,
        shape=shape,
        pixel_size=pixel_size,
        probe=probe,
        thickness=uniform(rng, ranges.thickness),
        rotation=uniform(rng, (0.0, 180.0)),
        shift=(uniform(rng, (0.0, 10.0)), uniform(rng, (0.0, 10.0))),
        vacancy_fraction=uniform(rng, ranges.vacancy_fraction),
        debye_waller=uniform(rng, ranges.debye_waller),
        background=uniform(rng, ranges.background),
        background_variation=uniform(rng, ranges.background_variation),
        seed=rng,
    )


def _random_probe(rng: np.random.Generator, ranges: SimulationRanges) -> Probe:
    if rng.random() < ranges.gaussian_probe_fraction:
        return GaussianProbe(fwhm=uniform(rng, ranges.gaussian_fwhm))
    return AberratedProbe(
        voltage_kv=float(pick(rng, ranges.voltages_kv)),
        convergence_mrad=uniform(rng, ranges.convergence_mrad),
        defocus=uniform(rng, ranges.defocus),
        source_size=uniform(rng, ranges.source_size),
    )


def random_specimen(
    rng: np.random.Generator,
    materials: Sequence[str],
    shape: tuple[int, int] | int = 256,
    ranges: SimulationRanges | None = None,
    pixel_size: float | None = None,
) -> SimulationResult:
    """Deprecated alias of :func:`random_simulation` with the 0.1 argument order.

    ``random_specimen(rng, materials, shape, ranges, pixel_size)`` is
    ``random_simulation(rng, shape, materials, pixel_size=..., ranges=...)``; it warns
    and goes in 0.3.  (It returns a :class:`SimulationResult`, not a
    :class:`~napari_pinned.physics.specimens.Specimen`: the name misled.)
    """
    warnings.warn(
        "random_specimen(rng, materials, shape, ...) is now "
        "random_simulation(rng, shape, materials, ...); random_specimen goes in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return random_simulation(rng, shape, materials, pixel_size=pixel_size, ranges=ranges)


def matched_specimens(
    material: str,
    pixel_size: float,
    count: int = 12,
    shape: int = 256,
    seed: int = 0,
    ranges: SimulationRanges | None = None,
) -> np.ndarray:
    """Clean training images of one material sampled like a given micrograph.

    ``count`` random simulations (:func:`random_simulation`: zone axis among the
    material's usual ones, thickness, rotation, probe, vacancies, background) at
    ``pixel_size``, for fine-tuning a model on "images like this one".

    Returns
    -------
    numpy.ndarray
        ``(count, shape, shape)`` float32 stack.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    images = [
        random_simulation(rng, shape, [material], pixel_size=pixel_size, ranges=ranges).image
        for _ in range(count)
    ]
    return np.stack(images).astype(np.float32, copy=False)
