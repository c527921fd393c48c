"""Where the main window goes when no usable geometry is remembered: centred on the screen that holds the mouse
pointer, sized to fit that screen's free area (inside panels and docks), so that no part of it — the status bar
included — starts off-screen."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QCursor, QGuiApplication, QScreen
from PySide6.QtWidgets import QWidget

PREFERRED_SIZE = QSize(1280, 860)  # what the tabs are laid out for
SCREEN_SHARE = 0.9  # at most this share of the free area, so the window manager's frame fits too
MIN_VISIBLE_SHARE = 0.5  # a restored window with less of itself on the screens than this is placed anew
TITLE_BAR_PX = 24  # the strip at the window's top that must be on a screen, so it can be grabbed and moved


def screen_under_cursor() -> QScreen | None:
    return QGuiApplication.screenAt(QCursor.pos()) or QGuiApplication.primaryScreen()


def first_launch_geometry(available: QRect, preferred: QSize = PREFERRED_SIZE) -> QRect:
    """The preferred size, shrunk to SCREEN_SHARE of `available` where needed, centred in it."""
    size = preferred.boundedTo(QSize(int(available.width() * SCREEN_SHARE), int(available.height() * SCREEN_SHARE)))
    geometry = QRect(0, 0, size.width(), size.height())
    geometry.moveCenter(available.center())
    return geometry


def place_for_first_launch(window: QWidget) -> None:
    screen = screen_under_cursor()
    if screen is None:  # no screen at all (should not happen even offscreen): leave Qt's choice
        return
    available = screen.availableGeometry()
    window.resize(first_launch_geometry(available).size())
    placed = QRect(0, 0, window.width(), window.height())  # a minimum size may have won over the wanted one
    placed.moveCenter(available.center())
    # Larger than the screen after all: the title bar stays on it, whatever hangs over the bottom or the right.
    window.move(max(placed.left(), available.left()), max(placed.top(), available.top()))


def shows_on_a_screen(geometry: QRect, screens: list[QRect] | None = None) -> bool:
    """True when a window at `geometry` would be usable: at least half of it on the screens' free areas and the
    strip of its title bar on one of them."""
    if screens is None:
        screens = [s.availableGeometry() for s in QGuiApplication.screens()]
    if geometry.isEmpty() or not screens:
        return False
    visible = sum(_area(geometry.intersected(screen)) for screen in screens)  # screens do not overlap
    title = QRect(geometry.left(), geometry.top(), geometry.width(), TITLE_BAR_PX)
    title_visible = any(title.intersected(screen).width() >= min(100, geometry.width()) for screen in screens)
    return visible >= MIN_VISIBLE_SHARE * _area(geometry) and title_visible


def _area(rect: QRect) -> int:
    return max(0, rect.width()) * max(0, rect.height())
