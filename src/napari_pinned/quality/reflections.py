"""The lattice reflections of the faithfulness readout: found, measured, compared.

Steps 4 and 5 of :mod:`napari_pinned.quality.faithfulness`: the input's strong Bragg
reflections and what the denoiser did to each (:func:`input_reflections`), and the
reflections of the output that the input does not have (:func:`invented_reflections`),
both on the half-plane spectra of :mod:`napari_pinned.quality.half_plane`.  The
thresholds that decide what counts live here; the verdict over all of them lives in
:mod:`napari_pinned.quality.faithfulness`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from napari_pinned.quality.half_plane import BOX_BINS, LOBE, HalfPlaneSpectra
from napari_pinned.quality.spectra import STRONG_REFLECTION_SNR

__all__ = [
    "INVENTED_MARGIN",
    "INVENTED_RATIO",
    "KEPT_TOLERANCE",
    "MAX_PEAKS",
    "RESIDUAL_PEAK_SNR",
    "RESIDUAL_SHARE_LIMIT",
    "STRONG_PEAK_SNR",
    "BraggPeak",
    "InventedPeak",
    "Reflection",
    "input_reflections",
    "invented_reflections",
]

#: A reflection counts when its power above the floor is this many times the floor's
#: power in its 3×3 box (:data:`napari_pinned.quality.spectra.STRONG_REFLECTION_SNR`, the
#: lattice guard's threshold too).  Noise alone reaches about 7 once in a 2048² spectrum,
#: and at 10 the noise moves a reflection's amplitude by at most 1/sqrt(2 · 9 · 10) ≈ 7.5 %
#: rms, so a faithful output stays within ±25 % to 3.3 σ.
STRONG_PEAK_SNR = STRONG_REFLECTION_SNR
#: A reflection is kept when its amplitude ratio output/input lies within 1 ± this.
KEPT_TOLERANCE = 0.25
#: An invented reflection has at least this many times the input's amplitude there ...
INVENTED_RATIO = 1.5
#: ... and exceeds it by more than this many times the input's rms noise amplitude.
INVENTED_MARGIN = 2.5
#: The residual "shows" a reflection when it keeps more than this share of its amplitude
#: and stands :data:`RESIDUAL_PEAK_SNR` above the residual's floor.
RESIDUAL_SHARE_LIMIT = 0.25
RESIDUAL_PEAK_SNR = 4.0
#: The strongest reflections checked at most.
MAX_PEAKS = 48

_PRESELECT = 3.0  # candidates need S ≥ 3 · 9 · (coarse floor); final test is at 11
_MAX_CANDIDATES = 16384  # a 2048² spectrum of pure noise offers ~4000


@dataclass(frozen=True)
class Reflection:
    """Where a reflection lies in the spectrum.

    Attributes
    ----------
    index : tuple of int
        ``(ky, kx)`` DFT bin, signed, the representative of the Friedel pair with
        ``kx ≥ 0``.
    frequency : tuple of float
        ``(fy, fx)`` in cycles per pixel.
    spatial_frequency : float
        ``|f|`` in cycles per pixel.
    d_spacing : float or None
        Lattice-plane spacing ``pixel_size / |f|`` in Å, when the pixel size is known.
    """

    index: tuple[int, int]
    frequency: tuple[float, float]
    spatial_frequency: float
    d_spacing: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON: tuples become lists, NaN and infinity None."""
        plain: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, float):
                value = float(value) if math.isfinite(value) else None
            plain[item.name] = value
        return plain


