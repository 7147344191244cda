"""TIFF, the exchange format: images, stacks and their pixel size.

float32 is kept as float32 (no 8-bit rounding of quantitative data) and the pixel size in
Å is stored in the ImageJ metadata, so Fiji and napari show the right scale; stacks
beyond ImageJ's 4 GiB are BigTIFF with the pixel size in tifffile's JSON.  Writes go
through :mod:`napari_pinned.io.safe_write`; :class:`TiffFrames` and
:class:`TiffStackWriter` read and write one frame at a time.

Reading: files of either byte order (ImageJ writes big-endian ones); the first series of
a file that holds several, with one warning naming the others; what tifffile logs about
a damaged file is kept off stderr and, if the read fails, named in its one-line error.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_pinned._util.errors import first_line
from napari_pinned._util.memory import check_memory
from napari_pinned.io.safe_write import atomic_write

__all__ = [
    "IMAGEJ_MAX_BYTES",
    "TiffFrames",
    "TiffStackWriter",
    "read_tiff",
    "tiff_pixel_size",
    "tiff_shape",
    "write_tiff",
]

_IMAGEJ_ANGSTROM = "\\u00C5"
_ANGSTROM_UNITS = (_IMAGEJ_ANGSTROM, "Å", "A", "angstrom")

# tifffile logs what it finds wrong in a file (to stderr, through logging's last resort,
# when nothing else handles it) and then goes on or fails with a message of its own:
# two or three lines before ours.  During our reads this thread's records are kept here
# instead, to name the cause when the read fails.
_HEARD = threading.local()


class _KeepComplaints(logging.Filter):
    """Keeps tifffile's records of this thread's read in progress, instead of letting
    them through (reads by others than napari-pinned log as before)."""

    def filter(self, record: logging.LogRecord) -> bool:
        heard = getattr(_HEARD, "records", None)
        if heard is None:
            return True
        heard.append(record.getMessage())
        return False


logging.getLogger("tifffile").addFilter(_KeepComplaints())


def _complaint(message: str) -> str:
    """tifffile's log message without its object prefixes: "<tifffile.TiffTag 273 @82>
    invalid data type 0" (also wrapped in "raised TiffFileError('…')") → "tag 273:
    invalid data type 0"."""
    raised = re.search(r"raised \w+\('(.*)'\)$", message)
    text = raised.group(1) if raised else message
    tag = re.match(r"<tifffile\.TiffTag (\d+)", text)
    text = re.sub(r"^(<[^>]*>\s*)+", "", text)
    return f"tag {tag.group(1)}: {text}" if tag else text


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """tifffile's reads of ``path``: its log records kept off stderr, and a failure
    turned into one ``ValueError`` naming the file and the first problem tifffile
    reported (its exception is often a consequence: "list index out of range")."""
    outer = getattr(_HEARD, "records", None)
    heard: list[str] = []
    _HEARD.records = heard
    try:
        yield
    except MemoryError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        if isinstance(exc, ValueError) and str(exc).startswith(f"{path}: "):
            raise  # ours already
        cause = _complaint(heard[0]) if heard else first_line(exc)
        raise ValueError(f"{path}: not a readable TIFF image ({cause})") from None
    finally:
        _HEARD.records = outer


def _first_series(tif: tifffile.TiffFile, path: Path) -> Any:
    """The file's first series, with a warning when others are left unread."""
    series = tif.series
    if not series:
        raise ValueError("no image series")
    first = series[0]
    if len(series) > 1:
        dims = "×".join(str(int(n)) for n in first.shape)
        warnings.warn(
            f"{path}: holds {len(series)} image series; read the first ({dims} "
            f"{np.dtype(first.dtype)}), ignored the others",
            UserWarning,
            stacklevel=3,
        )
    return first


def tiff_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a TIFF's first series, from its header."""
    with _reading(path), tifffile.TiffFile(path) as tif:
        series = _first_series(tif, path)
        return tuple(int(n) for n in series.shape), np.dtype(series.dtype)


def read_tiff(path: Path) -> np.ndarray:
    """A TIFF's image or stack, once its header says it fits in memory."""
    shape, dtype = tiff_shape(path)
    size = math.prod(shape)
    if size == 0:
        raise ValueError(f"{path}: the file holds no image data")
    dims = "×".join(str(n) for n in shape)
    check_memory(size * dtype.itemsize, f"{path}: reading its {dims} {dtype} image")
    with _reading(path):
        data = np.asarray(tifffile.imread(path))
    if data.size == 0:
        raise ValueError(f"{path}: the file holds no image data")
    return data


def tiff_pixel_size(path: str | os.PathLike) -> float | None:
    """Pixel size in Å of a TIFF written by :func:`write_tiff` (or Fiji), else None."""
    try:
        with _reading(Path(path)), tifffile.TiffFile(path) as tif:
            meta = tif.imagej_metadata or {}
            tag = tif.pages[0].tags.get("XResolution")
            if tag is not None and meta.get("unit") in _ANGSTROM_UNITS:
                num, den = tag.value
                return den / num if num else None
            # BigTIFF stacks (beyond ImageJ's 4 GiB) carry it in tifffile's JSON.
            shaped = (tif.shaped_metadata or ({},))[0] or {}
            value = shaped.get("pixel_size_angstrom")
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                return float(value)
    except Exception:
        return None
    return None


