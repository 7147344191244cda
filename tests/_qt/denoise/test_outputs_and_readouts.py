"""Denoise dock, on a real viewer: one output layer per setting, column metrics that
follow the reference, one message per bad input, and spectra in 1/Å (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image

from napari_pinned._qt.shared.model_registry import get_registry
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.quality.spectra import power_spectrum

WAIT_MS = 60_000


def _lattice(shape=(96, 96), seed=0) -> np.ndarray:
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    lattice = 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)
    return np.random.default_rng(seed).poisson(lattice * 6.0).astype(np.float32)


def test_each_strength_gets_its_own_output_layer(
    viewer, qtbot, conditioned, denoise_dock, run_denoise
):
    counts = _lattice()
    name = get_registry().add_trained(conditioned, name="tiny aware")
    widget = denoise_dock(viewer)
    widget.select_model(name)
    widget.input_layer.value = viewer.add_image(counts, name="scan")

    widget.strength_spin.setValue(0.5)
    half = run_denoise(widget)
    widget.strength_spin.setValue(1.5)
    more = run_denoise(widget)
    assert half is not more and half in viewer.layers and more in viewer.layers
    assert half.name == "scan denoised (tiny aware, ×0.5)"
    assert more.name == "scan denoised (tiny aware, ×1.5)"
    np.testing.assert_allclose(
        half.data, denoise(counts, conditioned, strength=0.5, device="cpu"), atol=1e-4
    )
    np.testing.assert_allclose(
        more.data, denoise(counts, conditioned, strength=1.5, device="cpu"), atol=1e-4
    )
    assert (half.metadata["pinned_strength"], more.metadata["pinned_strength"]) == (0.5, 1.5)

    # The same setting again: the same layer, updated in place.
    # (Image layers: the faithfulness check may add a map layer when it finishes.)
    layers = sum(isinstance(layer, Image) for layer in viewer.layers)
    widget.strength_spin.setValue(0.5)
    assert run_denoise(widget) is half
    assert sum(isinstance(layer, Image) for layer in viewer.layers) == layers
    # The readouts follow the latest output; its residual is named after it.
    residual = widget.add_residual()
    assert residual.name == "scan residual (tiny aware, ×0.5)"
    np.testing.assert_allclose(residual.data, counts - half.data, atol=1e-4)


def test_orientations_and_the_lattice_guard_are_part_of_the_setting(
    viewer, qtbot, conditioned, denoise_dock, run_denoise
):
    name = get_registry().add_trained(conditioned, name="tiny aware")
    widget = denoise_dock(viewer)
    widget.select_model(name)
    widget.input_layer.value = viewer.add_image(_lattice(seed=1), name="scan")
    combo = widget.options.orientations_combo
    combo.setCurrentIndex(combo.findData(4))
    widget.keep_lattice_box.setChecked(False)
    out = run_denoise(widget)
    assert out.name == "scan denoised (tiny aware, ×1, 4 orientations, lattice guard off)"


def test_column_metrics_follow_the_reference(viewer, denoise_dock):
    widget = denoise_dock(viewer)
    widget.input_layer.value = viewer.add_image(_lattice(), name="noisy")
    positions = np.array([[10.0, 10.0], [20.0, 30.0]])
    gan = viewer.add_image(_lattice(seed=2), name="GaN [11-20]")
    gan_columns = viewer.add_points(positions, name="GaN [11-20] columns")
    si = viewer.add_image(_lattice(seed=3), name="Si [110]")
    si_columns = viewer.add_points(positions + 1, name="Si [110] columns")
    plain = viewer.add_image(_lattice(seed=4), name="unlabelled reference")

    widget.reference_layer.value = gan
    assert widget.columns_layer.value is gan_columns
    widget.reference_layer.value = si
    assert widget.columns_layer.value is si_columns
    # A reference without ground-truth columns: none, rather than another image's.
    widget.reference_layer.value = plain
    assert widget.columns_layer.value is None
    widget.update_metrics()
    assert "columns in" not in widget.metrics_label.text()

    # Columns the user picks for a reference are that reference's.
    widget.columns_layer.value = gan_columns
    widget.reference_layer.value = si
    assert widget.columns_layer.value is si_columns


def test_a_nan_input_is_reported_once(viewer, qtbot, notifications, denoise_dock):
    widget = denoise_dock(viewer)
    data = _lattice()
    data[5, 7] = np.nan
    widget.input_layer.value = viewer.add_image(data, name="spoiled scan")
    qtbot.waitUntil(lambda: len(notifications.errors) == 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not widget.noise_label.running, timeout=WAIT_MS)
    assert "'spoiled scan'" in notifications.errors[0]
    assert "NaN" in notifications.errors[0]
    for k in range(3):
        viewer.add_image(np.ones((8, 8), np.float32), name=f"other {k}")
        widget.update_noise()  # what the layer event schedules
        qtbot.waitUntil(lambda: not widget.noise_label.running, timeout=WAIT_MS)
    assert len(notifications.errors) == 1, notifications.errors
    assert "NaN" in widget.noise_label.text()


def test_the_spectrum_is_in_reciprocal_angstroms(viewer, denoise_dock):
    widget = denoise_dock(viewer)
    # Spacings of 0.4 Å along y and 0.8 Å along x, on 0.1 Å pixels.
    y, x = np.mgrid[0:128, 0:160]
    image = 2.0 + np.cos(2 * np.pi * y / 4.0) + np.cos(2 * np.pi * x / 8.0)
    layer = viewer.add_image(image, name="lattice", scale=(0.1, 0.1), units=("Å", "Å"))
    spectrum = widget.add_spectrum(layer)
    assert spectrum.name == "lattice FFT"
    np.testing.assert_array_equal(spectrum.data, power_spectrum(image))
    assert [str(u) for u in spectrum.units] == ["1 / angstrom", "1 / angstrom"]
    np.testing.assert_allclose(spectrum.scale, [1 / (128 * 0.1), 1 / (160 * 0.1)])
    centre = spectrum.data_to_world((64, 80))
    np.testing.assert_allclose(centre, (0.0, 0.0), atol=1e-12)
    # The brightest spots off the centre, read in world coordinates: 1/d.
    data = spectrum.data.copy()
    data[60:69, 76:85] = -np.inf  # the zero frequency and its window's spread
    row = int(np.argmax(data[:, 80]))
    col = int(np.argmax(data[64, :]))
    ky = abs(spectrum.data_to_world((row, 80))[0])
    kx = abs(spectrum.data_to_world((64, col))[1])
    assert 1 / ky == pytest.approx(0.4) and 1 / kx == pytest.approx(0.8)
    assert "1/Å" in widget.compare_panel.spectrum_label.text()

    # Without a pixel size: cycles per pixel.
    bare = widget.add_spectrum(viewer.add_image(image, name="uncalibrated"))
    assert [str(u) for u in bare.units] == ["1 / pixel", "1 / pixel"]
    np.testing.assert_allclose(bare.scale, [1 / 128, 1 / 160])


def test_the_spectrum_of_a_stack_keeps_its_frame_axis(viewer, denoise_dock):
    widget = denoise_dock(viewer)
    stack = np.stack([_lattice(seed=s) for s in range(3)])
    layer = viewer.add_image(
        stack, name="series", scale=(2.0, 0.5, 0.5), units=("pixel", "nm", "nm")
    )
    spectrum = widget.add_spectrum(layer)
    assert str(spectrum.units[0]) == "pixel" and spectrum.scale[0] == 2.0
    # 0.5 nm = 5 Å pixels: 1/(96 · 5 Å) per pixel.
    np.testing.assert_allclose(spectrum.scale[1:], [1 / 480, 1 / 480])
    assert [str(u) for u in spectrum.units[1:]] == ["1 / angstrom", "1 / angstrom"]
