"""Incoherent (HAADF-like) STEM image simulation from projected atomic columns.

In the incoherent-imaging approximation a HAADF image is the probe intensity
convolved with the object function, here a sum of weighted points at the projected
column positions: ``image = P ⊛ Σ_c w_c δ(r − r_c)`` with ``w_c = Σ Z^1.7`` over the
atoms in the column (see :mod:`napari_pinned.physics.crystal`).  The paper builds its clean
training images the same way with a Gaussian standing in for the beam ("Gaussian
filtering was used to simulate the broadening effects of an electron beam"); besides
:class:`GaussianProbe` we offer an aberration-limited :class:`AberratedProbe`.

How the convolution is done, and why:

* Column weights are deposited at their sub-pixel positions onto a padded canvas with
  one :func:`numpy.bincount`, using separable 6-point Lagrange interpolation weights
  (exact total, centroid and second moments; far more accurate than bilinear weights,
  whose position-dependent blur changes peak heights by a few % at 0.1 Å/px), then
  convolved with the probe kernel by real FFTs.  The pad covers the kernel's
  half-width and the stencil, so columns in the margin around the field contribute and
  nothing wraps around from the far side; the canvas is cropped back to the field.
* The kernel is the probe intensity integrated over each pixel's area (what a detector
  records while the beam sweeps the pixel; for pixels much smaller than the probe it is
  the same as point sampling).  The integration is exact (erf differences for the
  Gaussian probe, a box transfer function in Fourier space for the aberrated probe), so
  coarse pixels do not alias the probe.
* The aberrated probe is computed on an internal grid chosen from the optics, not from
  the image: fine enough that ``|ψ|²`` (band limit 2α/λ) is sampled without aliasing,
  and wide enough that the aperture disc spans many k-samples and the probe tails do
  not wrap.  Its spectrum (the optical transfer function) is then evaluated at the
  image's pixel positions by a direct, band-limited Fourier sum, which is exact for a
  band-limited intensity and works for any pixel size.
* The kernel is cut at a radius that holds the whole probe (Airy tails to 8 λ/α, plus
  the geometric spread of defocus and Cs, plus 5 σ of the Gaussian blurs) and then
  renormalised to unit sum, so every column deposits exactly its weight.

Pixel coordinates are ``(row, col)`` with pixel centres at integers; the field of
view is ``[-0.5, shape - 0.5)`` along each axis.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy.special import erf

from napari_pinned._util.checks import check_shape
from napari_pinned.physics.crystal import (
    Z_EXPONENT_HAADF,
    ColumnSet,
    Crystal,
    get_material,
    list_materials,
    load_material,
    project,
    read_cif,
    tile_columns,
    zone_label,
)

__all__ = [
    "AberratedProbe",
    "GaussianProbe",
    "Probe",
    "SimulationResult",
    "SpecimenRanges",
    "column_points",
    "electron_wavelength",
    "matched_specimens",
    "probe_fwhm",
    "probe_image",
    "random_specimen",
    "render_columns",
    "render_margin",
    "simulate",
]

#: FWHM of a Gaussian in units of its standard deviation, 2·sqrt(2·ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

# Relativistic electron wavelength: λ = h c / sqrt(E (2 m c² + E)).  hc in keV·Å and
# the electron rest energy in keV are the CODATA 2018 values.
_HC_KEV_ANGSTROM = 12.3984244
_ELECTRON_REST_KEV = 510.99906

# Radius, in units of λ/α, out to which the aberration-free probe's Airy tails are
# kept.  The encircled energy of an Airy pattern misses ≈ 1/(π² r α/λ) beyond r, so
# about 1 % of the intensity lies outside; it is put back by renormalising.
_AIRY_RADII = 8.0
# Gaussians (probe, source size, thermal smearing) are cut at this many σ.
_GAUSS_SIGMAS = 7.0
# Kernels are tapered to zero (raised cosine) from this fraction of their radius on,
# so that they are smooth: a hard edge leaves ripples of the interpolating deposition
# of order 1e-6 of the peak, which clipping at zero would turn into a bias.
_TAPER_START = 0.75
# Number of k-samples across the aperture radius on the internal probe grid.  Fewer
# make the disc visibly polygonal and shift the probe width by more than 0.5 %.
_APERTURE_SAMPLES = 64
# Internal probe-grid step as a fraction of the Nyquist step 1/(4 k_max) of |ψ|².
_NYQUIST_MARGIN = 0.95
# Largest internal probe grid and kernel (pixels per side); beyond that the probe is
# too spread for the pixel size and the caller is asked to change the optics.
_MAX_PROBE_GRID = 2048
_MAX_KERNEL = 2049
# Points per axis of the Lagrange deposition stencil (even: centred on the cell).
_STENCIL = 6
# Correlation length (Å) of the optional amorphous-like background variation.
_BACKGROUND_CORRELATION = 6.0


# --------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class GaussianProbe:
    """A Gaussian probe intensity, the paper's "Gaussian filtering" of the lattice.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum of the probe intensity in Å.
    """

    fwhm: float = 0.8

    def __post_init__(self) -> None:
        _check_positive("fwhm", self.fwhm)

    @property
    def sigma(self) -> float:
        """Standard deviation of the intensity in Å."""
        return self.fwhm / FWHM_PER_SIGMA


@dataclass(frozen=True)
class AberratedProbe:
    """An aberration-limited probe formed by a round condenser aperture.

    The probe wave is ``ψ = IFFT[A(k) · exp(−i χ(k))]`` with the aperture ``A(k) = 1``
    for ``|k| λ ≤ α`` and the aberration phase

        χ(k) = π λ Δf k² + (π/2) Cs λ³ k⁴.

    Sign convention: Δf and Cs enter χ with the same sign, so ``Δf > 0`` is overfocus
    (the opposite sign to Kirkland's χ = π λ k² (Cs λ² k²/2 − Δf), whose positive Δf is
    underfocus): a positive Δf adds to a positive Cs and a negative Δf partly balances
    it.  With Cs = 0 the sign of Δf does not change the probe intensity.  ``|ψ|²`` is
    normalised to unit sum and blurred by a Gaussian of
    FWHM ``source_size`` for the finite (incoherent) source.

    Parameters
    ----------
    voltage_kv : float
        Accelerating voltage in kV.
    convergence_mrad : float
        Convergence semi-angle α in mrad.
    defocus : float
        Defocus Δf in Å (see the sign convention above).
    cs_mm : float
        Spherical aberration coefficient Cs in mm.
    source_size : float
        FWHM in Å of the Gaussian effective source; 0 for a point source.
    """

    voltage_kv: float = 200.0
    convergence_mrad: float = 22.0
    defocus: float = 0.0
    cs_mm: float = 0.0
    source_size: float = 0.3

    def __post_init__(self) -> None:
        _check_positive("voltage_kv", self.voltage_kv)
        _check_positive("convergence_mrad", self.convergence_mrad)
        if self.convergence_mrad >= 200.0:
            raise ValueError(
                f"convergence_mrad must be below 200 mrad, got {self.convergence_mrad}"
            )
        _check_finite("defocus", self.defocus)
        _check_finite("cs_mm", self.cs_mm)
        _check_non_negative("source_size", self.source_size)

    @property
    def wavelength(self) -> float:
        """Electron wavelength λ in Å."""
        return electron_wavelength(self.voltage_kv)

    @property
    def semi_angle(self) -> float:
        """Convergence semi-angle α in rad."""
        return self.convergence_mrad * 1e-3

    @property
    def k_max(self) -> float:
        """Aperture cut-off α/λ in 1/Å."""
        return self.semi_angle / self.wavelength


Probe = GaussianProbe | AberratedProbe


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV.

    ``λ = 12.3984244 / sqrt(E (2 · 510.99906 + E))`` with E in keV (hc and the electron
    rest energy from CODATA 2018); 0.02508 Å at 200 kV.
    """
    _check_positive("voltage_kv", voltage_kv)
    e = float(voltage_kv)
    return _HC_KEV_ANGSTROM / math.sqrt(e * (2.0 * _ELECTRON_REST_KEV + e))


