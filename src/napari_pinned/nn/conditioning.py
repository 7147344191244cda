"""How an image becomes the network's input, and how its output becomes an image.

Three steps, the same in training and in inference:

1. **Outlier repair.**  A hot, dead or saturated pixel is one that lies far outside the
   range of its eight neighbours — further than the noise and the neighbours' own
   spread allow.  Band-limited STEM images cannot have such isolated pixels, so they
   are replaced by the median of their neighbours (and stay repaired in the output).
   Pixels far beyond the whole frame's range are found in pairs, lines, small blocks
   and on the frame's edge too, unless their surroundings rise towards them as a real
   bright feature's do.
2. **Robust normalisation.**  The image is mapped linearly so that the 1st and 99th
   percentiles of the frame's 3×3 median become 0 and 1 (model units).  Percentiles
   ignore a few extreme pixels, and being order statistics they make the whole chain
   equivariant to detector gain and offset: ``f(a·x + b) = a·f(x) + b`` for a > 0.
3. **Noise map** (noise-conditioned models).  The Poisson–Gaussian model fitted by
   :func:`napari_pinned.noise.estimate.estimate_noise`, scaled to the
   noise one pixel carries when the noise is correlated along the scan
   (:func:`napari_pinned.noise.correlation.pixel_equivalent`), gives each pixel's noise
   standard deviation, in model units, from its local mean.  The network gets it as a second
   channel and returns ``x + σ · f(x, σ)``: with no noise it is the identity, and a
   "strength" factor scales σ to denoise less or more.
4. **Lattice prior** (models with ``conditioning="noise-map+lattice"``).  The repaired
   frame's lattice-averaged copy (:func:`napari_pinned.nn.lattice_prior.lattice_average`),
   in model units, as a third channel: measured on the whole frame, so that a region or
   a tile gets the part of the frame's prior that covers it.

Models trained with the paper's protocol (``normalization="range"``) keep the paper's
fixed 8-bit convention (or the unit range) for images recorded in it — clipped at both
of its ends, as 8-bit recordings and CDN images are; other images, whatever their
dtype, get the robust mapping onto the same scale, so that the same data as uint16
counts, as float electrons or normalised to [0, 1] give outputs in their own scale.
Their input is clipped to a margin around it so that an outlier cannot push the network
far outside what it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_pinned._util.checks import check_strength
from napari_pinned._util.intensity import CLIPPED_FRACTION, PAPER_RANGE, UNIT_RANGE, clipped_ends
from napari_pinned._util.memory import row_bands
from napari_pinned.nn.lattice_prior import lattice_average
from napari_pinned.noise.correlation import pixel_equivalent
from napari_pinned.noise.estimate import NoiseEstimate, estimate_noise
from napari_pinned.settings import NORMALIZATIONS

__all__ = [
    "REGION_CONTEXT",
    "FrameStats",
    "NormState",
    "Prepared",
    "counts_non_negative",
    "defect_limits",
    "find_outliers",
    "finish",
    "frame_statistics",
    "measure_noise",
    "noise_map",
    "normalization_range",
    "prepare",
    "prepare_region",
    "repair_outliers",
]

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
MEDIAN_SAMPLES = 1 << 18
#: A frame is in a fixed convention of ``"range"`` (the paper's 0–255, or 0–1) when it
#: is clipped at both ends of it (:func:`napari_pinned._util.intensity.clipped_ends`:
#: this fraction of its pixels exactly at each), as 8-bit recordings and CDN images
#: are; a dim image inside [0, 255] is not in the paper's convention.
CONVENTION_CLIPPED = CLIPPED_FRACTION
#: Model-unit margin the input of a ``"range"`` model is clipped to, beyond [0, 1].
RANGE_CLIP = (-0.1, 1.1)
#: A pixel is an outlier beyond this many noise standard deviations outside the range
#: of its neighbours (Poisson tails at 0.3 e⁻/px reach 10 σ with probability ~1e-6).
OUTLIER_SIGMAS = 10.0
#: A flagged pixel must also exceed its neighbours by this many times their own lift
#: above the surrounding ring: ~1 for a column sampled at 2–3 px per probe FWHM, ~4 at
#: 1.5 px, unbounded for a hot pixel.
OUTLIER_LIFT = 8.0
#: A pixel is far above the frame's range ("gross": a detector defect, not an electron
#: count) when it lies more than this many times the frame's robust range (the
#: 0.1th–99.9th percentiles of its 3×3 median) plus ``OUTLIER_SIGMAS`` noise standard
#: deviations above that range.  Such pixels are tested in groups (pairs, lines,
#: blocks) and on the frame's edge, where the test of single pixels cannot see them.
#: (Not below: a dead pixel reads what vacuum and holes read, near the detector's zero.)
GROSS_SPAN = 1.0
#: Gross pixels are tested so only while they are rare, at most this fraction of the
#: frame not counting saturated pixels (a hot line across 256² px is 0.4 %): many pixels
#: that far above the 3×3 median are a lattice of columns narrower than a pixel.
GROSS_SPARSE = 0.01
#: A frame is saturated when at least this fraction of its pixels holds exactly its
#: largest value (a detector's ceiling repeats; a real maximum is one or a few pixels):
#: those pixels are tested in groups too, and left out of the noise fit that sets the
#: tests' noise level (they carry none) ...
SATURATED = 0.01
#: ... but not when more than this fraction does: that is the image itself clipped (a
#: low-count image at its top count, a bright area), not scattered defects.
SATURATED_MOST = 0.1
#: A saturated pixel is tested only with at most this many saturated neighbours (of
#: eight): scattered ones, not the inside or the straight edge of a clipped area.
SATURATED_NEIGHBOURS = 3
#: How far (pixels) the group test looks for surroundings that are neither gross nor
#: saturated: the centre of a 5×5 block of them still finds some.
GROUP_REACH = 3
#: Rounds of the repair: each fills the flagged pixels that have a valid or repaired
#: neighbour (a 5×5 block takes three); the rest get the frame's median.
REPAIR_ROUNDS = 3
#: Smoothing (pixels) of the local mean from which the noise map is computed.
NOISE_MAP_SMOOTHING = 1.5
#: Floor of the noise map, as a fraction of its root-mean-square value, so that dark
#: pixels of a Poisson image (variance near zero) are not left untouched.
NOISE_MAP_FLOOR = 0.1

#: Pixels of context :func:`prepare_region` needs beyond a region's inner edges to give
#: the whole frame's values inside it: the outlier tests read up to ``GROUP_REACH + 1``
#: px around a pixel (and whether a saturated pixel there is scattered, 1 px more), each
#: round of the repair its 3×3 neighbours (1 px a round), and the noise map smooths the
#: repaired image with a Gaussian that scipy truncates at 4 σ (6 px more).
REGION_CONTEXT = GROUP_REACH + 2 + REPAIR_ROUNDS + int(4.0 * NOISE_MAP_SMOOTHING + 0.5)

#: Offsets of the eight neighbours, and of the 16 pixels of the ring around them.
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
_RING5 = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2)


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
        ``(C, Y, X)`` float32 network input: the normalised image, for
        noise-conditioned models the noise map, and for lattice models the prior.
    state : NormState
        How to map the output back.
    noise : NoiseEstimate or None
        The frame's noise, in image units (before the strength factor), for
        noise-conditioned models.
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


@dataclass(frozen=True)
class FrameStats:
    """What :func:`prepare` measures over a whole frame before it maps any pixel.

    Measured once per frame by :func:`frame_statistics` and applied to any region of
    it by :func:`prepare_region`, so that tiles, dask chunks and the whole frame all see
    the same mapping.

    Attributes
    ----------
    normalization : str
        The model's normalisation.
    conditioned : bool
        Whether the model takes a noise map.
    state : NormState
        The frame's map to model units.
    noise : NoiseEstimate or None
        The frame's noise in image units (noise-conditioned models), after repair.
    detection : NoiseEstimate
        The noise the outlier test used (measured before repair, or given).
    limits : tuple of float
        :func:`defect_limits` of the frame.
    clip : bool
        Whether model units are clipped to :data:`RANGE_CLIP`.
    floor_variance : float
        Floor of the noise map's variance in model units² (0 without a noise map).
    fill : float
        Repair value of an outlier none of whose neighbours is valid.
    outliers : int
        Outlier pixels repaired in the frame.
    prior : numpy.ndarray or None
        The whole frame's lattice prior in model units (float32) for models that take
        it, else None.
    """

    normalization: str
    conditioned: bool
    state: NormState
    noise: NoiseEstimate | None
    detection: NoiseEstimate
    limits: tuple[float, float]
    clip: bool
    floor_variance: float
    fill: float
    outliers: int
    prior: np.ndarray | None = field(default=None, compare=False, repr=False)


def find_outliers(
    frame: np.ndarray,
    noise: NoiseEstimate,
    threshold: float = OUTLIER_SIGMAS,
    *,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Boolean mask of hot, dead or saturated pixels of a 2D frame.

    A pixel is flagged when it exceeds the largest of its eight neighbours (or falls
    below the smallest) by more than ``threshold`` noise standard deviations plus the
    neighbours' own spread, *and* by far more than the neighbours stand out from the
    ring of pixels around them.  The second test keeps the columns of a coarsely
    sampled image: a column one pixel wide still lifts its neighbours above the
    background (the probe's tails), a hot pixel does not.  The noise is never taken
    below one electron's worth (``gain``) nor a tenth of the noise at the median, so
    that a few counts on a dark background of a low-dose image are not mistaken for
    hot pixels.

    Pixels far above the frame's range or at its saturation level (``limits``, by
    default :func:`defect_limits` of the frame; give the whole frame's when ``frame``
    is a region of it) are also found in pairs, lines, blocks and on the frame's edge
    (:func:`_group_defects`).
    """
    x = np.asarray(frame, np.float64)
    mask = _isolated(x, noise, threshold)
    gross, saturated = defect_limits(x, noise, threshold) if limits is None else limits
    suspect = x > gross
    if math.isfinite(saturated):
        suspect |= _scattered(x >= saturated)
    if suspect.any():
        mask |= _group_defects(x, suspect, noise, threshold)
    return mask


