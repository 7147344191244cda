"""How correlated an image's noise is, and the noise a model is told for it.

A detector's afterglow (each pixel keeps a share of the previous pixels' signal) or a
finite bandwidth correlates the noise along the fast scan: the highest frequencies hold
less of it than white noise of the same dose would.  The Poisson–Gaussian fit of
:func:`napari_pinned.noise.estimate.estimate_noise` sees the noise through a kernel that
passes only the highest frequencies, so it reads such noise several times too weak.

The dose is set by the noise at zero frequency (the sum of the noise's autocovariance: a
linear filter ``h`` on counts of mean ``λ`` gives a mean ``λ·Σh`` and a zero-frequency
power ``λ·(Σh)²``, so their ratio is ``λ`` whatever ``h`` is).  :func:`noise_correlation`
measures the noise's power spectrum along each axis where the other axis's frequency is
high (above the probe's band, where a lattice has little signal) and extrapolates it to
zero frequency with an autoregressive spectrum, exact for an exponential afterglow
(Percival & Walden, "Spectral analysis for physical applications", 1993, ch. 9: AR
spectra ``1/|1 − Σ aₖ e^{−2πifk}|²``, whose reciprocal is a polynomial in ``cos 2πf``).

:func:`pixel_equivalent` scales a fit to the noise one pixel carries (the AR spectrum's
mean over all frequencies over its mean where the fit looks): what a noise-aware model is
told, and what the faithfulness readout's residual is compared with.  On held-out
recordings with a scanning detector's noise it puts the default ahead of being told the
fit at every dose (``benchmarks/scan_noise.py --variants``).  Telling it the white noise of
the dose (the zero-frequency level) denoises a little more at low doses and less at high
ones, and on a real scan (tk-r-em's exp_hrstem #3) it took lattice reflections out of 4
of 121 windows: a model trained on white noise then smooths the high frequencies for
noise they do not carry.  White noise is left exactly as fitted.  A symmetric smear (a
detector's finite bandwidth, ``StemRecording.smear``) is not an AR spectrum and is not
corrected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from napari_pinned._util.intensity import check_image
from napari_pinned.noise.estimate import NoiseEstimate

__all__ = [
    "SpectralNoise",
    "afterglow_factor",
    "noise_correlation",
    "pixel_equivalent",
    "spectral_noise",
]

# The spectrum: frames cut to tiles of at most this edge (Welch averaging), the band
# "high along the other axis" starts here (cycles/px), the lowest frequency bins left
# out (scan-line offsets and their window leakage), and the AR polynomial's degree.
_TILE = 256
_BAND = 0.25
_SKIP_BINS = 3
_AR_DEGREE = 1
# A correlation correction within this factor of 1 counts as white noise: on white
# noise over lattice images one 256² tile gives 1.05 ± 0.1 per axis (measured over 8
# seeds at 0.3–1e5 e⁻/px; the lowest frequencies extrapolated from still hold some
# signal), and an afterglow of 0.3 per pixel gives 3.
_WHITE_TOLERANCE = 0.5
# The AR fit's relative residuals (std of log(fit · profile)) above which the profile
# is not correlated noise.  Lattice reflections streaked across the axis by a sharp
# crystal–vacuum edge fake a correlation of 15–45 with a bumpy profile: 0.73–0.94
# (SrTiO3 at 0.05 and 0.1 Å/px, 512²); an afterglow's profile scatters by 0.09–0.15 on
# 512² frames and 0.16–0.30 on one 256² tile.
_FIT_SPREAD = 0.4


def noise_correlation(image: np.ndarray) -> tuple[float, float]:
    """How much more noise power sits at zero frequency than at high frequencies, per
    axis: ``(along y, along x)``, 1 for white noise.

    The power spectrum is averaged over tiles (Welch); along x it is the median over the
    frequencies where y's is high (``|f_y| > 0.25``: beyond a probe-limited image's
    signal, and the median ignores a few Bragg peaks there), and likewise along y.  The
    reciprocal of that profile is fitted as a polynomial in ``u = 1 − cos 2πf`` (an
    autoregressive spectrum; exact for an exponential afterglow), evaluated at ``u = 0``
    and divided by its mean over the high frequencies ``0.25 < |f| ≤ 0.5``, where the
    noise level is measured.  Corrections within :data:`_WHITE_TOLERANCE` of 1, and
    profiles the polynomial cannot describe, count as white.

    Parameters
    ----------
    image : numpy.ndarray
        2D image or ``(N, Y, X)`` stack (up to four frames are used).
    """
    return spectral_noise(check_image(image, name="image", ndim=(2, 3))).zero


@dataclass(frozen=True)
class SpectralNoise:
    """What the spectrum says about an image's noise (see :func:`spectral_noise`).

    Attributes
    ----------
    variance : float
        The high band's noise variance, as white noise would show it: the median power where
        both frequencies exceed 0.25, over ln 2 for exponentially distributed powers,
        averaged over the tiles (0 for frames too small).
    level : float
        The Hann²-weighted mean intensity that variance belongs to (it is linear in the
        intensity).
    zero : tuple of float
        ``(along y, along x)``: the power at zero frequency over the high band's
        (:func:`noise_correlation`); 1 for white noise.
    pixel : tuple of float
        ``(along y, along x)``: the mean power over all frequencies (the per-pixel
        variance) over the high band's; 1 for white noise.
    """

    variance: float
    level: float
    zero: tuple[float, float]
    pixel: tuple[float, float]


_WHITE = SpectralNoise(0.0, 0.0, (1.0, 1.0), (1.0, 1.0))


def spectral_noise(arr: np.ndarray) -> SpectralNoise:
    """The noise's level and its correlation per axis from the power spectrum of up to
    four frames, averaged over tiles (:class:`SpectralNoise`)."""
    frames = arr[None] if arr.ndim == 2 else arr[:4]
    h, w = frames.shape[1:]
    th, tw = min(h, _TILE), min(w, _TILE)
    if min(th, tw) < 32:
        return _WHITE
    window = np.outer(np.hanning(th), np.hanning(tw))
    weights = window**2 / np.sum(window**2)
    fy, fx = np.abs(np.fft.fftfreq(th)), np.abs(np.fft.fftfreq(tw))
    corner = np.ix_(fy > _BAND, fx > _BAND)
    tops = np.unique(np.linspace(0, h - th, min(4, h // th)).astype(int))
    lefts = np.unique(np.linspace(0, w - tw, min(4, w // tw)).astype(int))
    total, levels, means = np.zeros((th, tw)), [], []
    for frame in frames:
        for top in tops:
            for left in lefts:
                tile = np.asarray(frame[top : top + th, left : left + tw], np.float64)
                if np.ptp(tile) == 0:
                    continue
                centred = (tile - np.sum(tile * window) / np.sum(window)) * window
                power = np.abs(sfft.fft2(centred)) ** 2 / np.sum(window**2)
                total += power
                levels.append(float(np.median(power[corner])) / math.log(2.0))
                means.append(float(np.sum(tile * weights)))
    if not levels:
        return _WHITE
    (zy, py) = _axis_correlation(total.T, fx, th)
    (zx, px) = _axis_correlation(total, fy, tw)
    return SpectralNoise(float(np.mean(levels)), float(np.mean(means)), (zy, zx), (py, px))


def _axis_correlation(total: np.ndarray, other: np.ndarray, n: int) -> tuple[float, float]:
    """:func:`_axis_ratios` of the profile along the last axis of ``total``: the median
    over the rows whose frequency ``other`` is high (the median ignores a few Bragg
    peaks there)."""
    return _axis_ratios(np.median(total[other > _BAND], axis=0), n)


def _axis_ratios(profile: np.ndarray, n: int) -> tuple[float, float]:
    """``(zero, pixel)``: the AR spectrum fitted to one axis's profile (full ``fftfreq``
    order, length ``n``) at zero frequency and averaged over all frequencies, each over
    its mean at ``0.25 < |f| ≤ 0.5``; ``(1, 1)`` when indistinguishable from white."""
    k = np.arange(_SKIP_BINS, n // 2 + 1)
    p = profile[k]
    if not np.all(p > 0):
        return 1.0, 1.0
    u = 1.0 - np.cos(2.0 * np.pi * k / n)
    # Least squares of poly(u) · p ≈ 1: relative errors, as the median powers have.
    design = p[:, None] * u[:, None] ** np.arange(_AR_DEGREE + 1)
    coef = np.linalg.lstsq(design, np.ones_like(p), rcond=None)[0]
    # An AR spectrum describes correlated noise to the profile's own scatter; lattice
    # reflections streaked across the axis by a sharp edge make a bumpy profile that it
    # does not describe.
    fitted = design @ coef
    if not np.all(fitted > 0) or float(np.std(np.log(fitted))) > _FIT_SPREAD:
        return 1.0, 1.0
    grid = np.linspace(0.0, 0.5, 513)
    inverse = np.polynomial.polynomial.polyval(1.0 - np.cos(2.0 * np.pi * grid), coef)
    if not np.all(inverse > 0):
        return 1.0, 1.0
    band = np.mean(1.0 / inverse[grid > _BAND])
    ratio = float((1.0 / inverse[0]) / band)
    if abs(math.log(ratio)) < math.log1p(_WHITE_TOLERANCE):
        return 1.0, 1.0
    return ratio, float(np.mean(1.0 / inverse) / band)


def pixel_equivalent(estimate: NoiseEstimate, image: np.ndarray) -> NoiseEstimate:
    """``estimate`` (fitted on ``image``) scaled to the noise variance one pixel carries,
    recorded in :attr:`NoiseEstimate.correlation`: correlated noise has less than its
    dose's white noise per pixel, but more than the fit's high-pass kernel sees.  What a
    noise-aware model is told, and what a residual that is all noise has.

    Only noise correlated along exactly one axis (:func:`afterglow_factor`) is scaled: a
    detector's afterglow acts along the fast scan only, while a smooth (noise-free,
    filtered or already denoised) image falls off at high frequencies in every direction
    (a simulated lattice reads 13–150 along both).
    """
    spectrum = spectral_noise(check_image(image, name="image", ndim=(2, 3)))
    if afterglow_factor(spectrum.zero) == 1.0:
        return estimate.as_fitted()
    return estimate.as_fitted().correlated(spectrum.pixel[0] * spectrum.pixel[1])


def afterglow_factor(factors: tuple[float, float]) -> float:
    """The zero-frequency correction for :func:`noise_correlation`'s ``(along y, along
    x)``: the correlated axis's factor when exactly one is, else 1 (the dose read and
    whether :func:`pixel_equivalent` scales at all)."""
    fy, fx = factors
    if (fy == 1.0) == (fx == 1.0):
        return 1.0
    return fy * fx
