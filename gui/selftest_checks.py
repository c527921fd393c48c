"""The studio's part of the self-test (engine/selftest.py runs it; main.py puts the two together): the bundled
resources, the system libraries of Qt's X11 plugin (named when missing, before Qt could abort the whole test), Qt
(platform plugin, image formats, the icon, pyqtgraph), and the main window created offscreen as `Thaw`
starts it (`--screenshot PNG` saves a grab of it, `--open PATH` first opens a recipe or an image folder in it, as
`Thaw PATH` would).

A self-test must end on its own (issue 27: the window check sat idle for minutes behind a modal "Unsaved changes"
box nobody could see): from the Qt check on, a dialog that opens is never shown on screen, is closed at once, and
fails the check it opened in, naming its title and text; each check has a time limit (engine/selftest.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.selftest import Check, CheckSkipped, CheckWarning, ExtraChecks, TimedCheck, doing
from gui.xcb_libraries import missing_text, missing_xcb_libraries, xcb_plugin, xcb_will_be_used


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--screenshot", default="", metavar="PNG", help="save a grab of the main window here")
    parser.add_argument("--open", action="append", default=[], metavar="PATH",
                        help="open a recipe .json or an image folder in the window first, as `Thaw PATH` does "
                             "(repeatable)")


def where() -> str:
    from gui.platform_setup import bundle_dir, is_frozen, log_path

    place = f"bundle {bundle_dir()}" if is_frozen() else f"source {Path(__file__).resolve().parent.parent}"
    return place + (f", log {log_path()}" if log_path() else "")


def prepare_display() -> None:
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM") \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # no display: Qt would abort instead of failing a check


class StudioChecks(ExtraChecks):
    """The checks that need the studio, sharing the QApplication of the Qt check."""

    def __init__(self, workdir: Path, screenshot: str = "", open_paths: list[str] | None = None):
        self.workdir = workdir
        self.screenshot = screenshot
        self.open_paths = list(open_paths or [])
        self.app = None
        self.qt_ok = False
        self.dialogs = None  # the _DialogGuard, from the Qt check on

    @classmethod
    def from_args(cls, workdir: Path, args: argparse.Namespace) -> StudioChecks:
        return cls(workdir, args.screenshot, [str(Path(p).resolve()) for p in args.open])

    def checks(self) -> list[Check]:
        # In the main thread (Qt's widgets live there), each under its limit; a dialog fails the check it opened in.
        return [TimedCheck(name, self._guarded(run), limit) for name, run, limit in (
            ("resources", self.check_resources, 60.0),
            ("Qt platform libraries", self.check_platform_libraries, 60.0),
            ("Qt", self.check_qt, 120.0),
            ("main window", self.check_main_window, 150.0),  # it waits up to 60 s for the panels itself
        )]

    def _guarded(self, run):
        def guarded() -> str:
            try:
                detail = run()
            finally:
                opened = self.dialogs.take() if self.dialogs is not None else []
            if opened:
                raise AssertionError(f"a dialog opened (closed by the self-test): {'; '.join(opened)}")
            return detail

        return guarded

    def close(self) -> None:
        if self.app is not None:
            _run_event_loop_for(0.05)
        if self.dialogs is not None:
            self.dialogs.remove()

    def check_resources(self) -> str:
        from gui.resources import ICON_PNG, ICON_SVG, SAMPLE_IMAGE, resource_path, resources_dir

        sizes = [f"{name} {resource_path(name).stat().st_size:,} B" for name in (ICON_PNG, ICON_SVG, SAMPLE_IMAGE)]
        import torch
        from torchvision.io import ImageReadMode, decode_image, read_file

        from engine.data.images import load_image

        sample = resource_path(SAMPLE_IMAGE)
        pil = load_image(sample, channels=3)
        native = decode_image(read_file(str(sample)), mode=ImageReadMode.RGB)
        if tuple(pil.shape) != (3, 48, 64) or not torch.equal(native, pil):
            raise AssertionError(f"the bundled {SAMPLE_IMAGE} decodes to {tuple(pil.shape)}, or PIL and torchvision.io "
                                 f"disagree on it")
        return f"{resources_dir()}: {', '.join(sizes)}; {SAMPLE_IMAGE} decodes alike in PIL and torchvision.io"


    # --- Qt -------------------------------------------------------------------------------------------------------
    def check_platform_libraries(self) -> str:
        """Linux: the libraries Qt's xcb plugin links against. Missing ones are named (with the packages that
        bring them); where xcb would be used, the checks after this one run offscreen instead of letting Qt abort."""
        missing = missing_xcb_libraries()
        if missing is None:
            raise CheckSkipped("nothing to check here (not Linux, or no ldd or xcb plugin)")
        if not missing:
            return f"every library {xcb_plugin().name} needs is installed"
        if xcb_will_be_used():
            os.environ["QT_QPA_PLATFORM"] = "offscreen"  # Qt would abort the process in the next check
            raise AssertionError(f"{missing_text(missing)} The checks below run offscreen.")
        raise CheckWarning(f"{missing_text(missing)} Until then the studio opens no window under X11 (this test "
                           f"runs offscreen).")

    def check_qt(self) -> str:
        os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
        import PySide6
        from PySide6.QtCore import QLibraryInfo, qVersion
        from PySide6.QtGui import QImageReader
        from PySide6.QtWidgets import QApplication

        plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
        wanted = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] or _default_platform()
        platforms = (sorted(p.name for p in (plugins / "platforms").glob("*"))
                     if (plugins / "platforms").is_dir() else [])
        if wanted and platforms and not any(f"q{wanted}" in name.lower() for name in platforms):
            raise AssertionError(f"Qt platform plugin {wanted!r} not in {plugins / 'platforms'} (found: "
                                 f"{', '.join(platforms) or 'nothing'})")
        app = QApplication.instance()
        if app is None:
            try:
                from gui.app import create_app

                app = create_app([sys.argv[0] if sys.argv else "thaw"])
            except ImportError:
                app = QApplication([sys.argv[0] if sys.argv else "thaw"])
        self.app = app
        self.dialogs = _DialogGuard(app)
        self.qt_ok = True  # the main window can be tried even if a check below fails
        from gui.resources import app_icon

        icon = app_icon()
        if icon.isNull() or icon.pixmap(64, 64).isNull():
            raise AssertionError("the application icon does not render")
        app.setWindowIcon(icon)
        formats = {bytes(f.data()).decode() for f in QImageReader.supportedImageFormats()}
        missing = [f for f in ("png", "jpg", "svg") if f not in formats]
        if missing:
            raise AssertionError(f"Qt cannot read {', '.join(missing)} (plugins folder {plugins})")
        import pyqtgraph as pg

        plot = pg.PlotWidget()
        plot.plot([0, 1, 2], [0, 1, 4])
        plot.deleteLater()
        return (f"Qt {qVersion()} (PySide6 {PySide6.__version__}), platform {app.platformName()}, "
                f"pyqtgraph {pg.__version__}, png/jpg/svg readable, icon ok")

    def check_main_window(self) -> str:
        if not self.qt_ok:
            raise CheckSkipped("needs the QApplication of the Qt check")
        from PySide6.QtCore import Qt

        from gui.main_window import MainWindow  # imported only here: the window may not exist in a broken build

        window = MainWindow(deferred=True)  # as `Thaw` starts: loading page first, torch imported in a thread
        window.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)  # laid out and painted, never on screen
        if window.windowIcon().isNull():
            window.setWindowIcon(self.app.windowIcon())
        window.resize(1200, 800)
        window.show()
        doing("waiting for the window's panels (torch is imported in a thread)")
        _run_event_loop_until(lambda: window.is_ready, 60.0)
        if not window.is_ready:
            raise AssertionError("the window's panels were not built within 60 s of showing it")
        opened = ""
        if self.open_paths:  # what `Thaw recipe.json image_folder/` does at start-up
            from gui.app import apply_arguments

            doing(f"opening {', '.join(self.open_paths)}")
            apply_arguments(window, self.open_paths)
            opened = f", opened {len(self.open_paths)} argument(s)"
        doing("letting the window paint and a folder scan finish")
        _run_event_loop_for(3.0 if self.open_paths else 0.05)  # let a folder scan finish and the window paint
        pixmap = window.grab()
        if pixmap.isNull() or pixmap.width() < 100:
            raise AssertionError("grabbing the window gave an empty image")
        saved = ""
        if self.screenshot:
            if not pixmap.save(self.screenshot):
                raise AssertionError(f"could not save the screenshot to {self.screenshot}")
            saved = f", screenshot {self.screenshot}"
        title = window.windowTitle()
        tabs = window.findChildren(_qtabwidget())
        count = tabs[0].count() if tabs else 0
        doing("closing the window")
        # The edits are the self-test's own (the opened folder changes the recipe): closing must not ask the user to
        # save them, a question nobody is there to answer.
        if getattr(window, "document", None) is not None:
            window.document.set_modified(False)
        window.close()
        window.deleteLater()
        _run_event_loop_for(0.05)  # deliver the deferred deletion
        return (f"{type(window).__name__} {pixmap.width()}×{pixmap.height()}, {count} tabs, "
                f"title {title!r}{opened}{saved}")


class _DialogGuard:
    """An application-wide event filter for the self-test: a dialog (QMessageBox.warning, an "Unsaved changes" box,
    any QDialog) is kept off the screen (WA_DontShowOnScreen before it is first shown), recorded by its title and
    text, and rejected as soon as its event loop runs, so a modal `exec()` returns instead of waiting forever."""

    def __init__(self, app):
        from PySide6.QtCore import QEvent, QObject, Qt, QTimer
        from PySide6.QtWidgets import QDialog, QMessageBox

        self.opened: list[str] = []
        guard = self

        class Filter(QObject):
            def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
                kind = event.type()
                if kind in (QEvent.Type.Polish, QEvent.Type.Show) and isinstance(obj, QDialog):
                    if kind == QEvent.Type.Polish:  # before the first show: never on the user's screen
                        obj.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
                    elif obj.isModal() or obj.isWindow():
                        text = obj.text() if isinstance(obj, QMessageBox) else ""
                        first = text.strip().splitlines()[0] if text.strip() else ""
                        guard.opened.append(f"“{obj.windowTitle()}”" + (f": {first}" if first else ""))
                        QTimer.singleShot(0, obj.reject)  # once exec()'s own loop runs
                return False

        self._app = app
        self._filter = Filter(app)
        app.installEventFilter(self._filter)

    def remove(self) -> None:
        self._app.removeEventFilter(self._filter)

    def take(self) -> list[str]:
        opened, self.opened = self.opened, []
        return opened


def _run_event_loop_until(condition, timeout_s: float) -> None:
    """Deliver Qt events until `condition()` holds or `timeout_s` passed."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if condition() else None)
    poll.start(20)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    if not condition():
        loop.exec()
    poll.stop()


def _run_event_loop_for(seconds: float) -> None:
    """Let Qt deliver pending events (paints, a scan's results, deferred deletions) for a while."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _qtabwidget():
    from PySide6.QtWidgets import QTabWidget

    return QTabWidget


def _default_platform() -> str:
    if sys.platform == "darwin":
        return "cocoa"
    if sys.platform == "win32":
        return "windows"
    return "wayland" if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY") else "xcb"
