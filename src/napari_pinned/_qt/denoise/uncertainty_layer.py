"""The Denoise dock's uncertainty map: an optional layer beside each output.

With "Uncertainty map" ticked (off by default), the job is
:func:`~napari_pinned.denoising.denoiser.iter_denoise` with an uncertainty array
(:mod:`napari_pinned.denoising.uncertainty`: each output pixel's standard deviation, in
the output's units, from the spread over the orientations and the noise map), and the
map is added as ``"<output> uncertainty (σ)"`` on the output's grid, with one line
under the faithfulness readout: the median ±2σ and where the least certain pixels are.
Its cost: the orientations it is built on (ticking it chooses 8 when 1 is chosen: 8
network passes, about 4 times a plain denoise of a 256² frame on two CPU cores,
``benchmarks/uncertainty.py``) plus the summary's noise fit of one frame.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QLabel, QWidget

from napari_pinned._qt.shared.common import add_or_update_image

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_pinned._qt.denoise.output_layer import OutputTarget
    from napari_pinned.denoising.denoiser import DenoiseProgress
    from napari_pinned.settings import FrameOptions

__all__ = ["Uncertain", "UncertaintyView", "denoise_with_map", "split_result", "uncertainty_name"]


def uncertainty_name(output_name: str) -> str:
    """The uncertainty layer's name beside the output layer ``output_name``."""
    return f"{output_name} uncertainty (σ)"


@dataclass(frozen=True)
class Uncertain:
    """What an uncertainty job returns: the output, its map and the summary line."""

    output: np.ndarray
    sigma: np.ndarray
    summary: str


def denoise_with_map(
    data: np.ndarray, model: Any, options: FrameOptions
) -> Generator[DenoiseProgress, None, Uncertain]:
    """The worker's job with the map (the core's, plus its summary line): reports after
    every network pass; returns an :class:`Uncertain`."""
    from napari_pinned.denoising.denoiser import iter_denoise_with_uncertainty
    from napari_pinned.denoising.uncertainty import summarize

    result = yield from iter_denoise_with_uncertainty(data, model, options)
    line = summarize(result.uncertainty, result.output, data, options.orientations)
    return Uncertain(result.output, result.uncertainty, line)


def split_result(result: Any) -> tuple[Any, Uncertain | None]:
    """``(output, Uncertain or None)`` of what a denoising job returned."""
    if isinstance(result, Uncertain):
        return result.output, result
    return result, None


class UncertaintyView:
    """The summary line (:attr:`label`, placed by the dock) and the map layers."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.label = QLabel("", parent)
        self.label.setWordWrap(True)
        self.label.setToolTip(
            "Each output pixel's standard deviation: the true value lies within ±2σ for "
            "about 95 % of pixels (calibrated for the default model at strength 1; "
            "docs/metrics.md, 'Uncertainty').  Least certain: where the turned and mirrored "
            "copies of the image disagree more than the noise explains."
        )
        self.label.hide()

    def show(self, viewer: napari.viewer.Viewer, target: OutputTarget, result: Uncertain) -> Image:
        """Add (or update) the map beside ``target``'s output and show the summary."""
        layer = add_or_update_image(
            viewer,
            result.sigma,
            uncertainty_name(target.name),
            scale=target.scale,
            translate=target.translate,
            units=target.units,
            colormap="inferno",
            visible=False,
            metadata={"pinned_source": target.source, "pinned_uncertainty_of": target.name},
        )
        self.label.setText(f"{result.summary} (map added as layer {layer.name!r}, hidden)")
        self.label.show()
        return layer

    def clear(self) -> None:
        """Hide the summary (a run without the map)."""
        self.label.setText("")
        self.label.hide()
