"""The Train dock's loss plot (pyqtgraph): the curves hold what was recorded, the loss
axis is logarithmic, the legend names the curves shown, hovering reads out a step's
values, and empty, single-point, diverged (NaN/inf) and long runs are handled."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from qtpy.QtCore import QPointF, QRectF
from qtpy.QtGui import QImage, QPainter

from napari_pinned._qt.train.loss_plot import (
    LOSS_TERMS,
    LossPlot,
    downsample,
    log_ticks,
    theme_colours,
)
from napari_pinned.nn.losses import LossTerms
from napari_pinned.training.run import TrainProgress


def _progress(step: int, total: float, *, tv: float = 0.1, val: float | None = None):
    terms = LossTerms(total, 0.5 * total, tv, 0.2 * total, 0.01, 0.02)
    return TrainProgress(step, 100, terms, 1e-3, 1.0, 1.0, val_psnr=val)


@pytest.fixture
def plot(qtbot) -> LossPlot:
    widget = LossPlot()
    qtbot.addWidget(widget)
    widget.resize(480, 400)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _fill(plot: LossPlot, steps: int, **kwargs) -> None:
    for step in range(1, steps + 1):
        val = 20.0 + step / 10 if step % 10 == 0 else None
        plot.add(_progress(step, 1.0 / step, val=val, **kwargs))
    plot.refresh()


def _data(curve) -> tuple[np.ndarray, np.ndarray]:
    """The points a curve was given (pyqtgraph keeps None for no data)."""
    x, y = curve.getOriginalDataset()
    return (np.empty(0), np.empty(0)) if x is None else (x, y)


def _legend(plot: LossPlot) -> list[str]:
    return [label.text for _sample, label in plot.legend.items]


def _scene_point(plot: LossPlot, step: float, value: float) -> QPointF:
    """Where the loss plot draws ``(step, value)`` (its y axis is log10), in scene
    coordinates, as the mouse-moved signal gives them."""
    box = plot.loss_item.getViewBox()
    box.autoRange()  # the range follows the data when next painted; now, not then
    return box.mapViewToScene(QPointF(step, math.log10(value)))


def test_the_curves_hold_the_recorded_points_on_a_log_axis(plot):
    _fill(plot, 50)
    steps = np.arange(1, 51, dtype=float)
    curves = plot.curves
    np.testing.assert_array_equal(_data(curves["total"])[0], steps)
    np.testing.assert_allclose(_data(curves["total"])[1], 1.0 / steps)
    np.testing.assert_allclose(_data(curves["mse"])[1], 0.5 / steps)
    np.testing.assert_array_equal(_data(curves["psnr"])[0], np.arange(10, 51, 10))
    np.testing.assert_allclose(_data(curves["psnr"])[1], 20.0 + np.arange(10, 51, 10) / 10)
    assert plot.loss_item.getAxis("left").logMode
    assert not plot.psnr_item.getAxis("left").logMode  # PSNR is already in dB
    assert _legend(plot) == ["total", "MSE", "TV", "SF", "brightness", "contrast", "val PSNR"]
    assert not plot.grab().isNull()


def test_hovering_reads_out_the_step_under_the_mouse(plot):
    _fill(plot, 50)
    plot.on_mouse_moved(_scene_point(plot, 20, 1 / 20))
    text = plot.readout.text()
    assert text.startswith("step 20 · total 0.05 · MSE 0.025 · TV 0.1")
    assert "val PSNR 22.00 dB (step 20)" in text
    assert plot._cursors[0].isVisible() and plot._cursors[0].value() == 20
    # Between two validations, the nearest one; off the plots, the hint again.
    plot.on_mouse_moved(_scene_point(plot, 34, 1 / 34))
    assert plot.readout.text().startswith("step 34 ·")
    assert "(step 30)" in plot.readout.text()
    plot.on_mouse_moved(QPointF(-50, -50))
    assert not plot.readout.text().startswith("step")
    assert not plot._cursors[0].isVisible()


def test_an_empty_and_a_one_point_plot(plot):
    plot.refresh()
    assert all(_data(curve)[0].size == 0 for curve in plot.curves.values())
    assert _legend(plot) == []
    assert plot.readout_text(5) is None
    assert not plot.grab().isNull()

    plot.add(_progress(1, 0.3, val=18.5))
    plot.refresh()
    np.testing.assert_array_equal(_data(plot.curves["total"])[0], [1.0])
    np.testing.assert_array_equal(_data(plot.curves["psnr"])[1], [18.5])
    assert plot.readout_text(40) == (
        "step 1 · total 0.3 · MSE 0.15 · TV 0.1 · SF 0.06 · brightness 0.01 · contrast 0.02"
        " · val PSNR 18.50 dB (step 1)"
    )
    assert not plot.grab().isNull()


def test_a_diverged_run_leaves_gaps_and_reads_out_nan(plot):
    _fill(plot, 10, tv=0.0)  # a vanishing term: no place on a log axis
    plot.add(_progress(11, math.inf, tv=0.0))
    plot.add(_progress(12, math.nan, tv=0.0, val=math.nan))
    plot.refresh()
    total = plot.curves["total"]
    assert np.all(np.isfinite(_data(total)[1][:10])) and np.all(np.isnan(_data(total)[1][10:]))
    assert _data(plot.curves["tv"])[0].size == 0
    assert "TV" not in _legend(plot) and "total" in _legend(plot)
    assert plot.validation[0].size == 1  # a NaN validation is not a point
    assert plot.readout_text(11).startswith("step 11 · total inf · MSE inf")
    assert plot.readout_text(12).startswith("step 12 · total nan")
    box = plot.loss_item.getViewBox()
    box.autoRange()
    assert np.all(np.isfinite(box.viewRange()))
    assert not plot.grab().isNull()


def test_a_long_run_redraws_few_points_on_the_same_curves(plot):
    curves = plot.curves
    for step in range(1, 10_001):
        plot.add(_progress(step, 1.0 / step, val=25.0 if step % 500 == 0 else None))
        if step % 1000 == 0:
            plot.refresh()
    assert plot.steps.size == 10_000 and plot.term("total")[-1] == pytest.approx(1e-4)
    total = plot.curves["total"]
    assert _data(total)[0].size <= plot.max_points and _data(total)[0][-1] == 10_000
    assert plot.curves == curves  # the same items, their data replaced
    assert len(plot.loss_item.listDataItems()) == len(LOSS_TERMS)
    assert plot.curves["psnr"].opts["symbol"] == "o"  # 20 validations: marked
    plot.clear()
    assert plot.steps.size == 0 and _data(plot.curves["total"])[0].size == 0
    assert _legend(plot) == []


def test_colours_follow_napari_themes(plot):
    for theme in ("dark", "light"):
        background, text = theme_colours(theme)
        plot.set_colours(background, text)
        assert plot.graphics.backgroundBrush().color().name() == background
        assert plot.loss_item.getAxis("left").textPen().color().name() == text
        assert plot.curves["total"].opts["pen"].color().name() == text


def test_downsample_keeps_the_minimum_of_each_bin_and_the_last_point():
    x = np.arange(1, 1001, dtype=float)
    y = np.cos(x) + 2
    xs, ys = downsample(x, y, 100)
    assert len(xs) == 100 and xs[-1] == 1000
    np.testing.assert_allclose(ys, y.reshape(100, 10).min(axis=1))
    xs2, _ = downsample(x[:50], y[:50], 100)
    assert xs2 is not None and len(xs2) == 50


def test_the_wheel_over_the_plot_leaves_its_range_alone(plot, qtbot):
    # The plot lives in a scrolling dock: a wheel turn there must not zoom the curves.
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtGui import QWheelEvent
    from qtpy.QtWidgets import QApplication

    _fill(plot, 50)
    box = plot.loss_item.getViewBox()
    box.autoRange()
    before = [list(r) for r in box.viewRange()]
    view = plot.graphics.viewport()
    centre = plot.graphics.mapFromScene(box.mapViewToScene(box.viewRect().center()))
    event = QWheelEvent(
        QPointF(centre),
        QPointF(view.mapToGlobal(centre)),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view, event)
    np.testing.assert_allclose(box.viewRange(), before)


def _drawn_labels(axis) -> list[tuple[QRectF, str]]:
    """The tick labels ``axis`` draws now: where, and what (pyqtgraph's own draw specs)."""
    image = QImage(axis.boundingRect().size().toSize(), QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        _line, _ticks, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(rect, text) for rect, _flags, text in texts]


@pytest.mark.parametrize("height", [320, 400, 600])
@pytest.mark.parametrize(
    ("low", "high"), [(0.05, 0.1), (0.03, 0.2), (0.02, 1.0), (0.005, 0.5), (1e-4, 1.0)]
)
def test_the_log_axis_labels_never_overlap(plot, qtbot, height, low, high):
    from qtpy.QtWidgets import QApplication

    plot.resize(480, height)
    plot.loss_item.setYRange(math.log10(low), math.log10(high), padding=0)
    for _ in range(5):
        QApplication.processEvents()
    labels = sorted(_drawn_labels(plot.loss_item.getAxis("left")), key=lambda lr: lr[0].top())
    # At least two labelled ticks: the axis can be read.
    assert len(labels) >= 2, labels
    for (above, text), (below, next_text) in itertools.pairwise(labels):
        assert not above.intersects(below), (text, next_text)


@pytest.mark.parametrize("pixels", [40, 150, 400, 2000])
def test_log_ticks_label_what_fits_and_tick_the_rest(pixels):
    low, high = math.log10(0.003), math.log10(0.7)
    labelled, minor = log_ticks(low, high, pixels, label=15)
    gaps = np.diff(sorted(labelled)) * pixels / (high - low)
    assert len(labelled) >= 2 and np.all(gaps >= 15)
    assert not set(labelled) & set(minor)
    # Every 1…9 × 10ⁿ in range has a tick, labelled or not, while the ticks stay apart.
    every = {round(d + math.log10(m), 9) for d in range(-3, 0) for m in range(1, 10)}
    every = {v for v in every if low <= v <= high}
    if pixels >= 400:
        assert {round(v, 9) for v in labelled + minor} == every
    if pixels >= 2000:
        assert {round(v, 9) for v in labelled} == every  # room to label them all
