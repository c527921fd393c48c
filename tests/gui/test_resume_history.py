"""Resume, as the issue found it: after a restart, "Resume last run" redraws the history drawn before the stop —
the per-batch loss, every group's learning rate, the epochs — and the rate shown right after resuming is not the
first batch's start-up."""

from __future__ import annotations

from PySide6.QtCore import Qt

from engine.train import events as ev
from engine.train.runs import read_batches
from gui.document import RecipeDocument
from gui.panels.training_panel import TrainingPanel
from gui.widgets.run_progress import RunProgress
from gui.workers.training import TrainingController
from tests.helpers import tiny_recipe

RUN_TIMEOUT_MS = 60_000
BATCHES = 3


def panel_for(qtbot, recipe) -> tuple[TrainingPanel, TrainingController]:
    controller = TrainingController()
    panel = TrainingPanel(RecipeDocument(recipe), controller)
    panel.show_error_dialogs = False
    qtbot.addWidget(panel)
    return panel, controller


def until_idle(qtbot, controller, button) -> None:
    with qtbot.waitSignal(controller.running_changed, check_params_cb=lambda running: not running,
                          timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def x_of(curve) -> list[float]:
    x = curve.getOriginalDataset()[0]
    return [] if x is None else [float(v) for v in x]


def test_a_restarted_studio_redraws_a_mid_epoch_stops_history_on_resume(qtbot, image_folder, tmp_path,
                                                                        pause_at_first):
    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=3, out=tmp_path / "runs")  # 1 + 1 + 1 epochs
    recipe.phases[0].head_fit = "epochs"  # batches in every phase (a fitted head has none to draw)
    recipe.data.max_train_batches = BATCHES
    first, controller = panel_for(qtbot, recipe)
    pause_at_first(controller)
    qtbot.mouseClick(first.startButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.is_paused and controller.worker.control.holding, timeout=RUN_TIMEOUT_MS)
    until_idle(qtbot, controller, first.stopButton)  # stopped inside the first epoch
    run_dir = first.resumable_run
    trained_before = read_batches(run_dir)
    assert 0 < len(trained_before) < BATCHES
    drawn_before = {group: x_of(curve) for group, curve in first.curves.lr_curves.items()}
    first.close()

    again, controller = panel_for(qtbot, recipe)  # the studio restarted: nothing of the run in memory
    assert again.resumable_run == run_dir
    started: list[ev.RunStarted] = []
    smoothed_at_start: list[int] = []

    def at_start(event) -> None:  # the history is drawn as soon as the resumed run starts, before new batches
        if isinstance(event, ev.RunStarted):
            started.append(event)
            smoothed_at_start.append(len(again.curves._series[again.curves.smoothed_loss_curve]))

    controller.event_emitted.connect(at_start)
    until_idle(qtbot, controller, again.resumeRunButton)

    (resumed,) = started
    assert resumed.resumed and resumed.start_batch == len(trained_before)
    assert smoothed_at_start == [len(trained_before)]  # every batch trained before the stop, redrawn at once
    assert len(x_of(again.curves.smoothed_loss_curve)) == 3 * BATCHES  # then the rest: nothing lost, nothing twice
    for group, xs in drawn_before.items():
        assert x_of(again.curves.lr_curves[group])[: len(xs) - 1] == xs[:-1]
    assert len(again.curves.lr_curves) >= 3  # later phases' groups (head, layer4, the stem …) are drawn as well
    assert len(x_of(again.curves.val_acc_curve)) == 3


def test_the_rate_right_after_resuming_waits_for_a_batch_measured_without_start_up(qtbot):
    progress = RunProgress()
    qtbot.addWidget(progress)
    progress.start(total_epochs=2, start_epoch=0, start_batch=2)  # resumed inside the first epoch

    def show(epoch: int, batch: int, rate: float) -> str:
        progress.show_batch(ev.BatchFinished(epoch=epoch, batch=batch, batches=5, global_step=epoch * 5 + batch + 1,
                                             train_loss=1.0, train_acc=0.5, lrs={"head": 1e-3}, images_per_s=rate))
        progress._redraw.flush()
        return progress.progressLabel.text()

    assert "… images/s" in show(0, 2, 2.0)  # the resumed session's first batch: start-up, not a rate
    assert "310 images/s" in show(0, 3, 310.0)
    assert "310 images/s" in show(1, 0, 3.0)  # a new epoch's first batch keeps the last measured rate
    assert "305 images/s" in show(1, 1, 305.0)
