"""Denoise dock with a noise-aware model: noise readout, strength, faithfulness, adapt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qtpy.QtCore import Qt

from napari_pinned._qt.denoise.adapt_panel import adapted_name
from napari_pinned._qt.denoise.widget import DenoiseWidget
from napari_pinned._qt.shared.model_registry import get_registry
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.noise.estimate import estimate_noise
from napari_pinned.quality.faithfulness import faithfulness
from napari_pinned.settings import ModelConfig

WAIT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture(scope="module")
def conditioned(tiny_conditioned) -> ModelBundle:
    """A tiny noise-aware network with non-zero weights everywhere (not the identity)."""
    return tiny_conditioned(0, name="tiny aware")


def _counts(dose: float = 10.0, size: int = 128, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    lattice = 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)
    return np.random.default_rng(seed).poisson(lattice / lattice.mean() * dose).astype(np.uint16)


def _dock(viewer, bundle: ModelBundle) -> DenoiseWidget:
    name = get_registry().add_trained(bundle, name="tiny aware")
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    widget.device_combo.setCurrentText("cpu")
    widget.select_model(name)
    return widget


def test_noise_readout_strength_and_description(qtbot, viewer, conditioned):
    counts = _counts()
    viewer.add_image(counts, name="scan")
    widget = _dock(viewer, conditioned)
    expected = estimate_noise(counts)
    qtbot.waitUntil(lambda: widget.noise_label.estimate is not None, timeout=WAIT_MS)
    assert widget.noise_label.estimate == expected
    assert "e⁻/px" in widget.noise_label.text()
    assert widget.strength_spin.isEnabled() and widget.adapt_panel.isEnabled()
    assert "noise-aware" in widget.model_label.text()

    widget.strength_spin.setValue(0.5)
    with qtbot.waitSignal(widget.denoise_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.denoise_button, Qt.MouseButton.LeftButton)
    layer = finished.args[0]
    np.testing.assert_allclose(
        layer.data, denoise(counts, conditioned, strength=0.5, device="cpu"), atol=1e-4
    )
    assert layer.metadata["pinned_strength"] == 0.5

    # The faithfulness check of that result, in the dock, equals the core's.
    qtbot.waitUntil(lambda: widget.faithfulness_panel.last_result is not None, timeout=WAIT_MS)
    shown = widget.faithfulness_panel.last_result
    core = faithfulness(counts, layer.data)
    assert shown.faithful == core.faithful and shown.n_peaks == core.n_peaks
    assert "reflections" in widget.faithfulness_panel.verdict_label.text()


def test_strength_is_off_for_models_without_a_noise_map(qtbot, viewer):
    torch.manual_seed(1)
    config = ModelConfig.preset("tiny")
    bundle = ModelBundle(model=build_model(config).eval(), config=config)
    viewer.add_image(_counts(), name="scan")
    widget = _dock(viewer, bundle)
    assert not widget.strength_spin.isEnabled()
    assert not widget.adapt_panel.isEnabled()


@pytest.mark.slow
def test_adapting_adds_a_model_and_selects_it(qtbot, viewer, conditioned, notifications):
    viewer.add_image(_counts(size=192, seed=3), name="scan")
    widget = _dock(viewer, conditioned)
    widget.adapt_panel.steps_spin.setValue(20)
    with qtbot.waitSignal(widget.adapt_panel.adapted, timeout=WAIT_MS) as adapted:
        assert widget.adapt_panel.start()
    name = adapted.args[0]
    assert name == adapted_name("scan")
    assert widget.model_name == name
    bundle = get_registry().entry(name).bundle
    assert bundle is not None and bundle.config == conditioned.config
    assert not notifications.errors


def test_stopping_an_adaptation_keeps_the_best_model(qtbot, viewer, conditioned):
    viewer.add_image(_counts(size=192, seed=4), name="scan")
    widget = _dock(viewer, conditioned)
    panel = widget.adapt_panel
    panel.steps_spin.setValue(5000)
    with qtbot.waitSignal(panel.adapted, timeout=WAIT_MS) as adapted:
        assert panel.start()
        # Stop once training has begun: the run ends after its step in progress.
        qtbot.waitUntil(lambda: "Step" in panel.status_label.text(), timeout=WAIT_MS)
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    assert adapted.args[0] in get_registry()
    assert not panel.running


def test_keep_lattice_can_be_switched_off(qtbot, viewer, conditioned):
    counts = _counts(seed=5)
    viewer.add_image(counts, name="scan")
    widget = _dock(viewer, conditioned)
    assert widget.keep_lattice_box.isChecked()
    widget.keep_lattice_box.setChecked(False)
    with qtbot.waitSignal(widget.denoise_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.denoise_button, Qt.MouseButton.LeftButton)
    expected = denoise(counts, conditioned, keep_lattice=False, device="cpu")
    np.testing.assert_allclose(finished.args[0].data, expected, atol=1e-4)


def test_the_dock_averages_over_the_chosen_orientations(qtbot, viewer, conditioned):
    counts = _counts(seed=6)
    viewer.add_image(counts, name="scan")
    widget = _dock(viewer, conditioned)
    combo = widget.options.orientations_combo
    assert combo.currentData() == 1  # the core's default: the fastest
    combo.setCurrentIndex(combo.findData(8))
    with qtbot.waitSignal(widget.denoise_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.denoise_button, Qt.MouseButton.LeftButton)
    expected = denoise(counts, conditioned, orientations=8, device="cpu")
    np.testing.assert_allclose(finished.args[0].data, expected, atol=1e-4)
    assert np.abs(expected - denoise(counts, conditioned, device="cpu")).max() > 1e-3
