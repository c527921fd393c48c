"""The Training tab drives real (tiny) runs on the CPU: curves, progress, checkpoints, pause, stop, resume,
and errors a user can read."""

from __future__ import annotations

import json
from pathlib import Path

import pyqtgraph as pg
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton

from engine.train import events as ev
from engine.train.devices import pick_device
from engine.train.runs import SUMMARY_FILE, checkpoint_path
from gui.document import RecipeDocument
from gui.panels.training_panel import TrainingPanel
from gui.widgets.plot_style import phase_names
from gui.workers.training import TrainingController, TrainingWorker
from tests.gui.running import still_running
from tests.helpers import tiny_recipe

RUN_TIMEOUT_MS = 60_000


@pytest.fixture
def runs_root(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def controller():
    controller = TrainingController()
    yield controller
    controller.stop_and_wait()


@pytest.fixture
def panel(qtbot, controller, image_folder, runs_root):
    # The lesson's feature extraction: a head trained in batches, two epochs (a fitted head has its own test below).
    document = RecipeDocument(tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=runs_root))
    panel = TrainingPanel(document, controller)
    panel.show_error_dialogs = False
    qtbot.addWidget(panel)
    return panel


class Recorder:
    """What the panel and controller said during a run."""

    def __init__(self, panel: TrainingPanel, controller: TrainingController):
        self.batches: list[ev.BatchFinished] = []
        self.events: list[ev.Event] = []
        self.ended: list[tuple[str, str]] = []
        controller.batches_finished.connect(self.batches.extend)
        controller.event_emitted.connect(self.events.append)
        panel.run_ended.connect(lambda run_dir, status: self.ended.append((run_dir, status)))


