"""What denoising accepts: numpy arrays, arrays read frame by frame (a memory-mapped
TIFF, zarr) and dask arrays, checked from their header without reading them."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from napari_pinned._util.intensity import check_header, check_image

__all__ = ["check_array", "is_dask_array"]


def is_dask_array(image: Any) -> bool:
    """True for a dask array (without importing dask when it is not loaded)."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(image, module.Array)


def check_array(image: Any) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and whether ``image`` is in memory (numpy), checked without reading
    a lazy array: its values are checked frame by frame as they are read."""
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if isinstance(image, np.ndarray) or shape is None or dtype is None:
        arr = check_image(image, name="image", ndim=(2, 3))
        return arr.shape, arr.dtype, True
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    check_header(shape, dtype, name="image", ndim=(2, 3))
    return shape, dtype, False
