"""The best epoch and early stopping follow the monitored metric in its own direction — val_acc up, val_loss
down — in the rule itself (engine/train/stopping.py), in a plateau schedule that reads it, and in a real run of every
kind of phase: best.pt holds the best epoch by that metric as metrics.csv records it, and the run stops when the
patience has run out, not an epoch sooner or later."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from engine.recipe import EarlyStoppingConfig, ScheduleConfig
from engine.train.checkpoints import load_checkpoint
from engine.train.runs import checkpoint_path, read_metrics
from engine.train.stopping import EarlyStopping
from engine.train.trainer import fit
from tests.helpers import make_image_folder, tiny_recipe

LOSSES = [1.0, 0.8, 0.9, 0.7, 0.75, 0.76, 0.5]
ACCS = [0.5, 0.7, 0.6, 0.8, 0.8, 0.79, 0.9]


def decisions(metric: str, losses: list[float], accs: list[float], patience: int = 0, min_delta: float = 0.0,
              restart_at: int | None = None) -> tuple[list[bool], int | None]:
    """(is each epoch a best, the epoch after which patience ran out); `restart_at`: the rule rebuilt from its
    state_dict before that epoch, as a resumed run rebuilds it from a checkpoint."""
    rule = EarlyStopping(EarlyStoppingConfig(metric=metric, patience=patience, min_delta=min_delta))
    best, stopped = [], None
    for epoch, (loss, acc) in enumerate(zip(losses, accs)):
        if epoch == restart_at:
            state = rule.state_dict()
            rule = EarlyStopping(EarlyStoppingConfig(metric=metric, patience=patience, min_delta=min_delta))
            rule.load_state_dict(state)
        best.append(rule.update(epoch, loss, acc))
        if rule.should_stop:
            stopped = epoch + 1
            break
    return best, stopped


@pytest.mark.parametrize("restart_at", [None, 3])
def test_val_loss_is_better_when_lower_and_val_acc_when_higher(restart_at):
    assert EarlyStopping(EarlyStoppingConfig(metric="val_loss")).mode == "min"
    assert EarlyStopping(EarlyStoppingConfig(metric="val_acc")).mode == "max"
    best, stopped = decisions("val_loss", LOSSES, ACCS, restart_at=restart_at)
    assert best == [True, True, False, True, False, False, True] and stopped is None
    best, stopped = decisions("val_acc", LOSSES, ACCS, restart_at=restart_at)
    assert best == [True, True, False, True, False, False, True]  # an equal accuracy (epoch 5) is no new best


@pytest.mark.parametrize("metric", ["val_loss", "val_acc"])
@pytest.mark.parametrize("restart_at", [None, 5])  # resumed with one epoch without a best counted
def test_patience_counts_the_epochs_since_the_last_best(metric, restart_at):
    best, stopped = decisions(metric, LOSSES, ACCS, patience=2, restart_at=restart_at)
    assert best == [True, True, False, True, False, False] and stopped == 6  # epochs 5 and 6 did not improve
    _, stopped = decisions(metric, LOSSES, ACCS, patience=3, restart_at=restart_at)
    assert stopped is None  # epoch 7 improves just in time


def test_min_delta_is_a_margin_in_the_metrics_direction():
    best, _ = decisions("val_loss", [1.0, 0.95, 0.85, 0.84], [0.0] * 4, min_delta=0.1)
    assert best == [True, False, True, False]  # 0.95 is not 0.1 below 1.0; 0.85 is 0.15 below it
    best, _ = decisions("val_acc", [0.0] * 4, [0.5, 0.55, 0.65, 0.7], min_delta=0.1)
    assert best == [True, False, True, False]


def test_a_non_finite_metric_is_never_the_best_and_counts_as_no_improvement():
    rule = EarlyStopping(EarlyStoppingConfig(metric="val_loss", patience=2))
    assert rule.update(0, 1.0, 0.5)
    assert not rule.update(1, math.nan, 0.9) and not rule.update(2, -math.inf, 0.9)
    assert rule.should_stop and rule.best_epoch == 1 and rule.best_val_acc == 0.5
    rule = EarlyStopping(EarlyStoppingConfig(metric="val_acc"))
    assert not rule.update(0, 1.0, math.nan) and rule.best_epoch is None


@pytest.mark.parametrize("metric", ["val_loss", "val_acc"])
def test_a_plateau_schedule_reads_the_monitored_metric_in_its_direction(metric, tmp_path, runs_dir):
    """A plateau schedule with patience 0 cuts the rate after every epoch that is not a new best by the monitored
    metric: the rates in metrics.csv must drop exactly after those epochs. More validation images than the shared
    folder's six, so that validation accuracy moves between epochs (a flat one reads the same both ways)."""
    folder = make_image_folder(tmp_path / "images", classes=3, per_class=30)
    recipe = tiny_recipe(folder, "lesson_feature_extraction", epochs=5, out=runs_dir)
    recipe.early_stopping.metric = metric
    phase = recipe.phases[0]
    phase.lr = 0.05
    phase.schedule = ScheduleConfig(name="plateau", patience=0, factor=0.5)
    result = fit(recipe)
    assert result.status == "finished", result.error
    rows = read_metrics(result.run_dir)
    values = [row[metric] for row in rows]
    assert len(set(values)) > 2, values  # a metric that moves, or the direction cannot show
    (column,) = [c for c in rows[0] if c.startswith("lr_")]
    rates = [row[column] for row in rows]  # the rate each epoch trained with: cut after an epoch without a best
    sign = 1 if metric == "val_acc" else -1
    assert rates == pytest.approx(plateau_rates(values, sign, rates[0])), (metric, values, rates)
    # read in the other direction, the same figures would have cut the rate elsewhere
    assert rates != pytest.approx(plateau_rates(values, -sign, rates[0])), values


