"""The main window: composition, strategy presets, recipe files, remembered state, and a safe close mid-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel, QTabWidget

from engine.recipe import Recipe
from engine.train.runs import SUMMARY_FILE, checkpoint_path
from gui.app import apply_arguments, create_app
from gui.document import RecipeDocument
from gui.main_window import MainWindow
from tests.gui.running import still_running
from tests.helpers import tiny_recipe

RUN_TIMEOUT_MS = 60_000


@pytest.fixture
def runs_root(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def make_window(qtbot, image_folder, runs_root, monkeypatch):
    """Main windows on a tiny recipe; none asks questions or shows blocking dialogs."""
    errors: list[tuple[str, str]] = []

    def make(recipe: Recipe | None = None) -> MainWindow:
        if recipe is None:
            recipe = tiny_recipe(image_folder, epochs=2, out=runs_root)
            recipe.data.max_train_batches = 2
        window = MainWindow(RecipeDocument(recipe))
        monkeypatch.setattr(window, "_show_error", lambda title, message: errors.append((title, message)))
        monkeypatch.setattr(window, "_confirm_close", lambda: True)
        window.training_panel.show_error_dialogs = False
        qtbot.addWidget(window)
        return window

    make.errors = errors
    return make


def test_window_composes_the_panels_as_tabs(make_window):
    window = make_window()
    tabs = window.findChild(QTabWidget, "mainTabs")
    assert [tabs.tabText(i) for i in range(tabs.count())] == [
        "Data", "Model", "Optimizer", "Phases", "Training", "Runs", "Evaluate", "Inference"]
    assert window.windowTitle() == f"Thaw — {window.document.recipe.name}[*]"
    assert not window.isWindowModified()
    assert window.deviceStatusLabel.text().startswith("Device: ")
    assert "RAM" in window.memoryStatusLabel.text()
    assert not window.stopRunAction.isEnabled() and window.startRunAction.isEnabled()
    assert "torchvision" in window.about_text()


def test_strategy_menu_replaces_the_phases_with_the_lessons_epochs(make_window):
    window = make_window()
    assert [p.name for p in window.document.recipe.phases] == ["feature_extraction"]

    window.strategy_actions["gradual_unfreezing"].trigger()

    recipe = window.document.recipe
    assert recipe.strategy == "gradual_unfreezing"
    assert [p.name for p in recipe.phases] == ["head", "head+layer4", "all"]
    assert [p.epochs for p in recipe.phases] == [5, 5, 10]  # the preset's, not the recipe's previous 2
    assert recipe.batch_size == 8 and recipe.data.crop_size == 32  # the tiny recipe's settings survive
    assert window.strategy_actions["gradual_unfreezing"].isChecked()
    assert window.isWindowModified()


def test_recipe_save_and_open_round_trip(make_window, tmp_path):
    window = make_window()
    window.document.edit(lambda r: setattr(r, "name", "round-trip"))
    path = tmp_path / "recipe.json"

    assert window.save_recipe(str(path))
    assert not window.isWindowModified() and window.document.path == str(path)
    saved = window.document.recipe.to_dict()
    window.document.edit(lambda r: setattr(r, "batch_size", 3))

    assert window.open_recipe(str(path))
    assert window.document.recipe.to_dict() == saved
    assert window.windowTitle() == "Thaw — round-trip[*]" and not window.isWindowModified()


def test_a_bad_recipe_file_names_the_field_and_changes_nothing(make_window, tmp_path):
    window = make_window()
    before = window.document.recipe.to_dict()
    path = tmp_path / "bad.json"
    data = dict(before, batch_size=0)
    path.write_text(json.dumps(data))

    assert not window.open_recipe(str(path))

    (title, message), = make_window.errors
    assert "batch_size" in message and str(path) in message
    assert window.document.recipe.to_dict() == before


def test_command_line_opens_a_recipe_and_sets_a_data_folder(make_window, tmp_path, image_folder):
    assert create_app() is create_app()  # the running QApplication, named for QSettings
    window = make_window()
    path = tmp_path / "cli.json"
    tiny_recipe(image_folder, name="from-cli").save(path)
    apply_arguments(window, [str(path)])
    assert window.document.recipe.name == "from-cli"
    apply_arguments(window, [str(tmp_path)])
    assert window.document.recipe.data.root == str(tmp_path)


def test_current_tab_is_remembered(make_window, isolated_settings):
    window = make_window()
    window.tabs.setCurrentWidget(window.runs_panel)
    window.close()
    assert isolated_settings.is_file()

    again = make_window()
    assert again.tabs.currentWidget() is again.runs_panel


def test_finished_run_refreshes_runs_and_hands_the_checkpoint_to_inference(qtbot, make_window, monkeypatch):
    window = make_window()
    chosen: list[str] = []
    exported: list[str] = []
    monkeypatch.setattr(window.inference_panel, "offer_checkpoint", chosen.append)
    monkeypatch.setattr(window.runs_panel, "open_export_dialog", exported.append)
    assert not window.exportRunAction.isEnabled()  # nothing to export yet

    # The run's evaluation.json is announced (EvaluationWritten) and shown in the Evaluate tab, and its weight drift
    # fills the layer tree's Drift column.
    with qtbot.waitSignal(window.evaluate_panel.evaluation_shown, check_params_cb=lambda e: e is not None,
                          timeout=RUN_TIMEOUT_MS) as shown:
        with qtbot.waitSignal(window.controller.running_changed, check_params_cb=lambda running: not running,
                              timeout=RUN_TIMEOUT_MS):
            window.startRunAction.trigger()

    assert window.tabs.currentWidget() is window.training_panel
    (run,) = window.runs_panel.selected_runs()
    assert run.status == "finished" and window.runs_panel.model.rowCount() == 1
    assert chosen == [str(checkpoint_path(run.path, "best"))]
    evaluation = shown.args[0]
    assert window.evaluate_panel.run_dir == run.path and evaluation.checkpoint == str(checkpoint_path(run.path, "best"))
    assert window.evaluate_panel.evaluationRunCombo.current_run() == run.path
    tree = window.model_panel.tree_model
    assert tree.drift_of("fc") == evaluation.drift.relative_of("fc") > 0  # the head trained
    assert tree.drift_of("layer1") == 0.0  # frozen: bit-identical
    assert window.exportRunAction.isEnabled()  # Run → Export this run… opens the export of the run just finished
    window.exportRunAction.trigger()
    assert exported == [run.path]


def test_a_finished_run_does_not_replace_the_checkpoint_the_user_chose(qtbot, make_window, trained_runs):
    """Issue 28, bug 3: the Inference tab replaced the user's checkpoint whenever another run finished."""
    window = make_window()
    panel = window.inference_panel
    chosen, newer = (str(checkpoint_path(trained_runs.get("feature_extraction", epochs=n), "best")) for n in (1, 2))
    window.runs_panel.checkpoint_chosen.emit(chosen)  # the Runs tab's "Use this checkpoint"
    assert panel.checkpointCombo.current_path() == chosen

    window._on_run_ended(str(Path(newer).parent.parent), "finished")

    assert panel.checkpointCombo.current_path() == chosen and panel._requested_checkpoint == chosen
    qtbot.waitUntil(lambda: "tiny_resnet" in panel.checkpointInfoLabel.text(), timeout=RUN_TIMEOUT_MS)  # loaded