def defect_limits(
    frame: np.ndarray, noise: NoiseEstimate, threshold: float = OUTLIER_SIGMAS
) -> tuple[float, float]:
    """``(gross, saturated)``: above ``gross`` a pixel of ``frame`` is far outside its
    range (:data:`GROSS_SPAN`; infinite when more than :data:`GROSS_SPARSE` of the frame
    lies above), at ``saturated`` the frame is saturated (:data:`SATURATED`; infinite
    when it is not) and its scattered saturated pixels are tested."""
    x = np.asarray(frame, np.float64)
    return _limits(x, noise, threshold, _median3(x))


def _limits(
    x: np.ndarray, noise: NoiseEstimate, threshold: float, medians: np.ndarray
) -> tuple[float, float]:
    """:func:`defect_limits` of ``x`` (float64), given its :func:`_median3`."""
    low, high = (float(v) for v in np.percentile(medians, RANGE_PERCENTILES))
    above = threshold * math.sqrt(max(float(noise.variance(high)), _noise_floor(noise)))
    gross = high + GROSS_SPAN * (high - low) + above
    saturated = _saturation(x)
    # Rare, not counting the saturated pixels (a ceiling far above the image's range
    # makes every one of them gross, however many).
    if np.count_nonzero((x > gross) & (x < saturated)) > GROSS_SPARSE * x.size:
        gross = math.inf
    return gross, saturated


