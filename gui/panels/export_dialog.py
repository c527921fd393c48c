"""The Export dialog: a run's checkpoint as ONNX / torch.export / TorchScript (optionally int8), with the parity
check's verdict and the models' size, latency and accuracy side by side.

The export runs in an ExportWorker on its own QThread (engine.infer.export_run.export_run, the same function as
`python main.py export`); the dialog only builds the request and shows the worker's progress and result.
Closing the dialog while an export runs asks it to stop and closes once it has (nothing is written then).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal, Slot
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
from engine.train.runs import checkpoint_path
from gui.widgets.buttons import named_button
from gui.workers.threads import WorkerThread

COST_COLUMNS = ("Model", "Size", "Batch-1 latency", "Val accuracy", "Top-1 = checkpoint", "Max |Δlogit|")
PASSED_COLOUR = "#1b7a2f"
FAILED_COLOUR = "#b01e1e"


class ExportWorker(QObject):
    """Runs one export at a time in its thread; `cancel()` (from any thread) stops it at its next step."""

    progressed = Signal(object)  # engine.infer.export_run.ExportProgress
    succeeded = Signal(object)  # ExportResult
    failed = Signal(str, object)  # message, ExportResult of a failed parity check (or None)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._stop = False

    def cancel(self) -> None:
        self._stop = True

    def arm(self) -> None:
        """Called on the GUI thread before a request is sent, so that a cancel sent right after it counts."""
        self._stop = False

    @Slot(object)
    def run_export(self, request: ExportRequest) -> None:
        try:
            result = export_run(request, [self.progressed.emit], lambda: self._stop)
        except ExportFailedError as exc:
            self.failed.emit(str(exc), exc.result)
        except ExportCancelled as exc:
            self.failed.emit(str(exc), None)
        except Exception as exc:  # noqa: BLE001 - a bad run or file is a message in the dialog, never a dead thread
            self.failed.emit(str(exc) or type(exc).__name__, None)
        else:
            self.succeeded.emit(result)


class ExportDialog(QDialog):
    """Export one run. `export_succeeded(path)` / `export_failed(message)` tell the rest of the studio."""

    export_requested = Signal(object)  # → ExportWorker.run_export (queued into the worker's thread)
    export_succeeded = Signal(str)
    export_failed = Signal(str)

    def __init__(self, run_dir: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle(f"Export — {Path(run_dir).name}")
        self.run_dir = Path(run_dir)
        self.last_result: ExportResult | None = None  # (QDialog.result() is Qt's)
        self._thread: WorkerThread | None = None
        self._worker: ExportWorker | None = None
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
            self.exportFormatCombo.setItemData(index, f"checked on {fmt.runs_on}" if fmt.available() else
                                               f"not installed: {fmt.install}", Qt.ItemDataRole.ToolTipRole)
            if not fmt.available():
                self.exportFormatCombo.model().item(index).setEnabled(False)
        self.exportFormatCombo.setToolTip("ONNX runs almost anywhere; .pt2 is torch.export's own format; "
                                          "TorchScript is deprecated and kept only while its check passes; "
                                          "OpenVINO IR runs on Intel CPUs, GPUs and NPUs")
        self.exportCheckpointCombo = QComboBox(objectName="exportCheckpointCombo")
        for kind in CHECKPOINT_KINDS:
            if checkpoint_path(self.run_dir, kind).is_file():
                self.exportCheckpointCombo.addItem(f"{kind}.pt", kind)
        self.exportCheckpointCombo.setToolTip("best: the epoch with the best validation metric; last: the latest")
        self.exportInt8Check = QCheckBox("Also quantize to int8 and compare with fp32", objectName="exportInt8Check")
        self.exportInt8Check.setToolTip("Static int8 quantization with onnxruntime, calibrated on training images: "
                                        "about 4× smaller and often faster; its accuracy cost is measured here "
                                        "(ONNX only)")
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
        self._layout()

        self.exportFormatCombo.currentIndexChanged.connect(self._on_choice_changed)
        self.exportCheckpointCombo.currentIndexChanged.connect(self._on_choice_changed)
        self.exportInt8Check.toggled.connect(self._on_choice_changed)
        self.exportPathEdit.textEdited.connect(self._on_path_edited)
        self.exportBrowseButton.clicked.connect(self._on_browse)
        self.exportStartButton.clicked.connect(self.start_export)
        self.exportCloseButton.clicked.connect(self.reject)
        self._on_choice_changed()
        if self.exportCheckpointCombo.count() == 0:
            self.exportStartButton.setEnabled(False)
            self._show_verdict(f"{self.run_dir} has no checkpoint to export.", False)

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Run:", self.exportRunLabel)
        form.addRow("Format:", self.exportFormatCombo)
        form.addRow("Checkpoint:", self.exportCheckpointCombo)
        form.addRow("", self.exportInt8Check)
        path_row = QHBoxLayout()
        path_row.addWidget(self.exportPathEdit, 1)
        path_row.addWidget(self.exportBrowseButton)
        form.addRow("Save as:", path_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.exportStatusLabel, 1)
        buttons.addWidget(self.exportStartButton)
        buttons.addWidget(self.exportCloseButton)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.exportProgressBar)
        layout.addLayout(buttons)
        layout.addWidget(self.exportVerdictLabel)
        layout.addWidget(self.exportResultsTable, 1)
        self.resize(820, 460)

    # --- choices ------------------------------------------------------------------------------------------------
    def format(self) -> str:
        return self.exportFormatCombo.currentData()

    def request(self) -> ExportRequest:
        return ExportRequest(run=str(self.run_dir), format=self.format(),
                             checkpoint=self.exportCheckpointCombo.currentData() or "best",
                             quantize="int8" if self.exportInt8Check.isChecked() else "none",
                             out=self.exportPathEdit.text().strip())

    @Slot()
    def _on_choice_changed(self, *_args) -> None:
        quantizable = FORMATS[self.format()].quantizable
        self.exportInt8Check.setEnabled(quantizable and not self._running)
        if not quantizable and self.exportInt8Check.isChecked():
            self.exportInt8Check.setChecked(False)  # re-enters with the box cleared
            return
        if not self._path_edited:
            kind = self.exportCheckpointCombo.currentData() or "best"
            quantize = "int8" if self.exportInt8Check.isChecked() else "none"
            self.exportPathEdit.setText(str(default_out(self.run_dir, kind, self.format(), quantize)))

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
            self._show_verdict(str(exc), False)
            return
        if self._thread is None:
            self._worker = ExportWorker()
            self._thread = WorkerThread("exportWorkerThread", [self._worker], owner=self).start()
            self._worker.progressed.connect(self._on_progress)
            self._worker.succeeded.connect(self._on_succeeded)
            self._worker.failed.connect(self._on_failed)
            self.export_requested.connect(self._worker.run_export)
        self._set_running(True)
        self.last_result = None
        self.exportResultsTable.setRowCount(0)
        self._show_verdict("", True)
        self.exportStatusLabel.setText("starting…")
        self._worker.arm()
        self.export_requested.emit(request)

    def _set_running(self, running: bool) -> None:
        self._running = running
        for widget in (self.exportFormatCombo, self.exportCheckpointCombo, self.exportPathEdit,
                       self.exportBrowseButton, self.exportStartButton):
            widget.setEnabled(not running)
        self.exportInt8Check.setEnabled(not running and FORMATS[self.format()].quantizable)
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
    def _on_succeeded(self, result: ExportResult) -> None:
        self._finish(result)
        checks = "; ".join(f"{p.label}: max |Δlogit| {p.max_abs_logit_diff:.3g}, top-1 agreement "
                           f"{100 * p.top1_agreement:.1f} %" for p in result.parity)
        notes = "".join(f"\nNote: {note}" for note in result.notes)
        self._show_verdict(f"Parity check passed on {result.images} validation images ({checks}).\n"
                           f"Saved {result.path} (report beside it).{notes}", True)
        self.export_succeeded.emit(result.path)

    @Slot(str, object)
    def _on_failed(self, message: str, result: ExportResult | None) -> None:
        self._finish(result)
        self._show_verdict(message, False)
        self.export_failed.emit(message)

    def _finish(self, result: ExportResult | None) -> None:
        self.last_result = result
        self._set_running(False)
        self.exportProgressBar.setRange(0, 1)
        self.exportProgressBar.setValue(1 if result is not None and result.passed else 0)
        self.exportStatusLabel.setText("")
        if result is not None:
            self._show_costs(result)
        if self._close_when_stopped:
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
        failed = {p.label for p in result.parity if not p.passed}
        for row, cost in enumerate(result.costs):
            if cost.label in failed:
                for column in range(table.columnCount()):
                    table.item(row, column).setForeground(QColor(FAILED_COLOUR))

    def _show_verdict(self, text: str, ok: bool) -> None:
        self.exportVerdictLabel.setText(text)
        self.exportVerdictLabel.setStyleSheet(f"color: {PASSED_COLOUR if ok else FAILED_COLOUR};")

    # --- closing ------------------------------------------------------------------------------------------------
    def reject(self) -> None:
        """Close, Escape and the window's close button all come here (QDialog.closeEvent calls reject)."""
        if self._running:
            # The worker stops at its next step; the dialog closes when it reports back (nothing is written).
            self._close_when_stopped = True
            self.exportStatusLabel.setText("stopping…")
            self.exportCloseButton.setEnabled(False)
            if self._worker is not None:
                self._worker.cancel()
            return
        self.shutdown()
        super().reject()

    def shutdown(self) -> None:
        """Stop the worker thread (waits for a running export to reach its next step); safe to call twice."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
