"""Shared fixtures for the widget tests: a viewer model, and captured napari notifications."""

from __future__ import annotations

from dataclasses import dataclass, field

import napari.utils.notifications
import pytest
from napari.components import ViewerModel
from qtpy.QtCore import QThreadPool

from napari_pinned._qt.shared.model_registry import ModelRegistry, get_registry

#: Longest wait for a worker thread, in milliseconds.
WAIT_MS = 60_000


@dataclass
class Notifications:
    """Messages sent to napari's notification area during a test, by severity."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)


@pytest.fixture
def notifications(monkeypatch: pytest.MonkeyPatch) -> Notifications:
    """Capture show_error/show_warning/show_info instead of popping up messages.

    The widgets call these through the ``napari.utils.notifications`` module, so
    replacing the module attributes sees every message.
    """
    captured = Notifications()
    module = napari.utils.notifications
    monkeypatch.setattr(module, "show_error", captured.errors.append)
    monkeypatch.setattr(module, "show_warning", captured.warnings.append)
    monkeypatch.setattr(module, "show_info", captured.infos.append)
    return captured


@pytest.fixture
def viewer_model() -> ViewerModel:
    """A Qt-free napari viewer model to hand to widgets instead of a full viewer.

    The widgets only use the model's API (``layers``, ``add_image``, ``add_points``),
    and a model is created in milliseconds where a Qt viewer under Xvfb takes about a
    second; tests that need real docking use napari's ``make_napari_viewer``.
    """
    return ViewerModel()


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch, tmp_path) -> ModelRegistry:
    """An empty model registry, and no shipped models whatever is installed;
    afterwards, every worker thread must have ended (no leaked threads)."""
    monkeypatch.setattr(
        "napari_pinned.nn.model_files.default_model_path", lambda: tmp_path / "no-default.pt"
    )
    monkeypatch.setattr("napari_pinned.nn.model_files._models_folder", lambda: tmp_path)
    registry = get_registry()
    registry.clear()
    yield registry
    registry.clear()
    assert QThreadPool.globalInstance().waitForDone(WAIT_MS)
