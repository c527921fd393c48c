"""A job's progress as every panel shows it: a bar (busy until the job counts), a line saying what it does — and
at which stage, for a job that names its stages — or where it waits in the device queue, and Cancel. Hidden while
its JobRunner (gui/jobs/runner.py) is idle."""

from __future__ import annotations

import time

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

from gui.jobs.board import TRAINING, job_board
from gui.jobs.runner import QUEUED, RUNNING, JobRunner
from gui.widgets.buttons import named_button
from gui.widgets.formatting import duration_text, seconds_text


class JobProgress(QWidget):
    def __init__(self, runner: JobRunner, unit: str = "", parent: QWidget | None = None, total_is_bound: bool = False):
        """`unit`: what the counts count ("step", "image"); empty: a bare "3 / 10". `total_is_bound`: the job may
        end before its total (a sweep stops when the loss explodes): the time left is an upper bound."""
        super().__init__(parent)
        name = runner.objectName()
        self.setObjectName(f"{name}Progress")
        self._runner = runner
        self._unit = unit
        self._bound = total_is_bound
        self._first_count: tuple[float, int] | None = None  # (when, done) of the job's first count
        self._stage = ""  # the stage the job last named (TaskState.progress's `stage`)
        self.bar = QProgressBar()
        self.bar.setObjectName(f"{name}ProgressBar")
        self.bar.setMaximumWidth(220)
        self.label = QLabel()
        self.label.setObjectName(f"{name}ProgressLabel")
        self.label.setWordWrap(True)
        self.cancelButton = named_button(f"{name}CancelButton", "Cancel", f"Stop the {runner.title.lower()} "
                                         "(at its next step), or take it out of the queue")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.cancelButton)
        self.cancelButton.clicked.connect(self.cancel)
        runner.state_changed.connect(self._on_state_changed)
        runner.stage_changed.connect(self._on_stage_changed)
        runner.progressed.connect(self._on_progressed)
        job_board().jobs_changed.connect(self._on_jobs_changed)
        self._on_state_changed(runner.state)

    @Slot()
    def cancel(self) -> None:
        """What Cancel does (a dialog closed while its job runs does it too): the job stops, and the line says so."""
        self._runner.cancel()
        if self._runner.is_running:
            self.label.setText(f"{self._runner.description}: stopping at the next step …")
            self.cancelButton.setEnabled(False)

    @Slot(str)
    def _on_state_changed(self, state: str) -> None:
        self.setVisible(state in (QUEUED, RUNNING))
        self.cancelButton.setEnabled(state in (QUEUED, RUNNING))
        self.bar.setRange(0, 0)  # busy until the job counts
        self._first_count = None
        self._stage = ""
        if state == RUNNING:
            self.label.setText(f"{self._runner.description} …")
        elif state == QUEUED:
            self._on_jobs_changed()

    @Slot()
    def _on_jobs_changed(self) -> None:
        if not self._runner.is_queued:
            return
        board = job_board()
        queue = board.queued()
        place = queue.index(self._runner) + 1 if self._runner in queue else 0
        holder = TRAINING.lower() if board.training else next(
            (r.title.lower() for r in board.running() if r.uses_device), "another job")
        self.label.setText(f"{self._runner.description}: waiting for the {holder} to end (place {place} in the "
                           f"queue)")

    @Slot(str)
    def _on_stage_changed(self, stage: str) -> None:
        self._stage = stage  # shown by the stage's first count, which follows at once (TaskState.progress)

    @Slot(int, int)
    def _on_progressed(self, done: int, total: int) -> None:
        if self._runner.cancel_requested:
            return
        if self._stage and total <= 0:  # a stage without a count (a comparison's latency runs)
            self.bar.setRange(0, 0)
            self.label.setText(f"{self._runner.description} · {self._stage} …")
            return
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
        count = f"{self._unit} {done} of {total}" if self._unit else f"{done} / {total}"
        if self._stage:
            # No pace: the count starts again with each stage, so the time left would be the stage's, not the job's.
            self.label.setText(f"{self._runner.description} · {self._stage} · {count}")
            return
        self.label.setText(f"{self._runner.description}: {count}{self._pace(done, total)}")

    def _pace(self, done: int, total: int) -> str:
        """How long a step takes and how long the rest may take, measured from the first count (which includes
        the job's set-up, so it is not a step): a sweep of 100 steps at 15 s each must say so (issue 28)."""
        now = time.monotonic()
        if self._first_count is None:
            self._first_count = (now, done)
            return ""
        started, first = self._first_count
        if done <= first:
            return ""
        each = (now - started) / (done - first)
        unit = f" a {self._unit}" if self._unit else " each"
        left = duration_text(each * (total - done))
        return f" · {seconds_text(each)}{unit} · {'at most ' if self._bound else 'about '}{left} left"
