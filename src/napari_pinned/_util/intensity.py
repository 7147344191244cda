"""Intensity ranges shared by the noise model, the metrics and the model's normalisation.

The paper works on 8-bit-like images in [0, 255]; our CDN parameters and PSNR are
expressed in those units.  Real data arrive as uint8, uint16 or float with arbitrary
offsets, so every core function maps them through one convention, defined here, to
make "CDN level 3" or "PSNR 20 dB" mean the same thing whatever the dtype.
"""

from __future__ import annotations

import math

import numpy as np

#: The paper's intensity scale: CDN parameters and PSNR are quoted in these units.
PAPER_RANGE: tuple[float, float] = (0.0, 255.0)
#: Float images normalised to [0, 1].
UNIT_RANGE: tuple[float, float] = (0.0, 1.0)
#: Largest intensity magnitude accepted.  Images are processed and written as float32
#: (largest value 3.4e38); values near that overflow to infinity in the first sum or
#: difference and come back as an all-NaN result.  No detector records 1e30, so such
#: values mean a corrupt file or data that need rescaling.
MAX_ABS_INTENSITY = 1e30
#: A frame is clipped at an end of its range when at least this fraction of its pixels
#: holds exactly that value.  Clipping repeats the end values (CDN images, clipped to
#: their range: ≥ 12 % at the bottom and ≥ 2.5 % at the top on every bundled material
#: from level 0.5 on; 8-bit recordings); unclipped data reach their extremes at one or
#: a few pixels (tk-r-em's real HAADF scans: ≤ 3.4e-6 of the pixels at either end).
CLIPPED_FRACTION = 5e-4
#: Beyond this magnitude float32 keeps fewer than ~7 significant digits of an offset
#: plus a small signal, so the mapping to the paper's scale is computed in float64.
_FLOAT32_SAFE = 1e6


def clipped_ends(image: np.ndarray) -> tuple[float, float] | None:
    """``(low, high)``, the image's extremes, when it is clipped at both
    (:data:`CLIPPED_FRACTION` of its pixels exactly at each); None otherwise."""
    x = np.asarray(image)
    if x.size == 0:
        return None
    ends = (float(np.min(x)), float(np.max(x)))
    least = CLIPPED_FRACTION * x.size
    if np.count_nonzero(x == ends[0]) < least or np.count_nonzero(x == ends[1]) < least:
        return None
    return ends


def infer_data_range(image: np.ndarray) -> tuple[float, float]:
    """Return the ``(low, high)`` intensity range an image is expressed in.

    uint8 images, and any image whose values all lie in [0, 255], use the paper's
    scale (0, 255) — except float images within [0, 1], the other common
    normalised convention, which use (0, 1).  Everything else (uint16 counts,
    float images with other offsets) uses its own minimum and maximum.

    Parameters
    ----------
    image : numpy.ndarray
        Image or stack of any real dtype.

    Returns
    -------
    tuple of float
        ``(low, high)`` with ``high > low``.

    Raises
    ------
    ValueError
        If the image is empty or contains NaN or infinite values.
    """
    arr = np.asarray(image)
    if arr.size == 0:
        raise ValueError("image is empty")
    if arr.dtype == np.uint8:
        return PAPER_RANGE
    if np.iscomplexobj(arr) or arr.dtype == bool:
        raise ValueError(f"image dtype {arr.dtype} is not a real intensity type")
    lo = float(np.min(arr))
    hi = float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("image contains NaN or infinite values")
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return UNIT_RANGE
    if lo >= PAPER_RANGE[0] and hi <= PAPER_RANGE[1]:
        return PAPER_RANGE
    if hi <= lo:
        # A constant image: any positive span will do, but lo + 1 == lo beyond 2**53.
        hi = lo + max(1.0, abs(lo) * 2.0**-20)
    return lo, hi


def to_paper_scale(image: np.ndarray, data_range: tuple[float, float]) -> np.ndarray:
    """Map ``image`` linearly from ``data_range`` to [0, 255] as float32."""
    lo, hi = data_range
    scale = PAPER_RANGE[1] / (hi - lo)
    if max(abs(lo), abs(hi)) > _FLOAT32_SAFE:
        # A large offset with a small signal would round away in float32.
        return ((np.asarray(image, dtype=np.float64) - lo) * scale).astype(np.float32)
    return ((np.asarray(image, dtype=np.float32) - np.float32(lo)) * np.float32(scale)).astype(
        np.float32, copy=False
    )


def from_paper_scale(image: np.ndarray, data_range: tuple[float, float]) -> np.ndarray:
    """Inverse of :func:`to_paper_scale`, returning float32."""
    lo, hi = data_range
    scale = (hi - lo) / PAPER_RANGE[1]
    return (np.asarray(image, dtype=np.float32) * np.float32(scale) + np.float32(lo)).astype(
        np.float32, copy=False
    )


def check_header(
    shape: tuple[int, ...], dtype: np.dtype, *, name: str = "image", ndim: tuple[int, ...] = (2, 3)
) -> None:
    """Check what an image's shape and dtype say, without reading its values.

    The part of :func:`check_image` that lazy arrays (zarr, TIFF frames, dask) get before
    their values are read; ``ValueError`` naming ``name`` for RGB images, wrong
    dimensionality, non-real dtypes and empty arrays.
    """
    dtype = np.dtype(dtype)
    real = np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)
    if dtype == np.bool_ or not real:
        raise ValueError(f"{name} has dtype {dtype}; expected real-valued intensities")
    if len(shape) >= 3 and shape[-1] in (3, 4) and shape[-2] > 4:
        raise ValueError(
            f"{name} looks like an RGB(A) image (shape {shape}); convert it to greyscale first"
        )
    if len(shape) not in ndim:
        allowed = " or ".join(f"{d}D" for d in ndim)
        raise ValueError(f"{name} must be {allowed}, got shape {shape}")
    if math.prod(shape) == 0:
        raise ValueError(f"{name} is empty (shape {shape})")


def check_image(
    image: np.ndarray, *, name: str = "image", ndim: tuple[int, ...] = (2, 3)
) -> np.ndarray:
    """Validate a greyscale image or stack and return it as a numpy array.

    Raises ``ValueError`` with a message naming ``name`` and the problem for RGB
    images, wrong dimensionality, non-real dtypes, empty arrays (:func:`check_header`),
    NaN/inf and values beyond ±:data:`MAX_ABS_INTENSITY`.
    """
    arr = np.asarray(image)
    check_header(arr.shape, arr.dtype, name=name, ndim=ndim)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        peak = max(abs(float(np.min(arr))), abs(float(np.max(arr))))
        if peak > MAX_ABS_INTENSITY:
            raise ValueError(
                f"{name} has values up to {peak:.3g}, beyond the ±{MAX_ABS_INTENSITY:.0e} "
                "napari-pinned computes with; rescale the data or check the file is not corrupt"
            )
    return arr
