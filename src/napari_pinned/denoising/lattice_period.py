"""The lattice periods of a frame series, and which correlation peaks they make ambiguous.

A crystal correlates with itself at every lattice vector, so the cross-correlation of two
frames has a peak at the drift between them and one as high at the drift plus any lattice
vector.  In frames as noisy as the paper's CDN level 2 (60 % of the pixels replaced by
uniform noise) the noise decides which of them is highest: the shipped GaN [11-20] stack,
which does not drift, was "registered" with jumps of one period (27.6 px).  The physics
breaks the tie: drift is slow and smooth, so each frame's shift lies close to the one the
frames before predict, and only a peak within less than half a period of that prediction
can be the drift (:mod:`napari_pinned.denoising.registration` does the matching).

The periods are measured from the frames themselves, from the mean of their power
spectra (which drift does not change): the strongest reflections (bins standing above
the spectrum's noise floor, :func:`napari_pinned.quality.spectra.tile_floor`) give the
reciprocal lattice, and its dual the lattice vectors in real space.  Only the two
strongest non-collinear reflections are used, weighted as the correlation weights them
(after its Gaussian low-pass): the correlation's ghost peaks lie where their fringes are
all at a maximum again, which is the lattice dual to those two.  When the strongest two
are not the crystal's shortest, that lattice is finer than the crystal's (in SrTiO3
[001] at CDN 2 the strongest are the 200 reflections, whose lattice has half the cell's
period along both axes): the window is then smaller than it could be, never too large.

An image without a lattice (amorphous film, vacuum) has no strong reflection, and its
frames are matched as before.  A static random specimen can make bins of the mean
spectrum stand out all the same (its speckle does not average out over the frames, and
its steep spectrum defeats the local floor), so a lattice found must be confirmed by the
frames: the correlation of two frames must repeat its peak a lattice vector away
(:func:`ghost_ratio`), which is what makes the correlation ambiguous in the first place.
Should a spurious lattice pass, :func:`choose_peak` still keeps a clear winner outside
the window that is no lattice vector away from the peak inside it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special
from scipy.signal import windows

from napari_pinned._util.jobs import run_job
from napari_pinned.quality.spectra import (
    NOISE_MEDIAN_PER_MEAN,
    WINDOWED_DC_RADIUS,
    hann_window,
    tile_floor,
)
from napari_pinned.quality.subpixel import parabola_vertex

__all__ = [
    "CONTENDER",
    "FALSE_REFLECTIONS",
    "JUMP_TOLERANCE",
    "WINDOW_FRACTION",
    "LatticePeriods",
    "choose_peak",
    "find_periods",
    "ghost_ratio",
    "iter_mean_power",
    "measure_periods",
    "window_overlap",
]

#: A correlation peak counts as the drift only within this fraction of a period of the
#: predicted shift, along every lattice vector.  Less than half: at half, the true peak
#: at one edge of the window has a ghost at the other, and a ghost's flank reaches in.
WINDOW_FRACTION = 0.4
#: Two peaks differ by a lattice vector when the difference has lattice coordinates
#: within this of whole numbers: the peaks of noisy frames are placed to a pixel or two,
#: under a fifth of any period the correlation resolves (≥ 10 px).
JUMP_TOLERANCE = 0.2
#: Expected number of noise bins taken for reflections per series: the threshold is
#: where the mean of N frames' noise powers exceeds it this rarely over the half plane.
FALSE_REFLECTIONS = 0.01
#: The ghosts of a lattice are about as high as the true peak (noise moves their heights
#: by tens of per cent at CDN 2): a peak in the window at least this fraction of a
#: higher one outside it is preferred to it, and a lattice is confirmed when the
#: correlation of two frames repeats its peak this high a lattice vector away (a
#: random specimen's correlation: about 0.1).
CONTENDER = 0.5
# Two reflections whose directions differ by less than asin(0.1) ≈ 6° belong to one row
# of the reciprocal lattice (a lattice's reflections differ by 30° or more).
_MIN_SINE = 0.1


@dataclass(frozen=True, eq=False)
class LatticePeriods:
    """The lattice a series' correlation is ambiguous by.

    Attributes
    ----------
    basis : numpy.ndarray
        ``(2, 2)`` reduced real-space basis, rows ``(dy, dx)`` in pixels, shortest first;
        or ``(1, 2)``, the period vector of a one-dimensional lattice (fringes), whose
        correlation is ambiguous only across the fringes.
    """

    basis: np.ndarray

    @property
    def periods(self) -> np.ndarray:
        """Lengths of the basis vectors, pixels."""
        return np.hypot(self.basis[:, 0], self.basis[:, 1])

    def vectors(self) -> np.ndarray:
        """The lattice vectors whose halfway planes bound the Voronoi cell of a reduced
        basis: b1, b2, b1 + b2 and b1 − b2 (one vector for fringes)."""
        if len(self.basis) == 1:
            return self.basis
        b1, b2 = self.basis
        return np.stack([b1, b2, b1 + b2, b1 - b2])

    def window(self, dy: np.ndarray, dx: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Whether each shift ``(dy, dx)`` (broadcast) lies within :data:`WINDOW_FRACTION`
        of a period of ``centre`` along every lattice vector."""
        ey, ex = dy - centre[0], dx - centre[1]
        inside = np.ones(np.broadcast_shapes(np.shape(ey), np.shape(ex)), dtype=bool)
        for vy, vx in self.vectors():
            inside &= np.abs(ey * vy + ex * vx) < WINDOW_FRACTION * (vy * vy + vx * vx)
        return inside

    def is_lattice_jump(self, difference: np.ndarray) -> bool:
        """Whether ``difference`` (dy, dx) is a non-zero lattice vector, to
        :data:`JUMP_TOLERANCE` of a period in each lattice coordinate."""
        d = np.asarray(difference, dtype=np.float64)
        if len(self.basis) == 1:
            v = self.basis[0]
            coords = np.array([d @ v / (v @ v)])
        else:
            coords = np.linalg.solve(self.basis.T, d)
        whole = np.round(coords)
        return bool(np.all(np.abs(coords - whole) <= JUMP_TOLERANCE) and np.any(whole != 0))


