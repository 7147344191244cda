"""Reading and writing image files for the CLI and scripts.

TIFF is the exchange format: float32 is kept as float32 (no 8-bit rounding of
quantitative data) and the pixel size in Å is stored in the ImageJ metadata, so Fiji
and napari show the right scale.  Writes are atomic: a temporary file in the target
folder is renamed over the destination only once complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile

_IMAGEJ_ANGSTROM = "\\u00C5"
_ANGSTROM_UNITS = (_IMAGEJ_ANGSTROM, "Å", "A", "angstrom")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D image or a stack from a TIFF file.

    Raises
    ------
    ValueError
        If the file is missing, is not a readable TIFF, or holds no image data.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    try:
        data = tifffile.imread(p)
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise ValueError(f"{p}: not a readable TIFF image ({exc})") from None
    data = np.asarray(data)
    if data.size == 0:
        raise ValueError(f"{p}: the file holds no image data")
    return data


def read_pixel_size(path: str | os.PathLike) -> float | None:
    """Pixel size in Å stored by :func:`write_tiff`, or None if the file has none."""
    try:
        with tifffile.TiffFile(path) as tif:
            meta = tif.imagej_metadata or {}
            tag = tif.pages[0].tags.get("XResolution")
            if tag is not None and meta.get("unit") in _ANGSTROM_UNITS:
                num, den = tag.value
                return den / num if num else None
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
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        tifffile.imwrite(tmp, data, **kwargs)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p
