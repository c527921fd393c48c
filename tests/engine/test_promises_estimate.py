"""The cost estimate (engine/train/estimate.py) counts what the run will do, for every kind of phase: a head fitted by
L-BFGS (one epoch: the cross-validation fits and the final fit), a head trained in epochs on cached features (the
backbone's pass once, then every epoch's steps) and a model trained on image batches. Its epochs and steps are the
run's own, checked against a real run; its arithmetic is checked with every measurement fixed to a known value."""

from __future__ import annotations

import dataclasses
import functools

import pytest

from engine.train import estimate as estimate_module
from engine.train import events as ev
from engine.train.estimate import FIT_ITERATIONS_FINAL, FIT_ITERATIONS_PER_CV_FIT, estimate_run
from engine.train.head_fit import FitSettings
from engine.train.trainer import fit
from tests.helpers import make_image_folder
from tests.helpers import tiny_recipe as _tiny_recipe

# The presets' cross-validated head fit, as users get it: what these tests count (tiny_recipe trains heads for their
# epochs elsewhere).
tiny_recipe = functools.partial(_tiny_recipe, head_fit="converge")

# strategy, epochs asked for → (kind of each phase, as the estimate names it)
KINDS = {
    "lesson_feature_extraction": ["cached features"],
    "feature_extraction": ["fitted head"],
    "fine_tune_all": ["images"],
    "gradual_unfreezing": ["fitted head", "images", "images"],
}


@pytest.mark.parametrize("strategy", list(KINDS))
def test_the_estimates_epochs_and_steps_are_the_runs(strategy, image_folder, runs_dir, recorder):
    recipe = tiny_recipe(image_folder, strategy, epochs=5, out=runs_dir)
    estimate = estimate_run(recipe, batches=2)
    assert [p.kind for p in estimate.phases] == KINDS[strategy]
    result = fit(recipe, [recorder])
    assert result.status == "finished", result.error
    started = recorder.of(ev.PhaseStarted)
    for phase, cost in zip(started, estimate.phases):
        epochs = [e for e in recorder.of(ev.EpochStarted) if e.phase_index == phase.phase_index]
        fitted = [e for e in recorder.of(ev.EpochFinished) if e.phase_index == phase.phase_index and e.fit == "lbfgs"]
        assert cost.epochs == phase.epochs == len(epochs) + len(fitted), cost
        if cost.kind == "fitted head":
            assert cost.steps_per_epoch == 0 and len(fitted) == 1
        else:
            assert all(cost.steps_per_epoch == e.batches for e in epochs), (cost, epochs)


def fixed_measurements(monkeypatch, per_batch: float = 0.5, head_step: float = 0.01, iteration: float = 0.001,
                       checkpoint: float = 0.2):
    """Every timing the estimate takes, replaced by a known value (the file sizes stay real)."""
    real_checkpoint = estimate_module._checkpoint
    monkeypatch.setattr(estimate_module, "_timed_batches", lambda batches, run, count, device: (per_batch, count))
    monkeypatch.setattr(estimate_module, "_head_step_seconds", lambda phase, x, y, repeats=20: head_step)
    monkeypatch.setattr(estimate_module, "iteration_seconds", lambda *args, **kwargs: iteration)
    monkeypatch.setattr(estimate_module, "_checkpoint", lambda phase: (checkpoint, real_checkpoint(phase)[1]))


def test_a_head_trained_in_epochs_on_cached_features_costs_the_pass_once_then_every_epoch(image_folder, tmp_path,
                                                                                           monkeypatch):
    fixed_measurements(monkeypatch)
    data = make_image_folder(tmp_path / "data", classes=3, per_class=12)  # 30 training, 6 validation images
    recipe = tiny_recipe(data, "lesson_feature_extraction", epochs=4, out=tmp_path / "runs")
    recipe.data.feature_views = 2
    (cost,) = estimate_run(recipe).phases
    steps = 4  # 30 images in batches of 8
    assert (cost.kind, cost.epochs, cost.steps_per_epoch) == ("cached features", 4, steps)
    assert cost.train_seconds == pytest.approx(steps * 0.01)  # the head's steps of one epoch
    assert cost.val_seconds == pytest.approx(1 * 0.5)  # one batch of 6 validation features
    assert cost.features_seconds == pytest.approx(9 * 0.5)  # 2 views × 30 + 6 images = 66: 9 batches of 8
    assert cost.seconds == pytest.approx(cost.features_seconds + 4 * (steps * 0.01 + 0.5 + 0.2))


def test_a_fitted_head_costs_its_cross_validation_and_final_fit_once(tmp_path, monkeypatch):
    fixed_measurements(monkeypatch)
    data = make_image_folder(tmp_path / "data", classes=3, per_class=12)
    recipe = tiny_recipe(data, "feature_extraction", epochs=4, out=tmp_path / "runs")
    (cost,) = estimate_run(recipe).phases
    s = FitSettings()
    fits = s.repeats * s.folds * len(s.grid)  # every class has 10 training images: 5 folds
    assert (cost.kind, cost.epochs, cost.steps_per_epoch) == ("fitted head", 1, 0)
    assert cost.train_seconds == pytest.approx(0.001 * (fits * FIT_ITERATIONS_PER_CV_FIT + FIT_ITERATIONS_FINAL))
    assert cost.seconds == pytest.approx(cost.features_seconds + cost.train_seconds + cost.val_seconds + 0.2)


def test_images_cost_every_step_and_validation_batch_of_every_epoch(tmp_path, monkeypatch):
    fixed_measurements(monkeypatch)
    data = make_image_folder(tmp_path / "data", classes=3, per_class=12)
    recipe = tiny_recipe(data, "fine_tune_all", epochs=3, out=tmp_path / "runs")
    (cost,) = estimate_run(recipe).phases
    assert (cost.kind, cost.epochs, cost.steps_per_epoch, cost.features_seconds) == ("images", 3, 4, 0.0)
    assert cost.train_seconds == pytest.approx(4 * 0.5) and cost.val_seconds == pytest.approx(1 * 0.5)
    assert cost.seconds == pytest.approx(3 * (4 * 0.5 + 0.5 + 0.2))


def test_a_later_head_only_phase_after_the_backbone_trained_computes_its_features_again(tmp_path, monkeypatch):
    fixed_measurements(monkeypatch)
    data = make_image_folder(tmp_path / "data", classes=3, per_class=12)
    recipe = tiny_recipe(data, "gradual_unfreezing", epochs=5, out=tmp_path / "runs")
    recipe.phases.append(dataclasses.replace(recipe.phases[0], name="head again"))
    recipe.validate()
    costs = estimate_run(recipe).phases
    assert [c.kind for c in costs] == ["fitted head", "images", "images", "fitted head"]
    assert costs[0].features_seconds > 0 and costs[3].features_seconds == pytest.approx(costs[0].features_seconds)
