"""The Training tab: start, pause, stop and resume a run; live curves, progress, device, log, freeze check; and,
before Start, what the run will cost. It composes the widgets that show each (gui/widgets/live_curves.py,
gui/widgets/run_progress.py, gui/panels/cost_estimate.py) and owns the run's actions (gui/panels/run_actions.py),
which the main window's Run menu shows as well.

The panel reads the recipe from the document and drives the run through a TrainingController (which the main
window owns, so that closing the window can stop the run). Everything it shows arrives as the engine's own event
objects (engine/train/events.py) and is dispatched on their type; the log's and the progress line's words are
engine/train/narrate.py's. A head fitted to convergence has no batches: its progress is the fit's, and its curves
have their own x axes (gui/widgets/head_fit_plots.py), while the epoch plots show it as the one epoch it is.
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it
from PySide6.QtCore import Qt, Signal, Slot
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

from engine.train import events as ev
from engine.train.devices import expected_device
from engine.train.metrics import batch_event, epoch_event
from engine.train.narrate import (
    describe,
    download_progress,
    features_progress,
    finish_line,
    freeze_line,
    restored_line,
    setback_line,
    stop_line,
)
from engine.train.runs import checkpoint_path, list_runs, read_batches, read_fitted_heads, read_metrics
from gui.document import RecipeDocument
from gui.jobs.board import job_board
from gui.panels.cost_estimate import CostEstimate
from gui.panels.run_actions import RunActions
from gui.start_checks import start_refusal
from gui.widgets.buttons import ActionButton
from gui.widgets.device_choice import DeviceChoice
from gui.widgets.live_curves import CURVE_REDRAW_MS, TrainingCurves
from gui.widgets.log_view import FollowingLog
from gui.widgets.run_progress import RunProgress, epoch_costs
from gui.widgets.tooltips import set_tooltips
from gui.workers.training import TrainingController

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
        self._device_requested: tuple[str, int] | None = None

        self.run_actions = RunActions(controller, self)
        actions = self.run_actions
        self.startButton = ActionButton("startButton", actions.start)
        self.pauseButton = ActionButton("pauseButton", actions.pause)
        self.stopButton = ActionButton("stopButton", actions.stop)
        self.resumeRunButton = ActionButton("resumeRunButton", actions.resume)
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

        actions.start.triggered.connect(self.start_run)
        actions.pause.triggered.connect(self.toggle_pause)
        actions.stop.triggered.connect(self.stop_run)
        actions.resume.triggered.connect(self.resume_last_run)
        self.deviceCombo.choice_changed.connect(self._on_device_chosen)
        c = controller
        c.running_changed.connect(self._on_running_changed)
        c.paused_changed.connect(self.progress.set_paused)
        c.event_emitted.connect(self._on_event)
        c.batches_finished.connect(self._on_batches_finished)
        self._handlers = {  # what this panel does beyond logging an event's lines (engine/train/narrate.py)
            ev.WeightsDownloadProgress: lambda e: self.progress.halt(download_progress(e)),
            ev.FeaturesProgressed: lambda e: self.progress.halt(features_progress(e)),
            ev.HeadFitProgressed: self.progress.show_fit, ev.HeadFitted: self.curves.add_head_fit,
            ev.RunStarted: self._on_run_started, ev.DistributedStarted: self._on_distributed_started,
            ev.EpochFinished: self._on_epoch_finished,
            ev.FreezeVerified: self._on_freeze_verified, ev.RunFinished: self._on_run_finished,
            ev.RunStopped: self._on_run_stopped, ev.RunFailed: self._on_run_failed,
            ev.PhaseSetBack: self._on_phase_set_back, ev.BestRestored: self._on_best_restored,
        }
        document.recipe_changed.connect(self._on_recipe_changed)

        self.run_actions.set_resumable_run(self._newest_stopped_run())
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
        """The stopped run Resume continues ("" when there is none)."""
        return self.run_actions.resumable_run

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
        run_dir = self.resumable_run
        if self._controller.is_running or self.waiting_to_start or not run_dir:
            return
        self._run_dir = ""
        self.log("─" * 24)
        self.log(f"Resuming {run_dir} …")
        self._start_when_free(lambda: self._controller.continue_run(run_dir), f"Resuming {Path(run_dir).name}")

    @property
    def waiting_to_start(self) -> bool:
        """A run was asked for and waits for a job to give the device back."""
        return self.run_actions.waiting_to_start

    def _start_when_free(self, start, description: str) -> None:
        """Start now, or after the job holding the device (a sweep, an evaluation …): one thing trains at a time."""
        if self.waiting_to_start:
            return
        waiter = job_board().start_training(start, description, self)  # None: started now
        if waiter is not None:
            waiter.cancelled.connect(self._on_start_cancelled)
            self.log("Waiting for the device: another job uses it (see Jobs) …")
            self.progress.halt("Waiting for the device (see Jobs)")
            self.run_actions.set_waiting_to_start(True)

    @Slot()
    def _on_start_cancelled(self) -> None:
        self.run_actions.set_waiting_to_start(False)
        self.log("The start was cancelled while it waited.")
        self.progress.halt("No run")

    def log(self, line: str) -> None:
        self.runLog.appendPlainText(line)

    # --- controller state ----------------------------------------------------------------------------------------
    @Slot(bool)
    def _on_running_changed(self, running: bool) -> None:
        self.deviceCombo.setEnabled(not running)
        if not running:
            self.progress.set_paused(False)

    def _newest_stopped_run(self) -> str:
        root = self._document.runs_root
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
        device = expected_device(recipe.device)
        processes = recipe.distributed.processes
        each = "GPU" if device.type == "cuda" else "share"
        self._show_device(f"{processes} processes × {device.text}, one {each} each" if processes > 1 else device.text,
                          device.warning)

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
        for fitted in read_fitted_heads(e.run_dir):
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
        if self.resumable_run == e.run_dir:
            self.run_actions.set_resumable_run("")
        self.run_completed.emit(e.run_dir)
        self.run_ended.emit(e.run_dir, e.status)

    def _on_run_stopped(self, e: ev.RunStopped) -> None:
        self.curves.flush()
        self.progress.halt(stop_line(e))
        self.log("'Resume last run' continues from there.")
        self.run_actions.set_resumable_run(e.run_dir)
        self.run_ended.emit(e.run_dir, "stopped")

    def _on_run_failed(self, e: ev.RunFailed) -> None:
        self.curves.flush()
        started = bool(e.run_dir)
        self.progress.halt("Failed" if started else "Could not start")
        self.log(f"ERROR: {e.error}")
        if started and checkpoint_path(e.run_dir, "last").is_file():
            self.run_actions.set_resumable_run(e.run_dir)
            self.log(f"The last checkpoint is kept: {checkpoint_path(e.run_dir, 'last')}")
        if self.show_error_dialogs:
            self._error_box = QMessageBox(QMessageBox.Icon.Critical, "Training failed" if started
                                          else "Cannot start training", e.error, QMessageBox.StandardButton.Ok, self)
            self._error_box.open()  # not exec(): never block the event loop while a thread reports
        self.run_ended.emit(e.run_dir, "failed")
