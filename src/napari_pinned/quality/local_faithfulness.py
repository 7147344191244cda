"""Where did the denoiser remove or invent structure?  The faithfulness readout, window by
window.

The whole-image readout (:mod:`napari_pinned.quality.faithfulness`) compares the input's
and the output's spectra of the whole field, so it cannot see *where* a lattice is: a
lattice painted into the vacuum around a particle, at the particle's own frequencies,
only nudges the whole field's reflections.  Here the same comparison runs in overlapping
windows, and every decision is a significance test against the input's own noise:

1. **Windows.**  Squares of :data:`WINDOW` px (the image's shorter side when that is
   smaller), every half window, the last one flush with the far edge.  Each is centred on
   its Hann-weighted mean and multiplied by a separable Hann window (as the whole-image
   readout's spectra), the input, the output and the residual ``input − output``.
2. **Noise floor.**  For white noise of variance ``σ²(x)`` the expected power of every
   bin of a Hann-windowed periodogram is ``N = Σ w(x)² σ²(x)`` (the noise model of
   :func:`napari_pinned.noise.estimate.estimate_noise`).  The floor ``B`` of a 3×3 box is
   9 times the larger of ``N`` and the window's own floor (tile medians over ln 2,
   :func:`napari_pinned.quality.spectra.tile_floor`'s estimator): correlated noise and
   diffuse scattering raise the second, and a reflection must stand above both.
3. **Significance.**  The 3×3 box of a Hann periodogram is a sum of correlated
   exponentials whose tail is that of its largest eigenvalue (:func:`box_tail`); the
   threshold ``τ`` for ``S − B ≥ τ B`` is the box power that noise reaches with
   probability :data:`FALSE_ALARM` over all the bins of all the windows of the image
   (:func:`significance_threshold`).
4. **Per reflection.**  The input's significant reflections (5×5 maxima) are *kept*,
   *weakened* or *removed* by their amplitude ratio ``√(S_out − B_out) / √(S_in − B_in)``
   (the whole-image readout's :data:`~napari_pinned.quality.reflections.KEPT_TOLERANCE`;
   removed below :data:`REMOVED_RATIO`), and a change counts only when it is also beyond
   the noise: the noise moves the input's amplitude by ``√(B/2)`` rms (its component in
   phase with the reflection), and the change must exceed ``z·√(B/2)`` with ``z`` the
   normal quantile of :data:`FALSE_ALARM` over all the reflections tested.  The output's
   reflections that the input's window does not show (``S_in − B_in < τ B_in``) are
   *invented* when they would have been significant in the input (``S_out − B_out ≥
   τ B_in``), are :data:`~napari_pinned.quality.reflections.INVENTED_RATIO` times the
   input's amplitude there and exceed it by ``z·√(B_in/2)``.
5. **Residual.**  The Hann-weighted variance of the residual over that of the noise,
   ``Σ w² r² / Σ w² σ²``, per window: above :data:`RESIDUAL_LIMIT` the denoiser removed
   structure there, periodic or not.

A window *lost lattice* when one of its significant reflections was weakened or removed
beyond the noise, *gained lattice* when one was strengthened beyond the noise or one was
invented.  The derivations and the measured calibration are in docs/metrics.md ("Local
faithfulness").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage
from scipy.special import ndtri

from napari_pinned.noise.estimate import NoiseEstimate, noise_variance_map
from napari_pinned.noise.line_pattern import LineInterference, line_interference
from napari_pinned.quality.reflections import INVENTED_RATIO, KEPT_TOLERANCE
from napari_pinned.quality.spectra import (
    FLOOR_BLOCK,
    NOISE_MEDIAN_PER_MEAN,
    WINDOWED_DC_RADIUS,
    hann_window,
)

__all__ = [
    "FALSE_ALARM",
    "REMOVED_RATIO",
    "RESIDUAL_LIMIT",
    "WINDOW",
    "LocalFaithfulness",
    "box_tail",
    "local_faithfulness",
    "significance_threshold",
]

#: Window side in pixels (stride: half of it).  128 px holds 10–40 unit cells at the
#: usual 0.05–0.2 Å/px, and a reflection's power over the floor in it is a sixteenth of
#: that in a 512² field: fine enough to name a quarter of an image, coarse enough for the
#: lattice of a particle to stand above the noise at a few e⁻/px.
WINDOW = 128
#: Chance, per image, that noise alone makes one window's verdict (the significance
#: threshold and the change beyond the noise are both set from it).
FALSE_ALARM = 1e-3
#: A significant reflection is *removed* (not only weakened) below this amplitude ratio.
REMOVED_RATIO = 1.0 - 2.0 * KEPT_TOLERANCE
#: Residual variance over noise variance in a window above which structure was removed.
#: The ratio of a window whose residual is the noise scatters by ≈ 2 % (sampling) and by
#: the noise model's error, common to all windows, which over realistic recordings
#: (docs/metrics.md) stays within ±25 %; a faithful network leaves at most the noise
#: plus what it failed to recover: 2× the noise is beyond both.
RESIDUAL_LIMIT = 2.0

_BOX = 1  # 3×3 box power
_LOBE = 2  # maxima of 5×5 neighbourhoods (the Hann main lobe)
_LEAKAGE_HALF = 4  # Hann side lobes within 4 bins ...
_LEAKAGE = 300.0  # ... 31 dB below their peak (the whole-image readout's values)
_PAD = _BOX + _LEAKAGE_HALF
_STREAK_COLUMNS = 3  # kx = 0, 1, 2 (ky = 0, ±1, ±2) hold a streak along kx = 0 (ky = 0) ...
_STREAK_HALF = 12  # ... measured by the median of 25 bins along the column
_CHUNK = 64  # windows per batch: bounds the memory to ≈ 64 · 128² · 8 B · 10


def _hann_box_eigenvalues() -> np.ndarray:
    """Eigenvalues of the covariance of the 3×3 bins of a Hann-windowed periodogram of
    white noise (unit variance per bin).  Along one axis the Hann window's spectral
    kernel is (−¼, ½, −¼), so neighbouring bins correlate by −2/3 and bins two apart by
    1/6; the 2D covariance is the Kronecker product of the 1D one with itself."""
    one = np.array([[1.0, -2 / 3, 1 / 6], [-2 / 3, 1.0, -2 / 3], [1 / 6, -2 / 3, 1.0]])
    return np.sort(np.linalg.eigvalsh(np.kron(one, one)))[::-1]


_EIGEN = _hann_box_eigenvalues()


def box_tail(x: float) -> float:
    """P(S ≥ x·E[S]) for the 3×3 box power ``S`` of a Hann periodogram of white noise.

    ``S`` is a sum of independent exponentials with means equal to the eigenvalues
    ``μ`` of the bins' covariance (:func:`_hann_box_eigenvalues`, ``Σμ = 9``); its tail
    is that of the largest, ``C·exp(−9x / μ₁)`` with ``C = Π_{j>1} μ₁ / (μ₁ − μ_j)``
    (exact for distinct means, asymptotically for the repeated ones here).
    """
    top, rest = _EIGEN[0], _EIGEN[1:]
    constant = float(np.prod(top / (top - rest)))
    return min(1.0, constant * math.exp(-9.0 * x / top))


def significance_threshold(tests: int, alpha: float = FALSE_ALARM) -> float:
    """``τ`` with ``P(S − B ≥ τ B) = alpha / tests`` under noise (:func:`box_tail`)."""
    top, rest = _EIGEN[0], _EIGEN[1:]
    constant = float(np.prod(top / (top - rest)))
    x = top / 9.0 * math.log(constant * max(tests, 1) / alpha)
    return max(x - 1.0, 1.0)


def _change_quantile(tests: int, alpha: float = FALSE_ALARM) -> float:
    """One-sided normal quantile of ``alpha / tests``: how many in-phase noise
    amplitudes a change must exceed."""
    return float(-ndtri(alpha / max(tests, 1)))


# ------------------------------------------------------------------------------ windows


def _starts(n: int, size: int) -> np.ndarray:
    """Window starts along an axis of ``n`` px: every half window, the last flush."""
    stride = max(size // 2, 1)
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return np.asarray(starts, np.intp)


def _cells(starts: np.ndarray, size: int, n: int) -> np.ndarray:
    """``(k, 2)`` pixel ranges that the map gives each window: halfway between window
    centres, the first and last reaching the image's edges."""
    centres = starts + size / 2.0
    bounds = np.r_[0.0, (centres[1:] + centres[:-1]) / 2.0, float(n)]
    return np.stack([np.floor(bounds[:-1]), np.floor(bounds[1:])], axis=1).astype(np.intp)


