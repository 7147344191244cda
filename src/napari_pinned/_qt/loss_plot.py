"""A live plot of the training losses and validation PSNR, drawn with QPainter.

Two stacked panels: every loss term against the step on a log-scaled y axis, and the
validation PSNR (dB) against the step.  The history is kept in full; drawing uses at
most :attr:`LossPlot.max_points` points per curve (the minimum of each bin of steps on
the log panel, so that the downward trend is not hidden by noisy batches), so a repaint
costs the same after 100 steps as after 100 000.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

if TYPE_CHECKING:
    from napari_pinned.training import TrainProgress

__all__ = ["LOSS_TERMS", "LossPlot", "downsample"]

#: Loss terms plotted, in legend order, with their colours.
LOSS_TERMS: dict[str, str] = {
    "total": "#f0f0f0",
    "mse": "#4c9aff",
    "tv": "#ff8c42",
    "sf": "#5bd17a",
    "brightness": "#f25f5c",
    "contrast": "#c58cff",
}
_PSNR_COLOUR = "#ffd23f"
_AXIS_COLOUR = "#8a8a8a"
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 44, 8, 16, 16
_LEGEND_LINE = 14


def downsample(
    x: np.ndarray, y: np.ndarray, max_points: int, *, reduce: str = "min"
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a curve: one per bin of consecutive samples.

    Each bin keeps its last ``x`` and the ``reduce`` ("min", "max" or "mean") of its
    ``y``; the last sample always closes the curve.  NaN values are ignored within a bin.
    """
    n = len(x)
    if n <= max_points:
        return x, y
    edges = np.linspace(0, n, max_points + 1).astype(int)
    starts, ends = edges[:-1], edges[1:]
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    func = {"min": np.fmin.reduceat, "max": np.fmax.reduceat, "mean": np.add.reduceat}[reduce]
    yy = func(y, starts)
    if reduce == "mean":
        yy = yy / (ends - starts)
    return x[ends - 1], yy


