"""The Evaluate tab: where the model errs and why, for one run.

Pick a run (the newest finished one by default; a run that finishes in the studio is shown as soon as its
evaluation.json is written, from the EvaluationWritten event); its evaluation is read from evaluation.json, or
computed on its validation split, or on another folder of class folders. Three pages show it:

    Errors           the confusion matrix linked to a gallery of its images, per-class metrics, CSV export
                     (gui/panels/evaluate_errors.py)
    Suspect labels   suspect labels, near-duplicates and train/validation leaks (gui/panels/evaluate_labels.py)
    Network          filters and feature maps, pretrained and fine-tuned side by side; weight drift
                     (gui/panels/evaluate_network.py)

Reading runs on an EvaluationWorker in a thread this panel owns; evaluating is a job (gui/jobs/runner.py) that
waits for the device, shows its progress and can be cancelled; each page owns its own worker.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.infer.evaluation import EVALUATION_FILE, VALIDATION_SPLIT, Evaluation
from engine.train import events as ev
from engine.train.runs import RunRecord, checkpoint_path, list_runs
from gui.document import RecipeDocument
from gui.jobs.progress_view import JobProgress
from gui.jobs.runner import JobRunner
from gui.panels.evaluate_errors import ErrorsView
from gui.panels.evaluate_labels import LabelIssuesView
from gui.panels.evaluate_network import NetworkView
from gui.widgets.formatting import seconds_text
from gui.widgets.relabel_bar import run_data_root
from gui.workers.evaluation import EvaluationWorker, evaluation_work
from gui.workers.requests import PanelThread

FINISHED = ("finished", "early_stopped")
ERROR_STYLE = "color: #c62828;"


def evaluable_runs(root: Path | None) -> list[RunRecord]:
    """Runs with a best checkpoint, newest first."""
    return [r for r in reversed(list_runs(root)) if checkpoint_path(r.path, "best").is_file()]


def default_run(runs: list[RunRecord]) -> str:
    """The newest finished run; else the newest with a best checkpoint (a stopped one); else ""."""
    finished = next((r for r in runs if r.status in FINISHED), None)
    chosen = finished or (runs[0] if runs else None)
    return chosen.path if chosen is not None else ""


def summary_text(evaluation: Evaluation) -> str:
    m = evaluation.metrics
    source = "the validation split" if evaluation.source == VALIDATION_SPLIT else evaluation.source
    parts = [f"{Path(evaluation.checkpoint).name} on {source}: {m.count} images",
             f"accuracy {m.accuracy:.1%}", f"top-{m.top_k} {m.top_k_accuracy:.1%}", f"mean loss {m.mean_loss:.3f}",
             f"macro F1 {m.macro_f1:.3f}"]
    if evaluation.ood is not None:
        parts.append(f"{len(evaluation.flagged())} unlike the training data (OOD)")
    if evaluation.skipped:
        parts.append(f"{len(evaluation.skipped)} file(s) not evaluated")
    parts.append(f"evaluated {evaluation.created} in {seconds_text(evaluation.seconds)}")
    confused = m.most_confused(3)
    text = " · ".join(parts)
    if confused:
        text += "\nMost confused: " + ", ".join(f"{t} → {p} ({n})" for t, p, n in confused)
    return text + "".join(f"\nNote: {note}" for note in evaluation.notes)


class RunCombo(QComboBox):
    """Runs with a best checkpoint, newest first: name, status, best val accuracy, evaluated or not."""

    def populate(self, runs: list[RunRecord], keep: str) -> None:
        blocker = QSignalBlocker(self)
        self.clear()
        for run in runs:
            accuracy = f" · val acc {run.best_val_acc:.1%}" if run.best_val_acc is not None else ""
            evaluated = "" if (Path(run.path) / EVALUATION_FILE).is_file() else " · not evaluated yet"
            self.addItem(f"{run.name} — {run.status}{accuracy}{evaluated} · {run.arch} · {run.started}", run.path)
            self.setItemData(self.count() - 1, run.path, Qt.ItemDataRole.ToolTipRole)
        index = self.findData(keep) if keep else -1
        self.setCurrentIndex(index if index >= 0 else (0 if self.count() else -1))
        del blocker

    def current_run(self) -> str:
        data = self.currentData()
        return data if isinstance(data, str) else ""


class EvaluatePanel(QWidget):
    load_requested = Signal(int, str)  # → EvaluationWorker.load
    evaluation_shown = Signal(object)  # the Evaluation on display (None when the run has none)
    drift_shown = Signal(object, str)  # the shown run's WeightDrift (or None) and the run's name: the layer tree's

    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("evaluatePanel")
        self._document = document
        self._root: Path | None = None
        self._worker = EvaluationWorker()
        self.worker_thread = PanelThread("evaluationThread", [self._worker], self)
        self._request = 0
        self._follow_newest = True  # until a run is chosen by hand, the newest finished run is shown
        self._loaded = ""  # the run whose evaluation was asked for last
        self._reading = False  # evaluation.json is being read
        self.evaluation: Evaluation | None = None
        self.run_dir = ""
        self._build()
        self._connect()
        self._on_recipe_changed()

    # --- construction -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.evaluationRunCombo = RunCombo(objectName="evaluationRunCombo")
        self.evaluationRunCombo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.evaluationRunCombo.setToolTip("The run to evaluate: its best checkpoint (newest runs first)")
        self.refreshEvaluationRunsButton = QPushButton("Refresh", objectName="refreshEvaluationRunsButton")
        self.refreshEvaluationRunsButton.setToolTip("List the runs again and re-read the chosen run's evaluation")
        self.evaluateRunButton = QPushButton("Evaluate on validation split", objectName="evaluateRunButton")
        self.evaluateRunButton.setToolTip("Evaluate the best checkpoint on the run's own validation split: metrics, "
                                          "per-image results, the OOD calibration and the weight drift "
                                          "(writes evaluation.json; a finished run has it already)")
        self.evaluateFolderButton = QPushButton("Evaluate a folder…", objectName="evaluateFolderButton")
        self.evaluateFolderButton.setToolTip("Evaluate the best checkpoint on another folder of class folders named "
                                             "like the run's classes (nothing is written)")
        self.evaluationProgress = QProgressBar(objectName="evaluationProgress")  # reading evaluation.json
        self.evaluationProgress.setVisible(False)
        self.evaluationRunner = JobRunner("evaluation", "Evaluation", self, uses_device=True)
        self.evaluationJobProgress = JobProgress(self.evaluationRunner, unit="image")
        self.evaluationSummaryLabel = QLabel(objectName="evaluationSummaryLabel")
        self.evaluationSummaryLabel.setWordWrap(True)
        self.evaluationSummaryLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(QLabel("Run"))
        top.addWidget(self.evaluationRunCombo, 1)
        top.addWidget(self.refreshEvaluationRunsButton)
        top.addWidget(self.evaluateRunButton)
        top.addWidget(self.evaluateFolderButton)

        self.errors_view = ErrorsView()
        self.errors_view.setObjectName("errorsPage")
        self.labels_view = LabelIssuesView()
        self.labels_view.setObjectName("labelIssuesPage")
        self.network_view = NetworkView()
        self.network_view.setObjectName("networkPage")
        self.evaluateTabs = QTabWidget(objectName="evaluateTabs")
        self.evaluateTabs.setToolTip("Where the model errs, whether the labels are right, what the network sees")
        self.evaluateTabs.addTab(self.errors_view, "Errors")
        self.evaluateTabs.addTab(self.labels_view, "Suspect labels")
        self.evaluateTabs.addTab(self.network_view, "Network")
        self.evaluateTabs.setTabToolTip(0, "The confusion matrix, the images behind each cell, per-class metrics")
        self.evaluateTabs.setTabToolTip(1, "Images whose label is probably wrong; near-duplicates and leaks")
        self.evaluateTabs.setTabToolTip(2, "What the network sees (filters, feature maps) and how far each layer "
                                           "moved (weight drift)")

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.evaluationProgress)
        layout.addWidget(self.evaluationJobProgress)
        layout.addWidget(self.evaluationSummaryLabel)
        layout.addWidget(self.evaluateTabs, 1)

    def _connect(self) -> None:
        self.evaluationRunCombo.activated.connect(self._on_run_chosen)  # by hand only
        self.refreshEvaluationRunsButton.clicked.connect(self._on_refresh_clicked)
        self.evaluateRunButton.clicked.connect(self.evaluate_run)
        self.evaluateFolderButton.clicked.connect(self._on_evaluate_folder_clicked)
        self.errors_view.image_selected.connect(self.network_view.set_image)
        self._document.recipe_changed.connect(self._on_recipe_changed)
        self.load_requested.connect(self._worker.load)
        self._worker.evaluation_ready.connect(self._on_evaluation_ready)
        self._worker.evaluation_failed.connect(self._on_evaluation_failed)
        self.evaluationRunner.job_succeeded.connect(self._on_evaluated)
        self.evaluationRunner.job_failed.connect(self._on_evaluation_job_failed)
        self.evaluationRunner.job_cancelled.connect(self._on_evaluation_cancelled)
        self.evaluationRunner.job_finished.connect(self._update_buttons)

    # --- runs ---------------------------------------------------------------------------------------------------
    @Slot()
    def _on_recipe_changed(self) -> None:
        root = self._document.runs_root
        if root != self._root:
            self._root = root
            self.refresh_runs()

    @Slot()
    def refresh_runs(self) -> None:
        """List the runs again, keeping the one on display (else choosing the newest finished one)."""
        runs = evaluable_runs(self._root)
        current = self.evaluationRunCombo.current_run()
        keep = current if any(r.path == current for r in runs) else default_run(runs)
        self.evaluationRunCombo.populate(runs, keep)
        has_run = bool(self.evaluationRunCombo.current_run())
        self._update_buttons()
        if not has_run:
            self._show(None, "", "No run with a checkpoint yet: train one (Training tab), then evaluate it here.")
        elif self._loaded and self.evaluationRunCombo.current_run() != self._loaded:
            self.load_run(self.evaluationRunCombo.current_run())  # the run on display is gone

    def select_run(self, run_dir: str) -> None:
        """Choose `run_dir` (listing it if needed) and show its evaluation."""
        run_dir = str(run_dir)
        if self.evaluationRunCombo.findData(run_dir) < 0:
            record = RunRecord.load(run_dir)
            runs = evaluable_runs(self._root)
            if record is not None and all(r.path != run_dir for r in runs):
                runs.insert(0, record)
            self.evaluationRunCombo.populate(runs, run_dir)
        else:
            self.evaluationRunCombo.setCurrentIndex(self.evaluationRunCombo.findData(run_dir))
        self.load_run(run_dir)

    @Slot(int)
    def _on_run_chosen(self, _index: int) -> None:
        self._follow_newest = False
        self.load_run(self.evaluationRunCombo.current_run())

    @Slot()
    def _on_refresh_clicked(self) -> None:
        self.refresh_runs()
        if self.evaluationRunCombo.current_run():
            self.load_run(self.evaluationRunCombo.current_run())

    @Slot(object)
    def handle_event(self, event: ev.Event) -> None:
        """From TrainingController.event_emitted: a finished run's evaluation.json was written."""
        if not isinstance(event, ev.EvaluationWritten):
            return
        if self._follow_newest or event.run_dir == self.run_dir:
            self.select_run(event.run_dir)
        else:
            self.refresh_runs()  # listed, marked evaluated; the run chosen by hand stays

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        # Nothing is read before the tab is first seen: most sessions never need it.
        if not self._loaded and self.evaluationRunCombo.current_run():
            self.load_run(self.evaluationRunCombo.current_run())

    # --- loading and evaluating -----------------------------------------------------------------------------------
    def load_run(self, run_dir: str) -> None:
        """Show the run's evaluation.json (read off the GUI thread)."""
        if not run_dir or not self._ensure_thread():
            return
        self.evaluationRunner.cancel()  # another run is shown: its evaluation would not be
        self._loaded = run_dir
        self._request = self._worker.begin_request()
        self._busy(True, "Reading the evaluation …", indeterminate=True)
        self.load_requested.emit(self._request, run_dir)

    @Slot()
    def evaluate_run(self) -> None:
        """Evaluate the chosen run's best checkpoint on its validation split (writes evaluation.json)."""
        self._evaluate("")

    def evaluate_folder(self, folder: str) -> None:
        """Evaluate the chosen run's best checkpoint on `folder` (class folders named like the run's classes)."""
        self._evaluate(str(folder))

    @Slot()
    def _on_evaluate_folder_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of class folders to evaluate on")
        if folder:
            self.evaluate_folder(folder)

    def _evaluate(self, folder: str) -> None:
        run_dir = self.evaluationRunCombo.current_run()
        if not run_dir or self.evaluationRunner.is_busy or self.worker_thread.shut_down:
            return
        self._loaded = run_dir
        self._request = self._worker.begin_request()  # a read in flight is not shown over the evaluation
        where = folder or "the validation split"
        self._busy(False)
        self.evaluationSummaryLabel.setStyleSheet("")
        self.evaluationSummaryLabel.setText(f"Evaluating {Path(run_dir).name} on {where} …")
        self.evaluationRunner.start(evaluation_work(run_dir, folder), f"Evaluating {Path(run_dir).name} on {where}")
        self._update_buttons()

    @Slot(object)
    def _on_evaluated(self, result: tuple) -> None:
        run_dir, evaluation, where = result
        self._show(evaluation, run_dir, summary_text(evaluation))
        if where.endswith(EVALUATION_FILE):
            self.refresh_runs()  # its entry no longer says "not evaluated yet"

    @Slot(str)
    def _on_evaluation_job_failed(self, message: str) -> None:
        self.evaluationSummaryLabel.setStyleSheet(ERROR_STYLE)
        self.evaluationSummaryLabel.setText(message)

    @Slot()
    def _on_evaluation_cancelled(self) -> None:
        if self._reading:  # cancelled because another run is being shown: its reading says so
            return
        self.evaluationSummaryLabel.setStyleSheet("")
        self.evaluationSummaryLabel.setText("Evaluation cancelled: nothing was written.")

    @Slot(int, str, object, str)
    def _on_evaluation_ready(self, request: int, run_dir: str, evaluation: Evaluation | None, where: str) -> None:
        if request != self._request:
            return
        self._busy(False)
        if evaluation is None:
            self._show(None, run_dir, "This run has no evaluation yet (it was stopped, or trained before runs were "
                                      "evaluated): “Evaluate on validation split” makes one.")
        else:
            self._show(evaluation, run_dir, summary_text(evaluation))
            if where.endswith(EVALUATION_FILE):
                self.refresh_runs()  # its entry no longer says "not evaluated yet"

    @Slot(int, str)
    def _on_evaluation_failed(self, request: int, message: str) -> None:
        if request != self._request:
            return
        self._busy(False)
        self.evaluationSummaryLabel.setStyleSheet(ERROR_STYLE)
        self.evaluationSummaryLabel.setText(message)

    def _busy(self, busy: bool, text: str = "", indeterminate: bool = False) -> None:
        self.evaluationProgress.setVisible(busy)
        if indeterminate:
            self.evaluationProgress.setRange(0, 0)
        self._reading = busy
        self._update_buttons()
        if busy:
            self.evaluationSummaryLabel.setStyleSheet("")
            self.evaluationSummaryLabel.setText(text)

    def _show(self, evaluation: Evaluation | None, run_dir: str, text: str) -> None:
        self.evaluation, self.run_dir = evaluation, run_dir
        self.evaluationSummaryLabel.setStyleSheet("")
        self.evaluationSummaryLabel.setText(text)
        self.evaluationSummaryLabel.setToolTip("\n".join(f"not evaluated: {p}: {reason}"
                                                         for p, reason in (evaluation.skipped if evaluation else [])))
        self.errors_view.galleryRelabelBar.set_data_roots(run_data_root(run_dir))
        self.errors_view.show_evaluation(evaluation)
        self.labels_view.set_run(run_dir)
        first_image = evaluation.images[0].path if evaluation is not None and evaluation.images else ""
        drift = evaluation.drift if evaluation is not None else None
        self.network_view.set_run(run_dir, drift, first_image,
                                  Path(evaluation.checkpoint).name if evaluation is not None else "best.pt")
        self.evaluation_shown.emit(evaluation)
        record = RunRecord.load(run_dir) if run_dir else None
        self.drift_shown.emit(drift, record.name if record is not None else Path(run_dir).name)

    @Slot()
    def _update_buttons(self) -> None:
        idle = not self._reading and not self.evaluationRunner.is_busy
        for button in (self.evaluateRunButton, self.evaluateFolderButton):
            button.setEnabled(idle and bool(self.evaluationRunCombo.current_run()))

    # --- the worker threads ----------------------------------------------------------------------------------------
    def _ensure_thread(self) -> bool:
        return self.worker_thread.ensure()

    def shutdown(self) -> None:
        """Stop every worker thread of the tab (the main window calls this on close; safe to call twice)."""
        for view in (self.errors_view, self.labels_view, self.network_view):
            view.shutdown()
        self.worker_thread.shutdown()

