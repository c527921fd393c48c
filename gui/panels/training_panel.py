"""The Training tab: start, pause, stop and resume a run; live curves, progress, device, log, freeze check; and,
before Start, what the run will cost (engine/train/estimate.py, measured off the GUI thread).

The panel reads the recipe from the document and drives the run through a TrainingController (which the main
window owns, so that closing the window can stop the run). Everything it shows arrives as the engine's own event
objects (engine/train/events.py) and is dispatched on their type; the log's words are engine/train/narrate.py's.
A head fitted to convergence has no batches: its progress is the fit's (cross-validation fits, then L-BFGS
iterations), and its curves have their own x axes — held-out accuracy against the L2 strength, the final fit's
objective against the L-BFGS iteration — while the epoch plots show it as the one epoch it is.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it
import torch
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.errors import RecipeError
from engine.train import events as ev
from engine.train.devices import pick_device
from engine.train.metrics import batch_event, epoch_event
from engine.train.narrate import (
    describe,
    finish_line,
    freeze_line,
    l2_text,
    restored_line,
    setback_line,
    stop_line,
)
from engine.train.runs import SUMMARY_FILE, checkpoint_path, list_runs, read_batches, read_metrics
from gui.document import RecipeDocument
from gui.jobs.board import TrainingWaiter, job_board
from gui.jobs.progress_view import JobProgress
from gui.jobs.runner import JobRunner
from gui.start_checks import start_refusal
from gui.widgets.buttons import named_button
from gui.widgets.device_choice import DeviceChoice
from gui.widgets.formatting import duration_text
from gui.widgets.log_view import FollowingLog
from gui.widgets.plot_ranges import SteadyYRange
from gui.widgets.plot_style import mark_phases, new_plot, series_color
from gui.widgets.tooltips import set_tooltips
from gui.workers.training import TrainingController, runs_root_for

TIPS = {
    "lossPlot": "Training loss per batch (grey, smoothed) and per epoch, validation loss per epoch; dashed lines "
                "mark phase starts. Drag to pan, wheel to zoom, “A” to fit again",
    "accuracyPlot": "Training and validation accuracy per epoch",
    "lrPlot": "The learning rate each parameter group trained with, per batch (log scale)",
    "trainProgress": "The whole run: every phase's epochs",
    "runLog": "What the run did, epoch by epoch; it follows new lines unless you scroll up",
    "setbackLabel": "A phase that made the model worse than the phase before it left it: by how much, and the "
                    "likely causes read off the phase's settings. best.pt keeps the best epoch",
}
SMOOTHING = 0.98  # EMA factor of the smoothed batch loss (debiased, as fastai's Recorder does)
PROGRESS_STEPS = 1000  # the progress bar counts per-mille of the whole run
# How often the live view may redraw. Points are stored as they arrive and drawn at most once per interval, so
# the GUI thread's drawing cost is bounded by time, not by the number of batches. Training on the CPU competes
# with the GUI thread for the same cores (one stolen ms stalls every torch thread waiting at the next barrier),
# so curves redraw once a second there; on a GPU the cores are mostly idle and 4 redraws a second cost nothing.
CURVE_REDRAW_MS = {"cpu": 1000, "accelerator": 250}
PROGRESS_REDRAW_MS = 250
PAUSED_PREFIX = "Paused — "
LR_FLAT_TOLERANCE = 1e-4  # lr points closer than this (relative) extend a flat segment instead of adding a vertex


def expected_device(requested: str = "auto") -> tuple[str, str]:
    """(what a run would train on, a warning or "") for a recipe's `device` field."""
    try:
        device, warning = pick_device(requested)
    except RecipeError as exc:
        return requested, exc.message
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})", warning
    if device.type == "mps":
        return "MPS (Apple GPU)", warning
    return device.type.upper(), warning


class Coalescer:
    """Calls `redraw` at most once per interval, with whatever is newest then; flush() calls it now if due."""

    def __init__(self, parent: QWidget, interval_ms: int, redraw):
        self._redraw = redraw
        self._pending = False
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.flush)

    @property
    def interval_ms(self) -> int:
        return self._timer.interval()

    def set_interval(self, ms: int) -> None:
        self._timer.setInterval(ms)

    def request(self) -> None:
        self._pending = True
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        self._timer.stop()
        if self._pending:
            self._pending = False
            self._redraw()

    def cancel(self) -> None:
        self._timer.stop()
        self._pending = False


