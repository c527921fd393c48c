"""The background half of the advisor and compare-models dialogs: one engine measurement (a probe, a comparison)
in a QObject moved to its own WorkerThread (gui/workers/threads.py), cancelled cooperatively through the engine's
`should_stop`, never terminated. Progress reaches the GUI thread only when what a user sees changes (the stage or a
whole percent), as Orange's TaskState does, so a fast pass does not flood the event loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from engine.errors import ThawError

log = logging.getLogger(__name__)

# work(should_stop, progress) -> result (None: stopped); progress(label, done, total)
Measure = Callable[[Callable[[], bool], Callable[[str, int, int], None]], Any]


class MeasureWorker(QObject):
    progressed = Signal(str, int, int)  # what, done, total
    succeeded = Signal(object)  # the engine call's result
    stopped = Signal()  # cancelled: the call returned early
    failed = Signal(str)  # one line a user can act on
    finished = Signal()  # always the last signal

    def __init__(self, work: Measure):
        super().__init__()
        self._work = work
        self._cancelled = threading.Event()
        self._shown: tuple | None = None
        self._home_thread = self.thread()

    def cancel(self) -> None:  # any thread (WorkerThread.stop calls it too)
        self._cancelled.set()

    def _progress(self, label: str, done: int, total: int) -> None:
        key = (label, int(100 * done / total) if total else -1)
        if key != self._shown:
            self._shown = key
            self.progressed.emit(label, done, total)

    @Slot()
    def run(self) -> None:
        try:
            result = self._work(self._cancelled.is_set, self._progress)
        except ThawError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user, not end the thread silently
            log.exception("a measurement failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            if result is None:  # a comparison stopped part-way is a result: it keeps the models measured
                self.stopped.emit()
            else:
                self.succeeded.emit(result)
        finally:
            self.moveToThread(self._home_thread)  # deleted on the GUI thread, as gui/workers/jobs.py does
            self.finished.emit()
