"""Noise models: the PINNED paper's Composite Degradation Noise (CDN) and a dose model.

CDN is the paper's benchmark degradation; :func:`add_dose_noise` is what a scanning
microscope actually does to an image (shot noise at a finite electron dose, detector
read noise, scan distortions), for training and testing on realistic data.

The paper (Methods, "Composite Degradation Noise", Eq. 1 and Table 1) degrades a clean
STEM image in three stages, in this order:

1. **Gaussian** — additive noise ``N(0, σ_g²)``;
2. **static** — a fraction ``p_static`` of the pixels is replaced by values drawn
   uniformly from [0, 255] (the replaced pixels therefore carry no Gaussian noise);
3. **speckle** — everything, replaced pixels included, is multiplied by
   ``1 + N(0, σ_s²)``.  Table 1 quotes the speckle *variance* ``σ_s²``.

All parameters are in 8-bit units.  Images in any other range are mapped linearly to
[0, 255] with :mod:`napari_pinned._util.intensity`, degraded there and mapped back, so that a
level means the same degradation on uint8, uint16 or float data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_pinned._util.intensity import (
    PAPER_RANGE,
    check_image,
    from_paper_scale,
    infer_data_range,
    to_paper_scale,
)
from napari_pinned.noise import scanning
from napari_pinned.settings import StemNoiseRanges

__all__ = [
    "CDN_TABLE",
    "MAX_LEVEL",
    "CDNParams",
    "DoseParams",
    "StemRecording",
    "add_cdn_noise",
    "add_dose_noise",
    "apply_cdn_paper_units",
    "apply_dose_paper_units",
    "cdn_params",
    "draw_recording",
    "record_counts",
    "record_stem_image",
    "scan_distort",
]


def _check_component(name: str, value: float, upper: float = math.inf) -> None:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= upper):
        bound = f"[0, {upper:g}]" if math.isfinite(upper) else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")


@dataclass(frozen=True)
class CDNParams:
    """Parameters of one CDN degradation, in 8-bit ([0, 255]) units.

    Attributes
    ----------
    gaussian_std : float
        Standard deviation of the additive Gaussian noise.
    static_fraction : float
        Fraction of pixels replaced by uniform values in [0, 255] (0 to 1).
    speckle_variance : float
        Variance of the multiplicative speckle term ``N`` in ``I · (1 + N)``.
    """

    gaussian_std: float
    static_fraction: float
    speckle_variance: float

    def __post_init__(self) -> None:
        _check_component("gaussian_std", self.gaussian_std)
        _check_component("speckle_variance", self.speckle_variance)
        _check_component("static_fraction", self.static_fraction, upper=1.0)

    @property
    def is_identity(self) -> bool:
        """True when no component degrades the image."""
        return self.gaussian_std == 0 and self.static_fraction == 0 and self.speckle_variance == 0


#: Table 1 of the paper: noise level → (Gaussian std, static fraction, speckle variance).
CDN_TABLE: dict[int, CDNParams] = {
    1: CDNParams(50.0, 0.50, 0.20),
    2: CDNParams(60.0, 0.60, 0.30),
    3: CDNParams(70.0, 0.70, 0.40),
    4: CDNParams(80.0, 0.80, 0.50),
    5: CDNParams(100.0, 0.90, 0.60),
}
MAX_LEVEL = 5

_ZERO = CDNParams(0.0, 0.0, 0.0)


def cdn_params(level: float) -> CDNParams:
    """Return the CDN parameters for a (possibly fractional) noise level.

    Integer levels 1–5 are Table 1 of the paper; level 0 is no noise.  Fractional
    levels interpolate each component linearly between the neighbouring rows, so a
    slider moves the degradation smoothly.

    Parameters
    ----------
    level : float
        Noise level in [0, 5].

    Returns
    -------
    CDNParams

    Raises
    ------
    ValueError
        If ``level`` is not a finite number in [0, 5].
    """
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
        raise ValueError(f"noise level must be a number, got {level!r}")
    level = float(level)
    if not (math.isfinite(level) and 0.0 <= level <= MAX_LEVEL):
        raise ValueError(f"noise level must be between 0 and {MAX_LEVEL}, got {level!r}")
    low = min(math.floor(level), MAX_LEVEL - 1)
    t = level - low
    a = CDN_TABLE.get(low, _ZERO)
    b = CDN_TABLE[low + 1]
    return CDNParams(
        gaussian_std=(1 - t) * a.gaussian_std + t * b.gaussian_std,
        static_fraction=(1 - t) * a.static_fraction + t * b.static_fraction,
        speckle_variance=(1 - t) * a.speckle_variance + t * b.speckle_variance,
    )


def _resolve_params(
    level: float | None,
    gaussian_std: float | None,
    static_fraction: float | None,
    speckle_variance: float | None,
) -> CDNParams:
    overrides = (gaussian_std, static_fraction, speckle_variance)
    if level is None:
        if any(v is None for v in overrides):
            raise ValueError(
                "give a noise level, or all three of gaussian_std, static_fraction "
                "and speckle_variance"
            )
        base = _ZERO
    else:
        base = cdn_params(level)
    return CDNParams(
        gaussian_std=base.gaussian_std if gaussian_std is None else gaussian_std,
        static_fraction=base.static_fraction if static_fraction is None else static_fraction,
        speckle_variance=base.speckle_variance if speckle_variance is None else speckle_variance,
    )


def apply_cdn_paper_units(
    image_255: np.ndarray,
    params: CDNParams,
    rng: np.random.Generator,
    clip: bool = True,
) -> np.ndarray:
    """Apply CDN to an image already in the paper's [0, 255] units (the fast kernel).

    Gaussian noise first, then static replacement, then speckle (paper, Methods).
    Components that are zero draw no random numbers.  All arithmetic is float32.

    Parameters
    ----------
    image_255 : numpy.ndarray
        Image or stack in [0, 255] units; any shape (every pixel is independent).
    params : CDNParams
        Degradation parameters.
    rng : numpy.random.Generator
        Source of randomness (advanced by the call).
    clip : bool
        Clip the result to [0, 255], as a saturating detector would.

    Returns
    -------
    numpy.ndarray
        New float32 array of the same shape; the input is not modified.
    """
    out = np.array(image_255, dtype=np.float32, copy=True)
    shape = out.shape
    if params.gaussian_std > 0:
        noise = rng.standard_normal(shape, dtype=np.float32)
        noise *= np.float32(params.gaussian_std)
        out += noise
        del noise
    if params.static_fraction > 0:
        # Comparing a uniform draw with p selects each pixel independently with
        # probability p, so the replaced count is Binomial(n, p).
        replaced = rng.random(shape, dtype=np.float32) < np.float32(params.static_fraction)
        count = int(np.count_nonzero(replaced))
        out[replaced] = rng.random(count, dtype=np.float32) * np.float32(PAPER_RANGE[1])
        del replaced
    if params.speckle_variance > 0:
        factor = rng.standard_normal(shape, dtype=np.float32)
        factor *= np.float32(math.sqrt(params.speckle_variance))
        factor += np.float32(1.0)
        out *= factor
        del factor
    if clip:
        np.clip(out, PAPER_RANGE[0], PAPER_RANGE[1], out=out)
    return out


def add_cdn_noise(
    image: np.ndarray,
    level: float | None = None,
    *,
    gaussian_std: float | None = None,
    static_fraction: float | None = None,
    speckle_variance: float | None = None,
    data_range: tuple[float, float] | None = None,
    clip: bool = True,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Degrade an image or stack with Composite Degradation Noise.

    Parameters
    ----------
    image : numpy.ndarray
        2D image ``(Y, X)`` or stack ``(N, Y, X)`` of any real dtype.  Every pixel of
        every frame gets independent noise; one data range is used for the whole stack.
    level : float, optional
        CDN level in [0, 5] (Table 1 of the paper; fractional levels interpolate,
        0 is no noise).  May be omitted only if all three components are given.
    gaussian_std, static_fraction, speckle_variance : float, optional
        Override one component of the level's parameters (8-bit units).
    data_range : tuple of float, optional
        ``(low, high)`` intensity range that corresponds to [0, 255]; inferred with
        :func:`napari_pinned._util.intensity.infer_data_range` by default.
    clip : bool
        Clip the result to ``data_range`` (a saturating detector); default True.
    seed : int or numpy.random.Generator, optional
        Seed or generator for reproducible noise.

    Returns
    -------
    numpy.ndarray
        float32 array of the input's shape, in the input's intensity units.  With no
        noise (level 0) this is the input as float32 (clipped to ``data_range`` if
        one was given that does not contain it).

    Raises
    ------
    ValueError
        For invalid images (RGB, NaN, wrong dimensionality), levels outside [0, 5],
        invalid components or an empty data range.
    """
    arr = check_image(image, name="image", ndim=(2, 3))
    params = _resolve_params(level, gaussian_std, static_fraction, speckle_variance)
    lo, hi = _resolve_range(arr, data_range)
    if params.is_identity:
        out = arr.astype(np.float32, copy=True)
    else:
        rng = np.random.default_rng(seed)
        scaled = to_paper_scale(arr, (lo, hi))
        out = from_paper_scale(apply_cdn_paper_units(scaled, params, rng, clip=False), (lo, hi))
    if clip:
        # Clipping in the caller's units (rather than at 255 before mapping back)
        # keeps the bounds exact despite float32 rounding in the scale round trip.
        np.clip(out, lo, hi, out=out)
    return out


