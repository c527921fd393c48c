"""A run's live curves: loss, accuracy and the learning rate of each parameter group, per batch and per epoch,
with the phase boundaries marked; a head fitted to convergence adds its own plots (gui/widgets/head_fit_plots.py).
Drawn by time, not by batch (gui/widgets/coalescer.py)."""

from __future__ import annotations

import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from engine.train import events as ev
from gui.widgets.coalescer import Coalescer
from gui.widgets.growing_series import GrowingSeries
from gui.widgets.head_fit_plots import HeadFitPlots
from gui.widgets.plot_ranges import SteadyYRange
from gui.widgets.plot_style import mark_phases, new_plot, series_color

SMOOTHING = 0.98  # EMA factor of the smoothed batch loss (debiased, as fastai's Recorder does)
# How often the curves may redraw. Points are stored as they arrive and drawn at most once per interval, so
# the GUI thread's drawing cost is bounded by time, not by the number of batches. Training on the CPU competes
# with the GUI thread for the same cores (one stolen ms stalls every torch thread waiting at the next barrier),
# so curves redraw once a second there; on a GPU the cores are mostly idle and 4 redraws a second cost nothing.
CURVE_REDRAW_MS = {"cpu": 1000, "accelerator": 250}
LR_FLAT_TOLERANCE = 1e-4  # lr points closer than this (relative) extend a flat segment instead of adding a vertex


def _new_plot(object_name: str, title: str, y_label: str) -> pg.PlotWidget:
    return new_plot(object_name, title, "epoch", y_label, legend=True)


def _new_curve(plot: pg.PlotWidget, name: str, color, width: float = 2, symbol: str | None = None
               ) -> pg.PlotDataItem:
    curve = plot.plot([], [], name=name, pen=pg.mkPen(color, width=width), symbol=symbol, symbolSize=6,
                      symbolBrush=color, symbolPen=None)
    curve.setClipToView(True)
    curve.setDownsampling(auto=True, method="peak")
    return curve


