"""Issue 24 in the studio: Model ▸ Domain pre-training… runs as a job — its curves fill as it trains, "Use these
weights" puts the backbone into the recipe, Cancel stops it between two batches and leaves no thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from gui.document import RecipeDocument
from tests.helpers import make_image_folder, tiny_recipe

pytest.importorskip("lightly", reason="domain pre-training needs lightly (pip install '.[test]' installs it)")

TIMEOUT_MS = 60_000


@pytest.fixture
def dialog(qtbot, tmp_path):
    from gui.pretrain_dialog import PretrainDialog

    images = make_image_folder(tmp_path / "images", classes=2, per_class=4, size=20)
    recipe = tiny_recipe(images, out=tmp_path / "runs")
    recipe.data.resize_size, recipe.data.crop_size, recipe.batch_size = 18, 16, 4
    document = RecipeDocument(recipe.validate())
    dialog = PretrainDialog(document)
    qtbot.addWidget(dialog)
    dialog.folder_edit.setText(str(images))
    yield dialog
    dialog.runner.shutdown()


def test_a_pretraining_draws_its_curves_and_its_weights_go_into_the_recipe_and_cancel_stops_it(
        qtbot, dialog, no_thread_left_running):
    dialog.method_combo.setCurrentText("moco")
    dialog.epochs_spin.setValue(1)
    with qtbot.waitSignal(dialog.runner.job_finished, timeout=TIMEOUT_MS):
        dialog.start_button.click()
        assert dialog.cancel_button.isEnabled() and not dialog.start_button.isEnabled()

    assert dialog.use_button.isEnabled(), dialog.status.text()
    xs, ys = dialog.loss_curve.getData()
    assert list(xs) == [1.0, 2.0] and len(ys) == 2  # 8 images, batches of 4: two steps drawn
    knn_x, _ = dialog.knn_curve.getData()
    assert list(knn_x) == [0.0, 1.0]  # the starting backbone, then after the epoch
    dialog.use_button.click()
    weights = dialog.document.recipe.model.weights_file
    assert weights == dialog.weights_file and Path(weights).name == "backbone.pth" and Path(weights).is_file()

    dialog.epochs_spin.setValue(500)
    with qtbot.waitSignal(dialog.runner.job_cancelled, timeout=TIMEOUT_MS):
        dialog.start_button.click()
        qtbot.waitUntil(lambda: len(dialog.losses) >= 1, timeout=TIMEOUT_MS)
        dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.runner.is_busy, timeout=TIMEOUT_MS)
    assert "Stopped" in dialog.status.text() and not dialog.use_button.isEnabled()
    assert dialog.start_button.isEnabled()
    dialog.close_button.click()
    assert all(not t.isRunning() for t in no_thread_left_running)


def test_pause_holds_the_run_between_two_batches_and_continue_finishes_it(qtbot, dialog, no_thread_left_running):
    """Issue 24: the run could be cancelled but not paused from the dialog."""
    dialog.method_combo.setCurrentText("moco")
    dialog.epochs_spin.setValue(10)  # 20 batches: the pause is taken long before the end
    assert not dialog.pause_button.isEnabled()
    with qtbot.waitSignal(dialog.runner.job_finished, timeout=TIMEOUT_MS):
        dialog.start_button.click()
        qtbot.waitUntil(lambda: dialog.pause_button.isEnabled(), timeout=TIMEOUT_MS)
        dialog.pause_button.click()
        assert dialog.pause_button.text() == "Continue" and "Paused" in dialog.status.text()
        qtbot.waitUntil(lambda: dialog.control.holding, timeout=TIMEOUT_MS)
        held_at = len(dialog.losses)
        qtbot.waitUntil(lambda: len(dialog.losses) == held_at and dialog.runner.is_busy, timeout=TIMEOUT_MS)
        assert "Paused" in dialog.status.text()  # the batches that arrive late do not write over it
        assert held_at < 20  # held before the run's end: 10 epochs of 2 batches
        dialog.pause_button.click()  # Continue
        assert dialog.pause_button.text() == "Pause" and not dialog.control.paused
    assert dialog.use_button.isEnabled(), dialog.status.text()
    assert list(dialog.loss_curve.getData()[0]) == [float(s) for s in range(1, 21)]  # none lost or repeated
    assert not dialog.pause_button.isEnabled() and dialog.pause_button.text() == "Pause"


def test_cancel_while_paused_stops_and_resume_continues_the_same_run_to_its_end(qtbot, dialog,
                                                                              no_thread_left_running):
    dialog.method_combo.setCurrentText("moco")
    dialog.epochs_spin.setValue(25)  # 50 batches: paused long before the end, even on a loaded machine
    with qtbot.waitSignal(dialog.runner.job_cancelled, timeout=TIMEOUT_MS):
        dialog.start_button.click()
        qtbot.waitUntil(lambda: len(dialog.losses) >= 1 and dialog.pause_button.isEnabled(), timeout=TIMEOUT_MS)
        dialog.pause_button.click()
        qtbot.waitUntil(lambda: dialog.control.holding, timeout=TIMEOUT_MS)
        dialog.cancel_button.click()  # a paused run wakes to stop: no hang
    qtbot.waitUntil(lambda: not dialog.runner.is_busy, timeout=TIMEOUT_MS)
    stopped = dialog.stopped_run_dir
    assert stopped and Path(stopped, "checkpoints").is_dir() and stopped in dialog.status.text()
    assert dialog.resume_button.isEnabled() and not dialog.use_button.isEnabled()
    assert dialog.pause_button.text() == "Pause" and not dialog.pause_button.isEnabled()  # not "Continue"
    done_before = len(dialog.losses)
    assert 1 <= done_before < 50

    with qtbot.waitSignal(dialog.runner.job_finished, timeout=TIMEOUT_MS):
        dialog.resume_button.click()
    assert dialog.use_button.isEnabled(), dialog.status.text()
    assert dialog.run_dir == stopped and Path(dialog.weights_file).parent == Path(stopped)
    steps = list(dialog.loss_curve.getData()[0])
    assert steps == [float(s) for s in range(1, 51)]  # the resumed run went on from the step it stopped at
    assert dialog.stopped_run_dir == ""


def start_and_hold(qtbot, dialog) -> None:
    """A long run started, paused, and held between two batches."""
    dialog.method_combo.setCurrentText("moco")
    dialog.epochs_spin.setValue(50)
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.pause_button.isEnabled(), timeout=TIMEOUT_MS)
    dialog.pause_button.click()
    qtbot.waitUntil(lambda: dialog.control.holding, timeout=TIMEOUT_MS)


def test_closing_the_dialog_while_paused_stops_the_run_and_its_thread(qtbot, dialog, no_thread_left_running):
    start_and_hold(qtbot, dialog)
    dialog.close_button.click()  # shutdown waits for the thread: it must not wait for a Continue
    assert not dialog.runner.is_busy
    assert all(not t.isRunning() for t in no_thread_left_running)


def test_the_studio_quitting_while_the_run_is_paused_stops_it(qtbot, dialog, no_thread_left_running):
    """Quit cancels every job through the board (gui/main_window.py): that cancel alone must wake a paused run."""
    from gui.jobs.board import job_board

    start_and_hold(qtbot, dialog)
    job_board().shutdown([dialog.runner])  # waits for the thread
    assert not dialog.runner.is_busy and not dialog.control.holding


def test_a_run_waiting_for_the_device_cannot_be_paused_yet(qtbot, dialog, no_thread_left_running):
    from PySide6.QtCore import QObject

    from gui.jobs.board import job_board

    board, holder = job_board(), QObject()  # a training run or an estimate holds the device
    assert board.take_device(holder)
    try:
        dialog.start_button.click()
        assert dialog.runner.is_queued and "Waiting for the device" in dialog.status.text()
        assert dialog.cancel_button.isEnabled() and not dialog.pause_button.isEnabled()
        dialog.cancel_button.click()  # out of the queue; nothing ran
        assert not dialog.runner.is_busy and dialog.start_button.isEnabled()
    finally:
        board.give_back_device(holder)
