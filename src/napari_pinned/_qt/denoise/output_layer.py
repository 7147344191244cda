"""The Denoise dock's output layer: its name, placement and provenance.

The target is taken from the input layer when a job starts, so that renaming or moving
the input while the job runs cannot misplace or misname the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari_pinned._qt.shared.common import add_or_update_image

if TYPE_CHECKING:
    import napari
    import numpy as np
    from napari.layers import Image

__all__ = ["OutputTarget", "denoised_name"]


def denoised_name(name: str) -> str:
    """Name of the output layer for input layer ``name``."""
    return f"{name} denoised"


@dataclass(frozen=True)
class OutputTarget:
    """Where the output of a denoising job goes, and what it records about its making."""

    name: str
    source: str
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[Any, ...]  # napari's pint units, passed back as they came
    contrast_limits: tuple[float, float]
    model: str
    strength: float = 1.0

    @classmethod
    def of(cls, layer: Image, model: str, strength: float) -> OutputTarget:
        """The output of denoising ``layer`` with ``model`` at ``strength``: on the
        input's grid, in its units and contrast."""
        return cls(
            name=denoised_name(layer.name),
            source=layer.name,
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
            units=tuple(layer.units),
            contrast_limits=tuple(layer.contrast_limits),
            model=model,
            strength=strength,
        )

    def add(self, viewer: napari.viewer.Viewer, data: np.ndarray) -> Image:
        """Add the output layer with ``data`` (or replace the data of an earlier one)."""
        return add_or_update_image(
            viewer,
            data,
            self.name,
            scale=self.scale,
            translate=self.translate,
            units=self.units,
            contrast_limits=self.contrast_limits,
            metadata={
                "pinned_model": self.model,
                "pinned_source": self.source,
                "pinned_strength": self.strength,
            },
        )
