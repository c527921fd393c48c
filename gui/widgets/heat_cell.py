"""Paints a heat-map cell (a confusion-matrix count): its own colour always, the selection as a frame around it.

Qt's default delegate fills a selected cell with the selection colour, which hides the very colour that says
whether the chosen cell is right (blue) or an error (red)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

SELECTION_FRAME = QColor(20, 20, 20)
FRAME_WIDTH = 3


class HeatCellDelegate(QStyledItemDelegate):
    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        painter.save()
        background = index.data(Qt.ItemDataRole.BackgroundRole)
        if background is not None:
            painter.fillRect(option.rect, background)
        foreground = index.data(Qt.ItemDataRole.ForegroundRole)
        painter.setPen(foreground if foreground is not None else option.palette.text().color())
        painter.drawText(option.rect, int(Qt.AlignmentFlag.AlignCenter), str(index.data() or ""))
        if option.state & QStyle.StateFlag.State_Selected:
            painter.setPen(QPen(SELECTION_FRAME, FRAME_WIDTH))
            inset = FRAME_WIDTH // 2 + 1
            painter.drawRect(option.rect.adjusted(inset, inset, -inset, -inset))
        painter.restore()
