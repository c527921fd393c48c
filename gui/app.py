"""Starting the studio: the QApplication, the main window, and what the command line hands it.

    python main.py                   the studio with the recipe file open last (a new recipe the first time)
    python main.py recipe.json       … with that recipe open
    python main.py path/to/images    … with a new recipe on that folder
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")  # before anything imports pyqtgraph

from PySide6.QtWidgets import QApplication  # noqa: E402

from engine import __version__  # noqa: E402
from gui.resources import app_icon  # noqa: E402
from gui.xcb_libraries import missing_text, missing_xcb_libraries, xcb_will_be_used  # noqa: E402


def create_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication (the existing one if there is one), named so QSettings and the desktop know it."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
    app.setApplicationName("Thaw")
    app.setOrganizationName("Thaw")
    app.setApplicationVersion(__version__)
    app.setApplicationDisplayName("Thaw")
    app.setDesktopFileName("thaw")  # Wayland matches the window to packaging/thaw.desktop and its icon
    icon = app_icon()
    if not icon.isNull():
        app.setWindowIcon(icon)
    return app


def apply_arguments(window, arguments: list[str]) -> None:
    """A recipe .json is opened; a folder becomes the data root; anything else is reported and ignored.
    Recipes first, so that a folder given beside a recipe replaces the recipe's data root, not the reverse."""
    for argument in sorted(arguments, key=lambda a: not a.lower().endswith(".json")):
        path = Path(argument).expanduser()
        if path.is_dir():
            window.set_data_root(str(path))
        elif path.suffix.lower() == ".json":
            window.open_recipe(str(path))
        else:
            logging.getLogger(__name__).warning("ignoring argument %r: not a recipe .json or a folder", argument)


def open_at_start(window, arguments: list[str]) -> None:
    """What the studio shows first: the arguments' recipe and folder when there are any, else the recipe file that
    was open when the studio last closed (the status bar says which)."""
    if arguments:
        apply_arguments(window, arguments)
    else:
        window.reopen_last_recipe()


def run_studio(argv: list[str] | None = None) -> int:
    """Show the studio and run the event loop; `argv` is the arguments after the program name. Where Qt would use
    its X11 plugin without the system libraries it needs, say which (Qt's own abort names none) and return 1."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if xcb_will_be_used():
        missing = missing_xcb_libraries()
        if missing:
            print(f"error: {missing_text(missing)} (`python main.py --self-test` checks the rest.)", file=sys.stderr)
            return 1
    app = create_app([sys.argv[0] if sys.argv else "thaw", *arguments])
    from gui.garbage import collect_in_gui_thread
    from gui.main_window import MainWindow  # after the QApplication: widgets need it

    collect_in_gui_thread()  # never in the training thread (gui/garbage.py)

    # Shown at once with a working Data tab; torch loads in a thread, then the other tabs are built in place (and,
    # the very first time, the walkthrough opens). The recipe and folder to open need no torch: opened before the
    # window shows, so the Data tab never shows another recipe's data first.
    window = MainWindow(deferred=True, first_run_walkthrough=True)
    open_at_start(window, app.arguments()[1:])  # Qt has removed its own options (-style …) by now
    window.show()
    return app.exec()
