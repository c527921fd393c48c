"""A QTabWidget whose pages scroll when the window is smaller than they need.

Without it the main window's minimum size is the largest page's (over 1 000 px wide), so on a small screen the
window cannot be sized to fit and part of it — the status bar first — ends off-screen. Each page sits in a
QScrollArea that only shows scroll bars when the window is smaller than the page wants; callers keep dealing in the
pages themselves (`addTab`, `widget`, `currentWidget`, `setCurrentWidget`, `indexOf` are the page's, not the
scroll area's)."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QScrollArea, QTabWidget, QWidget


class ScrollingTabs(QTabWidget):
    def addTab(self, page: QWidget, title: str) -> int:  # noqa: N802 - Qt's name
        area = QScrollArea()
        area.setObjectName(f"{page.objectName() or 'page'}Scroll")
        area.setWidgetResizable(True)  # the page fills the area whenever the area is large enough
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setWidget(page)
        return super().addTab(area, title)

    def widget(self, index: int) -> QWidget | None:
        area = super().widget(index)
        return area.widget() if isinstance(area, QScrollArea) else area

    def currentWidget(self) -> QWidget | None:  # noqa: N802
        return self.widget(self.currentIndex())

    def indexOf(self, page: QWidget) -> int:  # noqa: N802
        return next((i for i in range(self.count()) if self.widget(i) is page), -1)

    def setCurrentWidget(self, page: QWidget) -> None:  # noqa: N802
        index = self.indexOf(page)
        if index >= 0:
            self.setCurrentIndex(index)
