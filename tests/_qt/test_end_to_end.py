"""One path through all four docks, as a user would take it: generate a lattice, add CDN
noise, train a tiny model on the pair, denoise the noisy layer, read the metrics."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_pinned._qt.denoise.metrics_panel import format_gain, format_metric
from napari_pinned._qt.denoise.widget import DenoiseWidget
from napari_pinned._qt.generate.widget import GeneratorWidget
from napari_pinned._qt.noise.widget import NoiseWidget
from napari_pinned._qt.shared.model_registry import get_registry
from napari_pinned._qt.train.data_panel import NOISE_MODES
from napari_pinned._qt.train.widget import TrainWidget
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.quality.metrics import compute_metrics

WAIT_MS = 60_000


@pytest.mark.slow
def test_generate_noise_train_denoise_and_score(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    generator, noise = GeneratorWidget(viewer), NoiseWidget(viewer)
    trainer, denoiser = TrainWidget(viewer), DenoiseWidget(viewer)
    for name, dock in [
        ("Generate", generator),
        ("Noise", noise),
        ("Train", trainer),
        ("Denoise", denoiser),
    ]:
        viewer.window.add_dock_widget(dock, name=name)

    # 1. A clean 96 px SrTiO3 [001] image.
    generator.material.value = "SrTiO3"
    generator.image_size.value = 96
    generator.generate_button.native.click()
    clean = viewer.layers["SrTiO3 [001]"]
    assert clean.data.shape == (96, 96)

    # 2. CDN level 3 on a copy.
    noise.source.value = clean
    noise.level.value = 3.0
    noise.apply_button.native.click()
    noisy = viewer.layers["SrTiO3 [001] CDN"]
    assert noisy.data.shape == clean.data.shape and not np.array_equal(noisy.data, clean.data)

    # 3. Train a tiny model on the pair for a few steps.
    trainer.noise_mode.setCurrentText(NOISE_MODES[1])
    trainer.clean_layers.value = [clean]
    trainer.noisy_layers.value = [noisy]
    trainer.width_spin.setValue(4)
    trainer.depth_spin.setValue(2)
    trainer.steps_spin.setValue(15)
    trainer.batch_spin.setValue(2)
    trainer.patch_spin.setValue(32)
    trainer.device_combo.setCurrentText("cpu")
    with qtbot.waitSignal(trainer.training_finished, timeout=WAIT_MS) as trained:
        qtbot.mouseClick(trainer.start_button, Qt.MouseButton.LeftButton)
    model_name = trained.args[0]
    assert model_name.startswith("trained 1 (unet, 15 steps, ")

    # 4. The new model is offered (and chosen) in the Denoise dock.
    assert denoiser.model_combo.currentText() == model_name
    denoiser.input_layer.value = noisy
    denoiser.reference_layer.value = clean
    denoiser.device_combo.setCurrentText("cpu")
    denoiser.tile_spin.setValue(48)
    denoiser.overlap_spin.setValue(0)  # auto: the model's minimum halo
    with qtbot.waitSignal(denoiser.denoise_finished, timeout=WAIT_MS) as done:
        qtbot.mouseClick(denoiser.denoise_button, Qt.MouseButton.LeftButton)
    out = done.args[0]
    assert out.name == "SrTiO3 [001] CDN denoised (trained 1)"
    assert out.data.dtype == np.float32 and out.data.shape == noisy.data.shape
    np.testing.assert_array_equal(tuple(out.scale), tuple(noisy.scale))
    bundle = get_registry().model_source(model_name)
    # Equal up to float32 rounding: torch may sum convolutions in another order when
    # its thread count differs between the worker and this thread.
    expected = denoise(noisy.data, bundle, tile=48, device="cpu")
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-3)

    # 5. Readouts: the core's metrics of input and output against the clean image.
    denoiser.update_metrics()
    before = compute_metrics(noisy.data, clean.data)
    after = compute_metrics(out.data, clean.data)
    rows = denoiser.table_text()
    assert [r[0] for r in rows] == ["PSNR (dB)", "SSIM", "FSC", "EPI"]
    for row, key in zip(rows, ("psnr", "ssim", "fsc", "epi"), strict=True):
        b, a = getattr(before, key), getattr(after, key)
        assert row[1:] == [format_metric(key, b), format_metric(key, a), format_gain(key, a - b)]
    assert notifications.errors == []
