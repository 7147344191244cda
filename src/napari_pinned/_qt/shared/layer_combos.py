"""Layer combos that keep their layer through a rename and show full layer names.

magicgui re-reads a combo's choices by item text: after a rename the chosen layer's
old name is gone, so it selects the first entry (in the Denoise dock that is often
"<input> denoised", and the next click denoised the output).  Layer names from
microscopes are long, and a dock is narrow: the combos elide them, so every item and
the combo itself carry the full name as a tooltip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox

from napari_pinned._qt.shared.common import ImageLayerChoices

if TYPE_CHECKING:
    from magicgui.widgets import ComboBox

__all__ = ["LayerCombos", "readable_names"]

#: Characters a layer combo asks room for; longer names elide, with a tooltip.
_MIN_NAME_CHARS = 16


def readable_names(combo: ComboBox) -> None:
    """Size ``combo`` for names of a few words and give it full-name tooltips.

    Adjusting to the longest name would widen the whole dock past the screen; a fixed
    minimum keeps the dock narrow, and the popup list and tooltips show whole names.
    """
    native: QComboBox = combo.native
    native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    native.setMinimumContentsLength(_MIN_NAME_CHARS)
    native.view().setTextElideMode(Qt.TextElideMode.ElideNone)
    native.currentTextChanged.connect(native.setToolTip)
    _set_tooltips(native)


def _set_tooltips(native: QComboBox) -> None:
    for index in range(native.count()):
        native.setItemData(index, native.itemText(index), Qt.ItemDataRole.ToolTipRole)
    native.setToolTip(native.currentText())
    # The popup is as wide as its longest name, even if the combo is narrower.
    view = native.view()
    view.setMinimumWidth(view.sizeHintForColumn(0) + 24)


class LayerCombos(ImageLayerChoices):
    """:class:`ImageLayerChoices` that keeps each combo's layer object through renames
    and keeps the full-name tooltips of :func:`readable_names` up to date."""

    def __init__(self, viewer: Any, combos: Any) -> None:
        super().__init__(viewer, combos)
        for combo in self._combos:
            readable_names(combo)

    def refresh(self, _event: Any = None) -> None:
        """Re-read the layer list into every combo, keeping the chosen layer object."""
        chosen = []
        for combo in self._combos:
            try:
                chosen.append(combo.value)
            except RuntimeError:  # the Qt side of a closed widget is gone
                chosen.append(None)
        super().refresh(_event)
        for combo, layer in zip(self._combos, chosen, strict=True):
            try:
                # By identity: the layer may have a new name, and two can share one.
                moved = layer is not None and combo.value is not layer
                if moved and any(data is layer for data in combo.choices):
                    combo.value = layer
                _set_tooltips(combo.native)
            except RuntimeError:
                continue
