"""The Denoise dock's "Compare" group: side-by-side grid, residual and power spectrum.

The panel only reads layers: the dock tells it, through a callable, which layers are the
input, its denoised output and the reference at the moment a button is pressed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox
from napari.layers import Image
from qtpy.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QPushButton, QWidget

from napari_pinned._qt.shared.common import (
    add_or_update_image,
    call_or_notify,
    notify_error,
    notify_warning,
)

if TYPE_CHECKING:
    import napari

__all__ = ["ComparePanel", "residual_name", "spectrum_name"]

#: The input, its denoised output and the reference (each None when absent).
Layers = tuple[Image | None, Image | None, Image | None]


def residual_name(name: str) -> str:
    """Name of the residual (input − output) layer for input layer ``name``."""
    return f"{name} residual"


def spectrum_name(name: str) -> str:
    """Name of the power-spectrum layer of layer ``name``."""
    return f"{name} FFT"


def _grid(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, before that
    ``viewer.grid``)."""
    canvas = getattr(viewer, "canvas", None)
    grid = getattr(canvas, "grid", None)
    return grid if grid is not None else viewer.grid


class ComparePanel(QGroupBox):
    """Grid view, residual and power spectrum of the dock's layers.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Receives the residual and spectrum layers; its grid shows the comparison.
    layers : callable
        Gives the input, its denoised output and the reference, in that order.
    image_choices : callable
        Choices of the spectrum's layer combo (greyscale Image layers).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        layers: Callable[[], Layers],
        image_choices: Callable[..., list[tuple[str, Image]]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Compare", parent)
        self._viewer = viewer
        self._layers = layers
        self._saved_visibility: dict[str, bool] | None = None
        self._saved_grid_shape: tuple[int, int] | None = None
        self._saved_order: list[Any] | None = None
        form = QFormLayout(self)
        self.compare_button = QPushButton("Grid: noisy / denoised / reference")
        self.compare_button.setCheckable(True)
        self.compare_button.toggled.connect(self.set_compare)
        self.residual_button = QPushButton("Residual (input − denoised)")
        self.residual_button.clicked.connect(lambda: self.add_residual())
        self.fft_layer = ComboBox(choices=image_choices)
        self.fft_button = QPushButton("Power spectrum")
        self.fft_button.clicked.connect(lambda: self.add_spectrum())
        fft_row = QHBoxLayout()
        fft_row.addWidget(self.fft_layer.native, 1)
        fft_row.addWidget(self.fft_button)
        form.addRow(self.compare_button)
        form.addRow(self.residual_button)
        form.addRow("FFT of", fft_row)

    def set_compare(self, enabled: bool) -> None:
        """Grid view of noisy / denoised / reference with only those visible, or back."""
        if enabled:
            shown = [layer for layer in self._layers() if layer is not None]
            if len(shown) < 2:
                notify_warning("Compare: denoise the input (or pick a reference) first")
                self._set_compare_button(False)
                return
            self._show_grid(shown)
        else:
            self._restore()
        self._set_compare_button(enabled)

    def _show_grid(self, shown: list[Image]) -> None:
        """Only ``shown`` visible, side by side in that order, the view fitted to them."""
        viewer = self._viewer
        self._saved_visibility = {layer.name: layer.visible for layer in viewer.layers}
        self._saved_order = list(viewer.layers)
        for layer in viewer.layers:
            layer.visible = layer in shown
        # The grid places visible layers in layer-list order, so moving them to the top
        # of the list, in the label's order, puts noisy left and the reference right.
        for layer in shown:
            viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))
        grid = _grid(viewer)
        # One row, side by side: napari places only visible layers in the grid.
        self._saved_grid_shape = tuple(grid.shape)
        grid.shape = (1, len(shown))
        grid.enabled = True
        # The camera still frames one image: fit the whole row or the panels are clipped.
        viewer.reset_view()

    def _restore(self) -> None:
        """The grid, layer order and visibility as they were before comparing."""
        viewer = self._viewer
        grid = _grid(viewer)
        grid.enabled = False
        if self._saved_grid_shape is not None:
            grid.shape = self._saved_grid_shape
            self._saved_grid_shape = None
        # Layers added meanwhile stay on top; removed ones are skipped.
        kept = [layer for layer in self._saved_order or [] if layer in viewer.layers]
        for target, layer in enumerate(kept):
            current = viewer.layers.index(layer)
            if current != target:
                viewer.layers.move(current, target)
        self._saved_order = None
        for name, visible in (self._saved_visibility or {}).items():
            if name in viewer.layers:
                viewer.layers[name].visible = visible
        self._saved_visibility = None
        viewer.reset_view()

    def _set_compare_button(self, checked: bool) -> None:
        self.compare_button.blockSignals(True)
        self.compare_button.setChecked(checked)
        self.compare_button.blockSignals(False)

    def add_residual(self) -> Image | None:
        """Add ``"<input> residual"`` = input − denoised (float32, symmetric contrast)."""
        inp, out, _ = self._layers()
        if inp is None or out is None:
            notify_error("Residual: denoise the input layer first")
            return None
        if tuple(inp.data.shape) != tuple(out.data.shape):
            notify_error(
                f"Residual: {inp.name!r} {tuple(inp.data.shape)} and {out.name!r} "
                f"{tuple(out.data.shape)} differ in shape"
            )
            return None
        residual = np.asarray(inp.data, dtype=np.float32) - np.asarray(out.data, dtype=np.float32)
        peak = float(np.max(np.abs(residual))) or 1.0
        return add_or_update_image(
            self._viewer,
            residual,
            residual_name(inp.name),
            scale=tuple(inp.scale),
            translate=tuple(inp.translate),
            units=tuple(inp.units),
            contrast_limits=(-peak, peak),
        )

    def add_spectrum(self, layer: Image | None = None, *, window: bool = True) -> Image | None:
        """Add ``"<layer> FFT"``: the log power spectrum (per frame for stacks).

        Its axes are spatial frequency, 1/(N·pixel size) per pixel, zero at the centre;
        it is placed with the source's scale and units so that it covers the same
        extent and keeps the viewer's units consistent (see the comment below).
        """
        from napari_pinned.quality.spectra import power_spectrum

        layer = self.fft_layer.value if layer is None else layer
        if layer is None:
            notify_error("Power spectrum: choose an Image layer")
            return None
        spectrum = call_or_notify(
            power_spectrum, layer.data, window=window, context="Power spectrum"
        )
        if spectrum is None:
            return None
        # Spatial frequency: pixel k of an N-pixel axis is k/(N·a) for pixel size a, so
        # the true step is 1/(N·a) Å⁻¹.  napari draws every layer in one world, and a
        # layer in other units (or none) makes it drop units altogether ("Inconsistent
        # units across layers", no "Å" on the scale bar) and draws the spectrum at a
        # different size from its image (1/a times larger for 0.1-Å pixels).  The
        # spectrum therefore takes the source's scale, translate and units: it covers
        # the image's extent, as in a grid cell.
        return add_or_update_image(
            self._viewer,
            spectrum,
            spectrum_name(layer.name),
            colormap="magma",
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
            units=tuple(layer.units),
        )
