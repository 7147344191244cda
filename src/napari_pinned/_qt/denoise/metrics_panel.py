"""The Denoise dock's metrics: PSNR, SSIM, FSC, EPI and column accuracy, as a table.

The panel scores the dock's input and its denoised output against a reference layer
(and ground-truth column Points), frame by frame for stacks, caching per layer data so
that moving the frame slider recomputes nothing twice; it copies the table to the
clipboard or writes it to CSV at full precision.  The dock tells it which layers are the
input, the output and the reference through a callable, and when to forget its caches.

Ground-truth columns belong to the reference they were picked with (by hand, or found as
the reference's ``"<name> columns"``): when the reference changes they follow it, to the
new reference's own columns or to none, never scoring one image against another's.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox
from napari.layers import Image, Points
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_pinned._qt.shared.common import find_layer, layer_pixel_size, notify_error
from napari_pinned.quality.metrics import METRIC_COLUMNS

if TYPE_CHECKING:
    import napari

    from napari_pinned.quality.columns import ColumnAccuracy
    from napari_pinned.quality.metrics import Metrics

__all__ = [
    "COLUMN_ROWS",
    "METRIC_FORMATS",
    "MetricsPanel",
    "format_gain",
    "format_metric",
]

#: Number formats of the metrics, as in napari_pinned.quality.metrics.format_metrics_table.
METRIC_FORMATS = {key: fmt for _, key, fmt in METRIC_COLUMNS}
_METRIC_LABELS = {key: label for label, key, _ in METRIC_COLUMNS}
#: Column-position rows: ColumnAccuracy attribute → (label, format).
COLUMN_ROWS = {
    "recall": ("Column recall", "{:.3f}"),
    "precision": ("Column precision", "{:.3f}"),
    "rms_error_pm": ("Column RMS error (pm)", "{:.1f}"),
}
_FORMATS = {**METRIC_FORMATS, **{key: fmt for key, (_, fmt) in COLUMN_ROWS.items()}}
_LABELS = {**_METRIC_LABELS, **{key: label for key, (label, _) in COLUMN_ROWS.items()}}
_COLUMNS = ("input", "denoised", "gain")


def format_metric(key: str, value: float | None) -> str:
    """A metric value as shown in the table ("—" when missing)."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "—"
    return _FORMATS[key].format(value)


def format_gain(key: str, value: float | None) -> str:
    """A signed difference of a metric, in the metric's format."""
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return _FORMATS[key].replace("{:", "{:+").format(value)


