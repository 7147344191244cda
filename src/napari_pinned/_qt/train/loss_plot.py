"""A live plot of the training losses and validation PSNR, drawn by pyqtgraph.

Two plots share the step axis: every loss term on a log-scaled y axis, and the
validation PSNR (dB).  One legend names every curve; hovering shows the step under the
mouse and the recorded values there.  The history is kept in full; the curves get at
most :attr:`LossPlot.max_points` points each (the minimum of each bin of steps for the
losses, so that noisy batches do not hide the downward trend), so a redraw costs the
same after 100 steps as after 100 000.

:meth:`LossPlot.add` only records (the Train dock calls it for every step);
:meth:`LossPlot.refresh` hands the records to the existing curves, and the dock calls it
at the runner's throttled progress updates.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
import qtpy
from qtpy.QtCore import QPointF, QSize, Qt
from qtpy.QtGui import QFontMetricsF, QResizeEvent
from qtpy.QtWidgets import QApplication, QLabel, QSizePolicy, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from napari_pinned.training.run import TrainProgress

__all__ = ["LOSS_TERMS", "LogAxis", "LossPlot", "downsample", "log_ticks", "theme_colours"]

# pyqtgraph picks its Qt binding by itself (PyQt6 first among those imported); widgets of
# two bindings cannot share a layout, so say so plainly instead of a TypeError later.
if pg.Qt.QT_LIB != qtpy.API_NAME:  # pragma: no cover - needs two bindings imported
    raise ImportError(
        f"pyqtgraph uses {pg.Qt.QT_LIB} but napari uses {qtpy.API_NAME}; set the "
        f"environment variable PYQTGRAPH_QT_LIB={qtpy.API_NAME}"
    )

#: Loss terms plotted, in legend order.
LOSS_TERMS: tuple[str, ...] = ("total", "mse", "tv", "sf", "brightness", "contrast")
_LABELS = {
    "total": "total",
    "mse": "MSE",
    "tv": "TV",
    "sf": "SF",
    "brightness": "brightness",
    "contrast": "contrast",
}
# Mid-tones, readable on napari's dark and light themes; the total loss takes the
# theme's text colour (white on dark, black on light).
_COLOURS = {
    "mse": "#4c9aff",
    "tv": "#ff8c42",
    "sf": "#3fb866",
    "brightness": "#f25f5c",
    "contrast": "#b07cff",
}
_PSNR_COLOUR = "#e0a800"
_PSNR_LABEL = "val PSNR"
#: Validation points are marked while there are at most this many.
_MAX_MARKED = 60
#: Width (px) a legend entry is given: a sample line and the longest label.
_LEGEND_ENTRY_WIDTH = 125
_HINT = "Hover over the curves for the values at a step."


def downsample(
    x: np.ndarray, y: np.ndarray, max_points: int, *, reduce: str = "min"
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a curve: one per bin of consecutive samples.

    Parameters
    ----------
    x, y : numpy.ndarray
        The curve, ``x`` increasing.
    max_points : int
        Most points returned.
    reduce : {"min", "max", "mean"}
        How a bin's ``y`` values become one; NaN values are ignored within a bin.

    Returns
    -------
    x, y : numpy.ndarray
        Each bin's last ``x`` and reduced ``y``; the last sample always closes the curve.
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


def theme_colours(theme: str) -> tuple[str, str]:
    """Background and text colour (hex) of the napari theme called ``theme``."""
    from napari.utils.theme import get_theme

    colours = get_theme(theme)
    return colours.background.as_hex(), colours.text.as_hex()


#: Tick values labelled in each decade of the log axis, most first: each set is used when
#: its closest two labels (10/9, 10/8, … of a decade apart) leave room for a label.
_MANTISSAS: tuple[tuple[int, ...], ...] = (
    tuple(range(1, 10)),
    (1, 2, 3, 5),
    (1, 2, 5),
    (1, 3),
    (1,),
)
#: Every how many decades a label goes when even one per decade is too many.
_DECADE_STEPS = (1, 2, 3, 5, 10, 20)


def _closest_gap(mantissas: tuple[int, ...]) -> float:
    """Smallest distance (decades) between two labels of ``mantissas`` repeated each decade."""
    logs = np.log10([*mantissas, 10])
    return float(np.min(np.diff(logs)))


def log_ticks(low: float, high: float, pixels: float, label: float) -> list[list[float]]:
    """Tick positions (log10 of the values) of a log axis: the labelled, then the others.

    pyqtgraph labels all of 1…9 in every decade when the axis spans under about three
    decades, and 0.08, 0.09 and 0.1 lie a few pixels apart.  Here only as many values per
    decade are labelled as the axis has room for (1, 2, 5 ×10ⁿ and so on) and the rest of
    1…9 are ticks without a label.

    Parameters
    ----------
    low, high : float
        The axis range, in decades (log10 of the values).
    pixels : float
        Length of the axis on screen.
    label : float
        Least distance (px) between two labels' centres: the height of a label.

    Returns
    -------
    list of list of float
        The labelled ticks, then the unlabelled ones (pyqtgraph's tick levels).
    """
    low, high = min(low, high), max(low, high)
    span = high - low
    if span <= 0 or pixels <= 0:
        return [[], []]
    per_decade = pixels / span
    first, last = math.floor(low), math.ceil(high)
    everything = [d + math.log10(m) for d in range(first, last) for m in range(1, 10)]
    inside = [v for v in everything if low <= v <= high]
    for mantissas in _MANTISSAS:
        if _closest_gap(mantissas) * per_decade >= label:
            chosen = {d + math.log10(m) for d in range(first, last) for m in mantissas}
            labelled = [v for v in inside if v in chosen]
            return [labelled, [v for v in inside if v not in chosen]]
    step = next((k for k in _DECADE_STEPS if k * per_decade >= label), _DECADE_STEPS[-1])
    labelled = [float(d) for d in range(first, last + 1) if d % step == 0 and low <= d <= high]
    # Unlabelled decades only while they stay apart; 2…9 would be a smear.
    minor = [float(d) for d in range(first, last + 1) if low <= d <= high and d % step]
    return [labelled, minor if per_decade >= 4 else []]


class LogAxis(pg.AxisItem):
    """pyqtgraph's axis with :func:`log_ticks` in log mode: labels that never overlap."""

    def __init__(self, orientation: str = "left") -> None:
        super().__init__(orientation)
        self.setStyle(maxTextLevel=0)  # the unlabelled level stays unlabelled

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        font = self.style["tickFont"] or QApplication.font()
        height = QFontMetricsF(font).height()
        labelled, minor = log_ticks(minVal, maxVal, size, height)
        return [(None, labelled), (None, minor)]


def _format(value: float) -> str:
    # "nan" and "inf" as they are: a diverged run should read as one.
    return f"{value:.3g}"


class LossPlot(QWidget):
    """Live curves of the training loss terms (log y) and of the validation PSNR.

    Call :meth:`add` with each :class:`~napari_pinned.training.run.TrainProgress`,
    :meth:`refresh` to show what was added, and :meth:`clear` before a new run.  Terms
    without a positive value (a term that vanishes) cannot be shown on a log axis and
    are left out of the plot and the legend; non-finite and zero values leave a gap.

    Attributes
    ----------
    loss_item, psnr_item : pyqtgraph.PlotItem
        The two plots (the loss plot's y axis is logarithmic).
    legend : pyqtgraph.LegendItem
        One entry per curve shown.
    readout : QLabel
        The values under the mouse.
    """

    max_points = 500

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._capacity = 1024
        self._steps = np.zeros(self._capacity, np.float64)
        self._terms = {name: np.zeros(self._capacity, np.float64) for name in LOSS_TERMS}
        self._count = 0
        self._val_steps: list[float] = []
        self._val_psnr: list[float] = []
        self._stale = False
        self._shown: set[str] = set()  # curves with a legend entry

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumHeight(260)
        # The legend has a row of its own above the plots: inside, it would hide curves.
        self.legend = pg.LegendItem(colCount=3, horSpacing=4, labelTextSize="8pt")
        self.graphics.addItem(self.legend, row=0, col=0)
        self.loss_item = self.graphics.addPlot(row=1, col=0, axisItems={"left": LogAxis()})
        self.psnr_item = self.graphics.addPlot(row=2, col=0)
        # The loss plot gets most of the height; the PSNR changes slowly.
        self.graphics.ci.layout.setRowStretchFactor(1, 3)
        self.graphics.ci.layout.setRowStretchFactor(2, 2)
        self.loss_item.setLogMode(y=True)
        self.loss_item.setLabel("left", "loss")
        self.psnr_item.setLabel("left", "PSNR", units="dB")
        self.psnr_item.setLabel("bottom", "step")
        self.psnr_item.setXLink(self.loss_item)
        # The PSNR plot below numbers the shared step axis; the loss plot keeps the height.
        self.loss_item.getAxis("bottom").setStyle(showValues=False)
        for item in (self.loss_item, self.psnr_item):
            item.showGrid(x=True, y=True, alpha=0.25)
            # Both y axes equally wide, so that the linked x axes line up.
            item.getAxis("left").setWidth(60)
            # The plot sits in a scrolling dock: the wheel scrolls the dock, not the plot
            # (ranges stay in the right-click menu).
            item.setMouseEnabled(x=False, y=False)
        # Losses are small numbers: "0.01" on the axis, not "10 (x0.001)".
        self.loss_item.getAxis("left").enableAutoSIPrefix(False)
        # Per item, not pyqtgraph's global options (they would change other plugins' plots).
        self._curves = {
            name: self.loss_item.plot(connect="finite", antialias=True) for name in LOSS_TERMS
        }
        self._psnr_curve = self.psnr_item.plot(
            pen=pg.mkPen(_PSNR_COLOUR, width=1.5),
            symbol="o",
            symbolSize=5,
            symbolPen=None,
            symbolBrush=_PSNR_COLOUR,
            antialias=True,
        )
        # The hover cursor: a vertical line through both plots at the step read out.
        self._cursors = [pg.InfiniteLine(angle=90, movable=False) for _ in range(2)]
        for item, cursor in zip((self.loss_item, self.psnr_item), self._cursors, strict=True):
            cursor.hide()
            item.addItem(cursor, ignoreBounds=True)
        self.readout = QLabel(_HINT)
        self.readout.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        layout.addWidget(self.readout)
        self.graphics.scene().sigMouseMoved.connect(self.on_mouse_moved)
        self.set_colours(*theme_colours("dark"))  # napari's default; docks follow theirs

    # -- data ------------------------------------------------------------------------
    def add(self, progress: TrainProgress) -> None:
        """Record one step's losses (and its validation PSNR, if it has one).

        Cheap: the curves change at the next :meth:`refresh`.
        """
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
        self._stale = True

    def clear(self) -> None:
        """Forget the history (the plot empties at once)."""
        self._count = 0
        self._val_steps.clear()
        self._val_psnr.clear()
        self._stale = True
        self.refresh()
        self._show_readout(None)

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

    @property
    def curves(self) -> dict[str, pg.PlotDataItem]:
        """The curves, by loss term and ``"psnr"``; made once, their data replaced."""
        return {**self._curves, "psnr": self._psnr_curve}

    def _grow(self) -> None:
        self._capacity *= 2
        self._steps = np.resize(self._steps, self._capacity)
        self._terms = {k: np.resize(v, self._capacity) for k, v in self._terms.items()}

    # -- display ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the records added since the last refresh (nothing to do if none)."""
        if not self._stale:
            return
        self._stale = False
        steps = self._steps[: self._count]
        shown = set()
        for name, curve in self._curves.items():
            y = self._terms[name][: self._count]
            # A log axis has no place for zero, negative or non-finite values: gaps.
            usable = np.isfinite(y) & (y > 0)
            if usable.any():
                shown.add(name)
                curve.setData(*downsample(steps, np.where(usable, y, np.nan), self.max_points))
            else:
                curve.setData([], [])
        xs, ys = downsample(*self.validation, self.max_points, reduce="max")
        self._psnr_curve.setData(xs, ys)
        self._psnr_curve.setSymbol("o" if len(xs) <= _MAX_MARKED else None)
        if self._val_psnr:
            shown.add("psnr")
        if shown != self._shown:
            self._shown = shown
            self._fill_legend()

    def _fill_legend(self, columns: int | None = None) -> None:
        # Rebuilt only when the curves shown or the columns change (a few times per run).
        self.legend.clear()
        if columns is not None:
            # Changed while empty: pyqtgraph re-lays out a full legend wrongly.
            self.legend.setColumnCount(columns)
        for name in LOSS_TERMS:
            if name in self._shown:
                self.legend.addItem(self._curves[name], _LABELS[name])
        if "psnr" in self._shown:
            self.legend.addItem(self._psnr_curve, _PSNR_LABEL)

    def set_colours(self, background: str, text: str) -> None:
        """Background and text colour (of axes, legend and the total loss), per widget:
        pyqtgraph's global options would change every other plugin's plots too."""
        self.graphics.setBackground(background)
        for item in (self.loss_item, self.psnr_item):
            for side in ("left", "bottom"):
                axis = item.getAxis(side)
                axis.setPen(text)
                axis.setTextPen(text)
        self.legend.setLabelTextColor(text)
        # A veiled background: the legend stays readable over curves and grid lines.
        veil = pg.mkColor(background)
        veil.setAlpha(200)
        self.legend.setBrush(veil)
        for name, curve in self._curves.items():
            curve.setPen(pg.mkPen(_COLOURS.get(name, text), width=1.5))
        for cursor in self._cursors:
            cursor.setPen(pg.mkPen(text, width=1, style=Qt.PenStyle.DashLine))
        self._fill_legend()  # the entries' text takes the new colour

    def sizeHint(self) -> QSize:
        return QSize(320, 380)

    def hasHeightForWidth(self) -> bool:
        # The wrapped readout would make layouts ask the height for a width instead of
        # the hint, and the plot would take ~520 px of the dock from its settings.
        return False

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        # As many legend columns as the width holds: the legend's width is the plots'
        # minimum, and a wider one would push their right edge out of view.
        columns = max(1, min(4, (self.width() - 16) // _LEGEND_ENTRY_WIDTH))
        if columns != self.legend.columnCount:
            self._fill_legend(columns)

    # -- hover readout ---------------------------------------------------------------
    def on_mouse_moved(self, pos: QPointF) -> None:
        """Read out the values at the step under ``pos`` (scene coordinates)."""
        for item in (self.loss_item, self.psnr_item):
            box = item.getViewBox()
            if box.sceneBoundingRect().contains(pos):
                self._show_readout(box.mapSceneToView(pos).x())
                return
        self._show_readout(None)

    def _show_readout(self, step: float | None) -> None:
        text = None if step is None else self.readout_text(step)
        self.readout.setText(text or _HINT)
        for cursor in self._cursors:
            cursor.setVisible(text is not None)
            if text is not None:
                cursor.setValue(self._steps[self._nearest(self._steps[: self._count], step)])

    @staticmethod
    def _nearest(steps: np.ndarray, step: float) -> int:
        """Index of the value of the increasing ``steps`` nearest to ``step``."""
        i = int(np.searchsorted(steps, step))
        if i == len(steps) or (i > 0 and step - steps[i - 1] <= steps[i] - step):
            i -= 1
        return i

    def readout_text(self, step: float) -> str | None:
        """What the readout says for the mouse at ``step``: the nearest recorded step's
        losses and the nearest validation; None before the first step."""
        if self._count == 0:
            return None
        i = self._nearest(self._steps[: self._count], step)
        names = [n for n in LOSS_TERMS if n in self._shown] or ["total"]
        parts = [f"step {int(self._steps[i])}"]
        parts += [f"{_LABELS[n]} {_format(self._terms[n][i])}" for n in names]
        if self._val_steps:
            val_steps = np.asarray(self._val_steps)
            j = self._nearest(val_steps, step)
            parts.append(f"val PSNR {self._val_psnr[j]:.2f} dB (step {int(val_steps[j])})")
        return " · ".join(parts)