def _resolve_range(arr: np.ndarray, data_range: tuple[float, float] | None) -> tuple[float, float]:
    if data_range is None:
        return infer_data_range(arr)
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise ValueError(f"data_range must be a (low, high) pair, got {data_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must be finite with high > low, got {data_range!r}")
    return lo, hi


# -- the dose model -------------------------------------------------------------------


@dataclass(frozen=True)
class DoseParams:
    """Parameters of one dose degradation.

    Attributes
    ----------
    counts_at_max : float
        Mean detected electrons in a pixel at the top of the data range (the brightest
        column); pixels at the bottom of the range get none.  Equal to the dose in
        e⁻/Å² times the pixel area in Å² times the fraction of the beam the detector
        collects there.
    read_noise : float
        Standard deviation of the detector's additive Gaussian read noise, in detected
        electrons.
    row_jitter : float
        Standard deviation (pixels) of the random horizontal displacement of each scan
        line (fast-scan jitter from stray fields and flyback timing).
    drift : tuple of float
        Specimen drift ``(dy, dx)`` in pixels per frame.  Within a frame the slow scan
        turns it into a shear (dx) and a stretch (dy); across a stack the frames move.
    """

    counts_at_max: float
    read_noise: float = 0.0
    row_jitter: float = 0.0
    drift: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not (
            isinstance(self.counts_at_max, (int, float, np.integer, np.floating))
            and math.isfinite(self.counts_at_max)
            and self.counts_at_max > 0
        ):
            raise ValueError(
                f"the dose must give a positive, finite electron count, got {self.counts_at_max!r}"
            )
        _check_component("read_noise", self.read_noise)
        _check_component("row_jitter", self.row_jitter)
        if len(self.drift) != 2 or not all(math.isfinite(float(d)) for d in self.drift):
            raise ValueError(f"drift must be a finite (dy, dx) pair, got {self.drift!r}")

    @property
    def distorts(self) -> bool:
        """True when the scan geometry is changed (jitter or drift)."""
        return self.row_jitter > 0 or any(float(d) != 0 for d in self.drift)


