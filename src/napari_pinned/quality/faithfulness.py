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
:data:`MAX_INVENTED` invented; the residual at most
:data:`~napari_pinned.quality.local_faithfulness.RESIDUAL_LIMIT` times the noise; and, the
same comparison run window by window (:mod:`napari_pinned.quality.local_faithfulness`,
unless ``local=False``), no region that lost or gained lattice beyond the noise or had
structure removed — the whole field cannot see *where* a lattice is, so a lattice painted
into vacuum passes it.  Every number is a ratio of powers of the same images, so
the result does not change when the input and the output get the same detector gain and
offset.

Steps 1–3 live in :mod:`napari_pinned.quality.half_plane`, steps 4 and 5 (and the
thresholds that decide what a reflection is) in :mod:`napari_pinned.quality.reflections`;
this module measures the residual and gives the verdict.  :data:`STRONG_PEAK_SNR` and the
tile-median floor that pre-selects candidates are the lattice guard's too
(:mod:`napari_pinned.quality.spectra`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtri

from napari_pinned._util.intensity import check_image
from napari_pinned.noise.correlation import pixel_equivalent
from napari_pinned.noise.estimate import NoiseEstimate, estimate_noise, noise_variance_map
from napari_pinned.quality.half_plane import HalfPlaneSpectra
from napari_pinned.quality.local_faithfulness import (
    RESIDUAL_LIMIT,
    LocalFaithfulness,
    local_faithfulness,
)
from napari_pinned.quality.reflections import (
    INVENTED_MARGIN,
    INVENTED_RATIO,
    KEPT_TOLERANCE,
    STRONG_PEAK_SNR,
    BraggPeak,
    InventedPeak,
    input_reflections,
    invented_reflections,
)
from napari_pinned.quality.spectra import WINDOWED_DC_RADIUS

__all__ = [
    "DC_RADIUS",
    "MAX_INVENTED",
    "MIN_KEPT_FRACTION",
    "Faithfulness",
    "faithfulness",
    "faithfulness_stack",
]

#: Faithful needs at least this fraction of the checked reflections kept ...
MIN_KEPT_FRACTION = 0.90
#: ... and at most this many invented reflections.
MAX_INVENTED = 1
#: Residual variance over noise variance outside [low, high] earns a warning; above
#: :data:`napari_pinned.quality.local_faithfulness.RESIDUAL_LIMIT` the result is not
#: faithful (structure removed).
RESIDUAL_VARIANCE_HIGH = 1.5
RESIDUAL_VARIANCE_LOW = 0.25
#: Bins within this radius of the zero frequency are never reflections (the window's
#: main lobe around zero and the slow background live there;
#: :data:`napari_pinned.quality.spectra.WINDOWED_DC_RADIUS`).
DC_RADIUS = WINDOWED_DC_RADIUS
#: Smallest image side the check accepts.
MIN_SIZE = 32

_NOISE_CROP = 1024  # the noise model is fitted on a central crop of at most this size
_TRIM = 0.001  # share of the largest residual deviations ignored in its variance


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
        ``kept_fraction ≥ MIN_KEPT_FRACTION`` (or no reflections to check), at most
        ``MAX_INVENTED`` invented reflections, the residual at most ``RESIDUAL_LIMIT``
        times the noise, and no window of ``local`` that lost or gained lattice or had
        structure removed.
    warnings : tuple of str
        Plain-language findings for the microscopist, most serious first.
    shape : tuple of int
        Image shape.
    pixel_size : float or None
        Å per pixel, when given.
    local : LocalFaithfulness or None
        The readout per window (:mod:`napari_pinned.quality.local_faithfulness`), None
        when not asked for.
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
    local: LocalFaithfulness | None = field(default=None)

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
        where = ""
        if self.local is not None:
            loc = self.local
            where = (
                f"; windows: {int(loc.lattice_lost.sum())} lost lattice, "
                f"{int(loc.lattice_gained.sum())} gained, "
                f"{int(loc.structure_removed.sum())} structure removed of {loc.windows}"
            )
        return f"{verdict}: {kept}, {self.n_invented} invented{residual}{where}"

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
            "local": None if self.local is None else self.local.to_dict(),
        }


def _pct(value: float) -> str:
    return f"{100.0 * value:.0f} %"


