"""Dock widget that denoises an Image layer with a PINNED model and scores the result.

Denoising runs the core's tiled :func:`~napari_pinned.denoising.denoiser.iter_denoise` in a
napari worker (cancellable after every network pass) and adds
``"<input> denoised (<model>, ×<strength>)"``, one layer per setting
(:mod:`._qt.output_layer`); the input layer is never modified.  The dock starts on the
shipped default model and says which model runs on which layer; a model made for one
layer (adapted to it) is not carried over to another: when the input changes, the dock
goes back to the default model and says so.  With a reference layer picked, a table
shows PSNR, SSIM, FSC and EPI of the input and of the output against it, and the gain, from
:mod:`napari_pinned.quality.metrics`; with a Points layer of ground-truth columns picked (the
generator's ``"<image> columns"``), column recall, precision and RMS position error
too.  "Compare" shows noisy / denoised / reference side by side, "Residual" adds
input − output, and "Power spectrum" adds a layer's log power spectrum from
:func:`napari_pinned.quality.spectra.power_spectrum`.

For noise-aware models the dock shows the input's estimated noise and a strength
factor; after every run a faithfulness check (no reference needed) says whether the
denoiser kept the input's lattice reflections, and "Adapt to this image" fine-tunes the
model on the input's own noise (:mod:`._qt.noise_readout`, :mod:`._qt.faithfulness_panel`,
:mod:`._qt.adapt_panel`).

The dock only assembles panels, one file each (:mod:`._qt.input_panel`,
:mod:`._qt.metrics_panel`, :mod:`._qt.compare_panel`, :mod:`._qt.stack_to_zarr_panel` and
those above), runs the job, and wires them: :mod:`._qt.layer_watch` says when the
readouts are stale and :mod:`._qt.output_layer` names and places the outputs.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Points
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QWidget

from napari_pinned._qt.denoise.adapt_panel import AdaptPanel
from napari_pinned._qt.denoise.compare_panel import ComparePanel
from napari_pinned._qt.denoise.faithfulness_panel import FaithfulnessPanel
from napari_pinned._qt.denoise.input_panel import InputPanel
from napari_pinned._qt.denoise.metrics_panel import (
    MetricsPanel,
)
from napari_pinned._qt.denoise.model_picker import plan_text
from napari_pinned._qt.denoise.output_layer import Outputs, OutputTarget, setting_label
from napari_pinned._qt.denoise.stack_to_zarr_panel import (
    StackJob,
    StackToZarrPanel,
    is_lazy,
    layer_array,
    lazy_denoised,
)
from napari_pinned._qt.denoise.uncertainty_layer import (
    UncertaintyView,
    denoise_with_map,
    split_result,
)
from napari_pinned._qt.shared.common import (
    call_or_notify,
    image_layer_choices,
    is_greyscale,
    layer_pixel_size,
    notify_error,
    notify_warning,
    scrolling_layout,
)
from napari_pinned._qt.shared.job_runner import JobRunner, Outcome
from napari_pinned._qt.shared.layer_combos import LayerCombos
from napari_pinned._qt.shared.layer_watch import LayerWatch
from napari_pinned._qt.shared.model_registry import DEFAULT_NAME, get_registry

if TYPE_CHECKING:
    import napari

    from napari_pinned.denoising.denoiser import DenoiseProgress
    from napari_pinned.settings import FrameOptions

__all__ = [
    "NO_MODEL_MESSAGE",
    "DenoiseWidget",
]

NO_MODEL_MESSAGE = (
    "Denoise: no model is available. The pretrained default model is missing from this "
    "installation (reinstall napari-pinned) and none has been trained in this session: "
    "train one in the 'Train PINNED' dock (Plugins menu), or load a model file."
)


def _denoise_frames(
    data: np.ndarray, model: Any, options: FrameOptions
) -> Generator[DenoiseProgress, None, np.ndarray | None]:
    """The worker's job: reports after every network pass; returns the output.

    The output travels by the worker's ``returned`` signal, which cannot be overtaken by
    ``finished``.
    """
    from napari_pinned.denoising.denoiser import iter_denoise

    return (yield from iter_denoise(data, model, options))


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
        self._target: OutputTarget | None = None
        self._stack_target: OutputTarget | None = None
        self._outputs = Outputs(napari_viewer)
        # The model the dock went back from when the input changed, and its layers.
        self._replaced: tuple[str, tuple[str, ...]] | None = None

        layout = scrolling_layout(self)
        self.input_panel = InputPanel(self._image_choices, self)
        layout.addWidget(self.input_panel)
        self._expose_input_panel()
        self.faithfulness_panel = FaithfulnessPanel(napari_viewer)
        layout.addWidget(self.faithfulness_panel)
        self.uncertainty_view = UncertaintyView(self)
        layout.addWidget(self.uncertainty_view.label)
        self.stack_panel = StackToZarrPanel(self._stack_job, self._show_written)
        layout.addWidget(self.stack_panel)
        self.metrics_panel = MetricsPanel(
            napari_viewer, self._layers, self._image_choices, self._points_choices
        )
        layout.addWidget(self.metrics_panel)
        # The panel's controls and actions, under the names the dock has always had.
        metrics = self.metrics_panel
        self.reference_layer, self.columns_layer = metrics.reference_layer, metrics.columns_layer
        self.metrics_label, self.metrics_table = metrics.metrics_label, metrics.metrics_table
        self.copy_button, self.export_button = metrics.copy_button, metrics.export_button
        self.update_metrics, self.table_text = metrics.update_metrics, metrics.table_text
        self.copy_metrics, self.export_csv = metrics.copy_metrics, metrics.export_csv
        self.compare_panel = ComparePanel(napari_viewer, self._layers, self._image_choices)
        layout.addWidget(self.compare_panel)
        # The panel's controls and actions, under the names the dock has always had.
        panel = self.compare_panel
        self.compare_button, self.residual_button = panel.compare_button, panel.residual_button
        self.fft_layer, self.fft_button = panel.fft_layer, panel.fft_button
        self.set_compare, self.add_residual = panel.set_compare, panel.add_residual
        self.add_spectrum = panel.add_spectrum
        self.adapt_panel = AdaptPanel(
            lambda: self.input_layer.value, self._adapt_start_model, self._update_device_label
        )
        self.adapt_panel.adapted.connect(self._on_adapted)
        layout.addWidget(self.adapt_panel)
        layout.addStretch(1)

        self._layer_choices = LayerCombos(
            napari_viewer,
            [self.input_layer, self.reference_layer, self.fft_layer, self.columns_layer],
        )
        self._runner = JobRunner(
            self,
            "Denoise",
            cancel_button=self.cancel_button,
            status_label=self.status_label,
            cancelled="no layer was added",
        )
        self._watch: LayerWatch | None = LayerWatch(
            napari_viewer,
            self,
            lambda: [*self._layers(), self.columns_layer.value],
            self.update_metrics,
            self.update_noise,
            self._forget,
            self._show_plan,
        )
        self.schedule_metrics_update = self._watch.schedule_metrics
        self._schedule_noise_update = self._watch.schedule_noise
        self._on_layers_changed = self._watch.layers_changed

        self.model_picker.selected.connect(self._on_model_selected)
        self.denoise_button.clicked.connect(self.denoise)
        self.cancel_button.clicked.connect(self.cancel)
        self.input_layer.changed.connect(self._on_input_changed)
        self.input_layer.changed.connect(self._on_layers_changed)
        self.reference_layer.changed.connect(self._on_reference_changed)
        self.columns_layer.changed.connect(self._on_layers_changed)
        self.model_picker.refresh()
        self._update_device_label()
        self._set_running(False)
        self._on_layers_changed()

    # -- construction --------------------------------------------------------------------
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(n, layer) for n, layer in image_layer_choices(self._viewer) if is_greyscale(layer)]

    def _points_choices(self, _widget: Any = None) -> list[tuple[str, Points]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Points)]

    def _expose_input_panel(self) -> None:
        """The input panel's controls, under the names the dock has always had."""
        panel = self.input_panel
        self.input_layer, self.model_picker = panel.input_layer, panel.model_picker
        self.model_combo = self.model_picker.model_combo
        self.model_label = self.model_picker.model_label
        self.noise_label, self.options = panel.noise_label, panel.options
        options = self.options
        self.strength_spin, self.keep_lattice_box = options.strength_spin, options.keep_lattice_box
        self.tile_spin, self.overlap_spin = options.tile_spin, options.overlap_spin
        self.device_combo, self.device_label = options.device_combo, options.device_label
        self.denoise_button, self.cancel_button = panel.denoise_button, panel.cancel_button
        self.status_label, self.run_label = panel.status_label, panel.run_label

    # -- models -----------------------------------------------------------------------------
    def _on_model_selected(self, name: str) -> None:
        # Strength and adaptation are for noise-aware models only.
        conditioned = self.model_picker.available and self._registry.is_conditioned(name)
        self.strength_spin.setEnabled(conditioned)
        self.adapt_panel.setEnabled(conditioned)
        if name != DEFAULT_NAME:
            self._replaced = None
        self._show_plan()

    def _made_for(self, name: str) -> tuple[str, ...]:
        """The layers model ``name`` was made for (empty: any image, or no such model)."""
        return self._registry.made_for(name) if name in self._registry else ()

    def _on_input_changed(self, _value: Any = None) -> None:
        """A model made for other layers is not carried over to the new input: back to
        the default model, with a word (when there is no default, the line says so)."""
        self._replaced = None
        layer, name = self.input_layer.value, self.model_name
        made_for = self._made_for(name)
        elsewhere = layer is not None and made_for and layer.name not in made_for
        if elsewhere and DEFAULT_NAME in self._registry:
            self.select_model(DEFAULT_NAME)
            self._replaced = (name, made_for)
        self._show_plan()

    def _on_adapted(self, name: str) -> None:
        """Select a newly adapted model, unless the input is no longer its layer."""
        layer = self.input_layer.value
        if layer is None or layer.name in self._made_for(name):
            self.select_model(name)

    def _show_plan(self) -> None:
        """Say which model runs on which layer."""
        layer = self.input_layer.value
        name = self.model_name if self.model_picker.available else ""
        self.run_label.setText(
            plan_text(
                name, None if layer is None else layer.name, self._made_for(name), self._replaced
            )
        )

    def _adapt_start_model(self) -> Any:
        """The selected model if it is noise-aware, else the shipped default."""
        name = self.model_name
        registry = self._registry
        # An ONNX file or another tool's package denoises but cannot be adapted.
        usable = name and name in registry and registry.is_trainable(name)
        if usable and registry.is_conditioned(name):
            return registry.model_source(name)
        return "default"

    @property
    def model_name(self) -> str:
        """Name of the selected model ("" when none is available)."""
        return self.model_picker.name

    def select_model(self, name: str) -> None:
        """Select a registry model by name."""
        self.model_picker.select(name)

    def load_model_file(self, path: str | os.PathLike, *, trust: bool | None = None) -> str | None:
        """Load a model file, ONNX file or BioImage Model Zoo package and select it (see
        :meth:`ModelPicker.load_file`); None (and a notification) if it is not usable."""
        return self.model_picker.load_file(path, trust=trust)

    def _update_device_label(self, _text: str = "") -> str | None:
        return self.options.device()

    # -- denoising ----------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while a denoising job runs."""
        return self._runner.running

    def _set_running(self, running: bool) -> None:
        self.input_panel.set_running(running)

    def denoise(self) -> bool:
        """Start denoising the selected layer; returns whether a job started."""
        if self.is_running:
            notify_warning("Denoise: a denoising job is already running")
            return False
        job = self._job_inputs("Denoise")
        if job is None:
            return False
        layer, device = job
        self._target = self._target_for(layer)
        if is_lazy(layer):
            return self._denoise_lazily(layer, device)
        job = denoise_with_map if self.options.uncertainty else _denoise_frames
        started = self._runner.start(
            job,
            layer.data,
            self._registry.model_source(self.model_name),
            self.options.settings(device),
            description=f"Denoising {layer.name}",
            on_progress=self._on_progress,
            on_finish=self._on_finish,
        )
        if not started:
            return False
        self.status_label.setText(f"Denoising {layer.name!r} with {self.model_name}…")
        self._set_running(True)
        return True

    def _job_inputs(self, context: str) -> tuple[Image, str] | None:
        """The input layer and device of a job; None, with a notification, when the
        input, the model or the device is missing."""
        layer = self.input_layer.value
        if layer is None:
            notify_error(f"{context}: add or choose an Image layer to denoise")
            return None
        if not self.model_name or self.model_name not in self._registry:
            notify_error(NO_MODEL_MESSAGE)
            return None
        device = self._update_device_label()
        if device is None:
            notify_error(f"{context}: device {self.device_combo.currentText()!r} is not available")
            return None
        return layer, device

    def _target_for(self, layer: Image) -> OutputTarget:
        """Name, placement and provenance of the output layer of ``layer`` with the
        current model and options (one layer per distinct setting)."""
        name, options = self.model_name, self.options
        strength = self.strength_spin.value()
        setting = setting_label(
            self._registry.label(name),
            strength if self._registry.is_conditioned(name) else None,
            int(options.orientations_combo.currentData()),
            self.keep_lattice_box.isChecked(),
        )
        return OutputTarget.of(layer, name, strength, setting)

    def _denoise_lazily(self, layer: Image, device: str) -> bool:
        """A dask/zarr layer: add a lazy output whose frames napari computes when shown."""
        model = self._registry.model_source(self.model_name)
        output = call_or_notify(
            lazy_denoised,
            layer_array(layer),
            model,
            self.options.settings(device),
            context="Denoise",
        )
        if output is None:
            return False
        out = self._add_output(output)
        self.status_label.setText(
            f"Added {out.name!r}: frames are denoised when shown. 'Whole stack → zarr' "
            "writes them all to disk."
        )
        self.denoise_finished.emit(out)
        return True

    def _stack_job(self) -> StackJob | None:
        """What the 'Whole stack → zarr' panel runs: the input, model and options."""
        job = self._job_inputs("Write zarr")
        if job is None:
            return None
        layer, device = job
        model = self._registry.model_source(self.model_name)
        # Named after the setting the store is written with, whatever is chosen later.
        self._stack_target = self._target_for(layer)
        return StackJob(layer, model, self.options.settings(device), layer_pixel_size(layer))

    def _show_written(self, layer: Image, path: Path) -> None:
        """Show a written store as the output layer of ``layer`` (read lazily)."""
        import dask.array as da

        target = self._stack_target
        self._target = target if target is not None else self._target_for(layer)
        self._add_output(da.from_zarr(str(path)))

    def cancel(self) -> None:
        """Stop the job after the tile batch in progress; no layer is added."""
        self._runner.cancel()

    def _on_progress(self, report: DenoiseProgress) -> tuple[int, int]:
        self.status_label.setText(
            f"Frame {report.frame + 1}/{report.frames_total}: "
            f"{report.tiles_done}/{report.tiles_total} tiles"
        )
        return report.tiles_done, report.tiles_total

    def _on_finish(self, outcome: Outcome, output: Any) -> None:
        self._set_running(False)
        layer = None
        output, uncertain = split_result(output)
        if outcome == "done" and output is not None:
            layer = self._add_output(output)
            if uncertain is not None and self._target is not None:
                self.uncertainty_view.show(self._viewer, self._target, uncertain)
            else:
                self.uncertainty_view.clear()
        elif outcome != "cancelled":  # a cancel is reported by the runner
            self.status_label.setText("Denoising failed; see the notification.")
        self.denoise_finished.emit(layer)

    def _add_output(self, output: np.ndarray) -> Image:
        assert self._target is not None, "a job sets its target before it ends"
        layer = self._target.add(self._viewer, output)
        self._outputs.made(self._target.input_layer, layer)
        self.status_label.setText(f"Added {layer.name!r} ({self._target.model}).")
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
        frame = self.metrics_panel.current_frame(inp, frames)
        source = inp.data[frame] if inp.ndim == 3 else inp.data
        output = out.data[frame] if out.ndim == 3 else out.data
        self.faithfulness_panel.check(source, output, layer_pixel_size(inp), out)
        return True

    def update_noise(self) -> None:
        """Show the estimated noise of the input's current frame."""
        inp = self.input_layer.value
        if inp is None:
            self.noise_label.show_for(None, 0)
            return
        frames = inp.data.shape[0] if inp.ndim == 3 else 1
        frame = self.metrics_panel.current_frame(inp, frames)
        self.noise_label.show_for(inp.data, frame, name=inp.name)

    # -- metrics ------------------------------------------------------------------------------
    def _layers(self) -> tuple[Image | None, Image | None, Image | None]:
        """The input, its newest denoised output and the reference, where present."""
        inp = self.input_layer.value
        ref = self.reference_layer.value
        out = None if inp is None else self._outputs.newest(inp)
        return inp, out, ref

    def _on_reference_changed(self, _value: Any = None) -> None:
        self.metrics_panel.pick_reference_columns()
        self._on_layers_changed()

    def _forget(self, data_changed: bool) -> None:
        """Drop the scores (and, when the data changed, noise estimates) now stale."""
        self._outputs.forget_removed()
        self.metrics_panel.clear_cache()
        if data_changed:
            self.noise_label.clear_cache()

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
        if self._watch is not None:
            self._watch.close()
            self._watch = None
            self._layer_choices.disconnect()
            self.model_picker.disconnect_registry()
        super().closeEvent(event)