def test_a_finished_run_is_offered_to_inference_until_a_checkpoint_is_chosen(qtbot, make_window, trained_runs):
    window = make_window()
    panel = window.inference_panel
    first, second = (str(checkpoint_path(trained_runs.get("feature_extraction", epochs=n), "best")) for n in (1, 2))
    window._on_run_ended(str(Path(first).parent.parent), "finished")
    assert panel.checkpointCombo.current_path() == first
    window._on_run_ended(str(Path(second).parent.parent), "finished")  # nothing chosen by hand: the newest
    assert panel.checkpointCombo.current_path() == second and panel._requested_checkpoint == second
    qtbot.waitUntil(lambda: "tiny_resnet" in panel.checkpointInfoLabel.text(), timeout=RUN_TIMEOUT_MS)


def test_close_mid_run_stops_saves_and_leaves_no_thread(qtbot, make_window, monkeypatch, pause_at_first,
                                                       no_thread_left_running, image_folder, runs_root):
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=runs_root)  # batches to pause at
    recipe.data.max_train_batches = 2
    window = make_window(recipe)
    window.show()
    pause_at_first(window.controller)
    window.startRunAction.trigger()
    qtbot.waitUntil(lambda: window.controller.is_paused, timeout=RUN_TIMEOUT_MS)
    run_dir = window.training_panel._run_dir

    monkeypatch.setattr(window, "_confirm_close", lambda: False)  # "Cancel": the window and the run stay
    window.close()
    assert window.isVisible() and window.controller.is_running

    monkeypatch.setattr(window, "_confirm_close", lambda: True)  # "Stop and save"
    with qtbot.waitSignal(window.controller.running_changed, check_params_cb=lambda running: not running,
                          timeout=RUN_TIMEOUT_MS):
        window.close()

    assert not window.isVisible()
    assert not still_running(no_thread_left_running)
    assert checkpoint_path(run_dir, "last").is_file()
    assert json.loads((Path(run_dir) / SUMMARY_FILE).read_text())["status"] == "stopped"


