"""Interference the same in every scan line, told apart from a lattice in a spectrum.

Pickup in the detector's electronics that is synchronous with the scan, or a converter's
fixed pattern, adds (nearly) the same waveform to every line: stripes along y that vary
along the fast scan (x).  Four of the six real HAADF scans of tk-r-em's test data carry
such stripes beyond what a probe passes (``benchmarks/real_micrographs.py``, "of it in
lines"): as tones at 0.39–0.49 cycles/px, or as a broad band that drifts slowly from
line to line.  In the frame's spectrum they lie in a narrow strip about zero slow-scan
frequency (``|f_y| ≤`` :data:`LINE_PATTERN_STRIP`), where they stand far above the
noise, as a lattice's reflections do: the lattice guard took them for structure and gave
them back after the network had removed them (docs/model.md, "Stripes the same in every
scan line").

:func:`line_interference` says where such a pattern lies, so that the guard leaves it
alone and the faithfulness readout does not check it as a reflection.

**The test.**  At each fast-scan frequency ``f_x`` the power in the strip is compared
with the noise's: the median power at the slow-scan frequencies beyond it (``|f_y|`` up
to 0.1; over ln 2, the median of an exponentially distributed power).  Noise that is
independent from line to line has the same power in the strip as beyond it, whatever its
correlation along the scan.  The spectrum is windowed (Hann along both axes), so that
the frame's edges do not leak into the strip or along it.  A frame holds a pattern when,
at and above :data:`LINE_PATTERN_BAND` cycles/px (beyond the band a probe passes at
usual sampling, where an image's structure is weak), its line mean has a tone (an ``f_y
= 0`` bin :data:`LINE_PATTERN_SIGNIFICANCE` times above the noise, which noise alone
does not reach), or the strip holds more than :data:`LINE_PATTERN_EXCESS` times the
noise at the median frequency (a broad pattern).  The pattern is then the strip at every
frequency of the band.

**Noise to compare with.**  Where the power next to the strip is more than ten times
that at the highest slow-scan frequencies, the frame's high frequencies are not noise
independent from line to line (a resampled frame, or a clean one whose spectrum there is
its window's leakage), and no pattern is told; nor where that power is below 1e-10 of
the frame's mean power per bin (float32 rounding of a clean frame, not noise).

**What stays.**  A lattice aligned with the scan puts reflections at ``f_y = 0`` too, at
multiples of its fundamental: a tone that continues such a harmonic series (a multiple
of a significant tone below the band, with one of the two orders below it significant
too) is the lattice's, and the frequencies within two bins of it are never the
pattern's.  A line mean with tones at more than 8 % of the frequencies below the band
holds a broad pattern, not a comb (the real scans: 15–25 %), and none of its tones is
taken for a harmonic.  A straight edge along y (a crystal beside vacuum) is the same in
every line too, but in one place, and its streak lies in the strip: so the left and the
right half of the frame must each hold the pattern as well (a sharp vertical edge across
SrTiO3 at 10–100 counts fired without this check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from napari_pinned._util.memory import row_bands

__all__ = [
    "LINE_PATTERN_BAND",
    "LINE_PATTERN_EXCESS",
    "LINE_PATTERN_SIGNIFICANCE",
    "LINE_PATTERN_STRIP",
    "LineInterference",
    "line_interference",
]

#: Lowest fast-scan frequency (cycles/px) at which a pattern the same in every line is
#: taken for interference.  Lattice fringes running along y are slower at usual
#: sampling; the noise estimate looks above the same frequency
#: (:mod:`napari_pinned.noise.correlation`).
LINE_PATTERN_BAND = 0.25
#: Half-width (cycles/px, at least two bins) of the strip about ``f_y = 0`` where a
#: pattern that drifts slowly from line to line puts its power (exp_hrstem #2: within
#: four bins of 768).
LINE_PATTERN_STRIP = 0.006
#: How many times the noise's power a tone must have at ``f_y = 0`` (one bin).  Noise
#: alone reaches 8–13 at most over the band (Poisson noise, white and with an afterglow
#: of 2 px, 256²–2048², ten draws each).
LINE_PATTERN_SIGNIFICANCE = 30.0
#: How many times the noise's power the strip must hold at the band's median frequency
#: for a broad pattern.  Noise alone gives 0.81 ± 0.07 on 256² frames, 0.93 ± 0.05 on
#: 768² and 0.98 ± 0.01 on 2048² (the same draws; at most 0.99); the real scans with
#: such a pattern 3.3–24.
LINE_PATTERN_EXCESS = 1.5
#: The noise is read up to this slow-scan frequency (cycles/px) …
_NOISE_LAST = 0.1
#: … and from at least this many bins.
_NOISE_BINS = 16
#: The noise next to the strip may be at most this many times the noise at the highest
#: slow-scan frequencies (``|f_y| ≥ 0.25``; Poisson noise 0.94–1.09, the six real scans
#: 1.4–5.7).  A clean frame's spectrum there is its window's leakage, orders of
#: magnitude steeper, and is not compared.
_NOISE_FLATNESS = 10.0
#: ... and at least this share of the frame's mean power per bin (its sum of squares):
#: float32 rounding, about 1e-14 of it, is not noise; a recording's noise is 1e-5 of it
#: or more even at 1e5 e⁻/px.
_NOISE_FLOOR = 1e-10
#: Fewest lines and columns a frame needs for the test.
_MIN_SIZE = 64
#: A tone within this many bins of a lattice harmonic is the lattice's.
_HARMONIC_BINS = 2.0
#: A lattice's comb has a few tones below the band; more than this share of its bins
#: (real scans with a broad pattern: 15–25 %) is a pattern's, and no tone is a harmonic.
_COMB_DENSITY = 0.08


def _peaks(ratio: np.ndarray) -> np.ndarray:
    """Bins (from the fourth) where ``ratio`` has a local maximum above
    :data:`LINE_PATTERN_SIGNIFICANCE`."""
    local = np.ones(len(ratio), bool)
    local[1:] &= ratio[1:] >= ratio[:-1]
    local[:-1] &= ratio[:-1] >= ratio[1:]
    local[:3] = False
    return np.flatnonzero(local & (ratio > LINE_PATTERN_SIGNIFICANCE))


def _centre(ratio: np.ndarray, k: int) -> float:
    """A peak's bin refined between bins (a parabola through the log ratio)."""
    if k >= len(ratio) - 1:
        return float(k)
    a, b, c = np.log(ratio[k - 1 : k + 2])
    bend = a - 2 * b + c
    return float(k + (0.5 * (a - c) / bend if bend < 0 else 0.0))


