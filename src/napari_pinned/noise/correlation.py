"""How correlated an image's noise is, and the noise a model is told for it.

A detector's afterglow (each pixel keeps a share of the previous pixels' signal) or a
finite bandwidth correlates the noise along the fast scan: the highest frequencies hold
less of it than white noise of the same dose would.  The Poisson–Gaussian fit of
:func:`napari_pinned.noise.estimate.estimate_noise` sees the noise through a kernel that
passes only the highest frequencies, so it reads such noise several times too weak.

The dose is set by the noise at zero frequency (the sum of the noise's autocovariance: a
linear filter ``h`` on counts of mean ``λ`` gives a mean ``λ·Σh`` and a zero-frequency
power ``λ·(Σh)²``, so their ratio is ``λ`` whatever ``h`` is).  :func:`noise_correlation`
measures the noise's power spectrum along each axis where the other axis's frequency is
high (above the probe's band, where a lattice has little signal) and extrapolates it to
zero frequency with an autoregressive spectrum, exact for an exponential afterglow
(Percival & Walden, "Spectral analysis for physical applications", 1993, ch. 9: AR
spectra ``1/|1 − Σ aₖ e^{−2πifk}|²``, whose reciprocal is a polynomial in ``cos 2πf``).

:func:`pixel_equivalent` scales a fit to the noise one pixel carries (the AR spectrum's
mean over all frequencies over its mean where the fit looks): what a noise-aware model is
told, and what the faithfulness readout's residual is compared with.  On held-out
recordings with a scanning detector's noise it puts the default ahead of being told the
fit at every dose (``benchmarks/scan_noise.py --variants``).  Telling it the white noise of
the dose (the zero-frequency level) denoises a little more at low doses and less at high
ones, and on a real scan (tk-r-em's exp_hrstem #3) it took lattice reflections out of 4
of 121 windows: a model trained on white noise then smooths the high frequencies for
noise they do not carry.  White noise is left exactly as fitted.

A symmetric smear (a detector's finite bandwidth, ``StemRecording.smear``) is not an AR
spectrum: its noise falls towards the Nyquist frequency, to nothing for ``[¼, ½, ¼]``.
Where no AR spectrum fits, a moving-average one is tried (the amplitude a quadratic in
``1 − cos 2πf``), and its level is read from the spectrum itself, as the fit sees almost
nothing of it (:attr:`SpectralNoise.powers`).

A frame resampled after recording (drift correction, registration, a rotation) has its
noise correlated along both axes, mildly along at least one.  Its spectrum is taken as
the product of the axes' fitted spectra, its level read from the high band whitened by
that product (:attr:`SpectralNoise.powers`): linear interpolation halfway between pixels
leaves no noise at the Nyquist frequency along either axis, where the fit looks.  A
recording with an afterglow that was then resampled has the product of the two spectra
along the fast scan, which neither form fits: it is read over the slow axis's fitted
spectrum, the interpolation's alone (:func:`_with_shared_resampling`).  And where at
high doses a crystal's reflections, spread by row jitter, hide an afterglow from both
fits, its spectrum is fitted to the fast scan's high frequencies alone
(:func:`_upper_fit`), and where that does not fit either, a smear's
(:func:`_upper_smear_fit`): that says how much noise a pixel carries, not the dose.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import fft as sfft

from napari_pinned._util.intensity import check_image
from napari_pinned.noise.estimate import NoiseEstimate

__all__ = [
    "SpectralNoise",
    "correlation_factor",
    "noise_correlation",
    "pixel_equivalent",
    "spectral_noise",
]

# The spectrum: frames cut to tiles of at most this edge (Welch averaging), the band
# "high along the other axis" starts here (cycles/px), the lowest frequency bins left
# out (scan-line offsets and their window leakage), and the AR polynomial's degree.
_TILE = 256
_BAND = 0.25
_SKIP_BINS = 3
_AR_DEGREE = 1
# A correlation correction within this factor of 1 counts as white noise: on white
# noise over lattice images one 256² tile gives 1.05 ± 0.1 per axis (measured over 8
# seeds at 0.3–1e5 e⁻/px; the lowest frequencies extrapolated from still hold some
# signal), and an afterglow of 0.3 per pixel gives 3.
_WHITE_TOLERANCE = 0.5
# The AR fit's relative residuals (std of log(fit · profile)) above which the profile
# is not correlated noise.  Lattice reflections streaked across the axis by a sharp
# crystal–vacuum edge fake a correlation of 15–45 with a bumpy profile: 0.73–0.94
# (SrTiO3 at 0.05 and 0.1 Å/px, 512²); an afterglow's profile scatters by 0.09–0.15 on
# 512² frames and 0.16–0.30 on one 256² tile.
_FIT_SPREAD = 0.4
# Lattice reflections spread across the other axis by row jitter (each line shifted by a
# fraction of a pixel modulates the line's phase, which puts a reflection's power at
# every frequency of the other axis) stand out of the profile as narrow peaks at the
# lattice's frequencies and their harmonics: WSe2 [0001] at 0.1 Å/px with 0.3 px of
# jitter gives peaks 3–5× their neighbours, a fit spread of 0.57, and its afterglow of
# 2.4 px went unread (the readout then called a good output unfaithful).  A noise
# spectrum has no such peaks, so the fit leaves out each bin more than _PEAK_SIGMAS
# robust standard deviations (a scaled median absolute deviation, at least
# _PEAK_SCATTER_FLOOR) above the median of the _PEAK_WINDOW bins around it in log
# power, and its two neighbours (a peak's shoulders, as the Hann window spreads it); a
# profile with more than _PEAK_SHARE of its bins left out is not a spectrum with a few
# peaks (SrTiO3 at 0.1 Å/px, whose harmonics reach 0.2 cycles/px, leaves out 25 %).
_PEAK_WINDOW = 9
_PEAK_SIGMAS = 4.0
_PEAK_SCATTER_FLOOR = 0.05
_PEAK_SHARE = 0.3
# ... and only where the fit to the bins left is as clean as an afterglow's profile on
# a 512² frame: signal spread more broadly (Al [110] at 0.1 Å/px and 100 e⁻/px: 0.26,
# read 2× the noise per pixel) and lattices without noise (SrTiO3: 0.26) are not.
_PEAK_FIT_SPREAD = 0.2
# ... and, for a symmetric smear's moving-average fit, where its relative residual is
# within a smear's on one 256² tile (0.07–0.16, :data:`_MA_SPREAD`): peaks hid the
# smear of WSe2 at 0.2 Å/px at 10–100 e⁻/px (told 0.16–0.58 of the noise per pixel;
# 0.93–1.11 without them), and of a = 0.25 under 0.3 px of jitter at 100 e⁻/px on
# SrTiO3, WSe2 and BaTiO3 in 9 of 9 draws (0.03–0.04; 7 of 9 now read, 1.10–1.32).
_PEAK_SMEAR_SPREAD = 0.16
# A detector of finite bandwidth smears each pixel symmetrically with its neighbours
# (``[a, 1 − 2a, a]``): a moving-average spectrum, whose amplitude is a polynomial in
# ``u`` and which vanishes at the Nyquist frequency for a = 1/4, so no AR spectrum
# describes it (the fit then read the noise 30–70× too weak).  The amplitude's relative
# RMS residual from a quadratic in ``u`` above which a profile is not such noise: smears
# of a = 0.1–0.3 give 0.04–0.12 on 512² frames at 1–200 e⁻/px and 0.07–0.16 on one 256²
# tile, crystal edges 0.27–0.57 and noise-free lattices 0.59–0.80 (SrTiO3 at 0.05–0.2
# Å/px).
_MA_DEGREE = 2
# Where neither spectrum fits the whole profile of the fast scan, an afterglow's is
# fitted above this frequency (cycles/px) alone: the hump a jittered lattice puts into
# the profile ended near 0.15 on the held-out crystals at 0.1 Å/px, and above 0.2 enough
# of the spectrum is left to measure its slope (:func:`_upper_fit`).
_UPPER_FIT = 0.2
# ... and only where the profile's low frequencies hold at most this many times the
# fitted noise there (median over the bins): the held-out afterglow recordings at 100
# e⁻/px whose profile only this fit reads hold 1.5–1.9, while the high frequencies of a
# noise-free lattice, fitted as well as noise is, lie 50–7000 times below its low ones
# (the held-out crystals at 0.1 Å/px).
_UPPER_HUMP = 5.0
# ... and with an afterglow of at most this many pixels (``c = 2a/(1 − a)²``,
# ``a = e^{−1/τ}``): the upper band alone hardly bends, and a free fit there ran off to
# spectra that diverge at zero frequency.
_UPPER_TAU = 3.0
# ... and where the fit there is clean (:data:`_PEAK_FIT_SPREAD`), or over the slow
# axis's spectrum (:func:`_with_shared_resampling`) within an afterglow's scatter on one
# 256² tile (see :data:`_FIT_SPREAD`): a rotation is not separable along the scan axes,
# and the resampled afterglow recordings at 100 e⁻/px fitted there to 0.25–0.26 and
# went unread.  On its own the fast axis keeps the tighter limit: a noise-free SrTiO3
# lattice at 0.1 Å/px fits its upper band to 0.24.
_UPPER_SPREAD = 0.3
# The smears ``[a, 1 − 2a, a]`` :func:`_upper_smear_fit` tries: from a = 0.125, below
# which the AR spectrum describes a smear (:data:`_MA_NYQUIST`), to 0.5.
_UPPER_SMEAR_A = np.linspace(0.125, 0.5, 151)
_MA_SPREAD = 0.25
# ... and, as the AR spectrum describes weaker smears (a ≤ 0.1 reads within 10 % of the
# per-pixel variance), a smear is taken only where the fitted amplitude at the Nyquist
# frequency is below this share of its zero-frequency value (a > 0.125 for [a, 1 − 2a,
# a]).  On one 256² tile, lattice streaks from a vacuum strip fitted to within 0.24
# with 0.7 there; smears of a ≥ 0.2 give 0.25 or less.
_MA_NYQUIST = 0.5
# Noise correlated along both axes is a frame resampled after it was recorded (drift
# correction, registration, a rotation or rescale by linear or cubic interpolation):
# each pixel's noise is mixed with its neighbours' along both axes, but mildly along at
# least one (linear interpolation halfway between pixels gives 5.5; resampled afterglow
# recordings read 2.2–2.8 along their slow axis, tk-r-em's exp_hrstem #4 2.1).  A
# filtered or blurred image falls off steeply along both (a Gaussian of σ = 1 px: 44–111
# on the held-out recordings), and is told its noise as fitted.  The weaker axis's
# factor up to which both axes are taken as a resampled frame's noise.
_RESAMPLED_LIMIT = 12.0


def noise_correlation(image: np.ndarray) -> tuple[float, float]:
    """How much more noise power sits at zero frequency than at high frequencies, per
    axis: ``(along y, along x)``, 1 for white noise.

    The power spectrum is averaged over tiles (Welch); along x it is the median over the
    frequencies where y's is high (``|f_y| > 0.25``: beyond a probe-limited image's
    signal, and the median ignores a few Bragg peaks there), and likewise along y.  The
    reciprocal of that profile is fitted as a polynomial in ``u = 1 − cos 2πf`` (an
    autoregressive spectrum; exact for an exponential afterglow), evaluated at ``u = 0``
    and divided by its mean over the high frequencies ``0.25 < |f| ≤ 0.5``, where the
    noise level is measured.  Corrections within :data:`_WHITE_TOLERANCE` of 1, and
    profiles the polynomial cannot describe, count as white.

    Parameters
    ----------
    image : numpy.ndarray
        2D image or ``(N, Y, X)`` stack (up to four frames are used).
    """
    return spectral_noise(check_image(image, name="image", ndim=(2, 3))).zero


@dataclass(frozen=True)
class SpectralNoise:
    """What the spectrum says about an image's noise (see :func:`spectral_noise`).

    Attributes
    ----------
    variance : float
        The high band's noise variance, as white noise would show it: the median power where
        both frequencies exceed 0.25, over ln 2 for exponentially distributed powers,
        averaged over the tiles (0 for frames too small).
    level : float
        The Hann²-weighted mean intensity that variance belongs to (it is linear in the
        intensity).
    zero : tuple of float
        ``(along y, along x)``: the power at zero frequency over the high band's
        (:func:`noise_correlation`); 1 for white noise.
    pixel : tuple of float
        ``(along y, along x)``: the mean power over all frequencies (the per-pixel
        variance) over the high band's; 1 for white noise.
    powers : tuple of float, optional
        ``(zero-frequency power, per-pixel variance)`` of the noise in intensity², when
        one axis holds a symmetric smear's spectrum (:func:`_moving_average_ratios`) or
        both axes are correlated (a resampled frame, :func:`correlation_factor`): such
        noise falls so steeply where the Poisson–Gaussian fit and :attr:`variance` look
        that neither measures its level, so it is taken from the whole spectrum
        instead.  None otherwise.
    afterglow : tuple of float, optional
        ``(c, zero-frequency power in intensity²)`` when one axis holds an afterglow's
        spectrum and :func:`spectral_noise` was asked to split it: the profile as shot
        noise through the afterglow, ``∝ 1/(1 + c·u)`` with ``u = 1 − cos 2πf``, plus
        white noise added after it (read noise) (:func:`_afterglow_split`).  None
        otherwise.
    zero_read : bool
        False where an axis's spectrum was fitted to its high frequencies alone
        (:func:`_upper_fit`): its per-pixel variance holds, its zero-frequency level (and
        so a dose) does not.
    """

    variance: float
    level: float
    zero: tuple[float, float]
    pixel: tuple[float, float]
    powers: tuple[float, float] | None = None
    afterglow: tuple[float, float] | None = None
    zero_read: bool = True

    @property
    def zero_power(self) -> float:
        """The noise variance at zero frequency (what sets the dose), in intensity²:
        :attr:`variance` times :func:`correlation_factor` of :attr:`zero`, or
        :attr:`powers`' own."""
        if self.powers is not None and correlation_factor(self.zero) != 1.0:
            return self.powers[0]
        return self.variance * correlation_factor(self.zero)


