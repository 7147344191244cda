"""What a scanning detector adds to the counts: the pieces of a realistic recording.

:func:`napari_pinned.noise.synthesis.record_stem_image` composes these with shot and read
noise; each piece is a small function here so that tests can check its statistics alone.

* **Afterglow** (:func:`apply_afterglow`).  A scintillator–photomultiplier detector
  keeps glowing after each electron, and its read-out integrates that glow over the
  next pixels of the fast scan: the recorded line is the counts convolved with a causal
  exponential ``h[k] = (1 − a)·aᵏ``, ``a = exp(−1/τ)`` for a decay length of ``τ``
  pixels (Sang & LeBeau, "Characterizing the response of a scintillator-based detector
  to single electrons", Ultramicroscopy 161, 2016, measure the single-electron response
  of such detectors).  ``Σh = 1`` keeps the mean; the noise comes out correlated
  along the rows, with ``Σh² = (1 − a)/(1 + a)`` of its variance left per pixel but all
  of it at zero frequency.  The signal is smeared as well, and shifted along x by
  ``a/(1 − a) ≈ τ`` px: that is part of what was recorded, so a denoiser's target
  keeps it.
* **Line gains** (:func:`line_gains`).  The beam current and the detector's gain drift
  between lines (flyback, line synchronisation): every line's signal is multiplied by
  its own ``1 + N(0, s²)``.
* **Dropped lines** (:func:`dropped_rows`).  Occasionally a line carries no signal (a
  missed line trigger): only the detector's offset and read noise are recorded.
* **Resampling** (:func:`resample_frame`).  Not the detector's: a frame drift-corrected,
  registered or rotated after it was recorded is interpolated between pixels, which
  mixes each pixel's noise with its neighbours' along both axes (linear interpolation
  halfway between two pixels leaves half the variance per pixel and none at the
  Nyquist frequency) while the zero-frequency noise, and so the dose, stays.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import ndimage, signal

from napari_pinned.settings import MAX_RESAMPLE_ZOOM

__all__ = [
    "afterglow_decay",
    "afterglow_response",
    "apply_afterglow",
    "check_zoom",
    "dropped_rows",
    "line_gains",
    "resample_frame",
]

#: The impulse response is listed down to this share of its first tap.
_RESPONSE_TAIL = 1e-6


def afterglow_decay(tau: float) -> float:
    """The per-pixel decay ``a = exp(−1/τ)`` of an afterglow ``τ`` px long (0 for 0)."""
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"afterglow must be finite and >= 0 px, got {tau!r}")
    return math.exp(-1.0 / tau) if tau > 0 else 0.0


def afterglow_response(tau: float) -> np.ndarray:
    """The detector's causal impulse response along the fast scan, ``h[0], h[1], …``
    (summing to one), down to a tail of 1e-6 of the first tap."""
    a = afterglow_decay(tau)
    if a == 0:
        return np.ones(1)
    taps = 1 + math.ceil(math.log(_RESPONSE_TAIL) / math.log(a))
    return (1.0 - a) * a ** np.arange(taps)


def apply_afterglow(values: np.ndarray, tau: float) -> np.ndarray:
    """``values`` (rows along the last axis, the fast scan) as a detector with an
    afterglow of ``τ`` px records them: each row filtered by :func:`afterglow_response`.

    Every row starts in the steady state of its own first value (the detector has
    settled during the flyback), so a uniform row stays uniform.  Returns float32.
    """
    arr = np.asarray(values, np.float32)
    a = afterglow_decay(tau)
    if a == 0:
        return arr.copy()
    b_coef, a_coef = np.array([1.0 - a]), np.array([1.0, -a])
    # lfilter_zi is the state of a unit step's steady state; scaled by each row's start.
    zi = signal.lfilter_zi(b_coef, a_coef)[None, :] * arr.reshape(-1, arr.shape[-1])[:, :1]
    rows = arr.reshape(-1, arr.shape[-1]).astype(np.float64)
    out, _ = signal.lfilter(b_coef, a_coef, rows, axis=-1, zi=zi)
    return out.reshape(arr.shape).astype(np.float32)


def line_gains(shape: tuple[int, ...], spread: float, rng: np.random.Generator) -> np.ndarray:
    """One gain ``1 + N(0, spread²)`` per scan line, clipped at zero, shaped to
    broadcast over an image or stack of ``shape`` (rows along axis −2)."""
    lines = (*shape[:-1], 1)
    gains = 1.0 + rng.standard_normal(lines) * spread
    return np.clip(gains, 0.0, None).astype(np.float32)


#: Frequencies (cycles/px along the fast scan) and count of the tones of a pattern
#: repeated in every line (:func:`line_pattern`).  Two of tk-r-em's real scans show
#: such stripes at 0.43–0.46 cycles/px (``benchmarks/real_micrographs.py``, "of it in
#: lines").  Only tones above the band a probe passes at usual sampling (0.25
#: cycles/px, where the noise estimate looks too) are drawn: a slower pattern the same
#: in every line looks like lattice fringes running along y, and a model taught to
#: remove it could remove those.
LINE_PATTERN_FREQUENCIES = (0.25, 0.5)
LINE_PATTERN_TONES = (1, 3)


def line_pattern(width: int, rms: float, rng: np.random.Generator) -> np.ndarray:
    """One scan line's interference, the same in every line (pickup or a converter's
    pattern synchronous with the scan): 1–3 tones at random frequencies in
    :data:`LINE_PATTERN_FREQUENCIES` and phases, of equal amplitude, scaled to an RMS of
    ``rms`` over the line; shape ``(width,)``, float32."""
    if not (math.isfinite(rms) and rms >= 0):
        raise ValueError(f"line pattern RMS must be finite and non-negative, got {rms!r}")
    tones = int(rng.integers(LINE_PATTERN_TONES[0], LINE_PATTERN_TONES[1] + 1))
    frequencies = rng.uniform(*LINE_PATTERN_FREQUENCIES, size=tones)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=tones)
    x = np.arange(width)[:, None]
    pattern = np.cos(2.0 * np.pi * frequencies * x + phases).sum(axis=1)
    level = float(np.sqrt(np.mean(pattern**2)))
    return (pattern * (rms / level if level > 0 else 0.0)).astype(np.float32)


def dropped_rows(rows: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of the lines that carry no signal: ``round(share · rows)`` of them, at
    least one when ``share > 0``, at random."""
    if not (math.isfinite(share) and 0 <= share <= 1):
        raise ValueError(f"dropped line share must be in [0, 1], got {share!r}")
    count = 0 if share == 0 else max(1, round(share * rows))
    return np.sort(rng.choice(rows, size=min(count, rows), replace=False))


