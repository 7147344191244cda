"""The STEM probe: a Gaussian or an aberration-limited probe, and its pixel kernel.

The paper builds its clean training images with a Gaussian standing in for the beam
("Gaussian filtering was used to simulate the broadening effects of an electron beam");
besides :class:`GaussianProbe` we offer an aberration-limited :class:`AberratedProbe`.
Their defaults (200 kV, 22 mrad, no aberrations, 0.3 Å source; a 0.8 Å Gaussian) are
those of :mod:`~napari_pinned.physics.defaults`, shared with the CLI and the Generate dock.

How the kernel is made, and why:

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
  the geometric spread of defocus and Cs, plus 7 σ of the Gaussian blurs) and then
  renormalised to unit sum, so every column deposits exactly its weight.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy.special import erf

from napari_pinned._util.checks import check_finite, check_non_negative, check_positive, check_shape
from napari_pinned.physics.defaults import (
    DEFAULT_CONVERGENCE_MRAD,
    DEFAULT_CS_MM,
    DEFAULT_DEFOCUS,
    DEFAULT_GAUSSIAN_FWHM,
    DEFAULT_SOURCE_SIZE,
    DEFAULT_VOLTAGE_KV,
    MAX_CONVERGENCE_MRAD,
)

__all__ = [
    "FWHM_PER_SIGMA",
    "AberratedProbe",
    "GaussianProbe",
    "Probe",
    "electron_wavelength",
    "probe_fwhm",
    "probe_image",
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


# --------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class GaussianProbe:
    """A Gaussian probe intensity, the paper's "Gaussian filtering" of the lattice.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum of the probe intensity in Å.
    """

    fwhm: float = DEFAULT_GAUSSIAN_FWHM

    def __post_init__(self) -> None:
        check_positive("fwhm", self.fwhm)

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
        Convergence semi-angle α in mrad, below
        :data:`~napari_pinned.physics.defaults.MAX_CONVERGENCE_MRAD`.
    defocus : float
        Defocus Δf in Å (see the sign convention above).
    cs_mm : float
        Spherical aberration coefficient Cs in mm.
    source_size : float
        FWHM in Å of the Gaussian effective source; 0 for a point source.
    """

    voltage_kv: float = DEFAULT_VOLTAGE_KV
    convergence_mrad: float = DEFAULT_CONVERGENCE_MRAD
    defocus: float = DEFAULT_DEFOCUS
    cs_mm: float = DEFAULT_CS_MM
    source_size: float = DEFAULT_SOURCE_SIZE

    def __post_init__(self) -> None:
        check_positive("voltage_kv", self.voltage_kv)
        check_positive("convergence_mrad", self.convergence_mrad)
        if self.convergence_mrad >= MAX_CONVERGENCE_MRAD:
            raise ValueError(
                f"convergence_mrad must be below {MAX_CONVERGENCE_MRAD:g} mrad, "
                f"got {self.convergence_mrad}"
            )
        check_finite("defocus", self.defocus)
        check_finite("cs_mm", self.cs_mm)
        check_non_negative("source_size", self.source_size)

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


def check_probe(probe: object) -> Probe:
    """``probe`` itself, if it is a :class:`GaussianProbe` or an :class:`AberratedProbe`."""
    if not isinstance(probe, (GaussianProbe, AberratedProbe)):
        raise ValueError(
            f"probe must be a GaussianProbe or an AberratedProbe, got {type(probe).__name__}"
        )
    return probe


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV.

    ``λ = 12.3984244 / sqrt(E (2 · 510.99906 + E))`` with E in keV (hc and the electron
    rest energy from CODATA 2018); 0.02508 Å at 200 kV.
    """
    check_positive("voltage_kv", voltage_kv)
    e = float(voltage_kv)
    return _HC_KEV_ANGSTROM / math.sqrt(e * (2.0 * _ELECTRON_REST_KEV + e))


def blurred(probe: Probe, sigma: float) -> Probe:
    """The probe convolved with a Gaussian of rms ``sigma`` (Å).

    Gaussian blurs add in quadrature, and the source size of an AberratedProbe is
    exactly such a blur, so a thermal smearing folds into it.
    """
    if isinstance(probe, GaussianProbe):
        return GaussianProbe(fwhm=FWHM_PER_SIGMA * math.hypot(probe.sigma, sigma))
    source = math.hypot(probe.source_size / FWHM_PER_SIGMA, sigma) * FWHM_PER_SIGMA
    return dataclasses.replace(probe, source_size=source)


def probe_image(probe: Probe, shape: tuple[int, int], pixel_size: float) -> np.ndarray:
    """The probe intensity as an image, centred on pixel ``(shape[0]//2, shape[1]//2)``.

    Each pixel holds the intensity integrated over its area, as used for rendering.
    Parts of the probe outside ``shape`` are dropped and the result is renormalised
    to unit sum (float64).
    """
    shape = check_shape(shape)
    check_positive("pixel_size", pixel_size)
    kernel = probe_kernel(check_probe(probe), float(pixel_size), 0.0)
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
    check_positive("pixel_size", pixel_size)
    probe = check_probe(probe)
    if isinstance(probe, GaussianProbe):
        profile = _gaussian_profile(probe.sigma, float(pixel_size))
    else:
        h = kernel_half_width(probe, float(pixel_size), 0.0)
        xs = np.arange(-h, h + 1) * float(pixel_size)
        profile = _aberrated_intensity(probe, 0.0, float(pixel_size), np.zeros(1), xs)[0]
    return _half_max_width(profile) * float(pixel_size)


# -------------------------------------------------------------------------- kernels


@lru_cache(maxsize=16)
def probe_kernel(probe: Probe, pixel_size: float, thermal: float) -> np.ndarray:
    """Square, odd-sized, unit-sum, pixel-integrated probe kernel (read-only).

    ``thermal`` is the rms (Å) of an extra Gaussian blur, the thermal part of the
    Debye–Waller smearing.
    """
    h = kernel_half_width(probe, pixel_size, thermal)
    if 2 * h + 1 > _MAX_KERNEL:
        # Checked before the (2h+1)² kernel is allocated: a 1e6 Å probe is 10¹⁴ px.
        change = "a narrower probe" if isinstance(probe, GaussianProbe) else "less defocus / Cs"
        raise ValueError(
            f"the probe spreads over {h * pixel_size:.0f} Å, more than {_MAX_KERNEL // 2} "
            f"pixels of {pixel_size} Å; use a larger pixel_size or {change}"
        )
    if isinstance(probe, GaussianProbe):
        sigma = math.hypot(probe.sigma, thermal)
        g = _gaussian_profile(sigma, pixel_size)
        kernel = np.outer(g, g)
        radius = _GAUSS_SIGMAS * sigma / pixel_size
    else:
        xs = np.arange(-h, h + 1) * pixel_size
        kernel = np.maximum(_aberrated_intensity(probe, thermal, pixel_size, xs, xs), 0.0)
        radius = _aberrated_radius(probe, thermal) / pixel_size
    kernel *= _radial_taper(kernel.shape[0] // 2, radius)
    kernel /= kernel.sum()
    kernel.flags.writeable = False
    return kernel


def kernel_half_width(probe: Probe, pixel_size: float, thermal: float) -> int:
    """Half the side, in pixels, of :func:`probe_kernel` (without computing it)."""
    if isinstance(probe, GaussianProbe):
        sigma = math.hypot(probe.sigma, thermal)
        return max(math.ceil(_GAUSS_SIGMAS * sigma / pixel_size), 1)
    return max(math.ceil(_aberrated_radius(probe, thermal) / pixel_size), 1)


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
