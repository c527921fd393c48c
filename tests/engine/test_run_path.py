"""One path for a run's data: events declared once and replayable, one vocabulary for events and files, the run
folder rebuilt exactly on resume, the lr preview equal to what a run records, optimizer state carried across a
phase boundary, loader workers that change nothing, paused time that is not training time, TensorBoard as one more
subscriber."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from engine.errors import BadInputError
from engine.planning.plan import plan_run
from engine.recipe import OptimizerConfig, ScheduleConfig
from engine.train import events as ev
from engine.train.checkpoints import FORMAT_VERSION, load_checkpoint, save_checkpoint
from engine.train.metrics import batch_event, epoch_event, epoch_row
from engine.train.narrate import describe, stop_line
from engine.train.runs import checkpoint_path, read_batches, read_metrics
from engine.train.trainer import Trainer, fit, resume
from tests.helpers import tiny_recipe


class Recorder:
    def __init__(self):
        self.events: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def stop_at(control: ev.RunControl, epoch: int, batch: int):
    """A subscriber that asks for a stop after batch `batch` (0-based) of epoch `epoch`."""
    def callback(event: ev.Event) -> None:
        if isinstance(event, ev.BatchFinished) and (event.epoch, event.batch) == (epoch, batch):
            control.request_stop()
    return callback


def test_every_event_is_declared_once_and_crosses_a_process_boundary_intact():
    # A run's events, declared in engine/train/events.py; other runs' events (engine/pretrain/events.py) subclass
    # Event too once imported, which depends on the tests run before this one in the process.
    declared = [cls for cls in ev.Event.__subclasses__() if cls.__module__ == ev.__name__]
    names = [cls.__name__ for cls in declared]
    assert len(names) == len(set(names)) == len(ev.EVENT_TYPES) and set(ev.EVENT_TYPES) == set(names)
    sample = ev.DataPrepared(classes=["a", "b"], train_size=3, val_size=1, skipped=[("x.jpg", "truncated")])
    again = ev.event_from_dict(json.loads(json.dumps(sample.to_dict())))
    assert again == sample and isinstance(again.skipped[0], tuple)



@pytest.mark.parametrize("kind", list(ev.EVENT_TYPES.values()), ids=list(ev.EVENT_TYPES))
def test_every_event_is_built_with_keywords_only(kind):
    """A field added or moved in an event can never shift another field's value at a call site."""
    fields = dataclasses.fields(kind)
    assert fields and all(f.kw_only for f in fields)
    with pytest.raises(TypeError, match="positional"):
        kind(*[None] * len(fields))

def test_metrics_files_replay_as_the_events_they_were_written_from(image_folder, runs_dir):
    rec = Recorder()
    result = fit(tiny_recipe(image_folder, "extract_then_finetune", epochs=2, out=runs_dir), [rec])
    assert result.status == "finished", result.error
    epochs = rec.of(ev.EpochFinished)
    rows = read_metrics(result.run_dir)
    assert len(rows) == len(epochs) == 2
    for event, row in zip(epochs, rows):
        replayed = epoch_event(row, is_best=event.is_best, elapsed_seconds=event.elapsed_seconds)
        assert replayed == event  # every field, every float exactly (repr round-trips)
        assert set(epoch_row(event)) <= set(row)
    batches = rec.of(ev.BatchFinished)
    assert [batch_event(row) for row in read_batches(result.run_dir)] == batches
    summary = result.summary
    assert summary["epochs_done"] == 2 and summary["final_val_acc"] == epochs[-1].val_acc
    best = max((e for e in epochs if e.is_best), key=lambda e: e.epoch)
    assert (summary["best_epoch"], summary["best_val_acc"]) == (best.epoch + 1, best.val_acc)
    assert summary["device_type"] == "cpu"
    started = rec.of(ev.RunStarted)[0]
    assert started.device_type == "cpu"
    assert started.lr_groups == list(dict.fromkeys(group for e in epochs for group in e.lrs))


def test_a_resumed_run_folder_has_each_epoch_and_each_step_once(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "extract_then_finetune", epochs=2, out=runs_dir)
    full = fit(recipe.copy())
    control = ev.RunControl()
    stopped = Trainer(recipe.copy(), [stop_at(control, 1, 1)], control).fit()
    assert stopped.status == "stopped"
    # A session that trained on and died before its next checkpoint leaves rows the checkpoint does not hold.
    for name in ("metrics.csv", "batches.csv"):
        shutil.copy(Path(full.run_dir) / name, Path(stopped.run_dir) / name)
    rec = Recorder()
    resumed = resume(stopped.run_dir, [rec])
    assert resumed.status == "finished", resumed.error
    started = rec.of(ev.RunStarted)[0]
    assert (started.start_epoch, started.start_batch) == (1, 2) and started.resumed
    steps = [row["global_step"] for row in read_batches(resumed.run_dir)]
    assert steps == list(range(1, len(read_batches(full.run_dir)) + 1))
    assert [row["epoch"] for row in read_metrics(resumed.run_dir)] == [1, 2]
    for a, b in zip(read_batches(full.run_dir), read_batches(resumed.run_dir)):
        assert {k: v for k, v in a.items() if k != "images_per_s"} == \
            {k: v for k, v in b.items() if k != "images_per_s"}


@pytest.mark.parametrize("schedule", [
    ScheduleConfig(name="step", step_size=1, gamma=0.5),
    ScheduleConfig(name="cosine", warmup_epochs=0.5, min_lr_ratio=0.1),
    ScheduleConfig(name="onecycle", pct_start=0.3, div_factor=10.0),
    ScheduleConfig(name="plateau", patience=10, factor=0.5),  # the preview assumes the metric keeps improving
], ids=lambda s: s.name)
def test_the_lr_preview_is_what_a_run_records(image_folder, runs_dir, schedule):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=2, out=runs_dir)
    recipe.phases[0].schedule = schedule
    recipe.data.max_train_batches = 3
    rec = Recorder()
    result = fit(recipe, [rec])
    assert result.status == "finished", result.error
    recorded: dict[str, list[float]] = {}
    for b in rec.of(ev.BatchFinished):
        for group, lr in b.lrs.items():
            recorded.setdefault(group, []).append(lr)
    preview = plan_run(recipe, num_classes=3, steps_per_epoch=3).lr_curves  # group → (epoch, lr) per batch
    assert set(preview) == set(recorded)
    for group, rates in recorded.items():
        assert [lr for _, lr in preview[group]] == pytest.approx(rates, rel=1e-9), group
    if schedule.name != "plateau":  # the schedule really moved the rate, so the comparison means something
        assert len({round(r, 12) for r in recorded["head"]}) > 1


def test_optimizer_state_is_carried_across_a_phase_boundary_only_when_asked(image_folder, runs_dir):
    def head_steps_after_first_batch_of_phase_2(carry: bool) -> float:
        recipe = tiny_recipe(image_folder, "extract_then_finetune", epochs=2, out=runs_dir)
        recipe.phases[0].head_fit = "epochs"  # Adam steps on the head in phase 1, whose state may carry over
        recipe.phases[1].carry_optimizer_state = carry
        recipe.phases[1].optimizer = OptimizerConfig(name="adam")
        recipe.data.max_train_batches = 2
        control = ev.RunControl()
        result = Trainer(recipe, [stop_at(control, 1, 0)], control).fit()
        assert result.status == "stopped"
        state = load_checkpoint(checkpoint_path(result.run_dir, "last"))["optimizer"]["state"]
        return max(float(s["step"]) for s in state.values())  # the head's Adam step count is the largest

    assert head_steps_after_first_batch_of_phase_2(carry=True) == 3.0  # 2 steps in phase 1, then 1
    assert head_steps_after_first_batch_of_phase_2(carry=False) == 1.0


