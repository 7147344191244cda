""" "Adapt to this image": fine-tune the default model on the user's own noisy data.

Runs :func:`napari_pinned.training.adapt.adapt` (blind-spot fine-tuning, no clean image) in a
worker with progress and Stop; Stop keeps the best model so far.  The result joins the
session's model list as ``"adapted to <layer>"``, made for that layer, and
:attr:`AdaptPanel.adapted` tells the Denoise dock to select it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QWidget

from napari_pinned._qt.shared.common import int_spin_box, notify_error, notify_info
from napari_pinned._qt.shared.job_runner import JobRunner, Outcome
from napari_pinned._qt.shared.model_registry import get_registry
from napari_pinned._qt.shared.train_run import RunHandle, adapt_steps

if TYPE_CHECKING:
    from napari.layers import Image

    from napari_pinned.nn.network import ModelBundle
    from napari_pinned.training.run import TrainProgress

__all__ = ["MAX_ADAPT_FRAMES", "AdaptPanel", "adapted_name"]

#: Frames of a stack used for adaptation (the first ones): more add time, not much else.
MAX_ADAPT_FRAMES = 8


def adapted_name(layer_name: str) -> str:
    """Model-list name of a model adapted to ``layer_name``."""
    return f"adapted to {layer_name}"


class AdaptPanel(QGroupBox):
    """Button, steps and status of an adaptation run.

    Parameters
    ----------
    source_layer, start_model, device : callables
        Give, when the button is pressed, the Image layer to adapt to, the model to
        start from (what ``load_model`` accepts) and the device name.
    """

    #: Emitted with the registry name of a newly adapted model.
    adapted = Signal(str)

    def __init__(self, source_layer, start_model, device, parent: QWidget | None = None):
        super().__init__("Adapt to this image", parent)
        self._source_layer = source_layer
        self._start_model = start_model
        self._device = device
        self._handle: RunHandle | None = None
        self._layer_name = ""
        self._runner = JobRunner(self, "Adapt")
        form = QFormLayout(self)
        self.steps_spin = int_spin_box(20, 20000, _default_steps(), 50)
        self.steps_spin.setToolTip(
            "Blind-spot fine-tuning steps on the input layer itself (no clean image "
            "needed); the default takes about two minutes on two CPU cores"
        )
        self.adapt_button = QPushButton("Adapt model to this image")
        self.adapt_button.setToolTip(
            "Fine-tune the selected noise-aware model on the input layer's own noise. "
            "The fine-tuned model is kept only if its estimated error on a held-out "
            "strip of the image is clearly below the starting model's."
        )
        self.stop_button = QPushButton("Stop")
        self.adapt_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.adapt_button)
        buttons.addWidget(self.stop_button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        form.addRow("Steps", self.steps_spin)
        form.addRow(buttons)
        form.addRow(self.status_label)
        self._set_running(False)

    @property
    def running(self) -> bool:
        """True while an adaptation runs."""
        return self._runner.running

    def _set_running(self, running: bool) -> None:
        self.adapt_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def start(self) -> bool:
        """Start adapting to the chosen layer; returns whether a job started."""
        layer: Image | None = self._source_layer()
        if layer is None:
            notify_error("Adapt: choose the Image layer to adapt to")
            return False
        device = self._device()
        if device is None:
            notify_error("Adapt: the chosen device is not available")
            return False
        data = np.asarray(layer.data)
        if data.ndim == 3:
            data = data[:MAX_ADAPT_FRAMES]
        self._handle = RunHandle()
        self._layer_name = layer.name
        started = self._runner.start(
            adapt_steps,
            self._handle,
            data,
            self._start_model(),
            self.steps_spin.value(),
            device,
            description=f"Adapting to {layer.name}",
            on_progress=self._on_progress,
            on_finish=self._on_finish,
            stop=self._handle.stop,
        )
        if started:
            self.status_label.setText(f"Adapting to {layer.name!r}…")
            self._set_running(True)
        return started

    def stop(self) -> None:
        """End after the step in progress, keeping the best model so far."""
        self._runner.cancel()
        self.stop_button.setEnabled(False)
        self.status_label.setText("Stopping; the best model so far is kept…")

    def shutdown(self) -> None:
        """Stop and wait for the worker (the dock is closing)."""
        self._runner.shutdown()

    def _on_progress(self, progress: TrainProgress) -> tuple[int, int]:
        best = progress.best_val_psnr
        score = "" if best is None else f", best hidden-pixel score {best:.2f} dB"
        self.status_label.setText(
            f"Step {progress.step}/{progress.total_steps}{score}, {progress.eta:.0f} s left"
        )
        return progress.step, progress.total_steps

    def _on_finish(self, outcome: Outcome, bundle: ModelBundle | None) -> None:
        self._set_running(False)
        if outcome in ("cancelled", "failed") or bundle is None:
            self.status_label.setText(
                "Adaptation failed; see the notification."
                if outcome == "failed"
                else "Adaptation cancelled; no model was added."
            )
            return
        from napari_pinned.training.adapt import outcome

        bundle.metadata["name"] = adapted_name(self._layer_name)
        # Made for this layer: the Denoise dock does not carry it over to others unsaid.
        name = get_registry().add_trained(
            bundle, name=adapted_name(self._layer_name), made_for=(self._layer_name,)
        )
        note = outcome(bundle.metadata)
        self.status_label.setText(f"Added {name!r} ({note}).")
        notify_info(f"Adapt: added {name!r} to the model list ({note})")
        self.adapted.emit(name)


def _default_steps() -> int:
    from napari_pinned.settings import AdaptSettings

    return AdaptSettings().steps
