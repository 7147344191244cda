"""Shared fixtures of the Denoise dock's tests on a real viewer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from qtpy.QtCore import Qt

from napari_pinned._qt.denoise.widget import DenoiseWidget

#: Longest wait for a denoising worker, in milliseconds.
WAIT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture(scope="module")
def conditioned(tiny_conditioned):
    """A tiny noise-aware model (random weights), named "tiny aware"."""
    return tiny_conditioned(0, name="tiny aware")


@pytest.fixture
def denoise_dock() -> Callable[..., DenoiseWidget]:
    """``denoise_dock(viewer)``: the Denoise dock docked in ``viewer``, on the CPU."""

    def make(viewer) -> DenoiseWidget:
        widget = DenoiseWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Denoise")
        widget.device_combo.setCurrentText("cpu")
        return widget

    return make


@pytest.fixture
def run_denoise(qtbot) -> Callable[[DenoiseWidget], object]:
    """``run_denoise(widget)``: click Denoise and wait for the output layer it returns."""

    def run(widget: DenoiseWidget):
        with qtbot.waitSignal(widget.denoise_finished, timeout=WAIT_MS) as finished:
            qtbot.mouseClick(widget.denoise_button, Qt.MouseButton.LeftButton)
        return finished.args[0]

    return run
