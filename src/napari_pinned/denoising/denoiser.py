"""Denoising images and stacks of any size with a trained PINNED model: the API.

:func:`denoise` is the one-call API; :func:`iter_denoise` is the job the GUI and the
CLI use (:mod:`napari_pinned._util.jobs`: stoppable after every network pass).  Both
read one frame at a time from any array (numpy, a memory-mapped TIFF, zarr) and can
write each result into ``out`` (a zarr array, a memory map, a TIFF writer), so memory
does not grow with the stack; a request that cannot fit in memory is refused before any
work.  :func:`denoise` of a dask array returns a lazy dask array with the input's
chunks (:func:`~napari_pinned.denoising.dask_arrays.denoise_dask`).

How: frames are cut into windows whose results are exactly the whole frame's
(:mod:`.tiling`), with statistics measured once per frame, by a
:class:`~napari_pinned.denoising.engine.Denoiser` (the model made ready); other
processes get the model as a :class:`~napari_pinned.denoising.model_spec.ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from napari_pinned._util.intensity import check_image
from napari_pinned._util.jobs import Job, run_job
from napari_pinned._util.memory import check_memory, denoise_bytes
from napari_pinned.denoising.dask_arrays import denoise_dask
from napari_pinned.denoising.engine import Denoiser
from napari_pinned.denoising.inputs import (
    as_array,
    check_array,
    check_noise,
    check_noise_fit,
    is_dask_array,
)
from napari_pinned.denoising.model_spec import ModelSpec, make_denoiser
from napari_pinned.denoising.tiling import check_tile
from napari_pinned.nn.resolve import foreign_model
from napari_pinned.settings import DEFAULT_TILE, FrameOptions

if TYPE_CHECKING:
    import torch

    from napari_pinned.nn.foreign import ForeignModel
    from napari_pinned.noise.estimate import NoiseEstimate

__all__ = [
    "DenoiseProgress",
    "Denoised",
    "denoise",
    "denoise_with_uncertainty",
    "iter_denoise",
    "iter_denoise_with_uncertainty",
]

ModelLike = Any  # a shipped model's name, a path, a ModelBundle, an OnnxModel, a ForeignModel


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


def _denoise_foreign(foreign: ForeignModel, image: Any) -> Job[DenoiseProgress, Any]:
    """Denoise with a BMZ package from another tool, frame by frame through
    bioimageio.core's pipeline and tiling; the last record carries the output."""
    arr = check_image(image, name="image", ndim=(2, 3))
    frames = arr[None] if arr.ndim == 2 else arr
    count = len(frames)
    output = np.empty(frames.shape, np.float32)
    for f, result in enumerate(foreign.denoise_frames(frames)):
        output[f] = result
        if f + 1 < count:
            yield DenoiseProgress(f + 1, count, f, count)
    result = output[0] if arr.ndim == 2 else output
    yield DenoiseProgress(count, count, count - 1, count, output=result)
    return result


def _check_fits(shape: tuple[int, ...], tile: Any, whole: bool, uncertain: bool = False) -> None:
    """Refuse, in one line, a request that cannot fit in the available memory
    (:func:`napari_pinned._util.memory.denoise_bytes`, the CLI's estimate).  ``whole``:
    the input is in memory or the whole output is kept there.  ``uncertain``: a float32
    uncertainty frame, and whole uncertainty when the output is whole, come on top."""
    dims = "×".join(str(n) for n in shape)
    frame = 4 * shape[-1] * shape[-2]
    extra = (4 * int(np.prod(shape)) if whole else 0) + frame if uncertain else 0
    check_memory(
        denoise_bytes(shape, check_tile(tile), in_memory=whole) + extra,
        f"denoising the {dims} px image",
    )


