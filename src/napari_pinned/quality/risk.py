"""How far a denoiser's output is from the truth, estimated from the noisy image alone.

Stein's unbiased risk estimate (SURE; Stein, Ann. Stat. 9, 1981) gives the mean squared
error of a denoiser ``f`` on ``y = s + n``, with Gaussian noise ``n`` of covariance ``Σ``,
without knowing ``s``::

    E‖f(y) − s‖² = E‖f(y) − y‖² − tr Σ + 2 tr(Σ J_f(y))

The last term, the noise the denoiser lets through, is measured by probing: for a
random ``δ`` of covariance ``Σ``, ``E[δᵀ (f(y + εδ) − f(y))] / ε → tr(Σ J_f)`` (Monte-Carlo
SURE: Ramani, Blu and Unser, IEEE TIP 17, 2008), so ``f`` only has to be run, never
differentiated.  It holds for any denoiser that does not depend on the noise it is
scored on: score a model on pixels it was not trained on.

``Σ`` must be the noise's own.  A scanning detector's noise is correlated along the scan
and varies with the signal, so :func:`measure_scan_noise` reads the pixel variance and
the noise's spectrum along each axis where the other axis's frequency is above
:data:`NO_SIGNAL_FREQUENCY` (a probe-limited image has no signal there), assuming the
spectrum is separable and white along at least one axis (a detector smears along the
fast scan).  On 512² lattice frames with white noise and afterglows along x or y the
variance reads within 5 % of the truth's (``tests/quality/test_risk.py``); on the adapt
benchmark (1024², white and smeared noise at 3 and 30 e⁻/px) the decision built on it
kept the better of the fine-tuned and the starting model in 11 of 12 recordings, and
the starting one where fine-tuning was 0.16 dB ahead (``benchmarks/adapt.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from napari_pinned.quality.spectra import hann_window

__all__ = [
    "NO_SIGNAL_FREQUENCY",
    "RiskEstimate",
    "ScanNoise",
    "estimated_risks",
    "measure_scan_noise",
    "noise_sample",
]

#: Spatial frequency (cycles/px) above which a probe-limited atomic-resolution image
#: holds essentially no signal: power there is noise.
NO_SIGNAL_FREQUENCY = 0.4
#: Band powers within this ratio of each other count as noise white along both axes.
_WHITE_RATIO = 1.5
#: Perturbation of the Monte-Carlo divergence, in units of the noise: small enough for a
#: derivative, large enough to stand above float32 rounding of the output.
_STEP = 1e-2
# Threads of the spectrum's transform.
_WORKERS = os.cpu_count() or 1


@dataclass(frozen=True)
class ScanNoise:
    """A frame's noise: its variance per pixel and its spectrum along x and y.

    ``spectrum_x`` (length W) and ``spectrum_y`` (length H) are in the FFT's frequency
    order and average to 1; white noise has both flat.
    """

    variance: float
    spectrum_x: np.ndarray
    spectrum_y: np.ndarray

    def spectra(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(along y, along x)`` on an FFT grid of ``shape`` (the measured frame's, or
        interpolated to another size), each averaging to 1."""
        return _resampled(self.spectrum_y, shape[0]), _resampled(self.spectrum_x, shape[1])


@dataclass(frozen=True)
class RiskEstimate:
    """Estimated mean squared error of each denoiser, with its standard error over the
    probes (the probes are shared, so differences are known better than each value)."""

    risks: tuple[float, ...]
    standard_errors: tuple[float, ...]
    difference_errors: tuple[float, ...]  # of risks[i] − risks[0]


def measure_scan_noise(frame: np.ndarray) -> ScanNoise:
    """The noise of ``frame`` (2D) from its power above :data:`NO_SIGNAL_FREQUENCY`.

    The band where ky is high gives the spectrum's shape along x, the band where kx is
    high its shape along y.  Each band's mean power is the pixel variance when the noise
    is white along the other axis: the band of a correlated axis holds more power than
    the other (whose high frequencies the correlation damps), and white noise gives
    both bands alike, so their mean is taken within :data:`_WHITE_RATIO`.  Measure on a
    whole frame: a strip of a hundred rows reads the variance 10–25 % off.
    """
    arr = np.asarray(frame, dtype=np.float64)
    if arr.ndim != 2 or min(arr.shape) < 16:
        raise ValueError(f"need a 2D frame of at least 16 px per side, got shape {arr.shape}")
    along_x, along_y = _band_profiles(arr)
    level_x, level_y = float(along_x.mean()), float(along_y.mean())
    if max(level_x, level_y) > _WHITE_RATIO * min(level_x, level_y):
        variance = max(level_x, level_y)
    else:
        variance = 0.5 * (level_x + level_y)
    return ScanNoise(variance, along_x / level_x, along_y / level_y)


