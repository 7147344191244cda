"""The noise readout for the user: the dose in e⁻/px at the image's mean, or the truth
about why there is none.

:func:`~napari_pinned.noise.estimate.estimate_noise` fits the Poisson–Gaussian line of
an image's noise (a noise-aware model is told it scaled to white noise, see
:mod:`napari_pinned.noise.correlation`).  :func:`read_noise` reads that fit for a person,
and checks what the fit alone cannot:

* **Correlated noise.**  A detector's afterglow correlates the noise along the fast
  scan, and the fit reads a dose several times too high: the dose is read from the
  noise at zero frequency instead (:mod:`napari_pinned.noise.correlation`).
* **No noise.**  A simulated or already-denoised image has no detector noise; what the
  fit measures is rounding.  Below a relative noise of :data:`NOISE_FREE_RELATIVE`, or
  at the level of the values' own quantisation step, the readout says so.
* **Not counts.**  Counts are non-negative, their variance rises with the intensity and
  they change in steps of at most one electron.  Values whose noise does not rise with
  intensity, that lie far below the level where the fitted variance vanishes, or whose
  steps are coarser than one electron are not a detector's counts (background
  subtracted, rescaled exports), and the readout says what the denoiser does instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from napari_pinned._util.intensity import check_image

# The spectrum's level and the noise's correlation, shared with the model's noise.
from napari_pinned.noise.correlation import (
    SpectralNoise,
    correlation_factor,
    noise_correlation,
    spectral_noise,
)

# The fit's binning and weighted line, shared with the model's estimate.
from napari_pinned.noise.estimate import NoiseEstimate, bin_stats, estimate_noise, weighted_line
from napari_pinned.noise.line_pattern import line_interference

__all__ = [
    "MAX_DOSE",
    "NOISE_FREE_RELATIVE",
    "NoiseReading",
    "noise_correlation",
    "read_noise",
]

#: Relative noise (σ over the image's level) below which an image is read as
#: noise-free: 1e-5 is a Poisson dose of 1e10 e⁻/px, far beyond any detector, and far
#: above float32 rounding (6e-8).
NOISE_FREE_RELATIVE = 1e-5
#: The largest dose read as a dose (e⁻/px); more is no measurable noise.  A 10 µs dwell
#: at 100 pA detects about 6e6 electrons.
MAX_DOSE = 1e8
# Shot noise is "signal-dependent" when the variance grows by this share over the
# image's 5–95 % intensity range (NoiseEstimate.poisson_share, as mean_counts uses it).
_POISSON_SHARE = 0.2
# The quantisation check: values are quantised when at least this share lies on a grid.
_GRID_SHARE = 0.99
# Counts step by at most one electron; an export's steps exceed the fitted electron by
# more than this factor.
_STEP_MARGIN = 1.5
# Pixels more than this many noise σ (at the 5th percentile's level) below the level
# where the fitted variance vanishes cannot be counts; more than this share of them
# makes the values "not counts".
_BELOW_ZERO_SIGMAS = 4.0
_BELOW_ZERO_SHARE = 0.01
# A frame is flat when its 5–95 % range is within this many noise σ (pure Gaussian noise
# spans 3.3 σ); then counts from zero must have variance = mean × quantum within the
# variance estimate's error (relative 1/√(n/8) for n ≥ 4096 pixels of overlapping
# residuals: 4.4 %, with room for the correlation factor's own error).
_FLAT_SIGMAS = 5.0
_FLAT_TOLERANCE = 0.15
# Counts are sparse when more than this share of the pixels holds the lowest value.
_ZERO_COUNT_SHARE = 0.3

# The zero level's 5×5 binomial high-pass (unit L2 norm), and the largest crop it
# is fitted on.
_BINOMIAL = np.array([1.0, -4.0, 6.0, -4.0, 1.0])
_KERNEL5 = np.outer(_BINOMIAL, _BINOMIAL) / 70.0
# An afterglow's shot noise split from the white read noise added after it
# (``SpectralNoise.afterglow``) sets the dose where the afterglow is this strong (c ≥ 1:
# τ ≳ 0.8 px; weaker ones leave the split unsure of c).  On 512² SrTiO3 frames at
# 1–1000 e⁻/px, τ 0–3 px and read noise 0–1 e⁻, 64 of 75 doses read within 30 % (50
# through the fit's zero level, which had read up to 100×: the fit's kernel sees all of
# the read noise but a few % of the shot noise).
_SPLIT_LEAST_C = 1.0
_ZERO_EDGE = 1024

Kind = Literal["counts", "noise-free", "gaussian", "not-counts"]


@dataclass(frozen=True)
class NoiseReading:
    """What an image's noise says about it, for a person.

    Attributes
    ----------
    kind : {"counts", "noise-free", "gaussian", "not-counts"}
        Detector counts with a dose; no measurable noise; noise that does not rise with
        intensity (the dose cannot be read); values that are not counts (``reason``).
    dose : float or None
        Detected electrons per pixel at the image's mean intensity, corrected for noise
        correlated along the scan (``kind == "counts"`` only).
    sigma : float
        Noise standard deviation at the image's mean intensity, in the image's units,
        as the fit sees it (what a noise-aware model is told, at strength 1).
    mean_intensity : float
        The image's mean.
    correlation : tuple of float
        ``(along y, along x)``: the noise power at zero frequency over the power the
        fit's kernel sees, per axis (1 for white noise; when one axis is correlated,
        as an afterglow's noise is, or both as a resampled frame's are, the dose is
        corrected for it: :func:`napari_pinned.noise.correlation.correlation_factor`).
    quantum : float
        The values' step (0 when continuous).
    reason : str
        Why the values are not counts, or an empty string.
    estimate : NoiseEstimate
        The estimate read (given, or fitted here).
    stripes : bool
        Whether the image (a stack's first frame) carries interference the same in every
        scan line beyond what a probe passes (:mod:`napari_pinned.noise.line_pattern`):
        pickup synchronous with the scan, which the denoiser removes as noise.
    """

    kind: Kind
    dose: float | None
    sigma: float
    mean_intensity: float
    correlation: tuple[float, float]
    quantum: float
    reason: str
    estimate: NoiseEstimate
    stripes: bool = False

    @property
    def correlated(self) -> bool:
        """True when the noise was found correlated along one axis (an afterglow) or
        along both (a resampled frame) and the dose corrected for it."""
        return correlation_factor(self.correlation) != 1.0

    def line(self, units: str = "") -> str:
        """One line for the user (the dock's label, the CLI), e.g. ``"≈ 20 e⁻/px at the
        mean intensity (σ = 8.4)"``."""
        if self.kind == "noise-free":
            return "no noise measurable (the image looks noise-free)"
        return self._line(units) + (_STRIPES if self.stripes else "")

    def _line(self, units: str) -> str:
        unit = f" {units}" if units else ""
        sigma = f"σ = {_fmt(self.sigma)}{unit} at the mean"
        if self.kind == "counts":
            assert self.dose is not None
            note = ""
            fy, fx = self.correlation
            if self.correlated and fy != 1.0 and fx != 1.0:
                note = "; noise correlated along both axes (resampled?), dose corrected"
            elif self.correlated:
                axis = "x" if fx >= fy else "y"
                note = f"; noise correlated along {axis} (afterglow?), dose corrected"
            elif self.correlation != (1.0, 1.0):
                note = "; noise correlated along both axes (smoothed?)"
            return f"≈ {_dose_text(self.dose)} e⁻/px at the mean intensity ({sigma}{note})"
        told = f"denoised with the measured noise ({sigma}, in the image's units), no dose"
        if self.kind == "gaussian":
            return (
                f"noise does not rise with intensity ({sigma}): not shot-noise-limited "
                f"counts, no dose; denoised with this σ"
            )
        return f"not detector counts: {self.reason}; {told}"

    def to_dict(self) -> dict[str, object]:
        """Plain values for JSON."""
        return {
            "kind": self.kind,
            "dose": self.dose,
            "sigma": self.sigma,
            "mean_intensity": self.mean_intensity,
            "correlation": list(self.correlation),
            "quantum": self.quantum,
            "reason": self.reason,
            "stripes": self.stripes,
            "line": self.line(),
        }


#: What :meth:`NoiseReading.line` adds for an image with stripes the same in every line.
_STRIPES = "; stripes the same in every scan line (pickup?), removed as noise"


def _fmt(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{min(digits, 6)}f}"


def _dose_text(dose: float) -> str:
    """Three significant figures, never scientific notation: ``0.0512``, ``20.3``,
    ``98,700``."""
    if dose < 1000:
        return _fmt(dose)
    return f"{round(dose, 2 - math.floor(math.log10(dose))):,.0f}"


def read_noise(
    image: np.ndarray,
    *,
    estimate: NoiseEstimate | None = None,
    mask: np.ndarray | None = None,
) -> NoiseReading:
    """Read an image's noise for a person: its dose, or why it has none.

    Parameters
    ----------
    image : numpy.ndarray
        2D image or ``(N, Y, X)`` stack of raw intensities.
    estimate : NoiseEstimate, optional
        The fit to read (e.g. :func:`napari_pinned.nn.conditioning.measure_noise`'s,
        what a model is told); fitted here with ``mask`` when not given.
    mask : numpy.ndarray, optional
        Pixels to ignore in the fit (see :func:`estimate_noise`).

    Returns
    -------
    NoiseReading
    """
    arr = check_image(image, name="image", ndim=(2, 3))
    given = estimate if estimate is not None else estimate_noise(arr, mask=mask)
    est = given.as_fitted()  # the dose is read from the spectrum's own correlation
    mean, (low, high) = est.mean_intensity, est.intensity_range
    sigma = math.sqrt(float(est.variance(mean)))
    quantum = _quantum(arr)
    sample = _sample(arr)
    lowest, p1, p99 = (float(v) for v in np.percentile(sample, (0, 1, 99)))
    # Shot noise: the variance rises over the 1–99 % range (not 5–95 %: sparse counts
    # are all zeros there) by a fifth of its top value.
    top = float(est.variance(p99))
    shot = est.gain > 0 and top > 0 and est.gain * (p99 - p1) >= _POISSON_SHARE * top
    counting = shot and quantum > 0 and est.gain / _STEP_MARGIN <= quantum <= est.gain
    rounding = _STEP_MARGIN * quantum / math.sqrt(12.0)
    if sigma <= NOISE_FREE_RELATIVE * max(abs(mean), high - low) or (
        sigma <= rounding and not counting
    ):
        return NoiseReading("noise-free", None, sigma, mean, (1.0, 1.0), quantum, "", given)
    spectrum = spectral_noise(arr, split=True)
    # The noise at zero frequency sets the dose, whatever the detector's afterglow or
    # smear or a resampling (noise smoothed both ways is none of them, and is read as
    # white).
    power, level_at, corr = spectrum.zero_power, spectrum.level, spectrum.zero
    if not spectrum.zero_read:
        # An afterglow read from the high frequencies alone: no zero-frequency level to
        # correct the dose with, so it is read as before that fit (too high).
        power, corr = spectrum.variance, (1.0, 1.0)
    factor = correlation_factor(corr)
    dose, reason = None, ""
    if not shot:
        if high - low <= _FLAT_SIGMAS * sigma:
            # A flat frame: no range of intensities to see the variance rise.  Counts
            # from zero, one level per electron, still show it: variance = mean × step.
            ratio = power / (quantum * mean) if quantum > 0 and mean > 0 else 0
            dose = mean / quantum if abs(ratio - 1.0) < _FLAT_TOLERANCE else None
        elif np.mean(sample < 0) > _BELOW_ZERO_SHARE:
            reason = "negative values whose noise does not rise with intensity"
            reason += " (background subtracted?)"
    elif counting and np.mean(sample == lowest) > _ZERO_COUNT_SHARE:
        # Sparse counts on a grid of one electron: the lowest value is zero electrons,
        # better known than any fitted line's zero.
        dose, reason = _dose(mean, lowest, power, level_at, factor, quantum), ""
    else:
        line = _fine_line(arr)
        split = _afterglow_zero(spectrum, line)
        if split is not None:
            zero, electron = split
            dose = max(mean - zero, 0.0) / electron
        else:
            zero = _zero_level(est, line)
            dose = _dose(mean, zero, power, level_at, factor, est.gain)
        reason = _not_counts(sample, zero, sigma, quantum, (mean - zero) / dose)
    stripes = line_interference(arr if arr.ndim == 2 else arr[0]) is not None
    if reason:
        return NoiseReading("not-counts", None, sigma, mean, corr, quantum, reason, given, stripes)
    if dose is None:
        return NoiseReading("gaussian", None, sigma, mean, corr, quantum, "", given, stripes)
    kind: Kind = "noise-free" if dose > MAX_DOSE else "counts"
    dose = None if kind == "noise-free" else dose
    return NoiseReading(kind, dose, sigma, mean, corr, quantum, "", given, stripes)


def _dose(
    mean: float, zero: float, power: float, level_at: float, factor: float, gain: float
) -> float:
    """Detected electrons per pixel at ``mean``: from the spectrum's zero-frequency noise
    ``power`` (:attr:`SpectralNoise.zero_power`, free of the signal a pixel kernel lets
    through at high doses) at the intensity ``level_at`` it was measured at, as
    variance = gain_dc · (intensity − zero); from ``gain`` times the zero-frequency
    ``factor`` when the spectrum has no level."""
    if power > 0 and level_at > zero:
        return max(mean - zero, 0.0) * (level_at - zero) / power
    return max(mean - zero, 0.0) / (gain * factor)


def _not_counts(
    sample: np.ndarray, zero: float, sigma: float, quantum: float, electron: float
) -> str:
    """Why values with signal-dependent noise are not counts, or ``""``: many lie far
    below the zero level, or they step by more than one ``electron`` (image units)."""
    if np.mean(sample < zero - _BELOW_ZERO_SIGMAS * sigma) > _BELOW_ZERO_SHARE:
        return "values lie below the level where their noise vanishes (background subtracted?)"
    if electron > 0 and quantum > _STEP_MARGIN * electron:
        return (
            f"values step by {_fmt(quantum)}, coarser than one electron ({_fmt(electron)}): "
            "a rescaled export (8-bit?)"
        )
    return ""


def _zero_level(est: NoiseEstimate, line: tuple[float, float] | None) -> float:
    """Where the noise variance vanishes, from :func:`_fine_line`; the estimate's own
    zero when that fit failed."""
    fallback = float(est.zero_level) if est.zero_level is not None else 0.0
    if line is None:
        return fallback
    gain, offset = line
    return -offset / gain if gain > 0 else fallback


def _afterglow_zero(
    spectrum: SpectralNoise, line: tuple[float, float] | None
) -> tuple[float, float] | None:
    """``(zero level, one electron)`` in the image's units where an afterglow's shot
    noise and the read noise after it were split (:data:`_SPLIT_LEAST_C`), else None.

    The fine line's slope is one electron times the share ``κ`` of the shot noise its
    kernel sees (``Σ u⁴/(1 + c·u) / Σ u⁴`` along the afterglow's axis, the kernel's
    power response being ``(2u)⁴``), so one electron is ``slope/κ``; the zero-frequency
    noise at the spectrum's level is then that many electrons above the zero level.
    The line's offset holds all the read noise but only ``κ`` of the shot noise, which
    is why its own zero lies far too low.
    """
    if spectrum.afterglow is None or correlation_factor(spectrum.zero) == 1.0 or line is None:
        return None
    c, power = spectrum.afterglow
    if c < _SPLIT_LEAST_C or line[0] <= 0:
        return None
    u = 1.0 - np.cos(2.0 * np.pi * np.linspace(0.0, 0.5, 513))
    seen = float(np.mean(u**4 / (1.0 + c * u)) / np.mean(u**4))
    electron = line[0] / seen
    return spectrum.level - power / electron, electron


def _fine_line(arr: np.ndarray) -> tuple[float, float] | None:
    """``(gain, offset)`` of a Poisson–Gaussian line fitted through a 5×5 binomial
    high-pass ``[1, −4, 6, −4, 1]ᵀ[1, −4, 6, −4, 1] / 70`` instead of the model's 3×3
    kernel: it lets through about 300× less of a lattice's signal at 0.15 cycles/px,
    which at high doses tilts the 3×3 fit (the zero level of a 1e5 e⁻/px image lands at
    a tenth of its mean).  The same binning and weighted line as :func:`estimate_noise`
    (on a central crop of the first frame); None when it fails."""
    frame = arr if arr.ndim == 2 else arr[0]
    h, w = frame.shape
    eh, ew = min(h, _ZERO_EDGE), min(w, _ZERO_EDGE)
    top, left = (h - eh) // 2, (w - ew) // 2
    x = np.asarray(frame[top : top + eh, left : left + ew], np.float64)
    if min(x.shape) < 16:
        return None
    r = ndimage.correlate(x, _KERNEL5, mode="nearest")[3:-3, 3:-3]
    m = ndimage.correlate(x, _KERNEL5**2, mode="nearest")[3:-3, 3:-3]
    box7 = ndimage.uniform_filter(x, 7, mode="nearest")[3:-3, 3:-3] * 49.0
    box5 = ndimage.uniform_filter(x, 5, mode="nearest")[3:-3, 3:-3] * 25.0
    ring = (box7 - box5) / 24.0
    stats = bin_stats(r.ravel(), m.ravel(), ring.ravel())
    if stats is None:
        return None
    centres, variances, _low, counts = stats
    return weighted_line(centres, variances, counts)


def _sample(arr: np.ndarray) -> np.ndarray:
    """At most about 2¹⁸ of the values, regularly spaced."""
    flat = arr.reshape(-1)
    return flat[:: max(1, flat.size >> 18)]


def _quantum(arr: np.ndarray) -> float:
    """The step between the values when they lie on a grid (integers, counts times a
    gain plus an offset), else 0."""
    values = np.unique(_sample(arr).astype(np.float64))
    if values.size < 2:
        return 0.0
    steps = np.diff(values)
    step = float(steps.min())
    span = float(values[-1] - values[0])
    if step <= 0 or span / step > 1e6:
        return 0.0
    cells = (values - values[0]) / step
    on_grid = np.abs(cells - np.round(cells)) < 1e-3
    return step if float(np.mean(on_grid)) >= _GRID_SHARE else 0.0
