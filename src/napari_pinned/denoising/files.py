"""Big data and many machines: files denoised frame by frame, and on dask clusters.

:func:`iter_denoise_file` streams one input (TIFF, zarr, OME-Zarr, microscope file)
into one output (TIFF or zarr) frame by frame, so memory does not depend on the number
of frames; a zarr output can be resumed after an interruption
(:mod:`napari_pinned.io.zarr_store`).

:func:`dask_client` connects to a dask.distributed scheduler (``tcp://host:port``) or
starts a ``LocalCluster`` of worker processes; :func:`iter_denoise_file_on_cluster`
sends the frames of one stack (or the chunks of one large image) to its workers as a
dask array (:func:`napari_pinned.denoising.dask_arrays.denoise_dask`) and writes them into
a zarr output as they finish; :func:`iter_denoise_files_on_cluster` sends whole files of a
batch, one task each.  The model goes to every worker once (a
:class:`~napari_pinned.denoising.model_spec.ModelSpec`, built once per worker process).  Workers
read the inputs and write the outputs themselves: on a cluster both must be on a file
system every worker sees (docs/scale.md).

Every function here is a job (:mod:`napari_pinned._util.jobs`), like the rest of the core: it
yields :class:`FileProgress` records and returns the written output's path; the last
record of a file carries its summary and the path too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.errors import first_line
from napari_pinned._util.jobs import Job
from napari_pinned._version import __version__
from napari_pinned.io.images import open_frames, read_pixel_size
from napari_pinned.io.microscope import is_microscope_file
from napari_pinned.io.tiff import TiffStackWriter
from napari_pinned.io.zarr_store import ZarrOutput, frame_digest, is_zarr_path, open_zarr
from napari_pinned.settings import FrameOptions

if TYPE_CHECKING:
    from napari_pinned.denoising.denoiser import DenoiseProgress
    from napari_pinned.denoising.model_spec import ModelSpec


__all__ = [
    "CONNECT_TIMEOUT_S",
    "FileProgress",
    "check_scheduler_address",
    "dask_client",
    "iter_denoise_file",
    "iter_denoise_file_on_cluster",
    "iter_denoise_files_on_cluster",
    "iter_denoise_to_zarr",
]

#: Seconds to wait for a scheduler before giving up with one line.
CONNECT_TIMEOUT_S = 10.0
#: Largest handshake a scheduler greets with (it is a few hundred bytes).
_GREETING_MAX_BYTES = 1 << 20
#: Largest chunk edge of the dask arrays sent to workers: frames up to 4096² go whole.
DASK_CHUNK_EDGE = 4096
_ADDRESS = re.compile(
    r"^(?:(tcp|tls|ucx|ws|wss)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})$"
)
_INSTALL_HINT = "pip install 'napari-pinned[dask]'"


@dataclass(frozen=True)
class FileProgress:
    """Progress of one file: ``done`` of ``total`` frames (or files, for a batch).

    ``report`` is the core's last :class:`~napari_pinned.denoising.denoiser.DenoiseProgress`
    (local runs; it carries the noise estimates on the last record), ``target`` the
    output once it is complete, ``resumed`` the frames an earlier run had written.
    """

    source: Path
    done: int
    total: int
    report: DenoiseProgress | None = None
    target: Path | None = None
    resumed: int = 0

    @property
    def finished(self) -> bool:
        """True on the last record of a file (its output is in place)."""
        return self.target is not None

    @property
    def fraction(self) -> float:
        """Fraction of the frames done, in [0, 1]."""
        return self.done / max(self.total, 1)


def check_scheduler_address(address: str) -> str:
    """``address`` if it looks like a scheduler address (``tcp://host:8786``, ``host:8786``).

    Raises
    ------
    ValueError
        One line naming ``--scheduler`` and the expected form.
    """
    match = _ADDRESS.match(address.strip())
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise ValueError(
            f"--scheduler {address!r}: expected a dask scheduler address such as tcp://host:8786"
        )
    return address.strip()


def _run_record(
    name: str, shape: tuple[int, ...], dtype: np.dtype, spec: ModelSpec, options: FrameOptions
) -> dict:
    """What a resumed run must share with the run it continues: everything that changes
    the output (tiling is exact, so the tile and overlap may change)."""
    return {
        "input": name,
        "shape": list(shape),
        "dtype": str(dtype),
        "model": spec.token,
        "strength": float(options.strength),
        "keep_lattice": bool(options.keep_lattice),
        "orientations": int(options.orientations),
    }


def _attrs(source: Path, pixel_size: float | None, spec: ModelSpec, options: FrameOptions) -> dict:
    attrs: dict[str, Any] = {
        "napari_pinned": {
            "version": __version__,
            "source": str(source),
            "model": str(spec.metadata.get("name") or spec.source),
            "model_token": spec.token,
            "strength": float(options.strength),
            "keep_lattice": bool(options.keep_lattice),
            "orientations": int(options.orientations),
        }
    }
    if pixel_size is not None:
        attrs["pixel_size_angstrom"] = float(pixel_size)
    return attrs


def _open_output(
    source: Path,
    target: Path,
    shape: tuple[int, ...],
    dtype: np.dtype,
    spec: ModelSpec,
    options: FrameOptions,
    resume: bool,
) -> tuple[Any, float | None]:
    """The output for ``target``: a :class:`ZarrOutput` or a :class:`TiffStackWriter`."""
    pixel_size = read_pixel_size(source)
    if is_zarr_path(target):
        ome = open_zarr(source).ome if is_zarr_path(source) else None
        output = ZarrOutput(
            target,
            shape,
            run=_run_record(str(source.resolve()), shape, dtype, spec, options),
            attrs=_attrs(source, pixel_size, spec, options),
            ome=ome,
            resume=resume,
        )
        return output, pixel_size
    if resume:
        raise ValueError(f"{target}: --resume needs a zarr output (.zarr)")
    return TiffStackWriter(target, shape, pixel_size=pixel_size), pixel_size


def iter_denoise_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    model: Any,
    options: FrameOptions | None = None,
    *,
    resume: bool = False,
) -> Job[FileProgress, Path]:
    """Denoise one file into another, frame by frame (see the module docstring).

    Parameters
    ----------
    source : path-like
        TIFF, zarr/OME-Zarr store or microscope file.
    target : path-like
        ``.tif``/``.tiff`` (written atomically) or ``.zarr`` (written under a
        temporary name, resumable).
    model : str, path, ModelBundle or ModelSpec
        As for :func:`napari_pinned.denoising.denoiser.denoise`.
    options : FrameOptions, optional
        How each frame is denoised (default: :func:`~napari_pinned.denoising.denoiser.denoise`'s
        defaults).
    resume : bool
        Continue the zarr output of an interrupted run (frames it finished are kept).

    Yields
    ------
    FileProgress
        After every batch of windows; the last one has ``target`` set.

    Returns
    -------
    Path
        The written output.
    """
    from napari_pinned.denoising.denoiser import iter_denoise
    from napari_pinned.denoising.model_spec import ModelSpec

    options = options or FrameOptions()
    src, dst = Path(source), Path(target)
    spec = model if isinstance(model, ModelSpec) else ModelSpec.of(model)
    frames = open_frames(src)
    shape = tuple(int(n) for n in frames.shape)
    dtype = np.dtype(frames.dtype)
    output, _ = _open_output(src, dst, shape, dtype, spec, options, resume)
    count = shape[0] if len(shape) == 3 else 1
    if isinstance(output, ZarrOutput):
        return (yield from _iter_into_zarr(src, frames, output, spec, options))
    last = None
    with output as writer:
        for report in iter_denoise(frames, spec, options, out=writer):
            last = report
            yield FileProgress(src, report.frames_done, count, report)
    yield FileProgress(src, count, count, last, dst)
    return dst


def _frame(frames: Any, index: int, stack: bool) -> np.ndarray:
    return np.asarray(frames[index] if stack else frames[...])


def _input_digests(frames: Any, which: Iterable[int], stack: bool) -> dict[int, str]:
    """:func:`~napari_pinned.io.zarr_store.frame_digest` of the input frames ``which``."""
    return {f: frame_digest(_frame(frames, f, stack)) for f in which}


def _iter_into_zarr(
    source: Path, frames: Any, output: ZarrOutput, spec: ModelSpec, options: FrameOptions
) -> Job[FileProgress, Path]:
    """Denoise the frames an output still lacks into it, recording each finished one
    with its input's digest; a resumed output's frames are checked first
    (:meth:`~napari_pinned.io.zarr_store.ZarrOutput.check_resumed`)."""
    from napari_pinned.denoising.denoiser import iter_denoise

    stack = len(output.shape) == 3
    count = output.shape[0] if stack else 1
    try:
        output.check_resumed(_input_digests(frames, output.digests, stack), source)
        skip = sorted(output.done)
        marked = set(output.done)
        resumed = len(skip)
        last = None
        for report in iter_denoise(frames, spec, options, out=output.array, skip=skip):
            last = report
            newly = _finished_frames(report, count, skip) - marked
            if newly:
                output.mark_done(newly, _input_digests(frames, newly, stack))
                marked |= newly
            yield FileProgress(source, resumed + report.frames_done, count, report, resumed=resumed)
        rest = [f for f in range(count) if f not in marked]
        output.mark_done(rest, _input_digests(frames, rest, stack))
        target = output.finish()
    except Exception as exc:
        failure = output.fail(exc)
        if failure is not None:
            raise failure from None
        raise
    except BaseException:  # a signal, or the job closed: frames kept for --resume
        output.close()
        raise
    yield FileProgress(source, count, count, last, target, resumed)
    return target


def iter_denoise_to_zarr(
    image: Any,
    target: str | os.PathLike,
    model: Any,
    options: FrameOptions | None = None,
    *,
    name: str,
    pixel_size: float | None = None,
    resume: bool = True,
) -> Job[FileProgress, Path]:
    """Denoise an array (numpy, zarr, dask: e.g. a napari layer's data) into a zarr
    store, frame by frame, under a temporary name until complete; returns the store.

    ``name`` identifies the input in the output's attributes and in the record a
    resumed run must match; with ``resume`` an interrupted run into the same
    ``target`` with the same input, model and output-changing options is continued.
    """
    from napari_pinned.denoising.model_spec import ModelSpec

    options = options or FrameOptions()
    spec = model if isinstance(model, ModelSpec) else ModelSpec.of(model)
    shape = tuple(int(n) for n in image.shape)
    dtype = np.dtype(image.dtype)
    source = Path(name)
    run = _run_record(name, shape, dtype, spec, options)
    attrs = _attrs(source, pixel_size, spec, options)
    output = ZarrOutput(target, shape, run=run, attrs=attrs, resume=resume)
    return (yield from _iter_into_zarr(source, image, output, spec, options))


def _finished_frames(report: DenoiseProgress, count: int, skip: Sequence[int]) -> set[int]:
    """Frames written so far: the first ``frames_done`` of those not skipped."""
    todo = [f for f in range(count) if f not in set(skip)]
    return set(todo[: report.frames_done])


# -- dask.distributed --------------------------------------------------------------------


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None, workers: int | None = None, *, timeout: float | None = None
) -> Iterator[Any]:
    """A ``distributed.Client`` of a running scheduler, or of a new ``LocalCluster``.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).
    workers : int, optional
        Without ``scheduler``: start a LocalCluster of this many worker processes, one
        thread each (torch then uses one core per worker, dask's default).
    timeout : float, optional
        Seconds to wait for the scheduler (default :data:`CONNECT_TIMEOUT_S`).

    Raises
    ------
    ValueError
        dask.distributed is not installed, or the scheduler cannot be reached or is not
        a dask scheduler (one line, within about twice ``timeout`` seconds).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError(
            f"--scheduler and --workers need dask.distributed: {_INSTALL_HINT}"
        ) from None
    cluster = None
    timeout = CONNECT_TIMEOUT_S if timeout is None else float(timeout)
    if scheduler is not None:
        address = check_scheduler_address(scheduler)
        _probe_scheduler(address, timeout)
        try:
            client = Client(address, timeout=f"{timeout}s")
        except Exception as exc:  # distributed raises many kinds; MemoryError included
            raise ValueError(
                f"--scheduler {address}: cannot reach the scheduler within {timeout:g} s "
                f"({first_line(exc)})"
            ) from None
    else:
        count = int(workers or 1)
        cluster = LocalCluster(
            n_workers=count,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


def _probe_scheduler(address: str, timeout: float) -> None:
    """Check that a dask scheduler answers at a ``tcp://`` ``address`` before
    ``distributed.Client`` connects: the Client waits without end on a service that
    says nothing (a web server) and reads another's greeting (SSH's) as a frame length
    of exabytes.  A scheduler greets every connection with a little-endian 8-byte
    length of its handshake (``distributed.comm.tcp``), a few hundred bytes.  Other
    protocols (``tls://``, ``ucx://``, ``ws://``) are left to the Client.

    Raises
    ------
    ValueError
        One line naming ``--scheduler``: nothing listens there, or what does is not a
        dask scheduler.
    """
    match = _ADDRESS.match(address)
    if match is None or (match.group(1) or "tcp") != "tcp":
        return
    host, port = match.group(2).strip("[]"), int(match.group(3))
    deadline = time.monotonic() + timeout
    greeting = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            while len(greeting) < 8 and (left := deadline - time.monotonic()) > 0:
                conn.settimeout(left)
                chunk = conn.recv(8 - len(greeting))
                if not chunk:
                    break
                greeting += chunk
    except TimeoutError:
        pass  # judged below by what arrived
    except OSError as exc:
        raise ValueError(
            f"--scheduler {address}: cannot reach the scheduler within {timeout:g} s "
            f"({exc.strerror or first_line(exc)})"
        ) from None
    if len(greeting) == 8 and 0 < struct.unpack("<Q", greeting)[0] <= _GREETING_MAX_BYTES:
        return
    if greeting:
        said = f"it answered {greeting.decode('ascii', 'replace')!r}…"
    else:
        said = f"it said nothing within {timeout:g} s, as a web server does"
    raise ValueError(
        f"--scheduler {address}: not a dask scheduler ({said}); give the scheduler's "
        "address (port 8786 unless it was started with another)"
    )


def _dask_input(source: Path) -> Any:
    """The input as a dask array of whole frames (tiles of at most 4096² px)."""
    import dask.array as da

    if is_zarr_path(source):
        store = open_zarr(source)
        arr = da.from_zarr(store.zarr_array)
        if store.zarr_array.ndim != len(store.shape):
            arr = arr.reshape(store.shape)
    else:
        frames = open_frames(source)
        if is_microscope_file(source):
            arr = da.from_array(frames)
        else:
            chunks = (1, *frames.shape[1:]) if frames.ndim == 3 else frames.shape
            arr = da.from_array(frames, chunks=chunks, asarray=True, fancy=False)
    edges = tuple(min(int(n), DASK_CHUNK_EDGE) for n in arr.shape[-2:])
    return arr.rechunk((1, *edges) if arr.ndim == 3 else edges)


def iter_denoise_file_on_cluster(
    source: str | os.PathLike,
    target: str | os.PathLike,
    model: Any,
    client: Any,
    options: FrameOptions | None = None,
    *,
    resume: bool = False,
) -> Job[FileProgress, Path]:
    """Denoise one stack or large image on a dask cluster into a zarr output.

    Every frame not yet written is one ``dask.array.store`` of the lazily denoised
    frame into the output, followed by the digest of its input frame; their futures are
    collected as they complete, and each finished frame is recorded (resumable).  The
    graph is built before the output exists, so a graph that cannot be built leaves no
    temporary store.  Parameters are those of :func:`iter_denoise_file` plus the
    ``client`` of :func:`dask_client` (the options' ``device`` is the workers'); the
    output must be a zarr store.
    """
    from napari_pinned.denoising.dask_arrays import denoise_dask
    from napari_pinned.denoising.model_spec import ModelSpec

    options = options or FrameOptions()
    src, dst = Path(source), Path(target)
    if not is_zarr_path(dst):
        raise ValueError(f"{dst}: --scheduler and --workers write zarr outputs (.zarr)")
    spec = model if isinstance(model, ModelSpec) else ModelSpec.of(model)
    arr = _dask_input(src)
    shape = tuple(int(n) for n in arr.shape)
    result = denoise_dask(arr, spec, options)
    output, _ = _open_output(src, dst, shape, np.dtype(arr.dtype), spec, options, resume)
    count = shape[0] if len(shape) == 3 else 1
    futures: list[Any] = []
    try:
        if output.digests:
            now = client.gather(client.compute([_digest_task(arr[f]) for f in output.digests]))
            output.check_resumed(dict(zip(output.digests, now, strict=True)), src)
        resumed = len(output.done)
        frames, futures = _store_frames(result.rechunk(output.array.chunks), arr, output, client)
        which = {future.key: f for future, f in zip(futures, frames, strict=True)}
        yield FileProgress(src, resumed, count, resumed=resumed)
        for done, future in enumerate(_as_completed(futures), start=resumed + 1):
            digest = future.result()  # a worker's error is raised here
            frame = which[future.key]
            output.mark_done([frame], {frame: digest} if digest is not None else None)
            yield FileProgress(src, done, count, resumed=resumed)
        written = output.finish()
    except Exception as exc:
        client.cancel(futures)
        failure = output.fail(exc)
        if failure is not None:
            raise failure from None
        raise
    except BaseException:  # a signal, or the job closed: frames kept for --resume
        client.cancel(futures)
        output.close()
        raise
    yield FileProgress(src, count, count, target=written, resumed=resumed)
    return written


def _as_completed(futures: list[Any]) -> Iterator[Any]:
    from distributed import as_completed

    return iter(as_completed(futures)) if futures else iter(())


def _digest_task(frame: Any) -> Any:
    """A delayed :func:`~napari_pinned.io.zarr_store.frame_digest` of a dask frame."""
    import dask

    return dask.delayed(frame_digest, pure=True)(frame)


def _digest_after(_stored: None, frame: np.ndarray) -> str:
    """The input frame's digest, once its denoised frame is stored."""
    return frame_digest(frame)


def _store_frames(result: Any, arr: Any, output: ZarrOutput, client: Any) -> tuple[list, list]:
    """Start storing the frames ``output`` lacks; returns the frames and their futures
    (each gives the input frame's digest, or None for a single image)."""
    import dask
    import dask.array as da

    if len(output.shape) != 3:
        if not output.missing:
            return [], []
        return [0], [client.compute(da.store(result, output.array, lock=False, compute=False))]
    tasks = []
    for f in output.missing:
        region = (slice(f, f + 1), slice(None), slice(None))
        stored = da.store(
            result[f : f + 1], output.array, regions=region, lock=False, compute=False
        )
        tasks.append(dask.delayed(_digest_after, pure=True)(stored, arr[f]))
    return list(output.missing), client.compute(tasks)


def _denoise_file_task(
    source: str, target: str, spec: ModelSpec, options: FrameOptions, resume: bool
) -> tuple[str, int]:
    """A worker's task of a batch: one file, streamed as :func:`iter_denoise_file`."""
    last = None
    for record in iter_denoise_file(source, target, spec, options, resume=resume):
        last = record
    assert last is not None and last.target is not None
    return str(last.target), last.total


def iter_denoise_files_on_cluster(
    pairs: Sequence[tuple[Path, Path]],
    model: Any,
    client: Any,
    options: FrameOptions | None = None,
    *,
    resume: bool = False,
) -> Iterator[tuple[Path, Path | None, BaseException | None]]:
    """Denoise a batch of files on a dask cluster, one task per file.

    Yields ``(source, target, error)`` as files finish (``error`` None on success), in
    the order they finish.  The model is scattered to every worker once.
    """
    from distributed import as_completed

    from napari_pinned.denoising.model_spec import ModelSpec

    spec = model if isinstance(model, ModelSpec) else ModelSpec.of(model)
    # A key of its own (hash=False): a second batch must not share, and lose, the first's.
    shared = client.scatter(spec, broadcast=True, hash=False)
    options = options or FrameOptions()
    futures = [
        client.submit(_denoise_file_task, str(src), str(dst), shared, options, resume, pure=False)
        for src, dst in pairs
    ]
    sources = {future.key: pair for future, pair in zip(futures, pairs, strict=True)}
    try:
        for future in as_completed(futures):
            src, dst = sources[future.key]
            try:
                future.result()
            except (ValueError, MemoryError, RuntimeError, OSError) as exc:
                yield src, None, exc
                continue
            yield src, dst, None
    except BaseException:
        client.cancel(futures)
        raise
