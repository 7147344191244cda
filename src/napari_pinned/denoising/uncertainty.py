"""A per-pixel uncertainty of the denoised output: a standard deviation in its units.

**The model.**  Each output pixel's error is taken as Gaussian with variance, in model
units (:mod:`napari_pinned.nn.conditioning`: the frame's robust range ``r`` is 1),

    σ_u² = a · s² + b · σ² + c · σ + d · u · σ,

where ``s²`` is the variance of the network's outputs over the orientations averaged
(:data:`~napari_pinned.denoising.engine.ORIENTATIONS`: the network's own doubt, large
where a turned or mirrored input changes the answer); ``σ`` the pixel's noise standard
deviation at strength 1 — the noise map the conditioning computes from the frame's
Poisson–Gaussian fit (:func:`napari_pinned.nn.conditioning.noise_map`), which the
network is given as its second channel; and ``u ≥ 0`` the output itself (0 at the
frame's 1st percentile).  ``b · σ²`` is the noise the network leaves; ``c · σ`` makes
the error shrink more slowly than the noise as the dose rises (a network cannot denoise
a high-dose image as far, relative to its noise, as it smooths a low-dose one); and
``d · u · σ`` makes it larger on bright columns than in vacuum at the same noise (their
heights and shapes are what the network gets wrong).  In the output's units σ_u
scales with ``r``: with a gain, not with an offset.

``a``–``d`` depend on how many orientations are averaged (with one, ``s² = 0``); they
were fitted by maximum likelihood to the shipped default model's errors on a
calibration split of simulated recordings (training materials, seeds apart from the
training's and the held-out set's) and checked on the held-out set of
``benchmarks/realistic.py`` by ``benchmarks/uncertainty.py``, which wrote
``benchmarks/uncertainty.json`` and the table in docs/benchmarks.md.  Every term is
computed window by window from what the network reads and returns, so the map is tiled
exactly as the output is.  The constants hold for the default model at strength 1;
for other models and strengths the map is the same formula, uncalibrated
(docs/metrics.md, "Uncertainty").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CALIBRATION",
    "LEAST_CERTAIN_RATIO",
    "UncertaintyWeights",
    "coverage",
    "expected_sd",
    "fit_weights",
    "least_certain",
    "summarize",
    "uncertainty_summary",
    "uncertainty_weights",
    "window_sigma",
]

#: ``(a, b, c, d)`` of the model above per number of orientations averaged, fitted by
#: ``python benchmarks/uncertainty.py`` (maximum likelihood on its calibration split,
#: the shipped ``default`` model at strength 1; ``benchmarks/uncertainty.json``).
CALIBRATION: dict[int, tuple[float, float, float, float]] = {
    1: (0.0, 0.01444, 0.001024, 0.009646),
    2: (1.279, 0.01102, 0.0009237, 0.009263),
    4: (1.799, 0.007375, 0.000865, 0.008681),
    8: (2.133, 0.005116, 0.0007848, 0.008593),
}
#: A pixel is "least certain" where the network's doubt (``a · s²``) exceeds this many
#: times what the noise explains (the other terms): the orientations disagree beyond
#: the noise (:func:`least_certain`).
LEAST_CERTAIN_RATIO = 1.0


@dataclass(frozen=True)
class UncertaintyWeights:
    """The weights of :func:`window_sigma`, for the noise map ``m = strength · σ`` the
    network is given (model units).

    Attributes
    ----------
    spread : float
        ``a``: the weight of the orientations' variance.
    noise : float
        ``b / strength²``: the weight of ``m²``.
    noise_range : float
        ``c / strength``: the weight of ``m``.
    signal_noise : float
        ``d / strength``: the weight of ``u · m``.
    """

    spread: float
    noise: float
    noise_range: float = 0.0
    signal_noise: float = 0.0


def uncertainty_weights(
    orientations: int, strength: float, conditioned: bool
) -> UncertaintyWeights:
    """The calibrated weights for a run: :data:`CALIBRATION` of ``orientations``.

    Raises
    ------
    ValueError
        For a model without a noise map (the noise terms need one) or strength 0 (the
        output is then the input, and the map the network is given is zero).
    """
    if not conditioned:
        raise ValueError(
            "the uncertainty needs a noise-aware model (one that is given a noise map, such "
            "as the shipped 'default'); this model is not"
        )
    if not strength > 0:
        raise ValueError("the uncertainty needs a strength above 0")
    a, b, c, d = CALIBRATION[int(orientations)]
    k = float(strength)
    return UncertaintyWeights(float(a), float(b) / k**2, float(c) / k, float(d) / k)


def window_sigma(
    spread_variance: np.ndarray,
    noise_map: np.ndarray,
    output: np.ndarray,
    weights: UncertaintyWeights,
) -> np.ndarray:
    """σ_u (float32, model units) of one window from the variance of its orientations,
    the noise map it was given and its output (all model units)."""
    m = np.asarray(noise_map, np.float32)
    variance = np.maximum(np.asarray(output, np.float32), np.float32(0.0))
    variance *= np.float32(weights.signal_noise)
    variance += np.float32(weights.noise) * m + np.float32(weights.noise_range)
    variance *= m
    variance += np.float32(weights.spread) * np.asarray(spread_variance, np.float32)
    np.maximum(variance, np.float32(0.0), out=variance)
    return np.sqrt(variance, out=variance)


def fit_weights(features: list[np.ndarray], squared_error: np.ndarray) -> tuple[float, ...]:
    """The weights ``w ≥ 0`` maximising the Gaussian likelihood of the errors under
    ``σ² = Σ w_i · features_i`` (each a flat array of one value per pixel, or a scalar).

    A feature that is zero everywhere gets weight 0.
    """
    from scipy.optimize import minimize

    e2 = np.asarray(squared_error, np.float64).ravel()
    x = np.stack([np.broadcast_to(np.asarray(f, np.float64).ravel(), e2.shape) for f in features])
    used = np.flatnonzero(np.any(x > 0, axis=1))
    x_used = x[used]
    # Start each weight alone explaining the mean squared error, shared among the weights.
    start = np.log(np.mean(e2) / len(used) / np.maximum(x_used.mean(axis=1), 1e-30))

    def loss(log_w: np.ndarray) -> float:
        v = np.exp(log_w) @ x_used
        return float(np.mean(np.log(v) + e2 / v))

    best = minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-10})
    best = minimize(loss, best.x, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-12})
    weights = np.zeros(len(features))
    weights[used] = np.exp(best.x)
    return tuple(float(w) for w in weights)


def coverage(error: np.ndarray, sigma: np.ndarray, k: float = 2.0) -> float:
    """The share of pixels whose error lies within ``±k·σ``."""
    return float(np.mean(np.abs(error) <= k * np.asarray(sigma)))


def least_certain(
    sigma: np.ndarray, expected_sd: np.ndarray, ratio: float = LEAST_CERTAIN_RATIO
) -> np.ndarray:
    """Pixels where σ_u² exceeds ``(1 + ratio)`` times what the noise explains
    (``expected_sd²``, :func:`expected_sd`): the network's doubt, not only the noise,
    makes them uncertain (boolean mask)."""
    sigma = np.asarray(sigma, np.float32)
    floor = np.square(np.asarray(expected_sd, np.float32)) * np.float32(1.0 + ratio)
    return np.square(sigma) > floor


def _where(mask: np.ndarray, output: np.ndarray) -> str:
    """Where a mask's pixels lie, in words: on bright structure, in the dark
    background, at edges between them, or all over."""
    low, high = np.percentile(output, (5.0, 99.5))
    span = max(float(high - low), 1e-30)
    level = (output[mask] - low) / span
    bright = float(np.mean(level > 0.5))
    dark = float(np.mean(level < 0.15))
    if bright >= 0.5:
        return "on bright columns"
    if dark >= 0.5:
        return "in the dark background"
    edges = np.hypot(*np.gradient(np.asarray(output, np.float32)))
    if float(np.mean(edges[mask] > np.percentile(edges, 75.0))) >= 0.5:
        return "at edges of bright structure"
    return "spread over the image"


def uncertainty_summary(
    sigma: np.ndarray, output: np.ndarray, expected: np.ndarray | None = None
) -> str:
    """One line for the user: the median ±2σ and, given what the noise explains
    (:func:`expected_sd`), the share of pixels that are least certain
    (:func:`least_certain`) and where they lie, e.g. "Uncertainty: median ±2σ = 1.3;
    least certain: 3 % of pixels, at edges of bright structure"."""
    sigma = np.asarray(sigma, np.float32)
    median = float(np.median(sigma)) if sigma.size else 0.0
    head = f"Uncertainty: median ±2σ = {_number(2.0 * median)}"
    if expected is None or sigma.size == 0:
        return head
    mask = least_certain(sigma, expected)
    share = float(np.mean(mask))
    if share == 0.0:
        return f"{head}; no pixel is less certain than its noise explains"
    where = _where(mask, np.asarray(output, np.float32))
    percent = f"{100 * share:.0f}" if share >= 0.01 else "<1"
    return f"{head}; least certain: {percent} % of pixels, {where}"


