"""What a tab shows while the studio imports torch at start-up (gui/main_window.py, deferred): that it is loading,
and that the Data tab works meanwhile; or, when the import failed, why. The main window puts the tab's panel in its
place once torch is there."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from gui.resources import app_icon


class EngineLoadingPage(QWidget):
    def __init__(self, name: str, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)  # the panel's: the remembered current tab is found while it loads
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(96, 96))
        icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label = QLabel(f"The {title} tab needs torch and the model zoo, which are loading …\n"
                            f"The Data tab works meanwhile.")
        self.label.setObjectName("loadingLabel")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate
        self.busy.setTextVisible(False)
        self.busy.setFixedWidth(320)
        layout = QVBoxLayout(self)
        layout.addStretch()
        layout.addWidget(icon)
        layout.addWidget(self.label)
        layout.addWidget(self.busy, alignment=Qt.AlignmentFlag.AlignCenter)
        layout.addStretch()

    def show_failure(self, text: str) -> None:
        self.label.setText(text)
        self.busy.hide()
