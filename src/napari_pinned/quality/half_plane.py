"""Input, output and residual power on one half of the Fourier plane, for the readout.

The first three steps of the faithfulness readout
(:mod:`napari_pinned.quality.faithfulness`): the Hann-windowed spectra of input and
output and the residual's, the 3×3 *box power* around a bin, and the local noise floor
expected in that box.  Only the half plane ``kx ≥ 0`` is kept (a real image's spectrum
has Friedel symmetry ``P(−k) = P(k)``), padded on both sides with its Friedel mirror so
that every bin has its full neighbourhood.  :mod:`napari_pinned.quality.reflections`
finds and measures the reflections on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from napari_pinned.noise.line_pattern import line_interference
from napari_pinned.quality.spectra import (
    FLOOR_BLOCK,
    NOISE_MEDIAN_PER_MEAN,
    WINDOWED_DC_RADIUS,
    hann_window,
    tile_floor,
)
from napari_pinned.quality.subpixel import parabola_vertex

__all__ = ["BOX", "BOX_BINS", "LOBE", "HalfPlaneSpectra", "PowerPlane"]

BOX = 1  # 3×3 box power
BOX_BINS = float((2 * BOX + 1) ** 2)
LOBE = 2  # the Hann main lobe is ±2 bins wide: local maxima are of 5×5 neighbourhoods
_FLOOR_HALF = 6  # 13×13 floor neighbourhood ...
_FLOOR_INNER = 2  # ... without its central 5×5
_ARM = 12  # the arms reach 12 bins from the centre (20 bins beside the 5×5) ...
# ... and measure a streak by the 30th percentile of each column (row) of bins, which
# neighbouring reflections of a lattice row (up to 70 % of an arm) do not raise ...
_ARM_QUANTILE = 0.3
_STREAK = 2.5  # ... and take over from the ring where their floor is 2.5 times as high
_LEAKAGE_HALF = 4  # Hann side lobes that matter lie within 4 bins of their peak ...
_LEAKAGE = 300.0  # ... and are 31 dB (1/1400) or more below it; 300 leaves a margin
# The coarse floor that pre-selects candidates: tile medians of every second row and
# column of a tile (a quarter of the work).
_COARSE_STEP = 2


@dataclass
class PowerPlane:
    """A power map on the half Fourier plane, padded with its Friedel mirror."""

    power: np.ndarray  # (ny, h + 2 pad), column j is kx = j − pad
    box: np.ndarray | None  # 3×3 box sums of power, same layout (None: see box_at)
    coarse: np.ndarray | None  # (ny, h) coarse floor (mean power per bin), unpadded


class HalfPlaneSpectra:
    """Input, output and residual power on the half plane ``kx ∈ [0, nx // 2]``."""

    def __init__(self, image_in: np.ndarray, image_out: np.ndarray) -> None:
        ny, nx = image_in.shape
        self.ny, self.nx = ny, nx
        #: Where the input's pattern the same in every scan line lies (or None).
        self.interference = line_interference(image_in)
        self.h = nx // 2 + 1
        self.pad = max(_FLOOR_HALF, _ARM) + BOX
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
        """Padded-layout mask of bins within WINDOWED_DC_RADIUS of the zero frequency."""
        kx = np.arange(-self.pad, self.h + self.pad)
        return (self.rows_signed[:, None] ** 2 + kx[None, :] ** 2) <= WINDOWED_DC_RADIUS**2

    def _plane(self, half: np.ndarray, *, full: bool) -> PowerPlane:
        """Padded power, and (``full``) its box sums and coarse floor everywhere."""
        padded = self._mirror_pad(half)
        if not full:
            return PowerPlane(padded, None, None)
        # Rows are periodic; the wrap along columns only touches the padding.
        box = ndimage.uniform_filter(padded, 2 * BOX + 1, mode="wrap") * (2 * BOX + 1) ** 2
        # The filter's running sum can leave round-off below zero next to empty bins.
        np.maximum(box, 0.0, out=box)
        return PowerPlane(padded, box, self._coarse_floor(half))

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
        """A cheap floor (mean power per bin) for pre-selecting candidates: the
        unsmoothed :func:`~napari_pinned.quality.spectra.tile_floor` of every second row
        and column (16 of 64 bins per tile: a quarter of the work, and neighbouring Hann
        bins are correlated anyway).  Only the tiles whose sampled bins all exist count;
        the few rows and columns beyond them take the floor of the tile before.  The
        zero-frequency region is set to zero first so that it cannot raise the floor of
        the tiles around it (that only admits more candidates).

        The guard's estimator gives the same floor, to the bit, as the readout's own
        tiling did before they were made one, except for images 36–43 or 56–59 pixels
        wide, where that tiling made the tiles 10 bins wide along x (in 3 % of 7200
        crops of those widths other candidates were pre-selected and a count changed)."""
        # A tile's sampled bins all exist when its last sampled bin does.
        rows = min((self.ny + _COARSE_STEP - 1) // FLOOR_BLOCK * FLOOR_BLOCK, self.ny)
        cols = min((self.h + _COARSE_STEP - 1) // FLOOR_BLOCK * FLOOR_BLOCK, self.h)
        whole = half[:rows, :cols].copy()
        whole[self.dc[:rows, self.pad : self.pad + cols]] = 0.0
        floor = tile_floor(whole, step=_COARSE_STEP, smooth=False)
        beyond = ((0, self.ny - floor.shape[0]), (0, self.h - floor.shape[1]))
        return np.pad(floor, beyond, mode="edge")

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

    def box_half(self, plane: PowerPlane) -> np.ndarray:
        """Unpadded 3×3 box power of a full plane."""
        assert plane.box is not None
        return plane.box[:, self.pad : self.pad + self.h]

    def box_at(self, plane: PowerPlane, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """3×3 box power at the given unpadded bins."""
        return self.patches(plane.power, rows, cols, BOX).sum(axis=(1, 2))

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
        self, plane: PowerPlane, rows: np.ndarray, cols: np.ndarray, half_y: int, half_x: int
    ) -> np.ndarray:
        """Power neighbourhoods with the zero-frequency region set to NaN."""
        patch = self.patches(plane.power, rows, cols, half_y, half_x).copy()
        patch[self.patches(self.dc, rows, cols, half_y, half_x)] = np.nan
        return patch

    def local_maxima(self, box: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Which of the bins are maxima of the box power in their 5×5 neighbourhood."""
        if rows.size == 0:
            return np.zeros(0, bool)
        patch = self.patches(box, rows, cols, LOBE).reshape(rows.size, -1)
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

    def floor(self, plane: PowerPlane, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
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
        side = 2 * BOX + 1
        patch = self._masked(plane, rows, cols, _FLOOR_HALF, _FLOOR_HALF)
        d = np.abs(np.arange(-_FLOOR_HALF, _FLOOR_HALF + 1))
        inner = (d[:, None] <= _FLOOR_INNER) & (d[None, :] <= _FLOOR_INNER)
        arm = np.abs(np.arange(-_ARM, _ARM + 1)) > _FLOOR_INNER
        ring = side**2 * _nanquantile(patch[:, ~inner], 0.5) / NOISE_MEDIAN_PER_MEAN
        vertical = self._masked(plane, rows, cols, _ARM, BOX)[:, arm]
        horizontal = self._masked(plane, rows, cols, BOX, _ARM)[:, :, arm]
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
        self, plane: PowerPlane, rows: np.ndarray, cols: np.ndarray, pixel_size: float | None
    ) -> list[dict[str, Any]]:
        """Where each bin is: ``index`` (signed bin), ``frequency`` (sub-bin, cycles per
        pixel), ``spatial_frequency`` (its length) and ``d_spacing`` (Å, or None), the
        fields of :class:`napari_pinned.quality.reflections.Reflection`.

        The frequency is refined by a parabola through the log power of the bin and its
        two neighbours along each axis (exact for a Gaussian main lobe, close for Hann's),
        so that a low-order reflection a few bins from zero gets its d-spacing to about
        1 % rather than to the nearest bin.
        """
        with np.errstate(divide="ignore"):
            log = np.log(self.patches(plane.power, rows, cols, 1))
        dy = parabola_vertex(log[:, 0, 1], log[:, 1, 1], log[:, 2, 1])
        dx = parabola_vertex(log[:, 1, 0], log[:, 1, 1], log[:, 1, 2])
        out = []
        for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            ky = int(self.rows_signed[r])
            fy, fx = (ky + dy[i]) / self.ny, (c + dx[i]) / self.nx
            f = math.hypot(fy, fx)
            d = pixel_size / f if (pixel_size is not None and f > 0) else None
            out.append(
                {
                    "index": (ky, int(c)),
                    "frequency": (float(fy), float(fx)),
                    "spatial_frequency": f,
                    "d_spacing": d,
                }
            )
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


def _power(spectrum: np.ndarray) -> np.ndarray:
    """|F|² without the square root and square of ``numpy.abs``."""
    return spectrum.real**2 + spectrum.imag**2


def _centred(image: np.ndarray, window: np.ndarray, wsum: float) -> np.ndarray:
    """``(x − Σ w x / Σ w) · w``: the windowed image with exactly zero DC."""
    x = image.astype(np.float64)
    x -= float(np.sum(window * x)) / wsum
    x *= window
    return x