class LossPlot(QWidget):
    """Live curves of the training loss terms (log y) and of the validation PSNR.

    Call :meth:`add` with each :class:`~napari_pinned.training.TrainProgress` and
    :meth:`clear` before a new run.  Terms whose values are all zero (λ = 0 and a term
    that vanishes) cannot be shown on a log axis and are left out of the panel.
    """

    max_points = 300

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._capacity = 1024
        self._steps = np.zeros(self._capacity, np.float64)
        self._terms = {name: np.zeros(self._capacity, np.float64) for name in LOSS_TERMS}
        self._count = 0
        self._val_steps: list[float] = []
        self._val_psnr: list[float] = []

    # -- data ------------------------------------------------------------------------
    def add(self, progress: TrainProgress) -> None:
        """Append one step's losses (and its validation PSNR, if it has one)."""
        if self._count == self._capacity:
            self._grow()
        i = self._count
        self._steps[i] = progress.step
        values = progress.loss.as_dict()
        for name, store in self._terms.items():
            store[i] = float(values.get(name, math.nan))
        self._count += 1
        if progress.val_psnr is not None and math.isfinite(progress.val_psnr):
            self._val_steps.append(float(progress.step))
            self._val_psnr.append(float(progress.val_psnr))
        self.update()  # schedules one repaint however many steps arrive before it

    def clear(self) -> None:
        """Forget the history."""
        self._count = 0
        self._val_steps.clear()
        self._val_psnr.clear()
        self.update()

    @property
    def steps(self) -> np.ndarray:
        """Steps recorded so far."""
        return self._steps[: self._count].copy()

    def term(self, name: str) -> np.ndarray:
        """History of one loss term (see :data:`LOSS_TERMS`)."""
        return self._terms[name][: self._count].copy()

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """Steps and PSNR (dB) of the validations so far."""
        return np.array(self._val_steps), np.array(self._val_psnr)

    def _grow(self) -> None:
        self._capacity *= 2
        self._steps = np.resize(self._steps, self._capacity)
        self._terms = {k: np.resize(v, self._capacity) for k, v in self._terms.items()}

    # -- drawing ---------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(320, 240)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            rect = QRectF(self.rect())
            split = rect.top() + rect.height() * 0.62
            loss_rect = QRectF(rect.left(), rect.top(), rect.width(), split - rect.top())
            psnr_rect = QRectF(rect.left(), split, rect.width(), rect.bottom() - split)
            self._draw_losses(painter, loss_rect)
            self._draw_psnr(painter, psnr_rect)
        finally:
            painter.end()

    def _plot_area(self, rect: QRectF) -> QRectF:
        return rect.adjusted(_MARGIN_LEFT, _MARGIN_TOP, -_MARGIN_RIGHT, -_MARGIN_BOTTOM)

    def _x_range(self) -> tuple[float, float]:
        last = self._steps[self._count - 1] if self._count else 1.0
        return 0.0, max(float(last), 1.0)

    def _draw_losses(self, painter: QPainter, rect: QRectF) -> None:
        curves = {}
        for name in LOSS_TERMS:
            y = self._terms[name][: self._count]
            positive = y > 0
            if positive.any():
                logs = np.where(positive, np.log10(np.where(positive, y, 1.0)), np.nan)
                curves[name] = downsample(self._steps[: self._count], logs, self.max_points)
        if curves:
            lows = [np.nanmin(c[1]) for c in curves.values()]
            highs = [np.nanmax(c[1]) for c in curves.values()]
            y_lo, y_hi = math.floor(min(lows)), math.ceil(max(highs))
        else:
            y_lo, y_hi = -3, 0
        y_hi = max(y_hi, y_lo + 1)
        # The legend sits above the plot, in as many lines as the width needs.
        items = [("loss (log):", _AXIS_COLOUR, False)]
        items += [(n, LOSS_TERMS[n], True) for n in curves]
        lines = self._legend_lines(painter, rect.width() - _MARGIN_LEFT - _MARGIN_RIGHT, items)
        area = rect.adjusted(
            _MARGIN_LEFT, _LEGEND_LINE * len(lines) + 4, -_MARGIN_RIGHT, -_MARGIN_BOTTOM
        )
        self._draw_frame(painter, area, "")
        for decade in range(y_lo, y_hi + 1):
            y = self._map(area, 0, decade, (0, 1), (y_lo, y_hi)).y()
            self._draw_tick(painter, area, y, f"1e{decade}")
        x_range = self._x_range()
        for name, (xs, ys) in curves.items():
            self._draw_curve(painter, area, xs, ys, x_range, (y_lo, y_hi), LOSS_TERMS[name])
        self._draw_legend(painter, QPointF(rect.left() + _MARGIN_LEFT, rect.top()), lines)

    def _draw_psnr(self, painter: QPainter, rect: QRectF) -> None:
        area = self._plot_area(rect)
        self._draw_frame(painter, area, "validation PSNR (dB)")
        if not self._val_psnr:
            return
        xs, ys = np.array(self._val_steps), np.array(self._val_psnr)
        xs, ys = downsample(xs, ys, self.max_points, reduce="max")
        lo, hi = float(ys.min()), float(ys.max())
        pad = max((hi - lo) * 0.1, 0.5)
        y_range = (lo - pad, hi + pad)
        for value in (lo, hi):
            y = self._map(area, 0, value, (0, 1), y_range).y()
            self._draw_tick(painter, area, y, f"{value:.1f}")
        self._draw_curve(painter, area, xs, ys, self._x_range(), y_range, _PSNR_COLOUR, dots=True)

    @staticmethod
    def _map(
        area: QRectF, x: float, y: float, x_range: tuple[float, float], y_range: tuple[float, float]
    ) -> QPointF:
        fx = (x - x_range[0]) / (x_range[1] - x_range[0])
        fy = (y - y_range[0]) / (y_range[1] - y_range[0])
        return QPointF(area.left() + fx * area.width(), area.bottom() - fy * area.height())

    def _draw_frame(self, painter: QPainter, area: QRectF, title: str) -> None:
        painter.setPen(QPen(QColor(_AXIS_COLOUR), 1))
        painter.drawRect(area)
        if title:
            painter.drawText(QPointF(area.left(), area.top() - 3), title)
        _, last_step = self._x_range()
        painter.drawText(
            QRectF(area.left(), area.bottom() + 1, area.width(), _MARGIN_BOTTOM),
            int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop),
            f"step {int(last_step)}",
        )

    @staticmethod
    def _draw_tick(painter: QPainter, area: QRectF, y: float, label: str) -> None:
        painter.setPen(QPen(QColor(_AXIS_COLOUR), 1, Qt.PenStyle.DotLine))
        painter.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
        painter.drawText(
            QRectF(0, y - 8, _MARGIN_LEFT - 4, 16),
            int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
            label,
        )

    def _draw_curve(
        self,
        painter: QPainter,
        area: QRectF,
        xs: np.ndarray,
        ys: np.ndarray,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        colour: str,
        *,
        dots: bool = False,
    ) -> None:
        path = QPainterPath()
        pen_down = False
        for x, y in zip(xs, ys, strict=True):
            if not math.isfinite(y):
                pen_down = False
                continue
            point = self._map(area, float(x), float(y), x_range, y_range)
            if pen_down:
                path.lineTo(point)
            else:
                path.moveTo(point)
                pen_down = True
        painter.setPen(QPen(QColor(colour), 1.5))
        painter.drawPath(path)
        if dots and len(xs) <= 60:
            painter.setBrush(QColor(colour))
            for x, y in zip(xs, ys, strict=True):
                painter.drawEllipse(self._map(area, float(x), float(y), x_range, y_range), 2, 2)
            painter.setBrush(Qt.BrushStyle.NoBrush)

    @staticmethod
    def _legend_lines(
        painter: QPainter, width: float, items: list[tuple[str, str, bool]]
    ) -> list[list[tuple[float, str, str, bool]]]:
        """Lay legend entries ``(text, colour, with_swatch)`` out in lines of ``width``;
        each placed entry is ``(x offset, text, colour, with_swatch)``."""
        metrics = painter.fontMetrics()
        lines: list[list[tuple[float, str, str, bool]]] = [[]]
        x = 0.0
        for text, colour, swatch in items:
            entry_width = metrics.horizontalAdvance(text) + (22 if swatch else 8)
            if lines[-1] and x + entry_width > width:
                lines.append([])
                x = 0.0
            lines[-1].append((x, text, colour, swatch))
            x += entry_width
        return lines

    @staticmethod
    def _draw_legend(
        painter: QPainter, origin: QPointF, lines: list[list[tuple[float, str, str, bool]]]
    ) -> None:
        for row, line in enumerate(lines):
            y = origin.y() + _LEGEND_LINE * (row + 1) - 3
            for dx, text, colour, swatch in line:
                x = origin.x() + dx
                if swatch:
                    painter.setPen(QPen(QColor(colour), 2))
                    painter.drawLine(QPointF(x, y - 4), QPointF(x + 12, y - 4))
                    x += 15
                painter.setPen(QPen(QColor(colour if swatch else _AXIS_COLOUR), 1))
                painter.drawText(QPointF(x, y), text)
