"""Dock widget that denoises an Image layer with a PINNED model and scores the result.

Denoising runs the core's tiled :func:`~napari_pinned.inference.iter_denoise` in a
napari worker (cancellable between tile batches) and adds ``"<input> denoised"``; the
input layer is never modified.  With a reference layer picked, a table shows PSNR, SSIM,
FSC and EPI of the input and of the output against it, and the gain, from
:mod:`napari_pinned.metrics`; with a Points layer of ground-truth columns picked (the
generator's ``"<image> columns"``), column recall, precision and RMS position error
too.  "Compare" shows noisy / denoised / reference side by side, "Residual" adds
input − output, and "Power spectrum" adds a layer's log power spectrum from
:func:`napari_pinned.spectra.power_spectrum`.

For noise-aware models the dock shows the input's estimated noise and a strength
factor; after every run a faithfulness check (no reference needed) says whether the
denoiser kept the input's lattice reflections, and "Adapt to this image" fine-tunes the
model on the input's own noise (:mod:`._qt.noise_readout`, :mod:`._qt.faithfulness_panel`,
:mod:`._qt.adapt_panel`).
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import math
import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox
from napari.layers import Image, Points
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_pinned.metrics import METRIC_COLUMNS

from ._common import (
    DEVICES,
    ImageLayerChoices,
    add_or_update_image,
    call_or_notify,
    find_layer,
    image_layer_choices,
    int_spin_box,
    is_greyscale,
    layer_pixel_size,
    notify_error,
    notify_info,
    notify_warning,
    show_device,
)
from .adapt_panel import AdaptPanel
from .faithfulness_panel import FaithfulnessPanel
from .job_runner import JobRunner, Outcome
from .model_registry import get_registry
from .noise_readout import NoiseReadout
from .stack_to_zarr_panel import StackToZarrPanel, is_lazy, layer_array, lazy_denoised

if TYPE_CHECKING:
    import napari

    from napari_pinned.inference import DenoiseProgress
    from napari_pinned.metrics import ColumnAccuracy, Metrics

__all__ = [
    "LOAD_MODEL_ITEM",
    "METRIC_FORMATS",
    "NO_MODEL_ITEM",
    "NO_MODEL_MESSAGE",
    "DenoiseWidget",
    "denoised_name",
    "format_gain",
    "format_metric",
    "residual_name",
    "spectrum_name",
]

#: Last entry of the model combo: pick a model file.
LOAD_MODEL_ITEM = "Load model file…"
#: Shown in the model combo while no model is available.
NO_MODEL_ITEM = "(no model yet: train one in the Train dock)"
NO_MODEL_MESSAGE = (
    "Denoise: no model is available. The pretrained default model is missing from this "
    "installation (reinstall napari-pinned) and none has been trained in this session: "
    "train one in the 'Train PINNED' dock (Plugins menu), or load a model file."
)
#: Number formats of the metrics, as in napari_pinned.metrics.format_metrics_table.
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
# Frame changes and data edits come in bursts (a dragged slider); score once they settle.
_METRICS_DELAY_MS = 120


def denoised_name(name: str) -> str:
    """Name of the output layer for input layer ``name``."""
    return f"{name} denoised"


def residual_name(name: str) -> str:
    """Name of the residual (input − output) layer for input layer ``name``."""
    return f"{name} residual"


def spectrum_name(name: str) -> str:
    """Name of the power-spectrum layer of layer ``name``."""
    return f"{name} FFT"


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


def _denoise_frames(
    data: np.ndarray,
    model: Any,
    tile: int,
    overlap: int,
    device: str,
    strength: float = 1.0,
    keep_lattice: bool = True,
) -> Generator[DenoiseProgress, None, np.ndarray | None]:
    """The worker's job: one report per batch of tiles; returns the output.

    The output travels by the worker's ``returned`` signal, which cannot be overtaken by
    ``finished``.
    """
    from napari_pinned.inference import iter_denoise

    return (
        yield from iter_denoise(
            data,
            model,
            tile=tile,
            overlap=overlap,
            device=device,
            strength=strength,
            keep_lattice=keep_lattice,
        )
    )


def _grid(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, before that
    ``viewer.grid``)."""
    canvas = getattr(viewer, "canvas", None)
    grid = getattr(canvas, "grid", None)
    return grid if grid is not None else viewer.grid


