"""Writing a trained model from a dock: a model file, or a BioImage Model Zoo package.

Both ask for a path with a file dialog when none is given, add the usual suffix, and
report the outcome (or the reason nothing was written) as one notification.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QFileDialog, QWidget

from napari_pinned._qt.shared.common import call_or_notify, notify_info

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = ["export_package_file", "save_model_file"]


def _target(
    parent: QWidget, path: str | os.PathLike | None, title: str, default: str, kinds: str
) -> Path | None:
    if path is None:
        chosen, _ = QFileDialog.getSaveFileName(parent, title, default, kinds)
        if not chosen:
            return None
        path = chosen
    return Path(path)


def save_model_file(
    parent: QWidget, bundle: ModelBundle, name: str | None, path: str | os.PathLike | None
) -> Path | None:
    """Write ``bundle`` (called ``name``) to ``path`` (``.pt`` added when it has no
    suffix); returns the written path, or None if nothing was written."""
    from napari_pinned.nn.model_files import save_model

    target = _target(parent, path, "Save PINNED model", "pinned-model.pt", "PINNED model (*.pt)")
    if target is None:
        return None
    if not target.suffix:
        target = target.with_suffix(".pt")
    written = call_or_notify(
        save_model, bundle, target, context="Save model", errors=(ValueError, OSError)
    )
    if written is not None:
        notify_info(f"Saved model {name!r} to {written}")
    return written


def export_package_file(
    parent: QWidget, bundle: ModelBundle, name: str | None, path: str | os.PathLike | None
) -> Path | None:
    """Write ``bundle`` as a BioImage Model Zoo package (``.zip``); returns the package,
    or None if nothing was written.

    Export takes a few seconds (it checks the package's model against napari-pinned's
    denoising on a test image); the dock waits with a busy cursor.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_pinned.share.bmz_export import export_bioimageio

    target = _target(
        parent,
        path,
        "Export to BioImage Model Zoo",
        "pinned-model.zip",
        "BioImage Model Zoo package (*.zip)",
    )
    if target is None:
        return None
    if target.suffix.lower() != ".zip":
        target = target.with_suffix(".zip")
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        written = call_or_notify(
            export_bioimageio, bundle, target, context="Export", errors=(ValueError, OSError)
        )
    finally:
        QApplication.restoreOverrideCursor()
    if written is not None:
        notify_info(f"Exported model {name!r} to {written} (BioImage Model Zoo)")
    return written
