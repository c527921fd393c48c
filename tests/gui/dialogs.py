"""Answering the studio's modal questions in GUI tests, through the real dialog: a timer finds the modal message
box once its event loop runs and clicks the chosen button, as a user would."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

POLL_MS = 10
MAX_POLLS = 500  # 5 s: a question that never comes is reported by the test's own assertions, not waited for


class DialogAnswers:
    """Answers the next modal QMessageBoxes with the given buttons, in order; records each box's texts."""

    def __init__(self, *buttons: QMessageBox.StandardButton | str):
        self.pending = list(buttons)
        self.asked: list[str] = []  # "title: text informative text" of every box answered
        self._polls = 0
        if self.pending:
            QTimer.singleShot(0, self._answer)

    def _answer(self) -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            self._polls += 1
            if self._polls < MAX_POLLS:
                QTimer.singleShot(POLL_MS, self._answer)
            return
        self._polls = 0
        self.asked.append(f"{box.windowTitle()}: {box.text()} {box.informativeText()}")
        choice = self.pending.pop(0)
        if isinstance(choice, str):  # a custom button, by its text
            button = next(b for b in box.buttons() if b.text().replace("&", "") == choice)
        else:
            button = box.button(choice)
        button.click()
        if self.pending:
            QTimer.singleShot(0, self._answer)
