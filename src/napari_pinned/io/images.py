"""Reading and writing image files for the CLI, scripts and the napari reader.

TIFF is the exchange format: float32 is kept as float32 (no 8-bit rounding of
quantitative data) and the pixel size in Å is stored in the ImageJ metadata, so Fiji
and napari show the right scale.  Every write (TIFF, CSV, PNG) goes through
:mod:`napari_pinned.io.safe_write`: a temporary file in the target folder is renamed over the
destination only once complete, with the permissions the umask allows.

Microscope files (Gatan .dm3/.dm4, Velox and Berkeley .emd, FEI/TIA .ser, .mrc) are read
with RosettaSciIO, an optional dependency (``pip install "napari-pinned[io]"``):
:func:`read_microscope_file` keeps the 2D images and image stacks of a file, with their
calibration converted to Å, and says which other datasets it skipped.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_pinned._util.errors import first_line
from napari_pinned._util.memory import check_memory
from napari_pinned._util.units import angstrom_per
from napari_pinned.io.safe_write import atomic_write
from napari_pinned.io.zarr_store import is_zarr_path, open_zarr

#: Microscope file suffixes → the RosettaSciIO plugin that reads them.
MICROSCOPE_FORMATS = {
    ".dm3": "digitalmicrograph",
    ".dm4": "digitalmicrograph",
    ".emd": "emd",
    ".ser": "tia",
    ".mrc": "mrc",
}
_INSTALL_HINT = "pip install 'napari-pinned[io]'"

_IMAGEJ_ANGSTROM = "\\u00C5"
_ANGSTROM_UNITS = (_IMAGEJ_ANGSTROM, "Å", "A", "angstrom")


def image_shape(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the image :func:`read_image` would return, from the file's
    header where possible (TIFF), so that shapes can be checked before any data is read.

    Raises
    ------
    ValueError
        If the file is missing or not a readable image file.
    """
    p = Path(path)
    if is_zarr_path(p):
        store = open_zarr(p)
        return store.shape, store.dtype
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    if is_microscope_file(p):
        image = _first_image(p)
        return tuple(image.data.shape), image.data.dtype
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            shape, dtype = tuple(int(n) for n in series.shape), np.dtype(series.dtype)
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise ValueError(f"{p}: not a readable TIFF image ({first_line(exc)})") from None
    return shape, dtype


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D image or a stack from a TIFF file, or the first image or stack of a
    microscope file (:data:`MICROSCOPE_FORMATS`).

    Raises
    ------
    ValueError
        If the file is missing, is not readable, holds no image data, or holds more data
        than the available memory (checked from the header, before decoding).
    """
    p = Path(path)
    if is_zarr_path(p):
        store = open_zarr(p)
        dims = "×".join(str(n) for n in store.shape)
        check_memory(
            math.prod(store.shape) * store.dtype.itemsize, f"{p}: reading its {dims} image"
        )
        return np.asarray(store.array[...])
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    if is_microscope_file(p):
        # A copy: the cached image must not change when a caller edits its array.
        return _first_image(p).data.copy()
    shape, dtype = image_shape(p)
    size = math.prod(shape)
    if size == 0:
        raise ValueError(f"{p}: the file holds no image data")
    dims = "×".join(str(n) for n in shape)
    check_memory(size * dtype.itemsize, f"{p}: reading its {dims} {dtype} image")
    try:
        data = tifffile.imread(p)
    except MemoryError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise ValueError(f"{p}: not a readable TIFF image ({first_line(exc)})") from None
    data = np.asarray(data)
    if data.size == 0:
        raise ValueError(f"{p}: the file holds no image data")
    return data


def read_pixel_size(path: str | os.PathLike) -> float | None:
    """Pixel size in Å of a TIFF written by :func:`write_tiff` or of a microscope file's
    first image, or None if the file has none."""
    if is_zarr_path(path):
        try:
            return open_zarr(path).pixel_size
        except ValueError:
            return None
    if is_microscope_file(path):
        try:
            return _first_image(Path(path)).pixel_size
        except ValueError:
            return None
    try:
        with tifffile.TiffFile(path) as tif:
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


def write_csv(
    path: str | os.PathLike,
    table: np.ndarray,
    header: Sequence[str],
    fmt: str | Sequence[str] = "%.6g",
) -> Path:
    """Write a table as CSV with a header line, atomically.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    table : numpy.ndarray
        ``(rows, columns)`` values: numbers, or an object array mixing text and numbers
        with a format per column.
    header : sequence of str
        Column names.
    fmt : str or sequence of str
        ``numpy.savetxt`` format(s).
    """
    p = Path(path)
    with atomic_write(p, "w", newline="") as handle:
        np.savetxt(handle, table, fmt=fmt, delimiter=",", header=",".join(header), comments="")
    return p


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an 8-bit greyscale ``(H, W)`` or RGB ``(H, W, 3)`` image as PNG, atomically.

    A minimal encoder (one IDAT chunk, no filtering) so that figures need neither
    matplotlib nor an imaging library.
    """
    data = np.ascontiguousarray(image)
    if data.dtype != np.uint8 or data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] != 3):
        raise ValueError(
            f"write_png expects uint8 (H, W) or (H, W, 3), got {data.dtype} {data.shape}"
        )
    height, width = data.shape[:2]
    colour = 0 if data.ndim == 2 else 2

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = data.reshape(height, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    p = Path(path)
    with atomic_write(p) as handle:
        handle.write(png)
    return p


# -- frame by frame ---------------------------------------------------------------------

#: Largest ImageJ-style TIFF (its readers do not know BigTIFF); bigger stacks are BigTIFF.
IMAGEJ_MAX_BYTES = 2**32 - 2**25


class TiffFrames:
    """The frames of a TIFF image or stack, read one at a time (never the whole file).

    An array-like with ``shape``, ``dtype``, ``ndim`` and ``frames[i]`` (or
    ``frames[...]`` for a 2D image): contiguous data (ImageJ stacks, what
    :func:`write_tiff` writes) are read at their offset; other files page by page.
    Picklable (it holds the path, not an open file), so dask workers can read it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                self.shape = tuple(int(n) for n in series.shape)
                self.dtype = np.dtype(series.dtype)
                self._offset = series.dataoffset
                pages = len(series.pages) if self._offset is None else 0
        except Exception as exc:  # tifffile raises many types for corrupt files
            raise ValueError(
                f"{self.path}: not a readable TIFF image ({first_line(exc)})"
            ) from None
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

    def _frame(self, index: int) -> np.ndarray:
        frame_shape = self.shape[-2:]
        if self._offset is not None:
            count = frame_shape[0] * frame_shape[1]
            with open(self.path, "rb") as handle:
                handle.seek(self._offset + index * count * self.dtype.itemsize)
                data = np.fromfile(handle, self.dtype, count)
            if data.size != count:
                raise ValueError(f"{self.path}: the file is truncated (frame {index})")
            return data.reshape(frame_shape).astype(self.dtype.newbyteorder("="), copy=False)
        if self._whole:
            return np.asarray(self._zarr_view()[index])
        with tifffile.TiffFile(self.path) as tif:
            return np.asarray(tif.series[0].pages[index].asarray())

    def _zarr_view(self) -> Any:
        if self._store is None:
            try:
                import zarr
            except ImportError:  # without zarr: the whole image, once
                self._store = read_image(self.path)
                return self._store
            self._store = zarr.open(tifffile.imread(self.path, aszarr=True), mode="r")
        return self._store

    def __getitem__(self, index: Any) -> np.ndarray:
        if self.ndim == 2:
            frame = self._frame(0)
            return frame if index is Ellipsis else frame[index]
        if isinstance(index, (int, np.integer)):
            if not -self.shape[0] <= index < self.shape[0]:
                raise IndexError(f"frame {index} of {self.shape[0]}")
            return self._frame(int(index) % self.shape[0])
        key = index if isinstance(index, tuple) else (index,)
        if key and key[0] is Ellipsis:
            key = (slice(None),) * (self.ndim - len(key) + 1) + key[1:]
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(first, (int, np.integer)):
            return self._frame(int(first) % self.shape[0])[rest]
        if not isinstance(first, slice):
            raise IndexError(f"{self.path}: frames are indexed by integers or slices")
        frames = range(self.shape[0])[first]
        stack = np.empty((len(frames), *self.shape[1:]), self.dtype.newbyteorder("="))
        for k, i in enumerate(frames):
            stack[k] = self._frame(i)
        return stack[(slice(None), *rest)]


def open_frames(path: str | os.PathLike) -> Any:
    """An image or stack to read frame by frame: :class:`TiffFrames`, a zarr array
    (:func:`napari_pinned.io.zarr_store.open_zarr`), or for microscope files the data in
    memory (RosettaSciIO reads them whole)."""
    p = Path(path)
    if is_zarr_path(p):
        return open_zarr(p).array
    if is_microscope_file(p):
        return read_image(p)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    return TiffFrames(p)


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


# -- microscope files -----------------------------------------------------------------


@dataclass
class MicroscopeImage:
    """One 2D image or image stack from a microscope file.

    Attributes
    ----------
    data : numpy.ndarray
        ``(Y, X)`` image or ``(N, Y, X)`` stack, in the file's dtype.
    name : str
        Layer name: the file's stem, with the dataset's title when a file holds several.
    scale : tuple of float
        Size of one pixel along each axis; lengths in Å.
    units : tuple of str
        Unit of each axis: "Å" for calibrated lengths, "pixel" otherwise.
    metadata : dict
        The file's metadata as RosettaSciIO reports it (``metadata``,
        ``original_metadata``), with the file name and format.
    """

    data: np.ndarray
    name: str
    scale: tuple[float, ...]
    units: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def pixel_size(self) -> float | None:
        """Pixel size in Å along x, or None when the file has no length calibration."""
        return float(self.scale[-1]) if self.units[-1] == "Å" else None


def is_microscope_file(path: str | os.PathLike) -> bool:
    """True when the file's suffix is one RosettaSciIO reads for us."""
    return Path(path).suffix.lower() in MICROSCOPE_FORMATS