def _saturation(x: np.ndarray) -> float:
    """The frame's largest value if :data:`SATURATED` to :data:`SATURATED_MOST` of it
    holds it, else inf."""
    top = float(np.max(x))
    count = np.count_nonzero(x == top)
    return top if SATURATED * x.size <= count <= SATURATED_MOST * x.size else math.inf


def _scattered(saturated: np.ndarray) -> np.ndarray:
    """Saturated pixels with at most :data:`SATURATED_NEIGHBOURS` saturated neighbours."""
    h, w = saturated.shape
    padded = np.pad(saturated, 1).astype(np.uint8)
    count = sum(padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _NEIGHBOURS)
    return saturated & (count <= SATURATED_NEIGHBOURS)


def _noise_floor(noise: NoiseEstimate) -> float:
    """The least noise variance the tests assume: one electron's worth, or a tenth of
    the noise at the median (see :func:`find_outliers`)."""
    return max(noise.gain**2, (0.1 * noise.sigma) ** 2)


def _isolated(x: np.ndarray, noise: NoiseEstimate, threshold: float) -> np.ndarray:
    """The test of single pixels against their eight neighbours (:func:`find_outliers`);
    edges mirrored as scipy's "reflect" does (the edge pixel repeated).  Run over bands
    of rows, so that its temporary arrays stay small however large the frame."""
    h = x.shape[0]
    mask = np.zeros(x.shape, bool)
    for band in row_bands(x.shape):
        # Rows start − 2 … stop + 1, mirrored at the frame's edges ("symmetric").
        rows = np.arange(band.start - 2, band.stop + 2)
        rows = np.where(rows < 0, -rows - 1, np.where(rows >= h, 2 * h - 1 - rows, rows))
        padded = np.pad(x[rows], ((0, 0), (2, 2)), mode="symmetric")
        mask[band] = _isolated_band(padded, noise, threshold)
    return mask