def write_tiff(
    path: str | os.PathLike, image: np.ndarray, *, pixel_size: float | None = None
) -> Path:
    """Write ``image`` (2D or stack) as a float32 TIFF, atomically.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    image : numpy.ndarray
        Image or stack; stored as float32.
    pixel_size : float, optional
        Pixel size in Å, stored as ImageJ resolution with unit Å.
    """
    p = Path(path)
    if not p.parent.is_dir():
        raise ValueError(f"{p}: folder {p.parent} does not exist")
    data = np.asarray(image, dtype=np.float32)
    kwargs: dict = {"imagej": True, "metadata": {"axes": "YX" if data.ndim == 2 else "ZYX"}}
    if pixel_size is not None:
        kwargs["resolution"] = (1.0 / pixel_size, 1.0 / pixel_size)
        # ImageJ descriptions are ASCII; Fiji writes Å as this escape sequence.
        kwargs["metadata"]["unit"] = _IMAGEJ_ANGSTROM
    with atomic_write(p) as handle:
        tifffile.imwrite(handle, data, **kwargs)
    return p


#: Largest ImageJ-style TIFF (its readers do not know BigTIFF); bigger stacks are BigTIFF.
IMAGEJ_MAX_BYTES = 2**32 - 2**25


class TiffFrames:
    """The frames of a TIFF image or stack, read one at a time (never the whole file).

    An array-like with ``shape``, ``dtype``, ``ndim`` and ``frames[i]`` (or
    ``frames[...]`` for a 2D image): contiguous data (ImageJ stacks, what
    :func:`write_tiff` writes) are read at their offset, in the file's byte order;
    other files page by page.  ``numpy.asarray(frames)`` reads each frame once.
    Picklable (it holds the path, not an open file), so dask workers can read it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with _reading(self.path), tifffile.TiffFile(self.path) as tif:
            series = _first_series(tif, self.path)
            self.shape = tuple(int(n) for n in series.shape)
            self.dtype = np.dtype(series.dtype).newbyteorder("=")
            # tifffile reports the values' type in native order; the bytes at the
            # offset are in the file's ("<" or ">": ImageJ writes big-endian).
            self._stored = self.dtype.newbyteorder(tif.byteorder)
            self._offset = series.dataoffset
            pages = len(series.pages) if self._offset is None else 0
        self.ndim = len(self.shape)
        frames = self.shape[0] if self.ndim == 3 else 1
        # Neither contiguous nor a page per frame (e.g. a compressed volume in one page):
        # read through tifffile's zarr view, strip by strip, where zarr is installed.
        self._whole = self._offset is None and pages != frames
        self._store: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}  # an open store does not travel

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        # Without it numpy takes a 2D image for a sequence of rows and reads the whole
        # frame once per row, keeping every copy (memory quadratic in the height).
        if copy is False:
            raise ValueError(
                f"{self.path}: the image is in a file; it cannot be read without a copy"
            )
        dims = "×".join(str(n) for n in self.shape)
        size = math.prod(self.shape) * self.dtype.itemsize
        check_memory(size, f"{self.path}: reading its {dims} {self.dtype} image")
        data = self._frame(0) if self.ndim == 2 else self[:]
        return data if dtype is None else data.astype(dtype, copy=False)

    def _frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0 for a 2D image), in native byte order."""
        frame_shape = self.shape[-2:]
        if self._offset is None:
            with _reading(self.path):
                if self._whole:
                    return np.asarray(self._zarr_view()[index])
                with tifffile.TiffFile(self.path) as tif:
                    return np.asarray(tif.series[0].pages[index].asarray())
        count = frame_shape[0] * frame_shape[1]
        with open(self.path, "rb") as handle:
            handle.seek(self._offset + index * count * self._stored.itemsize)
            data = np.fromfile(handle, self._stored, count)
        if data.size != count:
            raise ValueError(f"{self.path}: the file is truncated (frame {index})")
        return data.reshape(frame_shape).astype(self.dtype, copy=False)

    def _zarr_view(self) -> Any:
        if self._store is None:
            try:
                import zarr
            except ImportError:  # without zarr: the whole image, once
                self._store = read_tiff(self.path)
                return self._store
            self._store = zarr.open(tifffile.imread(self.path, aszarr=True), mode="r")
        return self._store

    def __getitem__(self, index: Any) -> np.ndarray:
        if self.ndim == 2:
            frame = self._frame(0)
            return frame if index is Ellipsis else _part(frame, index)
        if isinstance(index, (int, np.integer)):
            return self._frame(self._index(index))
        key = index if isinstance(index, tuple) else (index,)
        if key and key[0] is Ellipsis:
            key = (slice(None),) * (self.ndim - len(key) + 1) + key[1:]
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(first, (int, np.integer)):
            return _part(self._frame(self._index(first)), rest)
        if not isinstance(first, slice):
            raise IndexError(f"{self.path}: frames are indexed by integers or slices")
        frames = range(self.shape[0])[first]
        stack = np.empty((len(frames), *self.shape[1:]), self.dtype)
        for k, i in enumerate(frames):
            stack[k] = self._frame(i)
        return _part(stack, (slice(None), *rest))

    def _index(self, index: int) -> int:
        if not -self.shape[0] <= index < self.shape[0]:
            raise IndexError(f"frame {index} of {self.shape[0]}")
        return int(index) % self.shape[0]


