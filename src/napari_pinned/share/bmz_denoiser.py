# TorchScript and the older torch versions BMZ consumers run (deepImageJ, conda
# environments of bioimageio.core) need typing's List/Optional/Tuple here.
# ruff: noqa: UP006, UP035, UP045, B905, RUF046
"""A self-contained PINNED denoiser: raw image in, denoised image out, torch only.

This file is copied verbatim into BioImage Model Zoo packages written by
:func:`napari_pinned.share.bmz_export.export_bioimageio` as the architecture of their
``pytorch_state_dict`` weights (and scripted into their ``torchscript`` weights), so
that any BMZ consumer (bioimageio.core, deepImageJ, ...) gets napari-pinned's result
without napari-pinned.  It therefore imports nothing but ``torch`` and ``math``, and
stays TorchScript-compatible (``typing`` annotations, no ``from __future__``).

:class:`PinnedDenoiser` does in torch operations what napari-pinned does in numpy
around the network, frame by frame:

1. the Poisson–Gaussian noise estimate of
   :func:`napari_pinned.noise.estimate.estimate_noise` (saturated pixels left out;
   scaled to the noise a pixel carries as
   :func:`napari_pinned.noise.correlation.pixel_equivalent` does), the
   hot/dead/saturated pixel repair of :func:`napari_pinned.nn.conditioning.find_outliers`
   (single pixels, and pixels far above the frame's range or at its ceiling in groups
   and on the edge) and ``repair_outliers`` (blocks filled from the edge inwards), and
   for noise-conditioned models the per-pixel noise map of
   :func:`napari_pinned.nn.conditioning.noise_map`;
2. the frame's normalisation (:func:`napari_pinned.nn.conditioning.normalization_range`;
   the paper's fixed range only for frames clipped at both of its ends), and for models
   that take the lattice prior (``conditioning="noise-map+lattice"``) the repaired
   frame's lattice-averaged copy of :func:`napari_pinned.nn.lattice_prior.lattice_average`
   (:func:`lattice_average`: its significant Fourier components against the noise
   spectrum measured along each scan axis, Wiener-weighted, in blended 256² windows);
3. mirrored context around the frame (:data:`napari_pinned.denoising.tiling.CONTEXT`),
   the network (the same layers and parameter names as
   :class:`napari_pinned.nn.network.PinnedNetwork`, under ``network.``), and the map back
   to the frame's intensities (:func:`napari_pinned.nn.conditioning.finish`);
4. the lattice guard (:func:`napari_pinned.quality.lattice_guard.keep_lattice`, in
   float64 here, so any gain up to 1e30 is safe): what the network took from the input's
   strong Bragg reflections is given back (not interference the same in every scan
   line, :func:`line_interference_mask`).  Models trained on CDN are not guarded on
   frames clipped at both ends (CDN-like; ``lattice_guard.guard_applies``), as in
   ``denoise``.

These are frame-level statistics that the BMZ pre/post-processing steps cannot express
(see docs/model.md).  ``tests/share/test_bmz.py`` checks this file against the numpy
pipeline to 1e-3 of the image range (napari-pinned's tiling is exact, so a frame run
whole here equals napari-pinned's tiled result).  Known differences, all documented:
large frames (beyond 512² px napari-pinned takes its percentiles and defect limits from
a seeded random subset of pixels, beyond 1024² px its noise fit from regions of the
frame; this module uses every pixel), and the dtype of the input (this module sees
float32, so unsigned outputs are not clipped at zero).

Changing this file changes its SHA-256, by which napari-pinned recognises its own
packages: add the new hash to ``napari_pinned.nn.packages.KNOWN_ARCHITECTURE_SHA256``.
"""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# The constants of napari_pinned.nn.conditioning, noise.estimate, nn.network,
# denoising.tiling, quality.lattice_guard, nn.lattice_prior and quality.risk
# (tests/share/test_bmz.py checks that they agree).
LOG_FLOOR = 1e-3
CONTEXT = 32
MAX_WIDTH_FACTOR = 8
PAPER_RANGE = (0.0, 255.0)
UNIT_RANGE = (0.0, 1.0)
ROBUST_PERCENTILES = (1.0, 99.0)
RANGE_PERCENTILES = (0.1, 99.9)
PERCENTILES = (0.5, 99.5)
RANGE_CLIP = (-0.1, 1.1)
OUTLIER_SIGMAS = 10.0
OUTLIER_LIFT = 8.0
GROSS_SPAN = 1.0
GROSS_SPARSE = 0.01
SATURATED = 0.01
SATURATED_MOST = 0.1
SATURATED_NEIGHBOURS = 3
GROUP_REACH = 3
REPAIR_ROUNDS = 3
CONVENTION_CLIPPED = 5e-4
NOISE_MAP_SMOOTHING = 1.5
NOISE_MAP_FLOOR = 0.1
NOISE_BINS = 16
NOISE_OUTLIER_SIGMAS = 6.0
NOISE_TRIM = 0.001
SPECTRAL_EDGE = 1024
SPECTRAL_MARGIN = 1.2
CORRELATION_TILE = 256
CORRELATION_BAND = 0.25
CORRELATION_SKIP_BINS = 3
CORRELATION_WHITE_TOLERANCE = 0.5
CORRELATION_FIT_SPREAD = 0.4
CORRELATION_PEAK_WINDOW = 9
CORRELATION_PEAK_SIGMAS = 4.0
CORRELATION_PEAK_SCATTER_FLOOR = 0.05
CORRELATION_PEAK_SHARE = 0.3
CORRELATION_PEAK_FIT_SPREAD = 0.2
CORRELATION_PEAK_SMEAR_SPREAD = 0.16
CORRELATION_SMEAR_SPREAD = 0.25
CORRELATION_SMEAR_NYQUIST = 0.5
CORRELATION_RESAMPLED_LIMIT = 12.0
CORRELATION_UPPER_FIT = 0.2
CORRELATION_UPPER_HUMP = 5.0
CORRELATION_UPPER_TAU = 3.0
CORRELATION_UPPER_SPREAD = 0.3
CORRELATION_UPPER_SMEAR_LOW = 0.125
CORRELATION_UPPER_SMEAR_HIGH = 0.5
CORRELATION_UPPER_SMEAR_COUNT = 151
GUARD_SNR = 10.0
GUARD_FLOOR_BLOCK = 8
GUARD_DC_RADIUS = 2
GUARD_INVENTION_MARGIN = 2.0
GUARD_GATE_NOISE_FACTOR = 2.0
GUARD_GATE_SMOOTHING = (4.0, 16.0)
# napari_pinned.noise.line_pattern: interference the same in every scan line.
LINE_PATTERN_BAND = 0.25
LINE_PATTERN_STRIP = 0.006
LINE_PATTERN_SIGNIFICANCE = 30.0
LINE_PATTERN_EXCESS = 1.5
LINE_PATTERN_NOISE_LAST = 0.1
LINE_PATTERN_NOISE_BINS = 16
LINE_PATTERN_NOISE_FLATNESS = 10.0
LINE_PATTERN_NOISE_FLOOR = 1e-10
LINE_PATTERN_MIN_SIZE = 64
LINE_PATTERN_HARMONIC_BINS = 2.0
LINE_PATTERN_COMB_DENSITY = 0.08
DIFFERENCE_CLIP = 10.0
LATTICE_SIGNIFICANCE = 10.0
LATTICE_WINDOW = 256
LATTICE_STRIDE = 192
LATTICE_SMALLEST = 16
NO_SIGNAL_FREQUENCY = 0.4
WHITE_RATIO = 1.5
_TINY = 2.2250738585072014e-308  # numpy.finfo(float64).tiny


# TorchScript indexes a ModuleList by a loop variable only through a module interface.
@torch.jit.interface
class _Block(nn.Module):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        pass


@torch.jit.interface
class _Upsample(nn.Module):
    def forward(self, input: torch.Tensor, output_size: Optional[List[int]] = None) -> torch.Tensor:
        pass


def _conv_block(in_channels: int, out_channels: int, slope: float) -> nn.Sequential:
    layers: List[nn.Module] = []
    for i in range(3):
        layers.append(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)
        )
        layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


