"""Simulated drag and drop for the GUI tests, as Qt delivers it."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication


def drop_urls(widget, paths) -> QDropEvent:
    """A real drop: Qt delivers a Drop only to the widget that accepted the drag's DragEnter."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(QPoint(5, 5), *args)  # QPoint: the one position type every PySide6 6.x accepts here
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(5, 5), *args)
    QApplication.sendEvent(widget, drop)
    return drop
