"""The Denoise dock's options: strength, lattice guard, orientations, the uncertainty map,
tiling and device.

Their initial values are the core's defaults (:class:`~napari_pinned.settings.FrameOptions`,
those of :func:`~napari_pinned.denoising.denoiser.denoise`), so the dock and the API tile alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QObject
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QWidget

from napari_pinned._qt.shared.common import DEVICES, int_spin_box, show_device
from napari_pinned._qt.shared.sections import collapsed_form

if TYPE_CHECKING:
    from napari_pinned.settings import FrameOptions

__all__ = ["DenoiseOptions"]


class DenoiseOptions(QObject):
    """The option controls (the dock places them with :meth:`add_rows`)."""

    def __init__(self, parent: QWidget) -> None:
        from napari_pinned.settings import MIN_TILE, ORIENTATION_COUNTS, FrameOptions

        super().__init__(parent)
        defaults = FrameOptions()
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.0, 5.0)
        self.strength_spin.setSingleStep(0.1)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setValue(defaults.strength)
        self.strength_spin.setPrefix("× ")
        self.strength_spin.setToolTip(
            "Factor on the estimated noise level given to a noise-aware model: below 1 "
            "denoises less (keeps more of the input), above 1 more; 0 returns the input "
            "with hot and dead pixels repaired"
        )
        self.keep_lattice_box = QCheckBox("Keep lattice reflections")
        self.keep_lattice_box.setChecked(defaults.keep_lattice)
        self.keep_lattice_box.setToolTip(
            "Give back what the network took from the input's strong Bragg reflections "
            "(ten times above the noise floor, hence signal): no sublattice is erased"
        )
        self.orientations_combo = QComboBox()
        for count in ORIENTATION_COUNTS:
            label = {1: "1 (fastest)", max(ORIENTATION_COUNTS): f"{count} (best)"}.get(
                count, str(count)
            )
            self.orientations_combo.addItem(label, count)
        self.orientations_combo.setCurrentIndex(ORIENTATION_COUNTS.index(defaults.orientations))
        self.orientations_combo.setToolTip(
            "Average the network over this many turned and mirrored copies of the image: "
            "a better estimate of the same result, at about that many times the time"
        )
        # Off by default: the map needs the orientations' spread (ticking it picks the
        # best, 8, when 1 is chosen), about 8 times a plain denoise (uncertainty_layer).
        self.uncertainty_box = QCheckBox("Uncertainty map")
        self.uncertainty_box.setChecked(False)
        self.uncertainty_box.setToolTip(
            "Also add each output pixel's standard deviation as a layer (true values lie "
            "within ±2σ for about 95 % of pixels with the default model): built on the "
            "spread of the orientations, so ticking it chooses 8 orientations (about 8 "
            "times the time) if 1 is chosen"
        )
        self.uncertainty_box.toggled.connect(self._on_uncertainty)
        self.tile_spin = int_spin_box(MIN_TILE, 8192, defaults.tile, 32)
        # 0 = the core's default (None): the model's minimum halo for exact tiling.
        self.overlap_spin = int_spin_box(0, 1024, defaults.overlap or 0, 8)
        self.overlap_spin.setSpecialValueText("auto (the model's minimum)")
        self.overlap_spin.setToolTip(
            "Halo around every tile; any tile size gives the whole-image result when it is "
            "at least the model's minimum (half its receptive field)"
        )
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.currentTextChanged.connect(self.device)
        self.device_label = QLabel()
        # Tiling changes the memory used, not the result (any tile size with the auto
        # overlap tiles exactly): rarely changed, so collapsed.
        self.advanced_section, advanced = collapsed_form("Tiling")
        advanced.addRow("Tile size", self.tile_spin)
        advanced.addRow("Overlap", self.overlap_spin)

    def add_rows(self, form: QFormLayout) -> None:
        """Strength, lattice guard, orientations, device and the (collapsed) tile size and
        overlap, as rows of ``form``."""
        form.addRow("Strength", self.strength_spin)
        form.addRow(self.keep_lattice_box)
        form.addRow("Orientations", self.orientations_combo)
        form.addRow(self.uncertainty_box)
        form.addRow("Device", self.device_combo)
        form.addRow(self.device_label)
        form.addRow(self.advanced_section)

    def _on_uncertainty(self, checked: bool) -> None:
        """The map is built on the orientations' spread: with one, take the best."""
        if checked and self.orientations_combo.currentData() == 1:
            self.orientations_combo.setCurrentIndex(self.orientations_combo.count() - 1)

    @property
    def uncertainty(self) -> bool:
        """Whether the run adds the uncertainty map."""
        return self.uncertainty_box.isChecked()

    def device(self, _text: str = "") -> str | None:
        """The chosen device, shown in the label; None when it is not available."""
        device = show_device(self.device_combo.currentText(), self.device_label)
        return None if device is None else str(device)

    def settings(self, device: str) -> FrameOptions:
        """How the core denoises each frame with these options, on ``device``."""
        from napari_pinned.settings import FrameOptions

        return FrameOptions(
            tile=self.tile_spin.value(),
            overlap=self.overlap_spin.value() or None,
            device=device,
            strength=self.strength_spin.value(),
            keep_lattice=self.keep_lattice_box.isChecked(),
            orientations=int(self.orientations_combo.currentData()),
        )