class MetricsPanel(QGroupBox):
    """Reference and column pickers, the metrics table, Copy and Export CSV.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Its dims give the frame shown.
    layers : callable
        Gives the input, its denoised output and the reference (each None when absent).
    image_choices, points_choices : callables
        Choices of the reference and column combos.
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        layers: Callable[[], tuple[Image | None, Image | None, Image | None]],
        image_choices: Callable[..., list[tuple[str, Image]]],
        points_choices: Callable[..., list[tuple[str, Points]]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Metrics against a reference", parent)
        self._viewer = viewer
        self._layers = layers
        # The reference the chosen columns belong to (None: chosen without one).
        self._columns_for: Image | None = None
        self._metrics_cache: dict[tuple[int, int], list[Metrics]] = {}
        self._columns_cache: dict[tuple[int, int, int], ColumnAccuracy] = {}
        self._rows: list[tuple[str, str, float | None, float | None]] = []
        self._build(image_choices, points_choices)

    def clear_cache(self) -> None:
        """Forget computed scores (layers or their data changed)."""
        self._metrics_cache.clear()
        self._columns_cache.clear()

    def _build(self, image_choices: Callable[..., Any], points_choices: Callable[..., Any]) -> None:
        form = QFormLayout(self)
        self.reference_layer = ComboBox(choices=image_choices, nullable=True)
        self.columns_layer = ComboBox(choices=points_choices, nullable=True)
        self.columns_layer.native.setToolTip(
            "Points at the true atomic columns (the generator's '<image> columns' layer, "
            "with a 'weight' feature): adds column recall, precision and RMS error"
        )
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.metrics_table = QTableWidget(0, len(_COLUMNS))
        self.metrics_table.setHorizontalHeaderLabels(list(_COLUMNS))
        # Columns as wide as their text, never squeezed below it: a stretched column in
        # a narrow dock elided labels and numbers ("+15...."); the dock scrolls instead.
        header = self.metrics_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.metrics_table.verticalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.metrics_table.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.metrics_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        # As tall as its rows: a dock has no room for an empty scroll area.
        self.metrics_table.setSizeAdjustPolicy(
            QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents
        )
        self.metrics_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.copy_button = QPushButton("Copy")
        self.export_button = QPushButton("Export CSV…")
        self.copy_button.clicked.connect(self.copy_metrics)
        self.export_button.clicked.connect(lambda: self.export_csv())
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.export_button)
        self.columns_layer.changed.connect(self._columns_chosen)
        form.addRow("Reference", self.reference_layer.native)
        form.addRow("Ground-truth columns", self.columns_layer.native)
        form.addRow(self.metrics_label)
        form.addRow(self.metrics_table)
        form.addRow(buttons)

    def _columns_chosen(self, _value: Any = None) -> None:
        self._columns_for = self.reference_layer.value

    def pick_reference_columns(self) -> None:
        """The reference changed: drop the columns of another reference, and pick the
        new one's ground-truth columns when the generator made them."""
        ref = self.reference_layer.value
        current = self.columns_layer.value
        if current is not None and self._columns_for is not None and self._columns_for is not ref:
            self.columns_layer.value = None
        elif current is not None:
            self._columns_for = ref  # chosen before any reference: now this one's
        if ref is None or self.columns_layer.value is not None:
            return
        # "<label> columns" goes with "<label>" (generator) and "<label> clean" (sample).
        names = (f"{ref.name} columns", f"{ref.name.removesuffix(' clean')} columns")
        found = (find_layer(self._viewer, name, Points) for name in names)
        points = next((layer for layer in found if layer is not None), None)
        if points is not None:
            self.columns_layer.reset_choices()
            self.columns_layer.value = points

    def _frame_metrics(self, image: Image, reference: Image) -> list[Metrics]:
        from napari_pinned.quality.metrics import compute_metrics_stack

        key = (id(image.data), id(reference.data))
        if key not in self._metrics_cache:
            self._metrics_cache[key] = compute_metrics_stack(image.data, reference.data)
        return self._metrics_cache[key]

    def current_frame(self, layer: Image, frames: int) -> int:
        """Index of the frame of ``layer`` (of ``frames``) the viewer shows (0 for 2D)."""
        if layer.ndim != 3:
            return 0
        position = layer.world_to_data(self._viewer.dims.point[-layer.ndim :])
        return int(np.clip(round(float(position[0])), 0, frames - 1))

    def update_metrics(self) -> None:
        """Recompute the metrics table now."""
        from napari_pinned.quality.metrics import mean_metrics

        inp, out, ref = self._layers()
        self._rows = []
        if inp is None or ref is None:
            self._show_rows("Pick a reference layer to see PSNR, SSIM, FSC and EPI.")
            return
        try:
            before = self._frame_metrics(inp, ref)
            after = None if out is None else self._frame_metrics(out, ref)
        except ValueError as exc:
            self._show_rows(f"Cannot compare with {ref.name!r}: {exc}")
            return
        if after is not None and len(after) != len(before):
            after = None
        frame = self.current_frame(inp, len(before))
        if len(before) == 1:
            self._add_rows("", before[0], None if after is None else after[0])
            note = ""
        else:
            current = None if after is None else after[frame]
            mean_after = None if after is None else mean_metrics(after)
            self._add_rows(f"frame {frame}", before[frame], current)
            self._add_rows(f"mean of {len(before)}", mean_metrics(before), mean_after)
            note = f"Frame {frame} of {len(before)} and the mean over all frames. "
        scored = f"{inp.name!r} not denoised yet" if out is None else f"{out.name!r}"
        columns_note = self._add_column_rows(inp, out, frame)
        self._show_rows(f"{note}{scored} against {ref.name!r}.{columns_note}")

    def _column_accuracy(self, image: Image, frame: int, points: Points) -> ColumnAccuracy:
        from napari_pinned.quality.columns import column_accuracy

        key = (id(image.data), frame, id(points.data))
        if key not in self._columns_cache:
            data = np.asarray(image.data[frame] if image.ndim == 3 else image.data)
            weights = points.features.get("weight") if len(points.features.columns) else None
            self._columns_cache[key] = column_accuracy(
                data,
                np.asarray(points.data)[:, -2:],
                # Checked by the caller: the layer has a pixel size.
                float(layer_pixel_size(image) or 1.0),
                weights=None if weights is None else np.asarray(weights, dtype=float),
            )
        return self._columns_cache[key]

    def _add_column_rows(self, inp: Image, out: Image | None, frame: int) -> str:
        """Column recall/precision/RMS rows for the current frame; returns a note."""
        points = self.columns_layer.value
        if points is None:
            return ""
        if layer_pixel_size(inp) is None:
            return " Column positions need the pixel size: give the input layer a scale in Å."
        try:
            before = self._column_accuracy(inp, frame, points)
            after = None if out is None else self._column_accuracy(out, frame, points)
        except ValueError as exc:
            return f" Columns: {exc}."
        for key in COLUMN_ROWS:
            value_after = None if after is None else getattr(after, key)
            self._rows.append((key, "", getattr(before, key), value_after))
        return f" {before.n_true} columns in {points.name!r}."

    def _add_rows(self, scope: str, before: Metrics, after: Metrics | None) -> None:
        b = before.as_dict()
        a = None if after is None else after.as_dict()
        for key in METRIC_FORMATS:
            self._rows.append((key, scope, b[key], None if a is None else a[key]))

    def _show_rows(self, message: str) -> None:
        self.metrics_label.setText(message)
        table = self.metrics_table
        table.setRowCount(len(self._rows))
        labels = []
        for row, (key, scope, before, after) in enumerate(self._rows):
            labels.append(f"{_LABELS[key]}{', ' + scope if scope else ''}")
            gain = None if after is None else after - before
            cells = (
                format_metric(key, before),
                format_metric(key, after),
                format_gain(key, gain),
            )
            for col, text in enumerate(cells):
                table.setItem(row, col, QTableWidgetItem(text))
        table.setVerticalHeaderLabels(labels)
        self._fit_width()

    def _fit_width(self) -> None:
        """Ask the layout for the width the labels and numbers need (see _build)."""
        table = self.metrics_table
        table.resizeColumnsToContents()
        labels = table.verticalHeader().sizeHint().width() if table.rowCount() else 0
        columns = sum(table.columnWidth(c) for c in range(table.columnCount()))
        table.setMinimumWidth(labels + columns + 2 * table.frameWidth())

    def table_text(self) -> list[list[str]]:
        """The table as shown: one list per row, the row label first."""
        table = self.metrics_table
        rows = []
        for r in range(table.rowCount()):
            header = table.verticalHeaderItem(r)
            cells = [table.item(r, c).text() for c in range(table.columnCount())]
            rows.append([header.text() if header else "", *cells])
        return rows

    def copy_metrics(self) -> str:
        """Copy the table to the clipboard as tab-separated text; returns the text."""
        lines = ["\t".join(["metric", *_COLUMNS])]
        lines += ["\t".join(row) for row in self.table_text()]
        text = "\n".join(lines)
        QApplication.clipboard().setText(text)
        return text

    def export_csv(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the metrics (full precision) to a CSV file; asks for a path when None."""
        if not self._rows:
            notify_error("Export: no metrics to export; pick a reference layer first")
            return None
        if path is None:
            chosen, _ = QFileDialog.getSaveFileName(
                self, "Export metrics", "pinned-metrics.csv", "CSV (*.csv)"
            )
            if not chosen:
                return None
            path = chosen
        from napari_pinned.io.safe_write import atomic_write

        target = Path(path)
        try:
            with atomic_write(target, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["metric", "scope", *_COLUMNS])
                for key, scope, before, after in self._rows:
                    gain = None if after is None else after - before
                    values = ("" if v is None else repr(float(v)) for v in (before, after, gain))
                    writer.writerow([key, scope or "image", *values])
        except (OSError, ValueError) as exc:
            notify_error(f"Export: cannot write {target}: {exc}")
            return None
        return target