def iter_denoise(
    image: Any,
    model: ModelLike = "default",
    options: FrameOptions | None = None,
    *,
    batch_size: int = 4,
    noise: NoiseEstimate | None = None,
    out: Any = None,
    skip: Collection[int] = (),
    backend: str = "auto",
    uncertainty: Any = None,
) -> Job[DenoiseProgress, Any]:
    """Denoise frame by frame, window by window, as a job (:mod:`napari_pinned._util.jobs`):
    yields :class:`DenoiseProgress`, returns the output (``out``, or a new float32
    array); the last record carries the output too.  Stop iterating at any time to
    cancel.  ``image`` may be any array with ``shape``, ``dtype`` and indexing (numpy,
    memory map, zarr, dask): frames are read one at a time.  A request that cannot fit
    in the available memory raises ``ValueError`` at the first ``next()``, before the
    model is loaded.

    Parameters
    ----------
    image, model, batch_size, noise, out, backend
        As for :func:`denoise`.
    options : FrameOptions, optional
        :func:`denoise`'s per-frame options (``tile``, ``overlap``, ``device``,
        ``strength``, ``keep_lattice``, ``orientations``); its defaults when None.
    skip : collection of int
        Indices of frames not to process (already in ``out``, for resuming).
    uncertainty : array, optional
        Where to write each frame's uncertainty (the output's standard deviation,
        :mod:`~napari_pinned.denoising.uncertainty`), frame by frame like ``out``; of
        the image's shape.  Noise-aware models at strength above 0.
    """
    options = options or FrameOptions()
    image = as_array(image)
    check_noise(noise)
    shape, _, in_memory = check_array(image)
    foreign = foreign_model(model, device=str(options.device))
    if foreign is not None:
        if uncertainty is not None:
            raise ValueError("the uncertainty needs one of napari-pinned's own models")
        # A BMZ package from another tool: bioimageio.core's pipeline and tiling.
        return (yield from _denoise_foreign(foreign, image))
    if uncertainty is not None and tuple(uncertainty.shape) != shape:
        raise ValueError(f"uncertainty has shape {tuple(uncertainty.shape)}, the image {shape}")
    # The estimate is of napari-pinned's own networks.  Arrays read frame by frame
    # (TIFF frames, zarr) into an ``out`` stream; a numpy input, or the new output
    # made without ``out``, is whole in memory.
    whole = in_memory or out is None
    _check_fits(shape, options.tile, whole=whole, uncertain=uncertainty is not None)
    if noise is None:
        check_noise_fit(shape)
    settings = {"batch_size": batch_size, "noise": noise, "backend": backend}
    if uncertainty is None:
        denoiser = make_denoiser(model, options, **settings)
    else:
        # Its own Denoiser, not a process's shared one (model_spec.cached_denoiser).
        source = model.bundle() if isinstance(model, ModelSpec) else model
        denoiser = Denoiser(source, options, **settings, uncertainty=True)
    count = shape[0] if len(shape) == 3 else 1
    skipped = {int(i) for i in skip}
    if any(not 0 <= i < count for i in skipped):
        raise ValueError(f"skip holds frame indices outside 0…{count - 1}")
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the image {shape}")
    todo = [f for f in range(count) if f not in skipped]
    frames = _denoise_frames(image, shape, denoiser, (out, uncertainty), todo, in_memory)
    return (yield from frames)


def _denoise_frames(
    image: Any,
    shape: tuple[int, ...],
    denoiser: Denoiser,
    outs: tuple[Any, Any],
    todo: list[int],
    in_memory: bool,
) -> Job[DenoiseProgress, Any]:
    """The frames ``todo`` of ``image`` denoised into ``outs`` (the output, and the
    uncertainty or None), with progress records."""
    out, uncertainty = outs
    stack = len(shape) == 3
    count = shape[0] if stack else 1
    total = denoiser.windows(shape[-2:]) * len(todo)
    estimates: list[NoiseEstimate | None] = [None] * count
    repaired = 0
    done = 0
    # The model is loaded: a stop request need not wait for the first frame's statistics.
    yield DenoiseProgress(0, total, todo[0] if todo else count - 1, count)
    for k, f in enumerate(todo):
        frame = _read_frame(image, f if stack else None, in_memory)
        run = (
            denoiser.iter_frame(frame)
            if uncertainty is None
            else denoiser.iter_frame_uncertain(frame)
        )
        while True:
            try:
                done += next(run)
            except StopIteration as stop:
                result, *sigma, prepared = stop.value
                break
            if done < total:
                yield DenoiseProgress(done, total, f, count, frames_done=k)
        _store_frame(out, f if stack else None, result)
        if uncertainty is not None:
            _store_frame(uncertainty, f if stack else None, sigma[0])
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


def _read_frame(image: Any, index: int | None, in_memory: bool) -> np.ndarray:
    """Frame ``index`` of a stack (None: the image itself), checked as it is read unless
    the whole input was checked in memory."""
    if in_memory:
        return np.asarray(image if index is None else image[index])
    # A lazy array is read by indexing, its protocol: numpy would take one without
    # ``__array__`` for a sequence of rows, each read with the whole frame.
    raw = np.asarray(image[...] if index is None else image[index])
    return check_image(raw, name="image" if index is None else f"image frame {index}", ndim=(2,))