class PinnedNetwork(nn.Module):
    """The PINNED encoder–decoder on inputs whose height and width are multiples of
    ``2**depth`` (:class:`napari_pinned.nn.network.PinnedNetwork` without its own padding):
    ``conditioned`` takes a noise map as its second channel, ``lattice`` the lattice
    prior as its third."""

    # No defaults: PinnedDenoiser passes every value, and its defaults are the ones.
    def __init__(
        self,
        width: int,
        depth: int,
        negative_slope: float,
        skip_connections: bool,
        residual: bool,
        conditioned: bool,
        lattice: bool,
        max_width_factor: int,
    ):
        super().__init__()
        self.log_floor = LOG_FLOOR
        self.difference_clip = DIFFERENCE_CLIP
        cap = max_width_factor * width
        channels = [min(width * 2**level, cap) for level in range(depth + 1)]
        self.depth = depth
        self.skip_connections = skip_connections
        self.residual = residual
        self.conditioned = conditioned
        self.lattice = lattice
        # napari_pinned.nn.network.feature_channels: what the first layer reads.
        features = (5 if lattice else 3) if conditioned else 1
        self.encoder = nn.ModuleList(
            [
                _conv_block(
                    features if level == 0 else channels[level - 1],
                    channels[level],
                    negative_slope,
                )
                for level in range(depth)
            ]
        )
        self.pool = nn.MaxPool2d(2, stride=2)
        self.latent = _conv_block(channels[depth - 1], channels[depth], negative_slope)
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2)
                for level in range(depth)
            ]
        )
        factor = 2 if skip_connections else 1
        self.decoder = nn.ModuleList(
            [
                _conv_block(factor * channels[level], channels[level], negative_slope)
                for level in range(depth)
            ]
        )
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` in model units to ``(B, 1, H, W)``."""
        if self.conditioned:
            # napari_pinned.nn.network.PinnedNetwork._features, in its order.
            image = x[:, :1]
            sigma = x[:, 1:2]
            floor = sigma.clamp_min(self.log_floor)
            parts = [image, sigma, torch.log(floor)]
            if self.lattice:
                prior = x[:, 2:3]
                distance = (prior - image) / floor
                parts.append(prior)
                parts.append(distance.clamp(-self.difference_clip, self.difference_clip))
            return image + sigma * self._core(torch.cat(parts, dim=1))
        out = self._core(x)
        if self.residual:
            return x + out
        return out

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        skips: List[torch.Tensor] = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.latent(x)
        for level in range(self.depth - 1, -1, -1):
            up: _Upsample = self.up[level]
            x = up.forward(x, None)
            if self.skip_connections:
                x = torch.cat([skips[level], x], dim=1)
            decode: _Block = self.decoder[level]
            x = decode.forward(x)
        return self.head(x)


# -- frame statistics (float64, one (H, W) frame) -------------------------------------


def _symmetric_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """scipy.ndimage's ``mode="reflect"`` (the edge pixel repeated), ``pad <= size``."""
    if pad == 0:
        return x
    x = torch.cat([x[:pad].flip(0), x, x[-pad:].flip(0)], 0)
    return torch.cat([x[:, :pad].flip(1), x, x[:, -pad:].flip(1)], 1)


def _correlate(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid 2D correlation of a frame with a small kernel."""
    return F.conv2d(x[None, None], kernel[None, None].to(device=x.device, dtype=x.dtype))[0, 0]


def _box_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sum over the ``size × size`` window, symmetric edges (``uniform_filter · size²``)."""
    return _correlate(
        _symmetric_pad(x, size // 2), torch.ones(size, size, dtype=x.dtype, device=x.device)
    )


def _shifts(x: torch.Tensor, padded: torch.Tensor, ring_only: bool) -> torch.Tensor:
    h = x.shape[0]
    w = x.shape[1]
    out: List[torch.Tensor] = []
    for dy in range(3):
        for dx in range(3):
            if ring_only and dy == 1 and dx == 1:
                continue
            out.append(padded[dy : dy + h, dx : dx + w])
    return torch.stack(out)


def _quantile(sorted_values: torch.Tensor, q: float) -> float:
    """numpy's default (``"linear"``) quantile of already sorted values."""
    n = sorted_values.numel()
    index = n * q + (1.0 + q * -1.0) - 1.0
    below = int(math.floor(index))
    gamma = index - below
    lo = min(max(below, 0), n - 1)
    hi = min(max(below + 1, 0), n - 1)
    a = float(sorted_values[lo])
    b = float(sorted_values[hi])
    if gamma >= 0.5:
        return b - (b - a) * (1.0 - gamma)
    return a + (b - a) * gamma


def _median(values: torch.Tensor) -> float:
    """numpy's median (the mean of the two middle values of an even count)."""
    return _quantile(torch.sort(values.reshape(-1)).values, 0.5)


def _robust_mean_square(
    r: torch.Tensor, trim: float = NOISE_TRIM, sigmas: float = NOISE_OUTLIER_SIGMAS
) -> float:
    sq = r * r
    n = sq.numel()
    if n < 20:
        return float(sq.mean()) if n > 0 else 0.0
    cut = n - max(1, int(trim * n))
    first = float(torch.sort(sq).values[:cut].mean())
    if first <= 0:
        return float(sq.mean())
    keep = sq <= sigmas**2 * first
    return float(sq[keep].mean())


def _fit_line(
    r: torch.Tensor, m: torch.Tensor, ring: torch.Tensor, bins: int = NOISE_BINS
) -> Tuple[float, float]:
    ordered = torch.sort(ring).values
    qs = [_quantile(ordered, i / bins) for i in range(bins + 1)]
    # Not torch.tensor(qs): TorchScript builds a tensor from a float list in float32.
    values = [torch.full([1], q, dtype=torch.float64, device=ring.device) for q in qs]
    edges = torch.unique(torch.cat(values))
    if edges.numel() < 3:
        return 0.0, _robust_mean_square(r)
    index = torch.searchsorted(edges, ring, right=True) - 1
    index = index.clamp(0, edges.numel() - 2)
    xs: List[float] = []
    ys: List[float] = []
    ws: List[float] = []
    for b in range(edges.numel() - 1):
        sel = index == b
        n = int(sel.sum())
        if n < 50:
            continue
        v = _robust_mean_square(r[sel])
        xs.append(float(m[sel].mean()))
        ys.append(v)
        ws.append(n / max(v, 1e-300) ** 2)
    if len(xs) < 2:
        return 0.0, _robust_mean_square(r)
    total = sum(ws)
    w = [wi / total for wi in ws]
    if max(xs) - min(xs) <= 0:
        return 0.0, sum([wi * yi for wi, yi in zip(w, ys)])
    xm = sum([wi * xi for wi, xi in zip(w, xs)])
    ym = sum([wi * yi for wi, yi in zip(w, ys)])
    num = sum([wi * (xi - xm) * (yi - ym) for wi, xi, yi in zip(w, xs, ys)])
    den = sum([wi * (xi - xm) ** 2 for wi, xi in zip(w, xs)])
    slope = num / den
    if slope <= 0:
        return 0.0, max(ym, 0.0)
    return slope, ym - slope * xm


def estimate_noise(x: torch.Tensor, mask: torch.Tensor) -> Tuple[float, float, float]:
    """``(gain, offset, median)`` of :func:`napari_pinned.noise.estimate.estimate_noise`."""
    k1 = torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64)
    kernel = torch.outer(k1, k1) / 6.0
    r = _correlate(x, kernel)[1:-1, 1:-1]
    m = _correlate(x, kernel * kernel)[1:-1, 1:-1]
    # The ring mean selects each pixel's intensity bin, and exact ties at the bin edges
    # are common (integer counts): it is computed as scipy computes it, bit for bit.
    box5 = _uniform_filter(x, 5)[2:-2, 2:-2] * 25.0
    box3 = _uniform_filter(x, 3)[2:-2, 2:-2] * 9.0
    ring = (box5 - box3) / 16.0
    bad = F.max_pool2d(mask.to(torch.float64)[None, None], 5, stride=1, padding=2)[0, 0]
    # Exactly flat neighbourhoods (masks, saturation, padding) hold no detector noise.
    valid = (bad[2:-2, 2:-2] == 0) & _not_flat(x)
    median = _median(x)
    if int(valid.sum()) < 50:
        return 0.0, 0.0, median
    gain, offset = _fit_line(r[valid], m[valid], ring[valid])
    gain, offset = _spectral_check(x, mask, gain, offset)
    return gain, offset, median


def _uniform_filter1d(x: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage.uniform_filter1d along the last axis, ``mode="nearest"``, in
    scipy's own arithmetic (a running sum of differences, divided at each step)."""
    before = size // 2
    after = size - before - 1
    n = x.shape[-1]
    parts = [x[:, :1].expand(x.shape[0], before), x, x[:, -1:].expand(x.shape[0], after)]
    ext = torch.cat(parts, 1)
    first = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(size):
        first = first + ext[:, i]
    steps = ext[:, size : size + n - 1] - ext[:, 0 : n - 1]
    return torch.cumsum(torch.cat([first[:, None], steps], 1), 1) / size


def _uniform_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage.uniform_filter of a 2D frame, ``mode="nearest"`` (rows, then
    columns, as scipy does)."""
    columns = _uniform_filter1d(x.t().contiguous(), size).t()
    return _uniform_filter1d(columns.contiguous(), size)


def _not_flat(x: torch.Tensor) -> torch.Tensor:
    """Interior mask (2 px in) of pixels whose 5×5 neighbourhood is not constant."""
    high = F.max_pool2d(x[None, None], 5, stride=1)[0, 0]
    low = -F.max_pool2d(-x[None, None], 5, stride=1)[0, 0]
    return high > low


def _spectral_check(
    x: torch.Tensor,
    mask: torch.Tensor,
    gain: float,
    offset: float,
    edge: int = SPECTRAL_EDGE,
    margin: float = SPECTRAL_MARGIN,
) -> Tuple[float, float]:
    """napari_pinned.noise.estimate._spectral_check: the fit scaled down to the median
    power of the frequencies high along both axes when it lies clearly above it."""
    if gain <= 0 and offset <= 0:
        return gain, offset
    h = x.shape[0]
    w = x.shape[1]
    eh = min(h, edge)
    ew = min(w, edge)
    top = (h - eh) // 2
    left = (w - ew) // 2
    crop = x[top : top + eh, left : left + ew]
    valid = torch.zeros(crop.shape, dtype=torch.bool, device=x.device)
    valid[2:-2, 2:-2] = _not_flat(crop)
    valid = valid & ~mask[top : top + eh, left : left + ew]
    hy = torch.hann_window(eh, periodic=False, dtype=torch.float64, device=x.device)
    hx = torch.hann_window(ew, periodic=False, dtype=torch.float64, device=x.device)
    window = torch.outer(hy, hx)
    weights = window**2
    centred = (crop - (crop * window).sum() / window.sum()) * window
    power = torch.abs(torch.fft.rfft2(centred)) ** 2 / weights.sum()
    fy = torch.abs(torch.fft.fftfreq(eh, dtype=torch.float64, device=x.device))[:, None]
    fx = torch.fft.rfftfreq(ew, dtype=torch.float64, device=x.device)[None, :]
    band = ((fy > 0.25) & (fx > 0.25)).expand(power.shape[0], power.shape[1])
    if int(band.sum()) < 64:
        return gain, offset
    floor = _median(power[band]) / math.log(2.0)
    variance = torch.where(valid, (gain * crop + offset).clamp_min(0.0), torch.zeros_like(crop))
    fit = float((weights * variance).sum() / weights.sum())
    if fit <= 0 or fit <= margin * floor:
        return gain, offset
    factor = floor / fit
    return gain * factor, offset * factor


def _axis_ratios(
    profile: torch.Tensor,
    n: int,
    skip: int = CORRELATION_SKIP_BINS,
    band: float = CORRELATION_BAND,
    tolerance: float = CORRELATION_WHITE_TOLERANCE,
    spread: float = CORRELATION_FIT_SPREAD,
    peak_spread: float = CORRELATION_PEAK_FIT_SPREAD,
    peak_share: float = CORRELATION_PEAK_SHARE,
    fast: bool = False,
    upper_spread: float = CORRELATION_PEAK_FIT_SPREAD,
) -> Tuple[float, float, float, float, torch.Tensor]:
    """napari_pinned.noise.correlation._axis_ratios: ``(zero, pixel)`` of an AR(1)
    spectrum fitted by least squares (through its normal equations), without the
    profile's narrow peaks where that fit is clean and with them otherwise, or of a
    smear's where none fits, or along the ``fast`` scan an afterglow's fitted to the
    high frequencies alone, then with the smear's zero-frequency and mean powers (-1
    without) and the fitted spectrum at the ``n`` frequencies over its band mean (empty
    when white)."""
    k = torch.arange(skip, n // 2 + 1)
    p = profile[k]
    if not bool((p > 0).all()):
        return 1.0, 1.0, -1.0, -1.0, _no_curve(p)
    u = 1.0 - torch.cos(2.0 * math.pi * k.to(torch.float64) / n)
    grid = torch.linspace(0.0, 0.5, 513, dtype=torch.float64)
    every = torch.ones_like(p, dtype=torch.bool)
    peaks = _dilate(_profile_peaks(p))
    few = bool(peaks.any()) and float(peaks.to(torch.float64).mean()) <= peak_share
    trials: List[Tuple[torch.Tensor, float]] = []
    if few:
        trials.append((~peaks, peak_spread))
    trials.append((every, spread))
    c0 = 0.0
    c1 = 0.0
    found = False
    for kept, limit in trials:
        pk = p[kept]
        design = torch.stack([pk, pk * u[kept]], dim=1)
        normal = design.T @ design
        rhs = design.T @ torch.ones_like(pk)
        det = float(normal[0, 0] * normal[1, 1] - normal[0, 1] * normal[1, 0])
        if det == 0.0:
            continue
        a0 = float(normal[1, 1] * rhs[0] - normal[0, 1] * rhs[1]) / det
        a1 = float(normal[0, 0] * rhs[1] - normal[1, 0] * rhs[0]) / det
        fitted = a0 * pk + a1 * pk * u[kept]
        if bool((fitted > 0).all()) and float(torch.log(fitted).std(unbiased=False)) <= limit:
            c0 = a0
            c1 = a1
            found = True
            break
    inverse = c0 + c1 * (1.0 - torch.cos(2.0 * math.pi * grid))
    if not found or not bool((inverse > 0).all()):
        ratios = _smear_fit(p, u, grid, n, band, tolerance, peaks, few)
        if ratios[4].numel() > 0 or not fast:
            return ratios
        f = k.to(torch.float64) / n
        ug = 1.0 - torch.cos(2.0 * math.pi * grid)
        ua = _u_all(n, p)
        ok, c, shot, white = _upper_fit(p, u, f, spread=upper_spread)
        smeared = not ok
        if ok:
            values = shot / (1.0 + c * ug) + white
            every_f = shot / (1.0 + c * ua) + white
        else:
            ok, a, power = _upper_smear_fit(p, u, f)
            if not ok:
                return ratios
            values = power * (1.0 - 2.0 * a * ug) ** 2
            every_f = power * (1.0 - 2.0 * a * ua) ** 2
        mean_band = float(values[grid > band].mean())
        ratio = float(values[0]) / mean_band
        if abs(math.log(ratio)) < math.log1p(tolerance):
            return 1.0, 1.0, -1.0, -1.0, _no_curve(p)
        mean = float(values.mean())
        if smeared:
            return ratio, mean / mean_band, float(values[0]), mean, every_f / mean_band
        return ratio, mean / mean_band, -1.0, -1.0, every_f / mean_band
    mean_band = float((1.0 / inverse[grid > band]).mean())
    ratio = (1.0 / float(inverse[0])) / mean_band
    if abs(math.log(ratio)) < math.log1p(tolerance):
        return 1.0, 1.0, -1.0, -1.0, _no_curve(p)
    curve = 1.0 / (c0 + c1 * _u_all(n, p)) / mean_band
    return ratio, float((1.0 / inverse).mean()) / mean_band, -1.0, -1.0, curve


def _afterglow_parts(
    p: torch.Tensor, u: torch.Tensor, cs: torch.Tensor
) -> Tuple[float, float, float]:
    """napari_pinned.noise.correlation._afterglow_parts: ``(c, shot, white)``, the
    profile as ``shot/(1 + c·u) + white`` (white ≥ 0) by least squares of the relative
    errors, the best of the coefficients ``cs``."""
    shape = 1.0 / (1.0 + cs[:, None] * u[None, :]) / p[None, :]
    flat = (1.0 / p)[None, :].expand(shape.shape[0], shape.shape[1])
    saa = (shape**2).sum(1)
    sab = (shape * flat).sum(1)
    sbb = (flat**2).sum(1)
    ra = shape.sum(1)
    rb = flat.sum(1)
    det = saa * sbb - sab**2
    shot = (sbb * ra - sab * rb) / det
    white = (saa * rb - sab * ra) / det
    negative = ~(white >= 0)
    shot = torch.where(negative, ra / saa, shot)
    white = torch.where(negative, torch.zeros_like(white), white)
    residual = ((shape * shot[:, None] + flat * white[:, None] - 1.0) ** 2).sum(1)
    residual = torch.where(shot > 0, residual, torch.full_like(residual, math.inf))
    best = int(torch.argmin(residual))
    return float(cs[best]), float(shot[best]), float(white[best])


def _upper_fit(
    p: torch.Tensor,
    u: torch.Tensor,
    f: torch.Tensor,
    lowest: float = CORRELATION_UPPER_FIT,
    hump: float = CORRELATION_UPPER_HUMP,
    tau: float = CORRELATION_UPPER_TAU,
    spread: float = CORRELATION_PEAK_FIT_SPREAD,
) -> Tuple[bool, float, float, float]:
    """napari_pinned.noise.correlation._upper_fit: ``(accepted, c, shot, white)`` of an
    afterglow's spectrum fitted to the profile above ``lowest`` cycles/px alone."""
    kept = f >= lowest
    decay = math.exp(-1.0 / tau)
    cs = torch.logspace(math.log10(0.05), math.log10(500.0), 161, dtype=torch.float64)
    cs = cs[cs <= 2.0 * decay / (1.0 - decay) ** 2]
    c, shot, white = _afterglow_parts(p[kept], u[kept], cs)
    if not shot > 0:
        return False, c, shot, white
    fitted = shot / (1.0 + c * u[kept]) + white
    if float(torch.log(fitted / p[kept]).std(unbiased=False)) > spread:
        return False, c, shot, white
    return _under_hump(p[~kept], shot / (1.0 + c * u[~kept]) + white, hump), c, shot, white


def _upper_smear_fit(
    p: torch.Tensor,
    u: torch.Tensor,
    f: torch.Tensor,
    lowest: float = CORRELATION_UPPER_FIT,
    hump: float = CORRELATION_UPPER_HUMP,
    spread: float = CORRELATION_PEAK_SMEAR_SPREAD,
    low: float = CORRELATION_UPPER_SMEAR_LOW,
    high: float = CORRELATION_UPPER_SMEAR_HIGH,
    count: int = CORRELATION_UPPER_SMEAR_COUNT,
) -> Tuple[bool, float, float]:
    """napari_pinned.noise.correlation._upper_smear_fit: ``(accepted, a, power)`` of a
    smear's spectrum ``power·(1 − 2a·u)²`` fitted to the amplitude above ``lowest``
    cycles/px alone."""
    kept = f >= lowest
    amplitude = p[kept].sqrt()
    a_all = torch.linspace(low, high, count, dtype=torch.float64)
    shapes = (1.0 - 2.0 * a_all[:, None] * u[kept][None, :]).abs()
    scales = (shapes @ amplitude) / (shapes**2).sum(1)
    residual = ((scales[:, None] * shapes - amplitude) ** 2).mean(1)
    best = int(torch.argmin(residual))
    a = float(a_all[best])
    power = float(scales[best]) ** 2
    if best == 0 or math.sqrt(float(residual[best]) / float(p[kept].mean())) > spread:
        return False, a, power
    return _under_hump(p[~kept], power * (1.0 - 2.0 * a * u[~kept]) ** 2, hump), a, power


def _under_hump(low: torch.Tensor, fitted: torch.Tensor, hump: float) -> bool:
    """napari_pinned.noise.correlation._under_hump: the profile's left-out bins ``low``
    hold 1 to ``hump`` times the fitted spectrum there (median)."""
    return 1.0 <= float(_middle(low / fitted)) <= hump


def _shared_resampling(
    profile: torch.Tensor,
    n: int,
    slow: torch.Tensor,
    read: Tuple[float, float, float, float, torch.Tensor],
    skip: int = CORRELATION_SKIP_BINS,
    band: float = CORRELATION_BAND,
    tolerance: float = CORRELATION_WHITE_TOLERANCE,
    upper_spread: float = CORRELATION_UPPER_SPREAD,
) -> Tuple[float, float, float, float, torch.Tensor]:
    """napari_pinned.noise.correlation._with_shared_resampling: the fast axis's ratios
    of a resampled frame, its profile read over the slow axis's fitted curve."""
    k = torch.arange(skip, n // 2 + 1)
    low = k[k < n // 8]
    high = k[k >= n // 4]
    if low.numel() == 0 or not bool((profile[k] > 0).all()):
        return read
    if float(profile[low].mean() / profile[high].mean()) < 1.0 + tolerance:
        return read
    f = torch.fft.fftfreq(n, dtype=torch.float64, device=profile.device).abs()
    shared = slow if slow.numel() == n else _interp(f, slow)
    if not bool((shared > 0).all()):
        return read
    own = _axis_ratios(profile / shared, n, fast=True, upper_spread=upper_spread)[4]
    if own.numel() == 0:
        return read
    curve = own * shared
    mean_band = float(curve[f > band].mean())
    return (
        float(curve[0]) / mean_band,
        float(curve.mean()) / mean_band,
        -1.0,
        -1.0,
        curve / mean_band,
    )


def _interp(f: torch.Tensor, curve: torch.Tensor) -> torch.Tensor:
    """numpy.interp of a curve at ``fftfreq`` order onto the ``|f|`` given."""
    fs = torch.fft.fftfreq(curve.numel(), dtype=torch.float64, device=curve.device).abs()
    order = torch.argsort(fs, stable=True)
    xs = fs[order]
    ys = curve[order]
    right = torch.searchsorted(xs, f, right=True).clamp(1, xs.numel() - 1)
    x0 = xs[right - 1]
    x1 = xs[right]
    y0 = ys[right - 1]
    y1 = ys[right]
    step = torch.where(x1 > x0, (f - x0) / (x1 - x0), torch.zeros_like(f))
    out = y0 + step.clamp(0.0, 1.0) * (y1 - y0)
    return torch.where(f >= xs[-1], ys[-1].expand(f.shape), out)


def _smear_fit(
    p: torch.Tensor,
    u: torch.Tensor,
    grid: torch.Tensor,
    n: int,
    band: float,
    tolerance: float,
    peaks: torch.Tensor,
    few: bool,
    peak_spread: float = CORRELATION_PEAK_SMEAR_SPREAD,
) -> Tuple[float, float, float, float, torch.Tensor]:
    """napari_pinned.noise.correlation._smear_fit: the smear's fit without the peaks
    where it is clean, else with every bin."""
    if few:
        kept = ~peaks
        ratios = _smear_ratios(p[kept], u[kept], grid, n, band, tolerance, peak_spread)
        if ratios[2] >= 0.0:
            return ratios
    return _smear_ratios(p, u, grid, n, band, tolerance)


def _profile_peaks(
    p: torch.Tensor,
    window: int = CORRELATION_PEAK_WINDOW,
    sigmas: float = CORRELATION_PEAK_SIGMAS,
    floor: float = CORRELATION_PEAK_SCATTER_FLOOR,
) -> torch.Tensor:
    """napari_pinned.noise.correlation._ar_fit's peaks: bins whose log power stands
    CORRELATION_PEAK_SIGMAS robust standard deviations above the median of the
    CORRELATION_PEAK_WINDOW bins around them (edges repeated)."""
    half = window // 2
    log_p = torch.log(p)
    padded = torch.cat([log_p[:1].repeat(half), log_p, log_p[-1:].repeat(half)])
    # torch.median of an even count takes the lower middle; the window is odd.
    local = padded.unfold(0, window, 1).median(dim=1).values
    above = log_p - local
    centre = _middle(above)
    scatter = 1.4826 * float(_middle((above - centre).abs()))
    return above > sigmas * max(scatter, floor)


def _middle(values: torch.Tensor) -> torch.Tensor:
    """numpy's median of a 1D tensor (the mean of the two middle values of an even
    count, where torch.median takes the lower)."""
    ordered = values.sort().values
    n = ordered.numel()
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` with each bin's two neighbours (scipy's binary_dilation)."""
    out = mask.clone()
    out[1:] = out[1:] | mask[:-1]
    out[:-1] = out[:-1] | mask[1:]
    return out


def _smear_ratios(
    p: torch.Tensor,
    u: torch.Tensor,
    grid: torch.Tensor,
    n: int,
    band: float,
    tolerance: float,
    spread: float = CORRELATION_SMEAR_SPREAD,
    nyquist: float = CORRELATION_SMEAR_NYQUIST,
) -> Tuple[float, float, float, float, torch.Tensor]:
    """napari_pinned.noise.correlation._moving_average_ratios: the amplitude fitted as a
    quadratic in ``u`` (normal equations), ``(zero, pixel, zero power, mean power,
    curve)``."""
    amplitude = p.sqrt()
    design = torch.stack([torch.ones_like(u), u, u * u], dim=1)
    coef = torch.linalg.solve(design.T @ design, design.T @ amplitude)
    residual = amplitude - design @ coef
    if float(((residual**2).mean() / (amplitude**2).mean()).sqrt()) > spread:
        return 1.0, 1.0, -1.0, -1.0, _no_curve(p)
    c0 = float(coef[0])
    if not (c0 > 0.0 and abs(c0 + 2.0 * float(coef[1]) + 4.0 * float(coef[2])) < nyquist * c0):
        return 1.0, 1.0, -1.0, -1.0, _no_curve(p)
    ug = 1.0 - torch.cos(2.0 * math.pi * grid)
    power = (coef[0] + coef[1] * ug + coef[2] * ug * ug) ** 2
    mean_band = float(power[grid > band].mean())
    if not mean_band > 0:
        return 1.0, 1.0, -1.0, -1.0, _no_curve(p)
    ratio = float(power[0]) / mean_band
    if abs(math.log(ratio)) < math.log1p(tolerance):
        return 1.0, 1.0, -1.0, -1.0, _no_curve(p)
    mean = float(power.mean())
    ua = _u_all(n, p)
    curve = (coef[0] + coef[1] * ua + coef[2] * ua * ua) ** 2 / mean_band
    return ratio, mean / mean_band, float(power[0]), mean, curve


def _no_curve(like: torch.Tensor) -> torch.Tensor:
    """The empty curve of a white axis (TorchScript allows no global tensors)."""
    return torch.empty(0, dtype=torch.float64, device=like.device)


def _u_all(n: int, like: torch.Tensor) -> torch.Tensor:
    """``1 − cos 2πf`` at the ``n`` frequencies of ``fftfreq(n)``, on ``like``'s device."""
    f = torch.fft.fftfreq(n, dtype=torch.float64, device=like.device)
    return 1.0 - torch.cos(2.0 * math.pi * f)


