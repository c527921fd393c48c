"""What the advisor and compare-models dialogs share: a measurement run as a studio job (gui/jobs/runner.py) — it
waits in the device queue behind a training run or another device job, shows its stage and count with Cancel
(gui/jobs/progress_view.py), and stops when the dialog or the studio closes — plus the dialog's one-line status.

A comparison stopped part-way is a result (the models measured so far), so the dialog takes a measurement's result
as the job's partial result, not as its return value: the runner reports a job cancelled while it ran as cancelled
and drops what it returned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QDialog, QLabel, QWidget

from gui.jobs.progress_view import JobProgress
from gui.jobs.runner import IDLE, JobRunner, TaskState

# measure(should_stop, progress) -> result (None: stopped before anything was measured); progress(stage, done, total)
Measure = Callable[[Callable[[], bool], Callable[[str, int, int], None]], Any]


class StageReporter:
    """The engine's `progress(stage, done, total)` as the task's progress, passed on only when what the user sees
    changes (the stage or a whole percent): a feature pass reports every batch."""

    def __init__(self, task: TaskState):
        self._task = task
        self._shown: tuple[str, int] | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        shown = (stage, int(100 * done / total) if total > 0 else -1)
        if shown != self._shown:
            self._shown = shown
            self._task.progress(done, total, stage)


def measurement_work(measure: Measure) -> Callable[[TaskState], None]:
    """The job's work (its own thread): the measurement, its result handed over as a partial result."""

    def work(task: TaskState) -> None:
        result = measure(task.should_stop, StageReporter(task))
        if result is not None:
            task.partial(result)

    return work


class MeasureDialog(QDialog):
    measurement_finished = Signal()  # the job has ended (a result, a stop, a failure, or Cancel in the queue)

    def __init__(self, prefix: str, title: str, parent: QWidget | None = None):
        """`prefix` names the job and its widgets (`{prefix}Progress`, `{prefix}CancelButton`, …); `title` is what
        the device queue calls the job."""
        super().__init__(parent)
        # A child of the dialog, itself a child of the main window: the window's close finds and stops it.
        self.runner = JobRunner(prefix, title, self, uses_device=True)
        self.progress = JobProgress(self.runner, parent=self)
        self.cancel_button = self.progress.cancelButton
        self.status = QLabel()
        self.status.setObjectName(f"{prefix}StatusLabel")
        self.status.setWordWrap(True)
        self._measured = False  # the current job handed over a result
        self._close_result: int | None = None  # closed while busy: close with this once the job has ended
        self.runner.state_changed.connect(self._on_state_changed)
        self.runner.partial_result_produced.connect(self._on_measured)
        self.runner.job_cancelled.connect(self._on_cancelled)
        self.runner.job_failed.connect(self._on_failed)
        self.runner.job_finished.connect(self._on_finished)

    @property
    def running(self) -> bool:
        """A measurement is queued or running."""
        return self.runner.is_busy

    def start_measure(self, description: str, measure: Measure) -> None:
        if self.running:
            return
        self._measured = False
        self.status.clear()
        if not self.runner.start(measurement_work(measure), description):
            self.status.setText("The studio is closing: nothing more is measured.")

    @Slot()
    def cancel(self) -> None:
        """Stop the measurement at its next step, or take it out of the device queue."""
        self.progress.cancel()

    def on_result(self, result) -> None:  # overridden
        raise NotImplementedError

    def running_changed(self, running: bool) -> None:  # overridden: enable or disable the dialog's own buttons
        pass

    @Slot(str)
    def _on_state_changed(self, state: str) -> None:
        self.running_changed(state != IDLE)

    @Slot(object)
    def _on_measured(self, result) -> None:
        self._measured = True
        self.on_result(result)

    @Slot()
    def _on_cancelled(self) -> None:
        if not self._measured:
            self.status.setText("Stopped: nothing was measured to the end.")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        lines = message.strip().splitlines()
        self.status.setText(f"Failed: {lines[0] if lines else message}")

    @Slot()
    def _on_finished(self) -> None:
        self.measurement_finished.emit()
        if self._close_result is not None:
            result, self._close_result = self._close_result, None
            super().done(result)

    def done(self, result: int) -> None:
        """Close, Escape and the window's ×: a busy measurement is cancelled first and the dialog closes when it
        has stopped (at the end of the step it is in), so the GUI never blocks on it."""
        if self.running:
            self._close_result = result
            self.cancel()
            return
        super().done(result)

    def shutdown(self) -> None:
        """Cancel and wait for the job's thread; nothing is measured afterwards (safe to call twice)."""
        self.runner.shutdown()
