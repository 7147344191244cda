"""A candidate lattice guard for issue 22 §2, measured by ``benchmarks/lattice_guard.py``.

Not used by napari-pinned.  The shipped guard (:mod:`napari_pinned.quality.lattice_guard`)
gives back what the network took at the input's strong reflections as plane waves over
the whole frame, so beside a crystal it paints stripes into vacuum.  This candidate
gives it back only where the input shows those reflections: the input band-passed to
its strong reflections, ``B``, has a local energy ``E = G_σ * B²`` (Gaussian, σ half the
period of the strongest reflection, 4–16 px); the noise alone gives ``B`` a per-pixel
variance ``N`` (the spectral floor summed over the band, Parseval), and the restoration
is multiplied by the gate ``g = clip(1 − 2 N / E, 0, 1)``.  The invention bound stays
global, as shipped.

Measured on a SrTiO3 half-plane next to vacuum (``lattice_guard.py --scene``): an
output with the lattice blurred away is restored in the crystal as well as by the shipped
guard (rms error 6.7 vs 7.1 counts) and the vacuum is left alone from 16 px off the
edge (shipped: 3–3.7 counts rms of stripes everywhere).  What it does not do yet: take
back a lattice the network painted into vacuum at frequencies the crystal also has
(the global bound cannot see where; a local bound by band energy let 60 % through, as
the band's noise integrated over all strong bins hides a 20 %-contrast lattice).  The
BioImage Model Zoo architecture file would have to mirror it.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage

from napari_pinned.quality import lattice_guard as shipped

#: The gate opens where the band's local energy exceeds this many times its noise.
GATE_NOISE_FACTOR = 2.0


def keep_lattice(source: np.ndarray, output: np.ndarray) -> np.ndarray:
    """:func:`napari_pinned.quality.lattice_guard.keep_lattice` with the restoration gated
    by where the input shows its strong reflections (module docstring)."""
    x = np.asarray(source)
    y = np.asarray(output)
    if min(x.shape) < 4 * shipped._FLOOR_BLOCK:
        return y.astype(np.float32)
    mean = float(np.mean(x, dtype=np.float64))
    magnitude = max(float(np.max(np.abs(x[rows] - mean))) for rows in shipped._bands(x))
    frame = shipped._Centred(x, y, mean, shipped._power_of_two(magnitude))
    return frame.result(_keep(frame))


def _keep(frame) -> tuple[np.ndarray, ...]:
    spectrum = fft.rfft2(frame.float32("source"))
    power = spectrum.real**2 + spectrum.imag**2
    floor = shipped._floor(power)
    h = frame.shape[0]
    ky = np.minimum(np.arange(h), h - np.arange(h))[:, None]
    kx = np.arange(power.shape[1])[None, :]
    away_from_dc = (ky > shipped._DC_RADIUS) | (kx > shipped._DC_RADIUS)
    strong = (power > shipped.GUARD_SNR * floor) & away_from_dc
    corrections: tuple[np.ndarray, ...] = ()
    if strong.any():
        strong = ndimage.binary_dilation(strong, np.ones((3, 3), bool))
        gate = _gate(spectrum, power, strong, floor, frame.shape)
        residual = fft.rfft2(frame.float32("residual"))
        residual_power = residual.real**2 + residual.imag**2
        weight = 1.0 - shipped._floor(residual_power) / np.maximum(residual_power, 1e-38)
        residual *= np.where(strong, np.clip(weight, 0.0, 1.0), 0.0).astype(np.float32)
        restored = fft.irfft2(residual, s=frame.shape)
        corrections = (restored * gate,)
    bound = shipped._take_back_inventions(frame, corrections, power, floor, away_from_dc)
    return corrections + bound


def _gate(spectrum, power, strong, floor, shape) -> np.ndarray:
    """``clip(1 − 2 N / E, 0, 1)``: where the input shows its strong reflections."""
    band = fft.irfft2(np.where(strong, spectrum, 0), s=shape).astype(np.float32)
    # Each rfft bin but the first column (and the last, for an even width) stands for
    # two bins of the full spectrum; Parseval gives the band's per-pixel noise variance.
    double = np.full(strong.shape[1], 2.0)
    double[0] = 1.0
    if shape[1] % 2 == 0:
        double[-1] = 1.0
    noise = float(np.sum(np.where(strong, floor, 0.0) * double)) / float(np.prod(shape)) ** 2
    ky = np.minimum(np.arange(shape[0]), shape[0] - np.arange(shape[0]))[:, None] / shape[0]
    kx = np.arange(strong.shape[1])[None, :] / shape[1]
    ratio = np.where(strong, power / np.maximum(floor, 1e-300), 0.0)
    frequency = float(np.hypot(ky, kx).ravel()[np.argmax(ratio)])
    sigma = float(np.clip(0.5 / max(frequency, 1e-6), 4.0, 16.0))
    energy = ndimage.gaussian_filter(band * band, sigma, mode="reflect")
    gate = 1.0 - GATE_NOISE_FACTOR * noise / np.maximum(energy, np.finfo(np.float32).tiny)
    return np.clip(gate, 0.0, 1.0).astype(np.float32)