def _part(array: np.ndarray, key: Any) -> np.ndarray:
    """``array[key]``, copied when it is a smaller view: a view would keep the whole
    frame (or stack) in memory for as long as the part is kept."""
    part = array[key]
    if isinstance(part, np.ndarray) and part.base is not None and part.size < array.size:
        return part.copy()
    return part


class TiffStackWriter:
    """Write a float32 image or stack to TIFF frame by frame, atomically.

    Frames are set in order (``writer[i] = frame``, or ``writer[...] = image``) and
    streamed to a temporary file by a writer thread, at most two frames ahead, so
    memory does not grow with the stack; the file is renamed over ``path`` only when
    the block ends with every frame written (see :mod:`napari_pinned.io.safe_write`).  Up to
    4 GiB it is an ImageJ stack like :func:`write_tiff`'s, beyond that a BigTIFF whose
    JSON description carries the pixel size.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    shape : tuple of int
        ``(Y, X)`` or ``(N, Y, X)``.
    pixel_size : float, optional
        Pixel size in Å.
    """

    _END = object()

    def __init__(
        self, path: str | os.PathLike, shape: tuple[int, ...], *, pixel_size: float | None = None
    ) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)
        self.pixel_size = pixel_size
        self._next = 0
        self._error: BaseException | None = None
        self._stack: Any = None
        self._thread: Any = None
        self._queue: Any = None

    @property
    def frames(self) -> int:
        return self.shape[0] if self.ndim == 3 else 1

    def _kwargs(self) -> dict[str, Any]:
        big = math.prod(self.shape) * 4 > IMAGEJ_MAX_BYTES
        if big:
            meta: dict[str, Any] = {}
            if self.pixel_size is not None:
                meta["pixel_size_angstrom"] = float(self.pixel_size)
            return {"bigtiff": True, "metadata": meta}
        kwargs: dict[str, Any] = {
            "imagej": True,
            "metadata": {"axes": "YX" if self.ndim == 2 else "ZYX"},
        }
        if self.pixel_size is not None:
            kwargs["resolution"] = (1.0 / self.pixel_size, 1.0 / self.pixel_size)
            kwargs["metadata"]["unit"] = _IMAGEJ_ANGSTROM
        return kwargs

    def __enter__(self) -> TiffStackWriter:
        import contextlib
        import queue
        import threading

        if not self.path.parent.is_dir():
            raise ValueError(f"{self.path}: folder {self.path.parent} does not exist")
        self._stack = contextlib.ExitStack()
        handle = self._stack.enter_context(atomic_write(self.path))
        self._queue = queue.Queue(maxsize=2)

        def frames():
            for _ in range(self.frames):
                item = self._queue.get()
                if item is self._END:
                    raise _Aborted
                yield item

        def run():
            try:
                tifffile.imwrite(
                    handle, frames(), shape=self.shape, dtype=np.float32, **self._kwargs()
                )
            except BaseException as exc:  # reported to the main thread
                self._error = exc

        self._thread = threading.Thread(target=run, name="pinned-tiff-writer", daemon=True)
        try:
            self._thread.start()
        except BaseException as exc:  # a signal as the writer starts: no block to exit
            self._abort()
            if self._thread.is_alive():
                self._thread.join()
            self._stack.__exit__(type(exc), exc, None)
            raise
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        expected = Ellipsis if self.ndim == 2 else self._next
        if index is not expected and index != expected:
            raise ValueError(f"{self.path}: frames must be written in order (got {index!r})")
        frame = np.ascontiguousarray(value, np.float32)
        if frame.shape != self.shape[-2:]:
            raise ValueError(
                f"{self.path}: frame of shape {frame.shape}, expected {self.shape[-2:]}"
            )
        self._put(frame)
        self._next += 1

    def _put(self, item: Any) -> None:
        import queue

        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _abort(self) -> None:
        """Empty the queue, then tell a writer waiting for a frame to give up."""
        import contextlib
        import queue

        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(self._END)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        failure = exc
        if failure is None and self._next < self.frames:
            failure = ValueError(f"{self.path}: {self._next} of {self.frames} frames written")
        try:
            if failure is not None:
                self._abort()
            self._thread.join()
        except BaseException as late:  # a signal while waiting for the writer
            failure = failure if failure is not None else late
            self._abort()
            self._thread.join()
        if failure is None and self._error is not None:
            failure = self._error
        if failure is None:
            self._stack.close()  # renamed into place
            return False
        self._stack.__exit__(type(failure), failure, None)  # the temporary file removed
        if failure is not exc:
            raise failure
        return False


class _Aborted(Exception):
    """The stack being written was abandoned."""
