"""The studio trains in child processes as it trains in its own: a 2-process run (torchrun, gloo on the CPU) streams
its events to the same panels, stops with a checkpoint, resumes; a child that is killed is a failed run, said with
its reason, and the studio stays up. The device choice lists the GPUs and edits the recipe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import Qt

from engine.train import events as ev
from engine.train.runs import SUMMARY_FILE, checkpoint_path, read_metrics
from gui.document import RecipeDocument
from gui.panels.training_panel import TrainingPanel
from gui.widgets.device_choice import DeviceChoice, device_options
from gui.workers.training import TrainingController
from gui.workers.training_process import ProcessTrainingWorker
from tests.helpers import tiny_recipe

RUN_TIMEOUT_MS = 120_000


@pytest.fixture
def controller():
    controller = TrainingController()
    yield controller
    controller.stop_and_wait()


def make_panel(qtbot, controller, recipe) -> TrainingPanel:
    panel = TrainingPanel(RecipeDocument(recipe), controller)
    panel.show_error_dialogs = False
    qtbot.addWidget(panel)
    return panel


class Seen:
    def __init__(self, panel: TrainingPanel, controller: TrainingController):
        self.events: list[ev.Event] = []
        self.batches: list[ev.BatchFinished] = []
        self.ended: list[tuple[str, str]] = []
        self.workers: list = []
        controller.event_emitted.connect(self.events.append)
        controller.batches_finished.connect(self.batches.extend)
        controller.worker_created.connect(self.workers.append)
        panel.run_ended.connect(lambda run_dir, status: self.ended.append((run_dir, status)))


def training_children() -> list[psutil.Process]:
    """This test process's children that train (torchrun, its workers, a single child)."""
    out = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "main.py" in " ".join(child.cmdline()) or "torch.distributed.run" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def stop_at_first_batch(controller) -> None:
    """Ask the next run (only the next one) to stop as soon as its first batches arrive (from its worker's
    thread)."""
    def on_worker(worker) -> None:
        controller.worker_created.disconnect(on_worker)
        asked = []

        def stop(_batches) -> None:
            if not asked:
                asked.append(True)
                controller.request_stop()

        worker.batches_finished.connect(stop, Qt.ConnectionType.DirectConnection)

    controller.worker_created.connect(on_worker)


def wait_until_idle(qtbot, controller, action) -> None:
    with qtbot.waitSignal(controller.running_changed, check_params_cb=lambda running: not running,
                          timeout=RUN_TIMEOUT_MS):
        action()


def test_two_processes_stop_from_the_studio_and_resume(qtbot, controller, image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, epochs=3, out=tmp_path / "runs", batch_size=2)
    recipe.data.cache_features = "off"  # every batch runs the backbone, in DistributedDataParallel
    recipe.distributed.processes = 2
    panel = make_panel(qtbot, controller, recipe)
    assert panel.deviceCombo.currentText() == "CPU × 2 processes (gloo)"
    seen = Seen(panel, controller)
    stop_at_first_batch(controller)

    wait_until_idle(qtbot, controller, lambda: qtbot.mouseClick(panel.startButton, Qt.MouseButton.LeftButton))

    assert isinstance(seen.workers[0], ProcessTrainingWorker)
    (run_dir, status), = seen.ended
    assert status == "stopped", panel.runLog.toPlainText()
    assert not training_children()  # torchrun and both ranks have exited
    assert checkpoint_path(run_dir, "last").is_file()
    assert json.loads((Path(run_dir) / SUMMARY_FILE).read_text())["status"] == "stopped"
    started = next(e for e in seen.events if isinstance(e, ev.DistributedStarted))
    assert started.world_size == 2 and "2 processes (gloo)" in panel.deviceLabel.text()
    assert "Stopped in epoch" in panel.runLog.toPlainText() and panel.startButton.isEnabled()
    assert panel.resumable_run == run_dir

    wait_until_idle(qtbot, controller, lambda: qtbot.mouseClick(panel.resumeRunButton, Qt.MouseButton.LeftButton))

    assert seen.ended[1] == (run_dir, "finished") and isinstance(seen.workers[1], ProcessTrainingWorker)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert len(panel.curves.val_acc_curve.getOriginalDataset()[0]) == 3  # the curves as for one device
    assert "Evaluated the best checkpoint" in panel.runLog.toPlainText()
    assert not training_children()