def plateau_rates(values: list[float], sign: int, first: float, factor: float = 0.5) -> list[float]:
    """The rate of each epoch under a plateau schedule of patience 0 reading `values` (sign 1: higher is better):
    halved after every epoch that is no new best by more than torch's relative threshold of 1e-4."""
    rates, best = [first], None
    for value in values[:-1]:  # the rate of epoch i follows from the figures of epochs 0 … i-1
        score = sign * value
        improved = best is None or score > best + 1e-4 * abs(best)
        best = score if improved else best
        rates.append(rates[-1] if improved else rates[-1] * factor)
    return rates


def best_by(metric: str, rows: list[dict]) -> int:
    """The 1-based epoch the metric prefers: the first of the lowest val_loss / the highest val_acc."""
    values = [row[metric] for row in rows]
    target = min(values) if metric == "val_loss" else max(values)
    return values.index(target) + 1


KINDS = {  # strategy, epochs: head trained in epochs on cached features, images, a fitted head then images
    "cached-feature epochs": ("lesson_feature_extraction", 6),
    "image epochs": ("fine_tune_all", 6),
    "fitted head, then images": ("extract_then_finetune", 6),
}


@pytest.mark.parametrize("metric", ["val_loss", "val_acc"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_best_pt_holds_the_best_epoch_by_the_monitored_metric(kind, metric, image_folder, runs_dir):
    strategy, epochs = KINDS[kind]
    recipe = tiny_recipe(image_folder, strategy, epochs=epochs, out=runs_dir)
    recipe.early_stopping.metric = metric
    for phase in recipe.phases:
        phase.lr = 0.05  # large steps: the validation figures go up and down
    result = fit(recipe)
    assert result.status == "finished", result.error
    rows = read_metrics(result.run_dir)
    expected = best_by(metric, rows)
    assert result.summary["best_epoch"] == expected, [(r["val_loss"], r["val_acc"]) for r in rows]
    best = load_checkpoint(checkpoint_path(result.run_dir, "best"))
    assert best["epoch"] == expected
    assert [bool(r["is_best"]) for r in rows].count(True) >= 1
    # The other direction would have chosen another epoch: the run's figures tell the two rules apart.
    other = best_by("val_acc" if metric == "val_loss" else "val_loss", rows)
    worst = [row[metric] for row in rows].index(max(r[metric] for r in rows) if metric == "val_loss"
                                                 else min(r[metric] for r in rows)) + 1
    assert worst != expected or other != expected


@pytest.mark.parametrize("metric", ["val_loss", "val_acc"])
def test_early_stopping_ends_the_run_when_patience_runs_out_by_the_metric(metric, image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=12, out=runs_dir)
    recipe.early_stopping.metric = metric
    recipe.early_stopping.patience = 2
    recipe.phases[0].lr = 0.05
    result = fit(recipe)
    rows = read_metrics(result.run_dir)
    _, stopped = decisions(metric, [r["val_loss"] for r in rows], [r["val_acc"] for r in rows], patience=2)
    assert result.summary["epochs_done"] == len(rows)
    if stopped is None:
        assert result.status == "finished" and len(rows) == 12
    else:
        assert result.status == "early_stopped" and len(rows) == stopped
    best = load_checkpoint(checkpoint_path(result.run_dir, "best"))
    assert best["epoch"] == best_by(metric, rows) == result.summary["best_epoch"]
    assert Path(checkpoint_path(result.run_dir, "last")).is_file()
    assert torch.isfinite(best["model"]["fc.weight"]).all()
