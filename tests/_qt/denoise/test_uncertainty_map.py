"""Denoise dock, on a real viewer: the optional uncertainty map (issue 22, §4)."""

from __future__ import annotations

import numpy as np

from napari_pinned._qt.denoise.uncertainty_layer import uncertainty_name
from napari_pinned._qt.denoise.widget import DenoiseWidget
from napari_pinned._qt.shared.model_registry import get_registry
from napari_pinned.denoising.denoiser import denoise_with_uncertainty

WAIT_MS = 60_000


def _counts(seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:64, 0:64]
    lattice = 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)
    return np.random.default_rng(seed).poisson(lattice * 6.0).astype(np.float32)


def test_the_map_is_off_by_default_and_added_beside_the_output(
    viewer, qtbot, conditioned, run_denoise
):
    counts = _counts()
    name = get_registry().add_trained(conditioned, name="tiny aware")
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    widget.device_combo.setCurrentText("cpu")
    widget.select_model(name)
    widget.input_layer.value = viewer.add_image(counts, name="scan")
    options = widget.options
    assert not options.uncertainty_box.isChecked()

    plain = run_denoise(widget)
    assert [layer.name for layer in viewer.layers] == ["scan", plain.name]
    assert widget.uncertainty_view.label.isHidden()

    # Ticking it picks the orientations the map is built on (1 → 8).
    options.uncertainty_box.setChecked(True)
    assert options.orientations_combo.currentData() == 8
    options.orientations_combo.setCurrentIndex(1)  # 2 orientations: quicker here
    output = run_denoise(widget)
    sigma = viewer.layers[uncertainty_name(output.name)]
    expected = denoise_with_uncertainty(counts, conditioned, orientations=2, device="cpu")
    np.testing.assert_allclose(output.data, expected.output, atol=1e-4)
    np.testing.assert_allclose(sigma.data, expected.uncertainty, rtol=1e-4, atol=1e-5)
    assert sigma.scale.tolist() == output.scale.tolist()
    assert sigma.metadata["pinned_uncertainty_of"] == output.name
    # The summary line is shown, and names the map layer.
    text = widget.uncertainty_view.label.text()
    assert not widget.uncertainty_view.label.isHidden()
    assert text.startswith("Uncertainty: median ±2σ = ") and sigma.name in text
    assert "least certain" in text or "no pixel" in text

    # A run without the map hides the line again and leaves the map layer alone.
    options.uncertainty_box.setChecked(False)
    run_denoise(widget)
    assert widget.uncertainty_view.label.isHidden()
    assert sigma in viewer.layers