def _isolated_band(padded: np.ndarray, noise: NoiseEstimate, threshold: float) -> np.ndarray:
    """:func:`_isolated` of the rows of ``padded`` without its 2-px border."""
    h, w = padded.shape[0] - 4, padded.shape[1] - 4
    x = padded[2:-2, 2:-2]
    rings = [padded[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] for dy, dx in _NEIGHBOURS]
    high, low = rings[0].copy(), rings[0].copy()
    for shifted in rings[1:]:
        np.maximum(high, shifted, out=high)
        np.minimum(low, shifted, out=low)
    floor = _noise_floor(noise)
    least = threshold * np.sqrt(floor)
    # The margin is at least ``least``: only pixels beyond it need the full test.
    ys, xs = np.nonzero((x > high + least) | (x < low - least))
    mask = np.zeros(x.shape, bool)
    if ys.size == 0:
        return mask
    value, top, bottom = x[ys, xs], high[ys, xs], low[ys, xs]
    spread = top - bottom
    sigma = np.sqrt(np.maximum(noise.variance(0.5 * (top + bottom)), floor))
    margin = threshold * sigma + spread
    py, px = ys + 2, xs + 2
    neighbours = sum(padded[py + dy, px + dx] for dy, dx in _NEIGHBOURS) / 8.0
    ring = sum(padded[py + dy, px + dx] for dy, dx in _RING5) / 16.0
    lift = neighbours - ring  # how much the neighbours stand out from their surroundings
    hot = (value > top + margin) & (value - neighbours > OUTLIER_LIFT * np.maximum(lift, 0.0))
    dead = (value < bottom - margin) & (neighbours - value > OUTLIER_LIFT * np.maximum(-lift, 0.0))
    flagged = hot | dead
    mask[ys[flagged], xs[flagged]] = True
    return mask


def _group_defects(
    x: np.ndarray, suspect: np.ndarray, noise: NoiseEstimate, threshold: float
) -> np.ndarray:
    """Which of the ``suspect`` pixels are defects.

    For each, the nearest square ring around it (at most :data:`GROUP_REACH` px away)
    that holds pixels inside the frame and not suspect is its surroundings ``B``, the
    next ring out ``O``.  A real bright feature rises towards its core: its
    surroundings stand out from the ring beyond (``B − O``, the probe's tails).  The
    pixel is a defect when it exceeds ``B`` by more than ``threshold`` noise standard
    deviations and by more than :data:`OUTLIER_LIFT` times that rise per pixel of
    distance; a pixel with no such surroundings within reach (the core of a large
    bright feature, or of a saturated one) is kept.
    """
    reach = GROUP_REACH + 1
    padded = np.pad(np.where(suspect, np.nan, x), reach, constant_values=np.nan)
    ys, xs = np.nonzero(suspect)
    value = x[ys, xs]
    floor = _noise_floor(noise)
    flagged = np.zeros(ys.size, bool)
    todo = np.ones(ys.size, bool)
    outer = _ring_means(padded, ys + reach, xs + reach, 1)
    for d in range(1, GROUP_REACH + 1):
        inner, outer = outer, _ring_means(padded, ys + reach, xs + reach, d + 1)
        found = todo & np.isfinite(inner)
        rise = inner - np.where(np.isfinite(outer), outer, inner)
        excess = value - inner
        sigma = np.sqrt(np.maximum(noise.variance(np.nan_to_num(inner)), floor))
        flagged |= (
            found
            & (excess > threshold * sigma)
            & (excess / d > OUTLIER_LIFT * np.maximum(rise, 0.0))
        )
        todo &= ~found
    mask = np.zeros(x.shape, bool)
    mask[ys[flagged], xs[flagged]] = True
    return mask


