"""The Denoise dock's output layers: their names, placement and provenance, and which
one belongs to an input.

An output's name carries what made it, ``"<input> denoised (<model>, ×<strength>)"``
(plus the orientations and the lattice guard when not the defaults; no strength for
models without a noise map, which ignore it): each distinct setting adds its own layer,
so that two strengths or two models can be compared side by side, and only an identical
re-run replaces a layer's data (in place, keeping the user's contrast).  Tile size,
overlap and device are not part of the name: they do not change the result.

The target is taken from the input layer when a job starts, so that renaming or moving
the input, or changing a setting, while the job runs cannot misplace or misname the
output.  :class:`Outputs` remembers which output was made from which input, the newest
last: the dock's readouts (metrics, residual, grid, faithfulness) use the newest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari.layers import Image

from napari_pinned._qt.shared.common import add_or_update_image, find_layer

if TYPE_CHECKING:
    import napari
    import numpy as np

__all__ = ["OutputTarget", "Outputs", "denoised_name", "setting_label"]


def denoised_name(name: str, setting: str = "") -> str:
    """Name of the output layer for input layer ``name`` made with ``setting``
    (:func:`setting_label`)."""
    return f"{name} denoised ({setting})" if setting else f"{name} denoised"


def setting_label(
    model: str, strength: float | None, orientations: int = 1, keep_lattice: bool = True
) -> str:
    """What made an output, for its name: ``"default, ×0.5"``; ``strength`` None for a
    model without a noise map (it ignores the strength)."""
    parts = [model]
    if strength is not None:
        parts.append(f"×{strength:g}")
    if orientations > 1:
        parts.append(f"{orientations} orientations")
    if not keep_lattice:
        parts.append("lattice guard off")
    return ", ".join(parts)


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
    setting: str = ""
    input_layer: Image | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, layer: Image, model: str, strength: float, setting: str = "") -> OutputTarget:
        """The output of denoising ``layer`` with ``model`` at ``strength``, named after
        ``setting`` (:func:`setting_label`): on the input's grid, in its units and contrast."""
        return cls(
            name=denoised_name(layer.name, setting),
            source=layer.name,
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
            units=tuple(layer.units),
            contrast_limits=tuple(layer.contrast_limits),
            model=model,
            strength=strength,
            setting=setting,
            input_layer=layer,
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
                "pinned_setting": self.setting,
            },
        )


class Outputs:
    """Which output layer was made from which input layer, the newest last.

    Holds only layers still in the viewer (:meth:`forget_removed`), so that a deleted
    layer's data is not kept alive.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self._pairs: list[tuple[Image, Image]] = []

    def made(self, source: Image | None, output: Image) -> None:
        """``output`` was (re)made from ``source``: it is now the newest of ``source``."""
        self._pairs = [(s, o) for s, o in self._pairs if o is not output]
        if source is not None:
            self._pairs.append((source, output))

    def forget_removed(self) -> None:
        """Drop the pairs whose input or output left the viewer."""
        present = {id(layer) for layer in self._viewer.layers}
        self._pairs = [(s, o) for s, o in self._pairs if id(s) in present and id(o) in present]

    def newest(self, source: Image) -> Image | None:
        """The newest output of ``source``: one this dock made, else (a layer from an
        earlier session or another tool) ``"<name> denoised"`` or the top-most
        ``"<name> denoised (…)"``."""
        self.forget_removed()
        for made_from, output in reversed(self._pairs):
            if made_from is source:
                return output
        plain = find_layer(self._viewer, denoised_name(source.name), Image)
        if plain is not None:
            return plain
        prefix = f"{denoised_name(source.name)} ("
        for layer in reversed(self._viewer.layers):
            if isinstance(layer, Image) and layer.name.startswith(prefix):
                return layer
        return None