@functools.lru_cache(maxsize=8)
def window_overlap(h: int, w: int, taper: float) -> np.ndarray:
    """How much of two ``h × w`` frames under a separable Tukey window (cosine edges over
    the fraction ``taper``; 1: Hann) overlaps at each circular shift, 1 at zero shift:
    the window's circular autocorrelation, by which a correlation's heights are divided
    before they are compared (:func:`choose_peak`, :func:`ghost_ratio`)."""
    axes = []
    for n in (h, w):
        spectrum = np.fft.fft(windows.tukey(n, taper))
        auto = np.fft.ifft(spectrum.real**2 + spectrum.imag**2).real
        axes.append(np.maximum(auto / auto[0], np.finfo(np.float64).tiny))
    return np.outer(axes[0], axes[1])


def _lags(length: int) -> np.ndarray:
    """Signed shift of every circular correlation index along an axis (the middle one
    of an even length counts as positive)."""
    index = np.arange(length, dtype=np.float64)
    return np.where(index > length // 2, index - length, index)


def choose_peak(
    correlation: np.ndarray,
    allowed: np.ndarray,
    lattice: LatticePeriods | None,
    predicted: np.ndarray,
    overlap: np.ndarray | None = None,
) -> np.ndarray:
    """The whole-pixel shift ``(dy, dx)`` of the peak of a circular correlation.

    Without a lattice, the highest value where ``allowed``.  With one, the highest local
    maximum within less than half a period of ``predicted`` (the coarse step of the
    search), unless the highest peak overall lies outside that window, does not differ
    from it by a lattice vector and is more than twice as high: a peak a lattice vector
    away, or one as high (noise moves a lattice's peaks by pixels and their heights by
    tens of per cent), is a ghost of the lattice and rejected; a clear winner the
    lattice does not explain is kept, as without a lattice, so that the window of a
    spuriously found lattice cannot hide it.

    Parameters
    ----------
    correlation : numpy.ndarray
        The circular cross-correlation, zero shift at index ``(0, 0)``.
    allowed : numpy.ndarray
        bool, same shape: the shifts that may be returned at all (``max_shift``).
    lattice : LatticePeriods or None
        The frames' lattice, from :func:`find_periods`.
    predicted : numpy.ndarray
        The shift ``(dy, dx)`` the frames before predict.
    overlap : numpy.ndarray, optional
        The overlap of the frames' windows at each shift (1 at zero), by which heights
        are divided before they are compared: a peak at a large shift is lower only
        because less of the two frames overlaps.
    """
    h, w = correlation.shape
    dy, dx = _lags(h)[:, None], _lags(w)[None, :]
    masked = np.where(allowed, correlation, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(masked)), masked.shape)
    best = np.array([dy[iy, 0], dx[0, ix]])
    if lattice is None:
        return best
    window = allowed & lattice.window(dy, dx, predicted)
    if window[iy, ix]:
        return best
    local = correlation == ndimage.maximum_filter(correlation, size=3, mode="wrap")
    candidates = np.where(window & local, correlation, -np.inf)
    jy, jx = np.unravel_index(int(np.argmax(candidates)), candidates.shape)
    if not np.isfinite(candidates[jy, jx]):
        return best
    inside = np.array([dy[jy, 0], dx[0, jx]])
    scale = np.ones_like(correlation) if overlap is None else overlap
    height = correlation[jy, jx] / scale[jy, jx]
    contender = height >= CONTENDER * correlation[iy, ix] / scale[iy, ix]
    return inside if contender or lattice.is_lattice_jump(best - inside) else best