class GrowingSeries:
    """x/y float arrays that grow by doubling, so appending is cheap and setData gets views, not copies."""

    def __init__(self, capacity: int = 256):
        self._x = np.empty(capacity)
        self._y = np.empty(capacity)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, x: float, y: float) -> None:
        if self._n == len(self._x):
            self._x = np.concatenate([self._x, np.empty(len(self._x))])
            self._y = np.concatenate([self._y, np.empty(len(self._y))])
        self._x[self._n], self._y[self._n] = x, y
        self._n += 1

    def extend_or_append(self, x: float, y: float, rel_tol: float) -> None:
        """Append, unless the last segment is flat within rel_tol and y continues it: then that segment is
        stretched to x. A learning rate that stays put for 100 000 batches is then 2 points, a step schedule 2
        per step, and the line drawn is the same."""
        n = self._n
        if n >= 2:
            last, before = self._y[n - 1], self._y[n - 2]
            if abs(last - before) <= rel_tol * abs(before) and abs(y - last) <= rel_tol * abs(last):
                self._x[n - 1] = x
                return
        self.append(x, y)

    def clear(self) -> None:
        self._n = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[: self._n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self._n]


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


class HeadFitPlots(QWidget):
    """The fits of heads fitted to convergence: held-out accuracy and loss against the L2 strength (the
    cross-validation that chose it, the winner marked), and the final fit's objective against its L-BFGS
    iterations. One curve per fitted phase."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("headFitBox")
        self.cvPlot = _new_plot("headFitCvPlot", "Head fit: cross-validation", "held-out accuracy (%)")
        self.cvPlot.setLabel("bottom", "L2 strength")
        self.cvPlot.setLogMode(x=True)
        self.pathPlot = _new_plot("headFitPathPlot", "Head fit: final fit", "loss + penalty")
        self.pathPlot.setLabel("bottom", "L-BFGS iteration")
        self.cvPlot.setToolTip("Cross-validation on the training features: held-out accuracy for each L2 strength "
                               "tried; the marked strength won and was fitted on all training features")
        self.pathPlot.setToolTip("The final fit: the training loss plus the L2 penalty after each L-BFGS iteration "
                                 "(it flattens when the head has converged)")
        self._items: list[tuple[pg.PlotWidget, object]] = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.cvPlot)
        layout.addWidget(self.pathPlot)

    def show_fit(self, e: ev.HeadFitted) -> None:
        color = series_color(len(self._items) // 3)
        name = f"phase {e.phase_index + 1}"
        if e.cv_acc:
            self._add(self.cvPlot, self.cvPlot.plot(e.grid, [100 * a for a in e.cv_acc], name=name,
                                                    pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5,
                                                    symbolBrush=color, symbolPen=None))
        chosen = pg.InfiniteLine(pos=float(np.log10(e.l2)), angle=90, movable=False,
                                 pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine),
                                 label=f"L2 {l2_text(e.l2)}", labelOpts={"position": 0.1, "color": color})
        self.cvPlot.addItem(chosen)
        self._add(self.cvPlot, chosen)
        self._add(self.pathPlot, self.pathPlot.plot(e.curve_iterations, e.curve_objective, name=name,
                                                    pen=pg.mkPen(color, width=2)))

    def _add(self, plot: pg.PlotWidget, item) -> None:
        self._items.append((plot, item))

    def clear(self) -> None:
        for plot, item in self._items:
            plot.removeItem(item)
        self._items.clear()

    def curves(self) -> list[pg.PlotDataItem]:
        return [item for _, item in self._items if isinstance(item, pg.PlotDataItem)]


def epoch_costs(estimate, phase_start_epochs: list[int], total_epochs: int) -> list[float] | None:
    """Seconds per epoch of the run, from a cost estimate made for this recipe (engine/train/estimate.py: each
    phase's epoch, its feature pass on its first epoch), so that the progress and the ETA weigh an epoch of a phase
    that trains everything more than one that trains the head; None without an estimate, or one whose phases do not
    count the run's epochs."""
    if estimate is None:
        return None
    ends = [*phase_start_epochs[1:], total_epochs]
    epochs = [end - start for start, end in zip(phase_start_epochs, ends)]
    if [p.epochs for p in estimate.phases] != epochs:
        return None
    costs = []
    for phase in estimate.phases:
        per_epoch = [phase.epoch_seconds] * phase.epochs
        if per_epoch:
            per_epoch[0] += phase.features_seconds
        costs.extend(per_epoch)
    return costs if costs and all(c > 0 for c in costs) else None


class RunProgress(QWidget):
    """The progress bar over the whole run and a line with epoch, batch, images/s and ETA. Progress is the share
    of the run's cost done: every epoch costs the same unless `start` gets each epoch's seconds from an estimate."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.trainProgress = QProgressBar()
        self.trainProgress.setObjectName("trainProgress")
        self.trainProgress.setRange(0, PROGRESS_STEPS)
        self.trainProgress.setValue(0)
        self.progressLabel = QLabel("No run yet")
        self.progressLabel.setObjectName("progressLabel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.trainProgress)
        layout.addWidget(self.progressLabel)
        self._total_epochs = 1
        self._start_fraction = 0.0
        self._started = 0.0
        self._paused_since: float | None = None
        self._latest: ev.BatchFinished | None = None
        self._resumed_at = (0, 0)  # (epoch, batch) this session started at
        self._costs = [1.0]  # each epoch's share of the run's cost (seconds from an estimate, or equal)
        self._rate = "…"  # the last rate measured over more than one batch
        self._redraw = Coalescer(self, PROGRESS_REDRAW_MS, self._draw_latest)

    def start(self, total_epochs: int, start_epoch: int, start_batch: int = 0,
              costs: list[float] | None = None) -> None:
        self._total_epochs = max(1, total_epochs)
        self._costs = list(costs) if costs and len(costs) == self._total_epochs else [1.0] * self._total_epochs
        self._start_fraction = self._fraction(start_epoch)
        self._started = time.monotonic()
        self._paused_since = None
        self._resumed_at = (start_epoch, start_batch)
        self._rate = "…"
        self.trainProgress.setValue(round(self._start_fraction * PROGRESS_STEPS))
        self.progressLabel.setText(f"Epoch {start_epoch + 1}/{total_epochs} · starting")

    def show_batch(self, b: ev.BatchFinished) -> None:
        self._latest = b
        self._redraw.request()

    def _draw_latest(self) -> None:
        b = self._latest
        fraction = self._fraction(b.epoch, (b.batch + 1) / max(1, b.batches))
        self.trainProgress.setValue(round(fraction * PROGRESS_STEPS))
        # An epoch's (or a resumed session's) first batch pays for start-up (loader workers, warm-up): its rate
        # alone reads far too low, so the last rate measured over several batches stays until a second one.
        if b.batch != 0 and (b.epoch, b.batch) != self._resumed_at:
            self._rate = f"{b.images_per_s:.0f}"
        # Batches finished before the pause took hold still arrive: they must not wipe out "Paused" (issue 28).
        paused = PAUSED_PREFIX if self._paused_since is not None else ""
        self.progressLabel.setText(
            f"{paused}Epoch {b.epoch + 1}/{self._total_epochs} · batch {b.batch + 1}/{b.batches} · "
            f"{self._rate} images/s · ETA {self._eta(fraction)}")

    def show_fit(self, e: ev.HeadFitProgressed) -> None:
        """A head being fitted: the epoch advances with the fits done (cross-validation, then the final fit)."""
        self._redraw.cancel()
        fraction = self._fraction(e.epoch, e.done / max(1, e.total))
        self.trainProgress.setValue(round(fraction * PROGRESS_STEPS))
        if e.fold:
            what = f"cross-validation fit {e.done}/{e.total - 1} (fold {e.fold}, L2 {l2_text(e.l2)})"
        else:
            what = f"final fit (L2 {l2_text(e.l2)}), L-BFGS iteration {e.iteration}, loss + penalty {e.objective:.4f}"
        self.progressLabel.setText(f"Epoch {e.epoch + 1}/{self._total_epochs} · fitting the head: {what} · "
                                   f"ETA {self._eta(fraction)}")

    def set_paused(self, paused: bool) -> None:
        """Paused time is not training time: the ETA's clock stops while paused. The line says "Paused — " for
        as long as the run is."""
        now = time.monotonic()
        text = self.progressLabel.text().removeprefix(PAUSED_PREFIX)
        if paused and self._paused_since is None:
            self._paused_since = now
        elif not paused and self._paused_since is not None:
            self._started += now - self._paused_since
            self._paused_since = None
        self.progressLabel.setText((PAUSED_PREFIX if paused else "") + text)

    def _fraction(self, epoch: int, of_epoch: float = 0.0) -> float:
        """The share of the run's cost done after `epoch` whole epochs and `of_epoch` of the next."""
        costs = self._costs
        done = sum(costs[:epoch]) + (costs[epoch] * of_epoch if epoch < len(costs) else 0.0)
        return min(1.0, done / sum(costs))

    def _eta(self, fraction: float) -> str:
        progressed = fraction - self._start_fraction
        if progressed <= 0:
            return "…"
        elapsed = (self._paused_since or time.monotonic()) - self._started
        return duration_text(elapsed * (1 - fraction) / progressed)

    def finish(self, text: str) -> None:
        self._redraw.cancel()
        self.trainProgress.setValue(self.trainProgress.maximum())
        self.progressLabel.setText(text)

    def halt(self, text: str) -> None:
        self._redraw.cancel()
        self.progressLabel.setText(text)


class CostEstimate(QWidget):
    """What the run will cost, before Start: *Estimate cost* measures it as a job (engine/train/estimate.py; it
    waits for the device, shows its progress and can be cancelled) and the label shows it, or why the run would
    not start; a change of the recipe makes it stale."""

    def __init__(self, document: RecipeDocument, controller: TrainingController, parent: QWidget | None = None):
        super().__init__(parent)
        self._document = document
        self._controller = controller
        self.estimate = None
        self._cancel_reason = ""
        self.runner = JobRunner("estimate", "Estimate", self, uses_device=True)
        self.estimateButton = QPushButton("Estimate cost")
        self.estimateButton.setObjectName("estimateButton")
        self.estimateButton.setToolTip("Measure on a few real batches what this run will cost before Start: time per "
                                       "epoch and in all, peak memory, disk (nothing is trained or saved)")
        self.estimateLabel = QLabel("What the run will cost: press Estimate cost (measured on a few real batches).")
        self.estimateLabel.setObjectName("estimateLabel")
        self.estimateLabel.setWordWrap(True)
        self.estimateLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = JobProgress(self.runner, unit="phase")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.estimateLabel, 1)
        row.addWidget(self.estimateButton, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        self.estimateButton.clicked.connect(self.start)
        self.runner.job_succeeded.connect(self._on_estimated)
        self.runner.job_failed.connect(self._on_failed)
        self.runner.job_cancelled.connect(self._on_cancelled)
        self.runner.job_finished.connect(self._update_button)
        document.recipe_changed.connect(self._on_recipe_changed)
        controller.running_changed.connect(self._update_button)

    @Slot()
    def start(self) -> None:
        if self.runner.is_busy:
            return
        from engine.train.estimate import estimate_run

        recipe = self._document.recipe.copy()
        self._cancel_reason = ""
        self.estimateLabel.setStyleSheet("")
        self.estimateLabel.setText(f"Measuring what '{recipe.name}' will cost on a few real batches …")
        self.runner.start(lambda task: estimate_run(recipe, should_stop=task.should_stop, progress=task.progress),
                          f"Estimating '{recipe.name}'")
        self._update_button()

    def cancel(self, reason: str = "") -> None:
        """Stop the estimate; `reason` is what the label says then (the user's Cancel says nothing more)."""
        if self.runner.is_busy:
            self._cancel_reason = reason
            self.runner.cancel()

    def _on_estimated(self, estimate) -> None:
        self.estimate = estimate
        self.estimateLabel.setText("\n".join(estimate.lines()))

    def _on_failed(self, message: str) -> None:
        self.estimate = None
        self.estimateLabel.setText(f"⚠ The run would not start: {message}")
        self.estimateLabel.setStyleSheet("color: #b00020;")

    def _on_cancelled(self) -> None:
        self.estimate = None
        self.estimateLabel.setText(f"Estimate cancelled{': ' + self._cancel_reason if self._cancel_reason else ''}.")

    def _update_button(self, *_running) -> None:
        # During a run the estimate waits in the device queue until the run ends (gui/jobs/board.py).
        self.estimateButton.setEnabled(not self.runner.is_busy)

    def _on_recipe_changed(self) -> None:
        if self.estimate is not None:  # it was measured for the recipe as it was
            self.estimate = None
            self.estimateLabel.setText("The recipe changed since the last estimate: press Estimate cost again.")


class TrainingPanel(QWidget):
    """Start/pause/stop/resume, live curves, progress, device, freeze verification and the run log."""

    run_completed = Signal(str)  # run folder of a run that finished (or stopped early): best.pt exists
    run_ended = Signal(str, str)  # run folder ("" if it never started), status finished/early_stopped/stopped/failed

    def __init__(self, document: RecipeDocument, controller: TrainingController, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("trainingPanel")
        self._document = document
        self._controller = controller
        self.show_error_dialogs = True  # False: failures go to the log only (tests)
        self._error_box: QMessageBox | None = None
        self._run_dir = ""
        self._run_total_epochs = 0
        self._phase_names: list[str] = []
        self._freeze_lines: list[str] = []
        self._resumable_run = ""
        self._device_requested: tuple[str, int] | None = None
        self._waiter: TrainingWaiter | None = None  # a start waiting in the device queue

        self.startButton = named_button("startButton", "Start", "Train the current recipe (Ctrl+Return)")
        self.pauseButton = named_button("pauseButton", "Pause", "Pause after the current batch")
        self.stopButton = named_button("stopButton", "Stop", "Stop after the current batch and save a checkpoint "
                                                             "(Ctrl+.)")
        self.resumeRunButton = named_button("resumeRunButton", "Resume last run",
                                            "Continue the last stopped run from its checkpoint")
        self.deviceCombo = DeviceChoice()
        self.deviceLabel = QLabel()
        self.deviceLabel.setObjectName("deviceLabel")
        self.deviceLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.curves = TrainingCurves()
        self.progress = RunProgress()
        self.freezeLabel = QLabel("Freeze verification: after each phase")
        self.freezeLabel.setObjectName("freezeLabel")
        self.freezeLabel.setWordWrap(True)
        self.setbackLabel = QLabel()  # a phase that set the model back (engine/train/setbacks.py); hidden until one
        self.setbackLabel.setObjectName("setbackLabel")
        self.setbackLabel.setWordWrap(True)
        self.setbackLabel.setStyleSheet("color: #b00020;")
        self.setbackLabel.hide()
        self.runLog = FollowingLog()  # follows new lines unless the user scrolled up
        self.runLog.setObjectName("runLog")
        self.costEstimate = CostEstimate(document, controller)
        self._layout()

        self.startButton.clicked.connect(self.start_run)
        self.pauseButton.clicked.connect(self.toggle_pause)
        self.stopButton.clicked.connect(self.stop_run)
        self.resumeRunButton.clicked.connect(self.resume_last_run)
        self.deviceCombo.choice_changed.connect(self._on_device_chosen)
        c = controller
        c.running_changed.connect(self._on_running_changed)
        c.paused_changed.connect(self._on_paused_changed)
        c.event_emitted.connect(self._on_event)
        c.batches_finished.connect(self._on_batches_finished)
        self._handlers = {  # what this panel does beyond logging an event's lines (engine/train/narrate.py)
            ev.WeightsDownloadProgress: self._on_download_progressed,
            ev.FeaturesProgressed: self._on_features_progressed,
            ev.HeadFitProgressed: self.progress.show_fit, ev.HeadFitted: self.curves.add_head_fit,
            ev.RunStarted: self._on_run_started, ev.DistributedStarted: self._on_distributed_started,
            ev.EpochFinished: self._on_epoch_finished,
            ev.FreezeVerified: self._on_freeze_verified, ev.RunFinished: self._on_run_finished,
            ev.RunStopped: self._on_run_stopped, ev.RunFailed: self._on_run_failed,
            ev.PhaseSetBack: self._on_phase_set_back, ev.BestRestored: self._on_best_restored,
        }
        document.recipe_changed.connect(self._on_recipe_changed)

        self._set_resumable_run(self._newest_stopped_run())
        self._on_recipe_changed()
        self._on_running_changed(controller.is_running)

    def _layout(self) -> None:
        buttons = QHBoxLayout()
        for button in (self.startButton, self.pauseButton, self.stopButton, self.resumeRunButton):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.deviceCombo)
        buttons.addWidget(self.deviceLabel)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.progress)
        side_layout.addWidget(self.costEstimate)
        side_layout.addWidget(self.freezeLabel)
        side_layout.addWidget(self.setbackLabel)
        side_layout.addWidget(QLabel("Log"))
        side_layout.addWidget(self.runLog, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.curves)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        set_tooltips(self, TIPS)

    # --- the plots, for tests and the main window -------------------------------------------------------------
    @property
    def lossPlot(self) -> pg.PlotWidget:  # noqa: N802 - named like the widget's objectName
        return self.curves.lossPlot

    @property
    def accuracyPlot(self) -> pg.PlotWidget:  # noqa: N802
        return self.curves.accuracyPlot

    @property
    def lrPlot(self) -> pg.PlotWidget:  # noqa: N802
        return self.curves.lrPlot

    @property
    def trainProgress(self) -> QProgressBar:  # noqa: N802
        return self.progress.trainProgress

    @property
    def estimateButton(self) -> QPushButton:  # noqa: N802 - named like the widget's objectName
        return self.costEstimate.estimateButton

    @property
    def estimateLabel(self) -> QLabel:  # noqa: N802
        return self.costEstimate.estimateLabel

    @property
    def estimate(self):
        """The RunEstimate of the recipe as it was when measured; None before, after a change or a refusal."""
        return self.costEstimate.estimate

    @property
    def resumable_run(self) -> str:
        return self._resumable_run

    # --- commands (buttons and the main window's Run menu) -------------------------------------------------
    @Slot()
    def start_run(self) -> None:
        if self._controller.is_running or self.waiting_to_start:
            return
        self.costEstimate.cancel("the run started")  # the run itself is what counts now
        self._run_dir = ""
        self.log("─" * 24)
        self.log(f"Starting '{self._document.recipe.name}' …")
        refusal = start_refusal(self._document.recipe, self._document.scan)  # before any thread exists
        if refusal:
            self._on_run_failed(ev.RunFailed(run_dir="", error=refusal, checkpoint=""))
            return
        recipe = self._document.recipe.copy()
        self._start_when_free(lambda: self._controller.start(recipe), f"Training '{recipe.name}'")

    @Slot()
    def toggle_pause(self) -> None:
        if self._controller.is_paused:
            self._controller.unpause()
        else:
            self._controller.pause()

    @Slot()
    def stop_run(self) -> None:
        if self._controller.is_running:
            self.log("Stopping after the current batch; a checkpoint will be saved …")
            self._controller.request_stop()

    @Slot()
    def resume_last_run(self) -> None:
        if self._controller.is_running or self.waiting_to_start or not self._resumable_run:
            return
        self._run_dir = ""
        self.log("─" * 24)
        self.log(f"Resuming {self._resumable_run} …")
        run_dir = self._resumable_run
        self._start_when_free(lambda: self._controller.continue_run(run_dir), f"Resuming {Path(run_dir).name}")

    @property
    def waiting_to_start(self) -> bool:
        """A run was asked for and waits for a job to give the device back."""
        return self._waiter is not None and self._waiter.is_queued

    def _start_when_free(self, start, description: str) -> None:
        """Start now, or after the job holding the device (a sweep, an evaluation …): one thing trains at a time."""
        if self.waiting_to_start:
            return
        self._waiter = job_board().start_training(start, description, self)
        if self._waiter is not None:
            self._waiter.cancelled.connect(self._on_start_cancelled)
            self.log("Waiting for the device: another job uses it (see Jobs) …")
            self.progress.halt("Waiting for the device (see Jobs)")
            self.startButton.setEnabled(False)
            self.resumeRunButton.setEnabled(False)

    @Slot()
    def _on_start_cancelled(self) -> None:
        self._waiter = None
        self.log("The start was cancelled while it waited.")
        self.progress.halt("No run")
        self._on_running_changed(self._controller.is_running)

    def log(self, line: str) -> None:
        self.runLog.appendPlainText(line)

    # --- controller state ----------------------------------------------------------------------------------------
    @Slot(bool)
    def _on_running_changed(self, running: bool) -> None:
        if running:
            self._waiter = None
        self.startButton.setEnabled(not running)
        self.pauseButton.setEnabled(running)
        self.stopButton.setEnabled(running)
        self.deviceCombo.setEnabled(not running)
        self.resumeRunButton.setEnabled(not running and bool(self._resumable_run))
        if not running:
            self._on_paused_changed(False)

    @Slot(bool)
    def _on_paused_changed(self, paused: bool) -> None:
        self.pauseButton.setText("Continue" if paused else "Pause")
        self.pauseButton.setToolTip("Continue training" if paused else "Pause after the current batch")
        self.progress.set_paused(paused)

    def _set_resumable_run(self, run_dir: str) -> None:
        self._resumable_run = run_dir
        self.resumeRunButton.setEnabled(bool(run_dir) and not self._controller.is_running)
        self.resumeRunButton.setToolTip(f"Continue {run_dir} from its last checkpoint" if run_dir
                                        else "No stopped run to resume")

    def _newest_stopped_run(self) -> str:
        root = runs_root_for(self._document.recipe)
        stopped = [r for r in list_runs(root)
                   if r.status == "stopped" and checkpoint_path(r.path, "last").is_file()]
        return max(stopped, key=lambda r: Path(r.path).name).path if stopped else ""

    @Slot()
    def _on_recipe_changed(self) -> None:
        recipe = self._document.recipe
        requested = (recipe.device, recipe.distributed.processes)
        if requested == self._device_requested or self._controller.is_running:
            return
        self._device_requested = requested
        self.deviceCombo.show_choice(*requested)
        text, warning = expected_device(recipe.device)
        processes = recipe.distributed.processes
        self._show_device(f"{processes} processes × {text}, one {'GPU' if text.startswith('CUDA') else 'share'} each"
                          if processes > 1 else text, warning)

    @Slot(str, int)
    def _on_device_chosen(self, device: str, processes: int) -> None:
        def choose(recipe) -> None:
            recipe.device = device
            recipe.distributed.processes = processes

        self._document.edit(choose)

    def _show_device(self, text: str, warning: str) -> None:
        if warning:
            self.deviceLabel.setText(f"Device: {text} — ⚠ {warning}")
            self.deviceLabel.setStyleSheet("color: #b00020; font-weight: bold;")
        else:
            self.deviceLabel.setText(f"Device: {text}")
            self.deviceLabel.setStyleSheet("")

    # --- engine events -------------------------------------------------------------------------------------------
    @Slot(object)
    def _on_event(self, event: ev.Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)
        if not isinstance(event, (ev.RunFailed, ev.FreezeVerified)):  # those two word their own lines
            for line in describe(event, self._run_total_epochs):
                self.log(line)

    def _on_download_progressed(self, e: ev.WeightsDownloadProgress) -> None:
        done, total = e.done_bytes / 1e6, e.total_bytes / 1e6
        amount = f"{done:.1f} / {total:.1f} MB" if total else f"{done:.1f} MB"
        self.progress.halt(f"Downloading {e.weights}: {amount}")

    def _on_features_progressed(self, e: ev.FeaturesProgressed) -> None:
        self.progress.halt(f"Computing the frozen backbone's features (phase {e.phase_index + 1}): {e.done}/{e.total}")

    def _on_run_started(self, e: ev.RunStarted) -> None:
        self._run_dir = e.run_dir
        self._run_total_epochs = e.total_epochs
        self._phase_names = list(e.phase_names)
        self._freeze_lines = []
        self.freezeLabel.setText("Freeze verification: after each phase")
        self.freezeLabel.setStyleSheet("")
        self.setbackLabel.clear()
        self.setbackLabel.hide()
        self.curves.reset()
        self.curves.set_redraw_interval(CURVE_REDRAW_MS["cpu" if e.device_type == "cpu" else "accelerator"])
        self.curves.set_epoch_range(e.total_epochs)
        self.curves.mark_phases(e.phase_start_epochs, self._phase_names)
        if e.resumed:
            self._replay_history(e)
        # A new run was started from the recipe the estimate measured (an edit clears it); a resumed one may not be.
        costs = None if e.resumed else epoch_costs(self.estimate, e.phase_start_epochs, e.total_epochs)
        self.progress.start(e.total_epochs, e.start_epoch, e.start_batch, costs)
        self._show_device(e.device, e.device_warning)

    def _on_distributed_started(self, e: ev.DistributedStarted) -> None:
        if e.world_size > 1:
            device = self.deviceLabel.text().removeprefix("Device: ")
            self._show_device(f"{e.world_size} processes ({e.backend}) × {device}; {e.global_batch} images per step",
                              "")

    def _replay_history(self, e: ev.RunStarted) -> None:
        """A resumed run shows what was trained before the stop — epochs, per-batch loss, learning rates — from
        the run folder (already cut back to the checkpoint by the engine), as the events they were written from."""
        for row in read_metrics(e.run_dir)[: e.start_epoch]:
            self.curves.add_epoch(epoch_event(row))
        batches = [batch_event(row) for row in read_batches(e.run_dir) if row["global_step"] <= e.start_global_step]
        if batches:
            self.curves.add_batches(batches)
        for fitted in _fitted_heads(e.run_dir):
            if fitted.epoch < e.start_epoch:
                self.curves.add_head_fit(fitted)

    @Slot(object)
    def _on_batches_finished(self, batches: list[ev.BatchFinished]) -> None:
        self.curves.add_batches(batches)
        self.progress.show_batch(batches[-1])

    def _on_epoch_finished(self, e: ev.EpochFinished) -> None:
        self.curves.add_epoch(e)

    def _on_freeze_verified(self, e: ev.FreezeVerified) -> None:
        name = self._phase_names[e.phase_index] if e.phase_index < len(self._phase_names) else ""
        line = freeze_line(e, name)
        self._freeze_lines.append(line)
        self.freezeLabel.setText("\n".join(self._freeze_lines))
        if any(s.startswith("⚠") for s in self._freeze_lines):
            self.freezeLabel.setStyleSheet("color: #b00020; font-weight: bold;")
        self.log(line)

    def _on_phase_set_back(self, e: ev.PhaseSetBack) -> None:
        lines = [self.setbackLabel.text()] if self.setbackLabel.text() else []
        self.setbackLabel.setText("\n".join([*lines, setback_line(e), *(f"  likely: {c}" for c in e.causes[:2])]))
        self.setbackLabel.show()

    def _on_best_restored(self, e: ev.BestRestored) -> None:
        """Beside the setback it answers: what the run goes on with."""
        lines = [self.setbackLabel.text()] if self.setbackLabel.text() else []
        self.setbackLabel.setText("\n".join([*lines, restored_line(e)]))
        self.setbackLabel.show()

    def _on_run_finished(self, e: ev.RunFinished) -> None:
        self.curves.flush()
        self.progress.finish(finish_line(e))
        if self._resumable_run == e.run_dir:
            self._set_resumable_run("")
        self.run_completed.emit(e.run_dir)
        self.run_ended.emit(e.run_dir, e.status)

    def _on_run_stopped(self, e: ev.RunStopped) -> None:
        self.curves.flush()
        self.progress.halt(stop_line(e))
        self.log("'Resume last run' continues from there.")
        self._set_resumable_run(e.run_dir)
        self.run_ended.emit(e.run_dir, "stopped")

    def _on_run_failed(self, e: ev.RunFailed) -> None:
        self.curves.flush()
        started = bool(e.run_dir)
        self.progress.halt("Failed" if started else "Could not start")
        self.log(f"ERROR: {e.error}")
        if started and checkpoint_path(e.run_dir, "last").is_file():
            self._set_resumable_run(e.run_dir)
            self.log(f"The last checkpoint is kept: {checkpoint_path(e.run_dir, 'last')}")
        if self.show_error_dialogs:
            self._error_box = QMessageBox(QMessageBox.Icon.Critical, "Training failed" if started
                                          else "Cannot start training", e.error, QMessageBox.StandardButton.Ok, self)
            self._error_box.open()  # not exec(): never block the event loop while a thread reports
        self.run_ended.emit(e.run_dir, "failed")


def _fitted_heads(run_dir: str) -> list[ev.HeadFitted]:
    """The HeadFitted events a run folder's summary holds (each fitted phase's entry has the event's fields)."""
    try:
        summary = json.loads((Path(run_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = [f.name for f in dataclasses.fields(ev.HeadFitted)]
    return [ev.HeadFitted(**{name: phase["head_fit"][name] for name in names if name in phase["head_fit"]})
            for phase in summary.get("phases", []) if "l2" in phase.get("head_fit", {})]
