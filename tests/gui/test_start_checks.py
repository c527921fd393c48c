"""Start refuses what the engine would refuse, before any training thread exists, in the studio's words: a class
folder without images (as the Data tab's scan shows it), pretrained weights that are absent while downloads are
forbidden. The engine's refusal in the thread is worded the same way."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from engine.train import events as ev
from gui.document import RecipeDocument
from gui.main_window import MainWindow
from gui.panels.training_panel import TrainingPanel
from gui.start_checks import WEIGHTS_MENU, start_refusal
from gui.workers.training import TrainingController
from tests.helpers import make_image_folder, tiny_recipe

RUN_TIMEOUT_MS = 60_000


@pytest.fixture
def controller():
    controller = TrainingController()
    yield controller
    controller.stop_and_wait()


def record_workers(controller: TrainingController) -> list:
    created = []
    controller.worker_created.connect(created.append)
    return created


def test_start_is_refused_on_an_empty_class_before_any_thread_starts(qtbot, tmp_path):
    data = make_image_folder(tmp_path / "data", classes=3, per_class=6)
    (data / "owl").mkdir()
    (data / "owl" / "notes.txt").write_text("not an image")
    runs = tmp_path / "runs"
    window = MainWindow(RecipeDocument(tiny_recipe(data, out=runs)))
    window.training_panel.show_error_dialogs = False
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.document.scan is not None, timeout=RUN_TIMEOUT_MS)
    assert window.document.scan.empty_classes == ["owl"]
    assert "owl" in window.data_panel.imbalanceLabel.text()  # the Data tab says it as well
    created = record_workers(window.controller)

    qtbot.mouseClick(window.training_panel.startButton, Qt.MouseButton.LeftButton)

    assert created == [] and not window.controller.is_running  # refused before a thread
    log = window.training_panel.runLog.toPlainText()
    assert "class folder 'owl' (1 unusable files) has no usable training images" in log
    assert "press Rescan" in log
    assert window.training_panel.progress.progressLabel.text() == "Could not start"
    assert not runs.exists() or list(runs.iterdir()) == []  # no run folder for a run that never started

    # Images added and the folder rescanned: nothing stops the start any more.
    make_image_folder(tmp_path / "more", classes=4, per_class=6)
    for image in (tmp_path / "more" / "owl").iterdir():
        image.rename(data / "owl" / image.name)
    with qtbot.waitSignal(window.document.data_scanned, timeout=RUN_TIMEOUT_MS):
        window.data_panel.rescan()
    assert start_refusal(window.document.recipe, window.document.scan) == ""


def test_a_scan_of_another_folder_is_not_held_against_the_recipe(tmp_path):
    from engine.data.scan import scan_folder

    data = make_image_folder(tmp_path / "data", classes=2, per_class=4)
    (data / "empty").mkdir()
    report = scan_folder(str(data))
    assert "class folder 'empty'" in start_refusal(tiny_recipe(data), report)
    assert start_refusal(tiny_recipe(tmp_path / "elsewhere"), report) == ""  # a stale scan: the engine decides


def test_offline_weights_missing_are_refused_pointing_to_the_weights_menu(qtbot, controller, image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, out=tmp_path / "runs")
    recipe.model.arch = "resnet34"  # no weights file of it in the tests' TORCH_HOME, and THAW_OFFLINE=1
    panel = TrainingPanel(RecipeDocument(recipe), controller)
    panel.show_error_dialogs = False
    qtbot.addWidget(panel)
    created = record_workers(controller)

    qtbot.mouseClick(panel.startButton, Qt.MouseButton.LeftButton)

    assert created == [] and not controller.is_running
    log = panel.runLog.toPlainText()
    assert WEIGHTS_MENU in log and "resnet34-b627a593.pth" in log and "THAW_OFFLINE is set" in log
    assert "--weights-file" not in log and "model.weights_file" not in log  # the CLI's and the recipe's words


def test_the_engines_refusal_in_the_thread_is_worded_for_the_studio_too(qtbot, controller, image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, out=tmp_path / "runs")
    recipe.model.arch = "resnet34"
    failures: list[ev.RunFailed] = []
    controller.event_emitted.connect(lambda e: failures.append(e) if isinstance(e, ev.RunFailed) else None)

    with qtbot.waitSignal(controller.running_changed, check_params_cb=lambda running: not running,
                          timeout=RUN_TIMEOUT_MS):
        controller.start(recipe)  # past the studio's check: the engine refuses while building the model

    (failure,) = failures
    assert failure.run_dir == "" and WEIGHTS_MENU in failure.error and "resnet34-b627a593.pth" in failure.error
    assert "--weights-file" not in failure.error
