"""What makes the Denoise dock's readouts stale: layers, their data and the frame shown.

The dock's metrics and noise readouts follow the input, its output, the reference and
the column Points.  This watcher listens to the viewer (layers added or removed, the
frame slider) and to those layers' data and names, tells the dock to forget cached
scores, and runs the (slow) updates once a burst of events has settled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject
from superqt.utils import qdebounced

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = ["LayerWatch"]

# Frame changes and data edits come in bursts (a dragged slider); score once they settle.
_DELAY_MS = 120


class LayerWatch(QObject):
    """Schedule the dock's metrics and noise updates when what they read changes.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Its layer list and frame slider are followed.
    parent : QObject
        The dock (owns the timers).
    watched : callable
        The layers whose data the readouts read (None entries are skipped).
    update_metrics, update_noise : callables
        The delayed updates.
    forget : callable
        Called with ``data_changed`` (bool) before an update is scheduled: drop the
        caches that the change makes stale.
    renamed : callable, optional
        Called at once when a watched layer is renamed (lines that name layers); the
        metrics, which name them too, are scheduled.
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        parent: QObject,
        watched: Callable[[], list[Layer | None]],
        update_metrics: Callable[[], None],
        update_noise: Callable[[], None],
        forget: Callable[[bool], None],
        renamed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._watched_layers = watched
        self._forget = forget
        self._renamed = renamed
        self._watched: list[Layer] = []
        self._closed = False
        # Debounced: a burst of calls runs the update once, _DELAY_MS after the last.
        self._metrics_update = qdebounced(update_metrics, timeout=_DELAY_MS, parent=self)
        self._noise_update = qdebounced(update_noise, timeout=_DELAY_MS, parent=self)
        layers = viewer.layers.events
        layers.inserted.connect(self.layers_changed)
        layers.removed.connect(self.layers_changed)
        viewer.dims.events.current_step.connect(self.schedule_metrics)
        viewer.dims.events.current_step.connect(self.schedule_noise)

    def layers_changed(self, _event: Any = None) -> None:
        """The layers the readouts read may be others: follow them and update."""
        try:
            self._rewatch()
        except RuntimeError:  # Qt side gone with the viewer
            return
        self._forget(False)
        self.schedule_metrics()
        self.schedule_noise()

    def _rewatch(self) -> None:
        self._unwatch()
        self._watched = [layer for layer in self._watched_layers() if layer is not None]
        for layer in self._watched:
            layer.events.data.connect(self._on_data_changed)
            layer.events.name.connect(self._on_renamed)

    def _unwatch(self) -> None:
        for layer in self._watched:
            layer.events.data.disconnect(self._on_data_changed)
            layer.events.name.disconnect(self._on_renamed)
        self._watched = []

    def _on_renamed(self, _event: Any = None) -> None:
        if self._renamed is not None:
            with contextlib.suppress(RuntimeError):  # Qt side gone with the viewer
                self._renamed()
        self.schedule_metrics()

    def _on_data_changed(self, _event: Any = None) -> None:
        self._forget(True)
        self.schedule_metrics()
        self.schedule_noise()

    def schedule_metrics(self, _event: Any = None) -> None:
        """Recompute the metrics shortly (bursts of events collapse into one update)."""
        # RuntimeError: our Qt side was deleted with the viewer's window.
        with contextlib.suppress(RuntimeError):
            self._metrics_update()

    def schedule_noise(self, _event: Any = None) -> None:
        """Re-estimate the input's noise shortly."""
        with contextlib.suppress(RuntimeError):
            self._noise_update()

    def close(self) -> None:
        """Stop the timers and every connection (the dock is closing); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._metrics_update.cancel()
        self._noise_update.cancel()
        layers = self._viewer.layers.events
        layers.inserted.disconnect(self.layers_changed)
        layers.removed.disconnect(self.layers_changed)
        self._viewer.dims.events.current_step.disconnect(self.schedule_metrics)
        self._viewer.dims.events.current_step.disconnect(self.schedule_noise)
        self._unwatch()