def _median_rows(values: torch.Tensor) -> torch.Tensor:
    """numpy's median over axis 0 (the mean of the two middle values of an even count)."""
    ordered = torch.sort(values, dim=0).values
    n = ordered.shape[0]
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])


def _tile_starts(size: int, tile: int) -> List[int]:
    count = min(4, size // tile)
    starts: List[int] = []
    for i in range(count):
        start = int(math.floor(i * ((size - tile) / (count - 1)))) if count > 1 else 0
        if start not in starts:
            starts.append(start)
    return starts


def noise_correlation_factor(
    x: torch.Tensor,
    gain: float,
    offset: float,
    tile: int = CORRELATION_TILE,
    band: float = CORRELATION_BAND,
    resampled_limit: float = CORRELATION_RESAMPLED_LIMIT,
) -> float:
    """The factor napari_pinned.noise.correlation.pixel_equivalent scales the fit
    ``gain · I + offset`` by: the noise a pixel carries over what the fit sees, when the
    noise is correlated along one axis, or along both with the weaker within
    ``CORRELATION_RESAMPLED_LIMIT`` (a resampled frame); 1 otherwise."""
    h = x.shape[0]
    w = x.shape[1]
    th = min(h, tile)
    tw = min(w, tile)
    if min(th, tw) < 32:
        return 1.0
    window = torch.outer(
        torch.hann_window(th, periodic=False, dtype=torch.float64),
        torch.hann_window(tw, periodic=False, dtype=torch.float64),
    )
    fy = torch.fft.fftfreq(th, dtype=torch.float64).abs()
    fx = torch.fft.fftfreq(tw, dtype=torch.float64).abs()
    total = torch.zeros((th, tw), dtype=torch.float64)
    used = 0
    level = 0.0
    for top in _tile_starts(h, th):
        for left in _tile_starts(w, tw):
            block = x[top : top + th, left : left + tw]
            if float(block.max() - block.min()) == 0.0:
                continue
            centred = (block - (block * window).sum() / window.sum()) * window
            total = total + torch.fft.fft2(centred).abs() ** 2 / (window**2).sum()
            level += float((block * window**2).sum() / (window**2).sum())
            used += 1
    if used == 0:
        return 1.0
    zy, py, _, sy, cy = _axis_ratios(_median_rows(total[:, fx > band].T), th)
    profile_x = _median_rows(total[fy > band, :])
    # The fast axis's whole-profile fits, else its high frequencies alone; a resampled
    # frame's (the slow axis correlated) read over the slow axis's spectrum first.
    whole = _axis_ratios(profile_x, tw)
    zx, px, zs, sx, cx = whole if whole[4].numel() > 0 else _axis_ratios(profile_x, tw, fast=True)
    if cy.numel() > 0 and whole[4].numel() == 0:
        zx, px, zs, sx, cx = _shared_resampling(profile_x, tw, cy, (zx, px, zs, sx, cx))
    if zy == 1.0 and zx == 1.0:
        return 1.0
    # The profiles are medians over rows of a sum over tiles: over Wilson & Hilferty's
    # median of a Gamma(tiles) variable; the fit's variance at the tiles' mean level.
    scale = used * (1.0 - 1.0 / (9.0 * used)) ** 3
    seen = gain * (level / used) + offset
    if zy != 1.0 and zx != 1.0:
        if min(zy, zx) > resampled_limit:
            return 1.0
        # A resampled frame: the high band whitened by the product of the fitted
        # spectra gives the level; the per-pixel variance over the fit's.
        product = torch.outer(cy[fy > band], cx[fx > band])
        valid = product > 0.0
        corner = total[fy > band][:, fx > band][valid] / product[valid]
        per_pixel = _median(corner.flatten()) / scale * py * px
        return per_pixel / seen if seen > 0.0 else 1.0
    if (sy < 0.0) != (sx < 0.0):
        # A smear: its per-pixel variance over the fit's.
        smear = (sx if sy < 0.0 else sy) / scale
        return smear / seen if seen > 0.0 else 1.0
    return py * px


def _noise_floor(gain: float, offset: float, median: float) -> float:
    """napari_pinned.nn.conditioning._noise_floor: one electron's worth (the gain) or a
    tenth of the noise at the median, whichever is larger."""
    sigma_median = math.sqrt(max(gain * median + offset, 0.0))
    return max(gain**2, (0.1 * sigma_median) ** 2)


def saturation(x: torch.Tensor, least: float = SATURATED, most: float = SATURATED_MOST) -> float:
    """napari_pinned.nn.conditioning._saturation: the frame's largest value when
    ``least`` to ``most`` of its pixels hold it exactly (a detector's ceiling), else inf."""
    top = float(x.max())
    count = int((x == top).sum())
    n = x.numel()
    if least * n <= count and count <= most * n:
        return top
    return float("inf")


def defect_limits(
    x: torch.Tensor,
    gain: float,
    offset: float,
    median: float,
    ordered_medians: torch.Tensor,
    sigmas: float = OUTLIER_SIGMAS,
    span: float = GROSS_SPAN,
    sparse: float = GROSS_SPARSE,
    percentiles: Tuple[float, float] = RANGE_PERCENTILES,
) -> Tuple[float, float]:
    """``(gross, saturated)`` of :func:`napari_pinned.nn.conditioning.defect_limits`,
    given the frame's sorted 3×3 medians."""
    low = _quantile(ordered_medians, percentiles[0] / 100.0)
    high = _quantile(ordered_medians, percentiles[1] / 100.0)
    variance = max(gain * high + offset, 0.0)
    above = sigmas * math.sqrt(max(variance, _noise_floor(gain, offset, median)))
    gross = high + span * (high - low) + above
    ceiling = saturation(x)
    # Rare, not counting the saturated pixels.
    if int(((x > gross) & (x < ceiling)).sum()) > sparse * x.numel():
        gross = float("inf")
    return gross, ceiling


def _isolated(
    x: torch.Tensor,
    gain: float,
    offset: float,
    floor: float,
    sigmas: float = OUTLIER_SIGMAS,
    lift_factor: float = OUTLIER_LIFT,
) -> torch.Tensor:
    """napari_pinned.nn.conditioning._isolated: single pixels against their eight
    neighbours."""
    ring = _shifts(x, _symmetric_pad(x, 1), True)
    high = ring.amax(0)
    low = ring.amin(0)
    spread = high - low
    variance = (gain * (0.5 * (high + low)) + offset).clamp_min(0.0)
    sigma = variance.clamp_min(floor).sqrt()
    margin = sigmas * sigma + spread
    box3 = _box_sum(x, 3)
    neighbours = (box3 - x) / 8.0
    lift = neighbours - (_box_sum(x, 5) - box3) / 16.0
    hot = (x > high + margin) & (x - neighbours > lift_factor * lift.clamp_min(0.0))
    dead = (x < low - margin) & (neighbours - x > lift_factor * (-lift).clamp_min(0.0))
    return hot | dead


def _scattered(saturated: torch.Tensor, most: int = SATURATED_NEIGHBOURS) -> torch.Tensor:
    """Saturated pixels with at most ``most`` saturated neighbours (of eight)."""
    ring = torch.ones(3, 3, dtype=torch.float64, device=saturated.device)
    ring[1, 1] = 0.0
    padded = F.pad(saturated.to(torch.float64)[None, None], (1, 1, 1, 1))[0, 0]
    return saturated & (_correlate(padded, ring) <= most)


def _ring_means(padded: torch.Tensor, py: torch.Tensor, px: torch.Tensor, d: int) -> torch.Tensor:
    """Mean of the finite pixels on the square ring at distance ``d`` (NaN: none), summed
    in napari_pinned.nn.conditioning._ring_means' order."""
    total = torch.zeros(py.shape, dtype=torch.float64, device=padded.device)
    count = torch.zeros(py.shape, dtype=torch.float64, device=padded.device)
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            if max(abs(dy), abs(dx)) != d:
                continue
            values = padded[py + dy, px + dx]
            finite = torch.isfinite(values)
            total = total + torch.where(finite, values, torch.zeros_like(values))
            count = count + finite.to(torch.float64)
    return torch.where(count > 0, total / count.clamp_min(1.0), torch.full_like(total, math.nan))


def _group_defects(
    x: torch.Tensor,
    suspect: torch.Tensor,
    gain: float,
    offset: float,
    floor: float,
    sigmas: float = OUTLIER_SIGMAS,
    lift_factor: float = OUTLIER_LIFT,
    reach: int = GROUP_REACH,
) -> torch.Tensor:
    """napari_pinned.nn.conditioning._group_defects: each suspect pixel against the
    nearest ring of ordinary pixels around it (within ``reach``), a defect unless that
    ring rises towards it as a real bright feature's tails do."""
    pad = reach + 1
    masked = torch.where(suspect, torch.full_like(x, math.nan), x)
    padded = F.pad(masked[None, None], (pad, pad, pad, pad), value=math.nan)[0, 0]
    where = torch.nonzero(suspect)
    ys = where[:, 0]
    xs = where[:, 1]
    value = x[ys, xs]
    flagged = torch.zeros(ys.shape, dtype=torch.bool, device=x.device)
    todo = torch.ones(ys.shape, dtype=torch.bool, device=x.device)
    outer = _ring_means(padded, ys + pad, xs + pad, 1)
    for d in range(1, reach + 1):
        inner = outer
        outer = _ring_means(padded, ys + pad, xs + pad, d + 1)
        found = todo & torch.isfinite(inner)
        rise = inner - torch.where(torch.isfinite(outer), outer, inner)
        excess = value - inner
        variance = (gain * torch.nan_to_num(inner) + offset).clamp_min(0.0)
        sigma = variance.clamp_min(floor).sqrt()
        flagged = flagged | (
            found
            & (excess > sigmas * sigma)
            & (excess / float(d) > lift_factor * rise.clamp_min(0.0))
        )
        todo = todo & ~found
    mask = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    mask[ys[flagged], xs[flagged]] = True
    return mask


def find_outliers(
    x: torch.Tensor,
    gain: float,
    offset: float,
    median: float,
    gross: float,
    ceiling: float,
) -> torch.Tensor:
    """Boolean mask of :func:`napari_pinned.nn.conditioning.find_outliers` with the
    frame's :func:`defect_limits` ``(gross, ceiling)``."""
    floor = _noise_floor(gain, offset, median)
    mask = _isolated(x, gain, offset, floor)
    suspect = x > gross
    if math.isfinite(ceiling):
        suspect = suspect | _scattered(x >= ceiling)
    if bool(suspect.any()):
        mask = mask | _group_defects(x, suspect, gain, offset, floor)
    return mask


def repair_outliers(
    x: torch.Tensor, mask: torch.Tensor, fill: float, rounds: int = REPAIR_ROUNDS
) -> torch.Tensor:
    """napari_pinned.nn.conditioning.repair_outliers: each round gives the masked pixels
    that have unmasked or repaired neighbours the median of those (blocks fill from their
    edge inwards); what is left after ``rounds`` gets ``fill``."""
    out = x.clone()
    filled = torch.where(mask, torch.full_like(x, math.nan), x)
    todo = mask.clone()
    for _ in range(rounds):
        where = torch.nonzero(todo)
        ys = where[:, 0] + 1
        xs = where[:, 1] + 1
        padded = F.pad(filled[None, None], (1, 1, 1, 1), value=math.nan)[0, 0]
        near: List[torch.Tensor] = []
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if dy != 0 or dx != 0:
                    near.append(padded[ys + dy, xs + dx])
        ordered = torch.sort(torch.stack(near, 1), dim=1).values  # NaN sorts last
        count = torch.isfinite(ordered).sum(1)
        lower = ordered.gather(1, ((count - 1).clamp_min(0) // 2)[:, None])[:, 0]
        upper = ordered.gather(1, (count // 2)[:, None])[:, 0]
        ok = count > 0
        if not bool(ok.any()):
            break
        ys = ys[ok] - 1
        xs = xs[ok] - 1
        median = (0.5 * (lower + upper))[ok]
        out[ys, xs] = median
        filled[ys, xs] = median
        todo[ys, xs] = False
        if not bool(todo.any()):
            return out
    return torch.where(todo, torch.full_like(out, fill), out)


def _median3(x: torch.Tensor) -> torch.Tensor:
    padded = F.pad(x[None, None], (1, 1, 1, 1), mode="reflect")[0, 0]
    return _shifts(x, padded, False).median(0).values


def _fixed_convention(
    x: torch.Tensor,
    paper_range: Tuple[float, float] = PAPER_RANGE,
    unit_range: Tuple[float, float] = UNIT_RANGE,
    clipped: float = CONVENTION_CLIPPED,
) -> Tuple[bool, float, float]:
    """napari_pinned.nn.conditioning._fixed_convention: the paper's 0–255 or the unit
    range when the frame is clipped at both of its ends (``clipped`` of its pixels
    exactly at each)."""
    lo = float(x.min())
    hi = float(x.max())
    unit = lo == unit_range[0] and hi == unit_range[1]
    if not (unit or (lo == paper_range[0] and hi == paper_range[1])):
        return False, 0.0, 0.0
    if not clipped_ends(x, clipped):
        return False, 0.0, 0.0
    return True, lo, hi


def clipped_ends(x: torch.Tensor, clipped: float = CONVENTION_CLIPPED) -> bool:
    """napari_pinned._util.intensity.clipped_ends: whether ``clipped`` of the frame's
    pixels lie exactly at each of its extremes."""
    least = clipped * x.numel()
    low = int((x == x.min()).sum())
    high = int((x == x.max()).sum())
    return float(low) >= least and float(high) >= least


def sorted_medians(x: torch.Tensor) -> torch.Tensor:
    """The frame's 3×3 medians, sorted (for :func:`defect_limits` and the mapping)."""
    return torch.sort(_median3(x).reshape(-1)).values


def normalization_range(
    x: torch.Tensor,
    mode: str,
    ordered_medians: Optional[torch.Tensor] = None,
    raw_percentiles: Tuple[float, float] = PERCENTILES,
    robust_percentiles: Tuple[float, float] = ROBUST_PERCENTILES,
    range_percentiles: Tuple[float, float] = RANGE_PERCENTILES,
) -> Tuple[float, float, bool]:
    """``(low, high, constant)`` of :func:`napari_pinned.nn.conditioning.normalization_range`
    (``ordered_medians``: the frame's :func:`sorted_medians`, if known)."""
    if mode == "range":
        fixed, low, high = _fixed_convention(x)
        if fixed:
            return low, high, False
    if mode == "percentile":
        ordered = torch.sort(x.reshape(-1)).values
        q = raw_percentiles
    else:
        ordered = sorted_medians(x) if ordered_medians is None else ordered_medians
        q = robust_percentiles if mode == "robust" else range_percentiles
    low = _quantile(ordered, q[0] / 100.0)
    high = _quantile(ordered, q[1] / 100.0)
    if not high > low or not math.isfinite(high - low):
        level = _median(x)
        spread = float(x.max()) - float(x.min())
        if spread > 0 and math.isfinite(spread):
            return level - spread, level + spread, False
        return level, level + max(1.0, abs(level)), True
    return low, high, False


def _gaussian_smooth(x: torch.Tensor, sigma: float = NOISE_MAP_SMOOTHING) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter (truncate 4, ``mode="reflect"``)."""
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    padded = _symmetric_pad(x, radius)
    rows = F.conv2d(padded[None, None], k.reshape(1, 1, -1, 1))
    return F.conv2d(rows, k.reshape(1, 1, 1, -1))[0, 0]


def _spectrum_floor(
    power: torch.Tensor, block: int = GUARD_FLOOR_BLOCK, tiny: float = _TINY
) -> torch.Tensor:
    """napari_pinned.quality.lattice_guard._floor: block medians / ln 2, a 3×3 median filter of
    them, brought back to the spectrum's shape."""
    h = power.shape[0]
    w = power.shape[1]
    ph = (h + block - 1) // block * block
    pw = (w + block - 1) // block * block
    padded = F.pad(power[None, None], (0, pw - w, 0, ph - h), mode="replicate")[0, 0]
    blocks = padded.reshape(ph // block, block, pw // block, block).permute(0, 2, 1, 3)
    ordered = torch.sort(blocks.reshape(ph // block, pw // block, block * block), dim=2).values
    n = block * block
    lower = (n - 1) // 2
    medians = 0.5 * (ordered[:, :, lower] + ordered[:, :, n // 2]) / math.log(2.0)
    grid = F.pad(medians[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    medians = _shifts(medians, grid, False).median(0).values
    full = medians.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]
    return full.clamp_min(tiny)


def _reflected(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of scipy's ``mode="reflect"`` (d c b a | a b c d | d c b a) from
    ``-radius`` to ``n - 1 + radius``, however many times they fold."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _gaussian_filter(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter(x, sigma, mode="reflect") (truncate 4) of a 2D frame."""
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    weights = torch.exp(-0.5 * offsets**2 / (sigma * sigma))
    weights = (weights / weights.sum())[None, None, :]
    rows = x[_reflected(x.shape[0], radius, x.device)]
    x = F.conv1d(rows.t()[:, None, :], weights)[:, 0, :].t()
    cols = x[:, _reflected(x.shape[1], radius, x.device)]
    return F.conv1d(cols[:, None, :], weights)[:, 0, :]


def _gate(
    spectrum: torch.Tensor,
    power: torch.Tensor,
    grown: torch.Tensor,
    floor: torch.Tensor,
    h: int,
    w: int,
    factor: float = GUARD_GATE_NOISE_FACTOR,
    smoothing: Tuple[float, float] = GUARD_GATE_SMOOTHING,
) -> torch.Tensor:
    """napari_pinned.quality.lattice_guard._gate: where the input shows its strong
    reflections (``grown``), ``clip(1 − factor·N/E, 0, 1)``."""
    zero = torch.zeros_like(spectrum)
    band = torch.fft.irfft2(torch.where(grown, spectrum, zero), s=[h, w])
    double = torch.full([spectrum.shape[1]], 2.0, dtype=power.dtype, device=power.device)
    double[0] = 1.0
    if w % 2 == 0:
        double[-1] = 1.0
    in_band = torch.where(grown, floor, torch.zeros_like(floor))
    noise = float((in_band * double[None, :]).sum()) / float(h * w) ** 2
    rows = torch.arange(h, device=power.device)
    ky = torch.minimum(rows, h - rows).to(power.dtype)[:, None] / h
    kx = torch.arange(power.shape[1], device=power.device).to(power.dtype)[None, :] / w
    ratio = torch.where(grown, power / floor, torch.zeros_like(power))
    radial = torch.sqrt(ky * ky + kx * kx).reshape(-1)
    frequency = float(radial[int(torch.argmax(ratio.reshape(-1)))])
    sigma = min(max(0.5 / frequency, smoothing[0]), smoothing[1])
    energy = _gaussian_filter(band * band, sigma)
    return (1.0 - factor * noise / energy.clamp_min(1.1754943508222875e-38)).clamp(0.0, 1.0)


# -- interference the same in every scan line (float64, one (H, W) frame) ---------------


def _line_peaks(ratio: torch.Tensor, significance: float) -> List[float]:
    """napari_pinned.noise.line_pattern._peaks and _centre: local maxima (from the fourth
    bin) above the significance, refined by a parabola through the log ratio."""
    n = ratio.shape[0]
    local = torch.ones(n, dtype=torch.bool, device=ratio.device)
    local[1:] = local[1:] & (ratio[1:] >= ratio[:-1])
    local[:-1] = local[:-1] & (ratio[:-1] >= ratio[1:])
    local[:3] = False
    found: List[int] = torch.nonzero(local & (ratio > significance)).reshape(-1).tolist()
    peaks: List[float] = []
    for k in found:
        if k >= n - 1:
            peaks.append(float(k))
            continue
        a = math.log(float(ratio[k - 1]))
        b = math.log(float(ratio[k]))
        c = math.log(float(ratio[k + 1]))
        bend = a - 2.0 * b + c
        peaks.append(float(k) + (0.5 * (a - c) / bend if bend < 0 else 0.0))
    return peaks


def _line_harmonics(peaks: List[float], band: float, near: float, density: float) -> List[float]:
    """napari_pinned.noise.line_pattern._lattice_harmonics."""
    below: List[float] = []
    for q in peaks:
        if q < band:
            below.append(q)
    harmonics: List[float] = []
    if len(below) > density * band:
        return harmonics
    for p in peaks:
        if p < band:
            continue
        for f0 in below:
            order = int(round(p / f0))
            if order < 2 or abs(p - order * f0) > near:
                continue
            series = False
            for n in (order - 1, order - 2):
                if n == 1:
                    series = True
                elif n >= 1:
                    for q in peaks:
                        if abs(q - n * f0) <= near:
                            series = True
            if series:
                harmonics.append(p)
                break
    return harmonics


def _line_covered(
    fy: torch.Tensor,
    fx: torch.Tensor,
    shape: Tuple[int, int],
    strip: int,
    harmonics: List[float],
    band: float,
    near: float,
) -> torch.Tensor:
    """napari_pinned.noise.line_pattern.LineInterference.covers (the frame's own grid)."""
    inside = (fy.abs() <= (strip + 0.5) / shape[0]) & (fx.abs() >= band)
    for f in harmonics:
        inside = inside & ((fx.abs() - f).abs() * shape[1] > near)
    return inside


def line_interference_mask(x: torch.Tensor) -> Optional[torch.Tensor]:
    """:func:`napari_pinned.noise.line_pattern.line_interference` of a (float64) frame, as
    the mask of its ``rfft2`` bins (``LineInterference.rfft2_mask``), or None: the
    left and right half of the frame must each hold the pattern too (not a straight edge)."""
    mask = _line_mask_whole(x)
    if mask is None:
        return None
    half = x.shape[1] // 2
    if _line_mask_whole(x[:, :half]) is None or _line_mask_whole(x[:, half:]) is None:
        return None
    return mask


def _line_mask_whole(
    x: torch.Tensor,
    band_edge: float = LINE_PATTERN_BAND,
    strip_width: float = LINE_PATTERN_STRIP,
    significance: float = LINE_PATTERN_SIGNIFICANCE,
    broad: float = LINE_PATTERN_EXCESS,
    noise_last: float = LINE_PATTERN_NOISE_LAST,
    noise_bins: int = LINE_PATTERN_NOISE_BINS,
    flatness: float = LINE_PATTERN_NOISE_FLATNESS,
    min_size: int = LINE_PATTERN_MIN_SIZE,
    near: float = LINE_PATTERN_HARMONIC_BINS,
    density: float = LINE_PATTERN_COMB_DENSITY,
    floor: float = LINE_PATTERN_NOISE_FLOOR,
    tiny: float = _TINY,
) -> Optional[torch.Tensor]:
    """The whole frame's :func:`line_interference_mask`, without the halves' check."""
    h = x.shape[0]
    w = x.shape[1]
    if h < min_size or w < min_size:
        return None
    lines = x - x.mean(dim=1, keepdim=True)
    window = torch.hann_window(h, periodic=False, dtype=x.dtype, device=x.device)[:, None]
    window = window * torch.hann_window(w, periodic=False, dtype=x.dtype, device=x.device)
    windowed = lines * window
    squares = float((windowed * windowed).sum())
    spectrum = torch.fft.fft(torch.fft.rfft(windowed, dim=1), dim=0)
    power = torch.real(spectrum) ** 2 + torch.imag(spectrum) ** 2
    strip = max(2, int(math.ceil(strip_width * h)))
    first = 2 * strip + 1
    last = max(first + noise_bins, int(noise_last * h))
    if last >= h // 2:
        return None
    beyond = torch.cat(
        [
            torch.arange(first, last + 1, device=x.device),
            torch.arange(h - last, h - first + 1, device=x.device),
        ]
    )
    noise = (_median_rows(power[beyond]) / math.log(2.0)).clamp_min(tiny)
    band = band_edge * w
    above = torch.arange(noise.shape[0], device=x.device) >= band
    far = _median(power[h // 4 : h - h // 4 + 1][:, above]) / math.log(2.0)
    if not (_median(noise[above]) <= flatness * far and far > floor * squares):
        return None
    rows = torch.cat(
        [torch.arange(0, strip + 1, device=x.device), torch.arange(h - strip, h, device=x.device)]
    )
    excess = power[rows].mean(dim=0) / noise
    peaks = _line_peaks(power[0] / noise, significance)
    harmonics = _line_harmonics(peaks, band, near, density)
    at = [f / w for f in harmonics]
    fx = torch.arange(noise.shape[0], dtype=x.dtype, device=x.device) / w
    inside = _line_covered(torch.zeros_like(fx), fx, (h, w), strip, at, band_edge, near)
    if not bool(inside.any()):
        return None
    tones = False
    for p in peaks:
        if p >= band and p not in harmonics:
            tones = True
    if not (tones or _median(excess[inside]) > broad):
        return None
    k = torch.arange(h, device=x.device)
    fy = torch.where(k <= (h - 1) // 2, k, k - h).to(x.dtype) / h
    return _line_covered(fy[:, None], fx[None, :], (h, w), strip, at, band_edge, near)


def keep_lattice(
    x: torch.Tensor,
    y: torch.Tensor,
    snr: float = GUARD_SNR,
    block: int = GUARD_FLOOR_BLOCK,
    dc_radius: int = GUARD_DC_RADIUS,
    margin: float = GUARD_INVENTION_MARGIN,
) -> torch.Tensor:
    """:func:`napari_pinned.quality.lattice_guard.keep_lattice` of a (float64) frame ``x`` and
    its denoised ``y``: the residual's part above its floor at ``x``'s strong
    reflections is given back where ``x`` shows them (:func:`_gate`), then every
    frequency of the result is bounded by ``x``'s amplitude plus ``margin`` times its
    noise amplitude."""
    h = x.shape[0]
    w = x.shape[1]
    if min(h, w) < 4 * block:
        return y
    mean = x.mean()
    spectrum = torch.fft.rfft2(x - mean)
    power = torch.real(spectrum) ** 2 + torch.imag(spectrum) ** 2
    floor = _spectrum_floor(power, block)
    strong = power > snr * floor
    # Interference the same in every scan line is not structure (napari_pinned: the
    # stripes of real scans).
    interference = line_interference_mask(x)
    if interference is not None:
        strong = strong & ~interference
    rows = torch.arange(h, device=x.device)
    ky = torch.minimum(rows, h - rows)[:, None]
    kx = torch.arange(power.shape[1], device=x.device)[None, :]
    away_from_dc = (ky > dc_radius) | (kx > dc_radius)
    strong = strong & away_from_dc
    if bool(strong.any()):
        residual = torch.fft.rfft2(x - y)
        pooled = F.max_pool2d(strong.to(torch.float64)[None, None], 3, stride=1, padding=1)
        grown = pooled[0, 0] > 0
        if interference is not None:
            grown = grown & ~interference
        gate = _gate(spectrum, power, grown, floor, h, w)
        residual_power = torch.real(residual) ** 2 + torch.imag(residual) ** 2
        weight = 1.0 - _spectrum_floor(residual_power, block) / residual_power.clamp_min(1e-300)
        weight = torch.where(grown, weight.clamp(0.0, 1.0), torch.zeros_like(weight))
        # Only where the input shows these reflections (napari_pinned: issue 22).
        y = y + gate * torch.fft.irfft2(weight * residual, s=[h, w])
    out = torch.fft.rfft2(y - mean)
    size = torch.abs(out)
    limit = torch.sqrt(power) + margin * torch.sqrt(floor)
    over = away_from_dc & (size > limit)
    if not bool(over.any()):
        return y
    scale = torch.where(over, limit / size.clamp_min(1e-300) - 1.0, torch.zeros_like(size))
    return y + torch.fft.irfft2(scale * out, s=[h, w])


# -- the lattice prior (float64, one (H, W) frame) --------------------------------------


def _hann(n: int, device: torch.device) -> torch.Tensor:
    """numpy's ``hanning(n)`` (symmetric)."""
    return torch.hann_window(n, periodic=False, dtype=torch.float64, device=device)


def measure_scan_noise(
    x: torch.Tensor, no_signal: float = NO_SIGNAL_FREQUENCY, white_ratio: float = WHITE_RATIO
) -> Tuple[float, torch.Tensor, torch.Tensor]:
    """``(variance, spectrum along x, spectrum along y)`` of
    :func:`napari_pinned.quality.risk.measure_scan_noise`: the Hann-windowed power where
    the other axis's frequency is above ``no_signal`` (noise alone there), each axis's
    spectrum scaled to mean 1.  Their two levels agree within ``white_ratio`` for noise
    white along both axes (then their mean is the variance); otherwise the correlated
    axis's band, the higher, holds it."""
    h = x.shape[0]
    w = x.shape[1]
    window = torch.outer(_hann(h, x.device), _hann(w, x.device))
    spectrum = torch.fft.fft2((x - x.mean()) * window)
    power = torch.abs(spectrum) ** 2 / (window**2).sum()
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=x.device).abs()
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=x.device).abs()
    along_x = power[fy > no_signal].mean(0)
    along_y = power[:, fx > no_signal].mean(1)
    level_x = float(along_x.mean())
    level_y = float(along_y.mean())
    if max(level_x, level_y) > white_ratio * min(level_x, level_y):
        variance = max(level_x, level_y)
    else:
        variance = 0.5 * (level_x + level_y)
    return variance, along_x / level_x, along_y / level_y


def _resampled(spectrum: torch.Tensor, size: int) -> torch.Tensor:
    """napari_pinned.quality.risk._resampled: a symmetric spectrum in FFT order
    interpolated to ``size`` bins (mean 1), as ``numpy.interp`` does it on the stably
    sorted ``|fftfreq|`` (each frequency held twice: a point between two takes the last
    of the lower pair and the first of the upper one; beyond the last, the last)."""
    n = spectrum.shape[0]
    if n == size:
        return spectrum
    measured = torch.fft.fftfreq(n, dtype=torch.float64, device=spectrum.device).abs()
    ordered = torch.sort(measured, stable=True)
    xp = ordered.values
    fp = spectrum[ordered.indices]
    at = torch.fft.fftfreq(size, dtype=torch.float64, device=spectrum.device).abs()
    j = (torch.searchsorted(xp, at, right=True) - 1).clamp(0, n - 1)
    upper = (j + 1).clamp_max(n - 1)
    slope = (fp[upper] - fp[j]) / (xp[upper] - xp[j])
    between = slope * (at - xp[j]) + fp[j]
    exact = (j == n - 1) | (xp[j] == at)
    values = torch.where(exact, fp[j], between)
    return values / values.mean()


def periodic_part(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(periodic, smooth)`` of :func:`napari_pinned.nn.lattice_prior.periodic_part`: the
    smooth part solves Poisson's equation for the jumps across the frame's opposite edges
    (Moisan, J. Math. Imaging Vis. 39, 161–179, 2011), so the periodic part's spectrum has
    no cross of leakage from those edges."""
    h = x.shape[0]
    w = x.shape[1]
    jumps = torch.zeros_like(x)
    jumps[0, :] = jumps[0, :] + (x[-1, :] - x[0, :])
    jumps[-1, :] = jumps[-1, :] + (x[0, :] - x[-1, :])
    jumps[:, 0] = jumps[:, 0] + (x[:, -1] - x[:, 0])
    jumps[:, -1] = jumps[:, -1] + (x[:, 0] - x[:, -1])
    q = torch.arange(h, dtype=torch.float64, device=x.device)[:, None]
    r = torch.arange(w, dtype=torch.float64, device=x.device)[None, :]
    laplacian = (
        2.0 * torch.cos(2.0 * math.pi * q / h) + 2.0 * torch.cos(2.0 * math.pi * r / w) - 4.0
    )
    laplacian[0, 0] = 1.0
    spectrum = torch.fft.fft2(jumps) / laplacian
    spectrum[0, 0] = 0.0
    smooth = torch.fft.ifft2(spectrum).real
    return x - smooth, smooth


def _cross_dilation(mask: torch.Tensor) -> torch.Tensor:
    """``scipy.ndimage.binary_dilation(mask)``: its default structure (the pixel and its
    four neighbours), once, nothing beyond the border."""
    m = F.pad(mask.to(torch.float64)[None, None], (1, 1, 1, 1))[0, 0]
    grown = m[1:-1, 1:-1] + m[:-2, 1:-1] + m[2:, 1:-1] + m[1:-1, :-2] + m[1:-1, 2:]
    return grown > 0


def bragg_filtered(
    x: torch.Tensor,
    variance: float,
    spectrum_x: torch.Tensor,
    spectrum_y: torch.Tensor,
    significance: float = LATTICE_SIGNIFICANCE,
) -> torch.Tensor:
    """:func:`napari_pinned.nn.lattice_prior.bragg_filtered` of one window: the
    components of its periodic part whose power is ``significance`` times the noise's
    there (and their four neighbours: a rotated lattice spreads a reflection over
    neighbouring bins), weighted by the Wiener gain ``1 − noise/power`` (Kilaas,
    J. Microsc. 190, 45–51, 1998), with its mean and smooth part added back.  The noise
    is the frame's (:func:`measure_scan_noise`), its spectra resampled to the window."""
    mean = float(x.mean())
    periodic, smooth = periodic_part(x - mean)
    spectrum = torch.fft.fft2(periodic)
    power = torch.abs(spectrum) ** 2
    along_y = _resampled(spectrum_y, x.shape[0])
    along_x = _resampled(spectrum_x, x.shape[1])
    floor = x.numel() * variance * along_y[:, None] * along_x[None, :]
    keep = power > significance * floor
    keep[0, 0] = True
    # Dilated where numpy dilates it, centred: nothing grows across the Nyquist edge.
    keep = torch.fft.ifftshift(_cross_dilation(torch.fft.fftshift(keep)))
    ratio = torch.where(power > 0, floor / power, torch.ones_like(power))
    gain = (1.0 - ratio).clamp(0.0, 1.0) * keep.to(torch.float64)
    gain[0, 0] = 1.0
    return torch.fft.ifft2(spectrum * gain).real + smooth + mean


def _lattice_windows(length: int, window: int, stride: int) -> List[Tuple[int, int]]:
    """``(start, stop)`` of napari_pinned.nn.lattice_prior._windows: ``window`` px
    ``stride`` apart, the last one ending at the edge (up to 1.5 windows: the whole
    length)."""
    if length <= window * 3 // 2:
        return [(0, length)]
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    return [(start, start + window) for start in starts]


def _taper(length: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """napari_pinned.nn.lattice_prior._taper: 1 inside, falling linearly to near zero
    over the outer ``window − stride`` px (never zero: edge pixels have one window)."""
    ramp = min(window - stride, length // 2)
    index = torch.arange(length, dtype=torch.float64, device=device)
    position = torch.minimum(index, index.flip(0)) + 0.5
    return (position / ramp).clamp(1e-3, 1.0)


def lattice_average(
    x: torch.Tensor,
    window: int = LATTICE_WINDOW,
    stride: int = LATTICE_STRIDE,
    smallest: int = LATTICE_SMALLEST,
) -> torch.Tensor:
    """:func:`napari_pinned.nn.lattice_prior.lattice_average` of a float64 frame, in
    float64 (numpy's is rounded to float32): what the rest of the frame says each pixel
    is.  Frames longer than 1.5 ``window`` px are filtered in ``window``² windows
    ``stride`` apart (the size the models were trained on) blended by :func:`_taper`,
    all with the whole frame's noise."""
    h = x.shape[0]
    w = x.shape[1]
    if min(h, w) < smallest:  # too few cells for a prior
        return torch.full_like(x, float(x.mean()))
    if float(x.max()) == float(x.min()):  # no noise to tell a lattice from
        return x.clone()
    variance, spectrum_x, spectrum_y = measure_scan_noise(x)
    if max(h, w) <= window * 3 // 2:
        return bragg_filtered(x, variance, spectrum_x, spectrum_y)
    out = torch.zeros_like(x)
    total = torch.zeros_like(x)
    for top, bottom in _lattice_windows(h, window, stride):
        for left, right in _lattice_windows(w, window, stride):
            part = x[top:bottom, left:right]
            weight = (
                _taper(bottom - top, window, stride, x.device)[:, None]
                * _taper(right - left, window, stride, x.device)[None, :]
            )
            filtered = bragg_filtered(part, variance, spectrum_x, spectrum_y)
            out[top:bottom, left:right] = out[top:bottom, left:right] + weight * filtered
            total[top:bottom, left:right] = total[top:bottom, left:right] + weight
    return out / total


def _mirror(x: torch.Tensor, before: int, after_rows: int, after_cols: int) -> torch.Tensor:
    """numpy's ``mode="reflect"`` padding of a ``(C, H, W)`` stack (pads < size)."""
    return F.pad(x[None], (before, after_cols, before, after_rows), mode="reflect")[0]


class PinnedDenoiser(nn.Module):
    """Denoise ``(B, Y, X)`` raw frames; returns ``(B, Y, X)`` in their intensities.

    Parameters
    ----------
    width, depth, negative_slope, skip_connections, residual, normalization, conditioning,
    max_width_factor
        The network's :class:`napari_pinned.settings.ModelConfig` (``conditioning``:
        ``"none"``, ``"noise-map"``, or ``"noise-map+lattice"`` for a model that also
        takes the lattice prior).
    architecture : str
        Descriptive name of the configuration (unused).
    strength : float
        Noise-conditioned models: factor on the estimated noise (1 = as measured).
    keep_lattice : bool
        Apply the lattice guard (``denoise(..., keep_lattice=True)``, the default).
    guard_clipped : bool
        Guard frames clipped at both ends of their range too (:func:`clipped_ends`);
        False for models trained on CDN, whose CDN-like (clipped) inputs are not
        guarded (``napari_pinned.quality.lattice_guard.guard_applies``).
    """

    def __init__(
        self,
        width: int = 8,
        depth: int = 3,
        negative_slope: float = 0.01,
        skip_connections: bool = True,
        residual: bool = True,
        normalization: str = "range",
        conditioning: str = "none",
        max_width_factor: int = MAX_WIDTH_FACTOR,
        architecture: str = "unet",
        strength: float = 1.0,
        keep_lattice: bool = True,
        guard_clipped: bool = True,
    ):
        super().__init__()
        if normalization not in ("range", "percentile", "robust"):
            raise ValueError("unknown normalization " + normalization)
        if conditioning not in ("none", "noise-map", "noise-map+lattice"):
            raise ValueError("unknown conditioning " + conditioning)
        self.conditioned = conditioning != "none"
        self.lattice = conditioning == "noise-map+lattice"
        self.context = CONTEXT
        self.clip_low = RANGE_CLIP[0]
        self.clip_high = RANGE_CLIP[1]
        self.map_floor = NOISE_MAP_FLOOR
        self.normalization = normalization
        self.strength = float(strength)
        self.keep_lattice = bool(keep_lattice)
        self.guard_clipped = bool(guard_clipped)
        self.alignment = 2**depth
        self.network = PinnedNetwork(
            width,
            depth,
            negative_slope,
            skip_connections,
            residual,
            self.conditioned,
            self.lattice,
            max_width_factor,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError("PinnedDenoiser expects a (batch, y, x) tensor")
        frames: List[torch.Tensor] = []
        for b in range(x.shape[0]):
            frames.append(self.denoise_frame(x[b]))
        return torch.stack(frames).to(x.dtype)

    def denoise_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """One ``(H, W)`` frame, as napari-pinned's ``denoise`` does it (float32)."""
        x = frame.to(torch.float64)
        # napari_pinned.nn.conditioning._measure: every model gets hot, dead and saturated
        # pixels repaired; only noise-conditioned ones use the noise estimate beyond that.
        # Saturated pixels carry no noise: left out of the fit, as repaired pixels are.
        gain, offset, median = estimate_noise(x, x >= saturation(x))
        ordered = sorted_medians(x)
        gross, ceiling = defect_limits(x, gain, offset, median, ordered)
        outliers = find_outliers(x, gain, offset, median, gross, ceiling)
        if bool(outliers.any()):
            kept = x[~outliers]
            fill = _median(kept) if kept.numel() > 0 else 0.0
            x = repair_outliers(x, outliers, fill)
            if self.conditioned:
                gain, offset, median = estimate_noise(x, outliers)
            low, high, constant = normalization_range(x, self.normalization)
        else:
            low, high, constant = normalization_range(x, self.normalization, ordered)
        if self.conditioned:
            # napari_pinned.noise.correlation.pixel_equivalent: the noise a pixel carries
            # (an afterglow's correlated noise reads too weak through the fit's kernel).
            factor = noise_correlation_factor(x, gain, offset)
            gain = gain * factor
            offset = offset * factor
        if constant:
            return x.to(torch.float32)
        scale = high - low
        units = ((x - low) / scale).to(torch.float32)
        if self.normalization == "range" and not self.conditioned:
            fixed, _, _ = _fixed_convention(frame.to(torch.float64))
            if not fixed:
                units = units.clamp(self.clip_low, self.clip_high)
        channels = [units]
        if self.conditioned:
            gain_u = gain / scale
            offset_u = (offset + gain * low) / scale**2
            local = _gaussian_smooth(units.to(torch.float64))
            variance = (gain_u * local + offset_u).clamp_min(0.0)
            rms2 = float(variance.mean())
            variance = variance.clamp_min(self.map_floor**2 * rms2)
            channels.append((self.strength * variance.sqrt()).to(torch.float32))
        if self.lattice:
            # napari_pinned.nn.conditioning._measure: of the repaired frame (one hot pixel
            # would spread over every component), float32 as numpy's prior is.
            prior = lattice_average(x).to(torch.float32)
            channels.append((prior - low) / scale)
        stack = torch.stack(channels)
        h = stack.shape[1]
        w = stack.shape[2]
        align = self.alignment
        # napari_pinned.denoising.tiling.frame_padding, in non-negative integer arithmetic.
        before = (self.context + align - 1) // align * align
        after_rows = before + (align - (h + 2 * before) % align) % align
        after_cols = before + (align - (w + 2 * before) % align) % align
        padded = _mirror(stack, before, after_rows, after_cols)
        out = self.network(padded[None])[0, 0, before : before + h, before : before + w]
        result = (out.to(torch.float64) * scale + low).to(torch.float32)
        if self.keep_lattice and (self.guard_clipped or not clipped_ends(frame)):
            # napari_pinned.denoising.engine.guard_frame: the input's strong reflections kept.
            result = keep_lattice(x, result.to(torch.float64)).to(torch.float32)
        return result