def _lattice_harmonics(peaks: list[float], band: float) -> list[float]:
    """The ``peaks`` (bins, refined) at or above ``band`` that continue a harmonic
    series of a peak below it."""

    def near(target: float) -> bool:
        return any(abs(p - target) <= _HARMONIC_BINS for p in peaks)

    below = [q for q in peaks if q < band]
    if len(below) > _COMB_DENSITY * band:
        return []  # peaks everywhere: a broad pattern, not a lattice's comb
    harmonics = []
    for p in peaks:
        if p < band:
            continue
        for f0 in below:
            order = round(p / f0)
            if order < 2 or abs(p - order * f0) > _HARMONIC_BINS:
                continue
            if any(n == 1 or near(n * f0) for n in (order - 1, order - 2) if n >= 1):
                harmonics.append(p)
                break
    return harmonics


@dataclass(frozen=True)
class LineInterference:
    """Where a frame's pattern the same in every line lies in its spectrum.

    Attributes
    ----------
    shape : tuple of int
        The frame's ``(H, W)``.
    strip : int
        Half-width of the strip about ``f_y = 0``, in bins of ``1/H``.
    band : float
        Lowest fast-scan frequency (cycles/px) of the pattern.
    harmonics : tuple of float
        Fast-scan frequencies (cycles/px) of a lattice's harmonics on ``f_y = 0``; the
        frequencies within two bins of them are not the pattern's.
    """

    shape: tuple[int, int]
    strip: int
    band: float
    harmonics: tuple[float, ...] = ()

    def covers(self, fy: np.ndarray, fx: np.ndarray, lines: int | None = None) -> np.ndarray:
        """Whether frequencies ``(fy, fx)`` (cycles/px, any sign) are the pattern's, in a
        spectrum taken over ``lines`` lines (the frame's height when None; a shorter
        window's strip is at least its Hann main lobe, a bin either side)."""
        fy, fx = np.abs(np.asarray(fy, float)), np.abs(np.asarray(fx, float))
        height, width = self.shape
        half = (self.strip + 0.5) / height
        if lines is not None:
            half = max(half, 1.5 / lines)
        inside = (fy <= half) & (fx >= self.band)
        for f in self.harmonics:
            inside &= np.abs(fx - f) * width > _HARMONIC_BINS
        return inside

    def rfft2_mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The bins of ``numpy.fft.rfft2`` of the frame, or of a window of ``shape`` of
        it (``(rows, cols // 2 + 1)``), that it covers."""
        rows, cols = self.shape if shape is None else shape
        fy = np.fft.fftfreq(rows)[:, None]
        fx = np.fft.rfftfreq(cols)[None, :]
        return self.covers(fy, fx, None if shape is None else rows)


def _spectrum(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """The complex64 spectrum (``rfft2`` layout) of the frame's lines less their means,
    Hann-windowed along both axes, and its mean power per bin (Parseval); made band by
    band of rows in float32, so that it holds about two float32 copies of the frame, not
    float64 ones."""
    height, width = frame.shape
    window_x = np.hanning(width).astype(np.float32)
    window_y = np.hanning(height).astype(np.float32)
    out = np.empty((height, width // 2 + 1), np.complex64)
    squares = 0.0
    for rows in row_bands(frame.shape):
        band = np.asarray(frame[rows], np.float64)
        band = (band - band.mean(axis=1, keepdims=True)).astype(np.float32)
        band *= window_x
        band *= window_y[rows, None]
        squares += float(np.sum(band.astype(np.float64) ** 2))
        out[rows] = sfft.rfft(band, axis=1)
    return sfft.fft(out, axis=0, overwrite_x=True), squares


def _power(spectrum: np.ndarray) -> np.ndarray:
    return spectrum.real**2 + spectrum.imag**2


def line_interference(frame: np.ndarray) -> LineInterference | None:
    """Where the pattern the same, or nearly, in every line of the 2D ``frame`` (rows:
    scan lines) lies in its spectrum, or None when it has none (see the module
    docstring).

    Parameters
    ----------
    frame : numpy.ndarray
        2D image, finite.
    """
    x = np.asarray(frame)
    if x.ndim != 2:
        raise ValueError(f"frame must be 2D, got shape {x.shape}")
    found = _found(x)
    if found is None:
        return None
    # Across the whole width: the left and the right half hold it each (a straight edge
    # along y, crystal beside vacuum, is the same in every line too, but in one place).
    half = x.shape[1] // 2
    if _found(x[:, :half]) is None or _found(x[:, half:]) is None:
        return None
    return found


def _found(x: np.ndarray) -> LineInterference | None:
    """:func:`line_interference` of the whole of ``x``, without the halves' check."""
    height, width = x.shape
    if height < _MIN_SIZE or width < _MIN_SIZE:
        return None
    strip = max(2, math.ceil(LINE_PATTERN_STRIP * height))
    first = 2 * strip + 1
    last = max(first + _NOISE_BINS, int(_NOISE_LAST * height))
    if last >= height // 2:
        return None
    spectrum, squares = _spectrum(x)
    beyond = np.r_[first : last + 1, height - last : height - first + 1]
    noise = np.median(_power(spectrum[beyond]), axis=0) / math.log(2.0)
    noise = np.maximum(noise, np.finfo(np.float32).tiny)
    band = LINE_PATTERN_BAND * width
    above = np.arange(len(noise)) >= band
    power = _power(spectrum[height // 4 : height - height // 4 + 1, above])
    far = np.median(power) / math.log(2.0)
    del power
    if not (np.median(noise[above]) <= _NOISE_FLATNESS * far and far > _NOISE_FLOOR * squares):
        return None  # no noise there to compare with (a clean frame)
    rows = np.r_[0 : strip + 1, height - strip : height]
    strip_power = _power(spectrum[rows])
    del spectrum
    excess = strip_power.mean(axis=0) / noise
    ratio = strip_power[0] / noise
    peaks = [_centre(ratio, int(k)) for k in _peaks(ratio)]
    harmonics = _lattice_harmonics(peaks, band)
    found = LineInterference(
        (height, width), strip, LINE_PATTERN_BAND, tuple(p / width for p in harmonics)
    )
    inside = found.covers(0.0, np.fft.rfftfreq(width))
    if not inside.any():
        return None
    tones = any(p >= band and p not in harmonics for p in peaks)
    if not (tones or np.median(excess[inside]) > LINE_PATTERN_EXCESS):
        return None
    return found
