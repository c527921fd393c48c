"""The progress bar and its ETA weigh each epoch by what it costs when an estimate measured the run: a phase that
trains every layer counts for more than the head's (issue 28: the ETA was 3× off across phases)."""

from __future__ import annotations

import pytest

from engine.train import events as ev
from engine.train.estimate import PhaseCost, RunEstimate
from gui.widgets.run_progress import PROGRESS_STEPS, RunProgress, epoch_costs
from tests.helpers import jump_clocks


def estimate(*phases: tuple[str, int, float, float]) -> RunEstimate:
    """(kind, epochs, seconds per epoch, feature pass seconds) per phase."""
    return RunEstimate("run", "CPU", 3, 30, 9, 1.0, 0.0, 0, phases=[
        PhaseCost(i, f"p{i}", kind, epochs, 5, seconds, 0.0, 0.0, features, 3)
        for i, (kind, epochs, seconds, features) in enumerate(phases)])


def test_each_epoch_costs_what_the_estimate_measured_for_its_phase():
    measured = estimate(("fitted head", 1, 2.0, 8.0), ("images", 2, 10.0, 0.0), ("images", 3, 20.0, 0.0))
    assert epoch_costs(measured, [0, 1, 3], 6) == [10.0, 10.0, 10.0, 20.0, 20.0, 20.0]  # the fit and its features
    assert epoch_costs(measured, [0, 2, 4], 7) is None  # another count of epochs: not this run's estimate
    assert epoch_costs(None, [0, 1, 3], 6) is None


def batch(epoch: int, batch: int, batches: int = 10) -> ev.BatchFinished:
    return ev.BatchFinished(epoch=epoch, batch=batch, batches=batches, global_step=1, train_loss=1.0, train_acc=0.5,
                            lrs={"all": 1e-3}, images_per_s=100.0)


@pytest.mark.parametrize(("costs", "fraction", "eta"), [
    ([10.0, 10.0, 10.0, 20.0, 20.0, 20.0], 40 / 90, "0:50"),  # 40 s for 40 of 90: 50 s left
    (None, 3.5 / 6, "0:29"),  # every epoch the same: 40 s for 3.5 of 6 epochs
])
def test_the_progress_and_the_eta_weigh_the_epochs_by_their_cost(qtbot, monkeypatch, costs, fraction, eta):
    progress = RunProgress()
    qtbot.addWidget(progress)
    progress.start(total_epochs=6, start_epoch=0, costs=costs)
    jump_clocks(monkeypatch, 40.0)
    progress.show_batch(batch(3, 4))  # half of the fourth epoch, the first of the costly phase
    progress._redraw.flush()
    assert progress.trainProgress.value() == round(fraction * PROGRESS_STEPS)
    assert progress.progressLabel.text().endswith(f"ETA {eta}"), progress.progressLabel.text()


def test_a_resumed_session_counts_from_the_cost_already_done(qtbot, monkeypatch):
    progress = RunProgress()
    qtbot.addWidget(progress)
    progress.start(total_epochs=4, start_epoch=2, costs=[1.0, 1.0, 4.0, 4.0])
    assert progress.trainProgress.value() == round(2 / 10 * PROGRESS_STEPS)
    jump_clocks(monkeypatch, 20.0)
    progress.show_batch(batch(2, 4))  # half of an epoch that costs 4: 2 of the 8 left done in 20 s
    progress._redraw.flush()
    assert progress.progressLabel.text().endswith("ETA 1:00"), progress.progressLabel.text()


def run_started(resumed: bool) -> ev.RunStarted:
    return ev.RunStarted(run_dir="", recipe={}, name="run", strategy="gradual_unfreezing", arch="tiny_resnet",
                         weights="none", device="CPU", device_type="cpu", precision="fp32", total_epochs=6,
                         phase_start_epochs=[0, 1, 3], phase_names=["head", "head+layer4", "all"], lr_groups=["all"],
                         class_names=["a", "b"], train_size=30, val_size=9, preprocessing={}, resumed=resumed,
                         start_epoch=0, start_batch=0, start_global_step=0, elapsed_seconds=0.0)


@pytest.mark.parametrize("resumed", [False, True])
def test_the_training_tab_weighs_a_new_run_by_its_estimate_not_a_resumed_one(qtbot, image_folder, resumed):
    from gui.document import RecipeDocument
    from gui.panels.training_panel import TrainingPanel
    from gui.workers.training import TrainingController
    from tests.helpers import tiny_recipe

    controller = TrainingController()
    panel = TrainingPanel(RecipeDocument(tiny_recipe(image_folder, "gradual_unfreezing", epochs=6)), controller)
    qtbot.addWidget(panel)
    panel.costEstimate.estimate = estimate(("fitted head", 1, 2.0, 8.0), ("images", 2, 10.0, 0.0),
                                           ("images", 3, 20.0, 0.0))
    panel._on_event(run_started(resumed))
    panel.progress.show_batch(batch(3, 4))
    panel.progress._redraw.flush()
    weighted = round(40 / 90 * PROGRESS_STEPS)
    assert (panel.progress.trainProgress.value() == weighted) is not resumed
    controller.stop_and_wait()
