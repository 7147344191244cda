"""Small Qt/napari helpers shared by the plugin's widgets.

Nothing here knows about STEM: it wires layer lists into combo boxes, sends messages
to napari's notification area and turns the core's ``ValueError`` into a notification
instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from napari.layers import Image, Layer

# The module, not its functions, is imported so that tests can monkeypatch
# ``napari.utils.notifications.show_error`` and see every message.
from napari.utils import notifications
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_pinned._util.units import angstrom_per

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import ComboBox

T = TypeVar("T")

__all__ = [
    "ImageLayerChoices",
    "add_or_update_image",
    "call_or_notify",
    "describe_error",
    "find_layer",
    "image_layer_choices",
    "is_greyscale",
    "layer_pixel_size",
    "notify_error",
    "notify_info",
    "notify_warning",
    "scrolling_layout",
]


def describe_error(exc: BaseException) -> str:
    """One line for an error shown to the user: an allocation failure says it ran out
    of memory (a bare ``MemoryError`` has no message), anything else its own message."""
    from napari_pinned._util.memory import out_of_memory_message

    message = out_of_memory_message(exc)
    if message is not None:
        return message
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def notify_error(message: str) -> None:
    """Show ``message`` as an error in napari's notification area."""
    notifications.show_error(message)


def notify_warning(message: str) -> None:
    """Show ``message`` as a warning in napari's notification area."""
    notifications.show_warning(message)


def notify_info(message: str) -> None:
    """Show ``message`` as information in napari's notification area."""
    notifications.show_info(message)


def call_or_notify(
    func: Callable[..., T],
    *args: Any,
    context: str = "",
    errors: tuple[type[BaseException], ...] = (ValueError, MemoryError),
    **kwargs: Any,
) -> T | None:
    """Call ``func`` and report bad-input errors as a notification.

    The core raises ``ValueError`` (and subclasses such as ``CIFError``) for input
    the user can fix, and a request too large for the machine raises ``MemoryError``;
    those become an error notification and ``None`` is returned.  Anything else is a
    bug and propagates, so napari shows its traceback.

    Parameters
    ----------
    func : callable
        Core function to call; it must not return ``None`` on success.
    *args, **kwargs
        Passed to ``func``.
    context : str, optional
        Prefix for the message, e.g. ``"Generate"`` gives ``"Generate: <error>"``.
    errors : tuple of exception types, optional
        Exceptions to report instead of raising.

    Returns
    -------
    object or None
        ``func``'s result, or ``None`` when it raised one of ``errors``.
    """
    try:
        return func(*args, **kwargs)
    except errors as exc:
        message = describe_error(exc)
        notify_error(f"{context}: {message}" if context else message)
        return None


def find_layer(viewer: napari.viewer.Viewer, name: str, kind: type[Layer] = Layer) -> Layer | None:
    """Return the layer called ``name`` if it is a ``kind``, else ``None``."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        if isinstance(layer, kind):
            return layer
    return None


def is_greyscale(layer: Layer) -> bool:
    """True for a single-scale, non-RGB Image layer, the only kind the core accepts."""
    return isinstance(layer, Image) and not layer.rgb and not layer.multiscale


def layer_pixel_size(layer: Layer) -> float | None:
    """Pixel size of a layer's last axis in Å, whichever reader or plugin made it.

    A length unit on the axis (Å, nm, pm, µm) converts the scale to Å.  Without one
    (napari's default "pixel" unit), a scale other than 1 is taken to be in Å, the
    unit this plugin writes; a scale of 1 means "not calibrated" and gives None.
    """
    scale = float(layer.scale[-1])
    units = [str(u) for u in getattr(layer, "units", ())]
    unit = units[-1] if units else "pixel"
    factor = angstrom_per(unit)
    if factor is not None:
        return scale * factor
    return None if scale == 1.0 else scale


def image_layer_choices(viewer: napari.viewer.Viewer) -> list[tuple[str, Image]]:
    """``(name, layer)`` pairs of the viewer's Image layers, top of the layer list first."""
    return [(layer.name, layer) for layer in reversed(viewer.layers) if isinstance(layer, Image)]


def add_or_update_image(
    viewer: napari.viewer.Viewer, data: np.ndarray, name: str, **kwargs: Any
) -> Image:
    """Replace the data of the Image layer ``name`` in place, or add it.

    Updating in place keeps the user's contrast, colormap and position in the layer
    list; only ``scale``, ``translate``, ``units`` and ``metadata`` from ``kwargs`` are
    applied to an existing layer because they describe the data, not its display.
    """
    layer = find_layer(viewer, name, Image)
    if layer is None:
        return viewer.add_image(data, name=name, **kwargs)
    layer.data = data
    for key in ("scale", "translate", "units", "metadata"):
        if key in kwargs:
            setattr(layer, key, kwargs[key])
    return layer


class ImageLayerChoices:
    """Keep combo boxes listing the viewer's Image layers up to date.

    magicgui only refreshes layer combos by itself once the widget is docked; this
    also covers undocked widgets (scripts, tests) and renamed layers.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Viewer whose layer list is followed.
    combos : iterable of magicgui ComboBox
        Combos to refresh; their ``choices`` should be :func:`image_layer_choices`.
    """

    def __init__(self, viewer: napari.viewer.Viewer, combos: Iterable[ComboBox]) -> None:
        self._viewer = viewer
        self._combos = list(combos)
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved):
            emitter.connect(self.refresh)
        events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)

    def _watch_name(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)

    def refresh(self, _event: Any = None) -> None:
        """Re-read the layer list into every combo, keeping the current choice."""
        for combo in self._combos:
            try:
                combo.reset_choices()
            except RuntimeError:
                # The Qt side of a closed widget is gone; nothing left to refresh.
                continue

    def disconnect(self, _destroyed: object = None) -> None:
        """Stop following the viewer (connect to the widget's ``destroyed`` signal)."""
        events = self._viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved):
            emitter.disconnect(self.refresh)
        events.inserted.disconnect(self._watch_name)
        for layer in self._viewer.layers:
            layer.events.name.disconnect(self.refresh)


