"""The Export dialog: a run's checkpoint in any format of the engine's registry (optionally int8, or fp16 where the
format has it), with the parity check's verdict and the models' size, latency and accuracy side by side.

The verdict is one of three: passed (green), failed (red, nothing kept), or not checked on this OS (neither: a
Core ML package off macOS is written, but Core ML cannot run it here, so nothing says it agrees).

The export runs as a job (gui/jobs/runner.py: engine.infer.export_run.export_run, the same function as
`python main.py export`), which waits for the device while a run or another job holds it; the dialog only builds
the request and shows the job's steps and result.
Its second page prunes the run (gui/panels/prune_page.py: channels removed, a recovery fine-tune, the costs side by
side, a new run kept only within an accuracy limit). Closing the dialog while an export or pruning runs asks it to
stop and closes once it has (nothing is written then).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.infer.export_formats import FORMATS
from engine.infer.export_run import (
    CHECKPOINT_KINDS,
    ExportCancelled,
    ExportFailedError,
    ExportRequest,
    ExportResult,
    default_out,
    export_run,
)
from engine.infer.parity import FAILED, NOT_CHECKED, PASSED
from engine.train.runs import checkpoint_path
from gui.jobs.runner import QUEUED, JobCancelled, JobRunner
from gui.panels.prune_page import PrunePage
from gui.widgets.buttons import named_button

COST_COLUMNS = ("Model", "Size", "Batch-1 latency", "Val accuracy", "Top-1 = checkpoint", "Max |Δlogit|")
PASSED_COLOUR = "#1b7a2f"
FAILED_COLOUR = "#b01e1e"
NOT_CHECKED_COLOUR = "#6b5a00"  # neither green nor red: a file written and never compared
VERDICT_COLOURS = {PASSED: PASSED_COLOUR, FAILED: FAILED_COLOUR, NOT_CHECKED: NOT_CHECKED_COLOUR}


def format_tooltip(fmt) -> str:
    """What a format needs and what its check is, for its row in the format list."""
    if not fmt.available():
        return f"not installed: {fmt.install}"
    if fmt.unavailable_here():
        return (f"checked on {fmt.runs_on} only: here the file is written and reported as not checked "
                f"({fmt.unavailable_here()})")
    return f"checked on {fmt.runs_on}"


def export_work(request: ExportRequest):
    """A JobRunner's work (gui/jobs/runner.py): export, check and keep. Each step is a partial result (an
    ExportProgress); returns (ExportResult, "") or, when the check failed, (its ExportResult or None, why)."""

    def work(task):
        try:
            return export_run(request, [task.partial], task.should_stop), ""
        except ExportFailedError as exc:
            return exc.result, str(exc)
        except ExportCancelled as exc:
            raise JobCancelled from exc

    return work


class ExportDialog(QDialog):
    """Export one run. `export_succeeded(path)` / `export_failed(message)` tell the rest of the studio."""

    export_succeeded = Signal(str)
    export_failed = Signal(str)

    def __init__(self, run_dir: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle(f"Export — {Path(run_dir).name}")
        self.run_dir = Path(run_dir)
        self.last_result: ExportResult | None = None  # (QDialog.result() is Qt's)
        self.exportRunner = JobRunner("export", "Export", self, uses_device=True)
        self._running = False
        self._close_when_stopped = False
        self._path_edited = False

        self.exportRunLabel = QLabel(str(self.run_dir))
        self.exportRunLabel.setObjectName("exportRunLabel")
        self.exportRunLabel.setToolTip("The run whose checkpoint is exported")
        self.exportRunLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.exportFormatCombo = QComboBox(objectName="exportFormatCombo")
        for fmt in FORMATS.values():  # every format of the engine's registry; one whose library is missing says so
            self.exportFormatCombo.addItem(fmt.label if fmt.available() else f"{fmt.label} — needs {fmt.package}",
                                           fmt.name)
            index = self.exportFormatCombo.count() - 1
            self.exportFormatCombo.setItemData(index, format_tooltip(fmt), Qt.ItemDataRole.ToolTipRole)
            if not fmt.available():
                self.exportFormatCombo.model().item(index).setEnabled(False)
        self.exportFormatCombo.setToolTip("ONNX runs almost anywhere; .pt2 is torch.export's own format; "
                                          "TorchScript is deprecated and kept only while its check passes; "
                                          "OpenVINO IR runs on Intel CPUs, GPUs and NPUs; ExecuTorch and Core ML "
                                          "are for phone apps (Core ML is checked only on macOS)")
        self.exportCheckpointCombo = QComboBox(objectName="exportCheckpointCombo")
        for kind in CHECKPOINT_KINDS:
            if checkpoint_path(self.run_dir, kind).is_file():
                self.exportCheckpointCombo.addItem(f"{kind}.pt", kind)
        self.exportCheckpointCombo.setToolTip("best: the epoch with the best validation metric; last: the latest")
        self.exportInt8Check = QCheckBox("Also quantize to int8 and compare with fp32", objectName="exportInt8Check")
        self.exportInt8Check.setToolTip("Static int8 quantization with onnxruntime, calibrated on training images: "
                                        "about 4× smaller and often faster; its accuracy cost is measured here "
                                        "(ONNX only)")
        self.exportFp16Check = QCheckBox("Half precision (fp16)", objectName="exportFp16Check")
        self.exportFp16Check.setToolTip("Weights and arithmetic in 16-bit floats: half the size, what Apple's Neural "
                                        "Engine computes in; checked with a looser tolerance (5 % of the largest "
                                        "logit) where the format runs (Core ML only)")
        self.exportPathEdit = QLineEdit(objectName="exportPathEdit")
        self.exportPathEdit.setToolTip("The file to write; FILE.report.json is written beside it")
        self.exportBrowseButton = named_button("exportBrowseButton", "Browse…", "Choose where to save the export")
        self.exportStartButton = named_button("exportStartButton", "Export",
                                              "Export, then check the file against the checkpoint on validation "
                                              "images; it is kept only if they agree")
        self.exportCloseButton = named_button("exportCloseButton", "Close",
                                              "Close (an export in progress is stopped; nothing is written)")
        self.exportProgressBar = QProgressBar(objectName="exportProgressBar")
        self.exportProgressBar.setToolTip("Progress of the current step")
        self.exportProgressBar.setRange(0, 1)
        self.exportProgressBar.setValue(0)
        self.exportStatusLabel = QLabel("", objectName="exportStatusLabel")
        self.exportStatusLabel.setToolTip("The step the export is at")
        self.exportVerdictLabel = QLabel("", objectName="exportVerdictLabel")
        self.exportVerdictLabel.setToolTip("The parity check's verdict: max |Δlogit| and top-1 agreement with "
                                           "the checkpoint")
        self.exportVerdictLabel.setWordWrap(True)
        self.exportVerdictLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.exportResultsTable = QTableWidget(0, len(COST_COLUMNS), objectName="exportResultsTable")
        self.exportResultsTable.setToolTip("Each model side by side: file size, batch-1 CPU latency, validation "
                                           "accuracy and agreement with the checkpoint on the checked images")
        self.exportResultsTable.setHorizontalHeaderLabels(COST_COLUMNS)
        self.exportResultsTable.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.exportResultsTable.verticalHeader().hide()
        self.exportResultsTable.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.prunePage = PrunePage(self.run_dir)
        self.prunePage.run_pruned.connect(self._close_if_stopping)
        self.prunePage.prune_ended.connect(self._close_if_stopping)
        self._layout()

        self.exportFormatCombo.currentIndexChanged.connect(self._on_choice_changed)
        self.exportCheckpointCombo.currentIndexChanged.connect(self._on_choice_changed)
        self.exportInt8Check.toggled.connect(self._on_choice_changed)
        self.exportFp16Check.toggled.connect(self._on_choice_changed)
        self.exportPathEdit.textEdited.connect(self._on_path_edited)
        self.exportBrowseButton.clicked.connect(self._on_browse)
        self.exportStartButton.clicked.connect(self.start_export)
        self.exportCloseButton.clicked.connect(self.reject)
        self.exportRunner.partial_result_produced.connect(self._on_progress)
        self.exportRunner.job_succeeded.connect(self._on_done)
        self.exportRunner.job_failed.connect(lambda message: self._on_failed(message, None))
        self.exportRunner.job_cancelled.connect(lambda: self._on_failed("export stopped; nothing was written", None))
        self.exportRunner.state_changed.connect(self._on_state_changed)
        self._on_choice_changed()
        if self.exportCheckpointCombo.count() == 0:
            self.exportStartButton.setEnabled(False)
            self._show_verdict(f"{self.run_dir} has no checkpoint to export.", FAILED)

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Run:", self.exportRunLabel)
        form.addRow("Format:", self.exportFormatCombo)
        form.addRow("Checkpoint:", self.exportCheckpointCombo)
        form.addRow("", self.exportInt8Check)
        form.addRow("", self.exportFp16Check)
        path_row = QHBoxLayout()
        path_row.addWidget(self.exportPathEdit, 1)
        path_row.addWidget(self.exportBrowseButton)
        form.addRow("Save as:", path_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.exportStatusLabel, 1)
        buttons.addWidget(self.exportStartButton)
        buttons.addWidget(self.exportCloseButton)
        page = QWidget(objectName="exportPage")
        layout = QVBoxLayout(page)
        layout.addLayout(form)
        layout.addWidget(self.exportProgressBar)
        layout.addLayout(buttons)
        layout.addWidget(self.exportVerdictLabel)
        layout.addWidget(self.exportResultsTable, 1)
        self.exportTabs = QTabWidget(objectName="exportTabs")
        self.exportTabs.addTab(page, "Export")
        self.exportTabs.addTab(self.prunePage, "Prune")
        self.exportTabs.setTabToolTip(0, "Write the checkpoint in a format for another runtime, checked against it")
        self.exportTabs.setTabToolTip(1, "Remove channels for a smaller, faster model; kept as a new run only if it "
                                         "stays accurate enough")
        QVBoxLayout(self).addWidget(self.exportTabs)
        self.resize(820, 500)

    # --- choices ------------------------------------------------------------------------------------------------
    def format(self) -> str:
        return self.exportFormatCombo.currentData()

    def quantize(self) -> str:
        return "int8" if self.exportInt8Check.isChecked() else "fp16" if self.exportFp16Check.isChecked() else "none"

    def request(self) -> ExportRequest:
        return ExportRequest(run=str(self.run_dir), format=self.format(),
                             checkpoint=self.exportCheckpointCombo.currentData() or "best",
                             quantize=self.quantize(),
                             keep_fp32=True,  # "Also quantize": the fp32 model is kept beside the int8 one
                             out=self.exportPathEdit.text().strip())

    @Slot()
    def _on_choice_changed(self, *_args) -> None:
        record = FORMATS[self.format()]
        self.exportInt8Check.setEnabled(record.quantizable and not self._running)
        self.exportFp16Check.setEnabled(record.fp16 and not self._running)
        for box, offered in ((self.exportInt8Check, record.quantizable), (self.exportFp16Check, record.fp16)):
            if not offered and box.isChecked():
                box.setChecked(False)  # re-enters with the box cleared
                return
        if not self._path_edited:
            kind = self.exportCheckpointCombo.currentData() or "best"
            self.exportPathEdit.setText(str(default_out(self.run_dir, kind, self.format(), self.quantize())))

    @Slot(str)
    def _on_path_edited(self, _text: str) -> None:
        self._path_edited = True

    @Slot()
    def _on_browse(self) -> None:
        suffix = FORMATS[self.format()].suffix
        path, _ = QFileDialog.getSaveFileName(self, "Save the export as", self.exportPathEdit.text(),
                                              f"{self.format()} (*{suffix});;All files (*)")
        if path:
            self.exportPathEdit.setText(path)
            self._path_edited = True

    # --- running ------------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @Slot()
    def start_export(self) -> None:
        if self._running:
            return
        try:
            request = self.request().validate()
        except Exception as exc:  # noqa: BLE001 - a bad choice is shown, never raised into Qt
            self._show_verdict(str(exc), FAILED)
            return
        self._set_running(True)
        self.last_result = None
        self.exportResultsTable.setRowCount(0)
        self._show_verdict("", PASSED)
        self.exportStatusLabel.setText("starting…")
        self.exportRunner.start(export_work(request), f"Exporting {self.run_dir.name} to {request.format}")

    @Slot(str)
    def _on_state_changed(self, state: str) -> None:
        if state == QUEUED:
            self.exportStatusLabel.setText("waiting for the device (see the Jobs list) …")

    def _set_running(self, running: bool) -> None:
        self._running = running
        for widget in (self.exportFormatCombo, self.exportCheckpointCombo, self.exportPathEdit,
                       self.exportBrowseButton, self.exportStartButton):
            widget.setEnabled(not running)
        self.exportInt8Check.setEnabled(not running and FORMATS[self.format()].quantizable)
        self.exportFp16Check.setEnabled(not running and FORMATS[self.format()].fp16)
        self.exportCloseButton.setText("Stop" if running else "Close")
        if running:
            self.exportProgressBar.setRange(0, 0)  # busy until a step reports a count

    @Slot(object)
    def _on_progress(self, event) -> None:
        self.exportStatusLabel.setText(event.message)
        if event.total:
            self.exportProgressBar.setRange(0, event.total)
            self.exportProgressBar.setValue(event.done)
        else:
            self.exportProgressBar.setRange(0, 0)

    @Slot(object)
    def _on_done(self, outcome: tuple) -> None:
        result, failure = outcome
        if failure:
            self._on_failed(failure, result)
        else:
            self._on_succeeded(result)

    def _on_succeeded(self, result: ExportResult) -> None:
        self._finish(result)
        checks = "; ".join(f"{p.label}: max |Δlogit| {p.max_abs_logit_diff:.3g}, top-1 agreement "
                           f"{100 * p.top1_agreement:.1f} %" for p in result.parity if p.verdict == PASSED)
        notes = "".join(f"\nNote: {note}" for note in result.notes)
        saved = f"Saved {result.path}" + (f" and the fp32 model {result.fp32_path}" if result.fp32_path else "")
        beside = "reports beside them" if result.fp32_path else "report beside it"
        if result.verdict == NOT_CHECKED:
            verdict = (f"Not checked on this OS: {result.not_checked}. The file was written but never compared "
                       f"with the checkpoint" + (f" (the others passed: {checks})" if checks else "") + ".")
        else:
            verdict = f"Parity check passed on {result.images} validation images ({checks})."
        self._show_verdict(f"{verdict}\n{saved} ({beside}).{notes}", result.verdict)
        self.export_succeeded.emit(result.path)

    @Slot(str, object)
    def _on_failed(self, message: str, result: ExportResult | None) -> None:
        self._finish(result)
        self._show_verdict(message, FAILED)
        self.export_failed.emit(message)

    def _finish(self, result: ExportResult | None) -> None:
        self.last_result = result
        self._set_running(False)
        self.exportProgressBar.setRange(0, 1)
        self.exportProgressBar.setValue(1 if result is not None and result.path else 0)  # done, checked or not
        self.exportStatusLabel.setText("")
        if result is not None:
            self._show_costs(result)
        self._close_if_stopping()

    @Slot()
    def _close_if_stopping(self, *_args) -> None:
        """Closing was asked while a job ran: close once none runs any more."""
        if self._close_when_stopped and not self._running and not self.prunePage.running:
            self._close_when_stopped = False
            self.exportCloseButton.setEnabled(True)
            self.reject()

    def _show_costs(self, result: ExportResult) -> None:
        table = self.exportResultsTable
        table.setRowCount(len(result.costs))
        for row, cost in enumerate(result.costs):
            cells = (cost.label, f"{cost.size_bytes / 1e6:.2f} MB",
                     f"{cost.latency_ms:.2f} ms ({cost.latency_threads} thread{'s' * (cost.latency_threads > 1)})"
                     if cost.latency_ms is not None else "—",
                     f"{100 * cost.val_accuracy:.1f} %" if cost.val_accuracy is not None else "—",
                     f"{100 * cost.top1_agreement:.1f} %" if cost.top1_agreement is not None else "—",
                     f"{cost.max_abs_logit_diff:.3g}" if cost.max_abs_logit_diff is not None else "—")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, column, item)
        marked = {p.label: VERDICT_COLOURS[p.verdict] for p in result.parity if p.verdict != PASSED}
        for row, cost in enumerate(result.costs):
            if cost.label in marked:
                for column in range(table.columnCount()):
                    table.item(row, column).setForeground(QColor(marked[cost.label]))
                table.item(row, 0).setToolTip(next(p.not_checked or p.failure for p in result.parity
                                                   if p.label == cost.label))

    def _show_verdict(self, text: str, verdict: str) -> None:
        """`verdict`: PASSED, FAILED or NOT_CHECKED (engine/infer/parity.py), which sets the colour."""
        self.exportVerdictLabel.setText(text)
        self.exportVerdictLabel.setStyleSheet(f"color: {VERDICT_COLOURS[verdict]};")

    # --- closing ------------------------------------------------------------------------------------------------
    def reject(self) -> None:
        """Close, Escape and the window's close button all come here (QDialog.closeEvent calls reject)."""
        if self._running or self.prunePage.running:
            # The job stops at its next step; the dialog closes when it reports back (nothing is written).
            self._close_when_stopped = True
            self.exportCloseButton.setEnabled(False)
            if self._running:
                self.exportStatusLabel.setText("stopping…")
                self.exportRunner.cancel()
            self.prunePage.stop()
            return
        self.shutdown()
        super().reject()

    def shutdown(self) -> None:
        """Stop the export and the pruning (waits for them to reach their next step); safe to call twice."""
        self.exportRunner.shutdown()
        self.prunePage.shutdown()
