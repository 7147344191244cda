"""Denoise dock: output layers, cancelling, the no-model message, model files, metric
readouts equal to the core's, clipboard/CSV, and the comparison views."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from qtpy.QtCore import Qt, QThreadPool
from qtpy.QtWidgets import QApplication

from napari_pinned._qt.denoise.metrics_panel import format_gain, format_metric
from napari_pinned._qt.denoise.model_picker import LOAD_MODEL_ITEM, NO_MODEL_ITEM
from napari_pinned._qt.denoise.widget import DenoiseWidget
from napari_pinned._qt.shared.model_registry import DEFAULT_NAME, ModelRegistry, get_registry
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn.model_files import save_model
from napari_pinned.noise.synthesis import add_cdn_noise
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.columns import column_accuracy
from napari_pinned.quality.metrics import compute_metrics, compute_metrics_stack, mean_metrics
from napari_pinned.quality.spectra import power_spectrum
from napari_pinned.training.run import train

WAIT_MS = 60_000
KEYS = ("psnr", "ssim", "fsc", "epi")


@pytest.fixture
def viewer(make_napari_viewer):
    """A real napari viewer (closed by napari's fixture) for docking the widget."""
    return make_napari_viewer()


@pytest.fixture(scope="module")
def bundle(tiny_train_config):
    """A tiny model after a few steps: fast, deterministic, and not the identity."""
    config = tiny_train_config(steps=4, batch_size=2, validation_patches=2, validate_every=4)
    clean = simulate("SrTiO3", shape=80, seed=0).image
    return train(config, [clean], seed=0, device="cpu").run_to_end()


@pytest.fixture(scope="module")
def pair():
    clean = simulate("Si", shape=80, seed=1).image
    return clean, add_cdn_noise(clean, 2.0, seed=2)


def _dock(viewer) -> DenoiseWidget:
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    widget.device_combo.setCurrentText("cpu")
    return widget


def _run(qtbot, widget: DenoiseWidget):
    with qtbot.waitSignal(widget.denoise_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.denoise_button, Qt.MouseButton.LeftButton)
    return finished.args[0]


def _expected_rows(before, after, scope=""):
    rows = []
    labels = {"psnr": "PSNR (dB)", "ssim": "SSIM", "fsc": "FSC", "epi": "EPI"}
    for key in KEYS:
        b, a = getattr(before, key), getattr(after, key)
        label = f"{labels[key]}, {scope}" if scope else labels[key]
        rows.append([label, format_metric(key, b), format_metric(key, a), format_gain(key, a - b)])
    return rows


def test_no_model_tells_the_user_to_train_one(viewer, notifications, pair):
    widget = _dock(viewer)
    layer = viewer.add_image(pair[1], name="noisy")
    assert widget.model_combo.currentText() == NO_MODEL_ITEM
    assert widget.model_combo.itemText(widget.model_combo.count() - 1) == LOAD_MODEL_ITEM
    assert not widget.denoise()
    assert "train one in the 'Train PINNED' dock" in notifications.errors[-1]
    assert [lyr.name for lyr in viewer.layers] == ["noisy"] and layer.data is not None
    assert widget.device_label.text() == "Device: cpu"


def test_denoise_2d_adds_float32_layer_and_leaves_input_alone(viewer, qtbot, bundle, pair):
    name = get_registry().add_trained(bundle)
    widget = _dock(viewer)
    assert widget.model_combo.currentText() == name == widget.model_name
    data = (pair[1] / 255 * 4000 + 100).astype(np.uint16)  # counts, not the paper's scale
    original = data.copy()
    layer = viewer.add_image(
        data,
        name="scan",
        scale=(0.5, 0.25),
        translate=(3.0, 4.0),
        units=("Å", "Å"),
        contrast_limits=(200, 3000),
    )
    widget.input_layer.value = layer
    widget.tile_spin.setValue(32)
    widget.overlap_spin.setValue(0)  # auto: the model's minimum halo (exact tiling)

    out = _run(qtbot, widget)
    # Named after the model (and the strength, for noise-aware models): issue 21.
    assert out is viewer.layers["scan denoised (trained 1)"]
    assert out.data.dtype == np.float32 and out.data.shape == data.shape
    assert tuple(out.scale) == (0.5, 0.25) and tuple(out.translate) == (3.0, 4.0)
    assert tuple(out.units) == tuple(layer.units)
    assert tuple(out.contrast_limits) == (200, 3000)
    expected = denoise(original, bundle, tile=32, device="cpu")
    # Equal up to float32 rounding (torch's summation order depends on its thread count).
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-2)
    assert layer.data is data and np.array_equal(layer.data, original)
    assert layer.data.dtype == np.uint16
    assert not widget.is_running and widget.denoise_button.isEnabled()


