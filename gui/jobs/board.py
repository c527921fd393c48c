"""Every background job of the studio in one place (after DIGITS' job queue): the board knows each JobRunner
(gui/jobs/runner.py), lets one device-bound job run at a time — and none while a training run holds the device —
queues the others in order, and ends them all when the studio closes.

Why a queue: on a 2-core machine an estimate, a learning-rate sweep and a training run started together each ran
at a third of their speed and each timing was wrong; one after the other they finish sooner and measure right.
Jobs that do not compete (a scan, a prediction, reading a file) never wait here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from gui.jobs.runner import JobRunner

TRAINING = "Training run"  # how the queue names the device's holder while a run trains


class JobBoard(QObject):
    jobs_changed = Signal()  # a job was queued, started, reordered or ended

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._runners: list[JobRunner] = []
        self._queue: list[JobRunner] = []
        self._holder: JobRunner | None = None  # the device-bound job running now
        self._training = False

    # --- who is known -------------------------------------------------------------------------------------------
    def register(self, runner: JobRunner) -> None:
        self._runners.append(runner)
        runner.destroyed.connect(self._forget_deleted)

    def unregister(self, runner: JobRunner) -> None:
        if runner in self._runners:
            self._runners.remove(runner)
        if runner in self._queue:
            self._queue.remove(runner)
            self.jobs_changed.emit()

    def _forget_deleted(self, *_args) -> None:
        self._runners = [r for r in self._runners if shiboken6.isValid(r)]
        self._queue = [r for r in self._queue if shiboken6.isValid(r)]
        if self._holder is not None and not shiboken6.isValid(self._holder):
            self._holder = None
            self._start_next()
        self.jobs_changed.emit()

    # --- the device ---------------------------------------------------------------------------------------------
    @property
    def device_busy(self) -> bool:
        return self._training or self._holder is not None

    def take_device(self, runner: JobRunner) -> bool:
        """True: `runner` may run now (it holds the device until `give_back_device`); False: it is queued."""
        if not self.device_busy and not self._queue:
            self._holder = runner
            return True
        self._queue.append(runner)
        return False

    def give_back_device(self, runner: JobRunner) -> None:
        if self._holder is runner:
            self._holder = None
            self._start_next()
        self.jobs_changed.emit()

    def leave_queue(self, runner: JobRunner) -> None:
        if runner in self._queue:
            self._queue.remove(runner)
            self.jobs_changed.emit()

    def set_training(self, running: bool) -> None:
        """A training run holds the device while it runs (the main window follows its controller)."""
        self._training = running
        if not running:
            self._start_next()
        self.jobs_changed.emit()

    def _start_next(self) -> None:
        while not self.device_busy and self._queue:
            runner = self._queue.pop(0)
            if shiboken6.isValid(runner):
                self._holder = runner
                runner.run_from_queue()
                self.jobs_changed.emit()

    # --- the queue, as the user sees and orders it ------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self._training

    def running(self) -> list[JobRunner]:
        return [r for r in self._runners if shiboken6.isValid(r) and r.is_running]

    def queued(self) -> list[JobRunner]:
        return list(self._queue)

    def start_training(self, start: Callable[[], None], description: str,
                       parent: QObject | None = None) -> TrainingWaiter | None:
        """Start a training run now (`start()`), or queue it behind the device's holder; the waiter when queued."""
        if not self.device_busy and not self._queue:
            start()
            return None
        waiter = TrainingWaiter(self, start, description, parent)
        self._queue.append(waiter)
        self.jobs_changed.emit()
        return waiter

    def move(self, runner: JobRunner, steps: int) -> None:
        """Move a queued job `steps` places towards the front (negative: towards the back)."""
        if runner not in self._queue:
            return
        index = self._queue.index(runner)
        target = min(max(0, index - steps), len(self._queue) - 1)
        self._queue.insert(target, self._queue.pop(index))
        self.jobs_changed.emit()

    def cancel_all(self) -> None:
        for runner in list(self._queue) + self.running():
            runner.cancel()

    def shutdown(self, runners: list[JobRunner] | None = None) -> None:
        """Cancel `runners`' jobs (every job by default) and wait for their threads (the studio is closing).
        The queued ones leave the queue first, so that none starts just to be stopped."""
        runners = [r for r in (self._runners if runners is None else runners) if shiboken6.isValid(r)]
        for runner in runners:
            self.leave_queue(runner)
        for runner in runners:
            runner.shutdown()


class TrainingWaiter(QObject):
    """A training run asked for while a job holds the device: it waits in the queue like a job (the user may move
    or cancel it there) and starts the run when its turn comes. The run itself then holds the device
    (`JobBoard.set_training`)."""

    cancelled = Signal()

    def __init__(self, board: JobBoard, start: Callable[[], None], description: str, parent: QObject | None = None):
        super().__init__(parent)
        self._board = board
        self._start = start
        self.title = TRAINING
        self.description = description
        self.uses_device = True
        self.is_queued = True
        self.is_running = False
        self.cancel_requested = False

    def run_from_queue(self) -> None:
        self.is_queued = False
        self._start()  # the run takes the device (set_training) before this waiter gives its turn back
        self._board.give_back_device(self)

    def cancel(self) -> None:
        if self.is_queued:
            self.is_queued = False
            self._board.leave_queue(self)
            self.cancelled.emit()


_board: JobBoard | None = None


def job_board() -> JobBoard:
    """The studio's one board (made on first use, in the GUI thread)."""
    global _board
    if _board is None or not shiboken6.isValid(_board):
        _board = JobBoard()
    return _board
