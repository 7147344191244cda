"""The Denoise dock's noise line is the honest readout (a real viewer)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned._qt.denoise.widget import DenoiseWidget
from napari_pinned._qt.shared.model_registry import get_registry
from napari_pinned.nn.conditioning import measure_noise
from napari_pinned.noise.readout import read_noise

WAIT_MS = 60_000


def _lattice(size: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: _lattice() * 1000.0, "no noise measurable (the image looks noise-free)"),
        (
            lambda: np.round(
                np.random.default_rng(0).poisson(_lattice() / _lattice().mean() * 1000) / 14
            ).astype(np.uint8),
            "not detector counts",
        ),
        (
            lambda: np.random.default_rng(1).poisson(_lattice() / _lattice().mean() * 20) * 3.0,
            "e⁻/px at the mean intensity",
        ),
    ],
    ids=["noise-free", "8-bit", "counts"],
)
def test_dock_shows_the_honest_noise_line(qtbot, make_napari_viewer, conditioned, make, expected):
    viewer = make_napari_viewer()
    image = make()
    viewer.add_image(image, name="scan")
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    widget.device_combo.setCurrentText("cpu")
    widget.select_model(get_registry().add_trained(conditioned, name="tiny aware"))
    label = widget.noise_label
    qtbot.waitUntil(lambda: label.reading is not None, timeout=WAIT_MS)
    assert expected in label.text()
    core = read_noise(image, estimate=measure_noise(image))
    assert label.text() == f"Noise: {core.line()}"
    assert label.estimate == core.estimate  # what the model is told is unchanged
