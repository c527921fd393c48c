"""The "Get a dataset…" dialog's background work: one `engine.data.download.download_source` call in a QObject
moved to its own WorkerThread (gui/workers/threads.py), cancelled cooperatively through the engine's
`should_stop` (checked between chunks of the download and of the checksum), never terminated.

Progress is forwarded only when what a user sees changes (the stage, the archive, or a whole percent), so a
fast loopback or disk does not flood the GUI thread with signals (as Orange's TaskState does).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from engine.data.download import DownloadProgress, download_source
from engine.data.sources.base import DataSource
from engine.errors import ThawError

log = logging.getLogger(__name__)


class DownloadWorker(QObject):
    progressed = Signal(object)  # DownloadProgress
    succeeded = Signal(object)  # DownloadResult
    stopped = Signal(str)  # a cancel: what was fetched is kept
    failed = Signal(str)  # one line a user can act on
    finished = Signal()  # always the last signal

    def __init__(self, source: DataSource, root: str | Path):
        super().__init__()
        self.source = source
        self.root = Path(root)
        self._cancelled = threading.Event()
        self._shown: tuple | None = None
        self._home_thread = self.thread()

    def cancel(self) -> None:  # any thread (WorkerThread.stop calls it too)
        self._cancelled.set()

    def _progress(self, p: DownloadProgress) -> None:
        percent = int(100 * p.done / p.total) if p.total else -1
        key = (p.index, p.stage, percent if p.total else p.done >> 20)  # unknown totals: every MiB
        if key != self._shown:
            self._shown = key
            self.progressed.emit(p)

    @Slot()
    def run(self) -> None:
        from engine.data.fetch import DownloadStopped

        try:
            result = download_source(self.source, self.root, self._progress, self._cancelled.is_set)
        except DownloadStopped as exc:
            self.stopped.emit(str(exc))
        except ThawError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user, not end the thread silently
            log.exception("the download failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(result)
        finally:
            self.moveToThread(self._home_thread)  # deleted on the GUI thread, as gui/workers/jobs.py does
            self.finished.emit()
