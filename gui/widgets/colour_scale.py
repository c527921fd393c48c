"""The colour scale of a heat map: the very colour map the overlay uses (engine/infer/explain.py `jet`), from low
to high, with what the ends mean."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

from engine.infer.explain import jet

STOPS = 33  # samples of the colour map: enough for a smooth bar
BAR_HEIGHT = 10


class ColourScale(QWidget):
    def __init__(self, object_name: str, low: str, high: str, tooltip: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setToolTip(tooltip)
        self.low, self.high = low, high
        positions = np.linspace(0.0, 1.0, STOPS)
        self._stops = [(float(t), QColor.fromRgbF(*map(float, rgb))) for t, rgb in zip(positions, jet(positions))]

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(220, BAR_HEIGHT + self.fontMetrics().height() + 6)

    def bar_rect(self) -> QRect:
        return QRect(4, 2, max(1, self.width() - 8), BAR_HEIGHT)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        bar = self.bar_rect()
        gradient = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for position, colour in self._stops:
            gradient.setColorAt(position, colour)
        painter.fillRect(bar, gradient)
        painter.setPen(self.palette().windowText().color())
        text = QRect(bar.left(), bar.bottom() + 2, bar.width(), self.height() - bar.bottom() - 2)
        painter.drawText(text, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), self.low)
        painter.drawText(text, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop), self.high)
        painter.end()