@dataclass(frozen=True)
class BraggPeak(Reflection):
    """One reflection of the input and what the denoiser did to it.

    Attributes
    ----------
    index, frequency, spatial_frequency, d_spacing
        Where it lies (:class:`Reflection`).
    snr : float
        Input power above the floor over the floor's power in the 3×3 box.
    input_amplitude, output_amplitude : float
        Noise-floor-corrected fringe amplitudes in image units: the amplitude ``A`` of
        the cosine ``A cos(2π f·x + φ)`` the reflection stands for (to about 1 %
        wherever it falls between DFT bins).
    ratio : float
        ``output_amplitude / input_amplitude``.
    residual_share : float
        Amplitude left in the residual over ``input_amplitude``.
    kept : bool
        ``|ratio − 1| ≤ KEPT_TOLERANCE``.
    in_residual : bool
        The residual shows this reflection (share above ``RESIDUAL_SHARE_LIMIT`` and
        clearly above the residual's floor).
    """

    snr: float
    input_amplitude: float
    output_amplitude: float
    ratio: float
    residual_share: float
    kept: bool
    in_residual: bool


@dataclass(frozen=True)
class InventedPeak(Reflection):
    """A reflection of the output that the input does not have.

    Attributes
    ----------
    index, frequency, spatial_frequency, d_spacing
        Where the output has it (:class:`Reflection`).
    output_amplitude : float
        Floor-corrected amplitude in the output, image units.
    input_amplitude : float
        Everything the input has at that frequency (noise included), image units.
    ratio : float
        ``output_amplitude / input_amplitude`` (``inf`` when the input has nothing).
    """

    output_amplitude: float
    input_amplitude: float
    ratio: float


