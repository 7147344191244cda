"""The Train dock's "Training" group: steps and device in view, the rest collapsed.

Batch size, patch size, learning rate, the paper's loss weights (λ) and the seed start at
the core's defaults (:class:`~napari_pinned.training.run.TrainConfig`,
:class:`~napari_pinned.nn.losses.LossWeights`), which suit most runs; they wait in a
collapsed "Advanced" section.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QWidget

from napari_pinned._qt.shared.common import DEVICES, float_spin_box, int_spin_box
from napari_pinned._qt.shared.sections import collapsed_form

if TYPE_CHECKING:
    from napari_pinned.settings import TrainConfig

__all__ = ["WEIGHT_LABELS", "TrainSettingsPanel"]

#: The loss weights' names in the paper's notation (``LossWeights`` field → label).
WEIGHT_LABELS = {"tv": "λ_TV", "sf": "λ_SF", "brightness": "λ_B", "contrast": "λ_C"}


class TrainSettingsPanel(QGroupBox):
    """Steps, device and (collapsed) batch, patch, learning rate, λ's and seed.

    Parameters
    ----------
    defaults : TrainConfig
        Where the controls start.
    weights : dict of str to float
        Starting loss weights (``LossWeights().to_dict()``).
    on_device_changed : callable
        Called with the device choice when it changes.
    """

    def __init__(
        self,
        defaults: TrainConfig,
        weights: dict[str, float],
        on_device_changed: Callable[[str], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Training", parent)
        form = QFormLayout(self)
        self.steps_spin = int_spin_box(1, 1_000_000, defaults.steps, 100)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.currentTextChanged.connect(on_device_changed)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Device", self.device_combo)
        self.advanced_section, advanced = collapsed_form()
        form.addRow(self.advanced_section)
        self.batch_spin = int_spin_box(1, 256, defaults.batch_size)
        self.patch_spin = int_spin_box(8, 1024, defaults.patch_size, 8)
        self.lr_spin = float_spin_box(1e-6, 1.0, defaults.learning_rate, 6, 1e-4)
        advanced.addRow("Batch size", self.batch_spin)
        advanced.addRow("Patch size", self.patch_spin)
        advanced.addRow("Learning rate", self.lr_spin)
        self.weight_spins: dict[str, QDoubleSpinBox] = {}
        for name, label in WEIGHT_LABELS.items():
            spin = float_spin_box(0.0, 100.0, weights[name], 4, 0.01)
            self.weight_spins[name] = spin
            advanced.addRow(label, spin)
        self.seed_spin = int_spin_box(0, 2**31 - 1, 0)
        advanced.addRow("Seed", self.seed_spin)

    def config_fields(self) -> dict[str, Any]:
        """The :class:`~napari_pinned.training.run.TrainConfig` fields this group sets."""
        from napari_pinned.settings import LossWeights

        weights = {name: spin.value() for name, spin in self.weight_spins.items()}
        return {
            "loss_weights": LossWeights(**weights),
            "steps": self.steps_spin.value(),
            "batch_size": self.batch_spin.value(),
            "patch_size": self.patch_spin.value(),
            "learning_rate": self.lr_spin.value(),
        }
