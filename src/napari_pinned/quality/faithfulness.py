"""Did the denoiser remove or invent structure?  A faithfulness check without a reference.

A crystal's lattice is a set of sharp Bragg reflections in the power spectrum of its image;
noise is a diffuse floor under them.  A faithful denoiser lowers the floor and leaves the
reflections alone: every reflection of the input keeps its amplitude, no reflection appears
that the input does not have, and the residual ``input − output`` is noise — as much
variance as the noise model predicts and no reflections.  :func:`faithfulness` measures
exactly that from the input and the output alone:

1. **Spectra.**  Both images are centred on their window-weighted mean (so that the zero
   frequency is exactly zero and a detector offset cannot leak into the spectrum),
   multiplied by a separable Hann window (Harris, Proc. IEEE 66, 1978; the bright edge
   cross of the periodic DFT vanishes) and Fourier transformed; the residual's spectrum is
   their difference.  Only one half of the Fourier plane is searched: the spectrum of a
   real image has Friedel symmetry ``P(−k) = P(k)``, so every ± pair counts once.
2. **Box power.**  The power of a reflection is summed over the 3×3 bins around it
   (``S``), which holds its Hann main lobe wherever it falls between bins.
3. **Local noise floor.**  Around each candidate, the floor power ``B`` expected in its
   3×3 box: nine times the median power of a 13×13 neighbourhood without its central
   5×5 (and without the zero-frequency region), divided by ln 2 — the power of a
   noise-only bin is exponentially distributed, so its median is ``ln 2`` times its mean
   (Percival & Walden, *Spectral Analysis for Physical Applications*, 1993, ch. 6).
   Where a streak runs through the box (scan-line noise puts one along ``kx = 0``), the
   arms of 20 bins above and below each of its columns (left and right of each row)
   measure it instead, by their 30th percentile over ``−ln 0.7``: a reflection on a
   streak is weighed against the streak, and the streak is not taken for reflections.
4. **Reflections of the input.**  Local maxima (5×5) of the input's box power whose excess
   ``S − B`` is at least :data:`STRONG_PEAK_SNR` times ``B``, more than
   :data:`DC_RADIUS` bins from the zero frequency and not a Hann side lobe of a much
   stronger neighbour; the :data:`MAX_PEAKS` strongest are checked.  For each the amplitude
   ratio ``sqrt(S_out − B_out) / sqrt(S_in − B_in)`` (both floors removed, so that
   an output equal to the input has ratio 1 exactly) and the share of the input's
   amplitude left in the residual ``sqrt(S_res − B_res) / sqrt(S_in − B_in)``.
   A reflection is *kept* when its ratio lies within ±:data:`KEPT_TOLERANCE`.
5. **Invented reflections.**  Local maxima of the output's box power that stand
   :data:`STRONG_PEAK_SNR` above the output's own floor and exceed *everything* the input
   has at that frequency, noise included: output amplitude at least
   :data:`INVENTED_RATIO` times the input's, and larger by more than
   :data:`INVENTED_MARGIN` times the input's rms noise amplitude in the box.  The input's
   amplitude is bounded below by the signal's minus the noise's (triangle inequality), so
   an output that only recovers the true signal — even a weak reflection that the lower
   floor makes prominent — exceeds the margin only if the noise in that box is
   ``INVENTED_MARGIN²`` = 6 times its mean power (a chance of about 10⁻⁶).
6. **Residual.**  Its variance (the largest 0.1 % of deviations ignored, so a repaired hot
   pixel does not dominate, and corrected to an unclipped Gaussian) over the mean noise
   variance of the input under the Poisson–Gaussian model of
   :func:`napari_pinned.noise.estimate.estimate_noise`.

The verdict :attr:`Faithfulness.faithful` follows the project's targets: at least
:data:`MIN_KEPT_FRACTION` of the checked reflections kept and at most
:data:`MAX_INVENTED` invented.  Every number is a ratio of powers of the same images, so
the result does not change when the input and the output get the same detector gain and
offset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage
from scipy.special import ndtri

from napari_pinned._util.intensity import check_image
from napari_pinned.noise.estimate import NoiseEstimate, estimate_noise, noise_variance_map
from napari_pinned.quality.spectra import hann_window

__all__ = [
    "DC_RADIUS",
    "INVENTED_MARGIN",
    "INVENTED_RATIO",
    "KEPT_TOLERANCE",
    "MAX_INVENTED",
    "MAX_PEAKS",
    "MIN_KEPT_FRACTION",
    "STRONG_PEAK_SNR",
    "BraggPeak",
    "Faithfulness",
    "InventedPeak",
    "faithfulness",
    "faithfulness_stack",
]

#: A reflection counts when its power above the floor is this many times the floor's
#: power in its 3×3 box.  Noise alone reaches about 7 once in a 2048² spectrum, and at
#: 10 the noise moves a reflection's amplitude by at most 1/sqrt(2 · 9 · 10) ≈ 7.5 % rms,
#: so a faithful output stays within ±25 % to 3.3 σ.
STRONG_PEAK_SNR = 10.0
#: A reflection is kept when its amplitude ratio output/input lies within 1 ± this.
KEPT_TOLERANCE = 0.25
#: Faithful needs at least this fraction of the checked reflections kept ...
MIN_KEPT_FRACTION = 0.90
#: ... and at most this many invented reflections.
MAX_INVENTED = 1
#: An invented reflection has at least this many times the input's amplitude there ...
INVENTED_RATIO = 1.5
#: ... and exceeds it by more than this many times the input's rms noise amplitude.
INVENTED_MARGIN = 2.5
#: The residual "shows" a reflection when it keeps more than this share of its amplitude
#: and stands :data:`RESIDUAL_PEAK_SNR` above the residual's floor.
RESIDUAL_SHARE_LIMIT = 0.25
RESIDUAL_PEAK_SNR = 4.0
#: Residual variance over noise variance outside [low, high] earns a warning.
RESIDUAL_VARIANCE_HIGH = 1.5
RESIDUAL_VARIANCE_LOW = 0.25
#: The strongest reflections checked at most.
MAX_PEAKS = 48
#: Bins within this radius of the zero frequency are never reflections (the window's
#: main lobe around zero and the slow background live there).
DC_RADIUS = 3.0
#: Smallest image side the check accepts.
MIN_SIZE = 32

_BOX = 1  # 3×3 box power
_BOX_BINS = float((2 * _BOX + 1) ** 2)
_NMS = 2  # 5×5 local maxima: the Hann main lobe is ±2 bins wide
_FLOOR_HALF = 6  # 13×13 floor neighbourhood ...
_FLOOR_INNER = 2  # ... without its central 5×5
_ARM = 12  # the arms reach 12 bins from the centre (20 bins beside the 5×5) ...
# ... and measure a streak by the 30th percentile of each column (row) of bins, which
# neighbouring reflections of a lattice row (up to 70 % of an arm) do not raise ...
_ARM_QUANTILE = 0.3
_STREAK = 2.5  # ... and take over from the ring where their floor is 2.5 times as high
_LEAKAGE_HALF = 4  # Hann side lobes that matter lie within 4 bins of their peak ...
_LEAKAGE = 300.0  # ... and are 31 dB (1/1400) or more below it; 300 leaves a margin
_TILE = 8  # tiles of the coarse floor used to pre-select candidates, in bins ...
_TILE_STEP = 2  # ... of which every second row and column enters the tile's median
_PRESELECT = 3.0  # candidates need S ≥ 3 · 9 · (coarse floor); final test is at 11
_MAX_CANDIDATES = 16384  # a 2048² spectrum of pure noise offers ~4000
_NOISE_CROP = 1024  # the noise model is fitted on a central crop of at most this size
_TRIM = 0.001  # share of the largest residual deviations ignored in its variance
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class BraggPeak:
    """One reflection of the input and what the denoiser did to it.

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

    index: tuple[int, int]
    frequency: tuple[float, float]
    spatial_frequency: float
    d_spacing: float | None
    snr: float
    input_amplitude: float
    output_amplitude: float
    ratio: float
    residual_share: float
    kept: bool
    in_residual: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (no NaN or infinity)."""
        return _plain_fields(self)


@dataclass(frozen=True)
class InventedPeak:
    """A reflection of the output that the input does not have.

    Attributes
    ----------
    index, frequency, spatial_frequency, d_spacing
        As in :class:`BraggPeak`.
    output_amplitude : float
        Floor-corrected amplitude in the output, image units.
    input_amplitude : float
        Everything the input has at that frequency (noise included), image units.
    ratio : float
        ``output_amplitude / input_amplitude`` (``inf`` when the input has nothing).
    """

    index: tuple[int, int]
    frequency: tuple[float, float]
    spatial_frequency: float
    d_spacing: float | None
    output_amplitude: float
    input_amplitude: float
    ratio: float

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (no NaN or infinity)."""
        return _plain_fields(self)