#: Most a dock asks of the screen's height (px): its contents scroll beyond.
MAX_DOCK_HEIGHT = 900


class _VerticalScrollArea(QScrollArea):
    """A scroll area that scrolls up and down only: it is at least as wide as its
    contents' minimum, so a dock never shows a horizontal scroll bar."""

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        inner = self.widget()
        if inner is None:
            return hint
        bar = self.verticalScrollBar()
        # A style sheet can draw the bar wider than its size hint says.
        room = max(bar.sizeHint().width(), bar.width() if bar.isVisible() else 0)
        width = inner.minimumSizeHint().width() + room + 2 * self.frameWidth()
        return QSize(max(hint.width(), width), hint.height())


def scrolling_layout(dock: QWidget, footer: QWidget | None = None) -> QVBoxLayout:
    """The layout to fill ``dock`` with, inside a scroll area filling the dock.

    A dock taller than the screen would grow napari's window past it (Start/Stop and
    the plot off-screen); in a scroll area it asks for little height and scrolls.

    Parameters
    ----------
    dock : QWidget
        The dock to fill.
    footer : QWidget, optional
        Placed below the scroll area, outside it: what must stay in view however long
        the settings above are (the primary action, the status, a plot).

    Returns
    -------
    QVBoxLayout
        The layout of the scrolling contents.
    """
    inner = QWidget()
    layout = QVBoxLayout(inner)
    area = _VerticalScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(inner)
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area, 1)
    if footer is not None:
        # The scroll area's own margins, so that the footer lines up with the settings.
        footer.setContentsMargins(layout.contentsMargins())
        outer.addWidget(footer)
    return layout


#: Most a dock's contents ask of the screen's width (px): wider, a docked panel crowds
#: the canvas on a 1366-px laptop screen.
MAX_DOCK_WIDTH = 540


def compact_combo(combo: QComboBox, characters: int = 24) -> QComboBox:
    """Let ``combo`` be narrower than its longest choice (the list still shows it whole).

    A combo box asks for the width of its longest item, which makes a whole dock that
    wide; the current choice is also its tooltip, so a shortened one can be read.
    """
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)
    combo.view().setTextElideMode(Qt.TextElideMode.ElideNone)

    def show_choice(_index: int = 0) -> None:
        combo.setToolTip(combo.currentText())
        view = combo.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 2 * view.frameWidth() + 8)

    combo.currentIndexChanged.connect(show_choice)
    combo.model().rowsInserted.connect(lambda *_: show_choice())
    show_choice()
    return combo


def int_spin_box(low: int, high: int, value: int, step: int = 1) -> QSpinBox:
    """A QSpinBox with its range, step and value set."""
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def float_spin_box(
    low: float, high: float, value: float, decimals: int, step: float
) -> QDoubleSpinBox:
    """A QDoubleSpinBox with its decimals, range, step and value set."""
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    return box


#: Choices of the device combos; "auto" picks CUDA, then MPS, then the CPU.
DEVICES = ("auto", "cpu", "cuda", "mps")


def describe_device(device: Any) -> str:
    """A torch device for a label: ``"cpu"``, ``"mps"``, ``"cuda (NVIDIA H100 …)"``."""
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def show_device(choice: str, label: QLabel) -> Any | None:
    """Resolve a device choice, say on ``label`` what will run, and return the torch
    device (``None``, also said on the label, when it is not available here)."""
    from napari_pinned._util.devices import resolve_device

    try:
        device = resolve_device(choice)
    except ValueError:
        label.setText(f"Device: {choice} is not available on this machine")
        return None
    label.setText(f"Device: {describe_device(device)}")
    return device