def ghost_ratio(lattice: LatticePeriods, correlation: np.ndarray, overlap: np.ndarray) -> float:
    """How high the correlation of two frames repeats its highest peak a lattice vector
    away, relative to that peak (0 when it does not).

    The highest local maximum within :data:`JUMP_TOLERANCE` of a period of the peak plus
    or minus each of :meth:`LatticePeriods.vectors`, both heights divided by the
    ``overlap`` of the frames at their shifts (shifts where less than a tenth overlaps
    are left out).  A crystal's frames give about 1 (the ghosts of the lattice); a
    lattice found in the speckle of an amorphous specimen gives little.
    """
    h, w = correlation.shape
    dy, dx = _lags(h)[:, None], _lags(w)[None, :]
    height = np.where(overlap >= 0.1, correlation / overlap, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    local = correlation == ndimage.maximum_filter(correlation, size=3, mode="wrap")
    ghost = -np.inf
    for v in lattice.vectors():
        radius = JUMP_TOLERANCE * float(np.hypot(*v))
        for target in (dy[iy, 0] + v[0], dx[0, ix] + v[1]), (dy[iy, 0] - v[0], dx[0, ix] - v[1]):
            # Circular distances: a target beyond half the frame wraps round.
            ey = (dy - target[0] + h / 2) % h - h / 2
            ex = (dx - target[1] + w / 2) % w - w / 2
            near = local & (ey**2 + ex**2 <= radius**2)
            if near.any():
                ghost = max(ghost, float(height[near].max()))
    return max(ghost / height[iy, ix], 0.0) if np.isfinite(height[iy, ix]) else 0.0


def iter_mean_power(stack: np.ndarray) -> Generator[int, None, np.ndarray]:
    """Mean power spectrum of the frames (mean-free, Hann-windowed), zero frequency at
    the centre; yields after every frame (the number done)."""
    n, h, w = stack.shape
    taper = hann_window((h, w))
    power = np.zeros((h, w), dtype=np.float64)
    for i, frame in enumerate(stack):
        f = np.asarray(frame, dtype=np.float64)
        spectrum = np.fft.fft2((f - f.mean()) * taper)
        power += spectrum.real**2 + spectrum.imag**2
        yield i + 1
    return np.fft.fftshift(power / n)


def _noise_floor(power: np.ndarray, frames: int) -> np.ndarray:
    """Mean noise power per bin of the mean of ``frames`` spectra.

    A noise bin's power in one spectrum is exponential; the mean of N is Gamma(N, 1/N)
    distributed, whose median is the Gamma(N) median over N times its mean (ln 2 for
    N = 1, what :func:`tile_floor` assumes), so the tiles' medians are rescaled.
    """
    median_per_mean = special.gammaincinv(frames, 0.5) / frames
    return tile_floor(power) * (NOISE_MEDIAN_PER_MEAN / median_per_mean)


def _reflections(power: np.ndarray, frames: int, smooth: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (cycles/px, ``(ky, kx)``, sub-bin) and correlation weights of the bins
    that stand above the noise, strongest first."""
    h, w = power.shape
    floor = _noise_floor(power, frames)
    # Where the mean of N exponential noise powers exceeds this many times its mean
    # FALSE_REFLECTIONS times over the h·w/2 independent bins of the half plane.
    threshold = special.gammainccinv(frames, FALSE_REFLECTIONS / (h * w / 2)) / frames
    ky = (np.arange(h) - h // 2)[:, None]
    kx = (np.arange(w) - w // 2)[None, :]
    outside_dc = ky**2 + kx**2 > WINDOWED_DC_RADIUS**2
    peaks = power == ndimage.maximum_filter(power, size=3, mode="wrap")
    rows, cols = np.nonzero(peaks & outside_dc & (power > threshold * floor))
    if rows.size == 0:
        return np.empty((0, 2)), np.empty(0)
    log = np.log(np.maximum(power, np.finfo(np.float64).tiny))
    fy = rows + parabola_vertex(log[rows - 1, cols], log[rows, cols], log[(rows + 1) % h, cols])
    fx = cols + parabola_vertex(log[rows, cols - 1], log[rows, cols], log[rows, (cols + 1) % w])
    positions = np.stack([(fy - h // 2) / h, (fx - w // 2) / w], axis=1)
    # The correlation sees each reflection's power through the Gaussian low-pass of both
    # frames, exp(−4π²σ²|k|²).
    k2 = np.sum(positions**2, axis=1)
    weights = (power[rows, cols] - floor[rows, cols]) * np.exp(-4 * math.pi**2 * smooth**2 * k2)
    order = np.argsort(-weights, kind="stable")
    return positions[order], weights[order]


def _reduced(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Lagrange–Gauss reduction: the shortest basis of the lattice, shortest first."""
    if b1 @ b1 > b2 @ b2:
        b1, b2 = b2, b1
    while True:
        b2 = b2 - np.round((b1 @ b2) / (b1 @ b1)) * b1
        if b2 @ b2 >= b1 @ b1:
            return np.stack([b1, b2])
        b1, b2 = b2, b1


def find_periods(power: np.ndarray, frames: int, smooth: float = 1.5) -> LatticePeriods | None:
    """The lattice of the strongest reflections of a mean power spectrum.

    Parameters
    ----------
    power : numpy.ndarray
        Mean power spectrum of the frames, zero frequency at the centre
        (:func:`iter_mean_power`).
    frames : int
        How many frames it is the mean of (sets the noise statistics).
    smooth : float
        σ (px) of the correlation's Gaussian low-pass, which weights the reflections.

    Returns
    -------
    LatticePeriods or None
        None when no bin stands above the noise.
    """
    positions, _ = _reflections(power, frames, smooth)
    if len(positions) == 0:
        return None
    g1 = positions[0]
    norms = np.hypot(positions[:, 0], positions[:, 1])
    sines = np.abs(g1[0] * positions[:, 1] - g1[1] * positions[:, 0]) / (norms * norms[0])
    others = np.flatnonzero(sines > _MIN_SINE)
    if others.size == 0:
        return LatticePeriods(basis=(g1 / (g1 @ g1))[None, :])
    # Real-space vectors b_i with b_i · g_j = δ_ij: the rows of inv([g1; g2])ᵀ.
    dual = np.linalg.inv(np.stack([g1, positions[others[0]]])).T
    return LatticePeriods(basis=_reduced(dual[0], dual[1]))


def measure_periods(frames: np.ndarray, smooth: float = 1.5) -> LatticePeriods | None:
    """The lattice periods of a frame series ``(N, H, W)`` (see the module docstring)."""
    stack = np.asarray(frames)
    return find_periods(run_job(iter_mean_power(stack)), len(stack), smooth)
