"""The plugin's docks share one tabbed area of napari's window instead of a column.

napari stacks docks of one side of its window above one another; five of ours on a
1080-px screen grew the window past the screen and left Train and Denoise ~70-px scroll
boxes.  A dock of this plugin placed in the area of another of ours becomes a tab beside
it and is raised, so each dock has the whole height of the side.

The Plugins menu adds docks through napari's ``add_plugin_dock_widget``, which offers no
tabbing to the plugin, so the docks follow Qt: a ``QDockWidget`` emits
``dockLocationChanged`` while ``QMainWindow.addDockWidget`` places it, before napari's
window lays out again (and would grow).  Each dock of ours calls :func:`keep_docks_together`
once; the first one placed also watches its window, so that a dock of ours that does not
call it (or is added later by a script) is tabbed all the same.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

__all__ = ["is_ours", "keep_docks_together"]

_PACKAGE = __name__.split(".")[0]
#: Dynamic property marking a main window that already watches for our docks.
_WATCHED = "napari_pinned_watches_docks"
#: Dynamic property marking a dock whose placement is already followed.
_FOLLOWED = "napari_pinned_follows_placement"


def is_ours(dock: QDockWidget) -> bool:
    """True when ``dock`` holds one of this plugin's docks (a Qt or a magicgui widget)."""
    # napari's dock wrapper hands back the magicgui widget, whose class is ours; a plain
    # QDockWidget holds the Qt widget itself.
    inner_widget = getattr(dock, "inner_widget", None)
    inner = inner_widget() if callable(inner_widget) else dock.widget()
    return type(inner).__module__.split(".")[0] == _PACKAGE


def _tab_with_ours(dock: QDockWidget) -> None:
    """Put the newly placed ``dock`` in the tabs of another of our docks in its area."""
    window = dock.parentWidget()
    if not isinstance(window, QMainWindow) or not is_ours(dock) or dock.isFloating():
        return
    area = window.dockWidgetArea(dock)
    others = [
        other
        for other in window.findChildren(QDockWidget)
        if other is not dock
        and not other.isFloating()
        and window.dockWidgetArea(other) == area
        and is_ours(other)
    ]
    if not others:
        return
    window.tabifyDockWidget(others[0], dock)
    dock.show()
    dock.raise_()  # the dock just opened is the one shown, as when it is alone


def _on_first_placement(dock: QDockWidget) -> None:
    """Connect ``dock``'s next placement (once) to :func:`_tab_with_ours`."""
    if dock.property(_FOLLOWED):  # both watches see a dock of ours arrive
        return
    dock.setProperty(_FOLLOWED, True)

    def placed(_area: object) -> None:
        dock.dockLocationChanged.disconnect(placed)
        window = dock.parentWidget()
        if isinstance(window, QMainWindow):
            _watch(window)
        _tab_with_ours(dock)

    dock.dockLocationChanged.connect(placed)


class _WindowWatch(QObject):
    """Event filter of a main window: every dock added from now on is checked once."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ChildAdded:
            child = event.child()
            if isinstance(child, QDockWidget):
                _on_first_placement(child)
        return False


def _watch(window: QMainWindow) -> None:
    if window.property(_WATCHED):
        return
    window.setProperty(_WATCHED, True)
    window.installEventFilter(_WindowWatch(window))  # parented: lives as long as the window


class _DockWatch(QObject):
    """Event filter of one of our widgets: when it is put into a dock, follow the dock."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange and isinstance(watched, QWidget):
            dock = watched.parentWidget()
            if isinstance(dock, QDockWidget) and dock.parentWidget() is None:
                _on_first_placement(dock)
        return False


def keep_docks_together(widget: QWidget) -> None:
    """Tab ``widget``'s dock with the plugin's other docks when napari docks it.

    Call once from the dock's constructor (with ``self.native`` for a magicgui dock).  A
    widget used outside a dock (scripts, tests) is unaffected.
    """
    widget.installEventFilter(_DockWatch(widget))
