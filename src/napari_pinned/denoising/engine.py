"""The :class:`Denoiser`: a model made ready to denoise whole frames and regions of
frames exactly, window by window (:mod:`.tiling`).

**Statistics once per frame.**  Outlier repair, normalisation and the noise estimate
are measured over the whole frame (:func:`napari_pinned.nn.conditioning.frame_statistics`)
and applied to every window and every region of it
(:func:`~napari_pinned.nn.conditioning.prepare_region`), never per tile.  A region (a
dask chunk) is denoised from a block that reaches :func:`block_margin` px beyond it.

**Uncertainty.**  With ``uncertainty`` on, :meth:`Denoiser.iter_frame_uncertain` also
returns each pixel's standard deviation (:mod:`.uncertainty`), combined window by window
from the spread of the orientations and the noise map the network was given, so it is
tiled exactly as the output is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.checks import check_strength
from napari_pinned._util.jobs import run_job
from napari_pinned.denoising.tiling import (
    axis_windows,
    check_tile,
    frame_padding,
    resolve_tiling,
    windows_per_frame,
)
from napari_pinned.denoising.uncertainty import (
    UncertaintyWeights,
    uncertainty_weights,
    window_sigma,
)
from napari_pinned.nn.conditioning import (
    REGION_CONTEXT,
    FrameStats,
    Prepared,
    counts_non_negative,
    finish,
    frame_statistics,
    prepare,
    prepare_region,
)
from napari_pinned.nn.runners import make_runner
from napari_pinned.quality.lattice_guard import guard_applies, keep_lattice
from napari_pinned.settings import ORIENTATION_COUNTS, FrameOptions

if TYPE_CHECKING:
    from napari_pinned.noise.estimate import NoiseEstimate

__all__ = [
    "BATCH_PIXELS",
    "CPU_BATCH_PIXELS",
    "ORIENTATIONS",
    "Denoiser",
    "block_margin",
    "check_batch_size",
    "check_orientations",
    "guard_frame",
]

#: Input pixels per forward pass at most: small windows are batched up to ``batch_size``
#: and this, big ones go one at a time (activations of the width-8 depth-4 network take
#: about 220 bytes per input pixel on the CPU, ``benchmarks/memory.py``).
BATCH_PIXELS = 1 << 22
#: The same on a CPU, where batching windows gains no speed: one pass of about half a
#: million pixels takes a few tenths of a second on two cores, so a stop request waits
#: no longer than that between passes, and the activations stay near 120 MB.
CPU_BATCH_PIXELS = 1 << 19

#: The orientations :func:`~napari_pinned.denoising.denoiser.denoise` averages over, in
#: the order they are added, each as (quarter turns, then mirror left-right): the
#: identity and the anti-transpose, then the half-turn and the transpose (the first 2
#: and the first 4 are groups, so an average over them treats the axes alike), then the
#: other four of the square's symmetries.
ORIENTATIONS = (
    (0, False),
    (1, True),
    (2, False),
    (3, True),
    (1, False),
    (0, True),
    (3, False),
    (2, True),
)

Target = tuple[tuple[int, int], tuple[int, int]]


def check_orientations(orientations: Any) -> int:
    """The number of orientations as an int: one of ``ORIENTATION_COUNTS``."""
    integer = isinstance(orientations, (int, np.integer)) and not isinstance(orientations, bool)
    if not integer or orientations not in ORIENTATION_COUNTS:
        raise ValueError(f"orientations must be one of {ORIENTATION_COUNTS}, got {orientations!r}")
    return int(orientations)


def check_batch_size(batch_size: Any) -> int:
    """The batch size as an int: a whole number of at least 1 window."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return batch_size


def block_margin(overlap: int, align: int) -> int:
    """Pixels of neighbouring input a region needs around it to be denoised as in the
    whole frame: the windows' halo, their alignment and the conditioning's context."""
    return overlap + align - 1 + REGION_CONTEXT


