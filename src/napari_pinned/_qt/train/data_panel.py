"""The Train dock's "Training data" group: layers, the kind of noise, and its ranges.

Six noise modes: noise drawn afresh per patch from clean layers (CDN, dose, both, or
realistic STEM recordings), the user's own paired noisy layers (also Noise2Noise), or
noisy layers alone (blind-spot).  The panel enables only the controls a mode uses and
gives the dock the arrays to train on, checked with the core's pairing rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Select
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QWidget,
)

from napari_pinned._qt.shared.common import compact_combo, float_spin_box, notify_error

if TYPE_CHECKING:
    import numpy as np
    from napari.layers import Image

__all__ = ["NOISE_MODES", "TrainDataPanel"]

#: Noise modes: noise drawn afresh per patch from clean layers, the user's own paired
#: noisy layers (also Noise2Noise: two noisy halves of a frame series), noisy layers
#: alone (blind-spot), or realistic STEM recordings at any dose (what the default model
#: learns from; a new model is then noise-aware).  Positions are kept for saved
#: settings and tests.
NOISE_MODES = (
    "synthesise CDN on the fly",
    "paired noisy layers",
    "synthesise dose noise on the fly",
    "synthesise CDN + dose on the fly",
    "noisy layers only (blind-spot, no clean)",
    "synthesise realistic STEM recordings (any dose)",
)
#: Noise mode → the core's ``noise_model`` for synthetic modes.
_SYNTHETIC = {
    NOISE_MODES[0]: "cdn",
    NOISE_MODES[2]: "dose",
    NOISE_MODES[3]: "mix",
    NOISE_MODES[5]: "stem",
}

#: The training dose is what the detector records per pixel (the core's ``dose_counts``),
#: not the beam dose per Å² that the Noise dock asks for; the label says which.
DOSE_LABEL = "Detected dose (e⁻/px)"

_BLIND_SPOT = NOISE_MODES[4]


class TrainDataPanel(QGroupBox):
    """Clean and noisy layer lists, noise mode, CDN levels and dose range.

    Parameters
    ----------
    image_choices : callable
        Choices of the layer lists (greyscale Image layers).
    levels, counts : (float, float)
        Initial CDN level and dose ranges (the core's defaults).
    """

    def __init__(
        self,
        image_choices: Callable[..., list[tuple[str, Image]]],
        levels: tuple[float, float],
        counts: tuple[float, float],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Training data", parent)
        form = QFormLayout(self)
        self.clean_layers = Select(choices=image_choices)
        self.noisy_layers = Select(choices=image_choices)
        for select in (self.clean_layers, self.noisy_layers):
            select.native.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
            select.native.setMaximumHeight(90)
        self.noise_mode = compact_combo(QComboBox())
        self.noise_mode.addItems(NOISE_MODES)
        self.noise_mode.currentIndexChanged.connect(self._on_noise_mode)
        self.level_low = float_spin_box(0.0, 5.0, levels[0], 2, 0.5)
        self.level_high = float_spin_box(0.0, 5.0, levels[1], 2, 0.5)
        levels_row = _range_row(self.level_low, self.level_high)
        self.counts_low = float_spin_box(0.01, 1e7, counts[0], 2, 1.0)
        self.counts_high = float_spin_box(0.01, 1e7, counts[1], 2, 10.0)
        counts_row = _range_row(self.counts_low, self.counts_high)
        for spin in (self.counts_low, self.counts_high):
            spin.setToolTip(
                "Detected electrons per pixel at the brightest intensity, drawn "
                "log-uniformly per patch.  Not the Noise dock's e⁻/Å²: detected "
                "e⁻/px = dose (e⁻/Å²) · pixel size² (Å²) · detector collection"
            )
        self.clean_layers.native.setToolTip(
            "Clean images (simulated), or for Noise2Noise one noisy half of a frame "
            "series (Frame series dock) with the other half as the noisy partner"
        )
        self.pairs_label = QLabel()
        self.pairs_label.setWordWrap(True)
        self.clean_layers.changed.connect(self._update_pairs_label)
        self.noisy_layers.changed.connect(self._update_pairs_label)
        form.addRow("Clean layers", self.clean_layers.native)
        form.addRow("Noise", self.noise_mode)
        form.addRow("CDN levels", levels_row)
        form.addRow(DOSE_LABEL, counts_row)
        form.addRow("Noisy layers", self.noisy_layers.native)
        form.addRow(self.pairs_label)
        self._on_noise_mode()

    def _on_noise_mode(self, _index: int = 0) -> None:
        model = _SYNTHETIC.get(self.noise_mode.currentText())
        self.noisy_layers.native.setEnabled(model is None)
        self.clean_layers.native.setEnabled(not self.blind_spot)
        for spin in (self.level_low, self.level_high):
            spin.setEnabled(model in ("cdn", "mix"))
        for spin in (self.counts_low, self.counts_high):
            spin.setEnabled(model in ("dose", "mix"))
        self._update_pairs_label()

    def _update_pairs_label(self, _value: Any = None) -> None:
        if not self.paired:
            self.pairs_label.setText("")
            return
        pairs = zip(self.clean_layers.value, self.noisy_layers.value, strict=False)
        lines = [f"{c.name} ↔ {n.name}" for c, n in pairs]
        self.pairs_label.setText("Pairs (in list order): " + ("; ".join(lines) or "none"))

    @property
    def paired(self) -> bool:
        """True when training on the user's own clean/noisy layer pairs."""
        return self.noise_mode.currentText() == NOISE_MODES[1]

    @property
    def blind_spot(self) -> bool:
        """True when learning from noisy layers alone (self-supervised)."""
        return self.noise_mode.currentText() == _BLIND_SPOT

    @property
    def draws_noise(self) -> bool:
        """True when the mode synthesises noise on the fly (not paired, not blind-spot)."""
        return self.noise_mode.currentText() in _SYNTHETIC

    @property
    def noise_model(self) -> str:
        """The core's ``noise_model`` for the mode ("cdn" for modes with given noise)."""
        return _SYNTHETIC.get(self.noise_mode.currentText(), "cdn")

    def training_data(self) -> tuple[list[np.ndarray], list[np.ndarray] | None] | None:
        """Clean (and paired noisy) arrays, or None after notifying what is wrong."""
        from napari_pinned.training.data import check_pairs

        if self.blind_spot:
            noisy_layers = list(self.noisy_layers.value)
            if not noisy_layers:
                notify_error("Train: select at least one noisy Image layer to learn from")
                return None
            return [layer.data for layer in noisy_layers], None
        clean_layers = list(self.clean_layers.value)
        if not clean_layers:
            notify_error("Train: select at least one clean Image layer")
            return None
        clean = [layer.data for layer in clean_layers]
        if not self.paired:
            return clean, None
        noisy_layers = list(self.noisy_layers.value)
        for c, n in zip(clean_layers, noisy_layers, strict=False):
            if c is n:
                notify_error(f"Train: layer {c.name!r} is selected as both clean and noisy")
                return None
        if len(noisy_layers) != len(clean_layers):
            # Said in the dock's terms: what to select, not what a file list lacks.
            notify_error(
                f"Train: {len(clean_layers)} clean layer(s) but {len(noisy_layers)} noisy "
                "layer(s) selected; select exactly one noisy layer per clean layer (paired "
                "in list order)"
            )
            return None
        # The core's pairing rule (paired in list order), with the layers' names.
        try:
            check_pairs(
                [tuple(layer.data.shape) for layer in clean_layers],
                [tuple(layer.data.shape) for layer in noisy_layers],
                [f"clean layer {layer.name!r}" for layer in clean_layers],
                [f"layer {layer.name!r}" for layer in noisy_layers],
                kinds=("clean layer", "noisy layer"),
            )
        except ValueError as exc:
            notify_error(f"Train: {exc}")
            return None
        return clean, [layer.data for layer in noisy_layers]


def _range_row(low: QWidget, high: QWidget) -> QHBoxLayout:
    """ "low to high" on one form row."""
    row = QHBoxLayout()
    row.addWidget(low)
    row.addWidget(QLabel("to"))
    row.addWidget(high)
    return row
