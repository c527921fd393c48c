"""The base of the studio's request workers — long-lived QObjects in a panel's thread (scan, inference, evaluation
reads, label issues, network views) whose requests a newer one replaces — and the panel's thread they live in.

The GUI thread begins a request (or cancels) by raising the latest id; the worker, between two steps of a job,
compares its job's id with the latest and abandons the job when they differ — from a progress callback by raising
`Cancelled`, which the worker catches. Reading an int another thread writes is safe under the GIL, and a stale
read only delays the abandon by one step.

Jobs that run once and compete for the device (an estimate, a sweep, an evaluation, an export) are JobRunners
instead (gui/jobs/runner.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject

from gui.workers.threads import WorkerThread


class Cancelled(Exception):
    """Raised from a progress callback to abandon a job that a newer request replaced."""


class RequestIds:
    def __init__(self) -> None:
        self.latest = 0

    def begin(self) -> int:
        self.latest += 1
        return self.latest

    def cancel(self) -> None:
        self.latest += 1

    def is_current(self, request: int) -> bool:
        return request == self.latest

    def check(self, request: int) -> None:
        if request != self.latest:
            raise Cancelled


class RequestWorker(QObject):
    """A worker whose newest request wins: `begin_request()` (GUI thread) returns the id to send with a request and
    abandons older ones; `cancel()` abandons all (WorkerThread.stop calls it)."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._requests = RequestIds()

    def begin_request(self) -> int:
        return self._requests.begin()

    def cancel(self) -> None:
        self._requests.cancel()

    def is_current(self, request: int) -> bool:
        return self._requests.is_current(request)

    def check(self, request: int) -> None:
        """Raise Cancelled when `request` was replaced (call it between two steps)."""
        self._requests.check(request)


class PanelThread:
    """The thread a panel's request workers live in: started on first use (most sessions never need most panels),
    stopped by `shutdown()` — the main window's close — or when the owner is deleted; never restarted after."""

    def __init__(self, name: str, workers: Sequence[QObject], owner: QObject):
        self._name = name
        self._workers = list(workers)
        self._owner = owner
        self.thread: WorkerThread | None = None
        self.shut_down = False

    def ensure(self) -> bool:
        """Start the thread if needed; False once shut down (the workers are gone)."""
        if self.shut_down:
            return False
        if self.thread is None:
            self.thread = WorkerThread(self._name, self._workers, owner=self._owner).start()
        return True

    def shutdown(self) -> None:
        """Cancel the workers' requests, end the thread and wait for it (safe to call twice)."""
        self.shut_down = True
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