def _ring_means(padded: np.ndarray, py: np.ndarray, px: np.ndarray, d: int) -> np.ndarray:
    """Mean of the finite pixels on the square ring at distance ``d`` (NaN: none)."""
    total = np.zeros(py.size)
    count = np.zeros(py.size)
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            if max(abs(dy), abs(dx)) != d:
                continue
            values = padded[py + dy, px + dx]
            finite = np.isfinite(values)
            total += np.where(finite, values, 0.0)
            count += finite
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def repair_outliers(frame: np.ndarray, mask: np.ndarray, fill: float | None = None) -> np.ndarray:
    """Replace masked pixels by the median of their unmasked neighbours (float64).

    A block of masked pixels is filled from its edge inwards: each of
    :data:`REPAIR_ROUNDS` rounds fills the pixels that have an unmasked or already
    repaired neighbour.  A pixel left over gets ``fill``, by default the median of the
    unmasked pixels (give it when ``frame`` is only a region of the frame).
    """
    x = np.asarray(frame, np.float64).copy()
    mask = np.asarray(mask, bool)
    if not mask.any():
        return x
    return _repair_in_place(x, mask, _fill_value(x, mask) if fill is None else float(fill))


def _repair_in_place(x: np.ndarray, mask: np.ndarray, fill: float) -> np.ndarray:
    """:func:`repair_outliers` writing into ``x`` (float64); returns ``x``."""
    todo = mask.copy()
    for _ in range(REPAIR_ROUNDS):
        ys, xs = np.nonzero(todo)
        near = np.stack([_valid_at(x, todo, ys + dy, xs + dx) for dy, dx in _NEIGHBOURS], axis=1)
        median, ok = _row_medians(near)
        if not ok.any():
            break
        ys, xs = ys[ok], xs[ok]
        x[ys, xs] = median[ok]
        todo[ys, xs] = False
        if not todo.any():
            return x
    x[todo] = fill
    return x