def scan_distort(
    image: np.ndarray,
    row_jitter: float,
    drift: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Resample an image or stack as a drifting, jittering raster scan would see it.

    Pixel ``(y, x)`` of frame ``k`` is acquired at time ``k + y / H`` frames, when the
    specimen has moved by ``drift · (k + y / H)``; its scan line is also displaced
    sideways by a random ``N(0, row_jitter²)`` pixels.  Values are interpolated
    linearly and edges extended (no dark borders that a denoiser would learn).

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X)`` or ``(N, Y, X)`` float image.
    row_jitter : float
        Standard deviation of the per-line horizontal displacement, pixels.
    drift : tuple of float
        ``(dy, dx)`` pixels per frame.
    rng : numpy.random.Generator
        Source of the jitter (advanced only when ``row_jitter > 0``).

    Returns
    -------
    numpy.ndarray
        float32 array of the input's shape.
    """
    from scipy.ndimage import map_coordinates

    stack = np.asarray(image, dtype=np.float32)
    frames = stack[None] if stack.ndim == 2 else stack
    n, h, w = frames.shape
    dy, dx = (float(d) for d in drift)
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    out = np.empty_like(frames)
    for k in range(n):
        time = k + rows / h
        shift_x = dx * time
        if row_jitter > 0:
            shift_x = shift_x + rng.normal(0.0, row_jitter, (h, 1)).astype(np.float32)
        coords = np.stack(np.broadcast_arrays(rows + dy * time, cols + shift_x), axis=0).astype(
            np.float32
        )
        out[k] = map_coordinates(frames[k], coords, order=1, mode="nearest")
    return out[0] if stack.ndim == 2 else out


def apply_dose_paper_units(
    image_255: np.ndarray, params: DoseParams, rng: np.random.Generator
) -> np.ndarray:
    """Apply the dose model to an image in [0, 255] units (the fast kernel).

    Scan distortion first (the beam samples displaced positions), then Poisson shot
    noise on the expected counts, then Gaussian read noise; the result is in the same
    [0, 255] units and is not clipped (read noise can dip below zero, as it does in a
    detector's offset-corrected output).
    """
    out = np.asarray(image_255, dtype=np.float32)
    if params.distorts:
        out = scan_distort(out, params.row_jitter, params.drift, rng)
    to_counts = np.float32(params.counts_at_max / PAPER_RANGE[1])
    expected = np.clip(out, 0.0, None) * to_counts
    return record_counts(expected, rng, read_noise=params.read_noise) / to_counts


def record_counts(
    expected: np.ndarray,
    rng: np.random.Generator,
    *,
    read_noise: float = 0.0,
    line_noise: float = 0.0,
    quantum: float = 0.0,
    afterglow: float = 0.0,
) -> np.ndarray:
    """What a counting detector records for ``expected`` electrons per pixel.

    Poisson shot noise, smeared along the fast scan by the detector's afterglow
    (``afterglow`` px, :func:`napari_pinned.noise.scanning.apply_afterglow`), then
    Gaussian read noise (``read_noise`` e⁻), then an offset per scan line
    (``line_noise`` e⁻ standard deviation: the detector baseline wanders between lines),
    then rounding to the converter's step (``quantum`` e⁻; 0 keeps continuous values).
    Works on ``(Y, X)`` or ``(N, Y, X)`` arrays; returns float32.
    """
    counts = rng.poisson(np.clip(expected, 0.0, None)).astype(np.float32)
    if afterglow > 0:
        counts = scanning.apply_afterglow(counts, afterglow)
    if read_noise > 0:
        counts += rng.standard_normal(counts.shape, dtype=np.float32) * np.float32(read_noise)
    if line_noise > 0:
        lines = (*counts.shape[:-1], 1)
        counts += rng.standard_normal(lines, dtype=np.float32) * np.float32(line_noise)
    if quantum > 0:
        counts = np.round(counts / np.float32(quantum)) * np.float32(quantum)
    return counts


def add_dose_noise(
    image: np.ndarray,
    dose: float,
    *,
    pixel_size: float,
    collection: float = 1.0,
    read_noise: float = 0.0,
    row_jitter: float = 0.0,
    drift: tuple[float, float] = (0.0, 0.0),
    data_range: tuple[float, float] | None = None,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Degrade an image or stack as a finite electron dose and a real scan would.

    The clean image is taken as the expected signal: a pixel at the top of the data
    range receives on average ``dose · pixel_size² · collection`` detected electrons,
    one at the bottom none.  Counts are drawn from a Poisson distribution (shot
    noise), Gaussian read noise is added, and the scan can jitter line by line and
    drift (:func:`scan_distort`).  Every frame of a stack gets independent noise and
    jitter; drift continues from frame to frame.

    Parameters
    ----------
    image : numpy.ndarray
        2D image ``(Y, X)`` or stack ``(N, Y, X)``, any real dtype.
    dose : float
        Electron dose in e⁻/Å² per frame.
    pixel_size : float
        Pixel size in Å.
    collection : float
        Fraction of the beam the detector collects at the brightest pixel (an annular
        dark-field detector collects a few per cent; 1 treats ``dose`` as detected).
    read_noise : float
        Read-noise standard deviation, in detected electrons.
    row_jitter : float
        Scan-line jitter standard deviation, pixels.
    drift : tuple of float
        Drift ``(dy, dx)`` in pixels per frame.
    data_range : tuple of float, optional
        ``(low, high)`` intensity range mapped to zero and full counts; inferred with
        :func:`napari_pinned._util.intensity.infer_data_range` by default.
    seed : int or numpy.random.Generator, optional
        Seed or generator for reproducible noise.

    Returns
    -------
    numpy.ndarray
        float32 array of the input's shape, in the input's intensity units (not
        clipped: read noise can go below the range).

    Raises
    ------
    ValueError
        For invalid images, a non-positive dose, pixel size or collection, or invalid
        noise or scan parameters.
    """
    arr = check_image(image, name="image", ndim=(2, 3))
    for name, value in (("dose", dose), ("pixel_size", pixel_size), ("collection", collection)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    if collection > 1:
        raise ValueError(f"collection is a fraction of the beam (0–1], got {collection!r}")
    params = DoseParams(
        counts_at_max=float(dose) * float(pixel_size) ** 2 * float(collection),
        read_noise=read_noise,
        row_jitter=row_jitter,
        drift=tuple(drift),
    )
    lo, hi = _resolve_range(arr, data_range)
    rng = np.random.default_rng(seed)
    scaled = to_paper_scale(arr, (lo, hi))
    return from_paper_scale(apply_dose_paper_units(scaled, params, rng), (lo, hi))


# -- realistic STEM recordings -------------------------------------------------------


@dataclass(frozen=True)
class StemRecording:
    """How one image was recorded: dose, detector and scan.

    Attributes
    ----------
    dose : float
        Mean detected electrons per pixel over the image.
    read_noise : float
        Gaussian read noise, e⁻.
    row_jitter : float
        Standard deviation of the horizontal displacement of each scan line, pixels.
    line_noise : float
        Standard deviation of an offset added to each scan line, e⁻.
    drift : tuple of float
        ``(dy, dx)`` pixels over the frame: a stretch and a shear of the slow scan.
    quantum : float
        Step of the detector's converter in e⁻ (0: continuous).
    smear : float
        The detector's finite bandwidth along the fast scan: every recorded pixel keeps
        ``1 − 2·smear`` of itself and gets ``smear`` of each horizontal neighbour (0 to
        0.3).  It blurs what is recorded, signal and noise alike, so the noise comes out
        correlated along the rows.
    afterglow : float
        Decay length τ (pixels) of the detector's causal exponential response along the
        fast scan (:func:`napari_pinned.noise.scanning.apply_afterglow`), applied to the
        counts and to the expected image alike.
    line_gain : float
        Relative standard deviation of a gain per scan line (beam current and detector
        gain drifting between lines); it multiplies the signal, and the expected image
        does not have it.
    dark : float
        Mean dark counts per pixel (Poisson), a uniform background that is part of the
        expected image.
    adc_offset : float or None
        The converter's offset in e⁻, added after the read noise; values are then clipped
        at zero, as an unsigned converter does.  None: no converter model (no clipping).
    dropped_lines : float
        Share of the scan lines recorded without signal (offset and read noise only);
        the expected image has those lines without signal as well.
    resample : tuple of float
        ``(rotation in degrees, dy, dx)``: the frame resampled after recording, as drift
        correction or registration does, by linear interpolation
        (:func:`napari_pinned.noise.scanning.resample_frame`), recorded and expected
        image alike; its noise comes out correlated along both axes.  Zeros: not
        resampled.
    resample_zoom : float
        The frame's magnification when it is resampled (1: none; up to
        :data:`napari_pinned.settings.MAX_RESAMPLE_ZOOM`): an upsampled frame,
        whose noise is correlated over about as many pixels along both axes.
    line_pattern : float
        RMS (e⁻) of interference that is the same in every scan line
        (:func:`napari_pinned.noise.scanning.line_pattern`), added to the recorded
        image before the converter; the expected image does not have it.
    """

    dose: float
    read_noise: float = 0.0
    row_jitter: float = 0.0
    line_noise: float = 0.0
    drift: tuple[float, float] = (0.0, 0.0)
    quantum: float = 0.0
    smear: float = 0.0
    afterglow: float = 0.0
    line_gain: float = 0.0
    dark: float = 0.0
    adc_offset: float | None = None
    dropped_lines: float = 0.0
    resample: tuple[float, float, float] = (0.0, 0.0, 0.0)
    line_pattern: float = 0.0
    resample_zoom: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.dose) and self.dose > 0):
            raise ValueError(f"dose must be positive and finite, got {self.dose!r}")
        for name in (
            "read_noise",
            "row_jitter",
            "line_noise",
            "quantum",
            "afterglow",
            "line_pattern",
        ):
            _check_component(name, getattr(self, name))
        _check_component("smear", self.smear, upper=0.3)
        _check_component("line_gain", self.line_gain, upper=1.0)
        _check_component("dark", self.dark)
        _check_component("dropped_lines", self.dropped_lines, upper=1.0)
        if self.adc_offset is not None and not (
            isinstance(self.adc_offset, (int, float)) and math.isfinite(self.adc_offset)
        ):
            raise ValueError(f"adc_offset must be a finite number or None, got {self.adc_offset!r}")
        if len(self.resample) != 3 or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in self.resample
        ):
            raise ValueError(
                f"resample must be three finite numbers (degrees, dy, dx), got {self.resample!r}"
            )
        if abs(self.resample[0]) > 45.0:
            raise ValueError(f"resample rotation must be within ±45°, got {self.resample[0]!r}")
        scanning.check_zoom(self.resample_zoom, "resample_zoom")


