"""A push button as the studio makes them: found by its object name (tests, tooltips), explained by its tooltip."""

from __future__ import annotations

from PySide6.QtWidgets import QPushButton


def named_button(name: str, text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    return button