def test_jobs_that_compete_for_the_device_wait_in_a_visible_queue(qtbot, make_window, pause_at_first, image_folder,
                                                                 runs_root, no_thread_left_running):
    """Issue 28: the estimate, the LR finder and a training run all ran at once on a 2-core machine. Now the run
    holds the device, the others wait in the Jobs dock in order, and can be reordered or cancelled there."""
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=runs_root)
    recipe.data.max_train_batches = 2
    window = make_window(recipe)
    window.show()
    pause_at_first(window.controller)
    window.startRunAction.trigger()
    qtbot.waitUntil(lambda: window.controller.is_paused, timeout=RUN_TIMEOUT_MS)
    estimate, sweep = window.training_panel.costEstimate.runner, window.optimizer_panel.lr_finder.runner
    assert window.jobsStatusButton.text() == "Jobs: 1 running" and not window.jobsDock.isVisible()

    window.training_panel.costEstimate.start()
    window.optimizer_panel.lr_finder.find()

    assert estimate.is_queued and sweep.is_queued  # nothing runs beside the training run
    view = window.jobQueueView
    assert window.jobsDock.isVisible() and window.jobsStatusButton.text() == "Jobs: 1 running, 2 waiting"
    assert view.rows() == ["▶ Training run (holds the device; stop it on the Training tab)",
                           f"1. Estimating '{recipe.name}' — waiting",
                           "2. Sweeping the rate of 'all' (phase 1) — waiting"]
    assert "waiting for the training run to end (place 1 in the queue)" in window.training_panel.findChild(
        QLabel, "estimateProgressLabel").text()
    view.jobList.setCurrentRow(2)
    assert view.upButton.isEnabled() and not view.downButton.isEnabled()
    view.upButton.click()
    assert view.rows()[1].startswith("1. Sweeping") and view.runner_at(view.jobList.currentRow()) is sweep
    view.jobList.setCurrentRow(2)
    with qtbot.waitSignal(estimate.job_cancelled):
        view.cancelButton.click()
    assert not estimate.is_busy and len(view.rows()) == 2

    with qtbot.waitSignal(sweep.job_finished, timeout=RUN_TIMEOUT_MS):
        window.controller.request_stop()  # the run ends: the sweep gets the device
    assert window.optimizer_panel.lr_finder.sweep is not None
    qtbot.waitUntil(lambda: not window.controller.is_running, timeout=RUN_TIMEOUT_MS)
    assert window.jobsStatusButton.text() == "No jobs"


def test_a_run_started_during_a_sweep_waits_for_it_in_the_queue(qtbot, make_window, monkeypatch,
                                                                 no_thread_left_running):
    """Issue 28: the LR finder and a training run ran at once. Now Start waits in the queue until the sweep
    ends (here: is cancelled), then the run starts by itself."""
    import threading

    import engine.train.lr_finder as lr_finder

    original, pause = lr_finder.optimizer_step, threading.Event()

    def slow_optimizer_step(*args, **kwargs):
        step = original(*args, **kwargs)
        return lambda rates: (pause.wait(0.05), step(rates))[1]  # each step takes a moment: the test acts mid-sweep

    monkeypatch.setattr(lr_finder, "optimizer_step", slow_optimizer_step)
    window = make_window()
    sweep = window.optimizer_panel.lr_finder
    with qtbot.waitSignal(sweep.runner.progressed, timeout=RUN_TIMEOUT_MS):
        sweep.find()
    window.startRunAction.trigger()
    panel = window.training_panel
    assert panel.waiting_to_start and not window.controller.is_running
    assert window.jobQueueView.rows()[-1] == f"1. Training '{window.document.recipe.name}' — waiting"
    assert "Waiting for the device" in panel.progress.progressLabel.text() and not panel.startButton.isEnabled()

    with qtbot.waitSignal(window.controller.running_changed, check_params_cb=bool, timeout=RUN_TIMEOUT_MS):
        sweep.cancel()  # the sweep ends: the run gets the device
    assert not sweep.runner.is_busy and not panel.waiting_to_start
    qtbot.waitUntil(lambda: not window.controller.is_running, timeout=RUN_TIMEOUT_MS)