def draw_recording(rng: np.random.Generator, ranges: StemNoiseRanges) -> StemRecording:
    """Random recording conditions (see :class:`StemNoiseRanges`)."""
    lo, hi = np.log(ranges.dose)
    dose = float(np.exp(rng.uniform(lo, hi)))
    if rng.random() < ranges.clean_fraction:
        dose = ranges.clean_dose
    read = float(rng.uniform(*ranges.read_noise))
    jitter = (
        float(rng.uniform(*ranges.row_jitter)) if rng.random() < ranges.jitter_fraction else 0.0
    )
    line = 0.0
    if rng.random() < ranges.line_fraction:
        line = float(rng.uniform(*ranges.line_noise)) * math.sqrt(dose + read**2)
    drift = (0.0, 0.0)
    if rng.random() < ranges.drift_fraction:
        drift = (float(rng.uniform(-1, 1)) * ranges.drift, float(rng.uniform(-1, 1)) * ranges.drift)
    quantum = 0.0
    if rng.random() < ranges.quantum_fraction:
        q_lo, q_hi = np.log(ranges.quantum)
        quantum = float(np.exp(rng.uniform(q_lo, q_hi)))
    # Drawn last, so that ranges without smear give the recordings they always gave.
    smear = 0.0
    if ranges.smear_fraction > 0 and rng.random() < ranges.smear_fraction:
        smear = float(rng.uniform(*ranges.smear))
    # The scanning detector's terms, each drawn only when its share is positive, so that
    # ranges without them give the recordings they always gave.
    scan: dict[str, float | None] = {}
    for name in ("afterglow", "line_gain", "dark"):
        share = getattr(ranges, f"{name}_fraction")
        if share > 0 and rng.random() < share:
            scan[name] = float(rng.uniform(*getattr(ranges, name)))
    if ranges.adc_fraction > 0 and rng.random() < ranges.adc_fraction:
        scan["adc_offset"] = float(rng.uniform(*ranges.adc_offset)) * max(read, 0.5)
    if ranges.dropped_fraction > 0 and rng.random() < ranges.dropped_fraction:
        scan["dropped_lines"] = float(rng.uniform(*ranges.dropped_lines))
    resample = (0.0, 0.0, 0.0)
    if ranges.resample_fraction > 0 and rng.random() < ranges.resample_fraction:
        rotation = float(rng.uniform(*ranges.resample_rotation)) * float(rng.choice([-1, 1]))
        resample = (rotation, float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 1.0)))
    # Drawn last, and only when its share is positive, as the terms above.
    pattern = 0.0
    if ranges.line_pattern_fraction > 0 and rng.random() < ranges.line_pattern_fraction:
        pattern = float(rng.uniform(*ranges.line_pattern)) * math.sqrt(dose + read**2)
    # Last again, and only for resampled frames of ranges that magnify.
    zoom = 1.0
    if resample != (0.0, 0.0, 0.0) and ranges.resample_zoom[1] > 1.0:
        zoom = float(rng.uniform(*ranges.resample_zoom))
    return StemRecording(
        dose,
        read,
        jitter,
        line,
        drift,
        quantum,
        smear,
        **scan,
        resample=resample,
        line_pattern=pattern,
        resample_zoom=zoom,
    )


