"""Every dock fits a laptop screen: its contents scroll instead of growing the window,
rarely-changed settings wait in collapsed sections, so that the docks are short, and the
plugin's docks share one tabbed area with their actions and results in view."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QPoint, QRect
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


#: The plugin's docks as the Plugins menu opens them, with each one's primary action and
#: the widgets that show its result (attribute names on the dock).
_PLUGIN = "napari-pinned"
_ACTIONS = {
    "Synthetic STEM generator": ("generate_button", ()),
    "CDN noise": ("apply_button", ()),
    "Train PINNED": ("start_button", ("status_label", "loss_plot")),
    "Denoise": ("denoise_button", ("status_label",)),
    "Frame series": ("register_button", ("status_label", "drift_label")),
}
#: A 1080p screen.
_SCREEN = (1920, 1080)
#: Least height (px) of a dock among five on 1080p: room for its settings and its result.
_USABLE_HEIGHT = 700


def _qt(widget) -> QWidget:
    return getattr(widget, "native", widget)


def _in_view(widget: QWidget, dock: QWidget) -> bool:
    """True when all of ``widget`` is drawn: inside its dock and, in a scroll area, inside
    the part of the contents the area shows."""
    if not widget.isVisible():
        return False
    if not dock.rect().contains(QRect(widget.mapTo(dock, QPoint(0, 0)), widget.size())):
        return False
    parent = widget.parentWidget()
    while parent is not None and parent is not dock and not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    if isinstance(parent, QScrollArea):
        view = parent.viewport()
        return view.rect().contains(QRect(widget.mapTo(view, QPoint(0, 0)), widget.size()))
    return True


@pytest.mark.slow
# Denoise first: the others find it; Denoise later: the first dock's watch of the window
# tabs it (the Denoise dock itself asks for nothing).
@pytest.mark.parametrize(
    "order",
    [
        list(_ACTIONS),
        ["Denoise", "Frame series", "CDN noise", "Train PINNED", "Synthetic STEM generator"],
    ],
)
def test_five_docks_on_1080p_share_one_tabbed_area_and_keep_their_actions_in_view(
    make_napari_viewer, qtbot, order
):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*_SCREEN)
    docks = {}
    for name in order:
        dock, widget = viewer.window.add_plugin_dock_widget(_PLUGIN, name)
        docks[name] = (dock, widget)
        # The newest dock is the one shown (raised), as when opened alone.
        qtbot.waitUntil(lambda dock=dock: not dock.visibleRegion().isEmpty())
    for _ in range(10):
        QApplication.processEvents()
    assert window.height() <= _SCREEN[1]  # the window did not grow past the screen
    first = docks[order[0]][0]
    assert {d.windowTitle() for d in window.tabifiedDockWidgets(first)} == {
        docks[name][0].windowTitle() for name in order[1:]
    }
    for name in order:
        dock, widget = docks[name]
        dock.raise_()
        qtbot.waitUntil(lambda dock=dock: not dock.visibleRegion().isEmpty())
        for _ in range(10):  # nested layouts settle one level per round
            QApplication.processEvents()
        assert dock.height() >= _USABLE_HEIGHT, name
        button, results = _ACTIONS[name]
        for attribute in (button, *results):
            assert _in_view(_qt(getattr(widget, attribute)), dock), (name, attribute)


def test_other_docks_are_left_where_napari_puts_them(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QLabel

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    foreign = viewer.window.add_dock_widget(QLabel("another plugin"), name="other", area="right")
    noise, _ = viewer.window.add_plugin_dock_widget(_PLUGIN, "CDN noise")
    frames, _ = viewer.window.add_plugin_dock_widget(_PLUGIN, "Frame series")
    later = viewer.window.add_dock_widget(QLabel("and another"), name="later", area="right")
    QApplication.processEvents()
    assert window.tabifiedDockWidgets(noise) == [frames]
    assert window.tabifiedDockWidgets(foreign) == [] and window.tabifiedDockWidgets(later) == []