def check_zoom(zoom: float, name: str = "zoom") -> None:
    """Raise ``ValueError`` unless ``zoom`` is a magnification :func:`resample_frame` takes:
    a real number in 1–:data:`napari_pinned.settings.MAX_RESAMPLE_ZOOM`."""
    if not (
        isinstance(zoom, numbers.Real) and math.isfinite(zoom) and 1.0 <= zoom <= MAX_RESAMPLE_ZOOM
    ):
        raise ValueError(f"{name} must be in [1, {MAX_RESAMPLE_ZOOM:g}], got {zoom!r}")


def resample_frame(
    image: np.ndarray,
    rotation: float,
    shift: tuple[float, float],
    order: int = 1,
    zoom: float = 1.0,
) -> np.ndarray:
    """``image`` rotated by ``rotation`` degrees about its centre, magnified ``zoom``
    times (≥ 1: upsampled, as a resize or a finer grid after registration makes it) and
    shifted by ``shift`` ``(dy, dx)`` pixels, by spline interpolation of ``order`` (1:
    linear, 3: cubic), as drift correction or registration resamples a recorded frame;
    edges reflected (:func:`scipy.ndimage.affine_transform`)."""
    if order not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"interpolation order must be 0–5, got {order!r}")
    check_zoom(zoom)
    angle = math.radians(rotation)
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) / zoom
    centre = (np.array(image.shape, dtype=np.float64) - 1.0) / 2.0
    offset = centre - matrix @ centre + np.asarray(shift, dtype=np.float64)
    values = np.asarray(image, dtype=np.float64)
    out = ndimage.affine_transform(values, matrix, offset=offset, order=order, mode="reflect")
    return out.astype(np.result_type(image.dtype, np.float32), copy=False)