def _metadata(runner: Any) -> dict:
    """The metadata of a runner's model (a torch bundle's or an ONNX file's)."""
    holder = getattr(runner, "bundle", None) or getattr(runner, "model", None)
    metadata = getattr(holder, "metadata", None)
    return metadata if isinstance(metadata, dict) else {}


def guard_frame(source: np.ndarray, result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """:func:`napari_pinned.quality.lattice_guard.keep_lattice` on one whole frame, keeping
    raw counts non-negative."""
    return counts_non_negative(keep_lattice(source, result), dtype)


class Denoiser:
    """A model made ready to denoise frames, windows and dask chunks exactly.

    ``options`` are the per-frame options and ``batch_size``, ``noise`` and
    ``backend`` the rest of :func:`~napari_pinned.denoising.denoiser.denoise`'s
    parameters; ``uncertainty`` readies :meth:`iter_frame_uncertain` (noise-conditioned
    models, strength above 0).  The network is loaded and moved to the device once;
    :meth:`iter_frame` denoises one frame, :meth:`denoise_block` one region of a frame
    from its surroundings (a dask chunk).
    """

    def __init__(
        self,
        model: Any = "default",
        options: FrameOptions | None = None,
        *,
        batch_size: int = 4,
        noise: NoiseEstimate | None = None,
        backend: str = "auto",
        uncertainty: bool = False,
    ) -> None:
        options = options or FrameOptions()
        self.strength = check_strength(options.strength)
        self.orientations = check_orientations(options.orientations)
        self.batch_size = check_batch_size(batch_size)
        check_tile(options.tile)
        # The network call: torch (channels-last on CPUs) or ONNX Runtime
        # (napari_pinned.nn.runners); an ONNX file never imports torch.
        self.runner = make_runner(model, backend=backend, device=options.device)
        self.keep_lattice = bool(options.keep_lattice)
        # Not for models trained on CDN on CDN-like frames (lattice_guard.guard_applies).
        self.training_noise = _metadata(self.runner).get("noise")
        self.device = getattr(self.runner, "device", "cpu")
        self.bundle = getattr(self.runner, "bundle", None)
        self.config = self.runner.config
        self.tile, self.overlap = resolve_tiling(self.config, options.tile, options.overlap)
        self.noise = noise
        #: The weights of the uncertainty (:mod:`.uncertainty`), None without it.
        self.weights: UncertaintyWeights | None = None
        if uncertainty:
            self.weights = uncertainty_weights(
                self.orientations, self.strength, bool(self.config.conditioned)
            )

    @property
    def align(self) -> int:
        """The network's alignment, ``2**depth``."""
        return self.config.alignment

    def windows(self, shape: tuple[int, int]) -> int:
        """Network windows one frame of ``shape`` takes."""
        return windows_per_frame(shape, self.config, self.tile, self.overlap)

    def statistics(self, frame: np.ndarray) -> FrameStats:
        """The frame statistics :meth:`denoise_block` needs (whole frame)."""
        config = self.config
        return frame_statistics(
            frame,
            config.normalization,
            conditioned=config.conditioned,
            noise=self.noise,
            lattice=config.lattice,
        )

    def _run(
        self,
        channels: np.ndarray,
        origin: tuple[int, int],
        length: tuple[int, int],
        target: Target,
        sigma: np.ndarray | None = None,
    ) -> Generator[int, None, np.ndarray]:
        """Network output (model units) for ``target`` of a padded frame of ``length``;
        ``channels`` hold the padded frame from ``origin`` on.  Yields windows done
        after each batch, 0 between its network passes.  With :attr:`weights` set,
        each pixel's standard deviation (model units) is written into ``sigma`` (of the
        target's shape) as well."""
        h, w = channels.shape[1:]
        sy, ys, keep_y = axis_windows(
            origin[0], origin[0] + h, length[0], target[0], self.tile, self.overlap, self.align
        )
        sx, xs, keep_x = axis_windows(
            origin[1], origin[1] + w, length[1], target[1], self.tile, self.overlap, self.align
        )
        (t0, t1), (u0, u1) = target
        out = np.empty((t1 - t0, u1 - u0), np.float32)
        jobs = [
            (y, x, ky, kx)
            for y, ky in zip(ys, keep_y, strict=True)
            for x, kx in zip(xs, keep_x, strict=True)
            if ky[1] > ky[0] and kx[1] > kx[0]
        ]
        most = CPU_BATCH_PIXELS if str(self.device).startswith("cpu") else BATCH_PIXELS
        batch = max(1, min(self.batch_size, most // (sy * sx)))
        oy, ox = origin
        for start in range(0, len(jobs), batch):
            group = jobs[start : start + batch]
            stacked = np.stack(
                [channels[:, y - oy : y - oy + sy, x - ox : x - ox + sx] for y, x, _, _ in group]
            )
            pred_np, spread = yield from self._predict(stacked)
            for i, (y, x, (a, b), (c, d)) in enumerate(group):
                kept = np.s_[a - y : b - y, c - x : d - x]
                out[a - t0 : b - t0, c - u0 : d - u0] = pred_np[i, 0][kept]
                if sigma is not None and self.weights is not None and spread is not None:
                    sigma[a - t0 : b - t0, c - u0 : d - u0] = window_sigma(
                        spread[i, 0][kept], stacked[i, 1][kept], pred_np[i, 0][kept], self.weights
                    )
            yield len(group)
        return out

    def _predict(
        self, stacked: np.ndarray
    ) -> Generator[int, None, tuple[np.ndarray, np.ndarray | None]]:
        """The network on a batch of windows, averaged over :attr:`orientations` of
        them, and with :attr:`weights` set the variance of the orientations about that
        average (else None).  A window is turned or mirrored as a whole, halo included,
        and its output turned back, so each average is that of the whole frame turned:
        exact tiling still holds.  Yields 0 (no window finished yet) between two
        orientations: a job can stop after every network pass, not only after a batch's
        ``orientations`` passes (8 passes of 4 windows of 576² px took 11.5 s on two
        CPU cores; ``benchmarks/cancel_latency.py``)."""
        spread = self.weights is not None
        if self.orientations == 1:
            pred = self.runner(stacked)
            return pred, (np.zeros(pred.shape, np.float32) if spread else None)
        total = mean = m2 = None
        for k, (turns, mirror) in enumerate(ORIENTATIONS[: self.orientations]):
            if k:
                yield 0
            view = np.rot90(stacked, turns, axes=(2, 3))
            view = view[..., ::-1] if mirror else view
            pred = self.runner(np.ascontiguousarray(view))
            pred = pred[..., ::-1] if mirror else pred
            pred = np.rot90(pred, -turns, axes=(2, 3))
            total = pred.astype(np.float32) if total is None else total + pred
            if spread:
                # Welford's running variance (its own mean: the output keeps the plain
                # sum, so it is the same with the uncertainty on or off).
                if mean is None:
                    mean, m2 = pred.astype(np.float32), np.zeros(pred.shape, np.float32)
                else:
                    delta = pred - mean
                    mean += delta / np.float32(k + 1)
                    m2 += delta * (pred - mean)
        variance = m2 / np.float32(self.orientations) if m2 is not None else None
        return total / np.float32(self.orientations), variance

    def iter_frame(self, frame: np.ndarray) -> Generator[int, None, tuple[np.ndarray, Prepared]]:
        """Denoise one 2D frame; yields windows done (0 between network passes and after
        the frame statistics), returns ``(output, prepared)``."""
        output, _, prepared = yield from self._frame(frame)
        return output, prepared

    def iter_frame_uncertain(
        self, frame: np.ndarray
    ) -> Generator[int, None, tuple[np.ndarray, np.ndarray, Prepared]]:
        """:meth:`iter_frame` with each pixel's standard deviation (float32, the output's
        units; :mod:`.uncertainty`): returns ``(output, sigma, prepared)``.  Needs a
        Denoiser made with ``uncertainty=True``."""
        if self.weights is None:
            raise ValueError("this Denoiser was made without uncertainty=True")
        output, sigma, prepared = yield from self._frame(frame)
        assert sigma is not None
        return output, sigma, prepared

    def _frame(
        self, frame: np.ndarray
    ) -> Generator[int, None, tuple[np.ndarray, np.ndarray | None, Prepared]]:
        """One 2D frame: ``(output, sigma or None, prepared)``."""
        config = self.config
        prepared = prepare(
            frame,
            config.normalization,
            conditioned=config.conditioned,
            strength=self.strength,
            noise=self.noise,
            lattice=config.lattice,
        )
        uncertain = self.weights is not None
        if prepared.state.constant:
            yield self.windows(frame.shape)
            flat = np.zeros(frame.shape, np.float32) if uncertain else None
            return finish(prepared.repaired, prepared, frame.dtype), flat, prepared
        # The frame's statistics (the noise fit takes about a second at 2048²) and its
        # first network pass are two waits for a stop request, not one.
        yield 0
        pads = [frame_padding(n, self.align) for n in frame.shape]
        channels = np.pad(prepared.channels, [(0, 0), *pads], mode="reflect")
        # The network reads the padded copy: the unpadded one is let go (a view would
        # keep it alive).
        empty = np.empty((len(prepared.channels), 0, 0), np.float32)
        prepared = dataclasses.replace(prepared, channels=empty)
        target = tuple(
            (before, before + n) for n, (before, _) in zip(frame.shape, pads, strict=True)
        )
        sigma = np.empty(frame.shape, np.float32) if uncertain else None
        units = yield from self._run(channels, (0, 0), channels.shape[1:], target, sigma)
        del channels
        if sigma is not None:
            # A standard deviation scales with the gain and ignores the offset.
            sigma *= np.float32(prepared.state.scale)
        if not (self.keep_lattice and guard_applies(self.training_noise, frame)):
            return finish(units, prepared, frame.dtype), sigma, prepared
        # Guarded before raw counts are clipped at zero, as the dask path does.
        result = guard_frame(prepared.repaired, finish(units, prepared), frame.dtype)
        return result, sigma, prepared

    def denoise_block(
        self,
        block: np.ndarray,
        stats: FrameStats,
        *,
        origin: tuple[int, int],
        frame_shape: tuple[int, int],
        target: Target,
        dtype: np.dtype,
    ) -> np.ndarray:
        """Denoise ``target`` (frame coordinates) of a frame from a block of it.

        ``block`` holds the frame from ``origin`` on and must reach at least
        :meth:`block_margin` px beyond ``target`` on every side inside the frame;
        ``stats`` are the whole frame's (:meth:`statistics`), ``dtype`` the input's.
        """
        prepared = prepare_region(block, stats, strength=self.strength, origin=origin)
        (t0, t1), (u0, u1) = target
        oy, ox = origin
        if stats.state.constant:
            crop = prepared.repaired[t0 - oy : t1 - oy, u0 - ox : u1 - ox]
            return finish(crop, dataclasses.replace(prepared, repaired=crop), dtype)
        slices, pads, padded_origin, length = [], [], [], []
        for start, size, n in zip(origin, block.shape, frame_shape, strict=True):
            before, after = frame_padding(n, self.align)
            # Pixels near an inner edge of the block lack the conditioning's context.
            lo = 0 if start == 0 else REGION_CONTEXT
            hi = size if start + size == n else size - REGION_CONTEXT
            slices.append(slice(lo, hi))
            pads.append((before if start == 0 else 0, after if start + size == n else 0))
            padded_origin.append(start + lo + before - pads[-1][0])
            length.append(n + before + after)
        channels = prepared.channels[:, slices[0], slices[1]]
        if any(p for pair in pads for p in pair):
            channels = np.pad(channels, [(0, 0), *pads], mode="reflect")
        py, px = (frame_padding(n, self.align)[0] for n in frame_shape)
        run = self._run(
            channels,
            (padded_origin[0], padded_origin[1]),
            (length[0], length[1]),
            ((t0 + py, t1 + py), (u0 + px, u1 + px)),
        )
        return finish(run_job(run), prepared, dtype)

    def block_margin(self) -> int:
        """Pixels of neighbouring input :meth:`denoise_block` needs around a target."""
        return block_margin(self.overlap, self.align)
