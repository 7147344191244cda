"""How noisy is an image?  A Poisson–Gaussian noise model fitted to the image itself.

A STEM detector counts electrons (Poisson shot noise, variance equal to the mean count)
and adds electronic read noise (Gaussian, constant variance); after the detector's gain
``G`` and offset ``b`` the recorded intensity ``x`` has

    Var[x | I] = g · I + c,     g = G,   c = G² σ_r² − G b,

a straight line in the expected intensity ``I`` (the Poisson–Gaussian model of Foi,
Trimeche, Katkovnik and Egiazarian, "Practical Poissonian-Gaussian noise modeling and
fitting for single-image raw-data", IEEE TIP 17, 2008).  :func:`estimate_noise` fits
that line from one image:

1. A noise residual ``r = (k ⊛ x) / 6`` with ``k = [1, −2, 1]ᵀ[1, −2, 1]``, the separable
   mixed second difference (Immerkær, "Fast noise variance estimation", CVIU 64, 1996).
   For independent pixel noise ``E[r²] = Σ (k_i²/36) Var[x_i]``; the kernel passes only
   frequencies that are high along *both* axes, where an atomic-resolution image has
   little signal (the probe band-limits it), and it cancels per-line offsets exactly.
2. The local intensity ``m = Σ (k_i²/36) x_i`` over the same pixels with the same
   weights, so that ``E[r²] = g · E[m] + c`` holds exactly for the line above.
3. Pixels are grouped into intensity bins by the mean of a ring of 16 pixels *around*
   the 3×3 support.  Selecting on independent pixels keeps the bins' means of ``m`` and
   ``r²`` free of selection bias (binning on ``m`` itself would regress towards the
   mean at low counts).
4. In each bin, ``E[r²]`` is a mean of ``r²`` with gross outliers removed (lattice
   edges the kernel did not cancel, hot pixels); the line is fitted to the bins by
   weighted least squares with ``g ≥ 0``.

The fit says how many electrons an image holds: with ``I₀ = −c/g`` (where the fitted
variance vanishes), a pixel of intensity ``I`` has the noise of ``(I − I₀)/g`` detected
electrons (Poisson-equivalent counts, read noise included as ``σ_r²`` extra counts).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from napari_pinned._util.intensity import check_image

__all__ = [
    "MIN_EDGE",
    "NoiseEstimate",
    "bin_stats",
    "estimate_noise",
    "noise_variance_map",
    "weighted_line",
]

#: The smallest frame edge (px) the fit works on.
MIN_EDGE = 8

_KERNEL_1D = np.array([1.0, -2.0, 1.0])
_KERNEL = np.outer(_KERNEL_1D, _KERNEL_1D) / 6.0  # unit L2 norm
_WEIGHTS = _KERNEL**2  # sums to one
_BINS = 16
# Pixels used for the fit at most; big frames are sampled in square regions of _REGION
# px, spread over the frame, so that an 8k² scan costs what a 1k² one does.
_MAX_SAMPLES = 1 << 20
_REGION = 256
# Residuals beyond this many robust standard deviations of their bin are outliers.
_OUTLIER_SIGMAS = 6.0
# Fraction of the largest squared residuals ignored for the first, robust scale.
_TRIM = 0.001
# Low quantile of r² kept per bin for diagnostics, and that quantile of χ² with one
# degree of freedom (r² / σ² for Gaussian r): the 25th percentile is 0.1015.
_LOW_QUANTILE = 0.25
_CHI2_LOW_QUANTILE = 0.101531
# The spectral cross-check: frames are cut to at most this edge, and the fit is scaled
# down when it exceeds the spectral floor by more than this factor.
_SPECTRAL_EDGE = 1024
_SPECTRAL_MARGIN = 1.2


@dataclass(frozen=True)
class NoiseEstimate:
    """A fitted Poisson–Gaussian noise model ``σ²(I) = gain · I + offset``.

    Attributes
    ----------
    gain : float
        Variance per unit intensity (the detector gain in image units per electron;
        0 for purely Gaussian noise).
    offset : float
        Variance at intensity 0 (may be negative when the detector adds an offset).
    median_intensity : float
        Median of the image, where :attr:`sigma` is quoted.
    mean_intensity : float
        Mean of the image.
    pixels : int
        Pixels the fit used.
    intensity_range : tuple of float
        5th and 95th percentiles of the image, over which the fit is meaningful.
    correlation : float
        The factor the fitted variance was scaled by to the noise one pixel carries
        when it is correlated (:func:`napari_pinned.noise.correlation.pixel_equivalent`);
        1 as fitted.
    """

    gain: float
    offset: float
    median_intensity: float
    mean_intensity: float
    pixels: int
    intensity_range: tuple[float, float] = (0.0, 0.0)
    correlation: float = 1.0

    def variance(self, intensity: np.ndarray | float) -> np.ndarray | float:
        """Noise variance at ``intensity`` (clipped at zero)."""
        return np.maximum(self.gain * np.asarray(intensity, np.float64) + self.offset, 0.0)

    @property
    def sigma(self) -> float:
        """Noise standard deviation at the median intensity, in image units."""
        return float(math.sqrt(float(self.variance(self.median_intensity))))

    @property
    def zero_level(self) -> float | None:
        """Intensity at which the fitted variance vanishes (the Poisson zero), or None
        for Gaussian noise."""
        return -self.offset / self.gain if self.gain > 0 else None

    @property
    def poisson_share(self) -> float:
        """How signal-dependent the noise is: the growth of the variance from the dark
        to the bright pixels (5th to 95th percentile) as a fraction of the bright
        pixels' variance.  Near 1 for shot noise on a dark background, 0 for Gaussian
        noise; unchanged by the detector's gain and offset."""
        low, high = self.intensity_range
        top = float(self.variance(high))
        if top <= 0:
            return 0.0
        return float(min(max(self.gain * (high - low), 0.0) / top, 1.0))

    @property
    def mean_counts(self) -> float | None:
        """Poisson-equivalent detected electrons per pixel, averaged over the image:
        ``(mean − I₀) / gain``.  None when the noise is not signal-dependent."""
        zero = self.zero_level
        if zero is None or self.poisson_share < 0.2:
            return None
        return max((self.mean_intensity - zero) / self.gain, 0.0)

    def scaled(self, scale: float, low: float) -> NoiseEstimate:
        """The same noise in the units of ``(x − low) / scale``."""
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        lo, hi = self.intensity_range
        return NoiseEstimate(
            gain=self.gain / scale,
            offset=(self.offset + self.gain * low) / scale**2,
            median_intensity=(self.median_intensity - low) / scale,
            mean_intensity=(self.mean_intensity - low) / scale,
            pixels=self.pixels,
            intensity_range=((lo - low) / scale, (hi - low) / scale),
            correlation=self.correlation,
        )

    def times(self, factor: float) -> NoiseEstimate:
        """A model with ``factor`` times the noise standard deviation (the "strength")."""
        f2 = float(factor) ** 2
        return dataclasses.replace(self, gain=self.gain * f2, offset=self.offset * f2)

    def correlated(self, factor: float) -> NoiseEstimate:
        """The variance times ``factor`` (the zero-frequency over the high-frequency
        power of correlated noise), recorded in :attr:`correlation`."""
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"correlation factor must be positive and finite, got {factor!r}")
        f = float(factor)
        return dataclasses.replace(
            self, gain=self.gain * f, offset=self.offset * f, correlation=self.correlation * f
        )

    def as_fitted(self) -> NoiseEstimate:
        """The fit before :meth:`correlated` scaled it (itself when it was not)."""
        return self if self.correlation == 1.0 else self.correlated(1.0 / self.correlation)

    def describe(self, units: str = "") -> str:
        """One line for the user, e.g. ``"≈ 12 e⁻/px (σ = 3.5 at the median)"``."""
        unit = f" {units}" if units else ""
        sigma = f"σ = {_fmt(self.sigma)}{unit} at the median intensity"
        counts = self.mean_counts
        if self.sigma == 0:
            return "no measurable noise"
        if counts is None:
            return f"Gaussian noise, {sigma}"
        return f"≈ {_fmt(counts)} e⁻/px (Poisson-equivalent), {sigma}"

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain numbers for JSON, with the derived quantities."""
        return {
            "gain": self.gain,
            "offset": self.offset,
            "sigma": self.sigma,
            "mean_counts": self.mean_counts,
            "median_intensity": self.median_intensity,
            "mean_intensity": self.mean_intensity,
            "pixels": self.pixels,
            "correlation": self.correlation,
        }


def _fmt(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{min(digits, 6)}f}"


def _residual_and_level(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual ``r``, local intensity ``m`` and ring intensity, on the valid interior."""
    r = ndimage.correlate(frame, _KERNEL, mode="nearest")[2:-2, 2:-2]
    m = ndimage.correlate(frame, _WEIGHTS, mode="nearest")[2:-2, 2:-2]
    box5 = ndimage.uniform_filter(frame, 5, mode="nearest")[2:-2, 2:-2] * 25.0
    box3 = ndimage.uniform_filter(frame, 3, mode="nearest")[2:-2, 2:-2] * 9.0
    ring = (box5 - box3) / 16.0
    return r, m, ring


