"""Redraws bounded by time, not by how often data arrives: the live curves and the progress line store what
arrives and draw it at most once per interval."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QWidget


class Coalescer:
    """Calls `redraw` at most once per interval, with whatever is newest then; flush() calls it now if due."""

    def __init__(self, parent: QWidget, interval_ms: int, redraw):
        self._redraw = redraw
        self._pending = False
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.flush)

    @property
    def interval_ms(self) -> int:
        return self._timer.interval()

    def set_interval(self, ms: int) -> None:
        self._timer.setInterval(ms)

    def request(self) -> None:
        self._pending = True
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        self._timer.stop()
        if self._pending:
            self._pending = False
            self._redraw()

    def cancel(self) -> None:
        self._timer.stop()
        self._pending = False
