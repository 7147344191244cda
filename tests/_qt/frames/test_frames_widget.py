"""Frame-series dock: registering a stack adds the aligned stack and the drift-corrected
mean (equal to the core's, placed over the stack), the even/odd halves on request; only
stacks are offered; cancelling and bad data add nothing."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt, QThreadPool
from scipy import ndimage

from napari_pinned._qt.frames.widget import (
    REFERENCE_LABELS,
    FramesWidget,
    aligned_name,
    describe_drift,
    half_name,
    mean_name,
)
from napari_pinned._util.jobs import run_job
from napari_pinned.denoising.registration import register_frames
from napari_pinned.physics.simulate import simulate

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    """Six noisy 80² frames of SrTiO3 drifting by about a pixel per frame."""
    rng = np.random.default_rng(0)
    base = simulate("SrTiO3", shape=112, pixel_size=0.1, seed=0).image.astype(np.float64)
    motion = np.arange(6)[:, None] * np.array([0.9, -0.6])
    frames = [ndimage.shift(base, m, order=3, mode="nearest")[16:96, 16:96] for m in motion]
    return rng.poisson(np.clip(np.stack(frames), 0, None) / 255.0 * 30.0).astype(np.float32)


def _dock(viewer) -> FramesWidget:
    widget = FramesWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Frame series")
    return widget


def _run(qtbot, widget: FramesWidget):
    with qtbot.waitSignal(widget.registration_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.register_button, Qt.MouseButton.LeftButton)
    return finished.args[0]


def test_register_adds_aligned_stack_mean_and_halves(make_napari_viewer, qtbot, series):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    original = series.copy()
    stack = viewer.add_image(
        series,
        name="series",
        scale=(1.0, 0.1, 0.1),
        translate=(0.0, 2.0, 3.0),
        metadata={"microscope": "test"},
    )
    assert widget.stack_layer.value is stack
    widget.halves_check.setChecked(True)
    mean = _run(qtbot, widget)

    expected = run_job(register_frames(series))
    assert mean is viewer.layers[mean_name("series")]
    np.testing.assert_array_equal(mean.data, expected.mean)
    aligned = viewer.layers[aligned_name("series")]
    np.testing.assert_array_equal(aligned.data, expected.aligned)
    assert tuple(aligned.scale) == (1.0, 0.1, 0.1) and tuple(aligned.translate) == (0, 2, 3)
    # The mean is the common region, placed where it lies in the stack.
    rows, cols = expected.crop
    assert tuple(mean.scale) == pytest.approx((0.1, 0.1))
    assert tuple(mean.translate) == pytest.approx((2.0 + 0.1 * rows.start, 3.0 + 0.1 * cols.start))
    assert mean.metadata["microscope"] == "test" and mean.metadata["source"] == "series"
    assert np.allclose(mean.metadata["registration"]["shifts"], expected.shifts)

    even, odd = (viewer.layers[half_name("series", h)] for h in ("even", "odd"))
    np.testing.assert_array_equal(even.data, expected.halves()[0])
    np.testing.assert_array_equal(odd.data, expected.halves()[1])
    assert even.metadata["noise2noise"] == {"half": "even", "partner": "series odd mean"}
    assert tuple(odd.translate) == tuple(mean.translate)

    # The drift is about 5 px; with a scale of 0.1 it is also said in Å.
    assert widget.drift_label.text() == describe_drift(expected, 0.1)
    assert f"Max drift {expected.max_drift:.2f} px ({expected.max_drift * 0.1:.2f} Å)" in (
        widget.drift_label.text()
    )
    assert 4.0 < expected.max_drift < 7.0
    assert np.array_equal(stack.data, original) and stack.data is series
    assert widget.register_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_only_stacks_are_offered_and_a_2d_image_is_explained(
    make_napari_viewer, notifications, series
):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.add_image(series[0], name="single frame")
    viewer.add_image(np.zeros((4, 32, 32, 3), np.uint8), name="colour", rgb=True)
    assert widget.stack_layer.choices == ()
    assert not widget.register()
    assert "'single frame' is a single 2D image" in notifications.errors[-1]
    assert [layer.name for layer in viewer.layers] == ["single frame", "colour"]
    viewer.add_image(series, name="series")
    assert [c.name for c in widget.stack_layer.choices] == ["series"]
    assert widget.reference == "mean"
    widget.reference_combo.setCurrentIndex(list(REFERENCE_LABELS.values()).index("first"))
    assert widget.reference == "first"


def test_cancel_adds_no_layer(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    stack = np.random.default_rng(1).uniform(0, 255, (40, 96, 96)).astype(np.float32)
    viewer.add_image(stack, name="long series")
    with qtbot.waitSignal(widget.registration_finished, timeout=WAIT_MS) as finished:
        assert widget.register()
        qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    assert finished.args[0] is None
    assert [layer.name for layer in viewer.layers] == ["long series"]
    assert any("cancelled" in m for m in notifications.infos)
    assert widget.register_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_bad_frames_are_reported_and_add_nothing(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    stack = np.ones((3, 32, 32), np.float32)
    stack[1, 5, 5] = np.nan
    viewer.add_image(stack, name="broken")
    assert _run(qtbot, widget) is None
    assert (
        notifications.errors[-1].startswith("Frame series: ") and "NaN" in notifications.errors[-1]
    )
    assert [layer.name for layer in viewer.layers] == ["broken"]


def test_closing_the_viewer_mid_run_stops_the_worker(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    stack = np.random.default_rng(2).uniform(0, 255, (40, 96, 96)).astype(np.float32)
    viewer.add_image(stack, name="long series")
    assert widget.register()
    job = widget._runner.job
    viewer.close()
    assert job.done and not widget.is_running
    assert QThreadPool.globalInstance().waitForDone(1000)


def test_the_gan_sample_stack_registers_without_lattice_jumps(make_napari_viewer, qtbot):
    """File → Open Sample → GaN [11-20] noisy stack: a drift-free stack at CDN level 2.
    Frames once jumped by a lattice period (27.6 px; "Max drift 55.85 px") and the mean
    was cropped to 255×200."""
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open_sample("napari-pinned", "gan_stack")
    stack = widget.stack_layer.value
    assert stack is not None and stack.ndim == 3
    mean = _run(qtbot, widget)
    shifts = np.asarray(mean.metadata["registration"]["shifts"])
    drift = float(np.hypot(*shifts.T).max())
    # A jump is a whole period; the noise of CDN 2 leaves sub-pixel to pixel errors.
    assert drift < 1.0, widget.drift_label.text()
    assert widget.drift_label.text().startswith(f"Max drift {drift:.2f} px ({drift * 0.1:.2f} Å)")
    # Sub-pixel shifts round the common region inwards by at most one pixel per side.
    h, w = stack.data.shape[1:]
    assert mean.data.shape[0] >= h - 2 and mean.data.shape[1] >= w - 2