def _valid_at(x: np.ndarray, todo: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``x`` at ``(ys, xs)``, NaN outside the frame and where a pixel awaits repair."""
    h, w = x.shape
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    cy, cx = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    return np.where(inside & ~todo[cy, cx], x[cy, cx], np.nan)


def _row_medians(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy's median of each row's finite values, and which rows have any."""
    ordered = np.sort(values, axis=1)  # NaN last
    count = np.count_nonzero(np.isfinite(ordered), axis=1)
    rows = np.arange(values.shape[0])
    lower = ordered[rows, np.maximum((count - 1) // 2, 0)]
    upper = ordered[rows, count // 2]
    return 0.5 * (lower + upper), count > 0


def _fill_value(x: np.ndarray, mask: np.ndarray) -> float:
    """Median of the unmasked pixels, or 0 when there are none."""
    valid = x[~mask]
    return float(np.median(valid)) if valid.size else 0.0


def normalization_range(frame: np.ndarray, mode: str) -> NormState:
    """The linear map of one frame to model units.

    ``"robust"``: the 1st–99th percentiles of the frame's 3×3 median.
    ``"range"``: the paper's 0–255 (or 0–1) for frames clipped at both of its ends
    (:data:`CONVENTION_CLIPPED`), else the 0.1th–99.9th percentiles of the 3×3 median;
    the dtype does not matter.  ``"percentile"``: the raw 0.5th–99.5th percentiles.
    """
    return _state(np.asarray(frame), mode)


def _state(x: np.ndarray, mode: str, medians: np.ndarray | None = None) -> NormState:
    """:func:`normalization_range`, given the frame's :func:`_median3` if known."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; use one of {list(NORMALIZATIONS)}")
    if mode == "range":
        fixed = _fixed_convention(x)
        if fixed is not None:
            return NormState(mode, *fixed)
    if mode == "percentile":
        low, high = (float(v) for v in np.percentile(x, PERCENTILES))
    else:
        q = ROBUST_PERCENTILES if mode == "robust" else RANGE_PERCENTILES
        medians = _median3(x) if medians is None else medians
        low, high = (float(v) for v in np.percentile(medians, q))
    if not high > low or not math.isfinite(high - low):
        return _constant_state(x, mode)
    return NormState(mode, low, high)


def _median3(x: np.ndarray) -> np.ndarray:
    """3×3 medians of a frame: everywhere, or at a fixed random subset of big frames (in
    no particular order: only their percentiles are used)."""
    data = x.astype(np.float64, copy=False)
    h, w = data.shape
    if data.size <= MEDIAN_SAMPLES:
        padded = np.pad(data, 1, mode="reflect")
        shifted = [padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
        return _middle(shifted)
    rng = np.random.default_rng(0)
    ys = rng.integers(0, h, MEDIAN_SAMPLES)
    xs = rng.integers(0, w, MEDIAN_SAMPLES)
    # Edges repeated (indices clipped: no padded copy of the frame); the samples read in
    # memory order (the same pixels, faster).
    ys, xs = np.divmod(np.sort(ys * w + xs), w)
    rows = [np.clip(ys + d, 0, h - 1) for d in (-1, 0, 1)]
    cols = [np.clip(xs + d, 0, w - 1) for d in (-1, 0, 1)]
    return _middle([data[r, c] for r in rows for c in cols])


def _middle(nine: list[np.ndarray]) -> np.ndarray:
    """The median of nine arrays, element by element (the fifth smallest: exact)."""
    return np.partition(np.stack(nine), 4, axis=0)[4]


def _fixed_convention(x: np.ndarray) -> tuple[float, float] | None:
    """The convention (0–1 or the paper's 0–255) a frame is clipped to at both ends."""
    ends = clipped_ends(x)
    return ends if ends in (UNIT_RANGE, PAPER_RANGE) else None


def _constant_state(x: np.ndarray, mode: str) -> NormState:
    """A frame whose robust range is empty: (nearly) constant."""
    level = float(np.median(x))
    spread = float(np.max(x)) - float(np.min(x))
    if spread > 0 and math.isfinite(spread):
        # Constant apart from a few pixels: keep them in range, treat as contrast.
        return NormState(mode, level - spread, level + spread)
    return NormState(mode, level, level + max(1.0, abs(level)), constant=True)


def noise_map(
    normalised: np.ndarray,
    noise: NoiseEstimate,
    strength: float = 1.0,
    *,
    floor_variance: float | None = None,
) -> np.ndarray:
    """Per-pixel noise standard deviation (model units) of a normalised frame.

    ``noise`` must already be in model units (:meth:`NoiseEstimate.scaled`).  The
    variance is floored at ``floor_variance``, by default :data:`NOISE_MAP_FLOOR`² times
    its mean over ``normalised`` (give the frame's when ``normalised`` is a region).
    """
    variance = _local_variance(normalised, noise)
    if floor_variance is None:
        floor_variance = _floor(variance)
    return _noise_channel(variance, floor_variance, strength)


def _local_variance(normalised: np.ndarray, noise: NoiseEstimate) -> np.ndarray:
    """:meth:`NoiseEstimate.variance` of the smoothed frame, computed in place."""
    # scipy filters in float64 whatever the input's dtype: no float64 copy needed.
    local = ndimage.gaussian_filter(
        np.asarray(normalised), NOISE_MAP_SMOOTHING, output=np.float64, mode="reflect"
    )
    local *= noise.gain
    local += noise.offset
    return np.maximum(local, 0.0, out=local)


def _floor(variance: np.ndarray) -> float:
    return (NOISE_MAP_FLOOR**2) * float(np.mean(variance))


def _noise_channel(
    variance: np.ndarray, floor_variance: float, strength: float, out: np.ndarray | None = None
) -> np.ndarray:
    """The noise map's standard deviations (float32, into ``out`` if given), computed
    in bands of rows: no float64 copy of the frame."""
    out = np.empty(variance.shape, np.float32) if out is None else out
    for rows in row_bands(variance.shape):
        part = np.maximum(variance[rows], floor_variance)
        out[rows] = float(strength) * np.sqrt(part, out=part)
    return out


def _input_channels(x: np.ndarray, state: NormState, clip: bool, count: int) -> np.ndarray:
    """The network's input: ``x`` in model units (float32, mapped in bands of rows) as
    the first of ``count`` channels, and room for the others."""
    channels = np.zeros((count, *x.shape), np.float32)
    units = channels[0]
    for rows in row_bands(x.shape):
        units[rows] = (x[rows] - state.low) / state.scale
    if clip:
        np.clip(units, *RANGE_CLIP, out=units)
    return channels


def _measure(
    frame: np.ndarray,
    normalization: str,
    conditioned: bool,
    noise: NoiseEstimate | None,
    lattice: bool = False,
) -> tuple[FrameStats, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Frame statistics and the whole frame's intermediate results:
    ``(stats, repaired, outlier mask, input channels without the noise map, noise-map
    variance)``."""
    raw = np.asarray(frame)
    x = raw.astype(np.float64)
    # Every model gets hot and dead pixels repaired (a model never saw such values);
    # only noise-conditioned ones use the noise estimate beyond that.
    if noise is not None:
        detection = noise
    else:
        # Saturated pixels carry no noise: left out of the fit, as repaired pixels are.
        saturated = x >= _saturation(x)
        detection = estimate_noise(x, mask=saturated if saturated.any() else None)
    medians = _median3(x)  # for the defect limits and, without defects, the mapping
    limits = _limits(x, detection, OUTLIER_SIGMAS, medians)
    outliers = find_outliers(x, detection, limits=limits)
    estimate = detection
    fill = 0.0
    if outliers.any():
        fill = _fill_value(x, outliers)
        x = _repair_in_place(x, outliers, fill)  # x is this function's own copy
        if noise is None and conditioned:
            estimate = estimate_noise(x, mask=outliers)
    if noise is None and conditioned:
        # Told the noise a pixel carries: the fit reads a detector's afterglow several
        # times too weak, and the model then leaves most of it (the outlier search above
        # keeps the fit, which is what single pixels stand out against).
        estimate = pixel_equivalent(estimate, x)
    if outliers.any():
        state = normalization_range(x, normalization)
    else:
        state = _state(raw, normalization, None if normalization == "percentile" else medians)
    clip = normalization == "range" and not conditioned and _fixed_convention(raw) is None
    lattice = lattice and conditioned
    channels = _input_channels(x, state, clip, 1 + conditioned + lattice)
    variance = None
    floor = 0.0
    if conditioned and not state.constant:
        variance = _local_variance(channels[0], estimate.scaled(state.scale, state.low))
        floor = _floor(variance)
    prior = None
    if lattice and not state.constant:
        # Of the repaired frame: one hot pixel would spread over every component.  Its
        # own array: the statistics keep it, and a view would keep every channel alive.
        prior = (lattice_average(x) - np.float32(state.low)) / np.float32(state.scale)
        channels[2] = prior
    stats = FrameStats(
        normalization=normalization,
        conditioned=conditioned,
        state=state,
        noise=estimate if conditioned else None,
        detection=detection,
        limits=limits,
        clip=clip,
        floor_variance=floor,
        fill=fill,
        outliers=int(outliers.sum()),
        prior=prior,
    )
    return stats, x, outliers, channels, variance


def measure_noise(frame: np.ndarray) -> NoiseEstimate:
    """The noise of a 2D frame as a noise-aware model is told it: fitted after the
    frame's hot, dead and saturated pixels are repaired, and without them (what the
    Denoise dock and the CLI report)."""
    stats = _measure(frame, "robust", True, None)[0]
    assert stats.noise is not None
    return stats.noise


def _with_noise_map(
    stats: FrameStats, channels: np.ndarray, variance: np.ndarray | None, strength: float
) -> np.ndarray:
    """``channels`` (:func:`_input_channels`) with the noise map written in."""
    if stats.conditioned and variance is not None:  # (a constant frame's map is zero)
        _noise_channel(variance, stats.floor_variance, strength, out=channels[1])
    return channels


def frame_statistics(
    frame: np.ndarray,
    normalization: str,
    *,
    conditioned: bool,
    noise: NoiseEstimate | None = None,
    lattice: bool = False,
) -> FrameStats:
    """Measure what :func:`prepare` needs from a whole 2D frame (see :class:`FrameStats`).

    Parameters are those of :func:`prepare`.  Apply the result to regions of the frame
    with :func:`prepare_region`.
    """
    return _measure(frame, normalization, conditioned, noise, lattice)[0]


def prepare_region(
    region: np.ndarray,
    stats: FrameStats,
    *,
    strength: float = 1.0,
    origin: tuple[int, int] = (0, 0),
) -> Prepared:
    """Make a region of a frame ready for a network, with the frame's statistics.

    Inside the region, at least :data:`REGION_CONTEXT` pixels from every edge that is
    not an edge of the frame, the result equals that of :func:`prepare` on the whole
    frame (``prepare_region(frame, frame_statistics(frame, …))`` is ``prepare(frame,
    …)``).

    Parameters
    ----------
    region : numpy.ndarray
        2D part of the frame ``stats`` were measured on.
    stats : FrameStats
        From :func:`frame_statistics`.
    strength : float
        Factor on the noise standard deviation given to a conditioned model.
    origin : tuple of int
        Where the region starts in the frame (needed for the lattice prior).
    """
    check_strength(strength)
    x = np.asarray(region).astype(np.float64)
    outliers = find_outliers(x, stats.detection, limits=stats.limits)
    if outliers.any():
        x = _repair_in_place(x, outliers, stats.fill)  # x is this function's own copy
    state = stats.state
    count = 1 + stats.conditioned + (stats.prior is not None)
    channels = _input_channels(x, state, stats.clip, count)
    if stats.prior is not None:
        (oy, ox), (h, w) = origin, x.shape
        channels[2] = stats.prior[oy : oy + h, ox : ox + w]
    variance = None
    if stats.conditioned and not state.constant:
        assert stats.noise is not None
        variance = _local_variance(channels[0], stats.noise.scaled(state.scale, state.low))
    channels = _with_noise_map(stats, channels, variance, strength)
    return Prepared(channels, state, stats.noise, outliers, x)


def prepare(
    frame: np.ndarray,
    normalization: str,
    *,
    conditioned: bool,
    strength: float = 1.0,
    noise: NoiseEstimate | None = None,
    lattice: bool = False,
) -> Prepared:
    """Make one 2D frame ready for a network (see the module docstring).

    Parameters
    ----------
    frame : numpy.ndarray
        2D frame, any real dtype, finite.
    normalization : {"range", "percentile", "robust"}
        The model's normalisation.
    conditioned : bool
        Whether the model takes a noise map.
    strength : float
        Factor on the noise standard deviation given to a conditioned model.
    noise : NoiseEstimate, optional
        The frame's noise in image units, if known; estimated from the frame otherwise.
    lattice : bool
        Whether the model takes the lattice prior (noise-conditioned models only).
    """
    check_strength(strength)
    stats, x, outliers, channels, variance = _measure(
        frame, normalization, conditioned, noise, lattice
    )
    channels = _with_noise_map(stats, channels, variance, strength)
    return Prepared(channels, stats.state, stats.noise, outliers, x)


def finish(output: np.ndarray, prepared: Prepared, dtype: np.dtype | None = None) -> np.ndarray:
    """Map a network output (model units) back to the frame's intensity scale.

    A constant frame comes back unchanged; frames of unsigned integer ``dtype`` (raw
    detector counts) come back non-negative.
    """
    state = prepared.state
    if state.constant:
        out = prepared.repaired.astype(np.float32)
    else:
        output = np.asarray(output)
        out = np.empty(output.shape, np.float32)
        for rows in row_bands(output.shape):
            out[rows] = np.asarray(output[rows], np.float64) * state.scale + state.low
    return counts_non_negative(out, dtype)


def counts_non_negative(out: np.ndarray, dtype: np.dtype | None) -> np.ndarray:
    """``out`` (float, changed in place) clipped at zero when the input's ``dtype`` is
    an unsigned integer: raw detector counts come back non-negative."""
    if dtype is not None and np.issubdtype(dtype, np.unsignedinteger):
        np.maximum(out, 0.0, out=out)
    return out
