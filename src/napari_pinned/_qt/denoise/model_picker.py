"""The Denoise dock's model choice: the session's models, a file loader and a description.

The combo lists the session's model registry (the shipped default first, then trained,
adapted and loaded models) and a last "Load model file…" entry.  It starts on the
shipped default model, the one for real STEM data; a model trained, adapted or loaded
later is selected when it appears, since it is the one the user wants next (shipped
models appearing, e.g. on the first fill, are not "new": the CDN model must not win).
:func:`plan_text` says which model will run on which layer.
"""

from __future__ import annotations

import os
from typing import Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QLabel, QWidget

from napari_pinned._qt.shared.common import call_or_notify, notify_error
from napari_pinned._qt.shared.model_registry import DEFAULT_NAME, get_registry

__all__ = ["LOAD_MODEL_ITEM", "NO_MODEL_ITEM", "ModelPicker", "plan_text"]

#: Last entry of the model combo: pick a model file.
LOAD_MODEL_ITEM = "Load model file…"
#: Shown in the model combo while no model is available.
NO_MODEL_ITEM = "(no model yet: train one in the Train dock)"


def _layers(names: tuple[str, ...]) -> str:
    return ", ".join(repr(n) for n in names)


def plan_text(
    model: str,
    layer: str | None,
    made_for: tuple[str, ...] = (),
    replaced: tuple[str, tuple[str, ...]] | None = None,
) -> str:
    """One line saying which model Denoise will run on which layer.

    ``made_for`` are the layers ``model`` was made for (empty: any image); ``replaced``
    is the model the dock just went back from, and its layers, when the input changed.
    """
    if not model:
        return ""
    if layer is None:
        return f"Denoise runs {model!r}: choose an input layer."
    text = f"Denoise runs {model!r} on {layer!r}"
    if made_for and layer not in made_for:
        text += f", although it was made for {_layers(made_for)}"
    text += "."
    if replaced is not None:
        other, layers = replaced
        text += (
            f" {other!r} was made for {_layers(layers)}, not this layer: pick it again to "
            "use it here anyway."
        )
    return text


class ModelPicker(QObject):
    """The model combo and its description label (the dock places both).

    Parameters
    ----------
    parent : QWidget
        The dock: parent of the file and trust dialogs.
    """

    #: Emitted with the selected model's name ("" when none) whenever it may have changed.
    selected = Signal(str)

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._parent = parent
        self._registry = get_registry()
        self._name = ""
        self._known: list[str] | None = None  # None: the combo was never filled
        self.model_combo = QComboBox()
        self.model_combo.activated.connect(self._on_activated)
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self._registry.changed.connect(self._on_registry_changed)

    @property
    def name(self) -> str:
        """Name of the selected model ("" when none is available)."""
        return self._name

    @property
    def available(self) -> bool:
        """True when the selected model is in the registry."""
        return bool(self._name) and self._name in self._registry

    def disconnect_registry(self) -> None:
        """Stop following the registry (the dock is closing)."""
        self._registry.changed.disconnect(self._on_registry_changed)

    def _on_registry_changed(self) -> None:
        try:
            self.refresh()
        except RuntimeError:
            # Our Qt side was deleted with the viewer's window: stop listening.
            self._registry.changed.disconnect(self._on_registry_changed)

    def refresh(self) -> None:
        """Fill the combo from the registry, keeping (or newly choosing) the selection."""
        registry = self._registry
        names = registry.names()
        known, self._known = self._known, names
        # A model that just appeared (trained, adapted or loaded) is the one the user
        # wants next; shipped models are not news (on the first fill all of them are).
        added = [n for n in names if n not in (known or ()) and registry.entry(n).shipped is None]
        if known is not None and added:
            self._name = added[-1]
        elif known is None or self._name not in names:
            self._name = DEFAULT_NAME if DEFAULT_NAME in names else (names[0] if names else "")
        combo = self.model_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names or [NO_MODEL_ITEM])
        combo.addItem(LOAD_MODEL_ITEM)
        combo.setCurrentIndex(names.index(self._name) if self._name else 0)
        combo.blockSignals(False)
        self._describe()

    def _describe(self) -> None:
        known = self.available
        self.model_label.setText(self._registry.describe(self._name) if known else "")
        self.selected.emit(self._name)

    def _on_activated(self, index: int) -> None:
        text = self.model_combo.itemText(index)
        if text == LOAD_MODEL_ITEM:
            path, _ = QFileDialog.getOpenFileName(
                self._parent,
                "Load PINNED model",
                "",
                "Models (*.pt *.zip *.onnx);;PINNED model (*.pt);;"
                "BioImage Model Zoo package (*.zip);;ONNX model (*.onnx);;All files (*)",
            )
            if not path or self.load_file(path) is None:
                self.refresh()  # back to the previous choice
        elif text != NO_MODEL_ITEM:
            self._name = text
            self._describe()

    def select(self, name: str) -> None:
        """Select a registry model by name."""
        if name not in self._registry:
            raise KeyError(f"no model called {name!r} in this session")
        self._name = name
        self.refresh()

    def load_file(self, path: str | os.PathLike, *, trust: bool | None = None) -> str | None:
        """Load a model file, ONNX file or BioImage Model Zoo package into the registry
        and select it; None (and a notification) if it is not a usable model.

        A package from another tool whose weights are code (torchscript,
        pytorch_state_dict) is loaded only when ``trust`` is True; None asks the user.
        """
        from napari_pinned.nn.model_files import ModelFileError
        from napari_pinned.nn.packages import PackageNeedsTrust

        errors = (ModelFileError, OSError)
        add: Any = self._registry.add_file
        try:
            name = call_or_notify(add, path, trust=bool(trust), context="Load model", errors=errors)
        except PackageNeedsTrust as exc:
            if trust is None:
                trust = self._ask_trust(str(exc))
            if not trust:
                notify_error(f"Load model: {exc}")
                return None
            name = call_or_notify(add, path, trust=True, context="Load model", errors=errors)
        if name is not None:
            self.select(name)
        return name

    def _ask_trust(self, message: str) -> bool:
        """Ask whether to run code from a BioImage Model Zoo package."""
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(
            self._parent,
            "Run code from this package?",
            f"{message}\n\nRun it only if you trust where the package came from.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes
