"""Resume promises checked where a fresh start would differ: a model with dropout (it reads the global RNG every
batch) stopped mid-epoch, and schedules stopped where a freshly built scheduler would set another rate.

"Bit-identical" is meant literally: weights, optimizer and scheduler state, every metrics.csv value but the
timings, and the loss and learning rates of every batch are compared with ==, not approx. Only the public API is
used (Trainer(...).fit(), Trainer.from_run_dir(...), RunControl, events as subscribers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.recipe import ScheduleConfig
from engine.train import events as ev
from engine.train.checkpoints import load_checkpoint
from engine.train.runs import checkpoint_path, read_metrics
from engine.train.trainer import Trainer
from tests.helpers import tiny_recipe

TIMINGS = {"seconds", "images_per_s", "data_wait_share"}


def assert_identical(a, b, where: str = "") -> None:
    """Tensors, dicts, lists and plain values equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def batches(events) -> dict[tuple[int, int], tuple[float, float, dict]]:
    return {(e.epoch, e.batch): (e.train_loss, e.train_acc, e.lrs) for e in events if isinstance(e, ev.BatchFinished)}


def run_uninterrupted(recipe, out: Path):
    recipe = recipe.copy()
    recipe.output_dir = str(out)
    events: list[ev.Event] = []
    result = Trainer(recipe, [events.append]).fit()
    assert result.status == "finished", result.error
    return result, events


def after_batch(epoch: int, batch: int):
    return lambda e: isinstance(e, ev.BatchFinished) and (e.epoch, e.batch) == (epoch, batch)


def run_stopped_and_resumed(recipe, out: Path, stop_after, resume_at: tuple[int, int]):
    """Stop when `stop_after(event)` holds (the trainer stops before the next batch), check that the checkpoint
    resumes at `resume_at` (epoch, batch), then resume to the end."""
    recipe = recipe.copy()
    recipe.output_dir = str(out)
    control = ev.RunControl()

    def stop(event):
        if stop_after(event):
            control.request_stop()

    before: list[ev.Event] = []
    stopped = Trainer(recipe, [stop, before.append], control).fit()
    assert stopped.status == "stopped", stopped.error
    ckpt = load_checkpoint(checkpoint_path(stopped.run_dir, "last"))
    assert (ckpt["epoch"], ckpt["batch"]) == resume_at
    after: list[ev.Event] = []
    resumed = Trainer.from_run_dir(stopped.run_dir, [after.append]).fit()
    assert resumed.status == "finished", resumed.error
    assert [e.resumed for e in after if isinstance(e, ev.RunStarted)] == [True]
    return resumed, before, after


def assert_same_run(full, full_events, resumed, before, after) -> None:
    a = load_checkpoint(checkpoint_path(full.run_dir, "last"))
    b = load_checkpoint(checkpoint_path(resumed.run_dir, "last"))
    for key in ("model", "optimizer", "scheduler", "epoch", "batch", "phase", "global_step", "stopping"):
        assert_identical(a[key], b[key], key)
    rows_a, rows_b = read_metrics(full.run_dir), read_metrics(resumed.run_dir)
    assert len(rows_a) == len(rows_b) == full.summary["epochs_done"]
    for ra, rb in zip(rows_a, rows_b):
        assert {k: v for k, v in ra.items() if k not in TIMINGS} == {k: v for k, v in rb.items() if k not in TIMINGS}
    # Every batch the resumed session ran has exactly the loss, running accuracy and rates of the full run's batch.
    full_batches, resumed_batches = batches(full_events), batches(after)
    assert resumed_batches and set(batches(before)) | set(resumed_batches) == set(full_batches)
    for key, value in resumed_batches.items():
        assert value == full_batches[key], f"epoch {key[0]} batch {key[1]}"
    epoch_lrs = {e.epoch: e.lrs for e in full_events if isinstance(e, ev.EpochFinished)}
    resumed_lrs = {e.epoch: e.lrs for e in after if isinstance(e, ev.EpochFinished)}
    assert resumed_lrs and resumed_lrs == {epoch: epoch_lrs[epoch] for epoch in resumed_lrs}
    assert resumed.summary["best_epoch"] == full.summary["best_epoch"]
    assert resumed.summary["best_val_acc"] == full.summary["best_val_acc"]


# --- 3. dropout reads the global RNG: a mid-epoch resume must restore it (and the DataLoader must not draw from
#        it: it has a generator of its own, engine/train/setup.py) -------------------------------------------------
def test_mid_epoch_resume_of_a_model_with_dropout_is_bit_identical(image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=2, arch="mobilenet_v3_small")
    # The classifier trains: Linear → Hardswish → Dropout(0.2) → the new head; the dropout mask of every batch
    # comes from the global RNG. (Not head-only, so no cached features: the whole model runs each batch.)
    recipe.phases[0].trainable = ["neck", "head"]
    full, full_events = run_uninterrupted(recipe, tmp_path / "full")
    assert not any(isinstance(e, ev.FeaturesCached) for e in full_events)
    resumed, before, after = run_stopped_and_resumed(recipe, tmp_path / "resumed", after_batch(0, 1), (0, 2))
    assert_same_run(full, full_events, resumed, before, after)


def test_mid_epoch_resume_of_a_dropout_head_on_cached_features_is_bit_identical(image_folder, tmp_path):
    """The same promise where no DataLoader is involved: a new head Dropout(0.3) → Linear trains on the cached
    features of the frozen MobileNet, and its dropout masks come from the global RNG."""
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=2, arch="mobilenet_v3_small")
    recipe.model.head.dropout = 0.3
    full, full_events = run_uninterrupted(recipe, tmp_path / "full")
    assert [e.phase_index for e in full_events if isinstance(e, ev.FeaturesCached)] == [0]
    resumed, before, after = run_stopped_and_resumed(recipe, tmp_path / "resumed", after_batch(0, 1), (0, 2))
    assert_same_run(full, full_events, resumed, before, after)


# --- 4. schedules: a resumed scheduler continues where it stopped ------------------------------------------------
SCHEDULES = {
    "cosine_warmup": ScheduleConfig(name="cosine", warmup_epochs=1.5, min_lr_ratio=0.05),  # stop inside warm-up
    "onecycle": ScheduleConfig(name="onecycle", pct_start=0.3, div_factor=10.0),
    "step_inside_period": ScheduleConfig(name="step", step_size=2, gamma=0.5),  # stop in the middle of a period
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_mid_phase_resume_continues_the_schedule(image_folder, tmp_path, name):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=3)
    recipe.data.max_train_batches = 2  # 6 steps: the stop after step 3 is inside the cosine warm-up (3 steps)
    # Two groups (middle, head), each with its own rate curve; few trainable tensors keep the checkpoints small.
    recipe.phases[0].trainable = ["layer4.1.bn2", "head"]
    recipe.phases[0].schedule = SCHEDULES[name]
    full, full_events = run_uninterrupted(recipe, tmp_path / "full")
    lrs = [value[2]["head"] for _, value in sorted(batches(full_events).items())]
    assert len(set(lrs)) > 1, "the schedule never changed the rate: the test would prove nothing"
    resumed, before, after = run_stopped_and_resumed(recipe, tmp_path / "resumed", after_batch(1, 0), (1, 1))
    assert_same_run(full, full_events, resumed, before, after)
    ckpt = load_checkpoint(checkpoint_path(resumed.run_dir, "last"))
    assert ckpt["scheduler"]["last_epoch"] == (6 if SCHEDULES[name].name != "step" else 3)


def test_resume_at_an_epoch_boundary_inside_a_step_period(image_folder, tmp_path):
    """Stopped right after epoch 1 of a 2-epoch StepLR period: a fresh scheduler would decay one epoch late."""
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=3)
    recipe.phases[0].schedule = ScheduleConfig(name="step", step_size=2, gamma=0.5)
    full, full_events = run_uninterrupted(recipe, tmp_path / "full")
    assert [row["lr_all"] for row in read_metrics(full.run_dir)] == [1e-3, 1e-3, 5e-4]
    stop_after = lambda e: isinstance(e, ev.EpochFinished) and e.epoch == 0  # noqa: E731
    resumed, before, after = run_stopped_and_resumed(recipe, tmp_path / "resumed", stop_after, (1, 0))
    assert [row["lr_all"] for row in read_metrics(resumed.run_dir)] == [1e-3, 1e-3, 5e-4]
    assert_same_run(full, full_events, resumed, before, after)
