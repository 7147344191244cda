"""The Denoise dock's faithfulness map: a layer over the output showing where lattice was
lost or invented, updated in place by each check, never touching the user's layers."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels

from napari_pinned._qt.denoise.faithfulness_map import GAINED, LOST, map_name
from napari_pinned._qt.denoise.widget import DenoiseWidget

WAIT_MS = 60_000
SIZE = 256


def _lattice(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy counts, clean image) of a square lattice of period 8 px at 20 e⁻/px."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    clean = 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)
    clean *= 20.0 / clean.mean()
    return np.random.default_rng(seed).poisson(clean).astype(np.float32), clean


def _checked(qtbot, widget: DenoiseWidget) -> None:
    panel = widget.faithfulness_panel
    panel.last_result = None
    assert widget.check_faithfulness()
    qtbot.waitUntil(lambda: panel.last_result is not None, timeout=WAIT_MS)


def test_map_marks_the_erased_quarter_on_the_output_grid(qtbot, viewer):
    noisy, clean = _lattice()
    scale, translate = (0.5, 0.5), (10.0, 20.0)
    viewer.add_image(noisy, name="scan", scale=scale, translate=translate)
    erased = clean.copy()
    erased[:128, :128] = np.median(clean)
    output = viewer.add_image(erased, name="scan denoised", scale=scale, translate=translate)
    # A layer of the user's that happens to have the map's name is left alone.
    user = viewer.add_image(np.ones((8, 8)), name=map_name(output.name))
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    widget.input_layer.value = viewer.layers["scan"]

    _checked(qtbot, widget)
    maps = [layer for layer in viewer.layers if isinstance(layer, Labels)]
    assert len(maps) == 1
    layer = maps[0]
    assert tuple(layer.scale) == scale and tuple(layer.translate) == translate
    assert layer.data.shape == (SIZE, SIZE)
    assert np.all(layer.data[:96, :96] & LOST)
    assert not np.any(layer.data[160:, 160:])
    assert not np.any(layer.data & GAINED)
    assert isinstance(user, Image) and np.all(user.data == 1) and user in viewer.layers
    text = widget.faithfulness_panel.warnings_label.text()
    assert "lattice lost in" in text and "top-left" in text
    assert widget.faithfulness_panel.verdict_label.text().find("Not faithful") >= 0

    # A faithful result clears the same map in place: still one map layer.
    output.data = clean.astype(np.float32)
    _checked(qtbot, widget)
    maps = [layer for layer in viewer.layers if isinstance(layer, Labels)]
    assert maps == [layer]
    assert not layer.data.any()
