"""Denoise dock: which model runs on which layer (issue 21).

The dock starts on the shipped default model, says which model will run on which layer,
and does not carry a model adapted to one layer over to another without a word.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_pinned._qt.denoise.adapt_panel import adapted_name
from napari_pinned._qt.shared.model_registry import DEFAULT_NAME, ModelRegistry, get_registry
from napari_pinned.nn import model_files

WAIT_MS = 60_000
CDN_NAME = "cdn (pretrained)"


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch, fresh_registry: ModelRegistry) -> ModelRegistry:
    """The registry with the models shipped in the package (the fixture ``fresh_registry``
    hides them)."""
    folder = Path(model_files.__file__).resolve().parents[1] / "data" / "models"
    monkeypatch.setattr(model_files, "_models_folder", lambda: folder)
    monkeypatch.setattr(model_files, "default_model_path", lambda: folder / "default.pt")
    fresh_registry.refresh()
    assert fresh_registry.names() == [DEFAULT_NAME, CDN_NAME]
    return fresh_registry


def _counts(seed: int, size: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    lattice = 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)
    return np.random.default_rng(seed).poisson(lattice * 5.0).astype(np.uint16)


def test_the_dock_starts_on_the_default_model(make_napari_viewer, shipped, denoise_dock):
    viewer = make_napari_viewer()
    viewer.add_image(_counts(0), name="SrTiO3 [110]", scale=(0.1, 0.1), units=("Å", "Å"))
    widget = denoise_dock(viewer)
    assert widget.model_name == DEFAULT_NAME
    assert widget.model_combo.currentText() == DEFAULT_NAME
    # The default is noise-aware: strength and adaptation are on.
    assert widget.strength_spin.isEnabled() and widget.adapt_panel.isEnabled()
    plan = widget.run_label.text()
    assert DEFAULT_NAME in plan and "'SrTiO3 [110]'" in plan
    viewer.layers["SrTiO3 [110]"].name = "scan 7"
    assert "'scan 7'" in widget.run_label.text()

    # Choosing the CDN model is still possible, and the dock says so.
    widget.select_model(CDN_NAME)
    assert CDN_NAME in widget.run_label.text()
    assert not widget.strength_spin.isEnabled()


@pytest.mark.slow
def test_a_model_from_a_file_is_still_selected_when_loaded(
    make_napari_viewer, shipped, denoise_dock
):
    viewer = make_napari_viewer()
    widget = denoise_dock(viewer)
    name = widget.load_model_file(model_files.SHIPPED_MODELS[1].path)
    assert name is not None and widget.model_name == name != DEFAULT_NAME


@pytest.mark.slow
def test_an_adapted_model_is_not_carried_to_another_layer(
    make_napari_viewer, qtbot, shipped, conditioned, denoise_dock
):
    viewer = make_napari_viewer()
    first = viewer.add_image(_counts(1, size=160), name="scan A")
    second = viewer.add_image(_counts(2, size=160), name="scan B")
    widget = denoise_dock(viewer)
    widget.select_model(get_registry().add_trained(conditioned, name="tiny aware"))
    widget.input_layer.value = first
    panel = widget.adapt_panel
    panel.steps_spin.setValue(5000)
    with qtbot.waitSignal(panel.adapted, timeout=WAIT_MS) as adapted:
        assert panel.start()
        # Stop once training has begun: the best model so far is kept.
        qtbot.waitUntil(lambda: "Step" in panel.status_label.text(), timeout=WAIT_MS)
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    name = adapted.args[0]
    assert name == adapted_name("scan A") == widget.model_name
    assert "'scan A'" in widget.run_label.text() and name in widget.run_label.text()

    # Another layer: back to the default model, and the dock says why.
    widget.input_layer.value = second
    assert widget.model_name == DEFAULT_NAME
    plan = widget.run_label.text()
    assert DEFAULT_NAME in plan and "'scan B'" in plan
    assert name in plan and "made for 'scan A'" in plan

    # Picked again on purpose, it runs on that layer, with a word.
    widget.select_model(name)
    assert widget.model_name == name
    plan = widget.run_label.text()
    assert "'scan B'" in plan and "made for 'scan A'" in plan


def test_without_a_default_model_the_dock_says_the_model_was_made_elsewhere(
    make_napari_viewer, conditioned, denoise_dock
):
    viewer = make_napari_viewer()
    viewer.add_image(_counts(3), name="scan A")
    other = viewer.add_image(_counts(4), name="scan B")
    registry = get_registry()
    name = registry.add_trained(conditioned, name=adapted_name("scan A"), made_for=("scan A",))
    widget = denoise_dock(viewer)
    widget.input_layer.value = other
    # No shipped default to go back to: the model stays, and the dock says so.
    assert widget.model_name == name
    assert "made for 'scan A'" in widget.run_label.text()
    assert "'scan A'" in registry.describe(name)
