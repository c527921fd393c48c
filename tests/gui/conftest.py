"""GUI test set-up: offscreen Qt, settings in a temporary file, and no test may leave a QThread running."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import pytest  # noqa: E402
from pyqtgraph.util.garbage_collector import GarbageCollector  # noqa: E402
from PySide6.QtCore import Qt, QThread  # noqa: E402

from tests.gui.running import still_running  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """The studio's QSettings go to a temporary INI file, never the user's."""
    path = tmp_path / "thaw-settings.ini"
    monkeypatch.setenv("THAW_SETTINGS", str(path))
    return path


@pytest.fixture(autouse=True)
def garbage_collected_in_the_gui_thread(qapp):
    """As in the studio (gui/garbage.py): widgets left in reference cycles by earlier tests are collected here, in
    the GUI thread, never by a training or job thread of this test. Set up before (so torn down after) the check
    that every thread has ended."""
    gc.collect()
    collector = GarbageCollector(interval=0.5)
    yield
    collector.timer.stop()
    gc.enable()
    gc.collect()


@pytest.fixture(autouse=True)
def no_thread_left_running(monkeypatch):
    """Fail a test that leaves a QThread running (as napari's conftest does): every QThread started during the
    test is recorded, and each must have ended by teardown."""
    started: list[QThread] = []
    original_start = QThread.start

    def recording_start(thread, *args, **kwargs):
        started.append(thread)
        return original_start(thread, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield started
    running = still_running(started)
    for thread in running:
        thread.wait(30_000)  # so that the leak does not crash the next test as well
    if running:
        pytest.fail(f"{len(running)} QThread(s) still running at the end of the test: {running}")


@pytest.fixture
def pause_at_first():
    """Installs a hook that pauses a controller's next run (only the next one) at its worker's first hand-over of
    batches, or at the first engine event of type `on` (e.g. EpochFinished), in the worker thread itself: the
    engine then waits before its next batch, so "mid-run" is deterministic, not a race with the GUI thread."""

    def install(controller, on: type | None = None) -> None:
        def on_worker_created(worker) -> None:
            controller.worker_created.disconnect(on_worker_created)
            paused = []

            def pause_once(payload) -> None:
                if not paused and (on is None or isinstance(payload, on)):
                    paused.append(True)
                    controller.pause()

            signal = worker.batches_finished if on is None else worker.event_emitted
            signal.connect(pause_once, Qt.ConnectionType.DirectConnection)

        controller.worker_created.connect(on_worker_created)

    return install


@pytest.fixture(autouse=True)
def unsaved_changes_discarded(monkeypatch):
    """A main window closed at a test's end with unsaved edits must not block on the Save / Discard / Cancel
    question: tests answer Discard unless they ask for the real dialog (`real_unsaved_question`)."""
    from PySide6.QtWidgets import QMessageBox

    from gui.main_window import MainWindow

    original = MainWindow._ask_unsaved_changes
    monkeypatch.setattr(MainWindow, "_ask_unsaved_changes", lambda self, doing: QMessageBox.StandardButton.Discard)
    return original


@pytest.fixture
def real_unsaved_question(monkeypatch, unsaved_changes_discarded):
    """The main window asks with its real modal dialog (answer it with tests/gui/dialogs.py)."""
    from gui.main_window import MainWindow

    monkeypatch.setattr(MainWindow, "_ask_unsaved_changes", unsaved_changes_discarded)