def test_cancel_adds_no_layer_and_leaves_input_alone(viewer, qtbot, notifications, bundle):
    get_registry().add_trained(bundle)
    widget = _dock(viewer)
    stack = np.random.default_rng(0).uniform(0, 255, (30, 96, 96)).astype(np.float32)
    original = stack.copy()
    layer = viewer.add_image(stack, name="stack")
    widget.input_layer.value = layer
    widget.tile_spin.setValue(16)
    widget.overlap_spin.setValue(0)
    with qtbot.waitSignal(widget.denoise_finished, timeout=WAIT_MS) as finished:
        assert widget.denoise()
        qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    assert finished.args[0] is None
    assert [lyr.name for lyr in viewer.layers] == ["stack"]
    assert layer.data is stack and np.array_equal(stack, original)
    assert any("cancelled" in m for m in notifications.infos)
    assert widget.denoise_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_closing_the_viewer_mid_run_stops_the_worker(make_napari_viewer, bundle):
    viewer = make_napari_viewer()
    get_registry().add_trained(bundle)
    widget = _dock(viewer)
    stack = np.random.default_rng(0).uniform(0, 255, (30, 96, 96)).astype(np.float32)
    widget.input_layer.value = viewer.add_image(stack, name="stack")
    widget.tile_spin.setValue(16)
    widget.overlap_spin.setValue(0)
    assert widget.denoise()
    job = widget._runner.job
    viewer.close()
    assert job.done and not widget.is_running  # close returned after the thread ended
    assert QThreadPool.globalInstance().waitForDone(1000)


def test_bad_tiling_is_reported(viewer, qtbot, notifications, bundle, pair):
    get_registry().add_trained(bundle)
    widget = _dock(viewer)
    widget.input_layer.value = viewer.add_image(pair[1], name="noisy")
    widget.tile_spin.setValue(32)
    widget.overlap_spin.setValue(20)  # the tiny model needs a halo of 36 px
    assert _run(qtbot, widget) is None
    assert "overlap" in notifications.errors[-1]
    assert "noisy denoised" not in viewer.layers