# --------------------------------------------------------------------------- the check


def faithfulness(
    input: np.ndarray,
    output: np.ndarray,
    *,
    noise: NoiseEstimate | float | None = None,
    pixel_size: float | None = None,
    local: bool = True,
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
    local : bool
        Also check window by window (:mod:`napari_pinned.quality.local_faithfulness`):
        the verdict then fails where any region lost or gained lattice beyond the noise.

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
    return _check(a, b, estimate, pixel_size, local)


def faithfulness_stack(
    inputs: np.ndarray,
    outputs: np.ndarray,
    *,
    noise: NoiseEstimate | float | None = None,
    pixel_size: float | None = None,
    local: bool = True,
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
        return [faithfulness(a, b, noise=noise, pixel_size=pixel_size, local=local)]
    if min(a.shape[1:]) < MIN_SIZE:
        raise ValueError(
            f"inputs are too small for a faithfulness check (shape {a.shape}); frames "
            f"need at least {MIN_SIZE}×{MIN_SIZE} pixels"
        )
    # One fit for the stack; each frame's faithfulness scales it to that frame's noise
    # per pixel (pixel_equivalent), so the stack-level fit is passed on as fitted.
    estimate = noise if noise is not None else _fitted(a)
    return [
        faithfulness(x, y, noise=estimate, pixel_size=pixel_size, local=local)
        for x, y in zip(a, b, strict=True)
    ]


def _noise_model(image: np.ndarray, noise: NoiseEstimate | float | None) -> NoiseEstimate:
    """The noise a residual of pure noise has per pixel: a fitted model (given or
    fitted here) corrected for noise correlated along the scan, or white noise of σ."""
    if isinstance(noise, NoiseEstimate):
        return pixel_equivalent(noise, image)
    if noise is not None:
        sigma = float(noise)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"noise must be a NoiseEstimate or a σ ≥ 0, got {noise!r}")
        mean = float(np.mean(image, dtype=np.float64))
        return NoiseEstimate(0.0, sigma**2, float(np.median(image)), mean, int(image.size))
    return pixel_equivalent(_fitted(image), _crop(image))


def _crop(image: np.ndarray) -> np.ndarray:
    # The noise model is global; a central crop fits it as well as the whole field and
    # keeps a 2048² image fast.
    ny, nx = image.shape[-2:]
    y0, x0 = max((ny - _NOISE_CROP) // 2, 0), max((nx - _NOISE_CROP) // 2, 0)
    return image[..., y0 : y0 + _NOISE_CROP, x0 : x0 + _NOISE_CROP]


def _fitted(image: np.ndarray) -> NoiseEstimate:
    """The Poisson–Gaussian fit of the image's (or stack's) central crop."""
    return estimate_noise(_crop(image))


def _check(
    a: np.ndarray,
    b: np.ndarray,
    estimate: NoiseEstimate,
    pixel_size: float | None,
    local: bool,
) -> Faithfulness:
    spectra = HalfPlaneSpectra(a, b)
    peaks = input_reflections(spectra, pixel_size)
    invented = invented_reflections(spectra, peaks, pixel_size)
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
    faithful &= ratio is None or ratio <= RESIDUAL_LIMIT
    windows = (
        local_faithfulness(a, b, estimate, interference=spectra.interference) if local else None
    )
    faithful &= windows is None or windows.passed
    found = [] if windows is None else windows.warnings()
    return Faithfulness(
        peaks=tuple(peaks),
        invented=tuple(invented),
        kept_fraction=kept_fraction,
        residual_variance=residual_variance,
        noise_variance=noise_variance,
        residual_noise_ratio=ratio,
        faithful=bool(faithful),
        warnings=(*found, *_warnings(peaks, invented, ratio)),
        shape=(int(a.shape[0]), int(a.shape[1])),
        pixel_size=None if pixel_size is None else float(pixel_size),
        local=windows,
    )


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
    if ratio is not None and ratio > RESIDUAL_LIMIT:
        out.insert(
            0,
            f"the residual has {ratio:.1f}× the variance of the estimated noise (the limit "
            f"is {RESIDUAL_LIMIT:g}×): the denoiser removed structure, not only noise",
        )
    elif ratio is not None and ratio > RESIDUAL_VARIANCE_HIGH:
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
