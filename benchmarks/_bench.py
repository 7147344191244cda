"""Shared pieces of the realistic-noise benchmarks (``realistic.py``, ``real_micrographs.py``).

* :class:`GAT`: the generalised Anscombe transform for Poisson–Gaussian noise and the
  closed-form approximation of its exact unbiased inverse (Makitalo & Foi).
* :func:`tune`: a per-image oracle search over one parameter (the best PSNR against the
  truth), used for every classical method.
* :data:`CLASSICAL`: Gaussian, median, non-local means, TV (Chambolle) and VST + BM3D.
* :func:`parse_model_specs` / :class:`ModelSpec`: ``--model LABEL=PATH_OR_NAME``.
* :func:`machine`: a one-line description of the machine for the JSON.

Not a test and not part of the package: benchmark scripts import it from their own folder.
"""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_pinned.quality.risk import NO_SIGNAL_FREQUENCY

# --------------------------------------------------------------------------- the VST


@dataclass(frozen=True)
class GAT:
    """Generalised Anscombe transform for ``z = gain · Poisson(y) + N(mu, sigma²)``.

    Forward (Makitalo & Foi, "Optimal inversion of the generalized Anscombe
    transformation for Poisson–Gaussian noise", IEEE TIP 22(1), 91–103, 2013, eq. 2;
    the transform itself is Murtagh, Starck & Bijaoui, A&AS 112, 179, 1995)::

        f(z) = 2/gain · sqrt(gain · z + 3/8 · gain² + sigma² − gain · mu),

    0 where the root's argument is negative.  It makes the noise approximately unit
    variance Gaussian, so a Gaussian denoiser applies with sigma = 1.

    Inverse: the closed-form approximation of the *exact unbiased* inverse (Makitalo &
    Foi, "A closed-form approximation of the exact unbiased inverse of the Anscombe
    variance-stabilizing transformation", IEEE TIP 20(9), 2697–2698, 2011, for Poisson;
    its Poisson–Gaussian form from the 2013 paper above)::

        I(D, s) = D²/4 + sqrt(3/2)/4 · D⁻¹ − 11/8 · D⁻² + 5/8 · sqrt(3/2) · D⁻³ − 1/8 − s²,
        E[z] = gain · max(I(D, sigma/gain), 0) + mu.

    Unlike the algebraic inverse ``(D/2)² − 3/8 − s²`` it undoes the bias that the
    non-linear transform puts on the mean at low counts.  The polynomial in ``1/D``
    diverges as ``D → 0``, far below the smallest value the transform of a zero signal
    has on average (≈ 2 sqrt(3/8 + s²)); values of ``D`` below the polynomial's minimum
    are mapped to that minimum (and so to 0 after the clip): our guard against that
    spurious branch, which only BM3D outputs far below any zero-signal value reach.
    """

    gain: float = 1.0
    sigma: float = 0.0
    mu: float = 0.0

    @classmethod
    def from_noise(cls, estimate) -> GAT:
        """From a :class:`napari_pinned.noise.estimate.NoiseEstimate` ``σ²(I) = g·I + c``.

        The fit gives ``g = gain`` and ``c = sigma² − gain · mu``, not ``sigma`` and
        ``mu`` apart (a detector offset and read noise look alike).  The forward transform
        needs only ``c``; for the inverse's clip at zero signal we take the smallest split
        consistent with the fit: ``mu = 0, sigma² = c`` when ``c ≥ 0``, else ``sigma = 0,
        mu = −c / g``.
        """
        g = max(float(estimate.gain), 1e-12)
        c = float(estimate.offset)
        if c >= 0:
            return cls(gain=g, sigma=math.sqrt(c), mu=0.0)
        return cls(gain=g, sigma=0.0, mu=-c / g)

    def forward(self, z: np.ndarray) -> np.ndarray:
        g = self.gain
        arg = g * np.asarray(z, np.float64) + 0.375 * g * g + self.sigma**2 - g * self.mu
        return 2.0 / g * np.sqrt(np.maximum(arg, 0.0))

    def inverse(self, d: np.ndarray) -> np.ndarray:
        s = self.sigma / self.gain
        d = np.maximum(np.asarray(d, np.float64), _poly_minimum())
        a = math.sqrt(1.5)
        inv = 0.25 * d**2 + 0.25 * a / d - 1.375 / d**2 + 0.625 * a / d**3 - 0.125 - s * s
        return self.gain * np.maximum(inv, 0.0) + self.mu


