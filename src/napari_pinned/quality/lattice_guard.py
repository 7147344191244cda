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

What is given back is a sum of plane waves over the whole frame; a lattice that fills
only part of it (a particle, a crystal beside vacuum) is given back only where the input
shows it: multiplied by a gate that is open where the input band-passed to those
reflections has more local energy than its noise alone would give, and closed where it
has not (:func:`_gate`; issue 22: before it, the guard painted stripes into the vacuum
beside a crystal, 3–3.7 counts rms against a noise of 1.4, and the readout read the
painted result as faithful).

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
it).  So a model trained on CDN is not guarded on frames that look like CDN: clipped at
both ends of their range (:func:`napari_pinned._util.intensity.clipped_ends`; CDN
clips, ≥ 2.5 % of the pixels at each end from level 0.5 on), which a real recording
is not.  On real scans it is guarded like any model: without the guard the ``cdn``
model erased lattice reflections on all six of tk-r-em's real HAADF micrographs
(``benchmarks/real_micrographs.py``).  See :func:`guard_applies`.

Measured: on the real micrographs of ``benchmarks/real_micrographs.py`` it turns
lost reflections into kept ones without inventing any, and on the held-out
simulations of ``benchmarks/realistic.py`` it changes PSNR by about +0.1 dB on average
(docs/benchmarks.md).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft, ndimage

from napari_pinned._util.intensity import clipped_ends
from napari_pinned._util.memory import row_bands
from napari_pinned.noise.line_pattern import line_interference
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
#: The restoration is gated to where the input shows its strong reflections: the local
#: energy of the input band-passed to them must exceed this many times the band's noise
#: (:func:`_gate`), averaged over a Gaussian of half the strongest reflection's period
#: within these bounds (px).  Beside a crystal, the vacuum is then left alone from about
#: 16 px off its edge (``benchmarks/lattice_guard.py --scene``; issue 22).
GATE_NOISE_FACTOR = 2.0
GATE_SMOOTHING = (4.0, 16.0)
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


def guard_applies(training_noise: object, frame: np.ndarray | None = None) -> bool:
    """Whether the guard suits a model trained on ``training_noise`` (its metadata's
    ``"noise"``; None or unknown: additive) denoising ``frame``.

    Always for models trained on additive noise.  For models trained on CDN, whose
    inputs' reflections are weakened by the noise itself, only on frames not clipped at
    both ends (not CDN-like, see the module docstring); without a frame, not.
    """
    if not (isinstance(training_noise, str) and training_noise in NOT_ADDITIVE_NOISES):
        return True
    return frame is not None and clipped_ends(frame) is None


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
    x = np.asarray(source)
    y = np.asarray(output)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"source {x.shape} and output {y.shape} must be 2D of one shape")
    if min(x.shape) < 4 * _FLOOR_BLOCK:
        return y.astype(np.float32)
    # The transforms run in float32 (the correction needs no more, and they take half
    # the time), whose squared amplitudes overflow beyond ~1e19 and underflow below
    # ~1e-19: the guard works on the frame's deviation from its mean divided by a power
    # of two near its largest magnitude, which is exact, so that every gain gives the
    # same result (every step is a ratio).  The frame is mapped in bands of rows, and
    # only the float32 corrections are kept whole: the guard holds a few float32 copies
    # of the frame, not float64 ones.
    mean = float(np.mean(x, dtype=np.float64))
    scale = _power_of_two(max(float(np.max(np.abs(x[rows] - mean))) for rows in row_bands(x.shape)))
    frame = _Centred(x, y, mean, scale)
    corrections = _keep(frame, snr)
    return frame.result(corrections)


class _Centred:
    """``source`` and ``output`` about ``mean`` in units of ``scale`` (float64, a band
    of rows at a time), and the output with float32 corrections added."""

    def __init__(self, source: np.ndarray, output: np.ndarray, mean: float, scale: float):
        self.source, self.output, self.mean, self.scale = source, output, mean, scale
        self.shape = source.shape

    def _map(self, a: np.ndarray) -> np.ndarray:
        return (np.asarray(a, np.float64) - self.mean) / self.scale

    def float32(self, what: str, corrections: tuple[np.ndarray, ...] = ()) -> np.ndarray:
        """``"source"``, ``"residual"`` (source − output) or ``"output"`` plus
        ``corrections``, in float32."""
        out = np.empty(self.shape, np.float32)
        for rows in row_bands(out.shape):
            if what == "source":
                out[rows] = self._map(self.source[rows])
            elif what == "residual":
                out[rows] = self._map(self.source[rows]) - self._map(self.output[rows])
            else:
                out[rows] = self._output(rows, corrections)
        return out

    def _output(self, rows: slice, corrections: tuple[np.ndarray, ...]) -> np.ndarray:
        y = self._map(self.output[rows])
        for correction in corrections:
            y = y + correction[rows]
        return y

    def result(self, corrections: tuple[np.ndarray, ...]) -> np.ndarray:
        """The corrected output back in the input's units (float32)."""
        out = np.empty(self.shape, np.float32)
        for rows in row_bands(out.shape):
            out[rows] = self._output(rows, corrections) * self.scale + self.mean
        return out


