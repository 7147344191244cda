"""Denoise dock with dask/zarr-backed layers: a lazy output, and whole stack → zarr."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned._qt.denoise.widget import DenoiseWidget
from napari_pinned._qt.shared.model_registry import get_registry
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.io.images import read_image
from napari_pinned.nn.network import ModelBundle

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def bundle(tiny_conditioned) -> ModelBundle:
    return tiny_conditioned(4, name="tiny conditioned")


def _stack(frames=4) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:72, 0:80]
    lattice = 2.0 + np.cos(2 * np.pi * x / 8.0) * np.cos(2 * np.pi * y / 8.0)
    return rng.poisson(lattice * 8.0, (frames, 72, 80)).astype(np.uint16)


def _dock(viewer, qtbot, bundle) -> DenoiseWidget:
    get_registry().add_trained(bundle)
    widget = DenoiseWidget(viewer)
    qtbot.addWidget(widget)  # closed (jobs stopped, signals disconnected) after the test
    widget.device_combo.setCurrentText("cpu")
    return widget


def test_a_dask_layer_gets_a_lazy_output_computed_frame_by_frame(viewer_model, qtbot, bundle):
    stack = _stack()
    layer = viewer_model.add_image(da.from_array(stack, chunks=(1, 72, 80)), name="series")
    widget = _dock(viewer_model, qtbot, bundle)
    widget.input_layer.value = layer
    assert widget.denoise()  # no worker: the layer is added at once
    out = viewer_model.layers["series denoised (trained 1, ×1)"]
    assert isinstance(out.data, da.Array) and out.data.shape == stack.shape
    assert not widget.is_running
    np.testing.assert_allclose(
        np.asarray(out.data[2]), denoise(stack[2], bundle, device="cpu"), atol=1e-4
    )
    assert layer.data is not None and isinstance(layer.data, da.Array)


def test_whole_stack_to_zarr_runs_in_a_worker_and_opens_lazily(
    viewer_model, qtbot, bundle, tmp_path
):
    stack = _stack()
    source = zarr.create_array(
        tmp_path / "in.zarr", shape=stack.shape, chunks=(1, 72, 80), dtype="u2"
    )
    source[...] = stack
    layer = viewer_model.add_image(da.from_zarr(source), name="series", scale=(1, 0.3, 0.3))
    widget = _dock(viewer_model, qtbot, bundle)
    widget.input_layer.value = layer
    target = tmp_path / "out.zarr"
    with qtbot.waitSignal(widget.stack_panel.written, timeout=WAIT_MS) as done:
        assert widget.stack_panel.start(str(target))
    assert done.args[0] == target
    out = viewer_model.layers["series denoised (trained 1, ×1)"]
    assert isinstance(out.data, da.Array) and tuple(out.scale) == (1, 0.3, 0.3)
    expected = denoise(stack, bundle, device="cpu")
    np.testing.assert_allclose(read_image(target), expected, atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.data), expected, atol=1e-4)
    assert not widget.stack_panel.running


def test_cancel_keeps_finished_frames_and_writing_again_continues(
    viewer_model, qtbot, bundle, tmp_path, notifications, monkeypatch
):
    import threading

    import napari_pinned.denoising.files as scale

    # The first run's worker waits for the cancel before its first frame, so the cancel
    # lands mid-job however fast or loaded the machine is.
    cancel_sent = threading.Event()
    write = scale.iter_denoise_to_zarr

    def held(*args, **kwargs):
        assert cancel_sent.wait(WAIT_MS / 1000)
        yield from write(*args, **kwargs)

    monkeypatch.setattr(scale, "iter_denoise_to_zarr", held)
    stack = _stack(frames=12)
    layer = viewer_model.add_image(da.from_array(stack, chunks=(1, 72, 80)), name="long")
    widget = _dock(viewer_model, qtbot, bundle)
    widget.input_layer.value = layer
    target = tmp_path / "out.zarr"
    panel = widget.stack_panel
    with qtbot.waitSignal(panel.written, timeout=WAIT_MS) as stopped:
        assert panel.start(str(target))
        panel.cancel()
        cancel_sent.set()
    assert stopped.args[0] is None and not target.exists()
    assert "Cancelled" in panel.status_label.text()
    with qtbot.waitSignal(panel.written, timeout=WAIT_MS) as done:
        assert panel.start(str(target))
    assert done.args[0] == target
    np.testing.assert_allclose(read_image(target), denoise(stack, bundle, device="cpu"), atol=1e-4)
    assert not notifications.errors
