"""One engine call off the GUI thread — a learning-rate sweep (Optimizer tab), a run's cost estimate (Training
tab) — as a job in its own WorkerThread (gui/workers/threads.py), which ends when the job does.

The job runs torch with the training thread's count (gui/workers/torch_threads.py): both calls train or time
real batches, and an estimate timed on one thread would say a run takes twice as long as it does. The thread, and
with it its OpenMP pool, ends with the job. A cancel (the owner going away) is seen by the engine call through
its `should_stop`; the thread is waited for, never terminated.

An owner learns that the job is over from the *thread's* `finished` (`WorkerThread.qthread.finished`), not the
job's: the job's `finished` fires inside the thread, which still runs Python (its torch thread count) before it
ends, so an owner that waited for the thread on the job's signal would hold the GIL that the thread needs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from engine.errors import ThawError
from gui.workers.threads import WorkerThread
from gui.workers.torch_threads import training_threads, use_torch_threads

log = logging.getLogger(__name__)

# work(should_stop, progress) -> result
Work = Callable[[Callable[[], bool], Callable[[int, int], None]], Any]


class EngineJob(QObject):
    progressed = Signal(int, int)  # done, total
    succeeded = Signal(object)  # the engine call's result
    failed = Signal(str)  # one line a user can act on
    finished = Signal()  # always the last signal

    def __init__(self, work: Work):
        super().__init__()
        self._work = work
        self._cancelled = threading.Event()
        self._home_thread = self.thread()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @Slot()
    def run(self) -> None:
        use_torch_threads(training_threads())
        try:
            result = self._work(self._cancelled.is_set, self.progressed.emit)
        except ThawError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user, not end the thread silently
            log.exception("a background job failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(result)
        finally:
            # Back to the GUI thread, so that Python deletes the job there (as gui/workers/training.py does).
            self.moveToThread(self._home_thread)
            self.finished.emit()


def start_job(name: str, work: Work, owner: QObject, ended: Callable[[], None]) -> tuple[WorkerThread, EngineJob]:
    """Start `work` in a new thread named `name`; `ended` is called on the GUI thread once the thread has ended.
    The thread stops (cancelling the job) if `owner` is deleted."""
    job = EngineJob(work)
    thread = WorkerThread(name, [job], owner=owner, job=job.run, done=job.finished)
    thread.qthread.finished.connect(ended)
    return thread, job
