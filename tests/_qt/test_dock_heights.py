"""Every dock fits a laptop screen: its contents scroll instead of growing the window, and
rarely-changed settings wait in collapsed sections, so that the docks are short."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QApplication, QScrollArea, QWidget
from superqt import QCollapsible

from napari_pinned._qt.denoise.widget import DenoiseWidget
from napari_pinned._qt.frames.widget import FramesWidget
from napari_pinned._qt.generate.widget import GeneratorWidget
from napari_pinned._qt.noise.widget import NoiseWidget
from napari_pinned._qt.shared.common import MAX_DOCK_HEIGHT, MAX_DOCK_WIDTH
from napari_pinned._qt.train.widget import TrainWidget


@pytest.mark.parametrize("dock", [TrainWidget, DenoiseWidget, FramesWidget])
def test_a_dock_asks_for_at_most_900_px(make_napari_viewer, dock):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    viewer.window.add_dock_widget(widget, name=dock.__name__)
    assert widget.minimumSizeHint().height() <= MAX_DOCK_HEIGHT
    widget.close()


@pytest.mark.parametrize(
    "dock", [TrainWidget, DenoiseWidget, FramesWidget, NoiseWidget, GeneratorWidget]
)
def test_a_dock_is_narrow_and_never_scrolls_sideways(make_napari_viewer, qtbot, dock):
    viewer = make_napari_viewer(show=True)  # hidden widgets keep stale layout sizes
    widget = dock(viewer)
    native = getattr(widget, "native", widget)
    viewer.window.add_dock_widget(widget, name=dock.__name__)
    qtbot.waitExposed(native)
    for _ in range(10):
        QApplication.processEvents()
    area = native.findChild(QScrollArea)
    content = native if area is None else area.widget()
    assert content.minimumSizeHint().width() <= MAX_DOCK_WIDTH
    if area is not None:
        # The Train dock's data panel once made it scroll sideways at its docked width.
        assert not area.horizontalScrollBar().isVisible()


def _content_height(native: QWidget) -> int:
    """Height the dock's contents ask for (inside its scroll area, if it has one)."""
    # A size change climbs the nested layouts one level per round of posted events.
    for _ in range(10):
        QApplication.processEvents()
    area = native.findChild(QScrollArea)
    return (native if area is None else area.widget()).minimumSizeHint().height()


@pytest.mark.parametrize(
    ("dock", "sections"),
    [(TrainWidget, 2), (DenoiseWidget, 1), (NoiseWidget, 1), (GeneratorWidget, 1)],
)
def test_advanced_settings_start_collapsed_and_shorten_the_dock(
    make_napari_viewer, qtbot, dock, sections
):
    viewer = make_napari_viewer(show=True)  # hidden widgets keep stale layout sizes
    widget = dock(viewer)
    native = getattr(widget, "native", widget)  # the magicgui docks wrap their widget
    viewer.window.add_dock_widget(widget, name=dock.__name__)
    qtbot.waitExposed(native)  # styled and laid out, as when a user clicks
    found = native.findChildren(QCollapsible)
    assert len(found) == sections
    assert not any(section.isExpanded() for section in found)
    collapsed = _content_height(native)
    for section in found:
        section.expand(animate=False)
    # Expanded is the dock as it was before the sections: each hides more than a row.
    expanded = _content_height(native)
    assert expanded >= collapsed + 40 * sections
    for section in found:
        section.collapse(animate=False)
    # Collapsing gives the height back (a wrapped label may take a pixel more or less).
    assert abs(_content_height(native) - collapsed) <= 4
