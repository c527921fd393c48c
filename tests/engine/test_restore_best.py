"""`restore_best` (issue 20): a phase that ends worse than the run's best epoch hands on the best epoch's weights,
says so, and a resume across it is exact. Judged by the early-stopping metric in either direction; a tie keeps the
later weights; a phase without it, or one that ends at its best, changes nothing."""

from __future__ import annotations

import functools
import io
import shutil
from pathlib import Path

import pytest
import torch

from engine.cli.console import ConsoleReporter
from engine.recipe import EarlyStoppingConfig, OptimizerConfig, PhaseConfig, Recipe, RecipeError, ScheduleConfig
from engine.train import events as ev
from engine.train.checkpoints import load_checkpoint
from engine.train.runs import RunRecord, checkpoint_path
from engine.train.stopping import EarlyStopping
from engine.train.trainer import Trainer, fit
from tests.helpers import tiny_recipe as _tiny_recipe

tiny_recipe = functools.partial(_tiny_recipe, head_fit="converge")


def collapsing_recipe(data, out, restore: bool, metric: str = "val_acc", third: bool = False) -> Recipe:
    """Extract-then-fine-tune whose fine-tuning phase trains every layer with Adam at an absurd rate (0.5): it ends
    far below the head (100 % of the validation images against 33 %). `third`: a last head-only phase after it,
    trained in epochs, so that a run goes on from whatever the collapsing phase handed on."""
    recipe = _tiny_recipe(data, "extract_then_finetune", epochs=4, out=out)
    head, tune = recipe.phases
    head.epochs, head.lr = 2, 0.2  # trained in epochs (no L-BFGS fit: cheaper), fast enough to learn the task
    tune.epochs, tune.lr_preset, tune.lr, tune.bn_modes = 2, "single", 0.5, {}
    tune.optimizer, tune.schedule = OptimizerConfig(name="adam"), ScheduleConfig()
    tune.restore_best = restore
    if third:
        recipe.phases.append(PhaseConfig(name="head_again", epochs=2, trainable=["head"], lr=1e-3, head_fit="epochs"))
    recipe.early_stopping = EarlyStoppingConfig(metric=metric)
    return recipe.validate()


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def restored_run(image_folder, tmp_path_factory):
    events: list[ev.Event] = []
    printed = io.StringIO()
    recipe = collapsing_recipe(image_folder, tmp_path_factory.mktemp("restored"), restore=True)
    result = fit(recipe, [events.append, ConsoleReporter(quiet=True, stream=printed)])
    assert result.status == "finished", result.error
    return result, events, printed.getvalue()


def test_a_phase_that_ends_worse_goes_on_with_the_best_epochs_weights(restored_run):
    result, events, _ = restored_run
    epochs = [e for e in events if isinstance(e, ev.EpochFinished)]
    best = max(epochs, key=lambda e: (e.val_acc, -e.epoch))
    assert epochs[-1].val_acc < best.val_acc, "the collapse this test needs did not happen"
    (restored,) = [e for e in events if isinstance(e, ev.BestRestored)]
    assert (restored.phase_index, restored.epoch, restored.best_epoch) == (1, epochs[-1].epoch, best.epoch + 1)
    assert (restored.val_acc_last, restored.val_acc_best) == (epochs[-1].val_acc, best.val_acc)
    assert restored.val_loss_best == best.val_loss and restored.train_acc_best == best.train_acc
    run = result.run_dir
    # last.pt (what a resume, an export or an analysis of "the last weights" reads) holds the best epoch's weights
    assert same_weights(weights(checkpoint_path(run, "last")), weights(checkpoint_path(run, "best")))
    finished = next(e for e in events if isinstance(e, ev.RunFinished))
    assert finished.restored_epoch == best.epoch + 1 and finished.final_val_acc == best.val_acc
    # the freeze was verified over what the phase trained, before the other weights came in, and said once
    verified = [e for e in events if isinstance(e, ev.FreezeVerified) and e.phase_index == 1]
    assert len(verified) == 1 and not verified[0].moved
    assert events.index(verified[0]) < events.index(restored)


