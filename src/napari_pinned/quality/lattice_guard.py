"""Keep the lattice: give back what a denoiser took from the input's strong reflections.

Noise cannot make a strong Bragg reflection: where the input's power spectrum stands
ten times above its local noise floor, that frequency carries signal, measured with a
signal-to-noise ratio of ten or more, and the best estimate of it (the Wiener gain
SNR / (1 + SNR) ≥ 0.9) is nearly the input's own value.  A network that weakened such a
reflection (erasing a weak sublattice, smoothing a fine lattice it mistook for noise)
removed structure, not noise.

:func:`keep_lattice` therefore looks at the residual ``input − output`` only at the
input's strong reflections (and their immediate neighbours, which hold the envelope of
a lattice that fills only part of the field) and adds back the part of it that stands
above the residual's own noise floor, Wiener-weighted, ``w = 1 − floor / power``.
Everywhere else the network's output is untouched, so the noise it removed stays
removed; a reflection the network kept leaves a residual at the floor there, and
nothing changes.  Gain and offset of the input change nothing (every step is a ratio).

The guard also takes back what the denoiser invented.  Noise of power ``P`` at a
frequency moves the input's amplitude there by more than ``m·√P`` with probability
``exp(−m²)``, so a true signal is never much stronger than the input shows it: where the
output's amplitude exceeds the input's by more than :data:`INVENTION_MARGIN` times the
input's local noise amplitude (the same floor), the output there is scaled down to that
bound.  A denoiser that made columns sharper than the probe, or painted a texture the
input does not have, put power where the input has only noise; this removes it, and a
correct output (about the true signal there) is touched in a few per cent of the bins by
a small fraction of the noise.  The bound is below the faithfulness readout's margin for
an invented reflection (:data:`napari_pinned.quality.faithfulness.INVENTED_MARGIN`), so a guarded
output does not read as inventing.

The guard rests on one assumption: the input is the signal plus zero-mean noise, so
that its strong reflections are the signal's.  The paper's Composite Degradation Noise
breaks it: it replaces 50–90 % of the pixels by values drawn uniformly from the range
(Table 1), which weakens every reflection of the input by that fraction, and a model
trained on it rightly restores them.  The guard would take that back (the shipped
``cdn`` model on the demo's BaTiO3 at CDN level 1: 24.72 dB without it, 22.10 dB with
it), so it is not applied to models trained on CDN (:func:`guard_applies`).

Measured: on the real micrographs of ``benchmarks/real_micrographs.py`` it turns
lost reflections into kept ones without inventing any, and on the held-out
simulations of ``benchmarks/realistic.py`` it changes PSNR by about +0.1 dB on average
(docs/benchmarks.md).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft, ndimage

from napari_pinned.quality.spectra import (
    FLOOR_BLOCK,
    STRONG_REFLECTION_SNR,
    UNWINDOWED_DC_HALF_WIDTH,
    tile_floor,
)

__all__ = ["GUARD_SNR", "INVENTION_MARGIN", "NOT_ADDITIVE_NOISES", "guard_applies", "keep_lattice"]

#: A reflection is "strong" where the input's power exceeds its local floor this many
#: times: :data:`napari_pinned.quality.spectra.STRONG_REFLECTION_SNR`, the readout's
#: threshold too.
GUARD_SNR = STRONG_REFLECTION_SNR
#: The output's amplitude may exceed the input's by at most this many times the input's
#: local noise amplitude (square root of the floor); noise alone exceeds it in exp(−4) ≈ 2 %
#: of the bins, by little.
INVENTION_MARGIN = 2.0
#: Training noises (a model's metadata ``"noise"``) whose noisy images are not the signal
#: plus zero-mean noise: CDN, alone or mixed with the dose model (see the module
#: docstring).
NOT_ADDITIVE_NOISES = frozenset({"cdn", "mix"})
# The shipped BMZ architecture file mirrors these two (tests/share/test_bmz.py checks).
_FLOOR_BLOCK = FLOOR_BLOCK
_DC_RADIUS = UNWINDOWED_DC_HALF_WIDTH


def _floor(power: np.ndarray) -> np.ndarray:
    """The local noise floor of a power spectrum, smoothed (see
    :func:`~napari_pinned.quality.spectra.tile_floor`) and never zero: it divides."""
    return np.maximum(tile_floor(power, block=_FLOOR_BLOCK), np.finfo(np.float64).tiny)


def guard_applies(training_noise: object) -> bool:
    """Whether the guard suits a model trained on ``training_noise`` (its metadata's
    ``"noise"``; None or unknown: yes).  Not for models trained on CDN, whose inputs'
    reflections are weakened by the noise itself (see the module docstring)."""
    return not (isinstance(training_noise, str) and training_noise in NOT_ADDITIVE_NOISES)


def keep_lattice(source: np.ndarray, output: np.ndarray, *, snr: float = GUARD_SNR) -> np.ndarray:
    """The denoised ``output`` of a 2D ``source`` with its strong reflections kept.

    Parameters
    ----------
    source, output : numpy.ndarray
        The noisy input and the denoiser's output, 2D, same shape, same units.
    snr : float
        Power over local floor from which an input reflection counts as strong.

    Returns
    -------
    numpy.ndarray
        float32 array of the output's shape.
    """
    x = np.asarray(source, np.float64)
    y = np.asarray(output, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"source {x.shape} and output {y.shape} must be 2D of one shape")
    if min(x.shape) < 4 * _FLOOR_BLOCK:
        return y.astype(np.float32)
    # The transforms run in float32 (the correction needs no more, and they take half
    # the time), whose squared amplitudes overflow beyond ~1e19 and underflow below
    # ~1e-19: the guard works on the frame's deviation from its mean divided by a power
    # of two near its largest magnitude, which is exact, so that every gain gives the
    # same result (every step is a ratio).
    mean = float(x.mean())
    scale = _power_of_two(float(np.max(np.abs(x - mean))))
    kept = _keep((x - mean) / scale, (y - mean) / scale, snr)
    return (kept * scale + mean).astype(np.float32)


def _power_of_two(magnitude: float) -> float:
    """The power of two at or just above ``magnitude`` (1 for zero)."""
    return math.ldexp(1.0, math.frexp(magnitude)[1]) if magnitude > 0 else 1.0


def _keep(x: np.ndarray, y: np.ndarray, snr: float) -> np.ndarray:
    """:func:`keep_lattice` of a zero-mean frame ``x`` of magnitude about 1 (float64)."""
    spectrum = fft.rfft2(x.astype(np.float32))
    power = spectrum.real**2 + spectrum.imag**2
    floor = _floor(power)
    strong = power > snr * floor
    h = x.shape[0]
    ky = np.minimum(np.arange(h), h - np.arange(h))[:, None]
    kx = np.arange(power.shape[1])[None, :]
    away_from_dc = (ky > _DC_RADIUS) | (kx > _DC_RADIUS)
    strong &= away_from_dc
    if strong.any():
        residual = fft.rfft2((x - y).astype(np.float32))
        strong = ndimage.binary_dilation(strong, np.ones((3, 3), bool))
        residual_power = residual.real**2 + residual.imag**2
        tiny = np.finfo(residual_power.dtype).tiny
        weight = 1.0 - _floor(residual_power) / np.maximum(residual_power, tiny)
        weight = np.where(strong, np.clip(weight, 0.0, 1.0), 0.0).astype(np.float32)
        y = y + fft.irfft2(weight * residual, s=x.shape)
    return _take_back_inventions(y, np.sqrt(power), floor, away_from_dc)


def _take_back_inventions(
    y: np.ndarray, amplitude: np.ndarray, floor: np.ndarray, where: np.ndarray
) -> np.ndarray:
    """``y`` (about a zero mean) with every frequency bounded by the input's amplitude
    plus :data:`INVENTION_MARGIN` of its noise amplitude (see the module docstring)."""
    out = fft.rfft2(y.astype(np.float32))
    size = np.abs(out)
    limit = amplitude + INVENTION_MARGIN * np.sqrt(floor)
    over = where & (size > limit)
    if not over.any():
        return y
    scale = np.where(over, limit / np.maximum(size, np.finfo(np.float32).tiny) - 1.0, 0.0)
    return y + fft.irfft2(scale.astype(np.float32) * out, s=y.shape)
