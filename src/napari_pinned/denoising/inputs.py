"""What denoising accepts: numpy arrays, arrays read frame by frame (a memory-mapped
TIFF, zarr) and dask arrays, checked from their header without reading them."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from napari_pinned._util.intensity import check_header, check_image

__all__ = ["as_array", "check_array", "check_noise", "check_noise_fit", "is_dask_array"]


def is_dask_array(image: Any) -> bool:
    """True for a dask array (without importing dask when it is not loaded)."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(image, module.Array)


def as_array(image: Any) -> Any:
    """``image``, with a torch tensor on the CPU taken as the numpy array it holds (as a
    notebook user expects); a tensor elsewhere is refused with what to pass instead."""
    torch = sys.modules.get("torch")  # a tensor means torch is loaded: no import here
    if torch is None or not isinstance(image, torch.Tensor):
        return image
    if image.device.type != "cpu":
        raise ValueError(
            f"image is a torch tensor on {image.device}; pass a numpy array (image.cpu().numpy())"
        )
    return image.detach().numpy()


def check_noise(noise: Any) -> None:
    """``noise`` must be a :class:`~napari_pinned.noise.estimate.NoiseEstimate` or None."""
    from napari_pinned.noise.estimate import NoiseEstimate

    if noise is not None and not isinstance(noise, NoiseEstimate):
        raise ValueError(
            f"noise must be a NoiseEstimate (napari_pinned.noise.estimate.estimate_noise) "
            f"or None to estimate it per frame, got {type(noise).__name__} {noise!r:.40}"
        )


def check_array(image: Any) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and whether ``image`` is in memory (numpy), checked without reading
    a lazy array: its values are checked frame by frame as they are read."""
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if isinstance(image, np.ndarray) or shape is None or dtype is None:
        arr = check_image(image, name="image", ndim=(2, 3))
        return arr.shape, arr.dtype, True
    shape = tuple(int(n) for n in shape)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(
            f"image has dtype {dtype!r}, which numpy does not know; pass a numpy array"
        ) from None
    check_header(shape, dtype, name="image", ndim=(2, 3))
    return shape, dtype, False


def check_noise_fit(shape: tuple[int, ...], *, name: str = "image") -> None:
    """Refuse, from the shape alone, frames too small for the noise fit that denoising
    without a given noise estimate starts with (``noise.estimate.MIN_EDGE``), before the
    model loads: a 100000×1 strip was refused only once the work had started."""
    from napari_pinned.noise.estimate import MIN_EDGE

    if len(shape) >= 2 and min(shape[-2:]) < MIN_EDGE:
        dims = "×".join(str(n) for n in shape[-2:])
        raise ValueError(
            f"{name} is {dims} px, too small to estimate its noise: denoising needs at "
            f"least {MIN_EDGE} px on each side"
        )
