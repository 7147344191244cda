"""The Denoise dock's "Compare" group: side-by-side grid, residual and power spectrum.

The panel only reads layers: the dock tells it, through a callable, which layers are the
input, its newest denoised output and the reference at the moment a button is pressed.

The power spectrum is drawn in spatial frequency, 1/Å with zero at its centre, so that
napari's cursor readout gives a reflection's (ky, kx) and its lattice spacing is
d = 1/√(ky² + kx²) (:func:`spectrum_axes`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox
from napari.layers import Image
from qtpy.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QWidget

from napari_pinned._qt.shared.common import (
    add_or_update_image,
    call_or_notify,
    layer_pixel_size,
    notify_error,
    notify_warning,
)

if TYPE_CHECKING:
    import napari

__all__ = ["ComparePanel", "residual_name", "spectrum_axes", "spectrum_name"]

#: The input, its denoised output and the reference (each None when absent).
Layers = tuple[Image | None, Image | None, Image | None]


def residual_name(name: str, output: str = "") -> str:
    """Name of the residual (input − output) layer for input layer ``name`` and output
    layer ``output``: ``"<name> residual (<setting>)"`` for ``"<name> denoised (<setting>)"``,
    so that the residuals of two settings are two layers."""
    prefix = f"{name} denoised"
    setting = output[len(prefix) :] if output.startswith(prefix) else ""
    return f"{name} residual{setting}"


def spectrum_name(name: str) -> str:
    """Name of the power-spectrum layer of layer ``name``."""
    return f"{name} FFT"


def spectrum_axes(layer: Image) -> dict[str, tuple[Any, ...]]:
    """``scale``, ``translate`` and ``units`` of the power spectrum of ``layer``.

    Pixel ``k`` of an ``N``-pixel axis is the spatial frequency ``k/(N·a)`` for pixels of
    ``a`` Å, so the spectrum's step is ``1/(N·a)`` 1/Å and the zero frequency, at index
    ``N // 2`` (``numpy.fft.fftshift``), sits at 0.  Without a pixel size
    (:func:`~napari_pinned._qt.shared.common.layer_pixel_size`) the unit is 1/pixel.  A
    stack's frame axis keeps the layer's.
    """
    scale, translate, units = list(layer.scale), list(layer.translate), list(layer.units)
    pixel_x = layer_pixel_size(layer)
    # Both axes in the layer's one length unit: y's pixel size in Å by the scales' ratio.
    sizes = (None, None) if pixel_x is None else (pixel_x * scale[-2] / scale[-1], pixel_x)
    for axis, size in zip((-2, -1), sizes, strict=True):
        n = layer.data.shape[axis]
        step = 1.0 / (n * (size or 1.0))
        scale[axis], translate[axis] = step, -(n // 2) * step
        units[axis] = "1/pixel" if size is None else "1/Å"
    return {"scale": tuple(scale), "translate": tuple(translate), "units": tuple(units)}


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
        self.fft_button.setToolTip(
            "Log power spectrum in spatial frequency (1/Å, zero at the centre): the cursor "
            "position (ky, kx) of a reflection gives its lattice spacing d = 1/√(ky² + kx²)"
        )
        fft_row = QHBoxLayout()
        fft_row.addWidget(self.fft_layer.native, 1)
        fft_row.addWidget(self.fft_button)
        self.spectrum_label = QLabel("")
        self.spectrum_label.setWordWrap(True)
        form.addRow(self.compare_button)
        form.addRow(self.residual_button)
        form.addRow("FFT of", fft_row)
        form.addRow(self.spectrum_label)

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
            residual_name(inp.name, out.name),
            scale=tuple(inp.scale),
            translate=tuple(inp.translate),
            units=tuple(inp.units),
            contrast_limits=(-peak, peak),
        )

    def add_spectrum(self, layer: Image | None = None, *, window: bool = True) -> Image | None:
        """Add ``"<layer> FFT"``: the log power spectrum (per frame for stacks), its axes
        in spatial frequency (:func:`spectrum_axes`)."""
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
        # In 1/Å, so that d-spacings can be read off (issue 21).  The price: napari
        # draws all layers in one world, and with lengths and inverse lengths in it, it
        # drops units from the drawing ("Inconsistent units across layers": no Å on the
        # scale bar) while the spectrum is in the viewer.  Issue 15 had kept the image's
        # Å instead, which labelled frequencies as lengths.
        axes = spectrum_axes(layer)
        name = spectrum_name(layer.name)
        added = add_or_update_image(self._viewer, spectrum, name, colormap="magma", **axes)
        unit = axes["units"][-1]
        self.spectrum_label.setText(
            f"{name!r}: spatial frequency in {unit}, zero at the centre. A reflection at "
            f"(ky, kx) in the status bar is a spacing d = 1/√(ky² + kx²)"
            f"{' Å' if unit == '1/Å' else ' px'}."
        )
        return added
