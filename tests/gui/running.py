"""Which recorded QThreads still run."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QThread


def still_running(threads: list[QThread]) -> list[QThread]:
    """The threads that run now (a deleted QThread has ended: its C++ object is gone)."""
    return [t for t in threads if shiboken6.isValid(t) and t.isRunning()]