def test_the_restore_is_said_in_the_log_the_summary_and_the_runs_table(restored_run):
    result, events, printed = restored_run
    restored = next(e for e in events if isinstance(e, ev.BestRestored))
    line = next(line for line in printed.splitlines() if "restore_best" in line and line.startswith("Phase 2"))
    assert f"worse than epoch {restored.best_epoch}" in line and "validation accuracy" in line
    finish = next(line for line in printed.splitlines() if line.startswith("Finished"))
    assert f"ends with epoch {restored.best_epoch}'s weights" in finish
    summary = result.summary
    assert summary["final_val_acc"] == restored.val_acc_best  # the model the run ends with
    assert summary["last_epoch_val_acc"] == restored.val_acc_last and summary["restored_epoch"] == restored.best_epoch
    entry = summary["phases"][1]["restored"]
    assert (entry["epoch"], entry["after_epoch"], entry["val_acc"]) == (restored.best_epoch, restored.epoch + 1,
                                                                          restored.val_acc_best)
    tune = summary["phase_results"][1]
    assert tune["final_val_acc"] == restored.val_acc_last  # the last epoch's figure stays, beside what was kept
    assert (tune["kept_epoch"], tune["kept_val_acc"]) == (restored.best_epoch, restored.val_acc_best)
    assert "kept_epoch" not in summary["phase_results"][0]
    record = RunRecord.load(result.run_dir)
    assert record.phase_results[1]["kept_epoch"] == restored.best_epoch


def test_without_restore_best_the_phase_hands_on_its_last_weights(image_folder, tmp_path):
    events: list[ev.Event] = []
    result = fit(collapsing_recipe(image_folder, tmp_path, restore=False), [events.append])
    assert result.status == "finished", result.error
    assert not [e for e in events if isinstance(e, ev.BestRestored)]
    run = result.run_dir
    assert not same_weights(weights(checkpoint_path(run, "last")), weights(checkpoint_path(run, "best")))
    last_epoch = [e for e in events if isinstance(e, ev.EpochFinished)][-1]
    assert result.summary["final_val_acc"] == last_epoch.val_acc and "restored_epoch" not in result.summary
    assert next(e for e in events if isinstance(e, ev.RunFinished)).restored_epoch is None


def test_a_phase_that_ties_the_best_keeps_its_own_weights(image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, "extract_then_finetune", epochs=3, out=tmp_path)
    assert recipe.phases[1].restore_best  # the preset's
    events: list[ev.Event] = []
    trainer = Trainer(recipe, [events.append])
    result = trainer.fit()
    epochs = [e for e in events if isinstance(e, ev.EpochFinished)]
    assert result.status == "finished", result.error
    # the fine-tuning ties the fitted head's validation accuracy without beating it: not worse, so not restored
    assert epochs[-1].val_acc == max(e.val_acc for e in epochs) and not epochs[-1].is_best, [e.val_acc for e in epochs]
    assert not [e for e in events if isinstance(e, ev.BestRestored)]
    assert not same_weights(weights(checkpoint_path(result.run_dir, "last")),
                            weights(checkpoint_path(result.run_dir, "best")))
    final = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    assert same_weights(final, weights(checkpoint_path(result.run_dir, "last")))