def _robust_mean_square(r: np.ndarray) -> float:
    """Mean of r² without gross outliers: a trimmed mean (the largest 0.1 % left out)
    sets the scale, then residuals beyond a few standard deviations of it are dropped
    (Gaussian tails beyond 6 σ carry a negligible 2e-8 of the variance).  A trimmed
    mean rather than a median, because the residuals of a low-dose image are mostly
    zeros with a long tail, whose median says nothing about their variance."""
    sq = r * r
    if sq.size < 20:
        return float(sq.mean()) if sq.size else 0.0
    cut = sq.size - max(1, int(_TRIM * sq.size))
    first = float(np.partition(sq, cut - 1)[:cut].mean())
    if first <= 0:
        return float(sq.mean())
    keep = sq <= _OUTLIER_SIGMAS**2 * first
    return float(sq[keep].mean())


def estimate_noise(image: np.ndarray, *, mask: np.ndarray | None = None) -> NoiseEstimate:
    """Fit ``σ²(I) = g·I + c`` to a 2D image or a stack (all frames share the model).

    Parameters
    ----------
    image : numpy.ndarray
        2D image or ``(N, Y, X)`` stack of raw intensities (any real dtype), at least
        8×8 pixels.
    mask : numpy.ndarray, optional
        Boolean array of the image's shape: pixels to ignore (known hot or dead pixels).

    Returns
    -------
    NoiseEstimate
    """
    arr = check_image(image, name="image", ndim=(2, 3))
    frames = arr[None] if arr.ndim == 2 else arr
    if min(frames.shape[1:]) < MIN_EDGE:
        raise ValueError(f"image is too small to estimate its noise (shape {arr.shape})")
    if mask is not None and np.shape(mask) != arr.shape:
        raise ValueError(f"mask shape {np.shape(mask)} does not match image {arr.shape}")
    masks = None if mask is None else (np.asarray(mask, bool)[None] if arr.ndim == 2 else mask)
    rs, ms, rings, values = [], [], [], []
    budget = max(_MAX_SAMPLES // len(frames), _REGION**2)
    for i, frame in enumerate(frames):
        for rows, cols in _regions(frame.shape, budget):
            part = np.asarray(frame[rows, cols], np.float64)
            r, m, ring = _residual_and_level(part)
            # Exactly flat neighbourhoods (masks, saturation, padding) hold no detector
            # noise: they would pull the fit towards zero.
            valid = _not_flat(part)
            if masks is not None:
                region = masks[i][rows, cols]
                bad = ndimage.binary_dilation(region, np.ones((5, 5), bool))[2:-2, 2:-2]
                valid &= ~bad
            rs.append(r[valid])
            ms.append(m[valid])
            rings.append(ring[valid])
            values.append(part.ravel())
    r = np.concatenate(rs)
    m = np.concatenate(ms)
    ring = np.concatenate(rings)
    if r.size > _MAX_SAMPLES:
        # A regular subsample: as good as a random one for independent noise, and free.
        step = -(-r.size // _MAX_SAMPLES)
        r, m, ring = r[::step], m[::step], ring[::step]
    sample = arr if arr.size <= 4 * _MAX_SAMPLES else np.concatenate(values)
    p5, median, p95 = (float(v) for v in np.percentile(sample, (5, 50, 95)))
    mean = float(np.mean(sample, dtype=np.float64))
    if r.size < 50:
        # (Nearly) everything is exactly flat: no measurable noise.
        return NoiseEstimate(0.0, 0.0, median, mean, int(r.size), (p5, p95))
    gain, offset = _fit_line(r, m, ring)
    gain, offset = _spectral_check(frames, masks, gain, offset)
    return NoiseEstimate(gain, offset, median, mean, int(r.size), (p5, p95))


def _regions(shape: tuple[int, int], budget: int) -> list[tuple[slice, slice]]:
    """The whole frame, or a regular grid of square regions holding about ``budget``
    pixels spread over it (the noise fit needs a million pixels, not all of an 8k²
    scan)."""
    h, w = shape
    if h * w <= budget or min(h, w) <= _REGION:
        return [(slice(None), slice(None))]
    per_axis = max(1, math.ceil(math.sqrt(budget / _REGION**2)))
    tops = np.linspace(0, h - _REGION, per_axis).astype(int)
    lefts = np.linspace(0, w - _REGION, per_axis).astype(int)
    return [
        (slice(int(t), int(t) + _REGION), slice(int(u), int(u) + _REGION))
        for t in np.unique(tops)
        for u in np.unique(lefts)
    ]


def _not_flat(frame: np.ndarray) -> np.ndarray:
    """Valid-interior mask of pixels whose 5×5 neighbourhood is not exactly constant."""
    high = ndimage.maximum_filter(frame, 5, mode="nearest")[2:-2, 2:-2]
    low = ndimage.minimum_filter(frame, 5, mode="nearest")[2:-2, 2:-2]
    return high > low


def _spectral_check(
    frames: np.ndarray, masks: np.ndarray | None, gain: float, offset: float
) -> tuple[float, float]:
    """Scale the fit down to the spectral noise floor when it lies clearly above it.

    Noise is white; a crystal's signal sits in a few Bragg reflections, so the median
    power of the frequencies that are high along both axes (the kernel's own band,
    free of the edge cross and of line offsets) is the noise alone even where sharp,
    coarsely sampled columns leak into the pixel residual.  That median of
    exponentially distributed powers is ln 2 times their mean (Percival & Walden,
    "Spectral analysis for physical applications", 1993), the Hann-weighted mean noise
    variance.  Only a lower floor is used: detector noise correlated along the scan
    lowers these frequencies, and the pixel fit is then kept.
    """
    if gain <= 0 and offset <= 0:
        return gain, offset
    spectral, fitted = [], []
    for i, frame in enumerate(frames[:4]):
        h, w = frame.shape
        eh, ew = min(h, _SPECTRAL_EDGE), min(w, _SPECTRAL_EDGE)
        top, left = (h - eh) // 2, (w - ew) // 2
        crop = frame[top : top + eh, left : left + ew].astype(np.float64)
        valid = np.zeros(crop.shape, bool)
        valid[2:-2, 2:-2] = _not_flat(crop)
        if masks is not None:
            valid &= ~masks[i][top : top + eh, left : left + ew]
        window = np.outer(np.hanning(eh), np.hanning(ew))
        weights = window**2
        centred = (crop - np.sum(crop * window) / np.sum(window)) * window
        power = np.abs(sfft.rfft2(centred)) ** 2 / np.sum(weights)
        fy = np.abs(np.fft.fftfreq(eh))[:, None]
        fx = np.fft.rfftfreq(ew)[None, :]
        band = np.broadcast_to((fy > 0.25) & (fx > 0.25), power.shape)
        if band.sum() < 64:
            return gain, offset
        spectral.append(float(np.median(power[band])) / math.log(2.0))
        variance = np.where(valid, np.maximum(gain * crop + offset, 0.0), 0.0)
        fitted.append(float(np.sum(weights * variance) / np.sum(weights)))
    floor, fit = float(np.mean(spectral)), float(np.mean(fitted))
    if fit <= 0 or fit <= _SPECTRAL_MARGIN * floor:
        return gain, offset
    factor = floor / fit
    return gain * factor, offset * factor


def _fit_line(r: np.ndarray, m: np.ndarray, ring: np.ndarray) -> tuple[float, float]:
    """Weighted least-squares fit of bin variances against bin intensities, g ≥ 0."""
    stats = bin_stats(r, m, ring)
    if stats is None:
        return 0.0, _robust_mean_square(r)
    x, v_mean, _v_low, n = stats
    return weighted_line(x, v_mean, n)


def bin_stats(
    r: np.ndarray, m: np.ndarray, ring: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Per intensity bin: mean intensity, robust mean square, low-quantile variance and
    pixel count; None when the image has (almost) one intensity level."""
    edges = np.unique(np.quantile(ring, np.linspace(0.0, 1.0, _BINS + 1)))
    if edges.size < 3:
        return None
    index = np.clip(np.searchsorted(edges, ring, side="right") - 1, 0, edges.size - 2)
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(edges.size))
    rows = []
    for b in range(edges.size - 1):
        sel = order[bounds[b] : bounds[b + 1]]
        if sel.size < 50:
            continue
        sq = r[sel] ** 2
        k = int(_LOW_QUANTILE * (sq.size - 1))
        low = float(np.partition(sq, k)[k]) / _CHI2_LOW_QUANTILE
        rows.append((float(m[sel].mean()), _robust_mean_square(r[sel]), low, sel.size))
    if len(rows) < 2:
        return None
    x, v_mean, v_low, n = (np.array(col, np.float64) for col in zip(*rows, strict=True))
    return x, v_mean, v_low, n


def weighted_line(x: np.ndarray, y: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of y on x, slope ≥ 0; a variance estimated from n
    samples has a standard error ∝ y / sqrt(n)."""
    # 1e-150: its square is still a normal float64.
    w = n / np.maximum(y, 1e-150) ** 2
    w = w / w.sum()
    if np.ptp(x) <= 0:
        return 0.0, float(np.sum(w * y))
    xm, ym = float(np.sum(w * x)), float(np.sum(w * y))
    slope = float(np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2))
    if slope <= 0:
        return 0.0, max(ym, 0.0)
    return slope, ym - slope * xm


def noise_variance_map(
    image: np.ndarray, estimate: NoiseEstimate, sigma: float = 1.5
) -> np.ndarray:
    """Per-pixel noise variance of a 2D image under ``estimate``, from its local mean.

    The expected intensity of a pixel is unknown; a Gaussian-weighted mean of its
    neighbourhood (``sigma`` pixels) stands in for it.
    """
    arr = np.asarray(image, np.float64)
    local = ndimage.gaussian_filter(arr, sigma, mode="reflect") if sigma > 0 else arr
    return np.asarray(estimate.variance(local), np.float64)
