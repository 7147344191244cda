"""Every dock fits a laptop screen: its contents scroll instead of growing the window."""

from __future__ import annotations

import pytest

from napari_pinned._qt._common import MAX_DOCK_HEIGHT
from napari_pinned._qt.denoise_widget import DenoiseWidget
from napari_pinned._qt.frames_widget import FramesWidget
from napari_pinned._qt.train_widget import TrainWidget


@pytest.mark.parametrize("dock", [TrainWidget, DenoiseWidget, FramesWidget])
def test_a_dock_asks_for_at_most_900_px(make_napari_viewer, dock):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    viewer.window.add_dock_widget(widget, name=dock.__name__)
    assert widget.minimumSizeHint().height() <= MAX_DOCK_HEIGHT
    widget.close()
