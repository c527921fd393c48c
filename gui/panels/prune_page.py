"""The Export dialog's Prune page: structured channel pruning of the run's model (torch-pruning), a short fine-tune to
recover, and the original and pruned models side by side (parameters, weights size, batch-1 latency on this device,
validation accuracy) — kept as a new run only when the accuracy fell by no more than the limit the user sets.

The job is engine.infer.prune_run.prune_run, the same function as `python main.py prune`, run as a studio job
(gui/jobs/runner.py) with the progress line every job has (gui/jobs/progress_view.py): it waits for the device while
a run or another job holds it, shows its steps, and Cancel (or closing the dialog) ends it at its next step with
nothing written. The new run appears in the Runs tab (which
follows the runs folder), where it is exported like any other run.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.infer.prune_run import (
    CHECKPOINT_KINDS,
    PruneCancelled,
    PruneRefusedError,
    PruneRequest,
    PruneResult,
    accuracy_change,
    prune_run,
)
from engine.train.runs import checkpoint_path
from gui.jobs.progress_view import JobProgress
from gui.jobs.runner import JobCancelled, JobRunner
from gui.widgets.buttons import named_button

PRUNE_COLUMNS = ("Model", "Parameters", "Size", "Batch-1 latency", "Val accuracy")
KEPT_COLOUR, REFUSED_COLOUR = "#1b7a2f", "#b01e1e"
DEFAULTS = PruneRequest(run="")  # the CLI's defaults: one place for them


def prune_work(request: PruneRequest):
    """A JobRunner's work: prune, recover, measure, keep. Each step is a partial result (a PruneProgress); returns
    (PruneResult, "") when the pruned run was kept, (PruneResult, why) when it lost more than allowed."""

    def work(task):
        try:
            # A count is within its step (a fine-tune epoch's batches); a step without one is its own line
            return prune_run(request, [lambda event: task.progress(event.done, event.total, event.step or
                                                                   event.message)], task.should_stop), ""
        except PruneRefusedError as exc:
            return exc.result, str(exc)
        except PruneCancelled as exc:
            raise JobCancelled from exc

    return work


class PrunePage(QWidget):
    """`run_pruned(run_dir)`: a pruned run was kept; `prune_ended(message)`: refused, stopped or failed."""

    run_pruned = Signal(str)
    prune_ended = Signal(str)

    def __init__(self, run_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("prunePage")
        self.run_dir = run_dir
        self.last_result: PruneResult | None = None
        self.pruneRunner = JobRunner("prune", "Prune", self, uses_device=True)
        self._running = False

        self.pruneCheckpointCombo = QComboBox(objectName="pruneCheckpointCombo")
        for kind in CHECKPOINT_KINDS:
            if checkpoint_path(run_dir, kind).is_file():
                self.pruneCheckpointCombo.addItem(f"{kind}.pt", kind)
        self.pruneCheckpointCombo.setToolTip("best: the epoch with the best validation metric; last: the latest")
        self.pruneAmountSpin = QDoubleSpinBox(objectName="pruneAmountSpin", decimals=0, minimum=5, maximum=90,
                                              singleStep=5, suffix=" %", value=100 * DEFAULTS.amount)
        self.pruneAmountSpin.setToolTip("The share of each prunable layer's channels removed (the least important by "
                                        "weight magnitude); the head keeps its classes")
        self.pruneEpochsSpin = QSpinBox(objectName="pruneEpochsSpin", minimum=0, maximum=200,
                                        value=DEFAULTS.epochs)
        self.pruneEpochsSpin.setToolTip("Epochs of fine-tuning every layer after pruning, to recover accuracy "
                                        "(0: none; bench/README.md: 3 recovered far less than 10)")
        self.pruneMaxDropSpin = QDoubleSpinBox(objectName="pruneMaxDropSpin", decimals=1, minimum=0, maximum=100,
                                               singleStep=0.5, suffix=" points", value=DEFAULTS.max_drop)
        self.pruneMaxDropSpin.setToolTip("The pruned model is kept as a new run only if its validation accuracy fell "
                                         "by no more than this against the original")
        self.pruneStartButton = named_button("pruneStartButton", "Prune",
                                             "Prune, fine-tune and measure; keep the result as a new run if it is "
                                             "accurate enough")
        self.pruneProgress = JobProgress(self.pruneRunner)  # bar, step, queue place and Cancel, as every job shows
        self.pruneVerdictLabel = QLabel("", objectName="pruneVerdictLabel")
        self.pruneVerdictLabel.setToolTip("Whether the pruned model was kept, and why")
        self.pruneVerdictLabel.setWordWrap(True)
        self.pruneVerdictLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pruneResultsTable = QTableWidget(0, len(PRUNE_COLUMNS), objectName="pruneResultsTable")
        self.pruneResultsTable.setToolTip("The original and the pruned model: parameters, weights size, batch-1 "
                                          "latency on the job's device and validation accuracy")
        self.pruneResultsTable.setHorizontalHeaderLabels(PRUNE_COLUMNS)
        self.pruneResultsTable.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.pruneResultsTable.verticalHeader().hide()
        self.pruneResultsTable.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)

        form = QFormLayout()
        form.addRow("Checkpoint:", self.pruneCheckpointCombo)
        form.addRow("Channels removed:", self.pruneAmountSpin)
        form.addRow("Recovery fine-tune:", self._with_unit(self.pruneEpochsSpin, "epochs"))
        form.addRow("Keep if accuracy falls at most:", self.pruneMaxDropSpin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.pruneProgress, 1)
        buttons.addWidget(self.pruneStartButton)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.pruneVerdictLabel)
        layout.addWidget(self.pruneResultsTable, 1)

        self.pruneStartButton.clicked.connect(self.start_prune)
        self.pruneRunner.job_succeeded.connect(self._on_done)
        self.pruneRunner.job_failed.connect(lambda message: self._finish(None, message))
        self.pruneRunner.job_cancelled.connect(lambda: self._finish(None, "pruning stopped; nothing was written"))
        if self.pruneCheckpointCombo.count() == 0:
            self.pruneStartButton.setEnabled(False)
            self._show_verdict(f"{run_dir} has no checkpoint to prune.", REFUSED_COLOUR)

    @staticmethod
    def _with_unit(spin: QSpinBox, unit: str) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(spin)
        layout.addWidget(QLabel(unit))
        layout.addStretch()
        return row

    def request(self) -> PruneRequest:
        return PruneRequest(run=str(self.run_dir), amount=self.pruneAmountSpin.value() / 100,
                            epochs=self.pruneEpochsSpin.value(), max_drop=self.pruneMaxDropSpin.value(),
                            checkpoint=self.pruneCheckpointCombo.currentData() or "best")

    @property
    def running(self) -> bool:
        return self._running

    @Slot()
    def start_prune(self) -> None:
        if self._running:
            return
        try:
            request = self.request().validate()
        except Exception as exc:  # noqa: BLE001 - a bad choice is shown, never raised into Qt
            self._show_verdict(str(exc), REFUSED_COLOUR)
            return
        self._set_running(True)
        self.last_result = None
        self.pruneResultsTable.setRowCount(0)
        self._show_verdict("", KEPT_COLOUR)
        self.pruneRunner.start(prune_work(request),
                               f"Pruning {self.run_dir.name} ({100 * request.amount:g} % of the channels)")

    @Slot()
    def stop(self) -> None:
        """Cancel (the progress line's button does the same): the job stops at its next step, nothing written."""
        if self._running:
            self.pruneProgress.cancel()

    def _set_running(self, running: bool) -> None:
        self._running = running
        for widget in (self.pruneCheckpointCombo, self.pruneAmountSpin, self.pruneEpochsSpin, self.pruneMaxDropSpin,
                       self.pruneStartButton):
            widget.setEnabled(not running)

    @Slot(object)
    def _on_done(self, outcome: tuple) -> None:
        result, refusal = outcome
        self._finish(result, refusal)

    def _finish(self, result: PruneResult | None, failure: str) -> None:
        self.last_result = result
        self._set_running(False)
        if result is not None:
            self._show_costs(result)
        if result is not None and result.kept:
            self._show_verdict(f"Kept as a new run: {result.run_dir}\nValidation accuracy "
                               f"{accuracy_change(result.drop_points)} against the original (limit "
                               f"{result.max_drop:g}); {result.layers_pruned} layers pruned, {result.epochs} "
                               f"epoch(s) of fine-tuning. It is in the Runs tab, where it is exported like any run.",
                               KEPT_COLOUR)
            self.run_pruned.emit(result.run_dir)
            return
        self._show_verdict(failure, REFUSED_COLOUR)  # a refusal's message names its report (the engine's)
        self.prune_ended.emit(failure)

    def _show_costs(self, result: PruneResult) -> None:
        table = self.pruneResultsTable
        table.setRowCount(len(result.costs))
        threads = f", {result.latency_threads} thread{'s' * (result.latency_threads > 1)}" if result.device == "cpu" \
            else ""
        table.setHorizontalHeaderItem(3, QTableWidgetItem(f"Batch-1 latency ({result.device}{threads})"))
        first = result.costs[0]
        for row, cost in enumerate(result.costs):
            share = "" if cost is first else f" ({100 * cost.parameters / first.parameters:.0f} %)"
            latency = "—" if cost.latency_ms is None else f"{cost.latency_ms:.2f} ms"
            if cost.latency_ms is not None and first.latency_ms and cost is not first:
                latency += f" (×{first.latency_ms / cost.latency_ms:.2f})"
            cells = (cost.label, f"{cost.parameters:,}{share}", f"{cost.size_bytes / 1e6:.2f} MB", latency,
                     f"{100 * cost.val_accuracy:.1f} %")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, column, item)

    def _show_verdict(self, text: str, colour: str) -> None:
        self.pruneVerdictLabel.setText(text)
        self.pruneVerdictLabel.setStyleSheet(f"color: {QColor(colour).name()};")

    def shutdown(self) -> None:
        """Stop the job (waits for it to reach its next step); safe to call twice."""
        self.pruneRunner.shutdown()