def test_resume_with_loader_workers_equals_a_run_without_them(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=2, out=runs_dir)
    recipe.data.max_train_batches = 3
    recipe.data.ram_cache = "off"
    baseline = fit(recipe.copy())
    with_workers = recipe.copy()
    with_workers.data.num_workers = 2
    control = ev.RunControl()
    stopped = Trainer(with_workers, [stop_at(control, 0, 1)], control).fit()
    resumed = resume(stopped.run_dir)
    assert resumed.status == "finished", resumed.error
    for a, b in zip(read_metrics(baseline.run_dir), read_metrics(resumed.run_dir)):
        assert (a["train_loss"], a["val_loss"], a["val_acc"]) == (b["train_loss"], b["val_loss"], b["val_acc"])
    ours = load_checkpoint(checkpoint_path(resumed.run_dir, "last"))["model"]
    theirs = load_checkpoint(checkpoint_path(baseline.run_dir, "last"))["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


class LongPause(ev.RunControl):
    """A control whose first pause lasts `seconds` on a clock the test moves forward, instantly: the run sees a
    pause of exactly that length, whatever the load on the machine."""

    def __init__(self, clock: list[float], seconds: float):
        super().__init__()
        self._clock, self._seconds, self.paused_once = clock, seconds, False

    def wait_while_paused(self) -> float:
        if self.paused_once:
            return 0.0
        self.paused_once = True
        self._clock[0] += self._seconds
        return self._seconds


def test_paused_time_is_not_training_time(image_folder, runs_dir, monkeypatch):
    offset = [0.0]
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() + offset[0])
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir)
    recipe.data.cache_features = "off"
    control = LongPause(offset, 1000.0)
    result = Trainer(recipe, [], control).fit()
    assert result.status == "finished", result.error
    assert control.paused_once
    (row,) = read_metrics(result.run_dir)
    assert row["seconds"] < 1000 and result.summary["wall_seconds"] < 1000
    assert row["images_per_s"] > row["train_images"] / 1000


def test_the_stop_is_worded_once_for_every_view(image_folder, runs_dir):
    control = ev.RunControl()
    rec = Recorder()
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=1, out=runs_dir)
    stopped = Trainer(recipe, [stop_at(control, 0, 0), rec], control).fit()
    (event,) = rec.of(ev.RunStopped)
    assert (event.epoch, event.batch) == (0, 1)  # after the first batch
    assert stop_line(event) == "Stopped in epoch 1 after 1 batch"
    assert describe(event)[0].startswith(stop_line(event))
    assert load_checkpoint(checkpoint_path(stopped.run_dir, "last"))["batch"] == event.batch


def test_a_checkpoint_from_a_newer_thaw_is_refused_with_a_reason(tmp_path):
    path = save_checkpoint(tmp_path / "future.pt", {"model": {}})
    state = torch.load(path, weights_only=True)
    state["format_version"] = FORMAT_VERSION + 1
    torch.save(state, path)
    with pytest.raises(BadInputError, match="newer Thaw"):
        load_checkpoint(path)


def test_tensorboard_is_one_more_subscriber(image_folder, runs_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=runs_dir)
    recipe.tensorboard = True
    result = fit(recipe)
    assert result.status == "finished", result.error
    logs = EventAccumulator(str(Path(result.run_dir) / "tensorboard"))
    logs.Reload()
    val = [s.value for s in logs.Scalars("epoch/val_acc")]
    assert val == pytest.approx([row["val_acc"] for row in read_metrics(result.run_dir)])
    assert len(logs.Scalars("batch/train_loss")) == len(read_batches(result.run_dir))


def test_a_recipe_written_before_a_field_existed_still_loads_and_events_are_frozen():
    recipe = tiny_recipe("unused")
    data = recipe.to_dict()
    del data["tensorboard"]
    assert type(recipe).from_dict(data).tensorboard is False
    event = ev.RunStopped(run_dir="r", checkpoint="c", epoch=0, batch=1, elapsed_seconds=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.batch = 3  # type: ignore[misc]


def test_a_full_run_folder_fails_the_run_with_the_reason(image_folder, runs_dir, monkeypatch):
    """The run folder is a critical subscriber: when it cannot write, the run stops and says why."""
    from engine.train import run_folder

    original = run_folder.CsvLog.append

    def full_disk(self, rows):
        if self.path.name == "metrics.csv" and rows:
            raise OSError(28, "No space left on device")
        return original(self, rows)

    monkeypatch.setattr(run_folder.CsvLog, "append", full_disk)
    result = fit(tiny_recipe(image_folder, epochs=2, out=runs_dir))
    assert result.status == "failed" and "No space left on device" in result.error
    shutil.rmtree(result.run_dir)