def _rsciio_reader(suffix: str) -> Any:
    import importlib

    module = MICROSCOPE_FORMATS[suffix]
    try:
        return importlib.import_module(f"rsciio.{module}").file_reader
    except ImportError:
        raise ValueError(
            f"reading {suffix} files needs RosettaSciIO, which is not installed: {_INSTALL_HINT}"
        ) from None


def _axis_calibration(axis: dict[str, Any]) -> tuple[float, str]:
    """(scale, unit) of one axis, lengths converted to Å; uncalibrated axes are (1, pixel)."""
    factor = angstrom_per(str(axis.get("units") or ""))
    scale = float(axis.get("scale") or 1.0)
    if factor is None or not math.isfinite(scale) or scale <= 0:
        return 1.0, "pixel"
    return scale * factor, "Å"


def _dataset_title(dataset: dict[str, Any], index: int) -> str:
    general = (dataset.get("metadata") or {}).get("General") or {}
    return str(general.get("title") or f"dataset {index}")


def read_microscope_file(path: str | os.PathLike) -> tuple[list[MicroscopeImage], list[str]]:
    """Read the images and image stacks of a .dm3/.dm4/.emd/.ser/.mrc file.

    Every dataset with two signal axes becomes a :class:`MicroscopeImage`: a 2D image,
    or with one navigation axis (a frame series, Velox multi-frame data, an MRC stack) an
    ``(N, Y, X)`` stack.  Spectra, spectrum images, 4D-STEM and complex data are skipped;
    each skip is described in the returned notes.

    Returns
    -------
    images : list of MicroscopeImage
    notes : list of str
        One line per skipped dataset or missing calibration.

    Raises
    ------
    ValueError
        If the file is missing, has another suffix, RosettaSciIO is not installed, or the
        file cannot be read (corrupt or not of its suffix's format).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in MICROSCOPE_FORMATS:
        known = ", ".join(MICROSCOPE_FORMATS)
        raise ValueError(f"{p}: not a microscope file napari-pinned reads ({known})")
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    reader = _rsciio_reader(suffix)
    # Velox files sum their frames unless told not to; a series must stay a series.
    kwargs = {"sum_frames": False} if suffix == ".emd" else {}
    try:
        datasets = reader(str(p), **kwargs)
    except Exception as exc:  # format libraries raise many types for corrupt files
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{p}: cannot read this {suffix} file ({message})") from None
    multiple = len(datasets) > 1
    images: list[MicroscopeImage] = []
    notes: list[str] = []
    for index, dataset in enumerate(datasets):
        title = _dataset_title(dataset, index)
        image, note = _as_image(dataset, p, title if multiple else None)
        if image is not None:
            images.append(image)
        if note:
            notes.append(f"{p.name}, {title!r}: {note}")
    return images, notes


def _as_image(
    dataset: dict[str, Any], path: Path, title: str | None
) -> tuple[MicroscopeImage | None, str | None]:
    data = np.asarray(dataset["data"])
    # Most plugins number their axes; TIA lists them in array order without numbers.
    listed = list(enumerate(dataset.get("axes") or []))
    axes = [a for _, a in sorted(listed, key=lambda ia: int(ia[1].get("index_in_array", ia[0])))]
    if len(axes) != data.ndim:
        return None, f"skipped (axes do not match its {data.ndim}-D data)"
    keep = [i for i, a in enumerate(axes) if int(a.get("size", data.shape[i])) > 1]
    data = data.reshape([data.shape[i] for i in keep])
    axes = [axes[i] for i in keep]
    signal = [i for i, a in enumerate(axes) if not a.get("navigate", False)]
    navigation = [i for i, a in enumerate(axes) if a.get("navigate", False)]
    if np.iscomplexobj(data):
        return None, "skipped (complex data)"
    if len(signal) != 2 or len(navigation) > 1:
        if len(signal) == 1:
            kind = "a spectrum image" if navigation else "a spectrum"
        elif len(signal) == 2:
            kind = f"{2 + len(navigation)}-D data ({len(navigation)} scan axes)"
        else:
            kind = f"{len(signal)}-D signal data"
        return None, f"skipped: {kind}, not an image or an image stack"
    order = navigation + signal
    data = np.transpose(data, order)
    calibrations = [_axis_calibration(axes[i]) for i in order]
    if navigation:
        # Frames are counted, not measured: the stack axis stays in steps of one.
        calibrations[0] = (1.0, "pixel")
    note = None
    if calibrations[-1][1] != "Å":
        unit = axes[signal[-1]].get("units")
        note = f"no length calibration (units {unit!r}); the layer's scale is 1 pixel"
    metadata = {
        "file": str(path),
        "format": MICROSCOPE_FORMATS[path.suffix.lower()],
        "metadata": dataset.get("metadata") or {},
        "original_metadata": dataset.get("original_metadata") or {},
    }
    name = path.stem if title is None else f"{path.stem} {title}"
    image = MicroscopeImage(
        data=data,
        name=name,
        scale=tuple(c[0] for c in calibrations),
        units=tuple(c[1] for c in calibrations),
        metadata=metadata,
    )
    return image, note


def _first_image(path: Path) -> MicroscopeImage:
    stat = path.stat()
    return _first_image_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


# The CLI asks for a file's image and then its pixel size; a microscope file can be
# hundreds of MB, so the second question must not read it again.  The key includes the
# modification time and size, so a rewritten file is read afresh.
@functools.lru_cache(maxsize=2)
def _first_image_cached(path: str, _mtime_ns: int, _size: int) -> MicroscopeImage:
    images, _notes = read_microscope_file(path)
    if not images:
        raise ValueError(f"{path}: the file holds no 2D image or image stack")
    return images[0]