@dataclass(frozen=True)
class Faithfulness:
    """How faithful a denoised image is to its input (see the module docstring).

    Attributes
    ----------
    peaks : tuple of BraggPeak
        The input's strongest reflections, strongest first.
    invented : tuple of InventedPeak
        Reflections of the output that the input does not have, strongest first.
    kept_fraction : float or None
        Share of ``peaks`` kept within ±25 %; None when there are none.
    residual_variance : float
        Variance of ``input − output`` (0.1 % largest deviations ignored).
    noise_variance : float
        Mean noise variance of the input's pixels under the noise model.
    residual_noise_ratio : float or None
        ``residual_variance / noise_variance``; None when the input has no measurable
        noise.
    faithful : bool
        ``kept_fraction ≥ MIN_KEPT_FRACTION`` (or no reflections to check) and at most
        ``MAX_INVENTED`` invented reflections.
    warnings : tuple of str
        Plain-language findings for the microscopist, most serious first.
    shape : tuple of int
        Image shape.
    pixel_size : float or None
        Å per pixel, when given.
    """

    peaks: tuple[BraggPeak, ...]
    invented: tuple[InventedPeak, ...]
    kept_fraction: float | None
    residual_variance: float
    noise_variance: float
    residual_noise_ratio: float | None
    faithful: bool
    warnings: tuple[str, ...]
    shape: tuple[int, int]
    pixel_size: float | None = field(default=None)

    @property
    def n_peaks(self) -> int:
        """Number of checked reflections."""
        return len(self.peaks)

    @property
    def n_kept(self) -> int:
        """Number of checked reflections kept within ±25 %."""
        return sum(p.kept for p in self.peaks)

    @property
    def n_invented(self) -> int:
        """Number of invented reflections."""
        return len(self.invented)

    @property
    def n_in_residual(self) -> int:
        """Number of checked reflections that the residual still shows."""
        return sum(p.in_residual for p in self.peaks)

    def summary(self) -> str:
        """One line, e.g. ``"faithful: 12/12 reflections kept, 0 invented, residual
        1.03× the noise variance"``."""
        verdict = "faithful" if self.faithful else "NOT faithful"
        if self.peaks:
            kept = f"{self.n_kept}/{self.n_peaks} reflections kept within ±{_pct(KEPT_TOLERANCE)}"
        else:
            kept = "no reflections above the noise"
        ratio = self.residual_noise_ratio
        residual = "" if ratio is None else f", residual {ratio:.2f}× the noise variance"
        return f"{verdict}: {kept}, {self.n_invented} invented{residual}"

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (no NaN or infinity)."""
        return {
            "faithful": self.faithful,
            "summary": self.summary(),
            "warnings": list(self.warnings),
            "kept_fraction": self.kept_fraction,
            "n_peaks": self.n_peaks,
            "n_kept": self.n_kept,
            "n_invented": self.n_invented,
            "n_in_residual": self.n_in_residual,
            "residual_variance": self.residual_variance,
            "noise_variance": self.noise_variance,
            "residual_noise_ratio": self.residual_noise_ratio,
            "shape": list(self.shape),
            "pixel_size": self.pixel_size,
            "thresholds": {
                "strong_peak_snr": STRONG_PEAK_SNR,
                "kept_tolerance": KEPT_TOLERANCE,
                "min_kept_fraction": MIN_KEPT_FRACTION,
                "max_invented": MAX_INVENTED,
                "invented_ratio": INVENTED_RATIO,
                "invented_margin": INVENTED_MARGIN,
            },
            "peaks": [p.to_dict() for p in self.peaks],
            "invented": [p.to_dict() for p in self.invented],
        }


def _pct(value: float) -> str:
    return f"{100.0 * value:.0f} %"


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _plain_fields(peak: Any) -> dict[str, Any]:
    """A peak dataclass as JSON values: tuples become lists, NaN and infinity None."""
    plain: dict[str, Any] = {}
    for item in fields(peak):
        value = getattr(peak, item.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, float):
            value = _json_float(value)
        plain[item.name] = value
    return plain


# ----------------------------------------------------------------------------- spectra


@dataclass
class _Plane:
    """A power map on the half Fourier plane, padded with its Friedel mirror."""

    power: np.ndarray  # (ny, h + 2 pad), column j is kx = j − pad
    box: np.ndarray | None  # 3×3 box sums of power, same layout (None: see box_at)
    coarse: np.ndarray | None  # (ny, h) coarse floor (mean power per bin), unpadded


class _Spectra:
    """Input, output and residual power on the half plane ``kx ∈ [0, nx // 2]``."""

    def __init__(self, image_in: np.ndarray, image_out: np.ndarray) -> None:
        ny, nx = image_in.shape
        self.ny, self.nx = ny, nx
        self.h = nx // 2 + 1
        self.pad = max(_FLOOR_HALF, _ARM) + _BOX
        window = hann_window((ny, nx))
        wsum = float(window.sum())
        a = _centred(image_in, window, wsum)
        b = _centred(image_out, window, wsum)
        # One scale for both keeps powers far from over- or underflow whatever the units;
        # every decision below is a ratio, and amplitudes are scaled back.
        rms = float(np.sqrt(np.mean(a * a)))
        self.scale = rms if rms > 0 and math.isfinite(rms) else 1.0
        a /= self.scale
        b /= self.scale
        fa = sfft.rfft2(a, workers=1)
        fb = sfft.rfft2(b, workers=1)
        # Fringe amplitude A of a cosine on a bin: |F| = A Σw / 2 at the peak and the 3×3
        # box of a Hann main lobe holds (1 + 2 · 0.5²)² = 2.25 times that power.
        self.amplitude_unit = self.scale * 2.0 / (wsum * 1.5)
        self.rows_signed = np.where(np.arange(ny) <= ny // 2, np.arange(ny), np.arange(ny) - ny)
        self.dc = self._dc_mask()
        self.input = self._plane(_power(fa), full=True)
        self.output = self._plane(_power(fb), full=True)
        fa -= fb
        # The residual is only looked at where the input has reflections.
        self.residual = self._plane(_power(fa), full=False)

    def _dc_mask(self) -> np.ndarray:
        """Padded-layout mask of bins within DC_RADIUS of the zero frequency."""
        kx = np.arange(-self.pad, self.h + self.pad)
        return (self.rows_signed[:, None] ** 2 + kx[None, :] ** 2) <= DC_RADIUS**2

    def _plane(self, half: np.ndarray, *, full: bool) -> _Plane:
        """Padded power, and (``full``) its box sums and coarse floor everywhere."""
        padded = self._mirror_pad(half)
        if not full:
            return _Plane(padded, None, None)
        # Rows are periodic; the wrap along columns only touches the padding.
        box = ndimage.uniform_filter(padded, 2 * _BOX + 1, mode="wrap") * (2 * _BOX + 1) ** 2
        # The filter's running sum can leave round-off below zero next to empty bins.
        np.maximum(box, 0.0, out=box)
        return _Plane(padded, box, self._coarse_floor(half))

    def _mirror_pad(self, half: np.ndarray) -> np.ndarray:
        """Columns ``kx ∈ [−pad, h − 1 + pad]``: the padding from Friedel symmetry
        ``P(ky, kx) = P(−ky, −kx)`` and the DFT's periodicity (column ``c > nx // 2`` is
        ``kx = c − nx``)."""
        p, h = self.pad, self.h
        mirrored_rows = (-np.arange(self.ny)) % self.ny
        out = np.empty((self.ny, h + 2 * p), np.float64)
        out[:, p : p + h] = half
        out[:, :p] = half[:, p:0:-1][mirrored_rows]
        out[:, p + h :] = half[:, self.nx - np.arange(h, h + p)][mirrored_rows]
        return out

    def _coarse_floor(self, half: np.ndarray) -> np.ndarray:
        """Median power of 8×8-bin tiles / ln 2: a cheap floor for pre-selecting
        candidates.  Every second bin of a tile enters the median (16 of 64: a quarter of
        the work, and neighbouring Hann bins are correlated anyway).  The zero-frequency
        region is set to zero first so that it cannot raise the floor of the tiles around
        it (that only admits more candidates)."""
        sub = half[::_TILE_STEP, ::_TILE_STEP].copy()
        sub[self.dc[::_TILE_STEP, self.pad : self.pad + self.h : _TILE_STEP]] = 0.0
        step = _TILE // _TILE_STEP
        ty, tx = max(sub.shape[0] // step, 1), max(sub.shape[1] // step, 1)
        sy, sx = sub.shape[0] // ty, sub.shape[1] // tx
        tiles = sub[: ty * sy, : tx * sx].reshape(ty, sy, tx, sx).transpose(0, 2, 1, 3)
        med = np.median(tiles.reshape(ty, tx, sy * sx), axis=-1) / _LN2
        rows = np.minimum(np.arange(self.ny) // (sy * _TILE_STEP), ty - 1)
        cols = np.minimum(np.arange(self.h) // (sx * _TILE_STEP), tx - 1)
        return med[rows][:, cols]

    # -- candidates

    def canonical(self) -> np.ndarray:
        """Unpadded mask of one representative per Friedel pair, without the DC region."""
        mask = ~self.dc[:, self.pad : self.pad + self.h].copy()
        # Columns kx = 0 and (even nx) kx = nx/2 are their own mirror: keep ky ≥ 0 there.
        lower = self.rows_signed < 0
        mask[lower, 0] = False
        if self.nx % 2 == 0:
            mask[lower, self.h - 1] = False
        return mask

    def box_half(self, plane: _Plane) -> np.ndarray:
        """Unpadded 3×3 box power of a full plane."""
        assert plane.box is not None
        return plane.box[:, self.pad : self.pad + self.h]

    def box_at(self, plane: _Plane, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """3×3 box power at the given unpadded bins."""
        return self.patches(plane.power, rows, cols, _BOX).sum(axis=(1, 2))

    def patches(
        self, data: np.ndarray, rows: np.ndarray, cols: np.ndarray, half: int, half_x: int = -1
    ) -> np.ndarray:
        """``(K, 2 half + 1, 2 half_x + 1)`` neighbourhoods of unpadded bins (rows, cols)
        in a padded map (``half_x`` defaults to ``half``)."""
        half_x = half if half_x < 0 else half_x
        dy = np.arange(-half, half + 1)
        dx = np.arange(-half_x, half_x + 1)
        r = (rows[:, None, None] + dy[None, :, None]) % self.ny
        c = cols[:, None, None] + self.pad + dx[None, None, :]
        return data[r, c]

    def _masked(
        self, plane: _Plane, rows: np.ndarray, cols: np.ndarray, half_y: int, half_x: int
    ) -> np.ndarray:
        """Power neighbourhoods with the zero-frequency region set to NaN."""
        patch = self.patches(plane.power, rows, cols, half_y, half_x).copy()
        patch[self.patches(self.dc, rows, cols, half_y, half_x)] = np.nan
        return patch

    def local_maxima(self, box: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Which of the bins are maxima of the box power in their 5×5 neighbourhood."""
        if rows.size == 0:
            return np.zeros(0, bool)
        patch = self.patches(box, rows, cols, _NMS).reshape(rows.size, -1)
        # argmax takes the first of equal values, so of two bins that tie (a reflection
        # halfway between them) only the first in scan order is a maximum.
        return np.argmax(patch, axis=1) == patch.shape[1] // 2

    def not_leakage(self, box: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """False for bins that are a Hann side lobe of a much stronger neighbour."""
        if rows.size == 0:
            return np.zeros(0, bool)
        patch = self.patches(box, rows, cols, _LEAKAGE_HALF).reshape(rows.size, -1)
        centre = patch[:, patch.shape[1] // 2]
        return patch.max(axis=1) <= _LEAKAGE * centre

    def floor(self, plane: _Plane, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Expected floor power in the 3×3 box of each bin (module docstring, step 3).

        Quantiles over bins beside the box (never in it), scaled to the mean of an
        exponential distribution: nine times the median of the ring over ln 2, or, where
        a streak runs through the box, the line estimate: for each column of the box the
        30th percentile of that column's arm above and below it over −ln 0.7 (likewise
        for each row with the arms left and right), summed over the box.  The arms follow
        a streak bin by bin, so a reflection on a streak is measured against the streak,
        not against the dark spectrum beside it.
        """
        if rows.size == 0:
            return np.zeros(0)
        side = 2 * _BOX + 1
        patch = self._masked(plane, rows, cols, _FLOOR_HALF, _FLOOR_HALF)
        d = np.abs(np.arange(-_FLOOR_HALF, _FLOOR_HALF + 1))
        inner = (d[:, None] <= _FLOOR_INNER) & (d[None, :] <= _FLOOR_INNER)
        arm = np.abs(np.arange(-_ARM, _ARM + 1)) > _FLOOR_INNER
        ring = side**2 * _nanquantile(patch[:, ~inner], 0.5) / _LN2
        vertical = self._masked(plane, rows, cols, _ARM, _BOX)[:, arm]
        horizontal = self._masked(plane, rows, cols, _BOX, _ARM)[:, :, arm]
        line = side * np.fmax(
            _nanquantile(np.swapaxes(vertical, 1, 2), _ARM_QUANTILE).sum(axis=1),
            _nanquantile(horizontal, _ARM_QUANTILE).sum(axis=1),
        )
        line /= -math.log(1.0 - _ARM_QUANTILE)
        # The arms' quantiles are of 20 bins each, noisier than the ring's median; they
        # take over only where they are clearly higher: on a streak.  A quantile over bins
        # that all lie in the zero-frequency region is NaN: the fallback below.
        with np.errstate(invalid="ignore"):
            box = np.where(line > _STREAK * ring, line, ring)
        if plane.coarse is not None:
            fallback = side**2 * plane.coarse[rows, cols]
        else:
            fallback = np.zeros(rows.size)
        return np.where(np.isfinite(box), box, fallback)

    def describe(
        self, plane: _Plane, rows: np.ndarray, cols: np.ndarray, pixel_size: float | None
    ) -> list[tuple[tuple[int, int], tuple[float, float], float, float | None]]:
        """Signed bin, sub-bin frequency, |f| and d-spacing of each bin.

        The frequency is refined by a parabola through the log power of the bin and its
        two neighbours along each axis (exact for a Gaussian main lobe, close for Hann's),
        so that a low-order reflection a few bins from zero gets its d-spacing to about
        1 % rather than to the nearest bin.
        """
        patch = self.patches(plane.power, rows, cols, 1)
        dy = _parabola(patch[:, 0, 1], patch[:, 1, 1], patch[:, 2, 1])
        dx = _parabola(patch[:, 1, 0], patch[:, 1, 1], patch[:, 1, 2])
        out = []
        for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            ky = int(self.rows_signed[r])
            fy, fx = (ky + dy[i]) / self.ny, (c + dx[i]) / self.nx
            f = math.hypot(fy, fx)
            d = pixel_size / f if (pixel_size is not None and f > 0) else None
            out.append(((ky, int(c)), (float(fy), float(fx)), f, d))
        return out


def _nanquantile(values: np.ndarray, q: float) -> np.ndarray:
    """Quantile along the last axis ignoring NaN (linear interpolation, as numpy's
    default), vectorised: ``numpy.nanquantile`` loops over the slices in Python."""
    ordered = np.sort(values, axis=-1)  # NaN sorts last
    count = np.sum(~np.isnan(values), axis=-1)
    position = q * np.maximum(count - 1, 0)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, np.maximum(count - 1, 0))
    below = np.take_along_axis(ordered, low[..., None], axis=-1)[..., 0]
    above = np.take_along_axis(ordered, high[..., None], axis=-1)[..., 0]
    out = below + (position - low) * (above - below)
    return np.where(count > 0, out, np.nan)


def _parabola(lo: np.ndarray, mid: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Offset in bins of the vertex of a parabola through three log powers."""
    with np.errstate(all="ignore"):
        a, b, c = np.log(lo), np.log(mid), np.log(hi)
        curvature = a - 2.0 * b + c
        delta = 0.5 * (a - c) / curvature
    ok = np.isfinite(delta) & (curvature < 0)
    return np.where(ok, np.clip(delta, -0.5, 0.5), 0.0)


def _power(spectrum: np.ndarray) -> np.ndarray:
    return spectrum.real**2 + spectrum.imag**2


def _centred(image: np.ndarray, window: np.ndarray, wsum: float) -> np.ndarray:
    """``(x − Σ w x / Σ w) · w``: the windowed image with exactly zero DC."""
    x = image.astype(np.float64)
    x -= float(np.sum(window * x)) / wsum
    x *= window
    return x


# --------------------------------------------------------------------------- the check


def faithfulness(
    input: np.ndarray,
    output: np.ndarray,
    *,
    noise: NoiseEstimate | float | None = None,
    pixel_size: float | None = None,
) -> Faithfulness:
    """Check whether ``output`` (a denoised ``input``) removed or invented lattice
    structure, without a reference image.

    Parameters
    ----------
    input : numpy.ndarray
        2D image before denoising, any real dtype and scale (raw counts are best).
    output : numpy.ndarray
        The denoised image, same shape, in the input's units.
    noise : NoiseEstimate or float, optional
        The input's noise: a fitted model, or a standard deviation in image units for
        white Gaussian noise.  Default: :func:`~napari_pinned.noise.estimate.estimate_noise`
        on a central crop of at most 1024×1024 pixels of the input.
    pixel_size : float, optional
        Å per pixel; reflections then carry their d-spacing and the warnings quote it.

    Returns
    -------
    Faithfulness

    Raises
    ------
    ValueError
        If an image is not 2D, smaller than 32×32, not finite, or the shapes differ.

    Notes
    -----
    A stack is checked frame by frame with :func:`faithfulness_stack`.  The whole field
    is analysed; a 2048² pair takes about 0.6 s of one core (two real FFTs of the full
    field; the noise fit on the central 1024² crop), a 256² pair about 20 ms.
    """
    a = check_image(input, name="input", ndim=(2,))
    b = check_image(output, name="output", ndim=(2,))
    if a.shape != b.shape:
        raise ValueError(f"input has shape {a.shape} but output has shape {b.shape}")
    if min(a.shape) < MIN_SIZE:
        raise ValueError(
            f"input is too small for a faithfulness check (shape {a.shape}); it needs "
            f"at least {MIN_SIZE}×{MIN_SIZE} pixels"
        )
    if pixel_size is not None and not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be positive, got {pixel_size!r}")
    estimate = _noise_model(a, noise)
    return _check(a, b, estimate, pixel_size)


def faithfulness_stack(
    inputs: np.ndarray,
    outputs: np.ndarray,
    *,
    noise: NoiseEstimate | float | None = None,
    pixel_size: float | None = None,
) -> list[Faithfulness]:
    """:func:`faithfulness` of each frame of an ``(N, Y, X)`` stack (2D: one result).

    The noise model is fitted once to the whole input stack (central crops of each
    frame) when ``noise`` is None: the frames of one acquisition share a detector.
    """
    a = check_image(inputs, name="inputs", ndim=(2, 3))
    b = check_image(outputs, name="outputs", ndim=(2, 3))
    if a.shape != b.shape:
        raise ValueError(f"inputs have shape {a.shape} but outputs have shape {b.shape}")
    if a.ndim == 2:
        return [faithfulness(a, b, noise=noise, pixel_size=pixel_size)]
    if min(a.shape[1:]) < MIN_SIZE:
        raise ValueError(
            f"inputs are too small for a faithfulness check (shape {a.shape}); frames "
            f"need at least {MIN_SIZE}×{MIN_SIZE} pixels"
        )
    estimate = _noise_model(a, noise)
    return [
        faithfulness(x, y, noise=estimate, pixel_size=pixel_size) for x, y in zip(a, b, strict=True)
    ]


def _noise_model(image: np.ndarray, noise: NoiseEstimate | float | None) -> NoiseEstimate:
    if isinstance(noise, NoiseEstimate):
        return noise
    if noise is not None:
        sigma = float(noise)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"noise must be a NoiseEstimate or a σ ≥ 0, got {noise!r}")
        mean = float(np.mean(image, dtype=np.float64))
        return NoiseEstimate(0.0, sigma**2, float(np.median(image)), mean, int(image.size))
    # The noise model is global; a central crop fits it as well as the whole field and
    # keeps a 2048² image fast.
    ny, nx = image.shape[-2:]
    y0, x0 = max((ny - _NOISE_CROP) // 2, 0), max((nx - _NOISE_CROP) // 2, 0)
    crop = image[..., y0 : y0 + _NOISE_CROP, x0 : x0 + _NOISE_CROP]
    return estimate_noise(crop)


def _check(
    a: np.ndarray, b: np.ndarray, estimate: NoiseEstimate, pixel_size: float | None
) -> Faithfulness:
    spectra = _Spectra(a, b)
    peaks = _input_peaks(spectra, pixel_size)
    invented = _invented_peaks(spectra, peaks, pixel_size)
    residual_variance = _trimmed_variance(a.astype(np.float64) - b.astype(np.float64))
    noise_variance = _mean_noise_variance(a, estimate)
    # Noise below 1e-12 of the image's own variance is no noise at all (a clean image).
    if noise_variance > 1e-12 * max(float(np.var(a, dtype=np.float64)), 1e-300):
        ratio: float | None = residual_variance / noise_variance
    else:
        ratio = None
    kept_fraction = (sum(p.kept for p in peaks) / len(peaks)) if peaks else None
    enough_kept = kept_fraction is None or kept_fraction >= MIN_KEPT_FRACTION
    faithful = enough_kept and len(invented) <= MAX_INVENTED
    return Faithfulness(
        peaks=tuple(peaks),
        invented=tuple(invented),
        kept_fraction=kept_fraction,
        residual_variance=residual_variance,
        noise_variance=noise_variance,
        residual_noise_ratio=ratio,
        faithful=bool(faithful),
        warnings=tuple(_warnings(peaks, invented, ratio)),
        shape=(int(a.shape[0]), int(a.shape[1])),
        pixel_size=None if pixel_size is None else float(pixel_size),
    )


def _preselect(
    spectra: _Spectra, mask: np.ndarray, score: np.ndarray, box: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bins of ``mask`` that are 5×5 maxima of ``box``, the best-scoring first."""
    rows, cols = np.nonzero(mask & spectra.canonical())
    keep = spectra.local_maxima(box, rows, cols)
    rows, cols = rows[keep], cols[keep]
    order = np.argsort(-score[rows, cols], kind="stable")[:_MAX_CANDIDATES]
    return rows[order], cols[order]


def _input_peaks(spectra: _Spectra, pixel_size: float | None) -> list[BraggPeak]:
    pin, pout, pres = spectra.input, spectra.output, spectra.residual
    s_in = spectra.box_half(pin)
    coarse_box = _BOX_BINS * pin.coarse
    with np.errstate(divide="ignore", invalid="ignore"):
        score = s_in / coarse_box
    rows, cols = _preselect(spectra, s_in > _PRESELECT * coarse_box, score, pin.box)
    floor_in = spectra.floor(pin, rows, cols)
    excess = s_in[rows, cols] - floor_in
    strong = (excess > 0) & (excess >= STRONG_PEAK_SNR * floor_in)
    strong &= spectra.not_leakage(pin.box, rows, cols)
    order = np.argsort(-np.where(strong, excess, -np.inf), kind="stable")
    order = order[: min(int(strong.sum()), MAX_PEAKS)]
    rows, cols, floor_in, excess = rows[order], cols[order], floor_in[order], excess[order]

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
    peaks = []
    for i, (index, freq, f, d) in enumerate(spectra.describe(pin, rows, cols, pixel_size)):
        peaks.append(
            BraggPeak(
                index=index,
                frequency=freq,
                spatial_frequency=f,
                d_spacing=d,
                snr=float(snr[i]),
                input_amplitude=float(amp_in[i] * unit),
                output_amplitude=float(amp_out[i] * unit),
                ratio=float(ratio[i]),
                residual_share=float(share[i]),
                kept=bool(abs(ratio[i] - 1.0) <= KEPT_TOLERANCE),
                in_residual=bool(in_residual[i]),
            )
        )
    return peaks


def _invented_peaks(
    spectra: _Spectra, peaks: Sequence[BraggPeak], pixel_size: float | None
) -> list[InventedPeak]:
    pin, pout = spectra.input, spectra.output
    s_in = spectra.box_half(pin)
    s_out = spectra.box_half(pout)
    # Cheap necessary conditions on the whole plane first (the margin at half its value,
    # against the coarse floor), then the exact floors at the few bins left.
    mask = (s_out >= INVENTED_RATIO**2 * s_in) & (s_out > 0)
    mask &= s_out >= _PRESELECT * _BOX_BINS * pout.coarse
    mask &= np.sqrt(s_out) - np.sqrt(s_in) >= 0.5 * INVENTED_MARGIN * np.sqrt(
        _BOX_BINS * pin.coarse
    )
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
    for i, (index, freq, f, d) in enumerate(spectra.describe(pout, rows, cols, pixel_size)):
        amp_out = math.sqrt(out_excess[i])
        amp_in = math.sqrt(max(si[i], 0.0))
        result.append(
            InventedPeak(
                index=index,
                frequency=freq,
                spatial_frequency=f,
                d_spacing=d,
                output_amplitude=amp_out * unit,
                input_amplitude=amp_in * unit,
                ratio=amp_out / amp_in if amp_in > 0 else math.inf,
            )
        )
    return result


def _near_peaks(
    spectra: _Spectra, rows: np.ndarray, cols: np.ndarray, peaks: Sequence[BraggPeak]
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
        near |= np.any((np.abs(dy) <= _NMS) & (np.abs(dx) <= _NMS), axis=1)
    return near


def _mean_noise_variance(image: np.ndarray, estimate: NoiseEstimate) -> float:
    """Mean noise variance of the pixels under ``estimate``.

    Above 1 Mpx the local intensity comes from 2×2 block means (smoothed by the same
    1.5 px), a quarter of the work: the variance is linear in the intensity except where
    it clips at zero, so the mean hardly changes.
    """
    if image.size <= _NOISE_CROP**2:
        return float(np.mean(noise_variance_map(image, estimate)))
    ny, nx = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:ny, :nx].astype(np.float64).reshape(ny // 2, 2, nx // 2, 2).mean(axis=(1, 3))
    return float(np.mean(noise_variance_map(blocks, estimate, sigma=0.75)))


def _trimmed_variance(residual: np.ndarray) -> float:
    """Variance without the largest 0.1 % of deviations from the median, rescaled so that
    Gaussian noise gives its full variance.  Erased structure covers far more than 0.1 %
    of the pixels and stays in; a few repaired hot or dead pixels drop out."""
    r = residual.ravel()
    dev = np.abs(r - np.median(r))
    if r.size < 1000:
        return float(np.var(r))
    k = math.floor((1.0 - _TRIM) * r.size)
    cut = np.partition(dev, k)[k]
    kept = r[dev <= cut]
    # E[x²; |x| ≤ z] / E[x²] for a standard normal with P(|x| > z) = _TRIM.
    z = float(ndtri(1.0 - _TRIM / 2.0))
    phi = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    fraction = 1.0 - 2.0 * z * phi / (1.0 - _TRIM)
    return float(np.var(kept)) / fraction


# ---------------------------------------------------------------------------- warnings


def _where(d: float | None, f: float) -> str:
    if d is not None:
        return f"d = {d:.2f} Å"
    return f"a period of {1.0 / f:.1f} px" if f > 0 else "zero frequency"


def _lost_cause(lost: Sequence[BraggPeak], kept: Sequence[BraggPeak]) -> str:
    """Blur takes the finest reflections first; an erased sublattice also changes coarse
    ones.  Lost reflections all finer than the median kept one read as blur."""
    coarsest = min(lost, key=lambda p: p.spatial_frequency)
    where = _where(coarsest.d_spacing, coarsest.spatial_frequency)
    if kept:
        median_kept = float(np.median([p.spatial_frequency for p in kept]))
        if coarsest.spatial_frequency > median_kept:
            return f"the denoiser blurred away fine detail (the coarsest lost is at {where})"
    return f"the denoiser may have erased a sublattice (lost reflections as coarse as {where})"


def _warnings(
    peaks: Sequence[BraggPeak],
    invented: Sequence[InventedPeak],
    ratio: float | None,
) -> list[str]:
    out = []
    n = len(peaks)
    lost = [p for p in peaks if p.ratio < 1.0 - KEPT_TOLERANCE]
    gained = [p for p in peaks if p.ratio > 1.0 + KEPT_TOLERANCE]
    if lost:
        worst = min(lost, key=lambda p: p.ratio)
        out.append(
            f"{len(lost)} of {n} lattice reflections lost more than "
            f"{_pct(KEPT_TOLERANCE)} of their amplitude (weakest kept "
            f"{_pct(worst.ratio)} at {_where(worst.d_spacing, worst.spatial_frequency)}): "
            + _lost_cause(lost, [p for p in peaks if p.kept])
        )
    if gained:
        worst = max(gained, key=lambda p: p.ratio)
        out.append(
            f"{len(gained)} of {n} lattice reflections gained more than "
            f"{_pct(KEPT_TOLERANCE)} in amplitude (up to {_pct(worst.ratio)} at "
            f"{_where(worst.d_spacing, worst.spatial_frequency)}): the denoiser "
            "strengthened structure beyond what the input shows"
        )
    if invented:
        top = invented[0]
        word = "reflection" if len(invented) == 1 else "reflections"
        out.append(
            f"{len(invented)} {word} in the output that the input does not have "
            f"(strongest at {_where(top.d_spacing, top.spatial_frequency)}, "
            f"{top.ratio:.1f}× the input's amplitude there): invented structure"
        )
    shown = [p for p in peaks if p.in_residual]
    if shown:
        top = max(shown, key=lambda p: p.residual_share)
        out.append(
            f"the residual (input − output) still shows {len(shown)} of {n} lattice "
            f"reflections (up to {_pct(top.residual_share)} of the input's amplitude at "
            f"{_where(top.d_spacing, top.spatial_frequency)}): the denoiser removed or "
            "moved part of the lattice along with the noise"
        )
    if ratio is not None and ratio > RESIDUAL_VARIANCE_HIGH:
        out.append(
            f"the residual has {ratio:.1f}× the variance of the estimated noise: the "
            "denoiser removed more than noise"
        )
    if not peaks:
        out.append("no lattice reflections stand above the noise: nothing to check")
    if ratio is not None and ratio < RESIDUAL_VARIANCE_LOW:
        out.append(
            f"the residual holds only {_pct(ratio)} of the estimated noise variance: most "
            "of the noise is still in the output"
        )
    return out