def test_a_resume_across_the_restore_continues_exactly(image_folder, tmp_path):
    """The run folder as a kill right after the restored checkpoint leaves it, resumed: the run goes on from the
    restored weights with no optimizer moments, as the run that was never interrupted."""
    events: list[ev.Event] = []
    snapshot = tmp_path / "killed-here"

    def copy_after_the_restore(event) -> None:  # the checkpoint that ends the collapsing phase
        if isinstance(event, ev.CheckpointSaved) and isinstance(events[-2], ev.BestRestored):
            shutil.copytree(Path(event.path).parents[1], snapshot)

    whole = fit(collapsing_recipe(image_folder, tmp_path / "whole", restore=True, third=True),
                [events.append, copy_after_the_restore])
    assert whole.status == "finished", whole.error
    assert [e for e in events if isinstance(e, ev.BestRestored)] and snapshot.is_dir()
    restored = next(e for e in events if isinstance(e, ev.BestRestored))
    kept = load_checkpoint(checkpoint_path(snapshot, "last"))
    assert kept["epoch"] == restored.epoch + 1 and kept["optimizer"]["state"] == {}
    assert any(e.phase_index == 2 for e in events if isinstance(e, ev.EpochFinished))  # the run went on after it
    resumed = Trainer.from_run_dir(snapshot).fit()
    assert resumed.status == "finished", resumed.error
    assert same_weights(weights(checkpoint_path(snapshot, "last")), weights(checkpoint_path(whole.run_dir, "last")))


def test_the_loss_direction_decides_when_early_stopping_watches_the_loss(image_folder, tmp_path):
    events: list[ev.Event] = []
    result = fit(collapsing_recipe(image_folder, tmp_path, restore=True, metric="val_loss"), [events.append])
    assert result.status == "finished", result.error
    epochs = [e for e in events if isinstance(e, ev.EpochFinished)]
    lowest = min(epochs, key=lambda e: (e.val_loss, e.epoch))
    assert epochs[-1].val_loss > lowest.val_loss, "the collapse this test needs did not happen"
    (restored,) = [e for e in events if isinstance(e, ev.BestRestored)]
    assert restored.metric == "val_loss" and restored.best_epoch == lowest.epoch + 1
    assert restored.val_loss_best == lowest.val_loss
    assert same_weights(weights(checkpoint_path(result.run_dir, "last")),
                        weights(checkpoint_path(result.run_dir, "best")))


@pytest.mark.parametrize(("metric", "scores", "worse"), [
    ("val_acc", [0.5, 0.7, 0.6], True),
    ("val_acc", [0.5, 0.7, 0.7], False),  # a tie keeps the later weights
    ("val_acc", [0.5, 0.6, 0.7], False),
    ("val_loss", [1.0, 0.5, 0.6], True),  # a higher loss is worse
    ("val_loss", [1.0, 0.5, 0.4], False),
    ("val_loss", [1.0, 0.5, 0.5], False),
])
def test_worse_than_the_best_in_each_direction(metric, scores, worse):
    stopping = EarlyStopping(EarlyStoppingConfig(metric=metric, min_delta=0.05))
    for epoch, score in enumerate(scores):
        stopping.update(epoch, val_loss=score, val_acc=score)
    assert stopping.last_is_worse() is worse
    copy = EarlyStopping(EarlyStoppingConfig(metric=metric))
    copy.load_state_dict(stopping.state_dict())  # a resumed run judges the same
    assert copy.last_is_worse() is worse


def test_the_presets_restore_every_phase_after_a_fitted_head_and_nothing_else():
    from engine.planning.presets import strategy_phases

    for strategy in ("gradual_unfreezing", "extract_then_finetune"):
        head, *after = strategy_phases(strategy)
        assert not head.restore_best and after and all(p.restore_best for p in after), strategy
    for strategy in ("fine_tune_all", "feature_extraction", "lesson_feature_extraction", "from_scratch"):
        assert not any(p.restore_best for p in strategy_phases(strategy)), strategy


def test_a_restore_best_that_is_not_true_or_false_is_refused_by_name(image_folder):
    data = tiny_recipe(image_folder).to_dict()
    data["phases"][0]["restore_best"] = "yes"
    with pytest.raises(RecipeError, match=r"phases\[0\]\.restore_best.*true or false"):
        Recipe.from_dict(data)