def record_stem_image(
    clean: np.ndarray, recording: StemRecording, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Record a clean image (expected signal, any non-negative scale) as a STEM would.

    The scan first distorts the clean image (jitter, drift), which is then scaled so
    that its mean is ``recording.dose`` electrons per pixel and recorded with
    :func:`record_counts`, with the scanning detector's terms where the recording has
    them (line gains, dark counts, dropped lines, afterglow, a clipping converter;
    docs/physics.md lists which of them the expected image keeps).

    Returns
    -------
    tuple of numpy.ndarray
        ``(recorded, expected)`` float32 counts: the noisy image and the noise-free
        image with the same scan geometry (the right target for a denoiser, which must
        not move columns).
    """
    arr = np.asarray(clean, np.float32)
    if arr.ndim != 2:
        raise ValueError(f"clean image must be 2D, got shape {arr.shape}")
    distorted = arr
    if recording.row_jitter > 0 or recording.drift != (0.0, 0.0):
        per_frame = (recording.drift[0], recording.drift[1])
        distorted = scan_distort(arr, recording.row_jitter, per_frame, rng)
    mean = float(np.mean(np.clip(distorted, 0.0, None)))
    scale = recording.dose / mean if mean > 0 else 0.0
    expected = np.clip(distorted, 0.0, None) * np.float32(scale)
    rate = expected
    if recording.line_gain > 0:
        rate = expected * scanning.line_gains(expected.shape, recording.line_gain, rng)
    if recording.dark > 0:
        rate = rate + np.float32(recording.dark)
        expected = expected + np.float32(recording.dark)
    if recording.dropped_lines > 0:
        dropped = scanning.dropped_rows(expected.shape[0], recording.dropped_lines, rng)
        rate = rate.copy() if rate is expected else rate
        rate[dropped] = 0.0
        expected = expected.copy()
        expected[dropped] = 0.0
    recorded = record_counts(
        rate,
        rng,
        read_noise=recording.read_noise,
        line_noise=recording.line_noise,
        quantum=recording.quantum,
        afterglow=recording.afterglow,
    )
    if recording.afterglow > 0:
        expected = scanning.apply_afterglow(expected, recording.afterglow)
    if recording.line_pattern > 0:
        # Pickup in the electronics after the detector: not smeared by its afterglow.
        width = recorded.shape[-1]
        recorded = recorded + scanning.line_pattern(width, recording.line_pattern, rng)
    if recording.adc_offset is not None:
        offset = np.float32(recording.adc_offset)
        recorded = np.clip(recorded + offset, 0.0, None)
        expected = expected + offset
    if recording.smear > 0:
        from scipy.ndimage import correlate1d

        a = recording.smear
        kernel = np.array([a, 1.0 - 2.0 * a, a])
        recorded = correlate1d(recorded, kernel, axis=-1, mode="reflect").astype(np.float32)
        expected = correlate1d(expected, kernel, axis=-1, mode="reflect").astype(np.float32)
    if recording.resample != (0.0, 0.0, 0.0) or recording.resample_zoom != 1.0:
        rotation, dy, dx = recording.resample
        zoom = recording.resample_zoom
        recorded = scanning.resample_frame(recorded, rotation, (dy, dx), zoom=zoom)
        recorded = recorded.astype(np.float32, copy=False)
        expected = scanning.resample_frame(expected, rotation, (dy, dx), zoom=zoom)
    return recorded, expected.astype(np.float32, copy=False)
