"""Dock widget that trains PINNED on image layers, live, in a background thread.

The training loop is the core's :class:`~napari_pinned.training.run.TrainingRun`; this dock
only collects settings, iterates the run in a napari worker (one yield per optimiser
step), draws the losses, and puts the best model into the session's model registry,
where the Denoise dock finds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_pinned._qt.shared.common import (
    ImageLayerChoices,
    call_or_notify,
    describe_device,
    image_layer_choices,
    is_greyscale,
    notify_error,
    notify_info,
    notify_warning,
    scrolling_layout,
    show_device,
)
from napari_pinned._qt.shared.docking import keep_docks_together
from napari_pinned._qt.shared.job_runner import JobRunner, Outcome
from napari_pinned._qt.shared.model_registry import DEFAULT_NAME, get_registry
from napari_pinned._qt.shared.train_run import (
    RunHandle,
    dock_training_threads,
    progress_text,
    train_steps,
)
from napari_pinned._qt.train.data_panel import NOISE_MODES, TrainDataPanel
from napari_pinned._qt.train.loss_plot import LossPlot, theme_colours
from napari_pinned._qt.train.match_panel import MatchPanel
from napari_pinned._qt.train.model_export import export_package_file, save_model_file
from napari_pinned._qt.train.model_panel import TrainModelPanel
from napari_pinned._qt.train.settings_panel import TrainSettingsPanel

if TYPE_CHECKING:
    import napari
    import numpy as np
    from napari.layers import Image

    from napari_pinned.nn.network import ModelBundle
    from napari_pinned.settings import TrainConfig
    from napari_pinned.training.run import TrainingRun, TrainProgress

__all__ = [
    "TrainWidget",
]


class TrainWidget(QWidget):
    """Train a PINNED model on clean Image layers (with paired or synthesised noise).

    Start runs the core's training loop in a napari worker; the GUI stays live, a
    napari progress bar counts steps, the dock shows the ETA and the curves of every
    loss term and of the validation PSNR.  Stop ends the run after the step in
    progress and keeps the best model by validation PSNR.  Finished (or stopped) runs
    are added to the session's model registry, from which the Denoise dock picks
    models; "Save model…" writes the last one to a file.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Viewer whose Image layers are offered as training data.
    """

    #: Emitted when a run ends (finished, stopped or failed) with the registry name of
    #: the model it produced, or None.
    training_finished = Signal(object)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        keep_docks_together(self)
        from napari_pinned.settings import LossWeights, ModelConfig, TrainConfig

        self._viewer = napari_viewer
        self._registry = get_registry()
        self._handle: RunHandle | None = None
        self._failed = False
        self._last_progress: TrainProgress | None = None
        self.last_bundle: ModelBundle | None = None
        self.last_model_name: str | None = None

        defaults = TrainConfig()
        model_defaults = ModelConfig()
        weight_defaults = LossWeights().to_dict()

        # Settings scroll; Start/Stop, the status and the curves stay in view below them.
        results = QWidget()
        layout = scrolling_layout(self, footer=results)
        self.data_panel = TrainDataPanel(
            self._image_choices, defaults.noise_levels, defaults.dose_counts
        )
        layout.addWidget(self.data_panel)
        # The panel's controls, under the names the dock has always had.
        data = self.data_panel
        self.clean_layers, self.noisy_layers = data.clean_layers, data.noisy_layers
        self.noise_mode, self.pairs_label = data.noise_mode, data.pairs_label
        self.level_low, self.level_high = data.level_low, data.level_high
        self.counts_low, self.counts_high = data.counts_low, data.counts_high
        self.match_panel = MatchPanel(napari_viewer, self._image_choices, self.train_for_image)
        layout.addWidget(self.match_panel)
        # The panel's controls, under the names the dock has always had.
        match = self.match_panel
        self.match_layer, self.match_button = match.match_layer, match.match_button
        self.match_material, self.match_count = match.match_material, match.match_count
        self.model_panel = TrainModelPanel(model_defaults)
        layout.addWidget(self.model_panel)
        # The panel's controls and choice, under the names the dock has always had.
        model = self.model_panel
        self.architecture, self.init_model = model.architecture, model.init_model
        self.width_spin, self.depth_spin = model.width_spin, model.depth_spin
        self.start_model = model.start_model
        self.init_model.currentIndexChanged.connect(self._on_start_model)
        self.settings_panel = TrainSettingsPanel(
            defaults, weight_defaults, self._update_device_label
        )
        layout.addWidget(self.settings_panel)
        # The panel's controls, under the names the dock has always had.
        settings = self.settings_panel
        self.steps_spin, self.device_combo = settings.steps_spin, settings.device_combo
        self.batch_spin, self.patch_spin = settings.batch_spin, settings.patch_spin
        self.lr_spin, self.weight_spins = settings.lr_spin, settings.weight_spins
        self.seed_spin, self.advanced_section = settings.seed_spin, settings.advanced_section
        layout.addStretch(1)
        self.status_label = QLabel("Not trained yet.")
        self.status_label.setWordWrap(True)
        self.device_label = QLabel()
        self.loss_plot = LossPlot()
        self._follow_theme()
        napari_viewer.events.theme.connect(self._follow_theme)
        footer = QVBoxLayout(results)
        footer.setContentsMargins(0, 0, 0, 0)
        footer.addLayout(self._build_buttons())
        footer.addWidget(self.status_label)
        footer.addWidget(self.device_label)
        footer.addWidget(self.loss_plot)

        self._layer_choices = ImageLayerChoices(
            napari_viewer, [self.clean_layers, self.noisy_layers, self.match_layer]
        )
        self._runner = JobRunner(self, "Train")
        self._closed = False
        self._update_device_label()
        self._set_running(False)

    # -- construction --------------------------------------------------------------------
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(n, layer) for n, layer in image_layer_choices(self._viewer) if is_greyscale(layer)]

    def _build_buttons(self) -> QGridLayout:
        # Two rows: run control above, what to do with the model below; one row would
        # be wider than a docked panel.
        grid = QGridLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.save_button = QPushButton("Save model…")
        self.export_button = QPushButton("Export to BioImage Model Zoo…")
        self.export_button.setToolTip(
            "Write the last trained model as a BioImage Model Zoo package (.zip) that "
            "bioimageio.core, deepImageJ and napari-pinned run"
        )
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(lambda: self.save_model())
        self.export_button.clicked.connect(lambda: self.export_package())
        grid.addWidget(self.start_button, 0, 0)
        grid.addWidget(self.stop_button, 0, 1)
        grid.addWidget(self.save_button, 1, 0)
        grid.addWidget(self.export_button, 1, 1)
        return grid

    # -- reactions to controls --------------------------------------------------------------
    def _follow_theme(self, _event: Any = None) -> None:
        try:
            self.loss_plot.set_colours(*theme_colours(self._viewer.theme))
        except RuntimeError:  # our Qt side was deleted with the viewer's window
            self._viewer.events.theme.disconnect(self._follow_theme)

    def _update_device_label(self, _text: str = "") -> None:
        show_device(self.device_combo.currentText(), self.device_label)

    @property
    def paired(self) -> bool:
        """True when training on the user's own clean/noisy layer pairs."""
        return self.data_panel.paired

    @property
    def blind_spot(self) -> bool:
        """True when learning from noisy layers alone (self-supervised)."""
        return self.data_panel.blind_spot

    @property
    def is_running(self) -> bool:
        """True while a training run is in progress."""
        return self._runner.running

    def _set_running(self, running: bool) -> None:
        self.match_button.setEnabled(not running)
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.save_button.setEnabled(not running and self.last_bundle is not None)
        self.export_button.setEnabled(not running and self.last_bundle is not None)

    # -- collecting settings --------------------------------------------------------------
    def train_config(self) -> TrainConfig:
        """The :class:`~napari_pinned.training.run.TrainConfig` the controls describe.

        Raises
        ------
        ValueError
            If a setting is invalid (the message names it).
        """
        from napari_pinned._util.devices import resolve_device
        from napari_pinned.settings import NOISE_AWARE_MODEL, TrainConfig

        noise_model = self.data_panel.noise_model
        # Realistic recordings teach a noise-aware model (as the shipped default).
        aware = dict(NOISE_AWARE_MODEL) if noise_model == "stem" else {}
        model = self.model_panel.model_config(**aware)
        init = self.start_model()
        self._check_start_model_noise(init, noise_model)
        device = resolve_device(self.device_combo.currentText())
        threads = dock_training_threads() if device.type == "cpu" else None
        return TrainConfig(
            model=model,
            **self.settings_panel.config_fields(),
            noise_levels=(self.level_low.value(), self.level_high.value()),
            noise_model=noise_model,
            dose_counts=(self.counts_low.value(), self.counts_high.value()),
            self_supervised="blind-spot" if self.blind_spot else None,
            validate_every=None,  # auto: about 20 validations per run
            # A model of this session is in memory: it goes to train() (start_model).
            init_model=init if isinstance(init, str) else None,
            num_threads=threads,
        )

    def train_for_image(self) -> bool:
        """Simulate clean images of the chosen material sampled like the chosen image, add
        them as a stack layer, and fine-tune the default model on them (realistic STEM
        recordings at any dose, on patches as large as the ones it learned from).

        Returns True if training started.
        """
        synthetic = self.match_panel.add_training_images(self.seed_spin.value())
        if synthetic is None:
            return False
        self.clean_layers.reset_choices()
        self.clean_layers.value = [synthetic]
        self.noise_mode.setCurrentText(NOISE_MODES[5])
        self.model_panel.refresh_init_models()
        if self.init_model.currentText() == DEFAULT_NAME:
            self._on_start_model()
        elif self.init_model.findText(DEFAULT_NAME) >= 0:
            self.init_model.setCurrentText(DEFAULT_NAME)  # its patch size: _on_start_model
        return self.start()

    def _check_start_model_noise(self, init: object, noise_model: str) -> None:
        """A noise-aware start model ``init`` (the shipped default) learns from realistic
        recordings, paired or blind-spot data only: say so before a run starts (the
        core would refuse it in the worker)."""
        name = self.init_model.currentText()
        if init is None or not self.data_panel.draws_noise:
            return
        if noise_model != "stem" and self._registry.is_conditioned(name):
            raise ValueError(
                f"{name!r} is noise-aware: it learns from "
                f"{NOISE_MODES[5]!r}, paired noisy layers or blind-spot training, not "
                f"{self.noise_mode.currentText()!r}"
            )

    def _on_start_model(self, _index: int = 0) -> None:
        """A start model chosen by hand sets the patch size to the one it learned from
        (as "Train for this image" and the command line do); blind-spot training keeps
        the dock's, as it loses more on large patches."""
        if not self.blind_spot:
            self.patch_spin.setValue(self._start_model_patch_size())

    def _start_model_patch_size(self) -> int:
        """The patch edge the start model learned from (smaller patches cost the default
        up to 3 dB when fine-tuned; :func:`~napari_pinned.training.data.fine_tune_patch_size`);
        the dock's setting for a new network or a file that does not say.  Reads a
        shipped model's file (2 MB)."""
        from napari_pinned.nn.resolve import load_model
        from napari_pinned.training.data import fine_tune_patch_size

        init = self.start_model()
        if init is None:
            return self.patch_spin.value()
        if isinstance(init, str):
            init = call_or_notify(load_model, init, device="cpu", context="Train")
        metadata = getattr(init, "metadata", None)
        if not isinstance(metadata, dict):
            return self.patch_spin.value()
        return fine_tune_patch_size(metadata, self.patch_spin.value())

    # -- running ----------------------------------------------------------------------------
    def start(self) -> bool:
        """Start training with the current settings; returns whether a run started.

        Problems with the layers or the settings are reported at once as notifications;
        problems the core finds in the data (an image too small for the patch size...)
        arrive as a notification from the worker, and the run ends without a model.
        """
        if self.is_running:
            notify_warning("Train: a training run is already in progress")
            return False
        data = self.data_panel.training_data()
        if data is None:
            return False
        config = call_or_notify(self.train_config, context="Train")
        if config is None:
            return False
        self._begin(config, *data)
        return True

    def _begin(
        self, config: TrainConfig, clean: list[np.ndarray], noisy: list[np.ndarray] | None
    ) -> None:
        from napari_pinned._util.devices import resolve_device

        self._handle = RunHandle()
        self._failed = False
        self._last_progress = None
        self.loss_plot.clear()
        threads = config.num_threads
        suffix = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
        device = self.device_combo.currentText()
        self.device_label.setText(f"Device: {describe_device(resolve_device(device))}{suffix}")
        self.status_label.setText(f"Starting: {config.steps} steps…")
        started = self._runner.start(
            train_steps,
            self._handle,
            config,
            clean,
            noisy,
            self.seed_spin.value(),
            device,
            None if config.init_model is not None else self.start_model(),
            description="Training PINNED",
            on_record=self._on_record,
            on_progress=self._on_progress,
            on_finish=self._on_finish,
            stop=self._handle.stop,
            on_shutdown=self._on_shutdown,
        )
        self._set_running(started)

    def stop(self) -> None:
        """End the run after the step in progress; the best model so far is kept."""
        if not self.is_running:
            return
        self._runner.cancel()  # the handle's stop: the run ends after this step
        self.stop_button.setEnabled(False)
        self.status_label.setText(self.status_label.text() + " — stopping after this step…")

    def _on_record(self, progress: TrainProgress) -> None:
        # Every step, for the curves; steps come in batches and the plot repaints once
        # per batch (JobRunner).
        self._last_progress = progress
        self.loss_plot.add(progress)

    def _on_progress(self, progress: TrainProgress) -> tuple[int, int]:
        # Throttled by the runner: the curves take the steps recorded since the last one.
        self.loss_plot.refresh()
        self.status_label.setText(progress_text(progress))
        return progress.step, progress.total_steps

    def _take_run(self) -> TrainingRun | None:
        handle, self._handle = self._handle, None
        return None if handle is None else handle.run

    def _on_finish(self, outcome: Outcome, _best: ModelBundle | None) -> None:
        # The run, not the job's result: a failed run may still have a best model.
        run = self._take_run()
        self._failed = outcome == "failed"
        name = None if run is None else self._keep_result(run)
        self.loss_plot.refresh()  # a failed run's last steps came without a progress update
        if run is None and self._failed:
            self.status_label.setText("Training could not start; see the notification.")
        self._set_running(False)
        self.training_finished.emit(name)

    def _keep_result(self, run: TrainingRun) -> str | None:
        """Put the run's best model in the registry, if it has one worth keeping;
        returns its name."""
        last = self._last_progress
        validated = last is not None and last.best_val_psnr is not None
        if run.step == 0 or (self._failed and not validated):
            if not self._failed:
                self.status_label.setText("Stopped before the first step; no model.")
            return None
        bundle = run.result()
        name = self._registry.add_trained(bundle)
        self.last_bundle, self.last_model_name = bundle, name
        val = bundle.metadata.get("val_psnr")
        # The stop request, not the last record: a stop between two steps ends the run
        # without another record, and the run would read as finished.
        how = "stopped" if run.stop_requested else "finished"
        if self._failed:
            how = "failed; kept the best model so far"
            notify_warning(f"Train: kept the best model before the failure as {name!r}")
        else:
            notify_info(f"Train: model {name!r} is ready in the Denoise dock")
        val_text = "" if val is None else f", best validation PSNR {val:.2f} dB"
        self.status_label.setText(
            f"Training {how} after {run.step} steps{val_text}. Added to the models as {name!r}."
        )
        return name

    # -- saving -----------------------------------------------------------------------------
    def save_model(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the last trained model to ``path`` (asks with a file dialog when None).

        Returns the written path, or None if nothing was written.
        """
        if self.last_bundle is None:
            notify_error("Train: no trained model to save yet; train one first")
            return None
        return save_model_file(self, self.last_bundle, self.last_model_name, path)

    def export_package(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the last trained model as a BioImage Model Zoo package (asks with a file
        dialog when ``path`` is None); returns the package, or None if nothing was written.
        """
        if self.last_bundle is None:
            notify_error("Export: no trained model to export yet; train one first")
            return None
        return export_package_file(self, self.last_bundle, self.last_model_name, path)

    # -- closing ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop a run in progress and wait for its thread (the dock or viewer is closing).

        The best model so far is still added to the registry when the thread ended.
        """
        self._runner.shutdown()

    def _on_shutdown(self, ended: bool) -> None:
        run = self._take_run()
        # A thread still running owns the run's weights: only a finished one is kept.
        if ended and run is not None and run.step > 0:
            self._registry.add_trained(run.result())

    def closeEvent(self, event) -> None:
        self.shutdown()
        if not self._closed:
            self._closed = True
            self._layer_choices.disconnect()
            self.model_panel.disconnect_registry()
            self._viewer.events.theme.disconnect(self._follow_theme)
        super().closeEvent(event)