_WHITE = SpectralNoise(0.0, 0.0, (1.0, 1.0), (1.0, 1.0))
# One axis's ratios for white noise (:func:`_axis_ratios`).
_WHITE_AXIS: tuple[float, float, None, None] = (1.0, 1.0, None, None)


def spectral_noise(arr: np.ndarray, *, split: bool = False) -> SpectralNoise:
    """The noise's level and its correlation per axis from the power spectrum of up to
    four frames, averaged over tiles (:class:`SpectralNoise`); with ``split``, also an
    afterglow's shot and read noise apart (what the readout's dose needs, and nothing
    a model is told)."""
    frames = arr[None] if arr.ndim == 2 else arr[:4]
    h, w = frames.shape[1:]
    th, tw = min(h, _TILE), min(w, _TILE)
    if min(th, tw) < 32:
        return _WHITE
    window = np.outer(np.hanning(th), np.hanning(tw))
    weights = window**2 / np.sum(window**2)
    fy, fx = np.abs(np.fft.fftfreq(th)), np.abs(np.fft.fftfreq(tw))
    corner = np.ix_(fy > _BAND, fx > _BAND)
    tops = np.unique(np.linspace(0, h - th, min(4, h // th)).astype(int))
    lefts = np.unique(np.linspace(0, w - tw, min(4, w // tw)).astype(int))
    total, levels, means = np.zeros((th, tw)), [], []
    for frame in frames:
        for top in tops:
            for left in lefts:
                tile = np.asarray(frame[top : top + th, left : left + tw], np.float64)
                if np.ptp(tile) == 0:
                    continue
                centred = (tile - np.sum(tile * window) / np.sum(window)) * window
                power = np.abs(sfft.fft2(centred)) ** 2 / np.sum(window**2)
                total += power
                levels.append(float(np.median(power[corner])) / math.log(2.0))
                means.append(float(np.sum(tile * weights)))
    if not levels:
        return _WHITE
    zy, py, sy, cy = _axis_correlation(total.T, fx, th, split)
    profile_x = np.median(total[fy > _BAND], axis=0)
    zx, px, sx, cx = _axis_ratios(profile_x, tw, split, fast=True)
    if cy is not None and (cx is None or (sx is not None and sx.upper)):
        # A frame resampled after recording: the fast profile over the slow axis's
        # spectrum, before what its high frequencies alone say (a smear's form fits an
        # afterglow through an interpolation there, and told the upsampled recordings
        # at 30–100 e⁻/px 0.1–0.3 of their noise).
        zx, px, sx, cx = _with_shared_resampling(profile_x, tw, cy, (zx, px, sx, cx))
    powers = afterglow = None
    # The profiles are medians over rows of a sum over tiles: in units of one tile's
    # power, over the median of a Gamma(tiles) variable.
    scale = _gamma_median(len(levels))
    if cy is not None and cx is not None:
        if correlation_factor((zy, zx)) != 1.0:
            # Both axes: the high band whitened by the product of the fitted spectra
            # (each 1 on average over its own band) is the level of that product; a
            # smear's spectrum may vanish at the Nyquist frequency, where nothing is
            # left to whiten.
            product = np.outer(cy[fy > _BAND], cx[fx > _BAND])
            valid = product > 0
            level = float(np.median(total[corner][valid] / product[valid])) / scale
            powers = (level * zy * zx, level * py * px)
    elif (sy is None) != (sx is None):
        shape = sx if sy is None else sy
        if shape.smear is not None:
            powers = (shape.smear[0] / scale, shape.smear[1] / scale)
        if shape.afterglow is not None:
            c, power = shape.afterglow
            afterglow = (c, power / scale)
    zero_read = not any(shape is not None and shape.upper for shape in (sy, sx))
    return SpectralNoise(
        float(np.mean(levels)),
        float(np.mean(means)),
        (zy, zx),
        (py, px),
        powers,
        afterglow,
        zero_read,
    )


@dataclass(frozen=True)
class _Shape:
    """What a correlated axis's profile holds beyond its ratios, in the profile's units:
    a smear's ``(zero-frequency, mean)`` powers, or an afterglow's ``(c, zero-frequency
    power)`` (:func:`_afterglow_split`)."""

    smear: tuple[float, float] | None = None
    afterglow: tuple[float, float] | None = None
    upper: bool = False  # fitted to the high frequencies alone (:func:`_upper_fit`)


def _gamma_median(shape: int) -> float:
    """The median of a Gamma(``shape``, 1) variable (a sum of ``shape`` exponential
    powers), by Wilson & Hilferty's cube-root approximation (Proc. Natl. Acad. Sci. 17,
    684, 1931): ``shape · (1 − 1/(9·shape))³``, 1.3 % above ln 2 for one tile and within
    0.1 % from four."""
    return shape * (1.0 - 1.0 / (9.0 * shape)) ** 3


def _axis_correlation(
    total: np.ndarray, other: np.ndarray, n: int, split: bool = False
) -> tuple[float, float, _Shape | None, np.ndarray | None]:
    """:func:`_axis_ratios` of the profile along the last axis of ``total``: the median
    over the rows whose frequency ``other`` is high (the median ignores a few Bragg
    peaks there)."""
    return _axis_ratios(np.median(total[other > _BAND], axis=0), n, split)


def _with_shared_resampling(
    profile: np.ndarray,
    n: int,
    slow: np.ndarray,
    read: tuple[float, float, _Shape | None, np.ndarray | None],
) -> tuple[float, float, _Shape | None, np.ndarray | None]:
    """The fast axis's ratios of a frame resampled after it was recorded, where no
    spectrum fits its profile but the slow axis's does (``slow``, its fitted curve).

    Resampling filters the noise alike along both axes, and the slow axis carries
    nothing else (its scan lines are recorded alike), so the slow axis's curve is the
    interpolation's; the fast axis carries the detector's afterglow or bandwidth as well,
    and its profile is their product, which neither an AR nor a moving-average spectrum
    describes (on the held-out upsampled frames at 30–100 e⁻/px the fast axis then read
    white and the models were told 0.03–0.1 of the noise per pixel).  The fast profile
    over the slow axis's curve is fitted as :func:`_axis_ratios` fits a profile, and the
    product of the two is the fast axis's spectrum.  ``read``, what the fast axis read
    on its own, is kept where its profile is flat (white noise, within
    :data:`_WHITE_TOLERANCE`) or the quotient fits no spectrum either.  ``profile`` is
    the fast axis's, as :func:`_axis_correlation` takes it.
    """
    k = np.arange(_SKIP_BINS, n // 2 + 1)
    low, high = k[k < n // 8], k[k >= n // 4]
    if not (low.size and np.all(profile[k] > 0)):
        return read
    if float(np.mean(profile[low]) / np.mean(profile[high])) < 1.0 + _WHITE_TOLERANCE:
        return read
    f = np.abs(np.fft.fftfreq(n))
    if slow.size == n:
        shared = slow
    else:  # a frame narrower than a tile along one axis: its tiles are not square
        fs = np.abs(np.fft.fftfreq(slow.size))
        order = np.argsort(fs, kind="stable")
        shared = np.interp(f, fs[order], slow[order])
    if not np.all(shared > 0):
        return read
    _, _, _, own = _axis_ratios(profile / shared, n, fast=True, upper_spread=_UPPER_SPREAD)
    if own is None:
        return read
    curve = own * shared
    band = float(np.mean(curve[f > _BAND]))
    return float(curve[0] / band), float(np.mean(curve) / band), None, curve / band


def _axis_ratios(
    profile: np.ndarray,
    n: int,
    split: bool = False,
    fast: bool = False,
    upper_spread: float = _PEAK_FIT_SPREAD,
) -> tuple[float, float, _Shape | None, np.ndarray | None]:
    """``(zero, pixel, shape, curve)``: the AR spectrum fitted to one axis's profile
    (full ``fftfreq`` order, length ``n``) at zero frequency and averaged over all
    frequencies, each over its mean at ``0.25 < |f| ≤ 0.5`` (with ``split``, the profile
    split into shot and white noise, :func:`_afterglow_split`), or a smear's spectrum
    where no AR spectrum fits (:func:`_moving_average_ratios`, which also gives the
    profile's own powers); ``curve`` is the fitted spectrum at the ``n`` frequencies
    over the same mean.  Along the ``fast`` scan (x, the rows), where neither fits, an
    afterglow's spectrum fitted to the high frequencies alone (:func:`_upper_fit`, to
    within ``upper_spread``), else a smear's (:func:`_upper_smear_fit`).
    ``(1, 1, None, None)`` when indistinguishable from white."""
    k = np.arange(_SKIP_BINS, n // 2 + 1)
    p = profile[k]
    if not np.all(p > 0):
        return _WHITE_AXIS
    u = 1.0 - np.cos(2.0 * np.pi * k / n)
    # An AR spectrum describes correlated noise to the profile's own scatter; lattice
    # reflections streaked across the axis by a sharp edge make a bumpy profile that it
    # does not describe.
    peaks = _peak_bins(p)
    coef, kept = _ar_fit(p, u, peaks)
    grid = np.linspace(0.0, 0.5, 513)
    u_grid = 1.0 - np.cos(2.0 * np.pi * grid)
    spectrum, upper = None, False
    if coef is not None and np.all(np.polynomial.polynomial.polyval(u_grid, coef) > 0):
        spectrum = partial(_ar_spectrum, coef)
    if spectrum is None:
        ratios = _smear_fit(p, u, grid, n, peaks)
        if ratios[3] is not None or not fast:
            # Only along the fast scan, where a detector's afterglow lies, is the upper
            # band fitted alone: the slow axis's noise is correlated by resampling only.
            return ratios
        spectrum, kept = _upper_fit(p, u, k / n, upper_spread)
        smeared = spectrum is None
        if smeared:
            spectrum, kept = _upper_smear_fit(p, u, k / n)
        if spectrum is None:
            return ratios
        upper = True
    values = spectrum(u_grid)
    band = float(np.mean(values[grid > _BAND]))
    ratio = float(values[0] / band)
    if abs(math.log(ratio)) < math.log1p(_WHITE_TOLERANCE):
        return _WHITE_AXIS
    if upper:
        # The zero-frequency level of an extrapolation from the high frequencies is
        # not the dose's: only the per-pixel variance is used (a smear's from its
        # powers, as for a smear fitted whole).
        smear = (float(values[0]), float(np.mean(values))) if smeared else None
        shape = _Shape(smear=smear, upper=True)
    else:
        shape = _Shape(afterglow=_afterglow_split(p[kept], u[kept])) if split else None
    return ratio, float(np.mean(values) / band), shape, spectrum(_u_all(n)) / band


def _ar_spectrum(coef: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The AR spectrum whose reciprocal is the polynomial ``coef`` in ``u``."""
    return 1.0 / np.polynomial.polynomial.polyval(u, coef)


def _afterglow_spectrum(c: float, shot: float, white: float, u: np.ndarray) -> np.ndarray:
    """Shot noise through an exponential afterglow plus white noise added after it."""
    return shot / (1.0 + c * u) + white


def _peak_bins(p: np.ndarray) -> np.ndarray:
    """The bins of the profile ``p`` that belong to narrow peaks: more than
    :data:`_PEAK_SIGMAS` robust standard deviations above the median of the
    :data:`_PEAK_WINDOW` bins around them in log power, and their two neighbours."""
    from scipy import ndimage

    log_p = np.log(p)
    above = log_p - ndimage.median_filter(log_p, size=_PEAK_WINDOW, mode="nearest")
    scatter = 1.4826 * float(np.median(np.abs(above - np.median(above))))
    peaks = above > _PEAK_SIGMAS * max(scatter, _PEAK_SCATTER_FLOOR)
    return ndimage.binary_dilation(peaks)


def _ar_fit(
    p: np.ndarray, u: np.ndarray, peaks: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray]:
    """``(coef, kept)``: the AR spectrum's reciprocal, a polynomial in ``u``, fitted to
    the profile ``p`` by least squares of ``poly(u) · p ≈ 1`` (relative errors, as the
    median powers have) over the bins ``kept``; ``coef`` is None where the fit does not
    describe the profile (:data:`_FIT_SPREAD`).

    The ``peaks`` (:func:`_peak_bins`) are left out where the fit without them is clean
    (:data:`_PEAK_FIT_SPREAD`) and they are few (:data:`_PEAK_SHARE`); otherwise every
    bin counts, as before peaks were looked for."""
    every = np.ones(p.size, dtype=bool)
    trials = [(~peaks, _PEAK_FIT_SPREAD)] if _few(peaks) else []
    for kept, limit in [*trials, (every, _FIT_SPREAD)]:
        design = p[kept, None] * u[kept, None] ** np.arange(_AR_DEGREE + 1)
        coef = np.linalg.lstsq(design, np.ones(int(kept.sum())), rcond=None)[0]
        fitted = design @ coef
        if np.all(fitted > 0) and float(np.std(np.log(fitted))) <= limit:
            return coef, kept
    return None, every


def _upper_fit(
    p: np.ndarray, u: np.ndarray, f: np.ndarray, spread: float = _PEAK_FIT_SPREAD
) -> tuple[Callable[[np.ndarray], np.ndarray] | None, np.ndarray]:
    """``(spectrum, kept)``: an afterglow's spectrum (shot noise through it plus white
    noise, :func:`_afterglow_split`, its coefficient that of an afterglow of at most
    :data:`_UPPER_TAU` px) fitted to the profile ``p`` above :data:`_UPPER_FIT`
    cycles/px alone, where the profile's low frequencies hold signal.  Accepted where
    the fit's relative residual there is within ``spread`` and it lies below the profile
    at the frequencies left out (signal adds power to the noise's, it never takes any
    away) but not far below (:data:`_UPPER_HUMP`: the profile is the noise's, with some
    signal); ``spectrum`` None otherwise.

    At high doses a crystal's reflections, spread across the other axis by row jitter,
    add a broad hump at the low frequencies of the fast axis's profile that neither an
    AR nor a moving-average spectrum describes; the axis then read as white, and
    frames with an afterglow of 2 px at 100 e⁻/px were told 0.2–0.3 of their noise per
    pixel (BaTiO3-P4mm and Al on ``benchmarks/scan_noise.py``'s afterglow set).
    """
    kept = f >= _UPPER_FIT
    c, shot, white = _afterglow_parts(p[kept], u[kept], _UPPER_C)
    if not shot > 0:
        return None, kept
    spectrum = partial(_afterglow_spectrum, c, shot, white)
    if float(np.std(np.log(spectrum(u[kept]) / p[kept]))) > spread:
        return None, kept
    return (spectrum if _under_hump(p, u, kept, spectrum) else None), kept


def _upper_smear_fit(
    p: np.ndarray, u: np.ndarray, f: np.ndarray
) -> tuple[Callable[[np.ndarray], np.ndarray] | None, np.ndarray]:
    """``(spectrum, kept)``: a symmetric smear's spectrum, ``s·(1 − 2a·u)²`` for the
    smear ``[a, 1 − 2a, a]`` (:data:`_UPPER_SMEAR_A`), fitted to the amplitude ``√p``
    above :data:`_UPPER_FIT` cycles/px alone, as :func:`_upper_fit` fits an
    afterglow's where that does not fit either.  Accepted where the fit is within a
    smear's scatter on one tile (:data:`_PEAK_SMEAR_SPREAD`), its ``a`` inside the
    grid (at its lower end the profile is no smear's that the whole fit would miss) and
    the profile's low frequencies hold 1–:data:`_UPPER_HUMP` times the fitted noise.

    The smear's counterpart of the afterglow's hump: at 100 e⁻/px a jittered crystal's
    reflections hid smears of a ≈ 0.3 from the moving-average fit, and the frames were
    told 0.03–0.04 of their noise per pixel (BaTiO3-P4mm and weak_strong #0 on
    ``benchmarks/scan_noise.py``'s bandwidth set).
    """
    kept = f >= _UPPER_FIT
    amplitude = np.sqrt(p[kept])
    shapes = np.abs(1.0 - 2.0 * _UPPER_SMEAR_A[:, None] * u[kept][None, :])
    scales = shapes @ amplitude / np.sum(shapes**2, axis=1)
    residual = np.mean((scales[:, None] * shapes - amplitude) ** 2, axis=1)
    best = int(np.argmin(residual))
    if best == 0 or math.sqrt(residual[best] / np.mean(p[kept])) > _PEAK_SMEAR_SPREAD:
        return None, kept
    spectrum = partial(_smear_spectrum, float(_UPPER_SMEAR_A[best]), float(scales[best]) ** 2)
    return (spectrum if _under_hump(p, u, kept, spectrum) else None), kept


def _under_hump(
    p: np.ndarray, u: np.ndarray, kept: np.ndarray, spectrum: Callable[[np.ndarray], np.ndarray]
) -> bool:
    """Whether the profile ``p`` at the frequencies an upper fit left out holds 1 to
    :data:`_UPPER_HUMP` times the fitted ``spectrum`` (median over the bins): signal adds
    power to the noise's, and a noise-free lattice's low frequencies lie far above."""
    return 1.0 <= float(np.median(p[~kept] / spectrum(u[~kept]))) <= _UPPER_HUMP


def _smear_spectrum(a: float, power: float, u: np.ndarray) -> np.ndarray:
    """The noise spectrum of counts of zero-frequency ``power`` smeared by ``[a, 1 − 2a,
    a]``."""
    return power * (1.0 - 2.0 * a * u) ** 2


def _few(peaks: np.ndarray) -> bool:
    """Whether there are peaks, and few enough to leave out (:data:`_PEAK_SHARE`)."""
    return bool(peaks.any()) and float(np.mean(peaks)) <= _PEAK_SHARE


def _smear_fit(
    p: np.ndarray, u: np.ndarray, grid: np.ndarray, n: int, peaks: np.ndarray
) -> tuple[float, float, _Shape | None, np.ndarray | None]:
    """:func:`_moving_average_ratios` without the ``peaks`` where that fit is within a
    smear's scatter on one 256² tile (:data:`_PEAK_SMEAR_SPREAD`), else with every
    bin."""
    if _few(peaks):
        ratios = _moving_average_ratios(p[~peaks], u[~peaks], grid, n, _PEAK_SMEAR_SPREAD)
        if ratios[2] is not None:
            return ratios
    return _moving_average_ratios(p, u, grid, n)


def _u_all(n: int) -> np.ndarray:
    """``1 − cos 2πf`` at the ``n`` frequencies of ``fftfreq(n)``."""
    return 1.0 - np.cos(2.0 * np.pi * np.fft.fftfreq(n))


#: The afterglow coefficients ``c`` :func:`_afterglow_split` tries (an exponential
#: afterglow of τ px has ``c = 2a/(1 − a)²``, ``a = e^{−1/τ}``: 0.36 at τ = ½, 1.8 at
#: τ = 1, 7.8 at τ = 2).
_SPLIT_C = np.geomspace(0.05, 500.0, 161)
# Those of an afterglow of at most _UPPER_TAU px, for :func:`_upper_fit`.
_UPPER_DECAY = math.exp(-1.0 / _UPPER_TAU)
_UPPER_C = _SPLIT_C[_SPLIT_C <= 2.0 * _UPPER_DECAY / (1.0 - _UPPER_DECAY) ** 2]


def _afterglow_split(p: np.ndarray, u: np.ndarray) -> tuple[float, float]:
    """``(c, shot + white)``: the profile ``p`` (at ``u = 1 − cos 2πf``) as shot noise
    through an exponential afterglow, ``shot/(1 + c·u)``, plus white noise added after
    it (a detector's read noise), ``white ≥ 0``, by least squares of the relative
    errors over a grid of ``c``; the second value is their power at zero frequency.

    An AR(1) spectrum alone bends towards the white floor, and then reads the
    zero-frequency power, and with it the dose, too low: at 1 e⁻/px with 0.5 e⁻ read
    noise and τ = 2 px the readout said 17× the dose.  The split is what the readout
    reads the dose from (:func:`napari_pinned.noise.readout.read_noise`); what a model
    is told stays the AR spectrum's.
    """
    c, shot, white = _afterglow_parts(p, u, _SPLIT_C)
    return c, shot + white


def _afterglow_parts(p: np.ndarray, u: np.ndarray, cs: np.ndarray) -> tuple[float, float, float]:
    """``(c, shot, white)`` of :func:`_afterglow_split`, over the coefficients ``cs``."""
    shape = 1.0 / (1.0 + cs[:, None] * u[None, :]) / p[None, :]  # shot column
    flat = np.broadcast_to(1.0 / p, shape.shape)  # white column
    # Normal equations of [shape, flat] · (shot, white) ≈ 1, one per c.
    saa = np.sum(shape**2, axis=1)
    sab = np.sum(shape * flat, axis=1)
    sbb = np.sum(flat**2, axis=1)
    ra = np.sum(shape, axis=1)
    rb = np.sum(flat, axis=1)
    det = saa * sbb - sab**2
    with np.errstate(divide="ignore", invalid="ignore"):
        shot = (sbb * ra - sab * rb) / det
        white = (saa * rb - sab * ra) / det
    alone = ra / saa  # the shot noise alone, where the white part would be negative
    negative = ~(white >= 0)
    shot = np.where(negative, alone, shot)
    white = np.where(negative, 0.0, white)
    residual = np.sum((shape * shot[:, None] + flat * white[:, None] - 1.0) ** 2, axis=1)
    residual = np.where(shot > 0, residual, np.inf)
    best = int(np.argmin(residual))
    return float(cs[best]), float(shot[best]), float(white[best])


def _moving_average_ratios(
    p: np.ndarray, u: np.ndarray, grid: np.ndarray, n: int, spread: float = _MA_SPREAD
) -> tuple[float, float, _Shape | None, np.ndarray | None]:
    """``(zero, pixel, smear, curve)`` of a moving-average spectrum (a symmetric smear)
    fitted to a profile that no AR spectrum describes (``curve``: as
    :func:`_axis_ratios`'); ``(1, 1, None, None)`` when it is not one either, or white.

    The amplitude ``√p`` is fitted as a quadratic in ``u`` and must fall to under half
    its zero-frequency value at the Nyquist frequency.  Such a spectrum falls to
    nearly nothing towards the Nyquist frequency, where the Poisson–Gaussian fit's
    kernel looks hardest and the fit's spectral floor sits, so neither says how much
    noise there is: ``smear``, the fitted spectrum at zero frequency and its mean over
    all frequencies in the profile's units, does (:class:`SpectralNoise`).  The two
    ratios are over the high band's mean, as for an AR spectrum.
    """
    amplitude = np.sqrt(p)
    design = u[:, None] ** np.arange(_MA_DEGREE + 1)
    coef = np.linalg.lstsq(design, amplitude, rcond=None)[0]
    residual = amplitude - design @ coef
    if float(np.sqrt(np.mean(residual**2) / np.mean(amplitude**2))) > spread:
        return _WHITE_AXIS
    at_nyquist = np.polynomial.polynomial.polyval(2.0, coef)
    if not (coef[0] > 0 and abs(at_nyquist) < _MA_NYQUIST * coef[0]):
        return _WHITE_AXIS
    power = np.polynomial.polynomial.polyval(1.0 - np.cos(2.0 * np.pi * grid), coef) ** 2
    band = float(np.mean(power[grid > _BAND]))
    if not band > 0:
        return _WHITE_AXIS
    ratio = float(power[0]) / band
    if abs(math.log(ratio)) < math.log1p(_WHITE_TOLERANCE):
        return _WHITE_AXIS
    return (
        ratio,
        float(np.mean(power)) / band,
        _Shape(smear=(float(power[0]), float(np.mean(power)))),
        np.polynomial.polynomial.polyval(_u_all(n), coef) ** 2 / band,
    )


def pixel_equivalent(estimate: NoiseEstimate, image: np.ndarray) -> NoiseEstimate:
    """``estimate`` (fitted on ``image``) scaled to the noise variance one pixel carries,
    recorded in :attr:`NoiseEstimate.correlation`: correlated noise has less than its
    dose's white noise per pixel, but more than the fit's high-pass kernel sees.  What a
    noise-aware model is told, and what a residual that is all noise has.

    Noise correlated along one axis (a detector's afterglow or bandwidth, along the fast
    scan) or along both, mildly along one of them (a resampled frame), is scaled
    (:func:`correlation_factor`); a filtered, denoised or noise-free image, which falls
    off steeply at high frequencies in every direction, is told its noise as fitted.
    """
    spectrum = spectral_noise(check_image(image, name="image", ndim=(2, 3)))
    fitted = estimate.as_fitted()
    if correlation_factor(spectrum.zero) == 1.0:
        return fitted
    if spectrum.powers is not None:
        # A smear or a resampled frame: its per-pixel variance measured from the
        # spectrum, over the fit's.
        seen = float(fitted.variance(spectrum.level))
        return fitted.correlated(spectrum.powers[1] / seen) if seen > 0 else fitted
    return fitted.correlated(spectrum.pixel[0] * spectrum.pixel[1])


def correlation_factor(factors: tuple[float, float]) -> float:
    """The zero-frequency correction for :func:`noise_correlation`'s ``(along y, along
    x)`` (the dose read, and whether :func:`pixel_equivalent` scales at all): the
    correlated axis's factor when exactly one is; both's product when both are and the
    weaker is within :data:`_RESAMPLED_LIMIT` (a resampled frame: the noise spectrum is
    the product of the axes' for a separable interpolation kernel); else 1."""
    fy, fx = factors
    if fy == 1.0 and fx == 1.0:
        return 1.0
    if fy != 1.0 and fx != 1.0 and min(fy, fx) > _RESAMPLED_LIMIT:
        return 1.0
    return fy * fx