@dataclass(frozen=True)
class LinearVST:
    """Noise that is (nearly) signal-independent needs no variance stabilisation: the
    image is only shifted and scaled to unit noise, ``(z − centre) / sigma``.

    Used instead of :class:`GAT` when the fitted noise is essentially Gaussian (the
    gain term explains under 20 % of the variance, where
    :attr:`NoiseEstimate.mean_counts` is None): the transform ``2/g · sqrt(g z + ...)``
    is then an affine map computed as the difference of two huge numbers, which loses
    every digit as the gain ``g`` goes to zero.
    """

    sigma: float
    centre: float = 0.0

    def forward(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z, np.float64) - self.centre) / self.sigma

    def inverse(self, d: np.ndarray) -> np.ndarray:
        return np.asarray(d, np.float64) * self.sigma + self.centre


def vst_from_noise(estimate) -> GAT | LinearVST:
    """The variance-stabilising transform for a fitted
    :class:`napari_pinned.noise.estimate.NoiseEstimate`: the generalised Anscombe transform
    when the noise is signal-dependent, else a plain normalisation to unit noise."""
    if estimate.mean_counts is None:
        return LinearVST(sigma=max(estimate.sigma, 1e-12), centre=estimate.median_intensity)
    return GAT.from_noise(estimate)


def _poly_minimum() -> float:
    """Where ``D²/4 + sqrt(3/2)/4 · D⁻¹ − 11/8 · D⁻² + 5/8 · sqrt(3/2) · D⁻³`` is smallest
    on (0, 4] (about 0.9): below it the closed form turns up again, a spurious branch."""
    d = np.linspace(0.3, 4.0, 3701)
    a = math.sqrt(1.5)
    poly = 0.25 * d**2 + 0.25 * a / d - 1.375 / d**2 + 0.625 * a / d**3
    return float(d[int(np.argmin(poly))])


# --------------------------------------------------------------------------- tuning


@dataclass
class Tuned:
    """The outcome of :func:`tune`: the best output and how it was found."""

    output: np.ndarray
    parameter: float
    score: float
    seconds: float  # one application at the chosen parameter
    search_seconds: float  # the whole search
    evaluations: int
    at_edge: bool  # the best parameter is the first or last of the grid
    tried: dict[float, float] = field(default_factory=dict)


