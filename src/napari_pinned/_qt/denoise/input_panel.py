"""The Denoise dock's "Denoise" group: input layer, model, noise readout, options, the
line saying which model runs on which layer, and the Denoise/Cancel buttons with the
job's status line.

The panel only holds the controls; the dock connects the buttons and runs the job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magicgui.widgets import ComboBox
from qtpy.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QWidget

from napari_pinned._qt.denoise.model_picker import ModelPicker
from napari_pinned._qt.denoise.noise_readout import NoiseReadout
from napari_pinned._qt.denoise.options import DenoiseOptions

__all__ = ["InputPanel"]


class InputPanel(QGroupBox):
    """Input layer, model picker, noise readout, options and run buttons.

    Parameters
    ----------
    image_choices : callable
        Choices of the input combo (greyscale Image layers).
    dialogs : QWidget
        Parent of the model picker's file and trust dialogs (the dock).
    """

    def __init__(
        self,
        image_choices: Callable[..., list[tuple[str, Any]]],
        dialogs: QWidget,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Denoise", parent)
        self.input_layer = ComboBox(choices=image_choices)
        self.model_picker = ModelPicker(dialogs)
        self.noise_label = NoiseReadout()
        self.options = DenoiseOptions(dialogs)
        # Which model runs on which layer (model_picker.plan_text), above the button.
        self.run_label = QLabel("")
        self.run_label.setWordWrap(True)
        self.denoise_button = QPushButton("Denoise")
        self.cancel_button = QPushButton("Cancel")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.denoise_button)
        buttons.addWidget(self.cancel_button)
        form = QFormLayout(self)
        form.addRow("Input layer", self.input_layer.native)
        form.addRow("Model", self.model_picker.model_combo)
        form.addRow(self.model_picker.model_label)
        form.addRow(self.noise_label)
        self.options.add_rows(form)
        form.addRow(self.run_label)
        form.addRow(buttons)
        form.addRow(self.status_label)

    def set_running(self, running: bool) -> None:
        """Denoise enabled while idle, Cancel while a job runs."""
        self.denoise_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
