"""The device queue as the user sees it (the main window's Jobs dock): what holds the device now — a training run
or a job — and the jobs waiting for it, in order; a waiting job can be moved up or down or cancelled, a running
one cancelled."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from gui.jobs.board import TRAINING, JobBoard, job_board
from gui.jobs.runner import JobRunner
from gui.widgets.buttons import named_button


class JobQueueView(QWidget):
    def __init__(self, board: JobBoard | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("jobQueueView")
        self._board = board or job_board()
        self.jobList = QListWidget()
        self.jobList.setObjectName("jobQueueList")
        self.jobList.setToolTip("Jobs that use the device run one at a time, after any training run; the others "
                                "wait here in order")
        self.upButton = named_button("jobQueueUpButton", "Move up", "Run the selected waiting job earlier")
        self.downButton = named_button("jobQueueDownButton", "Move down", "Run the selected waiting job later")
        self.cancelButton = named_button("jobQueueCancelButton", "Cancel", "Stop the selected job, or take it out "
                                                                           "of the queue")
        buttons = QHBoxLayout()
        for button in (self.upButton, self.downButton, self.cancelButton):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.jobList, 1)
        layout.addLayout(buttons)
        self.upButton.clicked.connect(lambda: self._move(1))
        self.downButton.clicked.connect(lambda: self._move(-1))
        self.cancelButton.clicked.connect(self._cancel)
        self.jobList.currentRowChanged.connect(self._update_buttons)
        self._board.jobs_changed.connect(self.refresh)
        self.refresh()

    def rows(self) -> list[str]:
        return [self.jobList.item(i).text() for i in range(self.jobList.count())]

    def runner_at(self, row: int) -> JobRunner | None:
        item = self.jobList.item(row)
        runner = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return runner if runner is not None and shiboken6.isValid(runner) else None

    @Slot()
    def refresh(self) -> None:
        selected = self.runner_at(self.jobList.currentRow())
        self.jobList.blockSignals(True)
        self.jobList.clear()
        if self._board.training:
            self._add(f"▶ {TRAINING} (holds the device; stop it on the Training tab)", None)
        for runner in self._board.running():
            stopping = " — stopping" if runner.cancel_requested else ""
            self._add(f"▶ {runner.description}{stopping}", runner)
        for place, runner in enumerate(self._board.queued(), 1):
            self._add(f"{place}. {runner.description} — waiting", runner)
        for row in range(self.jobList.count()):
            if selected is not None and self.runner_at(row) is selected:
                self.jobList.setCurrentRow(row)
        self.jobList.blockSignals(False)
        self._update_buttons()

    def _add(self, text: str, runner: JobRunner | None) -> None:
        item = QListWidgetItem(text)
        item.setData(Qt.ItemDataRole.UserRole, runner)
        self.jobList.addItem(item)

    @Slot()
    def _update_buttons(self, *_args) -> None:
        runner = self.runner_at(self.jobList.currentRow())
        queue = self._board.queued()
        self.cancelButton.setEnabled(runner is not None)
        self.upButton.setEnabled(runner in queue and queue.index(runner) > 0)
        self.downButton.setEnabled(runner in queue and queue.index(runner) < len(queue) - 1)

    def _move(self, steps: int) -> None:
        runner = self.runner_at(self.jobList.currentRow())
        if runner is not None:
            self._board.move(runner, steps)

    def _cancel(self) -> None:
        runner = self.runner_at(self.jobList.currentRow())
        if runner is not None:
            runner.cancel()

    def summary(self) -> str:
        """One line for the status bar."""
        running = len(self._board.running()) + self._board.training
        waiting = len(self._board.queued())
        if not running and not waiting:
            return "No jobs"
        return f"Jobs: {running} running" + (f", {waiting} waiting" if waiting else "")
