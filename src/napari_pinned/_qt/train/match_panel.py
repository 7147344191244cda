""" "Train for this image": synthetic training images sampled like the user's image.

The panel simulates random specimens of a chosen material at the pixel size of a chosen
image layer and adds them as a stack layer; the Train dock then fine-tunes the default
model on that stack (:meth:`~napari_pinned._qt.train.widget.TrainWidget.train_for_image`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QPushButton, QWidget

from napari_pinned._qt.shared.common import (
    add_or_update_image,
    call_or_notify,
    int_spin_box,
    layer_pixel_size,
    notify_error,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

__all__ = ["MatchPanel"]

_CONTEXT = "Train for this image"


class MatchPanel(QGroupBox):
    """Image, material and count of the synthetic images, and the button.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Receives the synthetic stack.
    image_choices : callable
        Choices of the image combo.
    on_click : callable
        What the button does (the dock simulates, then starts training).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        image_choices: Callable[..., list[tuple[str, Image]]],
        on_click: Callable[[], object],
        parent: QWidget | None = None,
    ) -> None:
        from napari_pinned.physics.materials import list_materials

        super().__init__(_CONTEXT, parent)
        self._viewer = viewer
        form = QFormLayout(self)
        self.match_layer = ComboBox(choices=image_choices, nullable=True, value=None)
        self.match_material = QComboBox()
        self.match_material.addItems([m.name for m in list_materials()])
        self.match_count = int_spin_box(1, 200, 12)
        self.match_button = QPushButton(_CONTEXT)
        self.match_button.setToolTip(
            "Simulate random specimens of the material at the image's pixel size, then "
            "fine-tune the default model on realistic recordings of them at any dose"
        )
        self.match_button.clicked.connect(on_click)
        form.addRow("Image", self.match_layer.native)
        form.addRow("Material", self.match_material)
        form.addRow("Synthetic images", self.match_count)
        form.addRow(self.match_button)

    def add_training_images(self, seed: int) -> Image | None:
        """Simulate the specimens and add them as ``"<material> like <layer>"``; None
        (after a notification) when the image is missing or has no pixel size."""
        from napari_pinned.physics.simulate import matched_specimens

        layer = self.match_layer.value
        if layer is None:
            notify_error(f"{_CONTEXT}: choose the image layer to train for")
            return None
        pixel_size = layer_pixel_size(layer)
        if pixel_size is None:
            notify_error(
                f"{_CONTEXT}: layer {layer.name!r} has no pixel size (a scale in "
                "Å, nm or pm); open it with its calibration or set the layer's scale"
            )
            return None
        material = self.match_material.currentText()
        # A dozen 256² simulations take well under a second: no worker needed.
        stack = call_or_notify(
            matched_specimens,
            material,
            pixel_size,
            self.match_count.value(),
            seed=seed,
            context=_CONTEXT,
        )
        if stack is None:
            return None
        return add_or_update_image(
            self._viewer,
            stack,
            f"{material} like {layer.name}",
            scale=(1.0, pixel_size, pixel_size),
            units=("pixel", "Å", "Å"),
            colormap="gray",
            metadata={"matched_to": layer.name, "material": material, "pixel_size": pixel_size},
        )