def _number(value: float) -> str:
    """A value with three significant digits."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.3g}"


def expected_sd(frame: np.ndarray, output: np.ndarray, orientations: int) -> np.ndarray:
    """What the noise explains of a frame's uncertainty: σ_u without the orientations'
    spread, with the constants of ``orientations``, in the frame's units (float32).
    The noise map is measured as a noise-aware model measures it
    (:func:`napari_pinned.nn.conditioning.prepare`)."""
    from napari_pinned.nn.conditioning import prepare

    prepared = prepare(np.asarray(frame), "robust", conditioned=True)
    state = prepared.state
    if state.constant:
        return np.zeros(np.shape(frame), np.float32)
    _, b, c, d = CALIBRATION[int(orientations)]
    units = (np.asarray(output, np.float32) - np.float32(state.low)) / np.float32(state.scale)
    weights = UncertaintyWeights(0.0, b, c, d)
    sigma = window_sigma(np.zeros(1, np.float32), prepared.channels[1], units, weights)
    sigma *= np.float32(state.scale)
    return sigma


def summarize(sigma: np.ndarray, output: np.ndarray, image: np.ndarray, orientations: int) -> str:
    """:func:`uncertainty_summary` of a map, its output and its input (a 2D frame, or a
    stack: its first frame, said so), with the calibrated constants of ``orientations``."""
    if np.ndim(image) == 3:
        line = summarize(sigma[0], output[0], np.asarray(image[0]), orientations)
        return f"{line} (frame 1 of {len(image)})"
    frame = np.asarray(image)
    return uncertainty_summary(sigma, output, expected_sd(frame, output, orientations))