def _power_of_two(magnitude: float) -> float:
    """The power of two at or just above ``magnitude`` (1 for zero)."""
    return math.ldexp(1.0, math.frexp(magnitude)[1]) if magnitude > 0 else 1.0


def _keep(frame: _Centred, snr: float) -> tuple[np.ndarray, ...]:
    """The float32 corrections :func:`keep_lattice` adds to the centred output."""
    spectrum = fft.rfft2(frame.float32("source"))
    power = spectrum.real**2 + spectrum.imag**2
    floor = _floor(power)
    strong = power > snr * floor
    # Interference the same in every scan line is not structure (noise.line_pattern).
    found = line_interference(frame.source)
    interference = None if found is None else found.rfft2_mask()
    if interference is not None:
        strong &= ~interference
    h = frame.shape[0]
    ky = np.minimum(np.arange(h), h - np.arange(h))[:, None]
    kx = np.arange(power.shape[1])[None, :]
    away_from_dc = (ky > _DC_RADIUS) | (kx > _DC_RADIUS)
    strong &= away_from_dc
    corrections: tuple[np.ndarray, ...] = ()
    if strong.any():
        strong = ndimage.binary_dilation(strong, np.ones((3, 3), bool))
        if interference is not None:
            strong &= ~interference
        gate = _gate(spectrum, power, strong, floor, frame.shape)
        del spectrum
        residual = fft.rfft2(frame.float32("residual"))
        residual_power = residual.real**2 + residual.imag**2
        residual_floor = _floor(residual_power)
        tiny = np.finfo(residual_power.dtype).tiny
        for rows in row_bands(residual.shape):
            weight = 1.0 - residual_floor[rows] / np.maximum(residual_power[rows], tiny)
            weight = np.where(strong[rows], np.clip(weight, 0.0, 1.0), 0.0).astype(np.float32)
            residual[rows] *= weight
        del residual_power, residual_floor
        restored = fft.irfft2(residual, s=frame.shape)
        del residual
        restored *= gate  # only where the input shows these reflections
        corrections = (restored,)
    return corrections + _take_back_inventions(frame, corrections, power, floor, away_from_dc)


def _gate(
    spectrum: np.ndarray,
    power: np.ndarray,
    strong: np.ndarray,
    floor: np.ndarray,
    shape: tuple[int, int],
) -> np.ndarray:
    """Where the input shows its strong reflections: ``clip(1 − 2N/E, 0, 1)`` (float32).

    ``E`` is the local energy of the input band-passed to the ``strong`` bins, a Gaussian
    average of its square over half the period of the strongest reflection (4–16 px);
    ``N`` is that band's per-pixel variance from the noise alone, the floor summed over
    its bins (Parseval; each rfft bin but the first column, and the last for an even
    width, stands for two bins of the full spectrum).  In vacuum beside a crystal the
    band holds only noise (``E ≈ N``: closed), in the crystal its lattice (open).
    """
    band = fft.irfft2(np.where(strong, spectrum, np.complex64(0)), s=shape).astype(np.float32)
    double = np.full(strong.shape[1], 2.0)
    double[0] = 1.0
    if shape[1] % 2 == 0:
        double[-1] = 1.0
    noise = float(np.sum(np.where(strong, floor, 0.0) * double)) / float(shape[0] * shape[1]) ** 2
    # The strongest reflection (over its floor), found band by band (memory).
    best, row, col = -1.0, 0, 0
    for rows in row_bands(power.shape):
        ratio = np.where(strong[rows], power[rows] / floor[rows], 0.0)
        k = int(np.argmax(ratio))
        if ratio.flat[k] > best:
            best, (r, col) = float(ratio.flat[k]), np.unravel_index(k, ratio.shape)
            row = rows.start + int(r)
    ky = min(row, shape[0] - row) / shape[0]
    frequency = math.hypot(ky, col / shape[1])
    sigma = float(np.clip(0.5 / frequency, GATE_SMOOTHING[0], GATE_SMOOTHING[1]))
    band *= band
    energy = ndimage.gaussian_filter(band, sigma, mode="reflect")
    del band
    # 1 − 2N/E, in place (memory).
    gate = np.maximum(energy, np.finfo(np.float32).tiny, out=energy)
    np.divide(GATE_NOISE_FACTOR * noise, gate, out=gate)
    np.subtract(1.0, gate, out=gate)
    return np.clip(gate, 0.0, 1.0, out=gate)


def _take_back_inventions(
    frame: _Centred,
    corrections: tuple[np.ndarray, ...],
    power: np.ndarray,
    floor: np.ndarray,
    where: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """The correction that bounds every frequency of the corrected output by the
    input's amplitude plus :data:`INVENTION_MARGIN` of its noise amplitude (see the
    module docstring); none when nothing exceeds it."""
    out = fft.rfft2(frame.float32("output", corrections))
    changed = False
    for rows in row_bands(out.shape):
        size = np.abs(out[rows])
        limit = np.sqrt(power[rows]) + INVENTION_MARGIN * np.sqrt(floor[rows])
        over = where[rows] & (size > limit)
        changed |= bool(over.any())
        scale = np.where(over, limit / np.maximum(size, np.finfo(np.float32).tiny) - 1.0, 0.0)
        out[rows] *= scale.astype(np.float32)
    if not changed:
        return ()
    return (fft.irfft2(out, s=frame.shape),)
