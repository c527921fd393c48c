"""What the advisor and compare-models dialogs share: a measurement started off the GUI thread (MeasureWorker in
a WorkerThread), its progress bar and status line, Cancel, and a close that cancels and waits for the thread
first (Qt aborts on the destruction of a running QThread)."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QDialog, QLabel, QProgressBar, QPushButton, QWidget

from gui.measure_worker import Measure, MeasureWorker
from gui.workers.threads import WorkerThread


class MeasureDialog(QDialog):
    measurement_finished = Signal()  # the thread has ended (success, stop or failure)

    def __init__(self, prefix: str, parent: QWidget | None = None):
        super().__init__(parent)
        self._prefix = prefix
        self._thread: WorkerThread | None = None
        self._worker: MeasureWorker | None = None
        self._close_when_stopped = False
        self.progress = QProgressBar()
        self.progress.setObjectName(f"{prefix}Progress")
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setObjectName(f"{prefix}StatusLabel")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName(f"{prefix}CancelButton")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start_measure(self, name: str, work: Measure) -> None:
        if self.running:
            return
        self._worker = MeasureWorker(work)
        self._worker.progressed.connect(self._on_progress)
        self._worker.succeeded.connect(self.on_result)
        self._worker.stopped.connect(self._on_stopped)
        self._worker.failed.connect(self._on_failed)
        self._thread = WorkerThread(name, [self._worker], owner=self, job=self._worker.run,
                                    done=self._worker.finished)
        self._thread.qthread.finished.connect(self._on_thread_ended)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.status.setText("Starting …")
        self.running_changed(True)
        self._thread.start()

    @Slot()
    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self.status.setText("Stopping after this step …")
            self.cancel_button.setEnabled(False)

    @Slot(str, int, int)
    def _on_progress(self, label: str, done: int, total: int) -> None:
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        else:
            self.progress.setRange(0, 0)
        self.status.setText(label)

    def on_result(self, result) -> None:  # overridden
        raise NotImplementedError

    def running_changed(self, running: bool) -> None:  # overridden: enable or disable the dialog's own buttons
        pass

    @Slot()
    def _on_stopped(self) -> None:
        self.status.setText("Stopped: nothing was measured to the end.")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.status.setText(message)

    @Slot()
    def _on_thread_ended(self) -> None:
        self._thread = None
        self._worker = None
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(False)
        self.running_changed(False)
        self.measurement_finished.emit()
        if self._close_when_stopped:
            super().reject()

    def reject(self) -> None:
        """Close, Escape and the window's close button: a running measurement is cancelled first."""
        if self.running:
            self._close_when_stopped = True
            self.cancel()
            return
        super().reject()

    def shutdown(self) -> None:
        """Stop the worker thread and wait for it (safe to call twice)."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
