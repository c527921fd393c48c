"""Issue 28, goal 6: `python main.py` shows its window with the eight tabs and a working Data tab before torch is
imported; torch loads in a thread after the first paint, then the other tabs are built in place, the tab the user is
on stays current, edits made meanwhile stay edits, and closing at any point in between loses nothing and leaves no
thread. The subprocess test proves "no torch" for real: torch cannot be imported there at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from gui.document import LOADING_TEXT, RecipeDocument, fresh_recipe
from gui.main_window import IMPORTS_UNPAINTED_MS, TABS, MainWindow
from gui.panels.data_panel import DataPanel
from gui.widgets.engine_loading_page import EngineLoadingPage
from gui.workers.loading import BACKGROUND_IMPORTS
from gui.workers.threads import WorkerThread
from tests.gui.running import still_running
from tests.helpers import tiny_recipe

ROOT = Path(__file__).parents[2]
RUN_TIMEOUT_MS = 60_000

# Run in a fresh interpreter where `import torch` fails: the studio as it is before its import thread ends.
WITHOUT_TORCH = textwrap.dedent("""
    import json, os, sys, time
    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"torch is not importable in this test ({name})")
    sys.meta_path.insert(0, NoTorch())
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from gui.main_window import MainWindow
    window = MainWindow(deferred=True)
    window.show()
    window.set_data_root(sys.argv[1])
    deadline = time.monotonic() + 60
    panel = window.data_panel
    while time.monotonic() < deadline and not (panel.thumbnailsView.count() and window.loading_pages
                                               and window.loading_pages[0].busy.isHidden()):
        app.processEvents()
    report = window.document.scan
    print(json.dumps({"classes": report.classes if report else None,
                      "images": len(report.samples) if report else 0,
                      "thumbnails": panel.thumbnailsView.count(),
                      "status": panel.scanStatusLabel.text(),
                      "pages": [page.label.text() for page in window.loading_pages],
                      "tabs": [window.tabs.tabText(i) for i in range(window.tabs.count())],
                      "torch": "torch" in sys.modules}))
    window.document.set_modified(False)  # the folder was an edit: closing would ask about it
    window.close()