def test_a_killed_child_is_a_failed_run_and_the_studio_stays_up(qtbot, controller, image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, epochs=3, out=tmp_path / "runs", batch_size=2)
    recipe.data.cache_features = "off"
    controller.separate_process = True  # one process, in a child
    panel = make_panel(qtbot, controller, recipe)
    seen = Seen(panel, controller)

    def kill_at_first_batch(worker) -> None:
        def kill(_batches) -> None:
            if worker.process_run.running:
                psutil.Process(worker.process_run.proc.pid).kill()

        worker.batches_finished.connect(kill, Qt.ConnectionType.DirectConnection)

    controller.worker_created.connect(kill_at_first_batch)
    wait_until_idle(qtbot, controller, lambda: qtbot.mouseClick(panel.startButton, Qt.MouseButton.LeftButton))

    (run_dir, status), = seen.ended
    assert status == "failed" and run_dir
    (failed,) = [e for e in seen.events if isinstance(e, ev.RunFailed)]
    assert "killed by signal 9" in failed.error
    assert f"ERROR: {failed.error}" in panel.runLog.toPlainText()
    assert panel.progress.progressLabel.text() == "Failed" and panel.startButton.isEnabled()
    assert not training_children()


def test_bad_input_in_child_processes_is_said_like_in_process(qtbot, controller, tmp_path):
    missing = tmp_path / "no-such-folder"
    recipe = tiny_recipe(missing, out=tmp_path / "runs")
    recipe.distributed.processes = 2
    panel = make_panel(qtbot, controller, recipe)
    seen = Seen(panel, controller)

    wait_until_idle(qtbot, controller, lambda: qtbot.mouseClick(panel.startButton, Qt.MouseButton.LeftButton))

    assert seen.ended == [("", "failed")]
    (failed,) = [e for e in seen.events if isinstance(e, ev.RunFailed)]
    assert str(missing) in failed.error and "Traceback" not in failed.error
    assert not training_children()


# --- the device choice -------------------------------------------------------------------------------------------

def test_the_device_choice_lists_every_gpu_and_every_process_group():
    texts = [o.text for o in device_options(["NVIDIA H200", "NVIDIA H200", "NVIDIA H200"])]
    assert texts == ["Automatic", "CPU", "GPU 0: NVIDIA H200", "GPU 1: NVIDIA H200", "GPU 2: NVIDIA H200",
                     "First 2 GPUs (DistributedDataParallel)", "All 3 GPUs (DistributedDataParallel)"]
    assert [o.text for o in device_options([])] == ["Automatic", "CPU"]


def test_choosing_several_gpus_edits_the_recipe(qtbot, controller, image_folder, monkeypatch):
    monkeypatch.setattr("gui.widgets.device_choice.gpu_names", lambda: ["GPU-A", "GPU-B"])
    panel = make_panel(qtbot, controller, tiny_recipe(image_folder))
    combo: DeviceChoice = panel.deviceCombo
    assert combo.currentText() == "CPU" and combo.toolTip() and combo.objectName() == "deviceCombo"
    combo.activated.emit(combo.findText("All 2 GPUs (DistributedDataParallel)"))
    recipe = panel._document.recipe
    assert (recipe.device, recipe.distributed.processes) == ("cuda", 2)
    assert panel.deviceLabel.text().startswith("Device: 2 processes ×")
    combo.activated.emit(combo.findText("GPU 1: GPU-B"))
    assert (recipe.device, recipe.distributed.processes) == ("cuda:1", 1)
    panel._document.edit(lambda r: (setattr(r, "device", "cuda"), setattr(r.distributed, "processes", 3)))
    assert combo.currentText() == "GPUs × 3 processes (NCCL)" and combo.count() == 6  # as a recipe file may ask
    combo.activated.emit(combo.findText("CPU"))
    assert (recipe.device, recipe.distributed.processes) == ("cpu", 1) and combo.count() == 5