def test_metric_table_equals_the_core_and_follows_data(viewer, qtbot, bundle, pair, tmp_path):
    get_registry().add_trained(bundle)
    clean, noisy = pair
    widget = _dock(viewer)
    widget.input_layer.value = viewer.add_image(noisy, name="noisy")
    ref = viewer.add_image(clean, name="clean")
    widget.reference_layer.value = ref
    widget.update_metrics()
    # Before denoising: the input column only.
    before = compute_metrics(noisy, clean)
    assert [row[:2] for row in widget.table_text()] == [
        [label, format_metric(k, getattr(before, k))]
        for label, k in zip(("PSNR (dB)", "SSIM", "FSC", "EPI"), KEYS, strict=True)
    ]
    assert all(row[2] == "—" and row[3] == "—" for row in widget.table_text())

    widget.tile_spin.setValue(48)
    widget.overlap_spin.setValue(0)  # auto: the model's minimum halo
    out = _run(qtbot, widget)
    widget.update_metrics()
    after = compute_metrics(out.data, clean)
    assert widget.table_text() == _expected_rows(before, after)

    # Editing a layer's data updates the readouts by itself.
    shifted = np.clip(clean + 10, 0, 255)
    ref.data = shifted
    new_before = compute_metrics(noisy, shifted)
    new_after = compute_metrics(out.data, shifted)
    expected = _expected_rows(new_before, new_after)
    qtbot.waitUntil(lambda: widget.table_text() == expected, timeout=5000)

    text = widget.copy_metrics()
    assert QApplication.clipboard().text() == text
    assert text.splitlines()[0] == "metric\tinput\tdenoised\tgain"
    assert text.splitlines()[1].split("\t") == expected[0]

    path = widget.export_csv(tmp_path / "metrics.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["metric"] for r in rows] == list(KEYS)
    for r in rows:
        assert float(r["input"]) == getattr(new_before, r["metric"])
        assert float(r["denoised"]) == getattr(new_after, r["metric"])


def test_stack_readouts_follow_the_current_frame(viewer, qtbot, bundle):
    get_registry().add_trained(bundle)
    clean = np.stack([simulate("GaN", shape=64, seed=s).image for s in range(3)])
    noisy = add_cdn_noise(clean, 2.5, seed=5)
    widget = _dock(viewer)
    layer = viewer.add_image(noisy, name="noisy stack", scale=(2.0, 1.0, 1.0))
    viewer.add_image(clean, name="clean stack", scale=(2.0, 1.0, 1.0))
    widget.input_layer.value = layer
    widget.reference_layer.value = viewer.layers["clean stack"]
    widget.tile_spin.setValue(64)
    widget.overlap_spin.setValue(0)
    out = _run(qtbot, widget)
    assert out.data.shape == (3, 64, 64) and out.data.dtype == np.float32
    assert tuple(out.scale) == (2.0, 1.0, 1.0)

    before = compute_metrics_stack(noisy, clean)
    after = compute_metrics_stack(out.data, clean)
    viewer.dims.set_current_step(0, 2)
    widget.update_metrics()
    expected = _expected_rows(before[2], after[2], "frame 2") + _expected_rows(
        mean_metrics(before), mean_metrics(after), "mean of 3"
    )
    assert widget.table_text() == expected
    viewer.dims.set_current_step(0, 1)  # the dims event alone refreshes the table
    expected_1 = _expected_rows(before[1], after[1], "frame 1") + expected[4:]
    qtbot.waitUntil(lambda: widget.table_text() == expected_1, timeout=5000)


def test_compare_residual_and_spectrum(viewer, qtbot, notifications, bundle, pair):
    get_registry().add_trained(bundle)
    clean, noisy = pair
    widget = _dock(viewer)
    other = viewer.add_image(np.zeros((8, 8)), name="unrelated")
    inp = viewer.add_image(noisy, name="noisy", scale=(0.2, 0.2))
    widget.input_layer.value = inp
    widget.reference_layer.value = viewer.add_image(clean, name="clean")
    assert widget.add_residual() is None and "denoise the input" in notifications.errors[-1]
    widget.tile_spin.setValue(80)
    widget.overlap_spin.setValue(0)
    out = _run(qtbot, widget)

    shape_before = tuple(viewer.canvas.grid.shape)
    qtbot.mouseClick(widget.compare_button, Qt.MouseButton.LeftButton)
    assert viewer.canvas.grid.enabled and tuple(viewer.canvas.grid.shape) == (1, 3)
    shown = {lyr.name for lyr in viewer.layers if lyr.visible}
    assert shown == {"noisy", "noisy denoised (trained 1)", "clean"}
    qtbot.mouseClick(widget.compare_button, Qt.MouseButton.LeftButton)
    assert not viewer.canvas.grid.enabled and other.visible
    assert tuple(viewer.canvas.grid.shape) == shape_before

    residual = widget.add_residual()
    assert residual.name == "noisy residual (trained 1)" and residual.data.dtype == np.float32
    np.testing.assert_allclose(residual.data, noisy - out.data, rtol=0, atol=1e-4)
    assert tuple(residual.scale) == (0.2, 0.2)
    low, high = residual.contrast_limits
    assert low == -high and high == pytest.approx(np.abs(noisy - out.data).max(), rel=1e-5)

    widget.fft_layer.value = inp
    qtbot.mouseClick(widget.fft_button, Qt.MouseButton.LeftButton)
    spectrum = viewer.layers["noisy FFT"]
    np.testing.assert_array_equal(spectrum.data, power_spectrum(noisy))


def test_model_files_and_the_default_model(viewer, notifications, bundle, tmp_path, monkeypatch):
    widget = _dock(viewer)
    path = save_model(bundle, tmp_path / "lattice.pt")
    name = widget.load_model_file(path)
    assert name == "file: lattice" and widget.model_combo.currentText() == name
    assert widget.load_model_file(path) == name and len(get_registry()) == 1  # not twice

    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert widget.load_model_file(tmp_path / "junk.pt") is None
    assert notifications.errors[-1].startswith("Load model: ")
    assert "junk.pt" in notifications.errors[-1]
    assert widget.model_combo.currentText() == name

    # A shipped default model appears first, under its own name, once the file exists.
    monkeypatch.setattr("napari_pinned.nn.model_files.default_model_path", lambda: path)
    registry = get_registry()
    registry.refresh()
    assert registry.names() == [DEFAULT_NAME, name]
    assert registry.model_source(DEFAULT_NAME) == "default"
    assert widget.model_combo.itemText(0) == DEFAULT_NAME


def test_registry_names_order_and_change_signal(bundle, tmp_path):
    registry = ModelRegistry()
    changes = []
    registry.changed.connect(lambda: changes.append(registry.names()))
    first = registry.add_trained(bundle)
    second = registry.add_trained(bundle)
    val = bundle.metadata["val_psnr"]
    assert first == f"trained 1 (unet, 4 steps, {val:.1f} dB)"
    assert second.startswith("trained 2 (")
    loaded = registry.add_file(save_model(bundle, tmp_path / "m.pt"))
    assert registry.names() == [first, second, loaded] and len(changes) == 3
    assert registry.model_source(first) is bundle
    registry.remove(second)
    assert registry.names() == [first, loaded] and len(changes) == 4
    with pytest.raises(KeyError, match="no model called"):
        registry.model_source(second)
    with pytest.raises(KeyError):
        registry.remove(DEFAULT_NAME)
    registry.clear()
    assert registry.names() == [] and registry.add_trained(bundle).startswith("trained 1 ")


def test_column_readouts_with_the_generators_ground_truth(viewer, qtbot, bundle):
    """Picking the reference selects its '<name> columns' Points layer, and the column
    rows equal the core's column_accuracy for the input and the denoised output."""
    get_registry().add_trained(bundle)
    result = simulate("SrTiO3", shape=96, pixel_size=0.1, seed=4)
    noisy = add_cdn_noise(result.image, 1.0, seed=5)
    widget = _dock(viewer)
    scale = (0.1, 0.1)
    widget.input_layer.value = viewer.add_image(noisy, name="noisy", scale=scale)
    viewer.add_points(
        result.columns.positions,
        name="clean columns",
        scale=scale,
        features={"weight": result.columns.weights},
    )
    widget.reference_layer.value = viewer.add_image(result.image, name="clean", scale=scale)
    assert widget.columns_layer.value.name == "clean columns"
    out = _run(qtbot, widget)
    widget.update_metrics()
    rows = {row[0]: row[1:] for row in widget.table_text()}
    for key, label in (("recall", "Column recall"), ("rms_error_pm", "Column RMS error (pm)")):
        before, after = (
            getattr(
                column_accuracy(
                    image, result.columns.positions, 0.1, weights=result.columns.weights
                ),
                key,
            )
            for image in (noisy, out.data)
        )
        assert rows[label][:2] == [format_metric(key, before), format_metric(key, after)]
    assert "columns in 'clean columns'" in widget.metrics_label.text()

    # Without a pixel size the dock says what is missing instead of guessing.
    widget.input_layer.value = viewer.add_image(noisy, name="uncalibrated")
    widget.update_metrics()
    assert "pixel size" in widget.metrics_label.text()


def test_the_si_sample_reference_finds_its_columns(viewer):
    from napari_pinned._sample_data import si_110_cdn3

    for data, kwargs, kind in si_110_cdn3():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = _dock(viewer)
    widget.reference_layer.value = viewer.layers["Si [110] clean"]
    assert widget.columns_layer.value is viewer.layers["Si [110] columns"]
