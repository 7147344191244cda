"""Image files for the CLI, scripts and the napari reader: one entry point per question.

:func:`read_image`, :func:`image_shape`, :func:`read_pixel_size` and :func:`open_frames`
answer for any file napari-pinned reads — TIFF (:mod:`~napari_pinned.io.tiff`), zarr
stores (:mod:`~napari_pinned.io.zarr_store`) and microscope files
(:mod:`~napari_pinned.io.microscope`).  Tables and figures are written here too (CSV,
PNG); every write goes through :mod:`napari_pinned.io.safe_write`.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_pinned._util.memory import check_memory
from napari_pinned.io.microscope import first_image, is_microscope_file
from napari_pinned.io.safe_write import atomic_write
from napari_pinned.io.tiff import TiffFrames, read_tiff, tiff_pixel_size, tiff_shape
from napari_pinned.io.zarr_store import is_zarr_path, open_zarr

__all__ = [
    "image_shape",
    "open_frames",
    "read_image",
    "read_pixel_size",
    "write_csv",
    "write_png",
]


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
        image = first_image(p)
        return tuple(image.data.shape), image.data.dtype
    return tiff_shape(p)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D image or a stack from a TIFF file, a zarr store, or the first image or
    stack of a microscope file (:data:`~napari_pinned.io.microscope.MICROSCOPE_FORMATS`).

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
        return first_image(p).data.copy()
    return read_tiff(p)


def read_pixel_size(path: str | os.PathLike) -> float | None:
    """Pixel size in Å of a TIFF written by :func:`~napari_pinned.io.tiff.write_tiff`, a
    zarr store or a microscope file's first image, or None if the file has none."""
    if is_zarr_path(path):
        try:
            return open_zarr(path).pixel_size
        except ValueError:
            return None
    if is_microscope_file(path):
        try:
            return first_image(Path(path)).pixel_size
        except ValueError:
            return None
    return tiff_pixel_size(path)


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
