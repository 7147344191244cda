"""Microscope files (Gatan .dm3/.dm4, Velox and Berkeley .emd, FEI/TIA .ser, .mrc).

They are read with RosettaSciIO, an optional dependency (``pip install
"napari-pinned[io]"``): :func:`read_microscope_file` keeps the 2D images and image stacks
of a file, with their calibration converted to Å, and says which other datasets it
skipped.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pinned._util.units import angstrom_per

__all__ = [
    "MICROSCOPE_FORMATS",
    "MicroscopeImage",
    "check_mrc_header",
    "first_image",
    "is_microscope_file",
    "read_microscope_file",
]

#: Microscope file suffixes → the RosettaSciIO plugin that reads them.
MICROSCOPE_FORMATS = {
    ".dm3": "digitalmicrograph",
    ".dm4": "digitalmicrograph",
    ".emd": "emd",
    ".ser": "tia",
    ".mrc": "mrc",
}
_INSTALL_HINT = "pip install 'napari-pinned[io]'"


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
    if suffix == ".mrc":
        check_mrc_header(p)
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


# MRC2014 (https://www.ccpem.ac.uk/mrc_format/mrc2014.php): a 1024-byte header of 32-bit
# words, nx, ny, nz and mode first, the extended header's length (NEXT) at byte 92; the
# modes RosettaSciIO reads (rsciio.mrc.get_data_type) and their bytes per voxel; it
# reads the header little-endian.
_MRC_HEADER_BYTES = 1024
_MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 4: 8, 6: 2, 12: 2}


def check_mrc_header(path: Path) -> None:
    """Refuse an .mrc file whose header disagrees with its size, before it is read.

    RosettaSciIO maps the data the header describes: a corrupt header claiming 10¹⁵
    voxels in a 5 KB file would make it hang or exhaust the memory.

    Raises
    ------
    ValueError
        One line naming the file and what its header claims.
    """
    size = path.stat().st_size
    what = f"{path}: cannot read this .mrc file"
    if size < _MRC_HEADER_BYTES:
        raise ValueError(f"{what} ({size} bytes, shorter than the 1024-byte MRC header)")
    with open(path, "rb") as handle:
        header = handle.read(_MRC_HEADER_BYTES)
    nx, ny, nz, mode = (int(v) for v in np.frombuffer(header, "<u4", count=4))
    extended = int(np.frombuffer(header, "<u4", count=1, offset=92)[0])
    if mode not in _MRC_MODE_BYTES:
        known = ", ".join(str(m) for m in _MRC_MODE_BYTES)
        raise ValueError(f"{what} (data mode {mode}; napari-pinned reads modes {known})")
    needed = _MRC_HEADER_BYTES + extended + nx * ny * nz * _MRC_MODE_BYTES[mode]
    if size < needed:
        raise ValueError(
            f"{what} (its header claims {nx}×{ny}×{nz} voxels of mode {mode}, which needs "
            f"{needed} bytes; the file has {size}: truncated or not an MRC file)"
        )


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


def first_image(path: Path) -> MicroscopeImage:
    """The first image or stack of a microscope file (read once per file version)."""
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
