"""Start, Pause/Continue, Stop and Resume are one set of actions: the Training tab's buttons and the main window's
Run menu show the very same QActions, so they can be used at the same moments and say the same words, whether a
run is idle, running, paused, stopped, resumed, finished or waiting for the device (issue 28: the two computed
their enablement apart, and the menu's Start stayed enabled while a start waited in the queue)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QObject

from engine.train.devices import ExpectedDevice
from gui.document import RecipeDocument
from gui.jobs.board import job_board
from gui.main_window import MainWindow
from tests.helpers import tiny_recipe

RUN_TIMEOUT_MS = 60_000
ACTION_BUTTONS = (("startRunAction", "startButton"), ("pauseRunAction", "pauseButton"),
                  ("stopRunAction", "stopButton"), ("resumeRunAction", "resumeRunButton"))


@pytest.fixture
def window(qtbot, image_folder, tmp_path, monkeypatch, no_thread_left_running) -> MainWindow:
    """A main window on a short run; its run is stopped before the check that no thread is left running."""
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=tmp_path / "runs")
    recipe.data.max_train_batches = 2  # batches to pause at, and a short run
    window = MainWindow(RecipeDocument(recipe))
    window.training_panel.show_error_dialogs = False
    monkeypatch.setattr(window, "_confirm_close", lambda: True)  # a failed test closes mid-run without asking
    qtbot.addWidget(window)
    yield window
    window.controller.stop_and_wait()
    window.close()  # its other threads (the data scan) end too, even when a test failed early


def usable(window: MainWindow) -> dict[str, bool]:
    """Which of the run's commands can be used, as the menu shows them — after checking that each button shows
    the same (enabled, text) as its menu action."""
    panel = window.training_panel
    for action_name, button_name in ACTION_BUTTONS:
        action, button = getattr(window, action_name), getattr(panel, button_name)
        assert (button.isEnabled(), button.text()) == (action.isEnabled(), action.text().replace("&", "")), \
            button_name
    return {name.removesuffix("RunAction"): getattr(window, name).isEnabled() for name, _ in ACTION_BUTTONS}


def idle(resumable: bool) -> dict[str, bool]:
    return {"start": True, "pause": False, "stop": False, "resume": resumable}


RUNNING = {"start": False, "pause": True, "stop": True, "resume": False}
WAITING = {"start": False, "pause": False, "stop": False, "resume": False}


def test_the_run_menu_and_the_training_tabs_buttons_are_the_same_actions(window):
    panel = window.training_panel
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    for action_name, button_name in ACTION_BUTTONS:
        action = getattr(window, action_name)
        assert getattr(panel, button_name).action() is action
        assert action in run_menu.actions()
    assert usable(window) == idle(resumable=False)


def test_the_menus_actions_drive_a_run_and_both_views_follow_it(qtbot, window, pause_at_first):
    controller = window.controller
    pause_at_first(controller)
    window.tabs.setCurrentWidget(window.runs_panel)
    window.startRunAction.trigger()  # Run ▸ Start: the run starts, and is shown
    assert controller.is_running and window.tabs.currentWidget() is window.training_panel
    worker = controller.worker
    # The pause is taken in the training thread, which posts its signal before it holds; the actions hear of it
    # once the GUI thread has delivered what was posted.
    qtbot.waitUntil(lambda: worker.control.holding, timeout=RUN_TIMEOUT_MS)
    QCoreApplication.processEvents()
    assert window.pauseRunAction.text() == "&Continue" and usable(window) == RUNNING

    window.pauseRunAction.trigger()  # Run ▸ Continue
    assert not worker.control.paused and window.training_panel.pauseButton.text() == "Pause"
    window.pauseRunAction.trigger()  # Run ▸ Pause
    assert worker.control.paused and window.training_panel.pauseButton.text() == "Continue"
    qtbot.waitUntil(lambda: worker.control.holding, timeout=RUN_TIMEOUT_MS)
    assert usable(window) == RUNNING

    with qtbot.waitSignal(controller.running_changed, check_params_cb=lambda running: not running,
                          timeout=RUN_TIMEOUT_MS):
        window.stopRunAction.trigger()  # Run ▸ Stop, while paused
    stopped = window.training_panel.resumable_run
    assert stopped and usable(window) == idle(resumable=True)
    assert window.resumeRunAction.toolTip() == window.training_panel.resumeRunButton.toolTip() and \
        stopped in window.resumeRunAction.toolTip()

    with qtbot.waitSignal(controller.running_changed, check_params_cb=lambda running: not running,
                          timeout=RUN_TIMEOUT_MS):
        window.resumeRunAction.trigger()  # Run ▸ Resume last run: it runs to its end
        assert usable(window) == RUNNING
    assert window.training_panel.resumable_run == "" and usable(window) == idle(resumable=False)
    assert Path(stopped, "checkpoints", "best.pt").is_file()


def test_a_start_waiting_for_the_device_disables_start_in_the_menu_as_well(qtbot, window):
    board, holder = job_board(), QObject()  # a job holding the device (an estimate, a sweep …)
    assert board.take_device(holder)
    try:
        window.startRunAction.trigger()
        assert window.training_panel.waiting_to_start and usable(window) == WAITING
        board.queued()[-1].cancel()  # the user cancels the waiting start in the Jobs dock
        assert usable(window) == idle(resumable=False)

        window.startRunAction.trigger()
        assert usable(window) == WAITING
    finally:
        with qtbot.waitSignal(window.controller.running_changed, check_params_cb=lambda running: not running,
                              timeout=RUN_TIMEOUT_MS):
            board.give_back_device(holder)  # the device is free: the waiting start runs, to its end
    assert not window.training_panel.waiting_to_start and usable(window) == idle(resumable=False)


def test_the_shortcuts_are_listed_in_menu_order(qtbot, window):
    from gui.help_dialogs import ShortcutsDialog

    window.shortcutsAction.trigger()
    dialog = window.findChild(ShortcutsDialog, "shortcutsDialog")
    qtbot.waitUntil(dialog.isVisible)
    listed = [dialog.table.item(row, 0).text() for row in range(dialog.table.rowCount())]
    assert listed.index("New recipe") < listed.index("Start") < listed.index("User guide")
    dialog.close()


@pytest.mark.parametrize(("device", "each"), [(ExpectedDevice("cuda", "NVIDIA H200"), "one GPU each"),
                                              (ExpectedDevice("cpu", "CPU"), "one share each")])
def test_several_processes_take_a_gpu_each_by_the_devices_type_not_its_words(qtbot, window, monkeypatch, device,
                                                                            each):
    import gui.panels.training_panel as training_panel

    monkeypatch.setattr(training_panel, "expected_device", lambda requested: device)
    window.document.edit(lambda recipe: setattr(recipe.distributed, "processes", 2))
    assert window.training_panel.deviceLabel.text() == f"Device: 2 processes × {device.text}, {each}"