""")


def test_the_data_tab_scans_and_shows_a_folder_where_torch_cannot_be_imported(image_folder, tmp_path):
    settings = tmp_path / "settings.ini"
    out = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(image_folder)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen",
                                                       "THAW_SETTINGS": str(settings), "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert not seen["torch"]  # nothing on the way to a working Data tab imported torch
    assert seen["classes"] == ["cat", "dog", "fox"] and seen["images"] == 36, seen
    assert seen["thumbnails"] > 0 and "36 usable images in 3 classes" in seen["status"]
    assert seen["tabs"] == [tab[1] for tab in TABS]
    # The import failed here: every tab that needs torch says so, in one line that names the cause
    assert len(seen["pages"]) == 7 and all("could not load torch" in page and "not importable" in page
                                           for page in seen["pages"]), seen["pages"]


def test_the_window_shows_its_tabs_before_torch_and_builds_the_rest_in_place(qtbot, image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, epochs=2, out=tmp_path / "runs")
    path = tmp_path / "recipe.json"
    recipe.save(path)
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    # Before the window is shown nothing has started: the Data tab is real, the six others say they are loading
    assert window._importer is None and not window.is_ready
    assert isinstance(window.tabs.widget(0), DataPanel) and window.tabs.count() == 8
    pages = [window.tabs.widget(i) for i in range(1, 8)]
    assert all(isinstance(page, EngineLoadingPage) and not page.busy.isHidden() for page in pages)
    assert [page.objectName() for page in pages] == [tab[2] for tab in TABS[1:]]
    assert window.document.plan() is None and window.document.plan_error == LOADING_TEXT
    assert window.open_recipe(str(path))  # what run_studio does with its arguments, before showing the window
    window.tabs.setCurrentIndex(5)  # the user moved to Runs while it loads
    (tmp_path / "other").mkdir()
    window.set_data_root(str(tmp_path / "other"))  # and used the Data tab: an edit

    window.show()
    with qtbot.waitSignal(window.ready, timeout=RUN_TIMEOUT_MS):
        pass

    assert window.tabs.currentIndex() == 5 and window.tabs.currentWidget() is window.runs_panel
    for i, (attribute, title, name, _tip) in enumerate(TABS):
        assert window.tabs.widget(i) is getattr(window, attribute) and window.tabs.tabText(i) == title
        assert window.tabs.widget(i).objectName() == name
    assert not window.findChildren(EngineLoadingPage) and window.loading_pages == []
    assert window.document.recipe.name == recipe.name and window.document.plan() is not None
    assert window.document.is_modified and window.isWindowModified()  # the edit made while loading is kept
    assert not window._import_thread.is_running


def test_a_fresh_recipe_gets_the_weights_it_would_have_had(qtbot, monkeypatch, tmp_path):
    """Offline with only an older version of the weights cached, the fresh recipe names that version (zoo's
    preferred_weights), though the studio could only resolve it once torch was there; it is not an edit."""
    monkeypatch.setattr("engine.model.zoo.preferred_weights", lambda arch: "IMAGENET1K_V1")
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    assert window.document.recipe.model.weights == "DEFAULT"  # not resolved yet: that needs the zoo
    window.show()
    with qtbot.waitSignal(window.ready, timeout=RUN_TIMEOUT_MS):
        pass
    assert window.document.recipe.model.weights == "IMAGENET1K_V1" == fresh_recipe().model.weights
    assert not window.document.is_modified and not window.isWindowModified()


def test_a_recipe_opened_while_loading_keeps_its_own_weights(qtbot, monkeypatch, image_folder, tmp_path):
    monkeypatch.setattr("engine.model.zoo.preferred_weights", lambda arch: "IMAGENET1K_V1")
    recipe = tiny_recipe(image_folder, epochs=1, out=tmp_path / "runs")
    recipe.model.weights = "DEFAULT"
    recipe.save(tmp_path / "r.json")
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    window.open_recipe(str(tmp_path / "r.json"))
    window.show()
    with qtbot.waitSignal(window.ready, timeout=RUN_TIMEOUT_MS):
        pass
    assert window.document.recipe.model.weights == "DEFAULT"  # what the file says, not the fresh recipe's choice


def test_closing_before_the_import_started_starts_none(qtbot, no_thread_left_running):
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    window.show()  # the import starts after the first paint (or IMPORTS_UNPAINTED_MS after show), not yet
    assert window.close()
    later = QTimer(singleShot=True)  # fires after every start the show or a paint queued
    with qtbot.waitSignal(later.timeout, timeout=RUN_TIMEOUT_MS):
        later.start(2 * IMPORTS_UNPAINTED_MS)
    assert window._importer is None and not window.is_ready  # none started for a closed window
    assert not still_running(no_thread_left_running)


def test_closing_while_torch_loads_waits_for_the_import_and_builds_nothing(qtbot, monkeypatch, tmp_path):
    # torch is loaded here: an import that holds until the close has begun stands in for it
    (tmp_path / "thaw_held_import.py").write_text("import sys\nsys.modules['thaw_held_gate'].wait(30)\n")
    release = threading.Event()
    monkeypatch.setitem(sys.modules, "thaw_held_gate", release)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("gui.workers.loading.BACKGROUND_IMPORTS", (*BACKGROUND_IMPORTS, "thaw_held_import"))
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window._importer is not None, timeout=RUN_TIMEOUT_MS)
    release.set()  # its `finished` is queued to this thread, which is in close() until the import has ended
    assert window.close()
    assert not window.isVisible() and not window.is_ready
    assert not window._import_thread.is_running
    QApplication.processEvents()  # a queued `finished` must not build the panels of a closed window
    assert not window.is_ready and len(window.loading_pages) == 7


def test_closing_with_data_edits_made_while_loading_asks_first(qtbot, monkeypatch, image_folder):
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    asked = []
    monkeypatch.setattr(window, "_ask_unsaved_changes", lambda doing: asked.append(doing) or
                        QMessageBox.StandardButton.Cancel)
    window.set_data_root(str(image_folder))
    window.show()
    assert not window.close() and window.isVisible() and asked == ["quitting"]  # Cancel: it stays open
    with qtbot.waitSignal(window.ready, timeout=RUN_TIMEOUT_MS):
        pass
    monkeypatch.setattr(window, "_ask_unsaved_changes", lambda doing: QMessageBox.StandardButton.Discard)
    assert window.close()


def test_imports_that_fail_are_said_on_every_tab_that_needs_them_and_the_data_tab_stays(qtbot, monkeypatch):
    monkeypatch.setattr("gui.workers.loading.BACKGROUND_IMPORTS", ("torch", "thaw_no_such_module"))
    # The worst scheduling, made certain: the imports end before start() returns (torch is already in
    # sys.modules here). A `finished` connected after the start would be lost and the pages would wait forever.
    def start_and_finish(thread):
        thread.qthread.start()
        thread.qthread.wait()
        return thread

    monkeypatch.setattr(WorkerThread, "start", start_and_finish)
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: "could not load" in window.loading_pages[0].label.text(), timeout=RUN_TIMEOUT_MS)
    assert all("thaw_no_such_module" in page.label.text() and page.busy.isHidden()
               for page in window.loading_pages)
    assert not window.is_ready and isinstance(window.tabs.widget(0), DataPanel)
    assert window.close()


def test_a_document_that_is_loading_has_no_plan_until_the_engine_is_there(image_folder):
    document = RecipeDocument(engine_loaded=False)
    changed = []
    document.recipe_changed.connect(lambda: changed.append("recipe"))
    document.engine_loaded.connect(lambda: changed.append("engine"))
    assert document.plan() is None and document.plan_error == LOADING_TEXT and document.module_index() is None
    document.set_engine_loaded()
    assert changed == ["engine", "recipe"] and document.plan() is not None and document.plan_error == ""
    document.set_engine_loaded()  # once only
    assert changed == ["engine", "recipe"]


def test_closing_while_the_tabs_are_being_built_stops_there_and_leaves_no_thread(qtbot, no_thread_left_running):
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: len(window.loading_pages) <= 3, timeout=RUN_TIMEOUT_MS)  # some built, some not
    assert not window.is_ready
    assert window.close()
    left = len(window.loading_pages)
    QApplication.processEvents()  # the next step, queued: it must not run for a closed window
    assert len(window.loading_pages) == left and not window.is_ready
    assert not still_running(no_thread_left_running)


def test_a_preview_asked_for_while_loading_says_so_then_is_drawn_when_torch_is_there(qtbot, image_folder):
    window = MainWindow(deferred=True)
    qtbot.addWidget(window)
    panel = window.data_panel
    window.set_data_root(str(image_folder))
    qtbot.waitUntil(lambda: panel.thumbnailsView.count() > 0, timeout=RUN_TIMEOUT_MS)  # scanned before torch
    assert "follows once it has loaded" in panel.effectiveSizeLabel.text()
    panel.preview(window.document.scan.samples[0][0])
    assert LOADING_TEXT in panel.augmentStatusLabel.text()
    with qtbot.waitSignal(panel.augment_preview_shown, timeout=RUN_TIMEOUT_MS) as shown:
        window.show()  # torch loads after the first paint, then the preview is drawn
    assert shown.args[0] > 0 and "through the training transform" in panel.augmentStatusLabel.text()
    assert "cropped to" in panel.effectiveSizeLabel.text()
    window.document.set_modified(False)
