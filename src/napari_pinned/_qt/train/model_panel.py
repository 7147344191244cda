"""The Train dock's "Model" group: architecture and size, or the model to start from.

A new network takes its architecture, width and depth from here; fine-tuning (a model
chosen under "Start from": the shipped ones and this session's) keeps the starting
model's own architecture, so those controls are disabled then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QWidget

from napari_pinned._qt.shared.common import int_spin_box
from napari_pinned._qt.shared.model_registry import get_registry
from napari_pinned._qt.shared.sections import collapsed_form

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle
    from napari_pinned.settings import ModelConfig

__all__ = ["NO_INIT_MODEL", "TrainModelPanel"]

#: First entry of the "start from" combo: train from random weights.
NO_INIT_MODEL = "none (new model)"
_ARCHITECTURES = ("unet", "paper")


class TrainModelPanel(QGroupBox):
    """ "Start from", and the architecture, width and depth of a new network (in a
    collapsed section).

    Parameters
    ----------
    defaults : ModelConfig
        The core's default network (initial values).
    """

    def __init__(self, defaults: ModelConfig, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self._registry = get_registry()
        form = QFormLayout(self)
        self.init_model = QComboBox()
        form.addRow("Start from", self.init_model)
        # Most runs fine-tune a model or train the default network: its shape waits,
        # collapsed, below.
        self.network_section, network = collapsed_form("New network")
        form.addRow(self.network_section)
        self.architecture = QComboBox()
        self.architecture.addItems(_ARCHITECTURES)
        self.architecture.setCurrentText(defaults.architecture)
        self.architecture.currentTextChanged.connect(self._on_architecture)
        self.width_spin = int_spin_box(1, 256, defaults.width)
        self.depth_spin = int_spin_box(1, 6, defaults.depth)
        network.addRow("Architecture", self.architecture)
        network.addRow("Width", self.width_spin)
        network.addRow("Depth", self.depth_spin)
        self.init_model.currentIndexChanged.connect(self._on_init_model)
        self._registry.changed.connect(self._on_registry_changed)
        self.refresh_init_models()

    def disconnect_registry(self) -> None:
        """Stop following the registry (the dock is closing)."""
        self._registry.changed.disconnect(self._on_registry_changed)

    def _on_architecture(self, name: str) -> None:
        from napari_pinned.settings import ModelConfig

        preset = ModelConfig.preset(name)
        self.width_spin.setValue(preset.width)
        self.depth_spin.setValue(preset.depth)

    def _on_init_model(self, _index: int = 0) -> None:
        # Fine-tuning keeps the starting model's own architecture.
        fresh = self.init_model.currentText() in ("", NO_INIT_MODEL)
        for control in (self.architecture, self.width_spin, self.depth_spin):
            control.setEnabled(fresh)

    def _on_registry_changed(self) -> None:
        try:
            self.refresh_init_models()
        except RuntimeError:
            # Our Qt side was deleted with the viewer's window: stop listening.
            self._registry.changed.disconnect(self._on_registry_changed)

    def refresh_init_models(self) -> None:
        """List the trainable models of the registry, keeping the current choice."""
        current = self.init_model.currentText()
        self.init_model.blockSignals(True)
        self.init_model.clear()
        self.init_model.addItems([NO_INIT_MODEL, *self._registry.trainable_names()])
        index = self.init_model.findText(current)
        self.init_model.setCurrentIndex(max(index, 0))
        self.init_model.blockSignals(False)
        self._on_init_model()

    def start_model(self) -> str | ModelBundle | None:
        """The "start from" model: a shipped model's name, a model of this session (in
        memory), or None for a new network."""
        name = self.init_model.currentText()
        return None if name in ("", NO_INIT_MODEL) else self._registry.model_source(name)

    def model_config(self, **settings: Any) -> ModelConfig:
        """The new network's configuration, with ``settings`` (normalisation...) added."""
        from napari_pinned.settings import ModelConfig

        return ModelConfig.preset(
            self.architecture.currentText(),
            width=self.width_spin.value(),
            depth=self.depth_spin.value(),
            **settings,
        )
