"""The lesson walkthrough (issue 28, item 5): on the very first start a dock walks the lesson's path tab by tab,
Next shows the next step's tab, Skip or Finish put it away for good, and Help ▸ Lesson walkthrough brings it back
from its first step. A window not asked for it (tests, the self-test) never shows it."""

from __future__ import annotations

import re

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QTabWidget

from gui.document import RecipeDocument
from gui.main_window import MainWindow
from gui.settings import StudioSettings
from gui.walkthrough import LESSON_STEPS, LessonWalkthrough
from tests.helpers import tiny_recipe

LESSON_PATH = ["dataPanel", "modelPanel", "phasesPanel", "optimizerPanel", "trainingPanel", "runsPanel",
               "evaluatePanel", "inferencePanel"]


def start_studio(qtbot, image_folder, tmp_path, **kwargs) -> MainWindow:
    """A main window as `python main.py` makes it (first_run_walkthrough), shown."""
    window = MainWindow(RecipeDocument(tiny_recipe(image_folder, out=tmp_path / "runs")), first_run_walkthrough=True,
                        **kwargs)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def walkthrough_of(window: MainWindow) -> LessonWalkthrough | None:
    return window.findChild(LessonWalkthrough, "walkthroughDock")


def current_tab(window: MainWindow) -> str:
    return window.findChild(QTabWidget, "mainTabs").currentWidget().objectName()


def test_the_first_start_shows_it_on_the_data_tab(qtbot, image_folder, tmp_path):
    StudioSettings().current_tab = "runsPanel"  # the tab a window reopens on: the walkthrough still starts at Data
    window = start_studio(qtbot, image_folder, tmp_path)
    walkthrough = walkthrough_of(window)
    assert walkthrough is not None
    qtbot.waitUntil(walkthrough.isVisible)
    assert current_tab(window) == "dataPanel" and walkthrough.index == 0
    assert walkthrough.stepLabel.text() == f"Step 1 of {len(LESSON_STEPS)} · Data"
    assert not walkthrough.backButton.isEnabled()
    assert QApplication.activeModalWidget() is None  # beside the tabs, never in the way of them


def test_next_shows_each_steps_tab_in_the_lessons_order_and_back_returns(qtbot, image_folder, tmp_path):
    window = start_studio(qtbot, image_folder, tmp_path)
    walkthrough = walkthrough_of(window)
    qtbot.waitUntil(walkthrough.isVisible)
    shown = [current_tab(window)]
    for _ in LESSON_STEPS[1:]:
        with qtbot.waitSignal(walkthrough.step_shown):
            walkthrough.nextButton.click()
        shown.append(current_tab(window))
    assert shown == LESSON_PATH
    assert walkthrough.nextButton.text() == "Finish"
    walkthrough.backButton.click()
    assert current_tab(window) == "evaluatePanel" and walkthrough.stepLabel.text().endswith("· Evaluate")

    walkthrough.nextButton.click()
    with qtbot.waitSignal(walkthrough.ended) as ended:
        walkthrough.nextButton.click()  # Finish
    assert ended.args == ["finished"]
    assert not walkthrough.isVisible() and StudioSettings().walkthrough_done


def test_skip_hides_it_and_the_next_start_does_not_show_it(qtbot, image_folder, tmp_path, isolated_settings):
    first = start_studio(qtbot, image_folder, tmp_path)
    walkthrough = walkthrough_of(first)
    qtbot.waitUntil(walkthrough.isVisible)
    walkthrough.nextButton.click()
    with qtbot.waitSignal(walkthrough.ended) as ended:
        walkthrough.skipButton.click()
    assert ended.args == ["skipped"] and not walkthrough.isVisible()
    assert QSettings(str(isolated_settings), QSettings.Format.IniFormat).value("help/walkthrough_done",
                                                                                type=bool)  # on disk
    first.close()

    second = start_studio(qtbot, image_folder, tmp_path)
    assert second.is_ready and walkthrough_of(second) is None  # the tabs are built: it would be there by now
    assert current_tab(second) == "modelPanel"  # the tab the first window closed on, not the walkthrough's Data


def test_help_lesson_walkthrough_shows_it_again_from_step_1(qtbot, image_folder, tmp_path):
    window = start_studio(qtbot, image_folder, tmp_path)
    walkthrough = walkthrough_of(window)
    qtbot.waitUntil(walkthrough.isVisible)
    walkthrough.nextButton.click()
    walkthrough.nextButton.click()
    walkthrough.skipButton.click()
    window.tabs.setCurrentWidget(window.evaluate_panel)

    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    assert window.walkthroughAction in help_menu.actions()
    window.walkthroughAction.trigger()
    qtbot.waitUntil(walkthrough.isVisible)
    assert walkthrough.index == 0 and current_tab(window) == "dataPanel"
    assert window.findChildren(LessonWalkthrough) == [walkthrough]  # the same dock, not a second one


def test_a_window_not_asked_for_it_never_shows_it(qtbot, image_folder, tmp_path):
    """Tests and the self-test make their windows without first_run_walkthrough: nothing opens beside them."""
    window = MainWindow(RecipeDocument(tiny_recipe(image_folder, out=tmp_path / "runs")))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert walkthrough_of(window) is None and not StudioSettings().walkthrough_done


def test_the_studio_asks_for_it_when_it_starts(qapp, monkeypatch):
    """`python main.py` makes its window with first_run_walkthrough (the window itself is faked here)."""
    import gui.app
    import gui.garbage
    import gui.main_window

    made = []

    class RecordedWindow:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def show(self) -> None:
            pass

        def when_ready(self, callback) -> None:
            pass

        def reopen_last_recipe(self) -> bool:  # what run_studio does before it shows the window
            return False

    monkeypatch.setattr(gui.main_window, "MainWindow", RecordedWindow)
    monkeypatch.setattr(gui.garbage, "collect_in_gui_thread", lambda: None)
    monkeypatch.setattr(type(qapp), "exec", lambda self: 0)
    monkeypatch.setattr(gui.app, "xcb_will_be_used", lambda: False)
    assert gui.app.run_studio([]) == 0
    assert made == [{"deferred": True, "first_run_walkthrough": True}]


def test_each_step_names_a_tab_of_the_studio_in_a_sentence_or_two(qtbot, image_folder, tmp_path):
    window = MainWindow(RecipeDocument(tiny_recipe(image_folder, out=tmp_path / "runs")))
    qtbot.addWidget(window)
    tabs = {window.tabs.widget(i).objectName(): window.tabs.tabText(i) for i in range(window.tabs.count())}
    assert [step.tab for step in LESSON_STEPS] == LESSON_PATH
    for step in LESSON_STEPS:
        assert tabs[step.tab] == step.title
        sentences = re.findall(r"[.!?](?:\s|$)", step.text)
        assert 1 <= len(sentences) <= 2, step.text
