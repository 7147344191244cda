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
    **{
        name: "napari_pinned.io.images"
        for name in (
            "image_shape",
            "open_frames",
            "read_image",
            "read_pixel_size",
            "write_csv",
            "write_png",
        )
    },
    **{
        name: "napari_pinned.io.tiff"
        for name in ("IMAGEJ_MAX_BYTES", "TiffFrames", "TiffStackWriter", "write_tiff")
    },
    **{
        name: "napari_pinned.io.microscope"
        for name in (
            "MICROSCOPE_FORMATS",
            "MicroscopeImage",
            "is_microscope_file",
            "read_microscope_file",
        )
    },
    **{name: "napari_pinned.io.zarr_store" for name in ("is_zarr_path", "open_zarr")},
}

__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
