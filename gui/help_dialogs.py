"""Help ▸ User guide (docs/GUI.md, the studio's own guide, rendered) and Help ▸ Keyboard shortcuts (read off the
window's actions, so the list cannot drift from what the keys do)."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from gui.resources import docs_dir

GUIDE_FILE = "GUI.md"


class GuideDialog(QDialog):
    """The studio's guide, beside the window (not modal: read it while you work)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("guideDialog")
        self.setWindowTitle("Thaw — user guide")
        self.resize(820, 640)
        self.browser = QTextBrowser(objectName="guideBrowser")
        self.browser.setOpenExternalLinks(True)
        path = docs_dir() / GUIDE_FILE
        try:
            self.browser.setMarkdown(path.read_text(encoding="utf-8"))
        except OSError as exc:  # a packager who left docs/ out: say where it was looked for, never a blank page
            self.browser.setPlainText(f"The guide is not part of this installation: {path} cannot be read "
                                      f"({exc.strerror or exc}). It is docs/GUI.md in Thaw's source.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)


def shortcut_rows(actions: list[QAction]) -> list[tuple[str, str]]:
    """(what, keys) for every action with a shortcut, in the platform's words ("Ctrl+S", "⌘S"), menu order kept."""
    rows = []
    for action in actions:
        keys = action.shortcut()
        if not keys.isEmpty():
            rows.append((action.text().replace("&", "").rstrip("…"),
                         keys.toString(QKeySequence.SequenceFormat.NativeText)))
    return rows


class ShortcutsDialog(QDialog):
    def __init__(self, actions: list[QAction], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("shortcutsDialog")
        self.setWindowTitle("Thaw — keyboard shortcuts")
        rows = shortcut_rows(actions)
        self.table = QTableWidget(len(rows), 2, objectName="shortcutsTable")
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for row, (what, keys) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(what))
            self.table.setItem(row, 1, QTableWidgetItem(keys))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(420, 360)
