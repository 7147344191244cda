"""Denoise dock on a person's screen: what the Compare grid shows and in which order,
readable metric tables and layer names, a rename that keeps the input (issue 15's GUI
defects, each on a real viewer), and spectra in reciprocal units (issue 21)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget

from napari_pinned._qt.denoise.widget import DenoiseWidget


def _dock(viewer) -> DenoiseWidget:
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    return widget


def _images(viewer, scale: float = 0.1):
    """Noisy, reference and a stand-in "noisy denoised" layer (found by its name)."""
    rng = np.random.default_rng(0)
    clean = rng.random((64, 64)).astype(np.float32)
    kwargs = {"scale": (scale, scale), "units": ("angstrom", "angstrom")}
    inp = viewer.add_image(clean + 0.1 * rng.random((64, 64)), name="noisy", **kwargs)
    ref = viewer.add_image(clean, name="clean", **kwargs)
    out = viewer.add_image(clean + 0.01, name="noisy denoised", **kwargs)
    return inp, out, ref


def test_compare_shows_noisy_denoised_reference_in_that_order(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    inp, out, ref = _images(viewer)
    widget.input_layer.value = inp
    widget.reference_layer.value = ref
    order_before = list(viewer.layers)
    resets: list[int] = []
    original_reset = type(viewer).reset_view

    def reset_view(self, *args, **kwargs):
        resets.append(1)
        return original_reset(self, *args, **kwargs)

    monkeypatch.setattr(type(viewer), "reset_view", reset_view)

    widget.compare_button.setChecked(True)
    grid = viewer.canvas.grid
    layers = viewer.layers
    columns = [grid.position(layers.index(layer), layers) for layer in (inp, out, ref)]
    assert "noisy / denoised / reference" in widget.compare_button.text()
    assert columns == [(0, 0), (0, 1), (0, 2)]
    assert resets, "the view is not fitted to the grid (panels clipped)"

    widget.compare_button.setChecked(False)
    assert list(viewer.layers) == order_before


def test_metrics_table_text_is_not_elided_at_the_default_width(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    widget = _dock(viewer)
    rng = np.random.default_rng(0)
    # A stack: rows "<metric>, frame 0" and "<metric>, mean of 3", the longest labels.
    clean = rng.random((3, 48, 48)).astype(np.float32)
    inp = viewer.add_image(clean + rng.random(clean.shape), name="noisy")
    viewer.add_image(clean + 0.01, name="noisy denoised")
    ref = viewer.add_image(clean, name="clean")
    widget.input_layer.value = inp
    widget.reference_layer.value = ref
    widget.update_metrics()
    # A narrow dock, as beside napari's layer list on a laptop screen.
    dock = widget.parentWidget()
    while not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    viewer.window._qt_window.resizeDocks([dock], [320], Qt.Orientation.Horizontal)
    qtbot.wait(100)
    table = widget.metrics_table
    metrics = table.fontMetrics()
    assert table.rowCount() > 0
    needs: list[int] = []
    for col in range(table.columnCount()):
        texts = [table.horizontalHeaderItem(col).text()]
        texts += [table.item(row, col).text() for row in range(table.rowCount())]
        need = max(metrics.horizontalAdvance(text) for text in texts)
        needs.append(need)
        assert table.columnWidth(col) >= need, (col, texts)
    labels = [table.verticalHeaderItem(row).text() for row in range(table.rowCount())]
    need = max(metrics.horizontalAdvance(text) for text in labels)
    assert table.verticalHeader().width() >= need
    # However narrow the dock, the layout may not squeeze the table below its text
    # (the dock scrolls sideways instead).
    total = need + sum(needs)
    assert max(table.minimumWidth(), table.minimumSizeHint().width()) >= total


def test_renaming_the_input_keeps_it_chosen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    inp, _, ref = _images(viewer)
    widget.input_layer.value = inp
    inp.name = "renamed"
    qtbot.wait(10)
    assert widget.input_layer.value is inp
    ref.name = "reference renamed"
    assert widget.input_layer.value is inp


def test_long_layer_names_are_readable(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    name = "a very long layer name from a microscope session, 2026-12-02 frame stack 0042"
    layer = viewer.add_image(np.zeros((16, 16), np.float32), name=name)
    widget.input_layer.value = layer
    combo = widget.input_layer.native
    index = combo.findText(name)
    assert combo.itemData(index, Qt.ItemDataRole.ToolTipRole) == name
    assert combo.toolTip() == name


def test_the_spectrum_is_in_reciprocal_units_and_the_images_keep_theirs(make_napari_viewer):
    """Issue 21 puts the spectrum in 1/Å (issue 15 had given it the image's Å, which
    labelled frequencies as lengths).  napari draws without units while lengths and
    inverse lengths share the viewer, and in Å again once the spectrum is deleted; the
    images keep their units throughout."""
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    inp, _, _ = _images(viewer, scale=0.1)
    spectrum = widget.add_spectrum(inp)
    assert [str(u) for u in spectrum.units] == ["1 / angstrom", "1 / angstrom"]
    assert [str(u) for u in inp.units] == ["angstrom", "angstrom"]
    viewer.layers.remove(spectrum)
    assert [str(u) for u in viewer.layers.extent.units] == ["angstrom", "angstrom"]
