"""Tooltips: set by objectName, and long ones wrapped so that none runs off the screen.

Qt shows a plain-text tooltip on one line however long it is (QTipLabel wraps only rich text), so a sentence of
explanation is cut at the screen's edge. `WrappedToolTips`, installed once on the application, shows a long
plain tooltip — a widget's own or an item view cell's — as escaped rich text, which Qt wraps.
"""

from __future__ import annotations

import html

from PySide6 import QtGui
from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QAbstractItemView, QApplication, QToolTip, QWidget

WRAP_CHARS = 90  # plain tooltips longer than this are wrapped


def set_tooltips(root: QWidget, tips: dict[str, str]) -> None:
    """Give each named child of `root` its tooltip; a name that is not there is an error (a renamed widget must
    not silently lose its explanation)."""
    missing = []
    for name, tip in tips.items():
        widget = root.findChild(QWidget, name)
        if widget is None:
            missing.append(name)
        else:
            widget.setToolTip(tip)
    if missing:
        raise LookupError(f"no widget named {', '.join(missing)} in {root.objectName() or type(root).__name__}")


def wrapped(text: str) -> str:
    """`text` as rich text that Qt wraps; rich text (and short text) is returned as it is."""
    if len(text) <= WRAP_CHARS or QtGui.Qt.mightBeRichText(text):
        return text
    return "<p style='white-space: pre-wrap'>" + html.escape(text).replace("\n", "<br>") + "</p>"


class WrappedToolTips(QObject):
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() != QEvent.Type.ToolTip or not isinstance(obj, QWidget):
            return False
        text, area = obj.toolTip(), QRect()
        view = obj.parentWidget()
        if not text and isinstance(view, QAbstractItemView) and obj is view.viewport():
            index = view.indexAt(event.pos())
            text = str(index.data(Qt.ItemDataRole.ToolTipRole) or "") if index.isValid() else ""
            area = view.visualRect(index)
        if not text or wrapped(text) == text:
            return False  # Qt's own handling
        assert isinstance(event, QHelpEvent)
        QToolTip.showText(event.globalPos(), wrapped(text), obj, area, obj.toolTipDuration())
        return True


_installed: WrappedToolTips | None = None


def install_wrapping_tooltips(app: QApplication | None = None) -> None:
    """Install the filter on the application (once, however often it is called)."""
    global _installed
    app = app or QApplication.instance()
    if app is None or _installed is not None:
        return
    _installed = WrappedToolTips(app)
    app.installEventFilter(_installed)
