"""The docks and BioImage Model Zoo packages / ONNX files: "Export to BioImage Model
Zoo…" in the Train dock, "Load model file…" in the Denoise dock (packages of ours and of
other tools, ONNX files, the trust question)."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_pinned._qt.denoise.widget import DenoiseWidget
from napari_pinned._qt.train.widget import TrainWidget
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn.network import ModelBundle

pytest.importorskip("bioimageio.core")

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def bundle(tiny_conditioned) -> ModelBundle:
    return tiny_conditioned(0, name="tiny", noise="stem")


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:72, 0:80]
    return (rng.poisson((np.cos(x / 2.0) * np.cos(y / 2.0) + 1.2) * 10) * 2.0 + 50).astype(
        np.float32
    )


def _denoise_in_dock(viewer, qtbot, widget: DenoiseWidget, image: np.ndarray) -> np.ndarray:
    layer = viewer.add_image(image, name="noisy")
    widget.input_layer.value = layer
    with qtbot.waitSignal(widget.denoise_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.denoise_button, Qt.MouseButton.LeftButton)
    return np.asarray(finished.args[0].data)


@pytest.mark.slow
def test_train_dock_exports_a_package_the_denoise_dock_loads(
    make_napari_viewer, qtbot, notifications, bundle, noisy, tmp_path
):
    viewer = make_napari_viewer()
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train")
    assert train.export_button.text() == "Export to BioImage Model Zoo…"
    assert not train.export_button.isEnabled()
    assert train.export_package(tmp_path / "none.zip") is None
    assert "no trained model" in notifications.errors[-1]

    train.last_bundle, train.last_model_name = bundle, "tiny"
    path = train.export_package(tmp_path / "shared")
    assert path == tmp_path / "shared.zip" and path.is_file()
    assert any(str(path) in m for m in notifications.infos)

    dock = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Denoise")
    dock.device_combo.setCurrentText("cpu")
    name = dock.load_model_file(path)
    assert name == "file: shared" and dock.model_combo.currentText() == name
    assert dock.strength_spin.isEnabled()  # a noise-aware model, as exported
    out = _denoise_in_dock(viewer, qtbot, dock, noisy)
    expected = denoise(noisy, bundle, device="cpu")
    assert np.max(np.abs(out - expected)) <= 1e-3 * float(np.ptp(expected))


def test_denoise_dock_runs_onnx_files(make_napari_viewer, qtbot, bundle, noisy, tmp_path):
    pytest.importorskip("onnxruntime")
    from napari_pinned.share.onnx_export import export_onnx

    viewer = make_napari_viewer()
    dock = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Denoise")
    dock.device_combo.setCurrentText("cpu")
    name = dock.load_model_file(export_onnx(bundle, tmp_path / "tiny.onnx"))
    assert "ONNX" in dock.model_label.text()
    from napari_pinned._qt.shared.model_registry import get_registry

    assert name not in get_registry().trainable_names()  # denoises, cannot be trained
    assert dock._adapt_start_model() == "default"
    out = _denoise_in_dock(viewer, qtbot, dock, noisy)
    expected = denoise(noisy, bundle, device="cpu")
    assert name and np.max(np.abs(out - expected)) <= 1e-3 * float(np.ptp(expected))


def test_packages_that_run_code_ask_first(
    viewer_model, qtbot, notifications, monkeypatch, tmp_path, foreign_package
):
    from qtpy.QtWidgets import QMessageBox

    path = foreign_package(tmp_path, weights="torchscript")
    dock = DenoiseWidget(viewer_model)
    qtbot.addWidget(dock)  # closed and deleted after the test, not left to the collector
    asked = []

    def answer(button):
        def question(*args, **kwargs):
            asked.append(args[2])
            return button

        return question

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    assert dock.load_model_file(path) is None
    assert "trust" in asked[-1] and "trust" in notifications.errors[-1]
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    name = dock.load_model_file(path)
    assert name == "file: box" and "bioimageio.core" in dock.model_label.text()
    assert not dock.strength_spin.isEnabled()
