"""The one way the studio runs work off the GUI thread: a `WorkerThread` — a QThread and the QObject workers that
live in it.

Two uses, one helper:
- a panel's long-lived workers (scanning, inference): started on first use, jobs arrive as queued calls, stopped
  when the panel shuts down or is deleted;
- one job (a training run, the start-up imports): `job` runs when the thread starts and the thread quits when the
  worker's `done` signal fires.

`stop()` cancels the current job (a worker's `cancel()`, if it has one), quits and waits: a thread is never
terminated, and never left running when its owner goes (Qt aborts on the destruction of a running QThread).
Every thread runs torch with one CPU thread (gui/workers/torch_threads.py); the training worker raises its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import shiboken6
from PySide6.QtCore import QObject, Qt, QThread, SignalInstance

from gui.workers.torch_threads import OneTorchThreadQThread


class WorkerThread:
    def __init__(self, name: str, workers: Sequence[QObject], owner: QObject | None = None,
                 job: Callable[[], None] | None = None, done: SignalInstance | None = None):
        # Unparented: the QThread must outlive an owner that is deleted while it runs, until stop() has waited.
        self.qthread = OneTorchThreadQThread()
        self.qthread.setObjectName(name)
        self.workers = list(workers)
        for worker in self.workers:
            worker.moveToThread(self.qthread)
        if job is not None:
            self.qthread.started.connect(job)
        if done is not None:
            # Direct: quit() is thread-safe, and a queued call would wait for a GUI thread that may be blocked in
            # stop()/wait().
            done.connect(self.qthread.quit, Qt.ConnectionType.DirectConnection)
        if owner is not None:
            # The partial holds the thread and workers, not the owner, so it can run while the owner is deleted.
            owner.destroyed.connect(functools.partial(_stop, self.qthread, tuple(self.workers)))

    @property
    def name(self) -> str:
        return self.qthread.objectName()

    def start(self) -> WorkerThread:
        self.qthread.start()
        return self

    @property
    def is_running(self) -> bool:
        return shiboken6.isValid(self.qthread) and self.qthread.isRunning()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the thread has ended (True) or the timeout passed (False)."""
        if not shiboken6.isValid(self.qthread):
            return True
        return self.qthread.wait(timeout_ms) if timeout_ms >= 0 else self.qthread.wait()

    def stop(self) -> None:
        """Cancel the current job, end the thread and wait for it (safe to call twice)."""
        _stop(self.qthread, tuple(self.workers))


def _stop(thread: QThread, workers: tuple[QObject, ...], *_args) -> None:
    if not shiboken6.isValid(thread):
        return  # already stopped and deleted (at interpreter exit)
    for worker in workers:
        cancel = getattr(worker, "cancel", None)
        if callable(cancel) and shiboken6.isValid(worker):
            cancel()
    thread.quit()
    thread.wait()