class DenoiseWidget(QWidget):
    """Denoise an Image layer (2D or stack) and compare it with a reference.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Viewer whose Image layers are offered and that receives the output layers.
    """

    #: Emitted when a denoising job ends, with the output layer (None if cancelled/failed).
    denoise_finished = Signal(object)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._viewer = napari_viewer
        self._registry = get_registry()
        self._target: dict[str, Any] = {}
        self._model_name = ""
        self._known_models: list[str] = []
        self._metrics_cache: dict[tuple[int, int], list[Metrics]] = {}
        self._columns_cache: dict[tuple[int, int, int], ColumnAccuracy] = {}
        self._watched: list[Image] = []
        self._saved_visibility: dict[str, bool] | None = None
        self._saved_grid_shape: tuple[int, int] | None = None
        self._rows: list[tuple[str, str, float | None, float | None]] = []
        self._closed = False

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_denoise_box())
        self.faithfulness_panel = FaithfulnessPanel()
        layout.addWidget(self.faithfulness_panel)
        self.stack_panel = StackToZarrPanel(self._stack_job, self._show_written)
        layout.addWidget(self.stack_panel)
        layout.addWidget(self._build_metrics_box())
        layout.addWidget(self._build_compare_box())
        self.adapt_panel = AdaptPanel(
            lambda: self.input_layer.value, self._adapt_start_model, self._update_device_label
        )
        self.adapt_panel.adapted.connect(self.select_model)
        layout.addWidget(self.adapt_panel)
        layout.addStretch(1)

        self._layer_choices = ImageLayerChoices(
            napari_viewer,
            [self.input_layer, self.reference_layer, self.fft_layer, self.columns_layer],
        )
        self._runner = JobRunner(self, "Denoise")
        self._metrics_timer = QTimer(self)
        self._metrics_timer.setSingleShot(True)
        self._metrics_timer.setInterval(_METRICS_DELAY_MS)
        self._metrics_timer.timeout.connect(self.update_metrics)
        self._noise_timer = QTimer(self)
        self._noise_timer.setSingleShot(True)
        self._noise_timer.setInterval(_METRICS_DELAY_MS)
        self._noise_timer.timeout.connect(self.update_noise)

        self._registry.changed.connect(self._on_registry_changed)
        layers = napari_viewer.layers.events
        layers.inserted.connect(self._on_layers_changed)
        layers.removed.connect(self._on_layers_changed)
        napari_viewer.dims.events.current_step.connect(self.schedule_metrics_update)
        self.input_layer.changed.connect(self._on_layers_changed)
        napari_viewer.dims.events.current_step.connect(self._schedule_noise_update)
        self.reference_layer.changed.connect(self._on_reference_changed)
        self.columns_layer.changed.connect(self._on_layers_changed)
        self._refresh_models()
        self._update_device_label()
        self._set_running(False)
        self._on_layers_changed()

    # -- construction --------------------------------------------------------------------
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(n, layer) for n, layer in image_layer_choices(self._viewer) if is_greyscale(layer)]

    def _points_choices(self, _widget: Any = None) -> list[tuple[str, Points]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Points)]

    def _build_denoise_box(self) -> QGroupBox:
        from napari_pinned.inference import iter_denoise

        # The core's defaults, so that the dock and the API tile alike.
        defaults = inspect.signature(iter_denoise).parameters
        box = QGroupBox("Denoise")
        form = QFormLayout(box)
        self.input_layer = ComboBox(choices=self._image_choices)
        self.model_combo = QComboBox()
        self.model_combo.activated.connect(self._on_model_activated)
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.noise_label = NoiseReadout()
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.0, 5.0)
        self.strength_spin.setSingleStep(0.1)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setValue(defaults["strength"].default)
        self.strength_spin.setPrefix("× ")
        self.strength_spin.setToolTip(
            "Factor on the estimated noise level given to a noise-aware model: below 1 "
            "denoises less (keeps more of the input), above 1 more; 0 returns the input "
            "with hot and dead pixels repaired"
        )
        self.keep_lattice_box = QCheckBox("Keep lattice reflections")
        self.keep_lattice_box.setChecked(defaults["keep_lattice"].default)
        self.keep_lattice_box.setToolTip(
            "Give back what the network took from the input's strong Bragg reflections "
            "(ten times above the noise floor, hence signal): no sublattice is erased"
        )
        self.tile_spin = int_spin_box(16, 8192, defaults["tile"].default, 32)
        # 0 = the core's default (None): the model's minimum halo for exact tiling.
        self.overlap_spin = int_spin_box(0, 1024, defaults["overlap"].default or 0, 8)
        self.overlap_spin.setSpecialValueText("auto (the model's minimum)")
        self.overlap_spin.setToolTip(
            "Halo around every tile; any tile size gives the whole-image result when it is "
            "at least the model's minimum (half its receptive field)"
        )
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.currentTextChanged.connect(self._update_device_label)
        self.device_label = QLabel()
        self.denoise_button = QPushButton("Denoise")
        self.cancel_button = QPushButton("Cancel")
        self.denoise_button.clicked.connect(self.denoise)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.denoise_button)
        buttons.addWidget(self.cancel_button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        form.addRow("Input layer", self.input_layer.native)
        form.addRow("Model", self.model_combo)
        form.addRow(self.model_label)
        form.addRow(self.noise_label)
        form.addRow("Strength", self.strength_spin)
        form.addRow(self.keep_lattice_box)
        form.addRow("Tile size", self.tile_spin)
        form.addRow("Overlap", self.overlap_spin)
        form.addRow("Device", self.device_combo)
        form.addRow(self.device_label)
        form.addRow(buttons)
        form.addRow(self.status_label)
        return box

    def _build_metrics_box(self) -> QGroupBox:
        box = QGroupBox("Metrics against a reference")
        form = QFormLayout(box)
        self.reference_layer = ComboBox(choices=self._image_choices, nullable=True)
        self.columns_layer = ComboBox(choices=self._points_choices, nullable=True)
        self.columns_layer.native.setToolTip(
            "Points at the true atomic columns (the generator's '<image> columns' layer, "
            "with a 'weight' feature): adds column recall, precision and RMS error"
        )
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.metrics_table = QTableWidget(0, len(_COLUMNS))
        self.metrics_table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.metrics_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
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
        form.addRow("Reference", self.reference_layer.native)
        form.addRow("Ground-truth columns", self.columns_layer.native)
        form.addRow(self.metrics_label)
        form.addRow(self.metrics_table)
        form.addRow(buttons)
        return box

    def _build_compare_box(self) -> QGroupBox:
        box = QGroupBox("Compare")
        form = QFormLayout(box)
        self.compare_button = QPushButton("Grid: noisy / denoised / reference")
        self.compare_button.setCheckable(True)
        self.compare_button.toggled.connect(self.set_compare)
        self.residual_button = QPushButton("Residual (input − denoised)")
        self.residual_button.clicked.connect(lambda: self.add_residual())
        self.fft_layer = ComboBox(choices=self._image_choices)
        self.fft_button = QPushButton("Power spectrum")
        self.fft_button.clicked.connect(lambda: self.add_spectrum())
        fft_row = QHBoxLayout()
        fft_row.addWidget(self.fft_layer.native, 1)
        fft_row.addWidget(self.fft_button)
        form.addRow(self.compare_button)
        form.addRow(self.residual_button)
        form.addRow("FFT of", fft_row)
        return box

    # -- models -----------------------------------------------------------------------------
    def _on_registry_changed(self) -> None:
        try:
            self._refresh_models()
        except RuntimeError:
            # Our Qt side was deleted with the viewer's window: stop listening.
            self._registry.changed.disconnect(self._on_registry_changed)

    def _refresh_models(self) -> None:
        names = self._registry.names()
        added = [n for n in names if n not in self._known_models]
        self._known_models = names
        # A model that just appeared (trained or loaded) is the one the user wants next.
        if added:
            self._model_name = added[-1]
        elif self._model_name not in names:
            self._model_name = names[0] if names else ""
        combo = self.model_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names or [NO_MODEL_ITEM])
        combo.addItem(LOAD_MODEL_ITEM)
        combo.setCurrentIndex(names.index(self._model_name) if self._model_name else 0)
        combo.blockSignals(False)
        self._show_model_description()

    def _show_model_description(self) -> None:
        name = self._model_name
        known = bool(name) and name in self._registry
        self.model_label.setText(self._registry.describe(name) if known else "")
        conditioned = known and self._registry.is_conditioned(name)
        self.strength_spin.setEnabled(conditioned)
        self.adapt_panel.setEnabled(conditioned)

    def _adapt_start_model(self) -> Any:
        """The selected model if it is noise-aware, else the shipped default."""
        name = self._model_name
        registry = self._registry
        # An ONNX file or another tool's package denoises but cannot be adapted.
        usable = name and name in registry and registry.is_trainable(name)
        if usable and registry.is_conditioned(name):
            return registry.model_source(name)
        return "default"

    def _on_model_activated(self, index: int) -> None:
        text = self.model_combo.itemText(index)
        if text == LOAD_MODEL_ITEM:
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Load PINNED model",
                "",
                "Models (*.pt *.zip *.onnx);;PINNED model (*.pt);;"
                "BioImage Model Zoo package (*.zip);;ONNX model (*.onnx);;All files (*)",
            )
            if not path or self.load_model_file(path) is None:
                self._refresh_models()  # back to the previous choice
        elif text != NO_MODEL_ITEM:
            self._model_name = text
            self._show_model_description()

    @property
    def model_name(self) -> str:
        """Name of the selected model ("" when none is available)."""
        return self._model_name

    def select_model(self, name: str) -> None:
        """Select a registry model by name."""
        if name not in self._registry:
            raise KeyError(f"no model called {name!r} in this session")
        self._model_name = name
        self._refresh_models()

    def load_model_file(self, path: str | os.PathLike, *, trust: bool | None = None) -> str | None:
        """Load a model file, ONNX file or BioImage Model Zoo package into the registry
        and select it; None (and a notification) if it is not a usable model.

        A package from another tool whose weights are code (torchscript,
        pytorch_state_dict) is loaded only when ``trust`` is True; None asks the user.
        """
        from napari_pinned.bmz import PackageNeedsTrust
        from napari_pinned.model_files import ModelFileError

        errors = (ModelFileError, OSError)
        try:
            name = call_or_notify(
                self._registry.add_file,
                path,
                trust=bool(trust),
                context="Load model",
                errors=errors,
            )
        except PackageNeedsTrust as exc:
            if trust is None:
                trust = self._ask_trust(str(exc))
            if not trust:
                notify_error(f"Load model: {exc}")
                return None
            name = call_or_notify(
                self._registry.add_file, path, trust=True, context="Load model", errors=errors
            )
        if name is not None:
            self.select_model(name)
        return name

    def _ask_trust(self, message: str) -> bool:
        """Ask whether to run code from a BioImage Model Zoo package."""
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(
            self,
            "Run code from this package?",
            f"{message}\n\nRun it only if you trust where the package came from.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _update_device_label(self, _text: str = "") -> str | None:
        device = show_device(self.device_combo.currentText(), self.device_label)
        return None if device is None else str(device)

    # -- denoising ----------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while a denoising job runs."""
        return self._runner.running

    def _set_running(self, running: bool) -> None:
        self.denoise_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def denoise(self) -> bool:
        """Start denoising the selected layer; returns whether a job started."""
        if self.is_running:
            notify_warning("Denoise: a denoising job is already running")
            return False
        layer = self.input_layer.value
        if layer is None:
            notify_error("Denoise: add or choose an Image layer to denoise")
            return False
        if not self._model_name or self._model_name not in self._registry:
            notify_error(NO_MODEL_MESSAGE)
            return False
        device = self._update_device_label()
        if device is None:
            notify_error(f"Denoise: device {self.device_combo.currentText()!r} is not available")
            return False
        self._target = self._target_for(layer)
        if is_lazy(layer):
            return self._denoise_lazily(layer, device)
        started = self._runner.start(
            _denoise_frames,
            layer.data,
            self._registry.model_source(self._model_name),
            self.tile_spin.value(),
            self.overlap_spin.value() or None,
            device,
            self.strength_spin.value(),
            self.keep_lattice_box.isChecked(),
            description=f"Denoising {layer.name}",
            on_progress=self._on_progress,
            on_finish=self._on_finish,
        )
        if not started:
            return False
        self._target["strength"] = self.strength_spin.value()
        self.status_label.setText(f"Denoising {layer.name!r} with {self._model_name}…")
        self._set_running(True)
        return True

    def _target_for(self, layer: Image) -> dict[str, Any]:
        """Name, placement and provenance of the output layer of ``layer``."""
        return {
            "name": denoised_name(layer.name),
            "source": layer.name,
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": tuple(layer.units),
            "contrast_limits": tuple(layer.contrast_limits),
            "model": self._model_name,
        }

    def _settings(self, device: str) -> dict[str, Any]:
        return {
            "tile": self.tile_spin.value(),
            "overlap": self.overlap_spin.value() or None,
            "device": device,
            "strength": self.strength_spin.value(),
            "keep_lattice": self.keep_lattice_box.isChecked(),
        }

    def _denoise_lazily(self, layer: Image, device: str) -> bool:
        """A dask/zarr layer: add a lazy output whose frames napari computes when shown."""
        model = self._registry.model_source(self._model_name)
        output = call_or_notify(
            lazy_denoised,
            layer_array(layer),
            model,
            context="Denoise",
            **self._settings(device),
        )
        if output is None:
            return False
        self._target["strength"] = self.strength_spin.value()
        out = self._add_output(output)
        self.status_label.setText(
            f"Added {out.name!r}: frames are denoised when shown. 'Whole stack → zarr' "
            "writes them all to disk."
        )
        self.denoise_finished.emit(out)
        return True

    def _stack_job(self) -> tuple[Image, Any, dict[str, Any]] | None:
        """What the 'Whole stack → zarr' panel runs: the input, model and settings."""
        layer = self.input_layer.value
        if layer is None:
            notify_error("Write zarr: add or choose an Image layer to denoise")
            return None
        if not self._model_name or self._model_name not in self._registry:
            notify_error(NO_MODEL_MESSAGE)
            return None
        device = self._update_device_label()
        if device is None:
            notify_error(f"Write zarr: device {self.device_combo.currentText()!r} is not available")
            return None
        settings = {**self._settings(device), "pixel_size": layer_pixel_size(layer)}
        return layer, self._registry.model_source(self._model_name), settings

    def _show_written(self, layer: Image, path: Path) -> None:
        """Show a written store as the output layer of ``layer`` (read lazily)."""
        import dask.array as da

        self._target = self._target_for(layer)
        self._target["strength"] = self.strength_spin.value()
        self._add_output(da.from_zarr(str(path)))

    def cancel(self) -> None:
        """Stop the job after the tile batch in progress; no layer is added."""
        if not self.is_running:
            return
        self._runner.cancel()
        self.cancel_button.setEnabled(False)
        self.status_label.setText("Cancelling…")

    def _on_progress(self, report: DenoiseProgress) -> tuple[int, int]:
        self.status_label.setText(
            f"Frame {report.frame + 1}/{report.frames_total}: "
            f"{report.tiles_done}/{report.tiles_total} tiles"
        )
        return report.tiles_done, report.tiles_total

    def _on_finish(self, outcome: Outcome, output: np.ndarray | None) -> None:
        self._set_running(False)
        layer = None
        if outcome == "cancelled":
            self.status_label.setText("Cancelled; no layer was added.")
            notify_info("Denoise: cancelled; no layer was added")
        elif outcome == "failed" or output is None:
            self.status_label.setText("Denoising failed; see the notification.")
        else:
            layer = self._add_output(output)
        self.denoise_finished.emit(layer)

    def _add_output(self, output: np.ndarray) -> Image:
        target = self._target
        layer = add_or_update_image(
            self._viewer,
            output,
            target["name"],
            scale=target["scale"],
            translate=target["translate"],
            units=target["units"],
            contrast_limits=target["contrast_limits"],
            metadata={
                "pinned_model": target["model"],
                "pinned_source": target["source"],
                "pinned_strength": target.get("strength", 1.0),
            },
        )
        self.status_label.setText(f"Added {layer.name!r} ({target['model']}).")
        self._on_layers_changed()
        self.check_faithfulness()
        return layer

    def check_faithfulness(self) -> bool:
        """Check the current frame of the input against its denoised layer (in a
        worker); returns whether a check started."""
        inp, out, _ = self._layers()
        if inp is None or out is None or tuple(inp.data.shape) != tuple(out.data.shape):
            self.faithfulness_panel.clear("Denoise an image to check what the denoiser kept.")
            return False
        frames = inp.data.shape[0] if inp.ndim == 3 else 1
        frame = self._current_frame(inp, frames)
        source = inp.data[frame] if inp.ndim == 3 else inp.data
        output = out.data[frame] if out.ndim == 3 else out.data
        self.faithfulness_panel.check(source, output, layer_pixel_size(inp))
        return True

    def _schedule_noise_update(self, _event: Any = None) -> None:
        with contextlib.suppress(RuntimeError):
            self._noise_timer.start()

    def update_noise(self) -> None:
        """Show the estimated noise of the input's current frame."""
        inp = self.input_layer.value
        if inp is None:
            self.noise_label.show_for(None, 0)
            return
        frames = inp.data.shape[0] if inp.ndim == 3 else 1
        self.noise_label.show_for(inp.data, self._current_frame(inp, frames))

    # -- metrics ------------------------------------------------------------------------------
    def _layers(self) -> tuple[Image | None, Image | None, Image | None]:
        """The input, its denoised output (by name) and the reference, where present."""
        inp = self.input_layer.value
        ref = self.reference_layer.value
        out = None if inp is None else find_layer(self._viewer, denoised_name(inp.name), Image)
        return inp, out, ref

    def _on_reference_changed(self, _value: Any = None) -> None:
        """Pick the reference's ground-truth columns when the generator made them."""
        ref = self.reference_layer.value
        if ref is not None and self.columns_layer.value is None:
            points = find_layer(self._viewer, f"{ref.name} columns", Points)
            if points is not None:
                self.columns_layer.reset_choices()
                self.columns_layer.value = points
        self._on_layers_changed()

    def _on_layers_changed(self, _event: Any = None) -> None:
        try:
            self._rewatch()
        except RuntimeError:  # Qt side gone with the viewer
            return
        self._metrics_cache.clear()
        self._columns_cache.clear()
        self.schedule_metrics_update()
        self._schedule_noise_update()

    def _rewatch(self) -> None:
        for layer in self._watched:
            layer.events.data.disconnect(self._on_data_changed)
        self._watched = [layer for layer in self._layers() if layer is not None]
        if self.columns_layer.value is not None:
            self._watched.append(self.columns_layer.value)
        for layer in self._watched:
            layer.events.data.connect(self._on_data_changed)

    def _on_data_changed(self, _event: Any = None) -> None:
        self._metrics_cache.clear()
        self._columns_cache.clear()
        self.noise_label.clear_cache()
        self.schedule_metrics_update()
        self._schedule_noise_update()

    def schedule_metrics_update(self, _event: Any = None) -> None:
        """Recompute the readouts shortly (bursts of events collapse into one update)."""
        # RuntimeError: our Qt side was deleted with the viewer's window.
        with contextlib.suppress(RuntimeError):
            self._metrics_timer.start()

    def _frame_metrics(self, image: Image, reference: Image) -> list[Metrics]:
        from napari_pinned.metrics import compute_metrics_stack

        key = (id(image.data), id(reference.data))
        if key not in self._metrics_cache:
            self._metrics_cache[key] = compute_metrics_stack(image.data, reference.data)
        return self._metrics_cache[key]

    def _current_frame(self, layer: Image, frames: int) -> int:
        if layer.ndim != 3:
            return 0
        position = layer.world_to_data(self._viewer.dims.point[-layer.ndim :])
        return int(np.clip(round(float(position[0])), 0, frames - 1))

    def update_metrics(self) -> None:
        """Recompute the metrics table now."""
        from napari_pinned.metrics import mean_metrics

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
        frame = self._current_frame(inp, len(before))
        if len(before) == 1:
            self._add_rows("", before[0], None if after is None else after[0])
            note = ""
        else:
            current = None if after is None else after[frame]
            mean_after = None if after is None else mean_metrics(after)
            self._add_rows(f"frame {frame}", before[frame], current)
            self._add_rows(f"mean of {len(before)}", mean_metrics(before), mean_after)
            note = f"Frame {frame} of {len(before)} and the mean over all frames. "
        missing = "" if out is not None else f"No {denoised_name(inp.name)!r} layer yet. "
        columns_note = self._add_column_rows(inp, out, frame)
        self._show_rows(f"{note}{missing}Against {ref.name!r}.{columns_note}")

    def _column_accuracy(self, image: Image, frame: int, points: Points) -> ColumnAccuracy:
        from napari_pinned.metrics import column_accuracy

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
        from napari_pinned.atomic import atomic_write

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

    # -- comparison views -------------------------------------------------------------------
    def set_compare(self, enabled: bool) -> None:
        """Grid view of noisy / denoised / reference with only those visible, or back."""
        viewer = self._viewer
        if enabled:
            shown = [layer for layer in self._layers() if layer is not None]
            if len(shown) < 2:
                notify_warning("Compare: denoise the input (or pick a reference) first")
                self._set_compare_button(False)
                return
            self._saved_visibility = {layer.name: layer.visible for layer in viewer.layers}
            for layer in viewer.layers:
                layer.visible = layer in shown
            grid = _grid(viewer)
            # One row, side by side: napari places only visible layers in the grid.
            self._saved_grid_shape = tuple(grid.shape)
            grid.shape = (1, len(shown))
            grid.enabled = True
        else:
            grid = _grid(viewer)
            grid.enabled = False
            if self._saved_grid_shape is not None:
                grid.shape = self._saved_grid_shape
                self._saved_grid_shape = None
            for name, visible in (self._saved_visibility or {}).items():
                if name in viewer.layers:
                    viewer.layers[name].visible = visible
            self._saved_visibility = None
        self._set_compare_button(enabled)

    def _set_compare_button(self, checked: bool) -> None:
        self.compare_button.blockSignals(True)
        self.compare_button.setChecked(checked)
        self.compare_button.blockSignals(False)

    def add_residual(self) -> Image | None:
        """Add ``"<input> residual"`` = input − denoised (float32, symmetric contrast)."""
        inp, out, _ = self._layers()
        if inp is None or out is None:
            notify_error("Residual: denoise the input layer first")
            return None
        if tuple(inp.data.shape) != tuple(out.data.shape):
            notify_error(
                f"Residual: {inp.name!r} {tuple(inp.data.shape)} and {out.name!r} "
                f"{tuple(out.data.shape)} differ in shape"
            )
            return None
        residual = np.asarray(inp.data, dtype=np.float32) - np.asarray(out.data, dtype=np.float32)
        peak = float(np.max(np.abs(residual))) or 1.0
        return add_or_update_image(
            self._viewer,
            residual,
            residual_name(inp.name),
            scale=tuple(inp.scale),
            translate=tuple(inp.translate),
            units=tuple(inp.units),
            contrast_limits=(-peak, peak),
        )

    def add_spectrum(self, layer: Image | None = None, *, window: bool = True) -> Image | None:
        """Add ``"<layer> FFT"``: the log power spectrum (per frame for stacks)."""
        from napari_pinned.spectra import power_spectrum

        layer = self.fft_layer.value if layer is None else layer
        if layer is None:
            notify_error("Power spectrum: choose an Image layer")
            return None
        spectrum = call_or_notify(
            power_spectrum, layer.data, window=window, context="Power spectrum"
        )
        if spectrum is None:
            return None
        # Frequency axes have no physical pixel size; a stack keeps its frame axis.
        extra: dict[str, Sequence[float]] = {}
        if spectrum.ndim == 3:
            extra = {"scale": (layer.scale[0], 1.0, 1.0), "translate": (layer.translate[0], 0, 0)}
        return add_or_update_image(
            self._viewer, spectrum, spectrum_name(layer.name), colormap="magma", **extra
        )

    # -- closing ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel running jobs and wait for their threads (the dock or viewer is closing)."""
        self.faithfulness_panel.shutdown()
        self.noise_label.shutdown()
        self.adapt_panel.shutdown()
        self.stack_panel.shutdown()
        self._runner.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        if not self._closed:
            self._closed = True
            self._metrics_timer.stop()
            self._noise_timer.stop()
            self._layer_choices.disconnect()
            self._registry.changed.disconnect(self._on_registry_changed)
            layers = self._viewer.layers.events
            layers.inserted.disconnect(self._on_layers_changed)
            layers.removed.disconnect(self._on_layers_changed)
            self._viewer.dims.events.current_step.disconnect(self.schedule_metrics_update)
            self._viewer.dims.events.current_step.disconnect(self._schedule_noise_update)
            for layer in self._watched:
                layer.events.data.disconnect(self._on_data_changed)
            self._watched = []
        super().closeEvent(event)
