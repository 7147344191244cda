"""Files in and out: TIFF images and stacks, microscope files (.dm3/.dm4/.emd/.ser/.mrc
through RosettaSciIO), zarr and OME-Zarr stores, and the safe (atomic) writes every
output goes through.

The reading and writing functions are importable from here; their modules (and tifffile,
zarr) load on first use.
"""

from __future__ import annotations

from napari_pinned._util.lazy import lazy_attributes

_NAMES = {
    name: "napari_pinned.io.images"
    for name in (
        "MICROSCOPE_FORMATS",
        "MicroscopeImage",
        "TiffFrames",
        "TiffStackWriter",
        "image_shape",
        "is_microscope_file",
        "open_frames",
        "read_image",
        "read_microscope_file",
        "read_pixel_size",
        "write_csv",
        "write_png",
        "write_tiff",
    )
}
_NAMES.update({name: "napari_pinned.io.zarr_store" for name in ("is_zarr_path", "open_zarr")})

__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