def _band_profiles(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(along x, along y)``: the Hann-windowed power spectrum's mean over the rows
    whose ``|ky|`` exceeds :data:`NO_SIGNAL_FREQUENCY`, and over such columns, each in
    FFT order over the whole axis.

    From the half spectrum of a real frame (threaded, a fraction of a full complex
    transform's time on a 2048² frame): bin ``(−ky, −kx)`` has ``(ky, kx)``'s power, so
    the rows' mean is symmetric in ``kx``, and a column ``−kx`` is column ``kx`` with
    its rows reversed."""
    h, w = arr.shape
    window = hann_window(arr.shape)
    half = sfft.rfft2((arr - arr.mean()) * window, workers=_WORKERS)
    power = (half.real**2 + half.imag**2) / np.sum(window**2)
    high_y = np.abs(np.fft.fftfreq(h)) > NO_SIGNAL_FREQUENCY
    kx = np.arange(power.shape[1])
    high_x = kx / w > NO_SIGNAL_FREQUENCY
    along_x_half = power[high_y].mean(axis=0)
    along_x = np.concatenate([along_x_half, along_x_half[1 : w - power.shape[1] + 1][::-1]])
    # Columns kx and −kx (the Nyquist column, on an even width, is its own partner).
    reversed_rows = np.roll(power[::-1], 1, axis=0)  # row −ky at ky
    own = high_x & (2 * kx == w)
    pair = high_x & ~own
    total = (power[:, pair] + reversed_rows[:, pair]).sum(axis=1) + power[:, own].sum(axis=1)
    along_y = total / (2 * int(pair.sum()) + int(own.sum()))
    return along_x, along_y


def noise_sample(
    noise: ScanNoise, rng: np.random.Generator, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """A Gaussian field of unit variance with ``noise``'s spectrum, of ``shape``
    (default: the measured frame's; other sizes take the spectra interpolated)."""
    shape = shape or (len(noise.spectrum_y), len(noise.spectrum_x))
    spectrum_y, spectrum_x = noise.spectra(shape)
    white = np.fft.fft2(rng.standard_normal(shape))
    shaped = white * np.sqrt(spectrum_y)[:, None] * np.sqrt(spectrum_x)[None, :]
    return np.fft.ifft2(shaped).real


def _resampled(spectrum: np.ndarray, size: int) -> np.ndarray:
    """A symmetric spectrum in FFT order, interpolated to ``size`` bins (mean 1)."""
    if len(spectrum) == size:
        return spectrum
    measured = np.abs(np.fft.fftfreq(len(spectrum)))
    order = np.argsort(measured, kind="stable")
    values = np.interp(np.abs(np.fft.fftfreq(size)), measured[order], spectrum[order])
    return values / values.mean()


def estimated_risks(
    denoisers: list[Callable[[np.ndarray], np.ndarray]],
    noisy: np.ndarray,
    variance: np.ndarray,
    noise: ScanNoise,
    *,
    scored: np.ndarray | None = None,
    probes: int = 3,
    seed: int = 0,
) -> RiskEstimate:
    """Monte-Carlo SURE of each denoiser on ``noisy``, with the same probes for all.

    Parameters
    ----------
    denoisers : list of callables
        Each maps a 2D float64 array to its denoised version (same shape and units).
    noisy : array
        The noisy frame (2D), in the units the denoisers take.
    variance : array
        The noise variance of each pixel (``noisy``'s shape); its shape across the frame
        matters with ``noise.spectrum_*``, so pass ``noise.variance`` scaled by the
        signal's profile.
    noise : ScanNoise
        The noise's spectra (:func:`measure_scan_noise`, best of the whole frame
        ``noisy`` is cut from).
    scored : bool array, optional
        Pixels to average over (default: all), e.g. rows no model was trained on.
    probes : int
        Random probes of the divergence.
    seed : int
        Seeds the probes.

    Returns
    -------
    RiskEstimate
        Mean squared error per pixel, in ``noisy``'s units squared.
    """
    y = np.asarray(noisy, dtype=np.float64)
    sigma = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))
    keep = np.ones(y.shape, bool) if scored is None else np.asarray(scored, bool)
    rng = np.random.default_rng(seed)
    deltas = [sigma * noise_sample(noise, rng, y.shape) for _ in range(probes)]
    per_probe = np.empty((len(denoisers), probes))
    for i, denoiser in enumerate(denoisers):
        out = np.asarray(denoiser(y), dtype=np.float64)
        fit = np.mean((out - y)[keep] ** 2) - np.mean(sigma[keep] ** 2)
        for j, delta in enumerate(deltas):
            moved = np.asarray(denoiser(y + _STEP * delta), dtype=np.float64)
            divergence = np.mean((delta * (moved - out))[keep]) / _STEP
            per_probe[i, j] = fit + 2.0 * divergence
    spread = per_probe.std(axis=1, ddof=1) / np.sqrt(probes) if probes > 1 else per_probe[:, 0] * 0
    differences = per_probe - per_probe[:1]
    diff_spread = differences.std(axis=1, ddof=1) / np.sqrt(probes) if probes > 1 else spread * 0
    return RiskEstimate(
        tuple(float(v) for v in per_probe.mean(axis=1)),
        tuple(float(v) for v in spread),
        tuple(float(v) for v in diff_spread),
    )
