"""Denoising images, stacks and dask arrays of any size with a trained PINNED model.

**Exact tiling.**  An output pixel of the network depends only on the input pixels
within :func:`~napari_pinned.nn.network.receptive_reach` of it (73 px at depth 3, 153 px at
depth 4).  Each frame is first mirrored outwards by a context margin (:data:`CONTEXT`
px, rounded up so that the padded frame is a multiple of the network's alignment
``2**depth``), so pixels at the border see reflected lattice rather than the network's
zero padding.  The padded frame is then cut into windows of at most ``tile + 2·overlap``
px that overlap by at least ``2·overlap`` and start at multiples of the alignment (the
only shifts the network is equivariant to); every output pixel is taken from a window
in which it has at least ``overlap`` px of input on every side, or which reaches the
padded frame's edge there.  With ``overlap`` at least the reach — the default,
:func:`minimum_overlap`, is the reach rounded up to the alignment — no kept pixel sees
a window edge, so any tile size gives the whole frame's result to float rounding.  A
frame that fits in one window (up to :data:`DEFAULT_TILE` px plus the margins, by
default) is processed whole.

**Statistics once per frame.**  Outlier repair, normalisation and the noise estimate
are measured over the whole frame (:func:`napari_pinned.nn.conditioning.frame_statistics`)
and applied to every window and every dask chunk of it
(:func:`~napari_pinned.nn.conditioning.prepare_region`), never per tile.

**Streams and dask.**  :func:`iter_denoise` reads one frame at a time from any array
(numpy, a memory-mapped TIFF, zarr, dask) and can write each result into ``out`` (a
zarr array, a memory map, a TIFF writer), so memory does not grow with the stack.
:func:`denoise` of a dask array returns a lazy dask array with the input's chunks
(:func:`denoise_dask`): one statistics task per frame, then every chunk with a halo of
``overlap + alignment − 1 +`` :data:`~napari_pinned.nn.conditioning.REGION_CONTEXT` px of
its neighbours (``dask.array.overlap``), through the same windows.  The model travels
in the graph once, as a :class:`ModelSpec`, and is loaded once per process.

:class:`Denoiser` is the model made ready (used by all of the above);
:func:`iter_denoise` is the generator the GUI and the CLI use (stoppable between
batches of windows); :func:`denoise` is the one-call API.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.checks import check_strength
from napari_pinned._util.intensity import check_image
from napari_pinned._util.jobs import Job, run_job
from napari_pinned.nn.conditioning import (
    REGION_CONTEXT,
    FrameStats,
    Prepared,
    find_outliers,
    finish,
    frame_statistics,
    prepare,
    prepare_region,
    repair_outliers,
)
from napari_pinned.nn.runners import make_runner
from napari_pinned.noise.estimate import NoiseEstimate
from napari_pinned.quality.lattice_guard import keep_lattice
from napari_pinned.settings import DEFAULT_TILE, ORIENTATION_COUNTS

if TYPE_CHECKING:
    # torch and the torch modules are imported where they are used: denoising with an
    # ONNX model file imports no torch at all (napari_pinned.backends).
    import torch

    from napari_pinned.nn.network import ModelBundle
    from napari_pinned.settings import ModelConfig

ModelLike = Any  # a shipped model's name, a path, a ModelBundle, an OnnxModel, a ForeignModel


def _receptive_reach(config: Any) -> int:
    """:func:`napari_pinned.nn.network.receptive_reach`; ONNX models carry theirs."""
    reach = getattr(config, "receptive_reach", None)
    if reach is not None:
        return int(reach)
    from napari_pinned.nn.network import receptive_reach

    return receptive_reach(config)


__all__ = [
    "CONTEXT",
    "DEFAULT_TILE",
    "DenoiseProgress",
    "Denoiser",
    "ModelSpec",
    "denoise",
    "denoise_dask",
    "is_dask_array",
    "iter_denoise",
    "minimum_overlap",
    "tile_layout",
    "tile_starts",
    "windows_per_frame",
]

#: Mirrored context (pixels) added around every frame before tiling.
CONTEXT = 32
#: Input pixels per forward pass at most: small windows are batched up to ``batch_size``
#: and this, big ones go one at a time (activations of the width-8 depth-4 network take
#: about 280 bytes per input pixel).
BATCH_PIXELS = 1 << 22


@dataclass(frozen=True)
class DenoiseProgress:
    """Progress of a denoising job (:func:`iter_denoise`).

    ``tiles_*`` count network windows over the frames being processed (``done`` and
    ``total`` of the job protocol, :mod:`napari_pinned._util.jobs`); ``frames_done`` counts
    frames finished (and written to ``out``) so far, ``frame`` is the one in progress.
    ``noise`` holds each frame's estimated noise (noise-conditioned models; None for
    skipped frames) and ``repaired`` the number of outlier pixels repaired, both on the
    last record.  The last record also carries the ``output`` that the job returns
    (kept for callers that read it there).
    """

    tiles_done: int
    tiles_total: int
    frame: int
    frames_total: int
    output: Any = None
    noise: tuple[NoiseEstimate | None, ...] = ()
    repaired: int = 0
    frames_done: int = 0

    @property
    def done(self) -> int:
        """Tiles processed (the job protocol's ``done``)."""
        return self.tiles_done

    @property
    def total(self) -> int:
        """Tiles in the job (the job protocol's ``total``)."""
        return self.tiles_total

    @property
    def fraction(self) -> float:
        """Fraction of tiles processed, in [0, 1]."""
        return self.tiles_done / max(self.tiles_total, 1)


def minimum_overlap(config: ModelConfig) -> int:
    """The smallest halo (px) that makes tiling exact for a network: its
    :func:`~napari_pinned.nn.network.receptive_reach` rounded up to its alignment
    (36 px at depth 2, 80 at depth 3, 160 at depth 4)."""
    align = config.alignment
    return -(-_receptive_reach(config) // align) * align


def tile_layout(length: int, tile: int, overlap: int, align: int = 1) -> tuple[int, list[int]]:
    """Tile size and start offsets covering an axis of ``length`` pixels.

    Uses the fewest tiles of at most ``tile`` pixels that overlap by at least
    ``overlap``, then shrinks them to equal sizes so no tile computes much more than
    its share (512 px tiles on a 2112 px axis: five of 480 px instead of five of 512).
    Sizes and starts are multiples of ``align`` when ``length`` and ``tile`` are.
    """
    if length <= tile:
        return length, [0]
    count = -(-(length - overlap) // (tile - overlap))
    size = -(-(length + (count - 1) * overlap) // count)
    # Rounding starts down to the alignment can widen one gap by up to align - 1 pixels.
    size = min(tile, -(-size // align) * align + align)
    step = (length - size) / (count - 1)
    starts = [int(i * step) // align * align for i in range(count - 1)] + [length - size]
    return size, starts


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of :func:`tile_layout` (tiles of its returned size)."""
    return tile_layout(length, tile, overlap)[1]


def _frame_padding(length: int, align: int) -> tuple[int, int]:
    """Mirrored padding (before, after) of one frame axis.

    ``CONTEXT`` pixels on each side, rounded up so that the padded length is a multiple
    of the network's alignment: then every window starts at a multiple of it.
    """
    before = -(-CONTEXT // align) * align
    after = before + (-(length + 2 * before)) % align
    return before, after


def _axis_windows(
    first: int,
    last: int,
    length: int,
    target: tuple[int, int],
    tile: int,
    overlap: int,
    align: int,
) -> tuple[int, list[int], list[tuple[int, int]]]:
    """Windows along one axis of a padded frame of ``length`` px.

    The input is available for ``[first, last)`` and the output wanted for
    ``target``, all in padded-frame coordinates.  Returns the window size, the
    windows' starts and the part of ``target`` kept from each.
    """
    t0, t1 = target
    lo = max(-(-first // align) * align, (t0 - overlap) // align * align)
    hi = min(
        last // align * align if last < length else length, -(-(t1 + overlap) // align) * align
    )
    if (lo > 0 and lo > t0 - overlap) or (hi < length and hi < t1 + overlap):
        raise AssertionError(f"window [{first}, {last}) lacks context for [{t0}, {t1})")
    size, starts = tile_layout(hi - lo, tile + 2 * overlap, 2 * overlap, align)
    starts = [lo + s for s in starts]
    # Cut between neighbours in the middle of their overlap (≥ 2·overlap): each side
    # keeps at least ``overlap`` px of context.
    cuts = [lo, *((starts[k + 1] + starts[k] + size) // 2 for k in range(len(starts) - 1)), hi]
    keeps = [(max(cuts[k], t0), min(cuts[k + 1], t1)) for k in range(len(starts))]
    return size, starts, keeps


def windows_per_frame(
    shape: tuple[int, int],
    config: ModelConfig,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
) -> int:
    """How many network windows one frame of ``shape`` takes."""
    tile, overlap = _resolve_tiling(config, tile, overlap)
    count = 1
    for n in shape:
        before, after = _frame_padding(int(n), config.alignment)
        length = int(n) + before + after
        count *= len(
            _axis_windows(
                0, length, length, (before, before + int(n)), tile, overlap, config.alignment
            )[1]
        )
    return count


def _resolve_tiling(config: ModelConfig, tile: Any, overlap: Any) -> tuple[int, int]:
    """Validate the tile and overlap for a network; the tile rounded to its alignment."""
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 16:
        raise ValueError(f"tile size must be at least 16 pixels, got {tile!r}")
    needed = minimum_overlap(config)
    if overlap is None:
        overlap = needed
    elif isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)):
        raise ValueError(f"overlap must be a whole number of pixels, got {overlap!r}")
    elif overlap < needed:
        raise ValueError(
            f"overlap {overlap} px is too small for this model: it needs at least {needed} px "
            f"(its receptive field reaches {_receptive_reach(config)} px, rounded up to "
            f"multiples of {config.alignment}); leave it out to use that"
        )
    align = config.alignment
    return max(align, -(-int(tile) // align) * align), -(-int(overlap) // align) * align


#: The orientations :func:`denoise` averages over, in the order they are added, each as
#: (quarter turns, then mirror left-right): the identity and the anti-transpose, then the
#: half-turn and the transpose (the first 2 and the first 4 are groups, so an average
#: over them treats the axes alike), then the other four of the square's symmetries.
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


def _check_orientations(orientations: Any) -> int:
    integer = isinstance(orientations, (int, np.integer)) and not isinstance(orientations, bool)
    if not integer or orientations not in ORIENTATION_COUNTS:
        raise ValueError(f"orientations must be one of {ORIENTATION_COUNTS}, got {orientations!r}")
    return int(orientations)


class Denoiser:
    """A model made ready to denoise frames, windows and dask chunks exactly.

    Parameters are those of :func:`denoise`.  The network is loaded and moved to the
    device once; :meth:`iter_frame` denoises one frame, :meth:`denoise_block` one
    region of a frame from its surroundings (a dask chunk).
    """

    def __init__(
        self,
        model: ModelLike = "default",
        *,
        tile: int = DEFAULT_TILE,
        overlap: int | None = None,
        batch_size: int = 4,
        device: str | torch.device = "auto",
        strength: float = 1.0,
        noise: NoiseEstimate | None = None,
        backend: str = "auto",
        keep_lattice: bool = True,
        orientations: int = 1,
    ) -> None:
        self.strength = check_strength(strength)
        self.keep_lattice = bool(keep_lattice)
        self.orientations = _check_orientations(orientations)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 16:
            raise ValueError(f"tile size must be at least 16 pixels, got {tile!r}")
        # The network call: torch (channels-last on CPUs) or ONNX Runtime
        # (napari_pinned.backends); an ONNX file never imports torch.
        self.runner = make_runner(model, backend=backend, device=device)
        self.device = getattr(self.runner, "device", "cpu")
        self.bundle = getattr(self.runner, "bundle", None)
        self.config = self.runner.config
        self.tile, self.overlap = _resolve_tiling(self.config, tile, overlap)
        self.batch_size = batch_size
        self.noise = noise

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
            frame, config.normalization, conditioned=config.conditioned, noise=self.noise
        )

    def _run(
        self,
        channels: np.ndarray,
        origin: tuple[int, int],
        length: tuple[int, int],
        target: tuple[tuple[int, int], tuple[int, int]],
    ) -> Generator[int, None, np.ndarray]:
        """Network output (model units) for ``target`` of a padded frame of ``length``;
        ``channels`` hold the padded frame from ``origin`` on.  Yields windows done."""
        h, w = channels.shape[1:]
        sy, ys, keep_y = _axis_windows(
            origin[0], origin[0] + h, length[0], target[0], self.tile, self.overlap, self.align
        )
        sx, xs, keep_x = _axis_windows(
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
        batch = max(1, min(self.batch_size, BATCH_PIXELS // (sy * sx)))
        oy, ox = origin
        for start in range(0, len(jobs), batch):
            group = jobs[start : start + batch]
            stacked = np.stack(
                [channels[:, y - oy : y - oy + sy, x - ox : x - ox + sx] for y, x, _, _ in group]
            )
            pred_np = self._predict(stacked)[:, 0]
            for (y, x, (a, b), (c, d)), window in zip(group, pred_np, strict=True):
                out[a - t0 : b - t0, c - u0 : d - u0] = window[a - y : b - y, c - x : d - x]
            yield len(group)
        return out

    def _predict(self, stacked: np.ndarray) -> np.ndarray:
        """The network on a batch of windows, averaged over :attr:`orientations` of
        them.  A window is turned or mirrored as a whole, halo included, and its output
        turned back, so each average is that of the whole frame turned: exact tiling
        still holds."""
        if self.orientations == 1:
            return self.runner(stacked)
        total = None
        for turns, mirror in ORIENTATIONS[: self.orientations]:
            view = np.rot90(stacked, turns, axes=(2, 3))
            view = view[..., ::-1] if mirror else view
            pred = self.runner(np.ascontiguousarray(view))
            pred = pred[..., ::-1] if mirror else pred
            pred = np.rot90(pred, -turns, axes=(2, 3))
            total = pred.astype(np.float32) if total is None else total + pred
        return total / np.float32(self.orientations)

    def iter_frame(self, frame: np.ndarray) -> Generator[int, None, tuple[np.ndarray, Prepared]]:
        """Denoise one 2D frame; yields windows done, returns ``(output, prepared)``."""
        config = self.config
        prepared = prepare(
            frame,
            config.normalization,
            conditioned=config.conditioned,
            strength=self.strength,
            noise=self.noise,
        )
        if prepared.state.constant:
            yield self.windows(frame.shape)
            return finish(prepared.repaired, prepared, frame.dtype), prepared
        pads = [_frame_padding(n, self.align) for n in frame.shape]
        channels = np.pad(prepared.channels, [(0, 0), *pads], mode="reflect")
        target = tuple(
            (before, before + n) for n, (before, _) in zip(frame.shape, pads, strict=True)
        )
        units = yield from self._run(channels, (0, 0), channels.shape[1:], target)
        if not self.keep_lattice:
            return finish(units, prepared, frame.dtype), prepared
        # Guarded before raw counts are clipped at zero, as the dask path does.
        result = guard_frame(prepared.repaired, finish(units, prepared), frame.dtype)
        return result, prepared

    def denoise_block(
        self,
        block: np.ndarray,
        stats: FrameStats,
        *,
        origin: tuple[int, int],
        frame_shape: tuple[int, int],
        target: tuple[tuple[int, int], tuple[int, int]],
        dtype: np.dtype,
    ) -> np.ndarray:
        """Denoise ``target`` (frame coordinates) of a frame from a block of it.

        ``block`` holds the frame from ``origin`` on and must reach at least
        :meth:`block_margin` px beyond ``target`` on every side inside the frame;
        ``stats`` are the whole frame's (:meth:`statistics`), ``dtype`` the input's.
        """
        prepared = prepare_region(block, stats, strength=self.strength)
        (t0, t1), (u0, u1) = target
        oy, ox = origin
        if stats.state.constant:
            crop = prepared.repaired[t0 - oy : t1 - oy, u0 - ox : u1 - ox]
            return finish(crop, dataclasses.replace(prepared, repaired=crop), dtype)
        h, w = block.shape
        slices, pads, padded_origin, length = [], [], [], []
        for start, size, n in ((oy, h, frame_shape[0]), (ox, w, frame_shape[1])):
            before, after = _frame_padding(n, self.align)
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
        py, px = (
            _frame_padding(frame_shape[0], self.align)[0],
            _frame_padding(frame_shape[1], self.align)[0],
        )
        run = self._run(
            channels,
            (padded_origin[0], padded_origin[1]),
            (length[0], length[1]),
            ((t0 + py, t1 + py), (u0 + px, u1 + px)),
        )
        units = run_job(run)
        return finish(units, prepared, dtype)

    def block_margin(self) -> int:
        """Pixels of neighbouring input :meth:`denoise_block` needs around a target."""
        return self.overlap + self.align - 1 + REGION_CONTEXT


def guard_frame(source: np.ndarray, result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """:func:`napari_pinned.quality.lattice_guard.keep_lattice` on one whole frame, keeping
    raw counts non-negative."""
    kept = keep_lattice(source, result)
    if np.issubdtype(dtype, np.unsignedinteger):
        np.maximum(kept, 0.0, out=kept)
    return kept


def is_dask_array(image: Any) -> bool:
    """True for a dask array (without importing dask when it is not loaded)."""
    import sys

    module = sys.modules.get("dask.array")
    return module is not None and isinstance(image, module.Array)


def _check_array(image: Any) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and whether ``image`` is in memory (numpy), checked without reading
    a lazy array: its values are checked frame by frame as they are read."""
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if isinstance(image, np.ndarray) or shape is None or dtype is None:
        arr = check_image(image, name="image", ndim=(2, 3))
        return arr.shape, arr.dtype, True
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    if (
        dtype == np.bool_
        or not np.issubdtype(dtype, np.number)
        or np.issubdtype(dtype, np.complexfloating)
    ):
        raise ValueError(f"image has dtype {dtype}; expected real-valued intensities")
    if len(shape) >= 3 and shape[-1] in (3, 4) and shape[-2] > 4:
        raise ValueError(
            f"image looks like an RGB(A) image (shape {shape}); convert it to greyscale first"
        )
    if len(shape) not in (2, 3):
        raise ValueError(f"image must be 2D or 3D, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"image is empty (shape {shape})")
    return shape, dtype, False


def iter_denoise(
    image: Any,
    model: ModelLike = "default",
    *,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    strength: float = 1.0,
    noise: NoiseEstimate | None = None,
    out: Any = None,
    skip: Collection[int] = (),
    backend: str = "auto",
    keep_lattice: bool = True,
    orientations: int = 1,
) -> Job[DenoiseProgress, Any]:
    """Denoise frame by frame, window by window, as a job (:mod:`napari_pinned._util.jobs`):
    yields :class:`DenoiseProgress`, returns the output (``out``, or a new float32
    array); the last record carries the output too.

    Stop iterating at any time to cancel.  Parameters are those of :func:`denoise`,
    plus ``skip``: indices of frames not to process (already in ``out``, for resuming).
    ``image`` may be any array with ``shape``, ``dtype`` and indexing (numpy, memory
    map, zarr, dask): frames are read one at a time.
    """
    shape, _, in_memory = _check_array(image)
    foreign = _foreign_package(model, device)
    if foreign is not None:
        # A BMZ package from another tool: bioimageio.core's pipeline and tiling, whose
        # last record carries the output.
        last = None
        for last in foreign.iter_denoise(image):
            yield last
        return None if last is None else last.output
    denoiser = _make_denoiser(
        model,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        strength=strength,
        noise=noise,
        backend=backend,
        keep_lattice=keep_lattice,
        orientations=orientations,
    )
    stack = len(shape) == 3
    count = shape[0] if stack else 1
    skipped = {int(i) for i in skip}
    if any(not 0 <= i < count for i in skipped):
        raise ValueError(f"skip holds frame indices outside 0…{count - 1}")
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the image {shape}")
    todo = [f for f in range(count) if f not in skipped]
    per_frame = denoiser.windows(shape[-2:])
    total = per_frame * len(todo)
    estimates: list[NoiseEstimate | None] = [None] * count
    repaired = 0
    done = 0
    for k, f in enumerate(todo):
        raw = image[f] if stack else image
        frame = (
            np.asarray(raw)
            if in_memory
            else check_image(
                np.asarray(raw), name=f"image frame {f}" if stack else "image", ndim=(2,)
            )
        )
        run = denoiser.iter_frame(frame)
        while True:
            try:
                done += next(run)
            except StopIteration as stop:
                result, prepared = stop.value
                break
            if done < total:
                yield DenoiseProgress(done, total, f, count, frames_done=k)
        if not np.isfinite(result).all():
            where = f"frame {f}: " if stack else ""
            raise ValueError(
                f"{where}the result contains NaN or infinite values (extreme input values or a "
                "diverged model); it was not written"
            )
        if stack:
            out[f] = result
        else:
            out[...] = result
        estimates[f] = prepared.noise
        repaired += int(prepared.outliers.sum())
        if k + 1 < len(todo):
            yield DenoiseProgress(done, total, f, count, frames_done=k + 1)
    yield DenoiseProgress(
        total,
        total,
        (todo[-1] if todo else count - 1),
        count,
        output=out,
        noise=tuple(estimates),
        repaired=repaired,
        frames_done=len(todo),
    )
    return out


def denoise(
    image: Any,
    model: ModelLike = "default",
    *,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    strength: float = 1.0,
    noise: NoiseEstimate | None = None,
    progress: Callable[[DenoiseProgress], None] | None = None,
    out: Any = None,
    backend: str = "auto",
    keep_lattice: bool = True,
    orientations: int = 1,
) -> Any:
    """Denoise a 2D image or a (N, Y, X) stack: numpy, zarr or dask.

    Parameters
    ----------
    image : array
        Greyscale image or stack, uint8/uint16/float: a numpy array, any array that
        reads frames by indexing (a zarr array, a memory-mapped TIFF), or a dask array
        (then the result is a lazy dask array, see :func:`denoise_dask`).
    model : str, path, ModelBundle, OnnxModel or ForeignModel
        A shipped model by name (``"default"``: realistic STEM noise, ``"cdn"``: the
        paper's CDN), a model file, an ONNX file (:func:`napari_pinned.nn.runners.export_onnx`),
        a BioImage Model Zoo package (``.zip``; napari-pinned's own run like model files,
        others through bioimageio.core, see :mod:`napari_pinned.nn.bmz`), or a model in memory.
    tile : int
        Output pixels per window edge (rounded up to the network's alignment); any size
        gives the same result, larger ones less halo work and more memory.  Frames that
        fit are processed whole.
    overlap : int, optional
        Halo (px) each window carries on every side; at least, and by default,
        :func:`minimum_overlap` of the model.  Smaller raises ``ValueError``.
    batch_size : int
        Windows per forward pass at most (also bounded by :data:`BATCH_PIXELS`).
    device : str or torch.device
        "auto" (CUDA, then MPS, then CPU) or an explicit device.
    strength : float
        Noise-conditioned models: factor on the estimated noise level (1 = as
        measured; below 1 denoises less, above 1 more; 0 returns the input with its
        outliers repaired).  Ignored by other models.
    noise : NoiseEstimate, optional
        The noise of the image, if known (e.g. measured on another frame); estimated
        from each frame otherwise.  Noise-conditioned models only.
    progress : callable, optional
        Called with a :class:`DenoiseProgress` after every batch of windows and frame
        (not for dask arrays).
    out : array, optional
        Where to write the result, frame by frame (same shape; a zarr array or memory
        map keeps memory flat for long stacks).  Returned.  Not for dask arrays.
    backend : {"auto", "torch", "onnx"}
        What runs the network (:mod:`napari_pinned.nn.runners`): torch, or ONNX Runtime
        (the ``[onnx]`` extra; equal to torch to 1e-3 of the range).  ``"auto"``: ONNX
        files in ONNX Runtime, other models in torch.
    keep_lattice : bool
        Give back what the network took from the input's strong lattice reflections
        (:func:`napari_pinned.quality.lattice_guard.keep_lattice`): where the input's spectrum
        stands ten times above its noise floor the frequency is signal, and the output
        keeps it; and take back what the output has where the input has only noise.
        On by default; off gives the network's output as it is.
    orientations : {1, 2, 4, 8}
        Average the network over this many orientations of the image (turned and
        mirrored, then turned back; :data:`ORIENTATIONS`): a better estimate of the same
        thing, at that many times the network's time.  1 (the default) is the fastest.

    Returns
    -------
    numpy.ndarray, dask.array.Array or ``out``
        float32 array of the input's shape, in the input's intensity scale.
    """
    per_frame = {
        "tile": tile,
        "overlap": overlap,
        "batch_size": batch_size,
        "device": device,
        "strength": strength,
        "noise": noise,
        "keep_lattice": keep_lattice,
        "orientations": orientations,
    }
    if is_dask_array(image):
        if out is not None:
            raise ValueError("out is for numpy and zarr inputs; store a dask result with to_zarr")
        return denoise_dask(image, model, **per_frame)
    return run_job(iter_denoise(image, model, out=out, backend=backend, **per_frame), progress)


# -- models for other processes --------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A model as plain data for other processes (dask workers): configuration, CPU
    weights and a token naming them.  :func:`cached_denoiser` builds the network from
    it once per process and token."""

    token: str
    config: ModelConfig
    state: dict[str, torch.Tensor]
    metadata: dict
    source: str

    @classmethod
    def of(cls, model: ModelLike) -> ModelSpec:
        """The spec of a shipped model's name, a model file or a bundle."""
        import torch

        from napari_pinned.nn.model_files import load_model

        bundle = load_model(model, device="cpu")
        state = {k: v.detach().to("cpu").contiguous() for k, v in bundle.model.state_dict().items()}
        digest = hashlib.sha256(json.dumps(bundle.config.to_dict(), sort_keys=True).encode())
        for name in sorted(state):
            digest.update(name.encode())
            digest.update(state[name].reshape(-1).view(torch.uint8).numpy().tobytes())
        return cls(digest.hexdigest(), bundle.config, state, dict(bundle.metadata), bundle.source)

    def bundle(self) -> ModelBundle:
        """A fresh network with these weights, in evaluation mode."""
        from napari_pinned.nn.network import ModelBundle, build_model

        net = build_model(self.config)
        net.load_state_dict(self.state, strict=True)
        return ModelBundle(net.eval(), self.config, dict(self.metadata), self.source)


_CACHE: OrderedDict[tuple, Denoiser] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4
#: How many networks this process has built from specs (read by the tests).
SPEC_LOADS = {"count": 0}


def cached_denoiser(spec: ModelSpec, **settings: Any) -> Denoiser:
    """This process's :class:`Denoiser` for ``spec`` and ``settings`` (built once)."""
    key = (spec.token, *sorted((k, repr(v)) for k, v in settings.items()))
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
        denoiser = Denoiser(spec.bundle(), **settings)
        SPEC_LOADS["count"] += 1
        _CACHE[key] = denoiser
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return denoiser


def _foreign_package(model: Any, device: Any) -> Any:
    """The :class:`napari_pinned.nn.bmz.ForeignModel` that ``model`` is or names (a BMZ
    package from another tool), else None: napari-pinned's own packages load as models."""
    from napari_pinned.nn import bmz

    if isinstance(model, bmz.ForeignModel):
        return model
    if isinstance(model, (str, os.PathLike)) and bmz.is_package(model):
        return bmz.foreign_package(model, device=str(device))
    return None


def _make_denoiser(model: ModelLike | ModelSpec, **settings: Any) -> Denoiser:
    """A :class:`Denoiser`; for a :class:`ModelSpec`, the one this process keeps."""
    if isinstance(model, ModelSpec):
        return cached_denoiser(model, **settings)
    return Denoiser(model, **settings)


# -- dask --------------------------------------------------------------------------------


def _statistics_block(
    block: np.ndarray, normalization: str, conditioned: bool, noise: NoiseEstimate | None
) -> np.ndarray:
    """Frame statistics of a (frames, Y, X) block of whole frames, as an object array."""
    out = np.empty((block.shape[0], 1, 1), object)
    for i, frame in enumerate(block):
        checked = check_image(np.asarray(frame), name="image frame", ndim=(2,))
        out[i, 0, 0] = frame_statistics(
            checked, normalization, conditioned=conditioned, noise=noise
        )
    return out


def _denoise_chunk(
    block: np.ndarray,
    stats: np.ndarray,
    spec: ModelSpec,
    *,
    settings: dict[str, Any],
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    margin: int,
    frame_shape: tuple[int, int],
    input_dtype: np.dtype,
    block_id: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """One dask chunk with its halo → the chunk's denoised core."""
    assert block_id is not None
    denoiser = cached_denoiser(spec, **settings)
    _, i, j = block_id
    core = []
    origin = []
    for axis, index in ((1, i), (2, j)):
        c0, c1 = starts[axis][index], starts[axis][index + 1]
        core.append((c0, c1))
        origin.append(c0 - (margin if index > 0 else 0))
    out = np.empty((block.shape[0], core[0][1] - core[0][0], core[1][1] - core[1][0]), np.float32)
    for k, frame in enumerate(block):
        out[k] = denoiser.denoise_block(
            np.asarray(frame),
            stats[k, 0, 0],
            origin=(origin[0], origin[1]),
            frame_shape=frame_shape,
            target=(core[0], core[1]),
            dtype=input_dtype,
        )
    return out


def denoise_dask(
    image: Any,
    model: ModelLike | ModelSpec = "default",
    *,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    strength: float = 1.0,
    noise: NoiseEstimate | None = None,
    keep_lattice: bool = True,
    orientations: int = 1,
) -> Any:
    """A lazy dask array of the denoised image, with the input's chunks.

    Each frame's statistics are one task (the whole frame); each chunk is one task
    that reads its neighbours' pixels within :meth:`Denoiser.block_margin` of it
    (``dask.array.overlap`` with ``boundary="none"``) and keeps its own pixels, equal
    to :func:`denoise` of the numpy array up to float rounding.  Runs on whatever
    scheduler computes it: threads by default, a ``distributed.Client``'s cluster when
    one is active.  The model is one key of the graph (a :class:`ModelSpec`) and is
    built once per worker process.

    Parameters are those of :func:`denoise`; ``model`` may also be a :class:`ModelSpec`.
    """
    import dask
    import dask.array as da
    from dask.array.overlap import ensure_minimum_chunksize
    from dask.array.overlap import overlap as add_overlap

    arr = image if isinstance(image, da.Array) else da.asarray(image)
    shape, dtype, _ = _check_array(arr)
    check_strength(strength)
    _check_orientations(orientations)
    spec = model if isinstance(model, ModelSpec) else ModelSpec.of(model)
    tile_px, overlap_px = _resolve_tiling(spec.config, tile, overlap)
    stack = arr if arr.ndim == 3 else arr[None]
    settings = {
        "tile": tile_px,
        "overlap": overlap_px,
        "batch_size": batch_size,
        "device": str(device),
        "strength": float(strength),
        "noise": noise,
        "orientations": int(orientations),
    }
    margin = overlap_px + spec.config.alignment - 1 + REGION_CONTEXT
    original_chunks = stack.chunks
    # Every chunk must be at least the halo deep, so that a halo comes from one neighbour.
    work = stack.rechunk(
        {
            1: ensure_minimum_chunksize(margin, stack.chunks[1]),
            2: ensure_minimum_chunksize(margin, stack.chunks[2]),
        }
    )
    stats = stack.rechunk({0: 1, 1: -1, 2: -1}).map_blocks(
        _statistics_block,
        spec.config.normalization,
        spec.config.conditioned,
        noise,
        dtype=object,
        chunks=((1,) * stack.shape[0], (1,), (1,)),
        meta=np.empty((0, 0, 0), object),
        name="pinned-statistics",
    )
    frame_stats = stats
    stats = stats.rechunk((work.chunks[0], 1, 1))
    halo = add_overlap(work, depth={0: 0, 1: margin, 2: margin}, boundary="none")
    starts = tuple(tuple(int(v) for v in np.cumsum((0, *c))) for c in work.chunks)
    result = da.map_blocks(
        _denoise_chunk,
        halo,
        stats,
        dask.delayed(spec, pure=True),
        settings=settings,
        starts=starts,
        margin=margin,
        frame_shape=(shape[-2], shape[-1]),
        # With the guard, raw counts are clipped after it, as in the numpy path.
        input_dtype=np.dtype(np.float32) if keep_lattice else dtype,
        dtype=np.float32,
        chunks=work.chunks,
        meta=np.empty((0, 0, 0), np.float32),
        name="pinned-denoise",
    )
    if keep_lattice:
        # The guard looks at a whole frame's spectrum: one task per frame, as the
        # statistics (chunks of whole frames), then back to the input's chunks.
        whole = {0: 1, 1: -1, 2: -1}
        result = da.map_blocks(
            _guard_block,
            stack.rechunk(whole),
            result.rechunk(whole),
            frame_stats,
            input_dtype=dtype,
            dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32),
            name="pinned-keep-lattice",
        )
    if result.chunks != original_chunks:
        result = result.rechunk(original_chunks)
    return result if arr.ndim == 3 else result[0]


def _guard_block(
    source: np.ndarray, result: np.ndarray, stats: np.ndarray, *, input_dtype: np.dtype
) -> np.ndarray:
    """:func:`guard_frame` on a block of whole frames, each repaired as
    :meth:`Denoiser.iter_frame` repairs it."""
    out = np.empty(result.shape, np.float32)
    for k, (frame, denoised) in enumerate(zip(source, result, strict=True)):
        frame_stats = stats[k, 0, 0]
        x = np.asarray(frame, np.float64)
        mask = find_outliers(x, frame_stats.detection)
        if mask.any():
            x = repair_outliers(x, mask, frame_stats.fill)
        out[k] = guard_frame(x, denoised, input_dtype)
    return out
