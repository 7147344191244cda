"""The Denoise dock's big-data part: lazy layers and "whole stack → zarr on disk".

Layers backed by dask or zarr (napari's zarr reader, OME-Zarr plugins, a dask array
from a script) are never read whole by the dock.  Denoising one gives a *lazy* output
layer (:func:`lazy_denoised`, the core's
:func:`~napari_pinned.denoising.dask_arrays.denoise_dask`): napari computes the frame on
screen when it is shown, a quick look at any frame without waiting for the stack.
:class:`StackToZarrPanel` writes the whole denoised stack into a zarr store on disk,
frame by frame in a worker (:func:`napari_pinned.denoising.files.iter_denoise_to_zarr`)
with a progress bar and Cancel, then shows the store as the output layer (read lazily
from disk).  A cancelled run keeps its finished frames; writing to the same store again
continues it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_pinned._qt.shared.common import notify_error
from napari_pinned._qt.shared.job_runner import JobRunner, Outcome

if TYPE_CHECKING:
    from napari_pinned.settings import FrameOptions

__all__ = ["StackJob", "StackToZarrPanel", "is_lazy", "layer_array", "lazy_denoised"]


def layer_array(layer: Any) -> Any:
    """A layer's full-resolution data (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_lazy(layer: Any) -> bool:
    """True when a layer's data are not in memory (dask, zarr, multiscale)."""
    return not isinstance(layer_array(layer), np.ndarray)


def lazy_denoised(data: Any, model: Any, options: FrameOptions) -> Any:
    """The denoised ``data`` as a lazy dask array of whole frames."""
    import dask.array as da

    from napari_pinned.denoising.dask_arrays import denoise_dask
    from napari_pinned.denoising.model_spec import ModelSpec

    arr = data if isinstance(data, da.Array) else da.from_array(data, asarray=True)
    frames = (1, *arr.shape[1:]) if arr.ndim == 3 else arr.shape
    return denoise_dask(arr.rechunk(frames), ModelSpec.of(model), options)


class StackJob(NamedTuple):
    """What the panel writes: the layer, the model, how each frame is denoised, and the
    pixel size (Å) the store records."""

    layer: Any
    model: Any
    options: FrameOptions
    pixel_size: float | None


def _write(data: Any, target: str, job: StackJob, name: str) -> Iterator[Any]:
    """The worker's generator: the core's job; returns the written store's path."""
    from napari_pinned.denoising.files import iter_denoise_to_zarr

    last = None
    records = iter_denoise_to_zarr(
        data, target, job.model, job.options, name=name, pixel_size=job.pixel_size, resume=True
    )
    for record in records:
        last = record
        yield record
    return None if last is None else last.target


class StackToZarrPanel(QGroupBox):
    """Write the whole denoised input to a zarr store; see the module docstring.

    Parameters
    ----------
    job : callable
        Returns the :class:`StackJob` of a run, or None after notifying why there is
        none.
    on_written : callable
        Called with ``(layer, path)`` when a store is complete.
    """

    #: Emitted when a run ends: the store's path, or None (cancelled or failed).
    written = Signal(object)

    def __init__(
        self,
        job: Callable[[], StackJob | None],
        on_written: Callable[[Any, Path], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Whole stack → zarr on disk", parent)
        self._job = job
        self._on_written = on_written
        self._layer: Any = None
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("output.zarr")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        row.addWidget(self.path_edit, 1)
        row.addWidget(self.browse_button)
        buttons = QHBoxLayout()
        self.write_button = QPushButton("Write")
        self.cancel_button = QPushButton("Cancel")
        self.write_button.clicked.connect(lambda: self.start())
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.write_button)
        buttons.addWidget(self.cancel_button)
        self.status_label = QLabel(
            "Denoises every frame into a zarr store, frame by frame (memory stays flat), "
            "then shows it as the output layer."
        )
        self.status_label.setWordWrap(True)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        self._runner = JobRunner(
            self, "Write zarr", cancel_button=self.cancel_button, status_label=self.status_label
        )
        self._set_running(False)

    @property
    def running(self) -> bool:
        """True while a store is being written."""
        return self._runner.running

    def _set_running(self, running: bool) -> None:
        self.write_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def browse(self) -> None:
        """Ask for the output store."""
        path, _ = QFileDialog.getSaveFileName(self, "Write denoised stack", "", "zarr (*.zarr)")
        if path:
            self.path_edit.setText(path if path.endswith(".zarr") else f"{path}.zarr")

    def start(self, path: str | None = None) -> bool:
        """Start writing to ``path`` (default: the path field); returns whether it started."""
        from napari_pinned.io.zarr_store import check_zarr_output

        target = (path or self.path_edit.text()).strip()
        if not target:
            notify_error("Write zarr: choose an output store (…/name.zarr)")
            return False
        if not target.endswith(".zarr"):
            notify_error(f"Write zarr: {target}: the store's name must end in .zarr")
            return False
        request = self._job()
        if request is None:
            return False
        layer = request.layer
        source = getattr(getattr(layer, "source", None), "path", None)
        try:
            check_zarr_output(target, [source] if source else [], overwrite=False)
        except ValueError as exc:
            notify_error(f"Write zarr: {exc}")
            return False
        self.path_edit.setText(target)
        self._layer = layer
        data = layer_array(layer)
        started = self._runner.start(
            _write,
            data,
            target,
            request,
            f"napari layer {layer.name}",
            description=f"Writing {Path(target).name}",
            on_progress=self._progress,
            on_finish=self._finished,
        )
        if started:
            self._set_running(True)
            self.status_label.setText(f"Writing {target}…")
        return started

    def cancel(self) -> None:
        """Stop after the batch of tiles in progress; finished frames are kept."""
        self._runner.cancel()

    def _progress(self, record: Any) -> tuple[int, int]:
        self.status_label.setText(f"Frame {record.done}/{record.total} written")
        report = record.report
        if record.total == 1 and report is not None:
            return report.tiles_done, report.tiles_total
        return record.done, record.total

    def _finished(self, outcome: Outcome, result: Any) -> None:
        self._set_running(False)
        layer, self._layer = self._layer, None
        target = self.path_edit.text()
        if outcome == "done" and result is not None:
            self.status_label.setText(f"Wrote {result}; shown as the output layer.")
            self._on_written(layer, Path(result))
            self.written.emit(Path(result))
            return
        if outcome == "cancelled":
            self.status_label.setText(
                f"Cancelled; the frames finished so far are kept. Write to {target} again "
                "to continue."
            )
        else:
            self.status_label.setText("Writing failed; see the notification.")
        self.written.emit(None)

    def shutdown(self) -> None:
        """Stop a running job (the dock is closing)."""
        self._runner.shutdown()