def _store_frame(out: Any, index: int | None, result: np.ndarray) -> None:
    """Write one frame's result into ``out`` (None: the whole of it), refusing a result
    that is not finite."""
    if not np.isfinite(result).all():
        where = "" if index is None else f"frame {index}: "
        raise ValueError(
            f"{where}the result contains NaN or infinite values (extreme input values or a "
            "diverged model); it was not written"
        )
    if index is None:
        out[...] = result
    else:
        out[index] = result


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
        Greyscale image or stack, uint8/uint16/float: numpy, any array that reads
        frames by indexing (zarr, a memory-mapped TIFF), or dask (the result is then a
        lazy dask array, :func:`~napari_pinned.denoising.dask_arrays.denoise_dask`).
    model : str, path, ModelBundle, OnnxModel or ForeignModel
        A shipped model's name (``"default"``: realistic STEM noise, ``"cdn"``: the
        paper's CDN), a model file, an ONNX file, a BioImage Model Zoo package
        (``.zip``; others' run through bioimageio.core, :mod:`napari_pinned.nn.foreign`),
        or a model in memory.
    tile : int
        Output pixels per window edge (rounded up to the network's alignment); any size
        gives the same result, larger ones less halo work and more memory.
    overlap : int, optional
        Halo (px) of every window; at least, and by default,
        :func:`~napari_pinned.denoising.tiling.minimum_overlap` of the model.
    batch_size : int
        Windows per forward pass at most (and at most
        :data:`~napari_pinned.denoising.engine.BATCH_PIXELS` input pixels, on a CPU
        :data:`~napari_pinned.denoising.engine.CPU_BATCH_PIXELS`).
    device : str or torch.device
        "auto" (CUDA, then MPS, then CPU) or an explicit device.
    strength : float
        Noise-conditioned models (others ignore it): factor on the estimated noise
        level (1 = as measured, below 1 less, above more; 0 repairs outliers only).
    noise : NoiseEstimate, optional
        The image's noise if known; else estimated per frame (conditioned models).
    progress : callable, optional
        Called with each :class:`DenoiseProgress` (not for dask arrays).
    out : array, optional
        Where to write the result, frame by frame (a zarr array or a memory map keeps
        memory flat).  Returned.  Not for dask arrays.
    backend : {"auto", "torch", "onnx"}
        What runs the network (:mod:`napari_pinned.nn.runners`); ``"auto"``: ONNX
        files in ONNX Runtime (the ``[onnx]`` extra), other models in torch.
    keep_lattice : bool
        Keep the input's strong lattice reflections, which the network may take,
        and drop what it adds where the input has only noise
        (:func:`napari_pinned.quality.lattice_guard.keep_lattice`); not for models
        trained on CDN on CDN-like frames (clipped at both ends), whose noise weakens
        the input's reflections (``guard_applies``).
    orientations : {1, 2, 4, 8}
        Average the network over this many turns and mirrors of the image
        (:data:`~napari_pinned.denoising.engine.ORIENTATIONS`), at that many times
        the time.

    Returns
    -------
    numpy.ndarray, dask.array.Array or ``out``
        float32 array of the input's shape, in the input's intensity scale.
    """
    per_frame = {"tile": tile, "overlap": overlap, "device": device, "strength": strength}
    options = FrameOptions(**per_frame, keep_lattice=keep_lattice, orientations=orientations)
    check_noise(noise)
    if is_dask_array(image):
        if out is not None:
            raise ValueError("out is for numpy and zarr inputs; store a dask result with to_zarr")
        return denoise_dask(image, model, options, batch_size=batch_size, noise=noise)
    job = iter_denoise(
        image, model, options, batch_size=batch_size, noise=noise, out=out, backend=backend
    )
    return run_job(job, progress)


class Denoised(NamedTuple):
    """:func:`denoise_with_uncertainty`'s result: the output and, per pixel, its standard
    deviation in the output's units (both float32 of the input's shape)."""

    output: np.ndarray
    uncertainty: np.ndarray


def denoise_with_uncertainty(
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
    backend: str = "auto",
    keep_lattice: bool = True,
    orientations: int = 8,
) -> Denoised:
    """:func:`denoise` (a 2D image or a stack in memory) with a per-pixel uncertainty.

    The uncertainty is each output pixel's standard deviation in the output's units,
    from the spread of the network over the ``orientations`` averaged, the noise map the
    network is given and the output, with constants calibrated for the shipped default
    model at strength 1: 96–97 % of true values lie within ±2σ on the held-out benchmark
    at 1–100 e⁻/px (:mod:`napari_pinned.denoising.uncertainty`, docs/metrics.md).
    Parameters are :func:`denoise`'s; ``orientations`` defaults to 8 here, the ensemble
    whose spread shows where the network is unsure (1 gives the noise terms alone),
    at 8 network passes instead of 1.

    Returns
    -------
    Denoised
        ``(output, uncertainty)``: float32 arrays of the input's shape.

    Raises
    ------
    ValueError
        As :func:`denoise`; also for a model without a noise map, strength 0, a dask
        array or another tool's package.
    """
    per_frame = {"tile": tile, "overlap": overlap, "device": device, "strength": strength}
    options = FrameOptions(**per_frame, keep_lattice=keep_lattice, orientations=orientations)
    check_noise(noise)
    job = iter_denoise_with_uncertainty(
        image, model, options, batch_size=batch_size, noise=noise, backend=backend
    )
    return run_job(job, progress)


def iter_denoise_with_uncertainty(
    image: Any,
    model: ModelLike = "default",
    options: FrameOptions | None = None,
    *,
    batch_size: int = 4,
    noise: NoiseEstimate | None = None,
    backend: str = "auto",
) -> Job[DenoiseProgress, Denoised]:
    """:func:`denoise_with_uncertainty` as a job (:mod:`napari_pinned._util.jobs`): yields
    :class:`DenoiseProgress`, returns :class:`Denoised` (the Denoise dock's worker)."""
    if is_dask_array(image):
        raise ValueError("the uncertainty is for numpy and zarr inputs, not dask arrays")
    sigma = np.empty(tuple(int(n) for n in np.shape(image)), np.float32)
    output = yield from iter_denoise(
        image,
        model,
        options,
        batch_size=batch_size,
        noise=noise,
        backend=backend,
        uncertainty=sigma,
    )
    return Denoised(output, sigma)