def probe_image(probe: Probe, shape: tuple[int, int], pixel_size: float) -> np.ndarray:
    """The probe intensity as an image, centred on pixel ``(shape[0]//2, shape[1]//2)``.

    Each pixel holds the intensity integrated over its area, as used for rendering.
    Parts of the probe outside ``shape`` are dropped and the result is renormalised
    to unit sum (float64).
    """
    shape = check_shape(shape)
    _check_positive("pixel_size", pixel_size)
    kernel = _probe_kernel(_check_probe(probe), float(pixel_size), 0.0)
    h = kernel.shape[0] // 2
    out = np.zeros(shape, dtype=np.float64)
    centre = (shape[0] // 2, shape[1] // 2)
    dst, src = [], []
    for axis in range(2):
        lo = max(centre[axis] - h, 0)
        hi = min(centre[axis] + h + 1, shape[axis])
        dst.append(slice(lo, hi))
        src.append(slice(lo - centre[axis] + h, hi - centre[axis] + h))
    out[tuple(dst)] = kernel[tuple(src)]
    return out / out.sum()


def probe_fwhm(probe: Probe, pixel_size: float = 0.02) -> float:
    """Measured FWHM (Å) of the probe intensity, for display.

    The half-maximum crossings around the maximum of the profile through the probe's
    centre are found by linear interpolation on a grid of ``pixel_size``; for the
    default 0.02 Å the pixel integration changes the result by well under 0.1 %.
    """
    _check_positive("pixel_size", pixel_size)
    probe = _check_probe(probe)
    if isinstance(probe, GaussianProbe):
        profile = _gaussian_profile(probe.sigma, float(pixel_size))
    else:
        h = _kernel_half_width(probe, float(pixel_size), 0.0)
        xs = np.arange(-h, h + 1) * float(pixel_size)
        profile = _aberrated_intensity(probe, 0.0, float(pixel_size), np.zeros(1), xs)[0]
    return _half_max_width(profile) * float(pixel_size)


# ------------------------------------------------------------------------ rendering


def render_margin(probe: Probe, pixel_size: float, debye_waller: float = 0.0) -> float:
    """Distance (Å) outside the field from which columns still shine into it.

    Columns farther out than this contribute nothing to :func:`render_columns`; the
    kernel radius plus the deposition stencil, plus 5 rms of the static Debye–Waller
    offsets that can carry a column inwards (the margin :func:`simulate` tiles).
    """
    _check_positive("pixel_size", pixel_size)
    _check_non_negative("debye_waller", debye_waller)
    static, thermal = _split_debye_waller(debye_waller)
    half_width = _kernel_half_width(_check_probe(probe), float(pixel_size), thermal)
    return (half_width + _STENCIL // 2 + 1) * float(pixel_size) + 5.0 * static


def render_columns(
    columns: ColumnSet,
    shape: tuple[int, int],
    pixel_size: float,
    probe: Probe,
    *,
    debye_waller: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render weighted columns into a raw (unscaled) incoherent image.

    Parameters
    ----------
    columns : ColumnSet
        Column positions in pixel coordinates ``(row, col)``, which may lie in a margin
        outside the field, and their weights.
    shape : tuple of int
        ``(rows, cols)`` of the image.
    pixel_size : float
        Å per pixel.
    probe : GaussianProbe or AberratedProbe
        The probe.
    debye_waller : float
        rms atomic displacement u per axis in Å (B = 8π²u²).  Half of u² is a static
        random offset of each column drawn from ``rng``, half a Gaussian blur of rms
        u/√2 in the kernel; see :func:`simulate`.
    rng : numpy.random.Generator, optional
        Source of the static offsets; a fresh unseeded generator when omitted.

    Returns
    -------
    numpy.ndarray
        float64 image, non-negative; each column inside the field far from its edges
        contributes exactly its weight to the sum.
    """
    shape = check_shape(shape)
    _check_positive("pixel_size", pixel_size)
    _check_non_negative("debye_waller", debye_waller)
    probe = _check_probe(probe)
    static, thermal = _split_debye_waller(debye_waller)
    if static > 0.0:
        columns = _displace(columns, static / pixel_size, rng or np.random.default_rng())
    kernel = _probe_kernel(probe, float(pixel_size), thermal)
    return _render(columns, shape, kernel)


def _render(columns: ColumnSet, shape: tuple[int, int], kernel: np.ndarray) -> np.ndarray:
    # The deposition stencil reaches _STENCIL // 2 pixels past a column; with this pad
    # every column whose stencil fits on the canvas has all its light accounted for,
    # and every column that can light the field fits.
    pad = kernel.shape[0] // 2 + _STENCIL // 2 + 2
    canvas_shape = (
        sfft.next_fast_len(shape[0] + 2 * pad, real=True),
        sfft.next_fast_len(shape[1] + 2 * pad, real=True),
    )
    positions = np.asarray(columns.positions, dtype=np.float64).reshape(-1, 2)
    canvas = _deposit(positions + pad, columns.weights, canvas_shape)
    blurred = sfft.irfft2(
        sfft.rfft2(canvas) * _kernel_spectrum(kernel, canvas_shape), s=canvas_shape
    )
    image = blurred[pad : pad + shape[0], pad : pad + shape[1]]
    # Clip the tiny negative ripples of the interpolating stencil (and FFT round-off)
    # where the image should be zero.
    return np.maximum(image, 0.0)


def _deposit(positions: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Spread point weights onto a grid with separable Lagrange interpolation weights.

    A point at fractional position ``t`` between pixels gets, on each axis, the weights
    of the degree-5 Lagrange polynomials through the six nearest pixels.  These are
    the weights that make ``Σ_i l_i f(i) = f(t)`` exact for polynomials up to degree 5,
    so the deposited grid has exactly the point's total, centroid and second moments,
    and convolving it with a smooth kernel reproduces the kernel shifted by ``t`` far
    better than bilinear (cloud-in-cell) weights: for a probe of σ = 3.4 px the largest
    error is 1e-4 of the peak instead of 2 % (1.7 px: 0.3 % instead of 7 %).  Points
    whose stencil leaves the grid are dropped.
    """
    weights = np.asarray(weights, dtype=np.float64)
    base = np.floor(positions)
    first = base - (_STENCIL // 2 - 1)
    inside = np.all((first >= 0) & (first + _STENCIL <= np.asarray(shape)), axis=1)
    if not inside.any():
        return np.zeros(shape)
    frac = positions[inside] - base[inside]
    wy = _lagrange_weights(frac[:, 0])
    wx = _lagrange_weights(frac[:, 1])
    share = weights[inside, None, None] * wy[:, :, None] * wx[:, None, :]
    offsets = np.arange(_STENCIL)
    rows = first[inside, 0].astype(np.int64)[:, None] + offsets
    cols = first[inside, 1].astype(np.int64)[:, None] + offsets
    index = rows[:, :, None] * shape[1] + cols[:, None, :]
    flat = np.bincount(index.ravel(), weights=share.ravel(), minlength=shape[0] * shape[1])
    return flat.reshape(shape)


def _lagrange_weights(t: np.ndarray) -> np.ndarray:
    """(N, _STENCIL) Lagrange weights for fractional offsets ``t`` in [0, 1)."""
    nodes = np.arange(_STENCIL) - (_STENCIL // 2 - 1)
    out = np.ones((t.size, _STENCIL))
    for m, node in enumerate(nodes):
        for other in nodes:
            if other != node:
                out[:, m] *= (t - other) / (node - other)
    return out


def _kernel_spectrum(kernel: np.ndarray, canvas_shape: tuple[int, int]) -> np.ndarray:
    h = kernel.shape[0] // 2
    embedded = np.zeros(canvas_shape)
    embedded[: kernel.shape[0], : kernel.shape[1]] = kernel
    # Centre the kernel on pixel (0, 0) so the convolution does not shift the image.
    embedded = np.roll(embedded, (-h, -h), axis=(0, 1))
    return sfft.rfft2(embedded)


def _displace(columns: ColumnSet, rms_px: float, rng: np.random.Generator) -> ColumnSet:
    positions = np.asarray(columns.positions, dtype=np.float64)
    offsets = rng.normal(0.0, rms_px, size=positions.shape)
    return replace(columns, positions=positions + offsets)


def _split_debye_waller(u: float) -> tuple[float, float]:
    """(static rms, thermal rms) in Å, splitting u² equally so their sum is u²."""
    part = float(u) / math.sqrt(2.0)
    return part, part


# -------------------------------------------------------------------------- kernels


@lru_cache(maxsize=16)
def _probe_kernel(probe: Probe, pixel_size: float, thermal: float) -> np.ndarray:
    """Square, odd-sized, unit-sum, pixel-integrated probe kernel (read-only)."""
    if isinstance(probe, GaussianProbe):
        sigma = math.hypot(probe.sigma, thermal)
        h = _kernel_half_width(probe, pixel_size, thermal)
        if 2 * h + 1 > _MAX_KERNEL:
            # Checked before the (2h+1)² kernel is allocated: a 1e6 Å probe is 10¹⁴ px.
            raise ValueError(
                f"the probe spreads over {h * pixel_size:.0f} Å, more than {_MAX_KERNEL // 2} "
                f"pixels of {pixel_size} Å; use a larger pixel_size or a narrower probe"
            )
        g = _gaussian_profile(sigma, pixel_size)
        kernel = np.outer(g, g)
        radius = _GAUSS_SIGMAS * sigma / pixel_size
    else:
        h = _kernel_half_width(probe, pixel_size, thermal)
        if 2 * h + 1 > _MAX_KERNEL:
            raise ValueError(
                f"the probe spreads over {h * pixel_size:.0f} Å, more than {_MAX_KERNEL // 2} "
                f"pixels of {pixel_size} Å; use a larger pixel_size or less defocus / Cs"
            )
        xs = np.arange(-h, h + 1) * pixel_size
        kernel = np.maximum(_aberrated_intensity(probe, thermal, pixel_size, xs, xs), 0.0)
        radius = _aberrated_radius(probe, thermal) / pixel_size
    kernel *= _radial_taper(kernel.shape[0] // 2, radius)
    kernel /= kernel.sum()
    kernel.flags.writeable = False
    return kernel


def _radial_taper(h: int, radius: float) -> np.ndarray:
    """(2h+1)² raised-cosine window: 1 inside _TAPER_START · radius, 0 beyond radius."""
    y, x = np.mgrid[-h : h + 1, -h : h + 1]
    r = np.hypot(y, x)
    # Probes far narrower than a pixel keep their nearest neighbours.
    radius = max(radius, 1.5)
    inner = _TAPER_START * radius
    ramp = np.clip((r - inner) / (radius - inner), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * ramp))


def _gaussian_profile(sigma: float, pixel_size: float) -> np.ndarray:
    """1D Gaussian integrated over pixels (exactly, via erf), unit sum."""
    h = max(math.ceil(_GAUSS_SIGMAS * sigma / pixel_size), 1)
    edges = (np.arange(-h, h + 2) - 0.5) * (pixel_size / (sigma * math.sqrt(2.0)))
    g = 0.5 * np.diff(erf(edges))
    return g / g.sum()


def _blur_sigma(probe: AberratedProbe, thermal: float) -> float:
    return math.hypot(probe.source_size / FWHM_PER_SIGMA, thermal)


def _aberrated_radius(probe: AberratedProbe, thermal: float) -> float:
    """Radius (Å) that holds the probe: Airy tails, geometric spread and blur."""
    alpha = probe.semi_angle
    # Ray-optics radius of the aberration disc: Δf·α + Cs·α³.
    geometric = abs(probe.defocus) * alpha + abs(probe.cs_mm) * 1e7 * alpha**3
    return (
        _AIRY_RADII * probe.wavelength / alpha
        + geometric
        + _GAUSS_SIGMAS * _blur_sigma(probe, thermal)
    )


def _kernel_half_width(probe: Probe, pixel_size: float, thermal: float) -> int:
    if isinstance(probe, GaussianProbe):
        sigma = math.hypot(probe.sigma, thermal)
        return max(math.ceil(_GAUSS_SIGMAS * sigma / pixel_size), 1)
    return max(math.ceil(_aberrated_radius(probe, thermal) / pixel_size), 1)


@lru_cache(maxsize=8)
def _aberrated_otf(probe: AberratedProbe, thermal: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (1/Å) and spectrum of the blurred probe intensity, spectrum[0,0] = 1."""
    lam = probe.wavelength
    k_max = probe.k_max
    length = max(4.0 * _aberrated_radius(probe, thermal), _APERTURE_SAMPLES / k_max)
    step = _NYQUIST_MARGIN / (4.0 * k_max)
    n = sfft.next_fast_len(math.ceil(length / step))
    if n > _MAX_PROBE_GRID:
        raise ValueError(
            f"the probe spreads over {length / 4:.0f} Å, too far to compute; reduce "
            "defocus, cs_mm or convergence_mrad"
        )
    k = sfft.fftfreq(n, d=step)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    chi = np.pi * lam * probe.defocus * k2 + 0.5 * np.pi * probe.cs_mm * 1e7 * lam**3 * k2**2
    pupil = np.where(k2 <= k_max**2, np.exp(-1j * chi), 0.0)
    psi = sfft.ifft2(pupil)
    intensity = np.abs(psi) ** 2
    spectrum = sfft.fft2(intensity / intensity.sum())
    sigma = _blur_sigma(probe, thermal)
    spectrum *= np.exp(-2.0 * np.pi**2 * sigma**2 * k2)
    k.flags.writeable = False
    spectrum.flags.writeable = False
    return k, spectrum


def _aberrated_intensity(
    probe: AberratedProbe, thermal: float, pixel_size: float, ys: np.ndarray, xs: np.ndarray
) -> np.ndarray:
    """Pixel-integrated probe intensity at positions ``ys × xs`` (Å), unnormalised.

    The intensity is band-limited to 2 k_max, so the Fourier sum over the internal
    grid's spectrum reproduces it exactly at any position; multiplying by the box
    transfer function sinc(k·pixel) integrates it over the pixel.
    """
    k, spectrum = _aberrated_otf(probe, thermal)
    box = np.sinc(k * pixel_size)
    filtered = spectrum * box[:, None] * box[None, :]
    ey = np.exp(2j * np.pi * np.outer(ys, k))
    ex = np.exp(2j * np.pi * np.outer(k, xs))
    return (ey @ filtered @ ex).real


def _half_max_width(profile: np.ndarray) -> float:
    """Width in samples between the half-maximum crossings around the maximum."""
    i = int(np.argmax(profile))
    half = profile[i] / 2.0
    left = np.flatnonzero(profile[:i] < half)
    right = np.flatnonzero(profile[i + 1 :] < half)
    if left.size == 0 or right.size == 0:
        raise ValueError("the probe profile does not fall below half its maximum")
    j = int(left[-1])
    x_left = j + (half - profile[j]) / (profile[j + 1] - profile[j])
    j = i + 1 + int(right[0])
    x_right = j - 1 + (profile[j - 1] - half) / (profile[j - 1] - profile[j])
    return float(x_right - x_left)


# ----------------------------------------------------------------------- simulation


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


#: Diameter, in Å, of the ground-truth column markers (about a column's width at the
#: usual 0.05–0.2 Å/px: visible without hiding the column).
COLUMN_MARKER_SIZE = 0.5


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


def simulate(
    material: str | os.PathLike | Crystal = "SrTiO3",
    zone: Sequence[int] | None = None,
    *,
    shape: tuple[int, int] | int = (512, 512),
    pixel_size: float = 0.1,
    probe: Probe | None = None,
    z_exponent: float = Z_EXPONENT_HAADF,
    thickness: float = 200.0,
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
        A bundled material name (see :func:`napari_pinned.physics.crystal.list_materials`), a
        path to a CIF file (a string ending in ``.cif`` or any ``os.PathLike``), or a
        :class:`~napari_pinned.physics.crystal.Crystal`.
    zone : sequence of int, optional
        Zone axis, three- or four-index (hexagonal).  Default: the material's first
        listed zone axis, or [001] for crystals that are not bundled.
    shape : int or (int, int)
        Image size in pixels; an int gives a square image.
    pixel_size : float
        Å per pixel.
    probe : GaussianProbe or AberratedProbe, optional
        Default ``AberratedProbe()``: 200 kV, 22 mrad, no aberrations, 0.3 Å source.
    z_exponent : float
        Exponent n of the Z^n column weights.
    thickness, rotation, shift, vacancy_fraction, alloy_disorder
        Passed to :func:`napari_pinned.physics.crystal.tile_columns`.
    debye_waller : float
        rms atomic displacement u per axis in Å (B = 8π²u²).  Its mean square is split
        equally between a static, seeded random offset of each column (rms u/√2 per
        axis, a frozen snapshot of the disorder, reported in the ground truth) and a
        Gaussian blur of rms u/√2 in the probe kernel (the thermal average over the
        dwell time, i.e. thermal diffuse smearing).  Averaged over seeds the image is
        the ideal one blurred by a Gaussian of rms u, the Debye–Waller smearing.
    background : float
        Background level b as a fraction of ``ceiling − floor``, in [0, 1):
        ``out = floor + (ceiling − floor) · (b · B + (1 − b) · raw / raw_max)``.
    floor, ceiling : float
        Output range; the paper's images are 8-bit-like, [0, 255].
    seed : int or numpy.random.Generator, optional
        One generator drives alloy disorder, vacancies, Debye–Waller offsets and the
        background variation, so equal seeds give identical results.
    background_variation : float
        Relative depth in [0, 1] of a smooth random (amorphous-like, correlation length
        6 Å) modulation of the background: B varies between ``1 − background_variation``
        and 1.  0 (default) gives a constant background B = 1.

    Returns
    -------
    SimulationResult

    Raises
    ------
    ValueError
        If a parameter is out of range, the material is unknown or the CIF is invalid.
    """
    shape = check_shape(shape)
    _check_positive("pixel_size", pixel_size)
    _check_finite("z_exponent", z_exponent)
    _check_positive("thickness", thickness)
    _check_finite("rotation", rotation)
    _check_non_negative("debye_waller", debye_waller)
    _check_fraction("vacancy_fraction", vacancy_fraction, closed=True)
    _check_fraction("background", background, closed=False)
    _check_fraction("background_variation", background_variation, closed=True)
    _check_finite("floor", floor)
    _check_finite("ceiling", ceiling)
    if floor >= ceiling:
        raise ValueError(f"floor ({floor}) must be below ceiling ({ceiling})")
    probe = AberratedProbe() if probe is None else _check_probe(probe)
    rng = np.random.default_rng(seed)

    crystal, default_zone = _resolve_material(material)
    zone_axis = default_zone if zone is None else _check_zone(zone)
    cell = project(crystal, zone_axis, z_exponent=z_exponent)

    static, thermal = _split_debye_waller(debye_waller)
    kernel = _probe_kernel(probe, float(pixel_size), thermal)
    # Columns up to a kernel radius (plus the deposition stencil) outside the field
    # shine into it; the static offsets can carry a column a few rms further in.
    margin = (kernel.shape[0] // 2 + _STENCIL // 2 + 1) * pixel_size + 5.0 * static
    columns = tile_columns(
        cell,
        shape,
        pixel_size,
        thickness=thickness,
        rotation=rotation,
        shift=shift,
        vacancy_fraction=vacancy_fraction,
        alloy_disorder=alloy_disorder,
        margin=margin,
        rng=rng,
    )
    if static > 0.0:
        columns = _displace(columns, static / pixel_size, rng)
    raw = _render(columns, shape, kernel)
    image = _to_range(raw, background, background_variation, floor, ceiling, pixel_size, rng)
    return SimulationResult(
        image=image,
        columns=columns.inside(shape),
        pixel_size=float(pixel_size),
        material=crystal.name,
        zone=zone_axis,
    )


def _to_range(
    raw: np.ndarray,
    background: float,
    variation: float,
    floor: float,
    ceiling: float,
    pixel_size: float,
    rng: np.random.Generator,
) -> np.ndarray:
    peak = float(raw.max())
    signal = raw / peak if peak > 0 else np.zeros_like(raw)
    level = background
    if background > 0 and variation > 0:
        level = background * _background_field(raw.shape, pixel_size, variation, rng)
    image = floor + (ceiling - floor) * (level + (1.0 - background) * signal)
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


def _resolve_material(material: object) -> tuple[Crystal, tuple[int, ...]]:
    """The crystal and its default zone axis."""
    if isinstance(material, Crystal):
        return material, _listed_zone(name=material.name)
    if isinstance(material, os.PathLike) or (
        isinstance(material, str)
        and (material.lower().endswith(".cif") or Path(material).is_file())
    ):
        path = Path(material)
        return read_cif(path), _listed_zone(path=path)
    if isinstance(material, str):
        entry = get_material(material)
        return load_material(material), tuple(int(i) for i in entry.zone_axes[0])
    raise ValueError(
        f"material must be a material name, a CIF path or a Crystal, got {type(material).__name__}"
    )


def _listed_zone(*, name: str | None = None, path: Path | None = None) -> tuple[int, ...]:
    """Default zone of the bundled material with this name or CIF file, else [001]."""
    resolved = path.resolve() if path is not None else None
    for entry in list_materials():
        if (name is not None and entry.name == name) or (
            resolved is not None and Path(entry.cif).resolve() == resolved
        ):
            return tuple(int(i) for i in entry.zone_axes[0])
    return (0, 0, 1)


# ----------------------------------------------------------------------- validation


def _check_finite(name: str, value: float) -> None:
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    _check_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _check_non_negative(name: str, value: float) -> None:
    _check_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")


def _check_fraction(name: str, value: float, *, closed: bool) -> None:
    _check_finite(name, value)
    if value < 0 or value > 1 or (not closed and value == 1):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")


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


def _check_probe(probe: object) -> Probe:
    if not isinstance(probe, (GaussianProbe, AberratedProbe)):
        raise ValueError(
            f"probe must be a GaussianProbe or an AberratedProbe, got {type(probe).__name__}"
        )
    return probe


# ------------------------------------------------------------------- random specimens


@dataclass(frozen=True)
class SpecimenRanges:
    """Ranges from which :func:`random_specimen` draws the imaging conditions.

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

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and not (len(value) == 2 and value[0] <= value[1]):
                raise ValueError(f"{f.name} must be a (low, high) pair with low <= high")
        if self.pixel_size[0] <= 0.0:
            raise ValueError("pixel_size range must be positive")
        _check_fraction("gaussian_probe_fraction", self.gaussian_probe_fraction, closed=True)


def random_specimen(
    rng: np.random.Generator,
    materials: Sequence[str],
    shape: tuple[int, int] | int = 256,
    ranges: SpecimenRanges | None = None,
    pixel_size: float | None = None,
) -> SimulationResult:
    """Simulate one clean image of a random material under random imaging conditions.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice (material, zone axis, optics, specimen, seed).
    materials : sequence of str
        Bundled material names (or CIF paths) to choose from, uniformly.  A bundled
        material is shown along one of its listed zone axes, chosen uniformly.
    shape : int or (int, int)
        Image size in pixels.
    ranges : SpecimenRanges, optional
        Where the conditions are drawn from; default :class:`SpecimenRanges`.
    pixel_size : float, optional
        Use this pixel size (Å) instead of drawing one, e.g. to match a real image.

    Returns
    -------
    SimulationResult
    """
    if not materials:
        raise ValueError("give at least one material")
    ranges = SpecimenRanges() if ranges is None else ranges
    material = str(materials[int(rng.integers(len(materials)))])
    zone = None
    if not material.lower().endswith(".cif"):
        zones = get_material(material).zone_axes
        zone = zones[int(rng.integers(len(zones)))]

    def draw(bounds: tuple[float, float]) -> float:
        return float(rng.uniform(*bounds))

    if pixel_size is None:
        low, high = ranges.pixel_size
        pixel_size = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    probe: Probe
    if rng.random() < ranges.gaussian_probe_fraction:
        probe = GaussianProbe(fwhm=draw(ranges.gaussian_fwhm))
    else:
        probe = AberratedProbe(
            voltage_kv=float(rng.choice([200.0, 300.0])),
            convergence_mrad=draw(ranges.convergence_mrad),
            defocus=draw(ranges.defocus),
            source_size=draw(ranges.source_size),
        )
    return simulate(
        material,
        zone,
        shape=shape,
        pixel_size=pixel_size,
        probe=probe,
        thickness=draw(ranges.thickness),
        rotation=draw((0.0, 180.0)),
        shift=(draw((0.0, 10.0)), draw((0.0, 10.0))),
        vacancy_fraction=draw(ranges.vacancy_fraction),
        debye_waller=draw(ranges.debye_waller),
        background=draw(ranges.background),
        background_variation=draw(ranges.background_variation),
        seed=rng,
    )


def matched_specimens(
    material: str,
    pixel_size: float,
    count: int = 12,
    shape: int = 256,
    seed: int = 0,
    ranges: SpecimenRanges | None = None,
) -> np.ndarray:
    """Clean training images of one material sampled like a given micrograph.

    ``count`` random specimens (:func:`random_specimen`: zone axis among the material's
    usual ones, thickness, rotation, probe, vacancies, background) at ``pixel_size``, for
    fine-tuning a model on "images like this one".

    Returns
    -------
    numpy.ndarray
        ``(count, shape, shape)`` float32 stack.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    images = [
        random_specimen(rng, [material], shape, ranges, pixel_size=pixel_size).image
        for _ in range(count)
    ]
    return np.stack(images).astype(np.float32, copy=False)