def tune(
    apply: Callable[[float], np.ndarray],
    score: Callable[[np.ndarray], float],
    grid: Sequence[float],
    start: int,
    stride: int,
    *,
    refine: bool = True,
    polish: bool = False,
) -> Tuned:
    """Maximise ``score(apply(p))`` over the sorted parameter ``grid``.

    A discrete hill climb with shrinking steps: from ``grid[start]`` move by ``stride``
    grid steps while the score improves, then halve the stride down to one step
    (``refine``).  PSNR against a parameter that sets the amount of smoothing is
    unimodal in practice (too little leaves noise, too much blurs), so this finds the
    grid optimum with about 5 evaluations instead of the whole grid.  ``polish``
    evaluates once more at the vertex of the parabola through the best point and its two
    neighbours (in grid-index space, i.e. log-parameter space for a geometric grid).
    """
    cache: dict[int, tuple[float, np.ndarray, float]] = {}
    began = time.perf_counter()

    def ev(i: int) -> float:
        if i not in cache:
            t0 = time.perf_counter()
            out = np.asarray(apply(grid[i]), np.float64)
            cache[i] = (float(score(out)), out, time.perf_counter() - t0)
        return cache[i][0]

    best = start
    ev(best)
    direction = 1
    s = max(stride, 1)
    while True:
        moved = True
        while moved:
            moved = False
            for d in (direction, -direction):
                j = best + d * s
                if 0 <= j < len(grid) and ev(j) > ev(best):
                    best, direction, moved = j, d, True
                    break
        if s == 1 or not refine:
            break
        s = max(s // 2, 1)
    score_best, out_best, sec_best = cache[best]
    param_best = float(grid[best])
    tried = {float(grid[i]): v[0] for i, v in sorted(cache.items())}
    if polish and refine and 0 < best < len(grid) - 1:
        lo, mid, hi = ev(best - 1), cache[best][0], ev(best + 1)
        curvature = lo - 2 * mid + hi
        delta = 0.5 * (lo - hi) / curvature if curvature < 0 else 0.0
        if abs(delta) > 0.2:
            # For a geometric grid, index space is log-parameter space.
            ratio = grid[best + 1] / grid[best]
            param = float(grid[best] * ratio ** min(max(delta, -1.0), 1.0))
            t0 = time.perf_counter()
            out = np.asarray(apply(param), np.float64)
            sec = time.perf_counter() - t0
            value = float(score(out))
            tried[param] = value
            if value > score_best:
                score_best, out_best, sec_best, param_best = value, out, sec, param
    return Tuned(
        output=out_best,
        parameter=param_best,
        score=score_best,
        seconds=sec_best,
        search_seconds=time.perf_counter() - began,
        evaluations=len(tried),
        at_edge=best in (0, len(grid) - 1),
        tried=dict(sorted(tried.items())),
    )


def geometric(first: float, ratio: float, count: int) -> list[float]:
    return [first * ratio**j for j in range(count)]


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Classical:
    """A classical denoiser with one tuned parameter.

    ``run(noisy, gat, p)`` returns the estimate in the input's units; ``grid`` is the
    sorted parameter grid, ``start`` and ``stride`` where :func:`tune` begins and how far
    it first steps (``--quick`` searches with that stride only, no refinement).
    """

    name: str
    run: Callable[[np.ndarray, GAT | LinearVST, float], np.ndarray]
    grid: tuple[float, ...]
    start: int
    stride: int
    parameter: str
    polish: bool = False


def _gaussian(x: np.ndarray, gat: GAT | LinearVST, sigma_px: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma_px, mode="reflect")


def _median(x: np.ndarray, gat: GAT | LinearVST, size: float) -> np.ndarray:
    return ndimage.median_filter(x, int(size), mode="reflect")


def _nlm_vst(x: np.ndarray, gat: GAT | LinearVST, h: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    z = gat.forward(x)
    # In the VST domain the noise is unit variance: sigma=1 makes skimage subtract the
    # expected noise distance of two patches, h is then a multiple of that σ.
    d = denoise_nl_means(z, h=h, sigma=1.0, patch_size=5, patch_distance=6, fast_mode=True)
    return gat.inverse(d)


def _tv_vst(x: np.ndarray, gat: GAT | LinearVST, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return gat.inverse(denoise_tv_chambolle(gat.forward(x), weight=weight))


def _bm3d_vst(x: np.ndarray, gat: GAT | LinearVST, factor: float) -> np.ndarray:
    import bm3d

    return gat.inverse(bm3d.bm3d(gat.forward(x), sigma_psd=factor))


#: Every classical method, tuned per image against the truth (an oracle).
CLASSICAL: tuple[Classical, ...] = (
    # σ 0.25–16 px in steps of 2^(1/4); start at 1 px, first steps ×2.
    Classical("Gaussian", _gaussian, tuple(geometric(0.25, 2**0.25, 25)), 8, 4, "sigma_px"),
    Classical("median", _median, (3, 5, 7, 9, 11, 13, 15, 19, 23, 27, 31), 1, 2, "size_px"),
    # h 0.1–6.4 σ (VST domain) in steps of 2^(1/4); start at 0.8.
    Classical("NLM (VST)", _nlm_vst, tuple(geometric(0.1, 2**0.25, 25)), 12, 4, "h"),
    # weight 0.05–25 in steps of 2^(1/4); start at ≈ 1.
    Classical("TV (VST)", _tv_vst, tuple(geometric(0.05, 2**0.25, 37)), 17, 4, "weight"),
    # σ in the VST domain 0.25–8 × the nominal 1 in steps of √2 from 1.41, then a parabolic
    # polish; crystals often want 2–3×: BM3D's σ also sets how much structure counts as
    # signal.  Steps of √2 from the start, never ×2: each BM3D run costs seconds.
    Classical("VST + BM3D", _bm3d_vst, tuple(geometric(0.25, 2**0.5, 11)), 5, 1, "sigma_vst", True),
)


def classical_names() -> list[str]:
    return [m.name for m in CLASSICAL]


def bm3d_module():
    """The ``bm3d`` package, its PSD path working under numpy 2 (bm3d 4.0 calls
    ``np.trapz``, which numpy 2 renamed ``np.trapezoid``)."""
    import bm3d

    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # noqa: NPY201
    return bm3d


def bm3d_available() -> bool:
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def run_classical(
    method: Classical,
    noisy: np.ndarray,
    gat: GAT | LinearVST,
    score: Callable[[np.ndarray], float],
    *,
    quick: bool = False,
) -> Tuned:
    """Tune ``method`` on ``noisy`` against ``score`` (higher is better)."""
    return tune(
        lambda p: method.run(noisy, gat, p),
        score,
        method.grid,
        method.start,
        method.stride,
        refine=not quick,
        polish=method.polish and not quick,
    )


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A model to score: ``label`` in the tables, ``source`` as :func:`load_model` takes it."""

    label: str
    source: str
    #: ``denoise(..., orientations=)``: the network averaged over this many orientations.
    orientations: int = 1

    def describe(self) -> dict:
        """Label, source, resolved file, its SHA-256 and modification time, and the
        model's own name: enough to tell a provisional file from the final one."""
        from napari_pinned.nn.model_files import shipped_model

        shipped = shipped_model(self.source)
        path = shipped.path if shipped is not None else pathlib.Path(self.source).expanduser()
        info: dict = {"label": self.label, "source": self.source, "path": str(path)}
        info["orientations"] = self.orientations
        if path.is_file():
            info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            info["modified"] = time.strftime(
                "%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime)
            )
        return info


def parse_model_specs(values: Sequence[str] | None, defaults: Sequence[str]) -> list[ModelSpec]:
    """``--model`` values: ``NAME`` (a shipped model), ``PATH`` (label: the file's stem) or
    ``LABEL=PATH_OR_NAME``, each optionally ending in ``@N`` to average the network over
    N orientations (``"default ×8=default@8"``).  Missing files are dropped with a note."""
    from napari_pinned.nn.model_files import shipped_model

    specs = []
    for value in values or defaults:
        orientations = 1
        head, at, count = value.rpartition("@")
        if at and count.isdigit():
            value, orientations = head, int(count)
        label, sep, source = value.partition("=")
        if not sep:
            source = value
            shipped = shipped_model(value)
            label = shipped.name if shipped is not None else pathlib.Path(value).stem
            if orientations > 1:
                label = f"{label} ×{orientations}"
        shipped = shipped_model(source)
        path = shipped.path if shipped is not None else pathlib.Path(source).expanduser()
        if not path.is_file():
            print(f"# model {label!r}: no file at {path}; skipped")
            continue
        specs.append(ModelSpec(label.strip(), source.strip(), orientations))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"--model labels must be unique, got {labels}")
    return specs


_LOADED: dict[str, object] = {}


def load_spec(spec: ModelSpec):
    """Load (once per process) the model of ``spec``."""
    from napari_pinned.nn.resolve import load_model

    if spec.source not in _LOADED:
        _LOADED[spec.source] = load_model(spec.source, device="cpu")
    return _LOADED[spec.source]


# --------------------------------------------------------------------------- misc


def machine() -> str:
    """CPU model, core count and the versions that matter, in one line."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}"
    )


def finite(value: float | None) -> float | None:
    """JSON-safe float (None for NaN/inf/None)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fmt(value: float | None, spec: str = ".2f", missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rounded(value, digits: int = 6):
    """``value`` with every float rounded to ``digits`` significant digits (for JSON)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def dump_json(result: dict, path: pathlib.Path, *, one_line: Sequence[str] = ()) -> None:
    """Write ``result`` with floats to 5 significant digits, indented, except that each
    entry of the lists named in ``one_line`` takes one line (diff-friendly and small)."""
    import json

    data = rounded(result, 5)
    parts = []
    for key, value in data.items():
        if key in one_line and isinstance(value, list):
            body = ",\n".join(
                "  " + json.dumps(v, ensure_ascii=False, allow_nan=False) for v in value
            )
            parts.append(f' "{key}": [\n{body}\n ]')
        else:
            text = json.dumps(value, indent=1, ensure_ascii=False, allow_nan=False)
            parts.append(f' "{key}": ' + text.replace("\n", "\n "))
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n")


def save_png(fig, path: pathlib.Path, dpi: int) -> None:
    """Save a matplotlib figure as a 256-colour PNG: noise and residual images do not
    compress, and a palette PNG of them is a third of the size of an RGBA one."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(256)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


#: Spatial frequency (cycles/px, radial) above which a probe-limited atomic-resolution
#: image holds essentially no signal: what an output keeps there is noise left behind.
HIGH_FREQUENCY = NO_SIGNAL_FREQUENCY


def _high_band_power(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(power, fy, band)``: the power spectrum of ``x`` less its mean under a Hann
    window (so the frame's edges do not leak), the y frequency of each bin, and the bins
    above :data:`HIGH_FREQUENCY`."""
    from napari_pinned.quality.spectra import hann_window

    h, w = x.shape
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    power = np.abs(np.fft.fft2((x - x.mean()) * hann_window((h, w)))) ** 2
    return power, fy, np.hypot(fy, fx) > HIGH_FREQUENCY


def high_frequency_left(image: np.ndarray, out: np.ndarray) -> float:
    """The output's power above :data:`HIGH_FREQUENCY` over the input's, in %: noise
    left behind, a checkerboard."""
    out_power, _, band = _high_band_power(out)
    image_power, _, _ = _high_band_power(image)
    return 100.0 * float(np.sum(out_power[band])) / float(np.sum(image_power[band]))


#: Half-width (cycles/px) of the band around zero slow-scan frequency where a pattern
#: repeated in every scan line puts its power (:func:`line_pattern_share`).
LINE_PATTERN_BAND = 0.02


def line_pattern_share(out: np.ndarray) -> float:
    """The share (%) of the output's power above :data:`HIGH_FREQUENCY` that lies within
    :data:`LINE_PATTERN_BAND` of zero frequency along y: stripes that vary along the fast
    scan beyond what a probe passes and repeat in every line (interference synchronous
    with the scan, a converter's pattern), which a network can take for structure."""
    power, fy, band = _high_band_power(out)
    total = float(np.sum(power[band]))
    lines = float(np.sum(power[band & (np.abs(fy) < LINE_PATTERN_BAND)]))
    return 100.0 * lines / total if total > 0 else 0.0


def best_of(fn, repeats: int) -> float:
    """The shortest wall time (s) of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
