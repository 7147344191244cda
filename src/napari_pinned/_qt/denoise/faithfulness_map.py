"""The Denoise dock's faithfulness map: where the denoiser removed or invented structure.

After every faithfulness check the per-window result
(:class:`napari_pinned.quality.local_faithfulness.LocalFaithfulness`) is shown as a
translucent Labels layer over the output, on the output's grid (its scale, translate and
units): red where lattice was lost or structure removed, cyan where lattice was invented
or strengthened, orange where both.  A map is added when a check flags a region (a
faithful result adds no layer), one per output layer, named after it and marked in its
metadata; a later check of that output replaces the map's data in place (all clear when
it passes), and a layer of that name that the dock did not make is never touched (napari
gives the new map a free name).  Only the main thread calls this (the panel's finish handler).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_pinned.quality.local_faithfulness import LocalFaithfulness

__all__ = ["GAINED", "LOST", "map_name", "map_of", "show_map"]

#: Label values of the map (:meth:`LocalFaithfulness.label_map`).
LOST, GAINED = 1, 2
_COLOURS = {
    None: "transparent",
    0: "transparent",
    LOST: "#f44336",
    GAINED: "#00bcd4",
    LOST | GAINED: "#ff9800",
}
_MARK = "pinned_faithfulness_map_of"
_OPACITY = 0.35


def map_name(output_name: str) -> str:
    """The map layer's name for the output layer ``output_name``."""
    return f"{output_name} faithfulness map"


def map_of(viewer: napari.viewer.Viewer, output: Image) -> Labels | None:
    """The map this dock made for ``output``, if it is still in the viewer."""
    for layer in viewer.layers:
        if isinstance(layer, Labels) and layer.metadata.get(_MARK) == output.name:
            return layer
    return None


def show_map(viewer: napari.viewer.Viewer, output: Image, local: LocalFaithfulness) -> Labels:
    """Add or update the faithfulness map of ``output`` (2D, the checked frame; on a
    stack it lies over every frame)."""
    data = local.label_map()
    scale, translate = tuple(output.scale)[-2:], tuple(output.translate)[-2:]
    units = tuple(output.units)[-2:]
    layer = map_of(viewer, output)
    if layer is not None and layer.data.shape == data.shape:
        layer.data = data
        layer.scale, layer.translate, layer.units = scale, translate, units
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    return viewer.add_labels(
        np.asarray(data, np.uint8),
        name=map_name(output.name),
        scale=scale,
        translate=translate,
        units=units,
        opacity=_OPACITY,
        colormap=DirectLabelColormap(color_dict=_COLOURS),
        metadata={_MARK: output.name},
    )
