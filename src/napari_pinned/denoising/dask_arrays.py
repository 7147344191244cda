"""Dask arrays in, lazy dask arrays out, with the input's chunks.

:func:`~napari_pinned.denoising.denoiser.denoise` of a dask array is
:func:`denoise_dask`: one statistics task per frame, then every chunk with a halo of
:func:`~napari_pinned.denoising.engine.block_margin` px of its neighbours
(``dask.array.overlap``), through the same windows as the numpy path; with the lattice
guard, one more task per whole frame.  The model travels in the graph once, as a
:class:`~napari_pinned.denoising.model_spec.ModelSpec`, and is built once per process.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.checks import check_strength
from napari_pinned._util.intensity import check_image
from napari_pinned.denoising.engine import block_margin, check_orientations, guard_frame
from napari_pinned.denoising.inputs import check_array
from napari_pinned.denoising.model_spec import ModelSpec, cached_denoiser
from napari_pinned.denoising.tiling import resolve_tiling
from napari_pinned.nn.conditioning import (
    counts_non_negative,
    find_outliers,
    frame_statistics,
    repair_outliers,
)
from napari_pinned.quality.lattice_guard import guard_applies
from napari_pinned.settings import FrameOptions

if TYPE_CHECKING:
    from napari_pinned.noise.estimate import NoiseEstimate

__all__ = ["denoise_dask"]

#: Chunks of whole frames, one frame each.
_WHOLE_FRAMES = {0: 1, 1: -1, 2: -1}


def denoise_dask(
    image: Any,
    model: Any = "default",
    options: FrameOptions | None = None,
    *,
    batch_size: int = 4,
    noise: NoiseEstimate | None = None,
) -> Any:
    """A lazy dask array of the denoised image, with the input's chunks.

    Each frame's statistics are one task (the whole frame); each chunk is one task
    that reads its neighbours' pixels within
    :func:`~napari_pinned.denoising.engine.block_margin` of it (``dask.array.overlap``
    with ``boundary="none"``) and keeps its own pixels, equal to
    :func:`~napari_pinned.denoising.denoiser.denoise` of the numpy array up to float
    rounding.  Runs on whatever scheduler computes it: threads by default, a
    ``distributed.Client``'s cluster when one is active.  The model is one key of the
    graph (a :class:`~napari_pinned.denoising.model_spec.ModelSpec`) and is built once
    per worker process.

    ``model`` is as for :func:`~napari_pinned.denoising.denoiser.denoise` or a
    ``ModelSpec``; ``options``, ``batch_size`` and ``noise`` are as for
    :func:`~napari_pinned.denoising.denoiser.iter_denoise`.
    """
    import dask.array as da

    options = options or FrameOptions()
    arr = image if isinstance(image, da.Array) else da.asarray(image)
    _, dtype, _ = check_array(arr)
    strength = check_strength(options.strength)
    orientations = check_orientations(options.orientations)
    spec = model if isinstance(model, ModelSpec) else ModelSpec.of(model)
    tile, overlap = resolve_tiling(spec.config, options.tile, options.overlap)
    # Resolved and plain, so that every chunk's task finds the same cached Denoiser.
    resolved = dataclasses.replace(
        options,
        tile=tile,
        overlap=overlap,
        device=str(options.device),
        strength=strength,
        orientations=orientations,
    )
    stack = arr if arr.ndim == 3 else arr[None]
    stats = stack.rechunk(_WHOLE_FRAMES).map_blocks(
        _statistics_block,
        spec.config.normalization,
        spec.config.conditioned,
        noise,
        spec.config.lattice,
        dtype=object,
        chunks=((1,) * stack.shape[0], (1,), (1,)),
        meta=np.empty((0, 0, 0), object),
        name="pinned-statistics",
    )
    # With the guard, raw counts are clipped after it, as in the numpy path (which
    # frames it applies to: quality.lattice_guard.guard_applies).
    guard = bool(options.keep_lattice)
    chunk_dtype = np.dtype(np.float32) if guard else dtype
    result = _denoised_chunks(stack, stats, spec, resolved, batch_size, noise, chunk_dtype)
    if guard:
        result = _guarded(stack, result, stats, dtype, spec.metadata.get("noise"))
    if result.chunks != stack.chunks:
        result = result.rechunk(stack.chunks)
    return result if arr.ndim == 3 else result[0]


def _denoised_chunks(
    stack: Any,
    stats: Any,
    spec: ModelSpec,
    options: FrameOptions,
    batch_size: int,
    noise: NoiseEstimate | None,
    input_dtype: np.dtype,
) -> Any:
    """Every chunk of ``stack`` denoised from its halo (chunks at least the halo deep)."""
    import dask
    import dask.array as da
    from dask.array.overlap import overlap as add_overlap

    margin = block_margin(options.overlap, spec.config.alignment)
    chunks, depth = {}, {0: 0}
    for axis in (1, 2):
        chunks[axis], depth[axis] = _halo_chunks(stack.chunks[axis], margin)
    work = stack.rechunk(chunks)
    halo = add_overlap(work, depth=depth, boundary="none")
    starts = tuple(tuple(int(v) for v in np.cumsum((0, *c))) for c in work.chunks)
    return da.map_blocks(
        _denoise_chunk,
        halo,
        stats.rechunk((work.chunks[0], 1, 1)),
        dask.delayed(spec, pure=True),
        options=options,
        batch_size=batch_size,
        noise=noise,
        starts=starts,
        margin=margin,
        frame_shape=(stack.shape[-2], stack.shape[-1]),
        input_dtype=input_dtype,
        dtype=np.float32,
        chunks=work.chunks,
        meta=np.empty((0, 0, 0), np.float32),
        name="pinned-denoise",
    )


def _halo_chunks(chunks: tuple[int, ...], margin: int) -> tuple[tuple[int, ...], int]:
    """The chunks of one axis and the halo depth they need: chunks at least ``margin``
    deep (a halo then comes from one neighbour), or the whole axis as one chunk with no
    halo when the axis is no longer than ``margin`` (a frame smaller than the halo,
    which dask's ``overlap`` refuses)."""
    from dask.array.overlap import ensure_minimum_chunksize

    if len(chunks) == 1 or sum(chunks) <= margin:
        return (sum(chunks),), 0
    return ensure_minimum_chunksize(margin, chunks), margin


def _guarded(
    stack: Any, result: Any, stats: Any, input_dtype: np.dtype, training_noise: object
) -> Any:
    """The lattice guard on ``result``: it looks at a whole frame's spectrum, so one
    task per frame, as the statistics (chunks of whole frames)."""
    import dask.array as da

    return da.map_blocks(
        _guard_block,
        stack.rechunk(_WHOLE_FRAMES),
        result.rechunk(_WHOLE_FRAMES),
        stats,
        input_dtype=input_dtype,
        training_noise=training_noise,
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        name="pinned-keep-lattice",
    )


def _statistics_block(
    block: np.ndarray,
    normalization: str,
    conditioned: bool,
    noise: NoiseEstimate | None,
    lattice: bool,
) -> np.ndarray:
    """Frame statistics of a (frames, Y, X) block of whole frames, as an object array."""
    out = np.empty((block.shape[0], 1, 1), object)
    for i, frame in enumerate(block):
        checked = check_image(np.asarray(frame), name="image frame", ndim=(2,))
        out[i, 0, 0] = frame_statistics(
            checked, normalization, conditioned=conditioned, noise=noise, lattice=lattice
        )
    return out


def _denoise_chunk(
    block: np.ndarray,
    stats: np.ndarray,
    spec: ModelSpec,
    *,
    options: FrameOptions,
    batch_size: int,
    noise: NoiseEstimate | None,
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    margin: int,
    frame_shape: tuple[int, int],
    input_dtype: np.dtype,
    block_id: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """One dask chunk with its halo → the chunk's denoised core."""
    assert block_id is not None
    denoiser = cached_denoiser(spec, options, batch_size=batch_size, noise=noise)
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


def _guard_block(
    source: np.ndarray,
    result: np.ndarray,
    stats: np.ndarray,
    *,
    input_dtype: np.dtype,
    training_noise: object,
) -> np.ndarray:
    """:func:`~napari_pinned.denoising.engine.guard_frame` on a block of whole frames
    it applies to, each repaired as
    :meth:`~napari_pinned.denoising.engine.Denoiser.iter_frame` repairs it."""
    out = np.empty(result.shape, np.float32)
    for k, (frame, denoised) in enumerate(zip(source, result, strict=True)):
        if not guard_applies(training_noise, frame):
            out[k] = denoised
            counts_non_negative(out[k], input_dtype)  # a view: clipped in place
            continue
        frame_stats = stats[k, 0, 0]
        x = np.asarray(frame, np.float64)
        mask = find_outliers(x, frame_stats.detection, limits=frame_stats.limits)
        if mask.any():
            x = repair_outliers(x, mask, frame_stats.fill)
        out[k] = guard_frame(x, denoised, input_dtype)
    return out