@dataclass(frozen=True, eq=False)
class LocalFaithfulness:
    """The faithfulness readout per window (module docstring); arrays are
    ``(rows, cols)`` of windows.

    Attributes
    ----------
    shape : tuple of int
        Image shape.
    window : int
        Window side, px (stride ``window // 2``).
    y_starts, x_starts : numpy.ndarray
        First row / column of each window row / column.
    y_cells, x_cells : numpy.ndarray
        ``(k, 2)`` pixel ranges [start, stop) that the map (:meth:`label_map`) gives each
        window row / column.
    significant : numpy.ndarray
        int, the input's significant reflections per window.
    kept, weakened, removed, strengthened, invented : numpy.ndarray
        int, per window: significant reflections kept, weakened or removed, or
        strengthened, beyond the noise (``kept`` = all others), and reflections invented.
    lost_share : numpy.ndarray
        float, share of the window's significant lattice amplitude (sum over its
        reflections) lost beyond the noise, 0 to 1.
    invented_amplitude : numpy.ndarray
        float, largest invented fringe amplitude over the input's noise amplitude there
        (0 where none).
    residual_ratio : numpy.ndarray
        float, ``Σ w² r² / Σ w² σ²`` (NaN where the noise model gives no noise).
    threshold : float
        ``τ`` (:func:`significance_threshold`).
    z : float
        Noise amplitudes a change must exceed (:func:`_change_quantile`).
    """

    shape: tuple[int, int]
    window: int
    y_starts: np.ndarray
    x_starts: np.ndarray
    y_cells: np.ndarray
    x_cells: np.ndarray
    significant: np.ndarray
    kept: np.ndarray
    weakened: np.ndarray
    removed: np.ndarray
    strengthened: np.ndarray
    invented: np.ndarray
    lost_share: np.ndarray
    invented_amplitude: np.ndarray
    residual_ratio: np.ndarray
    threshold: float
    z: float

    @property
    def lattice_lost(self) -> np.ndarray:
        """Windows where a significant reflection was weakened or removed beyond the
        noise."""
        return (self.weakened + self.removed) > 0

    @property
    def lattice_gained(self) -> np.ndarray:
        """Windows where a reflection was strengthened beyond the noise or invented."""
        return (self.strengthened + self.invented) > 0

    @property
    def structure_removed(self) -> np.ndarray:
        """Windows whose residual is above :data:`RESIDUAL_LIMIT` times the noise."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.residual_ratio, nan=0.0) > RESIDUAL_LIMIT

    @property
    def passed(self) -> bool:
        """No window lost or gained lattice, or had structure removed."""
        return not (
            self.lattice_lost.any() or self.lattice_gained.any() or self.structure_removed.any()
        )

    def label_map(self) -> np.ndarray:
        """uint8 map at the image's shape: 0 faithful, 1 lattice lost or structure
        removed, 2 lattice gained (invented or strengthened), 3 both; each window
        paints its cell (``y_cells`` × ``x_cells``)."""
        codes = (self.lattice_lost | self.structure_removed).astype(np.uint8)
        codes |= self.lattice_gained.astype(np.uint8) << 1
        rows = np.repeat(codes, np.diff(self.y_cells, axis=1)[:, 0], axis=0)
        return np.repeat(rows, np.diff(self.x_cells, axis=1)[:, 0], axis=1)

    @property
    def windows(self) -> int:
        """Number of windows."""
        return int(self.significant.size)

    def region(self, mask: np.ndarray) -> str:
        """Where the windows of ``mask`` lie, in words and pixels, e.g. ``"in the
        top-left (x 0–128, y 0–256 px)"`` (x: columns, y: rows, as napari shows them)."""
        rows, cols = np.nonzero(mask)
        # The windows' cells: what the map paints, and where each window is centred.
        y0, y1 = int(self.y_cells[rows, 0].min()), int(self.y_cells[rows, 1].max())
        x0, x1 = int(self.x_cells[cols, 0].min()), int(self.x_cells[cols, 1].max())
        ny, nx = self.shape
        box = f"(x {x0}–{x1}, y {y0}–{y1} px)"
        if (y1 - y0) >= 0.9 * ny and (x1 - x0) >= 0.9 * nx:
            return f"across the whole image {box}"
        vertical = _third((y0 + y1) / 2 / ny, ("top", "middle", "bottom"), (y1 - y0) / ny)
        horizontal = _third((x0 + x1) / 2 / nx, ("left", "centre", "right"), (x1 - x0) / nx)
        parts = [w for w in (vertical, horizontal) if w and w not in ("middle", "centre")]
        if not parts and not (vertical and horizontal):
            return f"in a band across the image {box}"
        return f"in the {'-'.join(parts) or 'centre'} {box}"

    def warnings(self) -> list[str]:
        """Plain-language findings naming the regions, most serious first."""
        out = []
        n = self.windows
        lost = self.lattice_lost
        if lost.any():
            out.append(
                f"lattice lost in {int(lost.sum())} of {n} windows, {self.region(lost)}: "
                f"{int(self.weakened.sum())} reflections weakened and "
                f"{int(self.removed.sum())} removed beyond the noise"
            )
        gained = self.lattice_gained
        if gained.any():
            out.append(
                f"lattice invented in {int(gained.sum())} of {n} windows, "
                f"{self.region(gained)}: {int(self.invented.sum())} reflections the input "
                f"does not show there, {int(self.strengthened.sum())} strengthened beyond "
                "the noise"
            )
        removed = self.structure_removed
        if removed.any():
            top = float(np.nanmax(self.residual_ratio))
            out.append(
                f"structure removed in {int(removed.sum())} of {n} windows, "
                f"{self.region(removed)}: the residual there has up to {top:.1f}× the "
                f"variance of the noise (the limit is {RESIDUAL_LIMIT:g}×)"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (NaN as None)."""

        def plain(array: np.ndarray) -> list:
            return [[None if not math.isfinite(v) else v for v in row] for row in array.tolist()]

        return {
            "passed": self.passed,
            "window": self.window,
            "y_starts": self.y_starts.tolist(),
            "x_starts": self.x_starts.tolist(),
            "threshold": self.threshold,
            "z": self.z,
            "residual_limit": RESIDUAL_LIMIT,
            "significant": self.significant.tolist(),
            "kept": self.kept.tolist(),
            "weakened": self.weakened.tolist(),
            "removed": self.removed.tolist(),
            "strengthened": self.strengthened.tolist(),
            "invented": self.invented.tolist(),
            "lost_share": plain(self.lost_share),
            "invented_amplitude": plain(self.invented_amplitude),
            "residual_ratio": plain(self.residual_ratio),
        }


def _third(centre: float, words: tuple[str, str, str], extent: float) -> str:
    """The word for where along an axis a region lies ("" when it spans most of it)."""
    if extent >= 0.9:
        return ""
    return words[min(int(centre * 3.0), 2)]


# ------------------------------------------------------------------------------ the check


@dataclass
class _Found:
    """Per-reflection measurements of all windows, decided once ``z`` is known."""

    sig_window: list[np.ndarray]
    sig_in: list[np.ndarray]  # √(S_in − B_in)
    sig_out: list[np.ndarray]  # √(S_out − B_out)⁺
    sig_noise: list[np.ndarray]  # √(B_in / 2): the in-phase noise amplitude
    inv_window: list[np.ndarray]
    inv_excess: list[np.ndarray]  # √S_out − √S_in
    inv_noise: list[np.ndarray]


def local_faithfulness(
    input: np.ndarray,
    output: np.ndarray,
    estimate: NoiseEstimate,
    *,
    window: int = WINDOW,
    interference: LineInterference | Literal["find"] | None = "find",
) -> LocalFaithfulness:
    """The faithfulness readout per window (module docstring).

    Parameters
    ----------
    input, output : numpy.ndarray
        2D images of one shape (checked by the caller), the output in the input's units.
    estimate : NoiseEstimate
        The input's noise model.
    window : int
        Window side, px; the image's shorter side when that is smaller.
    interference : LineInterference, None or "find"
        The input's pattern the same in every scan line (:mod:`napari_pinned.noise.
        line_pattern`), whose bins are not reflections; ``"find"`` looks for it here.

    Returns
    -------
    LocalFaithfulness

    Notes
    -----
    A 1024² pair has 225 windows: two batched real FFTs per window, the floors as
    array filters, maxima and side lobes tested only at the bins above ``τ``; about
    0.75 s on a shared 2-core machine under load (docs/metrics.md).
    """
    a = np.asarray(input, np.float64)
    b = np.asarray(output, np.float64)
    ny, nx = a.shape
    size = int(min(window, ny, nx))
    ys, xs = _starts(ny, size), _starts(nx, size)
    corners = [(y, x) for y in ys for x in xs]
    variance = noise_variance_map(a, estimate)
    plan = _Plan(size)
    lines = line_interference(a) if isinstance(interference, str) else interference
    if lines is not None:
        # Interference the same in every scan line is not a reflection (noise.line_pattern).
        plan.canonical = plan.canonical & ~lines.rfft2_mask((size, size))
    tau = significance_threshold(len(corners) * plan.canonical.sum())
    found = _Found([], [], [], [], [], [], [])
    residual = np.empty(len(corners))
    views = [sliding_window_view(x, (size, size)) for x in (a, b, variance)]
    for start in range(0, len(corners), _CHUNK):
        chunk = corners[start : start + _CHUNK]
        rows = np.array([c[0] for c in chunk])
        cols = np.array([c[1] for c in chunk])
        stacks = [v[rows, cols] for v in views]
        residual[start : start + len(chunk)] = _measure(plan, *stacks, tau, start, found)
    tests = sum(x.size for x in found.sig_in) + sum(x.size for x in found.inv_excess)
    z = _change_quantile(tests)
    grid = (len(ys), len(xs))
    counts = _decide(found, z, len(corners))
    return LocalFaithfulness(
        shape=(ny, nx),
        window=size,
        y_starts=ys,
        x_starts=xs,
        y_cells=_cells(ys, size, ny),
        x_cells=_cells(xs, size, nx),
        **{k: v.reshape(grid) for k, v in counts.items()},
        residual_ratio=residual.reshape(grid),
        threshold=float(tau),
        z=z,
    )


class _Plan:
    """What every window of one size shares: the taper, the half-plane layout, the
    canonical bins and the padding indices."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.h = size // 2 + 1
        self.taper = hann_window((size, size))
        self.taper_sum = float(self.taper.sum())
        ky = np.where(np.arange(size) <= size // 2, np.arange(size), np.arange(size) - size)
        kx = np.arange(self.h)
        dc = ky[:, None] ** 2 + kx[None, :] ** 2 <= WINDOWED_DC_RADIUS**2
        self.dc = dc
        canonical = ~dc
        # Columns kx = 0 and (even size) kx = size/2 are their own Friedel mirror.
        canonical[ky < 0, 0] = False
        if size % 2 == 0:
            canonical[ky < 0, self.h - 1] = False
        self.canonical = canonical
        # Padded layout: rows wrap, columns beyond the half plane are Friedel mirrors.
        p = _PAD
        self.pad_rows = np.arange(-p, size + p) % size
        kpad = np.arange(-p, self.h + p)
        self.inside = (kpad >= 0) & (kpad <= size // 2)
        self.col_src = np.where(self.inside, kpad, (-kpad) % size)
        self.flip = (-np.arange(size)) % size

    def padded(self, power: np.ndarray) -> np.ndarray:
        """``(n, size + 2p, h + 2p)``: the half plane with its neighbourhood (only the
        few mirrored columns are gathered; the rows wrap)."""
        p, h = _PAD, self.h
        n = power.shape[0]
        out = np.empty((n, self.size + 2 * p, h + 2 * p), power.dtype)
        core = out[:, p : p + self.size]
        core[:, :, p : p + h] = power
        outside = ~self.inside
        core[:, :, outside] = power[:, self.flip][:, :, self.col_src[outside]]
        out[:, :p] = core[:, self.size - p :]
        out[:, p + self.size :] = core[:, :p]
        return out

    def patches(self, padded: np.ndarray, win: np.ndarray, r: np.ndarray, c: np.ndarray, half: int):
        """``(k, 2 half + 1, 2 half + 1)`` neighbourhoods of half-plane bins in a padded
        map."""
        d = np.arange(-half, half + 1)
        rows = r[:, None, None] + _PAD + d[None, :, None]
        cols = c[:, None, None] + _PAD + d[None, None, :]
        return padded[win[:, None, None], rows, cols]

    def peaks(self, padded_box: np.ndarray, win: np.ndarray, r: np.ndarray, c: np.ndarray):
        """Which candidate bins are 5×5 maxima of the box power and not a Hann side lobe
        of a much stronger neighbour (within 4 bins, 300× stronger)."""
        if win.size == 0:
            return np.zeros(0, bool)
        patch = self.patches(padded_box, win, r, c, _LEAKAGE_HALF)
        centre = patch[:, _LEAKAGE_HALF, _LEAKAGE_HALF]
        lo, hi = _LEAKAGE_HALF - _LOBE, _LEAKAGE_HALF + _LOBE + 1
        lobe = patch[:, lo:hi, lo:hi].reshape(win.size, -1)
        # argmax takes the first of equal values: of two tied bins only one is a maximum.
        maximum = np.argmax(lobe, axis=1) == lobe.shape[1] // 2
        return maximum & (patch.reshape(win.size, -1).max(axis=1) <= _LEAKAGE * centre)

    def crop(self, padded: np.ndarray) -> np.ndarray:
        p = _PAD
        return padded[:, p : p + self.size, p : p + self.h]

    def floor(self, power: np.ndarray, model: np.ndarray | None) -> np.ndarray:
        """Mean noise power per bin: the window's tile-median floor (the DC region
        replaced), at least the noise model's ``N`` when given."""
        n, s, h = power.shape
        base = power.copy()
        fill = model[:, None] if model is not None else np.median(power, axis=(1, 2))[:, None]
        base[:, self.dc] = fill
        block = min(FLOOR_BLOCK, s, h)
        th, tw = -(-s // block), -(-h // block)
        padded = np.pad(base, ((0, 0), (0, th * block - s), (0, tw * block - h)), mode="edge")
        tiles = padded.reshape(n, th, block, tw, block).transpose(0, 1, 3, 2, 4)
        medians = np.median(tiles.reshape(n, th, tw, block * block), axis=3)
        medians = ndimage.median_filter(medians, size=(1, 3, 3), mode="nearest")
        floor = np.repeat(np.repeat(medians, block, axis=1), block, axis=2)[:, :s, :h]
        # Scan-line offsets put a streak along kx = 0 that the tiles' medians miss: the
        # first columns take the running median along their own column too.
        near = min(_STREAK_COLUMNS, h)
        column = ndimage.median_filter(
            base[:, :, :near], size=(1, 2 * _STREAK_HALF + 1, 1), mode="wrap"
        )
        np.maximum(floor[:, :, :near], column, out=floor[:, :, :near])
        # Files whose fast scan runs along y put it along ky = 0: the rows ky = 0, ±1, ±2
        # take the running median along their own row (mirrored at kx = 0, where the
        # half plane folds onto itself).
        rows = np.unique(np.r_[0:near, s - near + 1 : s] % s)
        line = ndimage.median_filter(
            base[:, rows, :], size=(1, 1, 2 * _STREAK_HALF + 1), mode="mirror"
        )
        np.maximum(floor[:, rows, :], line, out=line)
        floor[:, rows, :] = line
        floor /= NOISE_MEDIAN_PER_MEAN
        if model is not None:
            np.maximum(floor, model[:, None, None], out=floor)
        return floor

    def box_floor(self, floor: np.ndarray) -> np.ndarray:
        """The floor's power in each bin's 3×3 box."""
        box = ndimage.uniform_filter(self.padded(floor), size=(1, 3, 3), mode="nearest") * 9.0
        return self.crop(box)


def _spectra(plan: _Plan, images: np.ndarray) -> np.ndarray:
    """Centred, Hann-tapered windows (in place) and their half-plane power."""
    w = plan.taper
    images -= (np.einsum("nij,ij->n", images, w) / plan.taper_sum)[:, None, None]
    images *= w
    f = sfft.rfft2(images, axes=(1, 2), workers=1)
    return f.real**2 + f.imag**2


def _boxes(plan: _Plan, power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3×3 box power, padded (for neighbourhoods) and on the half plane."""
    padded = plan.padded(power)
    box = ndimage.uniform_filter(padded, size=(1, 3, 3), mode="nearest") * 9.0
    np.maximum(box, 0.0, out=box)
    return box, plan.crop(box)


def _measure(
    plan: _Plan,
    a: np.ndarray,
    b: np.ndarray,
    variance: np.ndarray,
    tau: float,
    offset: int,
    found: _Found,
) -> np.ndarray:
    """Spectra, floors and candidate reflections of a batch of windows (appended to
    ``found``, windows numbered from ``offset``); returns their residual ratios."""
    w2 = plan.taper**2
    model = np.einsum("nij,ij->n", variance, w2)  # N = Σ w² σ² per bin
    a = a.astype(np.float64, copy=True)
    b = b.astype(np.float64, copy=True)
    p_in = _spectra(plan, a)
    p_out = _spectra(plan, b)
    a -= b  # the tapered, centred residual: Σ (a − b)² = Σ w² (r − r̄)²
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.einsum("nij,nij->n", a, a) / model
    ratio[~(model > 0)] = np.nan
    padded_in, s_in = _boxes(plan, p_in)
    padded_out, s_out = _boxes(plan, p_out)
    b_in = plan.box_floor(plan.floor(p_in, model))
    b_out = plan.box_floor(plan.floor(p_out, None))
    excess_in = s_in - b_in
    shown = excess_in >= tau * b_in
    win, r, c = np.nonzero(plan.canonical & shown)
    keep = plan.peaks(padded_in, win, r, c)
    win, r, c = win[keep], r[keep], c[keep]
    found.sig_window.append(win + offset)
    found.sig_in.append(np.sqrt(excess_in[win, r, c]))
    found.sig_out.append(np.sqrt(np.maximum(s_out[win, r, c] - b_out[win, r, c], 0.0)))
    found.sig_noise.append(np.sqrt(b_in[win, r, c] / 2.0))
    significant = np.zeros(s_in.shape, bool)
    significant[win, r, c] = True
    # Invented: the output shows a reflection that would have been significant in the
    # input, where the input shows none, away from the input's significant ones.
    excess_out = s_out - b_out
    invented = plan.canonical & ~shown
    invented &= (excess_out >= tau * b_out) & (excess_out >= tau * b_in)
    invented &= s_out >= INVENTED_RATIO**2 * s_in
    win, r, c = np.nonzero(invented)
    keep = plan.peaks(padded_out, win, r, c)
    if win.size:
        near = plan.patches(plan.padded(significant), win, r, c, _LOBE).any(axis=(1, 2))
        keep &= ~near
    win, r, c = win[keep], r[keep], c[keep]
    found.inv_window.append(win + offset)
    found.inv_excess.append(np.sqrt(s_out[win, r, c]) - np.sqrt(s_in[win, r, c]))
    found.inv_noise.append(np.sqrt(b_in[win, r, c] / 2.0))
    return ratio


def _decide(found: _Found, z: float, windows: int) -> dict[str, np.ndarray]:
    """Per-window counts from the per-reflection measurements."""
    win = np.concatenate(found.sig_window).astype(np.intp)
    a_in, a_out = np.concatenate(found.sig_in), np.concatenate(found.sig_out)
    noise = np.concatenate(found.sig_noise)
    ratio = a_out / a_in
    beyond = np.abs(a_out - a_in) > z * noise
    weakened = beyond & (ratio < 1.0 - KEPT_TOLERANCE) & (ratio >= REMOVED_RATIO)
    removed = beyond & (ratio < REMOVED_RATIO)
    strengthened = beyond & (ratio > 1.0 + KEPT_TOLERANCE)
    lost = weakened | removed

    def count(mask: np.ndarray, where: np.ndarray = win) -> np.ndarray:
        return np.bincount(where[mask], minlength=windows).astype(np.int64)

    total = np.bincount(win, weights=a_in, minlength=windows)
    lost_amp = np.bincount(win, weights=np.where(lost, a_in - a_out, 0.0), minlength=windows)
    inv_win = np.concatenate(found.inv_window).astype(np.intp)
    margin = np.concatenate(found.inv_excess) / np.concatenate(found.inv_noise)
    invented = margin > z
    strength = np.zeros(windows)
    np.maximum.at(strength, inv_win[invented], margin[invented])
    significant = np.bincount(win, minlength=windows).astype(np.int64)
    changed = count(weakened) + count(removed) + count(strengthened)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, lost_amp / total, 0.0)
    return {
        "significant": significant,
        "kept": significant - changed,
        "weakened": count(weakened),
        "removed": count(removed),
        "strengthened": count(strengthened),
        "invented": count(invented, inv_win),
        "lost_share": share,
        "invented_amplitude": strength,
    }