def _preselect(
    spectra: HalfPlaneSpectra, mask: np.ndarray, score: np.ndarray, box: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bins of ``mask`` that are 5×5 maxima of ``box``, the best-scoring first."""
    rows, cols = np.nonzero(mask & spectra.canonical())
    keep = spectra.local_maxima(box, rows, cols)
    rows, cols = rows[keep], cols[keep]
    order = np.argsort(-score[rows, cols], kind="stable")[:_MAX_CANDIDATES]
    return rows[order], cols[order]


def _strong_input_bins(
    spectra: HalfPlaneSpectra,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns, box floors and excess box powers of the input's strongest
    reflections (at most :data:`MAX_PEAKS`), strongest first."""
    pin = spectra.input
    s_in = spectra.box_half(pin)
    coarse_box = BOX_BINS * pin.coarse
    with np.errstate(divide="ignore", invalid="ignore"):
        score = s_in / coarse_box
    rows, cols = _preselect(spectra, s_in > _PRESELECT * coarse_box, score, pin.box)
    floor_in = spectra.floor(pin, rows, cols)
    excess = s_in[rows, cols] - floor_in
    strong = (excess > 0) & (excess >= STRONG_PEAK_SNR * floor_in)
    strong &= spectra.not_leakage(pin.box, rows, cols)
    if spectra.interference is not None:
        # Interference the same in every scan line is not a reflection (noise.line_pattern).
        fy = spectra.rows_signed[rows] / spectra.ny
        strong &= ~spectra.interference.covers(fy, cols / spectra.nx)
    order = np.argsort(-np.where(strong, excess, -np.inf), kind="stable")
    order = order[: min(int(strong.sum()), MAX_PEAKS)]
    return rows[order], cols[order], floor_in[order], excess[order]


def input_reflections(spectra: HalfPlaneSpectra, pixel_size: float | None) -> list[BraggPeak]:
    """The input's strong reflections, strongest first, each with what the output and
    the residual keep of it (steps 4 and 6 of the faithfulness readout)."""
    rows, cols, floor_in, excess = _strong_input_bins(spectra)
    pout, pres = spectra.output, spectra.residual
    s_out = spectra.box_half(pout)[rows, cols]
    s_res = spectra.box_at(pres, rows, cols)
    floor_res = spectra.floor(pres, rows, cols)
    amp_in = np.sqrt(excess)
    amp_out = np.sqrt(np.maximum(s_out - spectra.floor(pout, rows, cols), 0.0))
    res_excess = np.maximum(s_res - floor_res, 0.0)
    ratio = amp_out / amp_in
    share = np.sqrt(res_excess) / amp_in
    in_residual = (share > RESIDUAL_SHARE_LIMIT) & (res_excess >= RESIDUAL_PEAK_SNR * floor_res)
    with np.errstate(divide="ignore"):
        snr = np.where(floor_in > 0, excess / floor_in, np.inf)
    unit = spectra.amplitude_unit
    return [
        BraggPeak(
            **where,
            snr=float(snr[i]),
            input_amplitude=float(amp_in[i] * unit),
            output_amplitude=float(amp_out[i] * unit),
            ratio=float(ratio[i]),
            residual_share=float(share[i]),
            kept=bool(abs(ratio[i] - 1.0) <= KEPT_TOLERANCE),
            in_residual=bool(in_residual[i]),
        )
        for i, where in enumerate(spectra.describe(spectra.input, rows, cols, pixel_size))
    ]


def invented_reflections(
    spectra: HalfPlaneSpectra, peaks: Sequence[BraggPeak], pixel_size: float | None
) -> list[InventedPeak]:
    """Reflections of the output that exceed everything the input has at their
    frequency, noise included (step 5 of the faithfulness readout), away from the
    input's checked ``peaks``."""
    pin, pout = spectra.input, spectra.output
    s_in = spectra.box_half(pin)
    s_out = spectra.box_half(pout)
    # Cheap necessary conditions on the whole plane first (the margin at half its value,
    # against the coarse floor), then the exact floors at the few bins left.
    mask = (s_out >= INVENTED_RATIO**2 * s_in) & (s_out > 0)
    mask &= s_out >= _PRESELECT * BOX_BINS * pout.coarse
    mask &= np.sqrt(s_out) - np.sqrt(s_in) >= 0.5 * INVENTED_MARGIN * np.sqrt(BOX_BINS * pin.coarse)
    rows, cols = _preselect(spectra, mask, s_out, pout.box)
    if rows.size == 0:
        return []
    floor_in = spectra.floor(pin, rows, cols)
    floor_out = spectra.floor(pout, rows, cols)
    so, si = s_out[rows, cols], s_in[rows, cols]
    out_excess = so - floor_out
    ok = (out_excess > 0) & (out_excess >= STRONG_PEAK_SNR * floor_out)
    ok &= so >= INVENTED_RATIO**2 * si
    ok &= np.sqrt(so) - np.sqrt(si) > INVENTED_MARGIN * np.sqrt(floor_in)
    ok &= spectra.not_leakage(pout.box, rows, cols)
    ok &= ~_near_peaks(spectra, rows, cols, peaks)
    rows, cols, si, out_excess = rows[ok], cols[ok], si[ok], out_excess[ok]
    unit = spectra.amplitude_unit
    result = []
    for i, where in enumerate(spectra.describe(pout, rows, cols, pixel_size)):
        amp_out = math.sqrt(out_excess[i])
        amp_in = math.sqrt(max(si[i], 0.0))
        result.append(
            InventedPeak(
                **where,
                output_amplitude=amp_out * unit,
                input_amplitude=amp_in * unit,
                ratio=amp_out / amp_in if amp_in > 0 else math.inf,
            )
        )
    return result


def _near_peaks(
    spectra: HalfPlaneSpectra, rows: np.ndarray, cols: np.ndarray, peaks: Sequence[BraggPeak]
) -> np.ndarray:
    """Bins within the 5×5 main lobe of a checked reflection or of its Friedel mate."""
    if not peaks or rows.size == 0:
        return np.zeros(rows.size, bool)
    ky = spectra.rows_signed[rows][:, None].astype(float)
    kx = cols[:, None].astype(float)
    py = np.array([p.index[0] for p in peaks], float)[None, :]
    px = np.array([p.index[1] for p in peaks], float)[None, :]
    near = np.zeros(rows.size, bool)
    for sign in (1.0, -1.0):
        dy = (ky - sign * py + spectra.ny / 2) % spectra.ny - spectra.ny / 2
        dx = (kx - sign * px + spectra.nx / 2) % spectra.nx - spectra.nx / 2
        near |= np.any((np.abs(dy) <= LOBE) & (np.abs(dx) <= LOBE), axis=1)
    return near