class TrainingCurves(QWidget):
    """Loss, accuracy and learning-rate plots of one run, with the phase boundaries marked on each.

    x is in epochs: a batch point sits at epoch + (batch + 1) / batches, an epoch's metrics at epoch + 1.
    New points are stored at once and drawn by the next coalesced redraw (see CURVE_REDRAW_MS); flush() draws now.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.lossPlot = _new_plot("lossPlot", "Loss", "loss")
        self.accuracyPlot = _new_plot("accuracyPlot", "Accuracy", "accuracy (%)")
        self.lrPlot = _new_plot("lrPlot", "Learning rate per group", "lr")
        self.lrPlot.setLogMode(y=True)
        self.smoothed_loss_curve = _new_curve(self.lossPlot, "train loss (smoothed, per batch)", (150, 150, 150), 1)
        self.train_loss_curve = _new_curve(self.lossPlot, "train loss", series_color(0), symbol="o")
        self.val_loss_curve = _new_curve(self.lossPlot, "val loss", series_color(1), symbol="o")
        self.train_acc_curve = _new_curve(self.accuracyPlot, "train accuracy", series_color(0), symbol="o")
        self.val_acc_curve = _new_curve(self.accuracyPlot, "val accuracy", series_color(1), symbol="o")
        self.lr_curves: dict[str, pg.PlotDataItem] = {}
        self._series = {curve: GrowingSeries() for curve in self._epoch_curves() + [self.smoothed_loss_curve]}
        self._phase_lines: list[tuple[pg.PlotWidget, pg.InfiniteLine]] = []
        self._loss_average = 0.0
        self._loss_count = 0
        self._stale: set[pg.PlotDataItem] = set()
        self._redraw = Coalescer(self, CURVE_REDRAW_MS["accelerator"], self._draw_stale)
        self._y_ranges = {self.lossPlot: SteadyYRange(self.lossPlot),
                          self.accuracyPlot: SteadyYRange(self.accuracyPlot, fixed=(0.0, 100.0)),
                          self.lrPlot: SteadyYRange(self.lrPlot, log=True)}

        self.headFitBox = HeadFitPlots()
        self.headFitBox.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        splitter = QSplitter(Qt.Orientation.Vertical)
        for plot in (self.lossPlot, self.accuracyPlot, self.lrPlot, self.headFitBox):
            splitter.addWidget(plot)
        layout.addWidget(splitter)

    def add_head_fit(self, e: ev.HeadFitted) -> None:
        """A head fitted to convergence: its cross-validation and its final fit, on their own axes."""
        self.headFitBox.show_fit(e)
        self.headFitBox.setVisible(True)

    def _epoch_curves(self) -> list[pg.PlotDataItem]:
        return [self.train_loss_curve, self.val_loss_curve, self.train_acc_curve, self.val_acc_curve]

    def set_redraw_interval(self, ms: int) -> None:
        self._redraw.set_interval(ms)

    def flush(self) -> None:
        """Draw every point received so far now (at the end of a run, or before a screenshot)."""
        self._redraw.flush()

    def _mark_stale(self, curve: pg.PlotDataItem) -> None:
        self._stale.add(curve)
        self._redraw.request()

    def _draw_stale(self) -> None:
        plots = set()
        for curve in self._stale:
            series = self._series[curve]
            curve.setData(series.x, series.y)
            plots.add(curve.getViewBox())
        self._stale.clear()
        for plot, y_range in self._y_ranges.items():
            if plot.getPlotItem().getViewBox() in plots:
                y_range.fit([self._series[c].y for c in plot.getPlotItem().listDataItems() if c in self._series])

    def reset(self) -> None:
        self._redraw.cancel()
        self._stale.clear()
        for curve, series in self._series.items():
            series.clear()
            curve.setData([], [])
        for curve in self.lr_curves.values():  # the next run may have other groups
            self.lrPlot.removeItem(curve)
            del self._series[curve]
        self.lr_curves.clear()
        for plot, line in self._phase_lines:
            plot.removeItem(line)
        self._phase_lines.clear()
        self._loss_average, self._loss_count = 0.0, 0
        for plot in (self.lossPlot, self.accuracyPlot, self.lrPlot):
            plot.enableAutoRange(axis="x")
        for y_range in self._y_ranges.values():
            y_range.reset()
        self.headFitBox.clear()
        self.headFitBox.setVisible(False)

    def set_epoch_range(self, total_epochs: int) -> None:
        """Fix x to the whole run, so that new points do not rescale (and repaint) the axes every time."""
        for plot in (self.lossPlot, self.accuracyPlot, self.lrPlot):
            plot.setXRange(0, max(1, total_epochs), padding=0.02)

    def mark_phases(self, start_epochs: list[int], names: list[str]) -> None:
        for plot in (self.lossPlot, self.accuracyPlot, self.lrPlot):  # names on the top axis, not over curves
            self._phase_lines.extend((plot, line) for line in mark_phases(plot, start_epochs, names))

    def add_batches(self, batches: list[ev.BatchFinished]) -> None:
        smoothed = self._series[self.smoothed_loss_curve]
        touched: set[str] = set()
        for b in batches:
            x = b.epoch + (b.batch + 1) / max(1, b.batches)
            self._loss_count += 1
            self._loss_average = SMOOTHING * self._loss_average + (1 - SMOOTHING) * b.train_loss
            smoothed.append(x, self._loss_average / (1 - SMOOTHING ** self._loss_count))
            for group, lr in b.lrs.items():
                if lr > 0:  # the lr plot is logarithmic
                    self._lr_series_for(group).extend_or_append(x, lr, LR_FLAT_TOLERANCE)
                    touched.add(group)
        self._mark_stale(self.smoothed_loss_curve)
        for group in touched:
            self._mark_stale(self.lr_curves[group])

    def _lr_series_for(self, group: str) -> GrowingSeries:
        if group not in self.lr_curves:
            self.lr_curves[group] = _new_curve(self.lrPlot, group, series_color(len(self.lr_curves)))
            self._series[self.lr_curves[group]] = GrowingSeries()
        return self._series[self.lr_curves[group]]

    def add_epoch(self, e: ev.EpochFinished) -> None:
        """An epoch's metrics, drawn at x = epochs done."""
        x = e.epoch + 1
        for curve, y in ((self.train_loss_curve, e.train_loss), (self.val_loss_curve, e.val_loss),
                         (self.train_acc_curve, 100 * e.train_acc), (self.val_acc_curve, 100 * e.val_acc)):
            self._series[curve].append(x, y)
            self._mark_stale(curve)
