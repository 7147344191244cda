"""Files in and out: :mod:`.images` (one entry point per question, whatever the file;
CSV and PNG), :mod:`.tiff` (TIFF images and stacks), :mod:`.microscope`
(.dm3/.dm4/.emd/.ser/.mrc through RosettaSciIO), :mod:`.zarr_store` (zarr and OME-Zarr
stores) and :mod:`.safe_write` (the atomic writes every output goes through).

The reading and writing functions are importable from here; their modules (and tifffile,
zarr) load on first use.
"""

from __future__ import annotations

from napari_pinned._util.lazy import lazy_attributes

_NAMES = {
    "image_shape": "napari_pinned.io.images",
    "open_frames": "napari_pinned.io.images",
    "read_image": "napari_pinned.io.images",
    "read_pixel_size": "napari_pinned.io.images",
    "write_csv": "napari_pinned.io.images",
    "write_png": "napari_pinned.io.images",
    "IMAGEJ_MAX_BYTES": "napari_pinned.io.tiff",
    "TiffFrames": "napari_pinned.io.tiff",
    "TiffStackWriter": "napari_pinned.io.tiff",
    "write_tiff": "napari_pinned.io.tiff",
    "MICROSCOPE_FORMATS": "napari_pinned.io.microscope",
    "MicroscopeImage": "napari_pinned.io.microscope",
    "is_microscope_file": "napari_pinned.io.microscope",
    "read_microscope_file": "napari_pinned.io.microscope",
    "is_zarr_path": "napari_pinned.io.zarr_store",
    "open_zarr": "napari_pinned.io.zarr_store",
}

__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
