"""Sample data for napari's File → Open Sample menu, simulated from the bundled CIFs.

These functions return napari layer-data tuples (plain data + metadata dicts), so the
module needs neither napari nor Qt.
"""

from __future__ import annotations

import numpy as np

from napari_pinned.noise.synthesis import add_cdn_noise
from napari_pinned.physics.simulate import SimulationResult, column_points, simulate

_SIZE = 384
_PIXEL = 0.1


def _image_kwargs(result: SimulationResult, name: str) -> dict:
    return {
        "name": name,
        "scale": (result.pixel_size, result.pixel_size),
        "units": ("Å", "Å"),
        "colormap": "gray",
        "metadata": {"pixel_size": result.pixel_size, "material": result.material},
    }


def _columns_layer(result: SimulationResult) -> tuple:
    positions, kwargs = column_points(result, f"{result.label()} columns")
    return (positions, {**kwargs, "visible": False}, "points")


def srtio3_001() -> list[tuple]:
    """SrTiO3 along [001], clean, with its ground-truth columns."""
    result = simulate("SrTiO3", (0, 0, 1), shape=_SIZE, pixel_size=_PIXEL, seed=0)
    return [(result.image, _image_kwargs(result, result.label()), "image"), _columns_layer(result)]


def si_110_cdn3() -> list[tuple]:
    """Si along [110] at CDN level 3, with the clean reference."""
    result = simulate("Si", (1, 1, 0), shape=_SIZE, pixel_size=_PIXEL, seed=0)
    noisy = add_cdn_noise(result.image, 3, seed=0)
    label = result.label()
    return [
        (result.image, _image_kwargs(result, f"{label} clean"), "image"),
        (noisy, _image_kwargs(result, f"{label} CDN 3"), "image"),
        _columns_layer(result),
    ]


def gan_stack() -> list[tuple]:
    """GaN along [11-20]: a 10-frame stack at CDN level 2 (independent noise per frame)."""
    result = simulate("GaN", (1, 1, -2, 0), shape=256, pixel_size=_PIXEL, seed=0)
    stack = add_cdn_noise(np.repeat(result.image[None], 10, axis=0), 2, seed=0)
    kwargs = _image_kwargs(result, f"{result.label()} noisy stack")
    kwargs["scale"] = (1.0, result.pixel_size, result.pixel_size)
    kwargs["units"] = ("pixel", "Å", "Å")
    return [
        (stack, kwargs, "image"),
        (result.image, _image_kwargs(result, f"{result.label()} clean"), "image"),
    ]
