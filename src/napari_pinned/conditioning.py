"""How an image becomes the network's input, and how its output becomes an image.

Three steps, the same in training and in inference:

1. **Outlier repair.**  A hot, dead or saturated pixel is one that lies far outside the
   range of its eight neighbours — further than the noise and the neighbours' own
   spread allow.  Band-limited STEM images cannot have such isolated pixels, so they
   are replaced by the median of their neighbours (and stay repaired in the output).
2. **Robust normalisation.**  The image is mapped linearly so that the 1st and 99th
   percentiles of a lightly smoothed copy become 0 and 1 (model units).  Percentiles
   ignore a few extreme pixels, and being linear statistics they make the whole chain
   equivariant to detector gain and offset: ``f(a·x + b) = a·f(x) + b`` for a > 0.
3. **Noise map** (noise-conditioned models).  The Poisson–Gaussian model fitted by
   :func:`napari_pinned.noise_level.estimate_noise` gives each pixel's noise standard
   deviation, in model units, from its local mean.  The network gets it as a second
   channel and returns ``x + σ · f(x, σ)``: with no noise it is the identity, and a
   "strength" factor scales σ to denoise less or more.

Models trained with the paper's protocol (``normalization="range"``) keep the paper's
fixed 8-bit convention for images that already fit it; other images get the robust
mapping onto the same scale, and their input is clipped to a margin around it so that
an outlier cannot push the network far outside what it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_pinned.intensity import PAPER_RANGE, UNIT_RANGE
from napari_pinned.noise_level import NoiseEstimate, estimate_noise

__all__ = [
    "NORMALIZATIONS",
    "NormState",
    "Prepared",
    "find_outliers",
    "finish",
    "noise_map",
    "normalization_range",
    "prepare",
    "repair_outliers",
]

#: How images are mapped to model units (see :func:`normalization_range`).
NORMALIZATIONS = ("range", "percentile", "robust")
#: Percentiles of the smoothed image that map to 0 and 1 in ``"robust"`` normalisation.
ROBUST_PERCENTILES = (1.0, 99.0)
#: The same for the robust fallback of ``"range"``: the paper's images span their
#: columns' full height, so nearly the whole range is used.
RANGE_PERCENTILES = (0.1, 99.9)
#: Raw percentiles of ``"percentile"`` normalisation (models written before "robust").
PERCENTILES = (0.5, 99.5)
#: Percentiles are taken of the 3×3 median of the frame: it ignores isolated outliers
#: and lowers the noise, so that neither sets the range.  Frames larger than this many
#: pixels take the median at this many random pixels (fixed seed) instead of everywhere.
MEDIAN_SAMPLES = 1 << 20
#: Model-unit margin the input of a ``"range"`` model is clipped to, beyond [0, 1].
RANGE_CLIP = (-0.1, 1.1)
#: A pixel is an outlier beyond this many noise standard deviations outside the range
#: of its neighbours (Poisson tails at 0.3 e⁻/px reach 10 σ with probability ~1e-6).
OUTLIER_SIGMAS = 10.0
#: A flagged pixel must also exceed its neighbours by this many times their own lift
#: above the surrounding ring: ~1 for a column sampled at 2–3 px per probe FWHM, ~4 at
#: 1.5 px, unbounded for a hot pixel.
OUTLIER_LIFT = 8.0
#: Smoothing (pixels) of the local mean from which the noise map is computed.
NOISE_MAP_SMOOTHING = 1.5
#: Floor of the noise map, as a fraction of its root-mean-square value, so that dark
#: pixels of a Poisson image (variance near zero) are not left untouched.
NOISE_MAP_FLOOR = 0.1

_RING = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], bool)


@dataclass(frozen=True)
class NormState:
    """``image = low + (high − low) · model_units`` for one frame.

    ``constant`` marks a frame without contrast: it is passed through unchanged.
    """

    mode: str
    low: float
    high: float
    constant: bool = False

    @property
    def scale(self) -> float:
        """Image units per model unit."""
        return self.high - self.low


@dataclass(frozen=True)
class Prepared:
    """One frame made ready for the network.

    Attributes
    ----------
    channels : numpy.ndarray
        ``(C, Y, X)`` float32 network input: the normalised image, and for
        noise-conditioned models the noise map.
    state : NormState
        How to map the output back.
    noise : NoiseEstimate or None
        The frame's noise, in image units (before the strength factor).
    outliers : numpy.ndarray
        Boolean ``(Y, X)`` mask of repaired pixels.
    repaired : numpy.ndarray
        The frame after outlier repair (float64), what a constant frame returns.
    """

    channels: np.ndarray
    state: NormState
    noise: NoiseEstimate | None
    outliers: np.ndarray
    repaired: np.ndarray


def find_outliers(
    frame: np.ndarray, noise: NoiseEstimate, threshold: float = OUTLIER_SIGMAS
) -> np.ndarray:
    """Boolean mask of hot, dead or saturated single pixels of a 2D frame.

    A pixel is flagged when it exceeds the largest of its eight neighbours (or falls
    below the smallest) by more than ``threshold`` noise standard deviations plus the
    neighbours' own spread, *and* by far more than the neighbours stand out from the
    ring of pixels around them.  The second test keeps the columns of a coarsely
    sampled image: a column one pixel wide still lifts its neighbours above the
    background (the probe's tails), a hot pixel does not.  The noise is never taken
    below one electron's worth (``gain``) nor a tenth of the noise at the median, so
    that a few counts on a dark background of a low-dose image are not mistaken for
    hot pixels.
    """
    x = np.asarray(frame, np.float64)
    high = ndimage.maximum_filter(x, footprint=_RING, mode="reflect")
    low = ndimage.minimum_filter(x, footprint=_RING, mode="reflect")
    spread = high - low
    floor = max(noise.gain**2, (0.1 * noise.sigma) ** 2)
    sigma = np.sqrt(np.maximum(noise.variance(0.5 * (high + low)), floor))
    margin = threshold * sigma + spread
    neighbours = (ndimage.uniform_filter(x, 3, mode="reflect") * 9.0 - x) / 8.0
    box5 = ndimage.uniform_filter(x, 5, mode="reflect") * 25.0
    ring = (box5 - ndimage.uniform_filter(x, 3, mode="reflect") * 9.0) / 16.0
    lift = neighbours - ring  # how much the neighbours stand out from their surroundings
    hot = (x > high + margin) & (x - neighbours > OUTLIER_LIFT * np.maximum(lift, 0.0))
    dead = (x < low - margin) & (neighbours - x > OUTLIER_LIFT * np.maximum(-lift, 0.0))
    return hot | dead


def repair_outliers(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace masked pixels by the median of their unmasked neighbours (float64)."""
    x = np.asarray(frame, np.float64).copy()
    if not mask.any():
        return x
    filled = np.where(mask, np.nan, x)
    ys, xs = np.nonzero(mask)
    for y, c in zip(ys, xs, strict=True):
        window = filled[max(y - 1, 0) : y + 2, max(c - 1, 0) : c + 2]
        values = window[np.isfinite(window)]
        x[y, c] = float(np.median(values)) if values.size else float(np.nanmedian(filled))
    return x


def normalization_range(frame: np.ndarray, mode: str) -> NormState:
    """The linear map of one frame to model units.

    ``"robust"``: the 1st–99th percentiles of the frame's 3×3 median.
    ``"range"``: the paper's 0–255 for uint8 frames and frames already inside [0, 255],
    0–1 for float frames inside [0, 1], else the 0.1th–99.9th percentiles of the
    3×3 median.  ``"percentile"``: the raw 0.5th–99.5th percentiles.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; use one of {list(NORMALIZATIONS)}")
    x = np.asarray(frame)
    if mode == "range":
        fixed = _fixed_convention(x)
        if fixed is not None:
            return NormState(mode, *fixed)
    if mode == "percentile":
        low, high = (float(v) for v in np.percentile(x, PERCENTILES))
    else:
        q = ROBUST_PERCENTILES if mode == "robust" else RANGE_PERCENTILES
        low, high = (float(v) for v in np.percentile(_median3(x), q))
    if not high > low or not math.isfinite(high - low):
        return _constant_state(x, mode)
    return NormState(mode, low, high)


def _median3(x: np.ndarray) -> np.ndarray:
    """3×3 medians of a frame: everywhere, or at a fixed random subset of big frames."""
    data = x.astype(np.float64, copy=False)
    h, w = data.shape
    if data.size <= MEDIAN_SAMPLES:
        padded = np.pad(data, 1, mode="reflect")
        shifted = [padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
        return np.median(np.stack(shifted), axis=0)
    rng = np.random.default_rng(0)
    ys = rng.integers(0, h, MEDIAN_SAMPLES)
    xs = rng.integers(0, w, MEDIAN_SAMPLES)
    neighbours = [
        data[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    ]
    return np.median(np.stack(neighbours), axis=0)


def _fixed_convention(x: np.ndarray) -> tuple[float, float] | None:
    if x.dtype == np.uint8:
        return PAPER_RANGE
    lo, hi = float(np.min(x)), float(np.max(x))
    if np.issubdtype(x.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return UNIT_RANGE if hi > lo else None
    if lo >= PAPER_RANGE[0] and hi <= PAPER_RANGE[1] and hi > lo:
        return PAPER_RANGE
    return None


def _constant_state(x: np.ndarray, mode: str) -> NormState:
    """A frame whose robust range is empty: (nearly) constant."""
    level = float(np.median(x))
    spread = float(np.max(x)) - float(np.min(x))
    if spread > 0 and math.isfinite(spread):
        # Constant apart from a few pixels: keep them in range, treat as contrast.
        return NormState(mode, level - spread, level + spread)
    return NormState(mode, level, level + max(1.0, abs(level)), constant=True)


def noise_map(normalised: np.ndarray, noise: NoiseEstimate, strength: float = 1.0) -> np.ndarray:
    """Per-pixel noise standard deviation (model units) of a normalised frame.

    ``noise`` must already be in model units (:meth:`NoiseEstimate.scaled`).
    """
    local = ndimage.gaussian_filter(
        np.asarray(normalised, np.float64), NOISE_MAP_SMOOTHING, mode="reflect"
    )
    variance = np.asarray(noise.variance(local), np.float64)
    rms2 = float(np.mean(variance))
    variance = np.maximum(variance, (NOISE_MAP_FLOOR**2) * rms2)
    return (float(strength) * np.sqrt(variance)).astype(np.float32)


def prepare(
    frame: np.ndarray,
    normalization: str,
    *,
    conditioned: bool,
    strength: float = 1.0,
    noise: NoiseEstimate | None = None,
) -> Prepared:
    """Make one 2D frame ready for a network (see the module docstring).

    Parameters
    ----------
    frame : numpy.ndarray
        2D frame, any real dtype, finite.
    normalization : {"range", "percentile", "robust"}
        The model's normalisation.
    conditioned : bool
        Whether the model takes a noise map (repairs outliers and estimates noise).
    strength : float
        Factor on the noise standard deviation given to a conditioned model.
    noise : NoiseEstimate, optional
        The frame's noise in image units, if known; estimated from the frame otherwise.
    """
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"strength must be a non-negative number, got {strength!r}")
    raw = np.asarray(frame)
    x = raw.astype(np.float64)
    outliers = np.zeros(x.shape, bool)
    estimate = noise
    if conditioned:
        if estimate is None:
            estimate = estimate_noise(x)
        outliers = find_outliers(x, estimate)
        if outliers.any():
            x = repair_outliers(x, outliers)
            if noise is None:
                estimate = estimate_noise(x, mask=outliers)
    state = normalization_range(x if outliers.any() else raw, normalization)
    units = ((x - state.low) / state.scale).astype(np.float32)
    if normalization == "range" and not conditioned and _fixed_convention(raw) is None:
        np.clip(units, *RANGE_CLIP, out=units)
    channels = [units]
    if conditioned:
        assert estimate is not None
        if state.constant:
            channels.append(np.zeros_like(units))
        else:
            channels.append(noise_map(units, estimate.scaled(state.scale, state.low), strength))
    return Prepared(np.stack(channels), state, estimate, outliers, x)


def finish(output: np.ndarray, prepared: Prepared, dtype: np.dtype | None = None) -> np.ndarray:
    """Map a network output (model units) back to the frame's intensity scale.

    A constant frame comes back unchanged; frames of unsigned integer ``dtype`` (raw
    detector counts) come back non-negative.
    """
    state = prepared.state
    if state.constant:
        out = prepared.repaired.astype(np.float32)
    else:
        out = (np.asarray(output, np.float64) * state.scale + state.low).astype(np.float32)
    if dtype is not None and np.issubdtype(dtype, np.unsignedinteger):
        np.maximum(out, 0.0, out=out)
    return out