def click_and_wait_until_idle(qtbot, controller, button) -> None:
    """Click, then wait until the run's thread has ended (running_changed(False))."""
    with qtbot.waitSignal(controller.running_changed, check_params_cb=lambda running: not running,
                          timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def points(curve: pg.PlotDataItem) -> int:
    x = curve.getOriginalDataset()[0]
    return 0 if x is None else len(x)


def phase_lines(plot: pg.PlotWidget) -> list[pg.InfiniteLine]:
    return [item for item in plot.getPlotItem().items if isinstance(item, pg.InfiniteLine)]


def test_full_run_draws_curves_and_writes_checkpoints(qtbot, panel, controller):
    seen = Recorder(panel, controller)
    click_and_wait_until_idle(qtbot, controller, panel.startButton)

    assert len(seen.ended) == 1
    run_dir, status = seen.ended[0]
    assert status == "finished"
    curves = panel.curves
    for curve in (curves.train_loss_curve, curves.val_loss_curve, curves.train_acc_curve, curves.val_acc_curve):
        assert points(curve) == 2  # one point per epoch
    batches_per_epoch = seen.batches[0].batches
    # The throttled signal coalesces batches but loses none: the smoothed curve has every batch of both epochs.
    assert sorted((b.epoch, b.batch) for b in seen.batches) == [
        (e, b) for e in range(2) for b in range(batches_per_epoch)]
    assert points(curves.smoothed_loss_curve) == 2 * batches_per_epoch
    (group,) = seen.batches[0].lrs  # feature extraction: one group, the head
    assert list(curves.lr_curves) == [group]
    lr_x, lr_y = curves.lr_curves[group].getOriginalDataset()  # a constant lr: one flat segment over both epochs
    assert list(lr_x) == [1 / batches_per_epoch, 2.0] and lr_y[0] == lr_y[1] == seen.batches[0].lrs[group]
    assert panel.trainProgress.value() == panel.trainProgress.maximum()
    assert checkpoint_path(run_dir, "best").is_file() and checkpoint_path(run_dir, "last").is_file()
    for plot in (panel.lossPlot, panel.accuracyPlot, panel.lrPlot):
        assert [line.value() for line in phase_lines(plot)] == [0]
        assert phase_names(plot) == [(0.0, "feature_extraction")]
    log = panel.runLog.toPlainText()
    assert "Epoch 1/2" in log and "Epoch 2/2" in log
    assert "Evaluated the best checkpoint" in log and (Path(run_dir) / "evaluation.json").is_file()
    assert "Freeze verified in phase 1 'feature_extraction'" in panel.freezeLabel.text()
    assert "CPU" in panel.deviceLabel.text()
    assert panel.startButton.isEnabled() and not panel.stopButton.isEnabled()


def test_pause_holds_the_engine_until_resumed(qtbot, panel, controller, pause_at_first):
    pause_at_first(controller)
    seen = Recorder(panel, controller)
    qtbot.mouseClick(panel.startButton, Qt.MouseButton.LeftButton)
    worker = controller.worker
    qtbot.waitUntil(lambda: worker.control.paused and panel.pauseButton.text() == "Continue", timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: len(seen.batches) == 1 and worker.control.holding, timeout=RUN_TIMEOUT_MS)
    assert len(seen.batches) == 1 and controller.is_running  # held between two batches: none arrives meanwhile

    click_and_wait_until_idle(qtbot, controller, panel.pauseButton)

    assert [status for _, status in seen.ended] == ["finished"]
    batches_per_epoch = seen.batches[0].batches
    assert len(seen.batches) == 2 * batches_per_epoch
    assert panel.pauseButton.text() == "Pause"
    assert panel.trainProgress.value() == panel.trainProgress.maximum()


def test_paused_is_shown_while_the_run_is_paused(qtbot, panel, controller, pause_at_first):
    """Issue 28: "Paused" was written once and overwritten by the next redraw of batches that had finished before
    the pause took hold."""
    pause_at_first(controller)
    qtbot.mouseClick(panel.startButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.is_paused and controller.worker.control.holding, timeout=RUN_TIMEOUT_MS)
    label = panel.progress.progressLabel
    # The batch the pause was taken at reaches the GUI thread through a queued signal, perhaps after the pause:
    # its redraw is what must keep "Paused" (waiting for an idle timer alone raced with that delivery).
    qtbot.waitUntil(lambda: "batch 1/" in label.text(), timeout=RUN_TIMEOUT_MS)
    assert label.text().startswith("Paused — Epoch 1/2 · batch 1/")
    assert panel.progress.trainProgress.value() > 0  # the progress itself is still drawn

    click_and_wait_until_idle(qtbot, controller, panel.pauseButton)
    assert not label.text().startswith("Paused")


def test_stop_saves_a_checkpoint_and_resume_finishes_the_run(qtbot, panel, controller, pause_at_first,
                                                            no_thread_left_running):
    pause_at_first(controller, ev.EpochFinished)  # the engine then waits before epoch 2's first batch
    seen = Recorder(panel, controller)
    qtbot.mouseClick(panel.startButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.is_paused, timeout=RUN_TIMEOUT_MS)

    click_and_wait_until_idle(qtbot, controller, panel.stopButton)

    (run_dir, status), = seen.ended
    assert status == "stopped"
    assert checkpoint_path(run_dir, "last").is_file() and checkpoint_path(run_dir, "best").is_file()
    assert json.loads((Path(run_dir) / SUMMARY_FILE).read_text())["status"] == "stopped"
    assert not still_running(no_thread_left_running)
    assert panel.resumable_run == run_dir and panel.resumeRunButton.isEnabled()
    assert "Stopped in epoch 2 after 0 batches" in panel.runLog.toPlainText()
    batches_per_epoch = seen.batches[0].batches
    lr_before = {g: list(c.getOriginalDataset()[0]) for g, c in panel.curves.lr_curves.items()}

    click_and_wait_until_idle(qtbot, controller, panel.resumeRunButton)

    assert seen.ended[1] == (run_dir, "finished")
    # Epoch 1 comes back from metrics.csv and its batches from batches.csv; epoch 2 is trained now.
    assert points(panel.curves.val_acc_curve) == 2
    assert points(panel.curves.smoothed_loss_curve) == 2 * batches_per_epoch
    for group, xs in lr_before.items():  # the learning-rate history drawn before the stop is drawn again
        assert list(panel.curves.lr_curves[group].getOriginalDataset()[0])[: len(xs) - 1] == xs[:-1]
    assert panel.trainProgress.value() == panel.trainProgress.maximum()
    assert "Resuming" in panel.runLog.toPlainText()
    assert panel.resumable_run == "" and not panel.resumeRunButton.isEnabled()


def test_a_run_that_fails_midway_says_why(qtbot, controller, image_folder, runs_root, monkeypatch):
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", out=runs_root)  # 2 epochs
    on_event = TrainingWorker._on_event

    def diverge_after_the_first_epoch(worker, event):  # runs on the training thread, between two epochs
        if isinstance(event, ev.CheckpointSaved) and event.epoch == 1:
            with torch.no_grad():
                worker.trainer.model.fc.weight.fill_(float("nan"))  # what a diverging optimizer leaves
        on_event(worker, event)

    # A learning rate that diverges is refused by the recipe's limits now; the divergence is injected instead.
    monkeypatch.setattr(TrainingWorker, "_on_event", diverge_after_the_first_epoch)
    panel = TrainingPanel(RecipeDocument(recipe), controller)
    panel.show_error_dialogs = False
    qtbot.addWidget(panel)
    seen = Recorder(panel, controller)

    click_and_wait_until_idle(qtbot, controller, panel.startButton)

    (run_dir, status), = seen.ended
    assert status == "failed" and run_dir
    assert "ERROR: the loss became nan" in panel.runLog.toPlainText()
    assert panel.progress.progressLabel.text() == "Failed"
    assert panel.startButton.isEnabled()


def test_device_label_warns_when_training_would_fall_back_to_the_cpu(qtbot, controller, image_folder):
    recipe = tiny_recipe(image_folder)
    recipe.device = "auto"
    panel = TrainingPanel(RecipeDocument(recipe), controller)
    qtbot.addWidget(panel)
    device, warning = pick_device("auto")
    if device.type == "cpu":
        assert "CPU" in panel.deviceLabel.text() and "⚠" in panel.deviceLabel.text()
        assert "b00020" in panel.deviceLabel.styleSheet()  # shown in red
    else:
        assert "⚠" not in panel.deviceLabel.text()
    panel._document.edit(lambda r: setattr(r, "device", "cpu"))  # asked for explicitly: no warning
    assert panel.deviceLabel.text() == "Device: CPU"


def test_missing_data_folder_reports_a_clear_error(qtbot, controller, tmp_path, runs_root):
    missing = tmp_path / "no-such-folder"
    document = RecipeDocument(tiny_recipe(missing, out=runs_root))
    panel = TrainingPanel(document, controller)
    qtbot.addWidget(panel)
    seen = Recorder(panel, controller)
    click_and_wait_until_idle(qtbot, controller, panel.startButton)

    assert seen.ended == [("", "failed")]
    (message,) = [e.error for e in seen.events if isinstance(e, ev.RunFailed)]
    assert str(missing) in message
    assert f"ERROR: {message}" in panel.runLog.toPlainText()
    assert list(runs_root.glob("*")) == []  # no run folder for a run that never started
    box = panel._error_box  # shown with open(): it never blocks the event loop
    assert box is not None and box.isVisible() and message in box.text()
    box.close()


def test_worker_coalesces_batches_and_flushes_them_before_other_events(qtbot):
    worker = TrainingWorker(recipe=tiny_recipe("unused"), batch_interval_s=3600)
    received: list[tuple[str, object]] = []
    worker.batches_finished.connect(lambda batches: received.append(("batches", [b.batch for b in batches])))
    worker.event_emitted.connect(lambda e: received.append(("epoch", e.epoch)))

    def batch(i: int) -> ev.BatchFinished:
        return ev.BatchFinished(epoch=0, batch=i, batches=4, global_step=i + 1, train_loss=1.0, train_acc=0.5,
                                lrs={"head": 1e-3}, images_per_s=100.0)

    for i in range(4):
        worker._on_event(batch(i))
    worker._on_event(ev.EpochFinished(epoch=0, phase_index=0, phase_name="head", train_loss=1.0, train_acc=0.5,
                                      val_loss=1.0, val_acc=0.5, lrs={"head": 1e-3}, seconds=1.0, images_per_s=100.0,
                                      data_wait_share=0.0, train_images=32, is_best=True, elapsed_seconds=1.0))

    # The first batch goes out at once; the rest wait for the interval, but never overtake the epoch's end.
    assert received == [("batches", [0]), ("batches", [1, 2, 3]), ("epoch", 0)]


def test_worker_thins_progress_reports_but_keeps_the_last(qtbot):
    worker = TrainingWorker(recipe=tiny_recipe("unused"), batch_interval_s=3600)
    reported: list[int] = []
    worker.event_emitted.connect(lambda e: reported.append(e.done))

    for done in range(1, 11):
        worker._on_event(ev.FeaturesProgressed(phase_index=0, done=done, total=10))

    assert reported == [1, 10]


# --- before Start: what the run will cost ----------------------------------------------------------------------

def estimate_and_wait(qtbot, panel: TrainingPanel) -> None:
    qtbot.mouseClick(panel.estimateButton, Qt.MouseButton.LeftButton)
    assert not panel.estimateButton.isEnabled()  # measuring, in its own thread
    qtbot.waitUntil(lambda: panel.estimateButton.isEnabled(), timeout=RUN_TIMEOUT_MS)


def test_the_estimate_is_shown_before_start_and_goes_stale_when_the_recipe_changes(qtbot, controller, image_folder,
                                                                                    runs_root):
    document = RecipeDocument(tiny_recipe(image_folder, "gradual_unfreezing", epochs=3, out=runs_root,
                                          head_fit="converge"))
    panel = TrainingPanel(document, controller)
    qtbot.addWidget(panel)
    estimate_and_wait(qtbot, panel)
    text = panel.estimateLabel.text()
    assert panel.estimate is not None and "whole run ≈" in text and "peak memory ≈" in text
    assert "phase 1 'head': " in text and "fitted to convergence" in text and "steps on images" in text
    assert list(runs_root.glob("*")) == []  # nothing trained, no run folder
    document.edit(lambda recipe: setattr(recipe, "batch_size", 4))
    assert panel.estimate is None and "changed since" in panel.estimateLabel.text()


def test_the_estimate_says_why_the_run_would_not_start(qtbot, controller, tmp_path, runs_root):
    panel = TrainingPanel(RecipeDocument(tiny_recipe(tmp_path / "gone", out=runs_root)), controller)
    qtbot.addWidget(panel)
    estimate_and_wait(qtbot, panel)
    assert panel.estimate is None
    assert "would not start" in panel.estimateLabel.text() and "gone" in panel.estimateLabel.text()


def test_the_estimate_counts_its_phases_and_cancel_stops_it(qtbot, controller, image_folder, runs_root):
    document = RecipeDocument(tiny_recipe(image_folder, "gradual_unfreezing", epochs=3, out=runs_root))
    document.recipe.name = "three phases"
    panel = TrainingPanel(document, controller)
    qtbot.addWidget(panel)
    cancel = panel.findChild(QPushButton, "estimateCancelButton")
    runner = panel.costEstimate.runner
    counted: list[str] = []
    runner.progressed.connect(lambda *_: counted.append(panel.findChild(QLabel, "estimateProgressLabel").text()))
    with qtbot.waitSignal(runner.job_succeeded, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(panel.estimateButton, Qt.MouseButton.LeftButton)
    assert [text.split(" · ")[0] for text in counted] == [f"Estimating 'three phases': phase {n} of 3"
                                                          for n in (1, 2, 3)]

    counted.clear()
    with qtbot.waitSignal(runner.job_cancelled, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(panel.estimateButton, Qt.MouseButton.LeftButton)
        assert cancel.isVisibleTo(panel)
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)  # stops before the first phase is measured
    assert counted == [] and panel.estimate is None and panel.estimateLabel.text() == "Estimate cancelled."
    assert panel.estimateButton.isEnabled() and not cancel.isVisibleTo(panel)


# --- a head fitted to convergence --------------------------------------------------------------------------------

def test_a_fitted_head_shows_its_fit_on_its_own_axes(qtbot, controller, image_folder, runs_root):
    panel = TrainingPanel(RecipeDocument(tiny_recipe(image_folder, "feature_extraction", epochs=2, out=runs_root,
                                                     head_fit="converge")), controller)
    panel.show_error_dialogs = False
    qtbot.addWidget(panel)
    seen = Recorder(panel, controller)
    progress_texts = []
    controller.event_emitted.connect(
        lambda e: isinstance(e, ev.HeadFitProgressed) and progress_texts.append(panel.progress.progressLabel.text()))

    click_and_wait_until_idle(qtbot, controller, panel.startButton)

    assert [status for _, status in seen.ended] == ["finished"]
    (fitted,) = [e for e in seen.events if isinstance(e, ev.HeadFitted)]
    assert seen.batches == []  # no batches: the fit is the epoch
    assert any("fitting the head: cross-validation fit" in t for t in progress_texts)
    box = panel.curves.headFitBox
    assert not box.isHidden()
    cv, path = box.curves()
    assert list(cv.getOriginalDataset()[0]) == fitted.grid
    assert list(cv.getOriginalDataset()[1]) == pytest.approx([100 * a for a in fitted.cv_acc])
    assert list(path.getOriginalDataset()[0]) == fitted.curve_iterations  # x: L-BFGS iterations, honestly
    assert points(panel.curves.val_acc_curve) == 1 and points(panel.curves.smoothed_loss_curve) == 0
    assert "Fitted the head on" in panel.runLog.toPlainText() and "head fitted (L-BFGS" in panel.runLog.toPlainText()
    panel.curves.reset()
    assert box.isHidden() and box.curves() == []


def test_a_resumed_run_replays_its_fit_from_the_summary(image_folder, runs_root):
    from engine.train.runs import read_fitted_heads
    from engine.train.trainer import fit

    events: list[ev.Event] = []
    result = fit(tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_root), [events.append])
    assert read_fitted_heads(result.run_dir) == [e for e in events if isinstance(e, ev.HeadFitted)]  # every field


def test_a_setback_and_the_restore_that_answers_it_are_shown_beside_the_curves(qtbot, panel):
    """What the user reads when a phase ended worse: the setback, its likely causes, and the weights the run goes on
    with (restore_best), in the side label and the log, until the next run starts."""
    setback = ev.PhaseSetBack(kind="whole_phase", phase_index=1, phase_name="fine_tune", epoch=4,
                              previous_name="feature_extraction", train_acc_before=1.0, train_acc_after=0.9,
                              train_loss_before=0.01, train_loss_after=0.3, val_acc_before=0.836,
                              val_acc_after=0.824, causes=["overfitting: fewer epochs"])
    restored = ev.BestRestored(phase_index=1, phase_name="fine_tune", epoch=4, best_epoch=1, metric="val_acc",
                               val_acc_last=0.824, val_loss_last=0.6, val_acc_best=0.836, val_loss_best=0.5,
                               train_acc_best=1.0)
    label = panel.findChild(QLabel, "setbackLabel")
    assert label.isHidden()
    panel._on_event(setback)
    panel._on_event(restored)
    lines = label.text().splitlines()
    assert lines[0].startswith("⚠ Phase 2 'fine_tune' ended below where it began") and "overfitting" in lines[1]
    assert lines[-1] == ("Phase 2 'fine_tune' ended worse than epoch 1 (validation accuracy 82.4 % against 83.6 %): "
                         "the model goes on with epoch 1's weights (restore_best)")
    assert not label.isHidden()
    assert lines[-1] in panel.runLog.toPlainText()
