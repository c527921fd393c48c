"""What the studio remembers between sessions: window geometry and state, the current tab, last folders, the last
recipe file, whether the first-start walkthrough was done.

The settings live where QSettings puts an application's settings (organisation and application "Thaw"), unless
env THAW_SETTINGS names an INI file: tests point it at a temporary file so they never touch the user's settings.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow

from gui.placement import place_for_first_launch, shows_on_a_screen

SETTINGS_ENV = "THAW_SETTINGS"
ORGANISATION = "Thaw"
APPLICATION = "Thaw"


def open_settings() -> QSettings:
    """The QSettings store of the studio (the INI file named by THAW_SETTINGS, if set)."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORGANISATION, APPLICATION)


class StudioSettings:
    """Typed accessors over the studio's QSettings, so keys and types are spelled in one place."""

    def __init__(self, settings: QSettings | None = None):
        self._settings = settings if settings is not None else open_settings()

    # --- the main window -------------------------------------------------------------------------------------
    def save_window(self, window: QMainWindow) -> None:
        self._settings.setValue("window/geometry", window.saveGeometry())
        self._settings.setValue("window/state", window.saveState())

    def restore_window(self, window: QMainWindow) -> bool:
        """Restore geometry and dock/toolbar state. False when nothing usable was saved — none yet, or a geometry
        that would put the window off every screen (a monitor since unplugged): the window is then centred on the
        screen under the mouse pointer and sized to fit it, as on a first launch."""
        geometry = self._settings.value("window/geometry")
        state = self._settings.value("window/state")
        restored = False
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            restored = window.restoreGeometry(geometry) and shows_on_a_screen(window.geometry())
        if not restored:
            place_for_first_launch(window)
        if isinstance(state, QByteArray) and not state.isEmpty():
            window.restoreState(state)
        return restored

    @property
    def current_tab(self) -> str:
        """The objectName of the tab that was shown last ("" when unknown)."""
        return str(self._settings.value("window/current_tab", "") or "")

    @current_tab.setter
    def current_tab(self, name: str) -> None:
        self._settings.setValue("window/current_tab", name)

    # --- the recipe file open last ------------------------------------------------------------------------------
    @property
    def last_recipe(self) -> str:
        """The recipe file the studio opened or saved last ("" when none): it is reopened at the next start."""
        return str(self._settings.value("recipe/last_path", "") or "")

    @last_recipe.setter
    def last_recipe(self, path: str) -> None:
        self._settings.setValue("recipe/last_path", path)

    # --- the lesson walkthrough (gui/walkthrough.py) --------------------------------------------------------------
    @property
    def walkthrough_done(self) -> bool:
        """The first-start walkthrough was finished or skipped: it does not open by itself again."""
        return bool(self._settings.value("help/walkthrough_done", False, type=bool))

    @walkthrough_done.setter
    def walkthrough_done(self, done: bool) -> None:
        self._settings.setValue("help/walkthrough_done", done)

    # --- folders used by file dialogs --------------------------------------------------------------------------
    def last_folder(self, kind: str) -> str:
        """The folder a file dialog of this kind ("recipe", "data", "images" …) opened last, or ""."""
        folder = str(self._settings.value(f"folders/{kind}", "") or "")
        return folder if folder and os.path.isdir(folder) else ""

    def set_last_folder(self, kind: str, folder: str) -> None:
        self._settings.setValue(f"folders/{kind}", folder)

    def sync(self) -> None:
        self._settings.sync()
