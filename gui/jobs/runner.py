"""The studio's one job lifecycle (after Orange's `ConcurrentWidgetMixin`): a `JobRunner` owns one kind of
background job of a panel — an estimate, a learning-rate sweep, an evaluation, an export — and gives every one
the same life: start (or wait in the device queue, gui/jobs/board.py), progress, partial results, a result
or a one-line failure, cancel, and shutdown when its owner closes.

The work is a plain function `work(task)` that runs in a thread of its own (a WorkerThread, which ends with the
job) and sees only a `TaskState` — `task.should_stop()`, `task.progress(done, total)`, `task.partial(value)` —
so engine code stays free of Qt and is stopped cooperatively between its steps, never terminated. A job that goes
through stages (a comparison: each model's features, fit, latency) names the stage with its count,
`task.progress(done, total, stage)`.

The job runs torch with the training thread's count (gui/workers/torch_threads.py): an estimate or a sweep timed
on one thread would say a run takes twice as long as it does. The thread, and with it its OpenMP pool, ends with
the job.

A runner reports the end from the *thread's* `finished`, not the job's: the job's last signal fires inside the
thread, which still runs Python before it ends, so a panel told on the job's signal that started the next job, or
waited for the thread, would race it. When a panel hears `job_finished` the runner is idle and may start again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal, Slot

from engine.errors import ThawError
from gui.jobs import memory
from gui.workers.threads import WorkerThread
from gui.workers.torch_threads import training_threads, use_torch_threads

log = logging.getLogger(__name__)

IDLE, QUEUED, RUNNING = "idle", "queued", "running"


class JobCancelled(Exception):
    """Raised by `TaskState.check()` (or by work itself) to end a job that was asked to stop."""


class TaskState:
    """What a job's work sees of its runner: a cancel flag and two ways to report (thread-safe)."""

    def __init__(self, job: Job):
        self._job = job
        self._cancelled = threading.Event()
        self._last_progress: tuple[int, int] | None = None
        self._stage: str | None = None

    def cancel(self) -> None:
        self._cancelled.set()

    def should_stop(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise JobCancelled

    def progress(self, done: int, total: int, stage: str | None = None) -> None:
        """Report progress; a repeat of the last report is dropped (a signal per batch would flood the GUI).
        `stage`: what the job is at, when it goes through stages whose counts start again (None: unchanged);
        `total` 0: the stage has no count."""
        if stage is not None and stage != self._stage:
            self._stage = stage
            self._last_progress = None  # a new stage may start with the count the last one ended on
            self._job.stage_changed.emit(stage)
        if (done, total) != self._last_progress:
            self._last_progress = (done, total)
            self._job.progressed.emit(int(done), int(total))

    def partial(self, value: Any) -> None:
        """Hand the panel something to show before the end (a sweep's points so far)."""
        self._job.partial_result_produced.emit(value)


Work = Callable[[TaskState], Any]


class Job(QObject):
    """The QObject that runs one `work` call in its thread and reports back through queued signals."""

    progressed = Signal(int, int)  # done, total
    stage_changed = Signal(str)
    partial_result_produced = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)  # one line a user can act on
    finished = Signal()  # always the last signal

    def __init__(self, work: Work):
        super().__init__()
        self._work = work
        self.task = TaskState(self)
        self._home_thread = self.thread()

    @Slot()
    def run(self) -> None:
        use_torch_threads(training_threads())
        try:
            result = self._work(self.task)
        except JobCancelled:
            pass
        except ThawError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user as a line, not end the thread silently
            log.exception("a background job failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(result)
        finally:
            # Back to the GUI thread, so that Python deletes the job there (as gui/workers/training.py does).
            self.moveToThread(self._home_thread)
            self.finished.emit()


class JobRunner(QObject):
    """One kind of background job of a panel, one at a time. The panel connects to the signals below, calls
    `start(work, description)`, offers `cancel()`, and the main window's close ends them all
    (`job_board().shutdown_all()`).

    `uses_device`: the job competes for the compute device (it trains, times or evaluates a model) and waits in
    the board's queue while another such job or a training run holds it."""

    state_changed = Signal(str)  # IDLE, QUEUED or RUNNING
    progressed = Signal(int, int)  # done, total
    stage_changed = Signal(str)  # before the stage's first `progressed`
    partial_result_produced = Signal(object)
    job_succeeded = Signal(object)  # the work's return value
    job_failed = Signal(str)
    job_cancelled = Signal()
    job_finished = Signal()  # after any of the three above; the runner is idle again

    def __init__(self, name: str, title: str, parent: QObject, uses_device: bool = False):
        super().__init__(parent)
        from gui.jobs.board import job_board

        self.setObjectName(name)
        self.title = title  # what the queue calls this kind of job ("Estimate", "LR finder")
        self.description = ""  # what the current job does, for the queue and the progress line
        self.uses_device = uses_device
        self._state = IDLE
        self._work: Work | None = None
        self._job: Job | None = None
        self._thread: WorkerThread | None = None
        self._outcome: tuple[str, Any] | None = None
        self._shut_down = False
        self._board = job_board()
        self._board.register(self)

    # --- state ------------------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def is_busy(self) -> bool:
        return self._state != IDLE

    @property
    def is_running(self) -> bool:
        return self._state == RUNNING

    @property
    def is_queued(self) -> bool:
        return self._state == QUEUED

    @property
    def cancel_requested(self) -> bool:
        return self._job is not None and self._job.task.should_stop()

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)
            self._board.jobs_changed.emit()

    # --- commands ---------------------------------------------------------------------------------------------
    def start(self, work: Work, description: str = "") -> bool:
        """Run `work` now, or queue it while the device is taken. False (and nothing happens) when a job of this
        runner is already queued or running, or the runner is shut down."""
        if self.is_busy or self._shut_down:
            return False
        self._work, self.description, self._outcome = work, description or self.title, None
        if self.uses_device and not self._board.take_device(self):
            self._set_state(QUEUED)
            return True
        self._launch()
        return True

    def cancel(self) -> None:
        """Stop the job at its next step (or take it out of the queue). The end is reported by `job_cancelled`."""
        if self._state == QUEUED:
            self._board.leave_queue(self)
            self._work = None
            self._set_state(IDLE)
            self.job_cancelled.emit()
            self.job_finished.emit()
        elif self._job is not None:
            self._job.task.cancel()
            self._board.jobs_changed.emit()

    def shutdown(self) -> None:
        """Cancel and wait for the thread to end; no job starts afterwards (safe to call twice)."""
        self._shut_down = True
        if self._state == QUEUED:
            self._board.leave_queue(self)
            self._set_state(IDLE)
        if self._thread is not None:
            self._thread.stop()  # cancels the job (its `cancel`) and waits
            self._on_thread_finished()
        self._board.unregister(self)

    # --- the board calls this when the device is free for a queued job ----------------------------------------
    def run_from_queue(self) -> None:
        if self._state == QUEUED and not self._shut_down:
            self._launch()

    # --- the thread -------------------------------------------------------------------------------------------
    def _launch(self) -> None:
        job = Job(self._work)
        job.cancel = job.task.cancel  # WorkerThread.stop() cancels a worker through its `cancel`
        job.stage_changed.connect(self.stage_changed)
        job.progressed.connect(self.progressed)
        job.partial_result_produced.connect(self.partial_result_produced)
        job.succeeded.connect(self._on_succeeded)  # queued: the runner lives in the GUI thread
        job.failed.connect(self._on_failed)
        self._job = job
        self._thread = WorkerThread(f"{self.objectName()}Thread", [job], owner=self.parent(), job=job.run,
                                    done=job.finished)
        self._thread.qthread.finished.connect(self._on_thread_finished)
        self._set_state(RUNNING)
        self._thread.start()

    @Slot(object)
    def _on_succeeded(self, result: Any) -> None:
        self._outcome = ("succeeded", result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._outcome = ("failed", message)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, job = self._thread, self._job
        if thread is None:
            return  # reported already (shutdown, then the thread's late `finished`)
        thread.wait()  # `finished` comes just before the thread has really ended
        cancelled = job is not None and job.task.should_stop()
        self._thread, self._job, self._work = None, None, None
        outcome, self._outcome = self._outcome, None
        memory.give_back_memory()  # the job's model and batches are freed: their pages go back (gui/jobs/memory.py)
        if self.uses_device:
            self._board.give_back_device(self)
        if not shiboken6.isValid(self):
            return
        self._set_state(IDLE)
        if cancelled:
            self.job_cancelled.emit()
        elif outcome is not None and outcome[0] == "succeeded":
            self.job_succeeded.emit(outcome[1])
        elif outcome is not None:
            self.job_failed.emit(outcome[1])
        self.job_finished.emit()
