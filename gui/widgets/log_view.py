"""A read-only log that follows new lines — unless the user scrolled up to read, until they scroll back down.

QPlainTextEdit follows appended lines only while its scroll bar happens to be at the bottom; a resize, a hidden
tab or a trimmed first block moves it off the bottom and the log stops following for good. Here following is a
state: the user scrolling up ends it, scrolling back to the end resumes it, and nothing else changes it.
"""

from __future__ import annotations

from PySide6.QtWidgets import QPlainTextEdit, QWidget


class FollowingLog(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None, max_lines: int = 10_000):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        self._follow = True
        self._adjusting = False  # the log moves the scroll bar itself: not the user scrolling
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)

    @property
    def following(self) -> bool:
        return self._follow

    def appendPlainText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._adjusting = True
        try:
            super().appendPlainText(text)
        finally:
            self._adjusting = False
        if self._follow:
            self.scroll_to_end()

    def scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        self._adjusting = True
        try:
            bar.setValue(bar.maximum())
        finally:
            self._adjusting = False
        self._follow = True

    def _on_range_changed(self, _minimum: int, _maximum: int) -> None:
        if self._follow:  # new lines, a resize, the tab shown again: stay at the end
            self.scroll_to_end()

    def _on_scrolled(self, value: int) -> None:
        if not self._adjusting:
            self._follow = value >= self.verticalScrollBar().maximum()
