"""Nothing silent, nothing lost, at the level of a run: non-finite weights, gradients and metrics stop it with a
reason and keep the last finite checkpoint as both last and best; a full disk fails it cleanly; one process per
run folder."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine.errors import RunLockedError
from engine.train import events as ev
from engine.train.checkpoints import load_checkpoint, nonfinite_tensors
from engine.train.run_lock import RunLock
from engine.train.runs import checkpoint_path, read_metrics
from engine.train.trainer import Trainer
from tests.helpers import tiny_recipe

ROOT = Path(__file__).parents[2]


def poisoned_run(image_folder, runs_dir, when, poison):
    """A 3-epoch feature-extraction run whose model `poison(trainer)` spoils when `when(event)` is true."""
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=3, out=runs_dir)
    recipe.data.cache_features = "off"  # the poison must reach the whole model, not a cached feature set
    holder: dict = {}

    def subscriber(event: ev.Event) -> None:
        if when(event):
            poison(holder["trainer"])

    trainer = Trainer(recipe, [subscriber])
    holder["trainer"] = trainer
    return trainer.fit()


def assert_kept_epoch_one(result) -> None:
    """The run failed, and epoch 1's finite checkpoint is both last and best."""
    assert result.status == "failed"
    summary = json.loads((Path(result.run_dir) / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == result.error
    for kind in ("last", "best"):
        kept = load_checkpoint(checkpoint_path(result.run_dir, kind))
        assert kept["epoch"] == 1 and nonfinite_tensors(kept["model"]) == [], kind
    assert list(Path(result.run_dir).rglob("*.tmp")) == []


def test_nonfinite_weights_are_never_saved_and_stop_the_run(image_folder, runs_dir):
    def nan_weights(trainer):
        with torch.no_grad():
            trainer.model.fc.weight[0, 0] = float("inf")

    # After epoch 2's metrics and before its checkpoint: the write must refuse the state.
    result = poisoned_run(image_folder, runs_dir, lambda e: isinstance(e, ev.EpochFinished) and e.epoch == 1,
                          nan_weights)
    assert_kept_epoch_one(result)
    assert "non-finite" in result.error and "fc.weight" in result.error


def test_a_nonfinite_gradient_stops_the_run_before_the_step(image_folder, runs_dir):
    def nan_gradients(trainer):
        trainer.model.fc.weight.register_hook(lambda grad: grad * float("nan"))

    result = poisoned_run(image_folder, runs_dir, lambda e: isinstance(e, ev.CheckpointSaved) and e.epoch == 1,
                          nan_gradients)
    assert_kept_epoch_one(result)
    assert result.error.startswith("the gradient of fc.weight became non-finite at epoch 2, batch 1")


def test_a_nan_validation_epoch_is_no_record(image_folder, runs_dir):
    batches = {}

    def spoil_after_the_last_batch(trainer):  # the training loss of epoch 2 is finite; its validation is not
        with torch.no_grad():
            trainer.model.fc.bias.fill_(float("nan"))

    def when(event: ev.Event) -> bool:
        if isinstance(event, ev.EpochStarted):
            batches[event.epoch] = event.batches
        return isinstance(event, ev.BatchFinished) and event.epoch == 1 and event.batch + 1 == batches[1]

    result = poisoned_run(image_folder, runs_dir, when, spoil_after_the_last_batch)
    assert_kept_epoch_one(result)
    assert result.error.startswith("the validation loss became nan in epoch 2")
    assert [row["epoch"] for row in read_metrics(result.run_dir)] == [1]  # the NaN epoch is not recorded
    assert json.loads((Path(result.run_dir) / "summary.json").read_text())["best_epoch"] == 1


def test_a_full_disk_fails_the_run_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(image_folder, tmp_path):
    """The disk fills up after epoch 1's checkpoint: a file-size limit in a child process (no root needed)."""
    runs = tmp_path / "runs"
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=3, out=runs)
    recipe.save(tmp_path / "recipe.json")
    child = textwrap.dedent(f"""
        import json, os, resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from engine.recipe import Recipe
        from engine.train import events as ev
        from engine.train.trainer import Trainer

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing

        def fill_the_disk(event):
            if isinstance(event, ev.CheckpointSaved) and event.epoch == 1:
                # no file may grow past half a checkpoint: the next checkpoint's write fails
                limit = os.path.getsize(event.path) // 2
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

        result = Trainer(Recipe.load({str(tmp_path / "recipe.json")!r}), [fill_the_disk]).fit()
        print(json.dumps({{"status": result.status, "error": result.error, "run_dir": result.run_dir}}))
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "failed" and "File too large" in result["error"]
    assert "previous checkpoint is kept" in result["error"]
    run_dir = Path(result["run_dir"])
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    for kind in ("last", "best"):
        assert load_checkpoint(checkpoint_path(run_dir, kind))["epoch"] == 1
    assert list(run_dir.rglob("*.tmp")) == []


def test_a_run_folder_is_trained_by_one_process_at_a_time(image_folder, runs_dir):
    control = ev.RunControl()
    stop = lambda e: isinstance(e, ev.EpochFinished) and control.request_stop()  # noqa: E731
    stopped = Trainer(tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=runs_dir), [stop],
                      control).fit()
    assert stopped.status == "stopped"
    script = f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from engine.train.run_lock import RunLock; " \
             f"RunLock({stopped.run_dir!r}).acquire(); print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"already running \\(pid {holder.pid}\\)"):
            Trainer.from_run_dir(stopped.run_dir).fit()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    resumed = Trainer.from_run_dir(stopped.run_dir).fit()  # the other process is gone: the run continues
    assert resumed.status == "finished", resumed.error
    with RunLock(resumed.run_dir):  # and the finished run released its lock
        pass
