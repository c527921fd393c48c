"""A push button as the studio makes them: found by its object name (tests, tooltips), explained by its tooltip;
or one that shows a QAction a menu shows as well."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QPushButton


def named_button(name: str, text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    return button


class ActionButton(QPushButton):
    """A push button for an action: its text (without the menu's mnemonic), its tooltip and whether it can be
    pressed are the action's, and a click triggers it. A push button, not a QToolButton with a default action,
    so that it looks like the studio's other buttons."""

    def __init__(self, name: str, action: QAction):
        super().__init__()
        self.setObjectName(name)
        self._action = action
        action.changed.connect(self._follow_action)
        self.clicked.connect(action.trigger)
        self._follow_action()

    def action(self) -> QAction:
        return self._action

    @Slot()
    def _follow_action(self) -> None:
        self.setText(self._action.iconText())
        self.setToolTip(self._action.toolTip())
        self.setEnabled(self._action.isEnabled())
