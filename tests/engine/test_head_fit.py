"""A head fitted to convergence on cached features: it reaches a logistic-regression probe, its regularisation is
chosen by cross-validation deterministically, and a run that fits it is one epoch that stops, resumes, verifies
its freeze and writes its files like any other."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.train import events as ev
from engine.train.checkpoints import load_checkpoint, save_checkpoint
from engine.train.head_fit import FitSettings, _best, fit_head, stratified_folds, unfittable_reason, write_parameters
from engine.train.runs import checkpoint_path, read_metrics
from engine.train.trainer import Trainer, fit, resume
from tests.helpers import tiny_recipe as _tiny_recipe

# The presets' cross-validated head fit, as users get it: what these tests count (tiny_recipe trains heads for their
# epochs elsewhere).
tiny_recipe = functools.partial(_tiny_recipe, head_fit="converge")


class Recorder:
    def __init__(self):
        self.events: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def overlapping_classes(seed: int, n: int, dim: int = 48, classes: int = 4, spread: float = 3.0):
    """Gaussian classes that overlap (a linear probe gets ~80 %), with a few features of a much larger scale."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    labels = torch.arange(n) % classes
    x = centres[labels] + spread * torch.randn(n, dim, generator=g)
    x[:, :4] *= 50.0  # unstandardised features, as a backbone's are
    return x, labels


def probe_accuracy(train_x, train_y, val_x, val_y) -> float:
    """The yardstick of issue 11: a 5-fold cross-validated logistic regression on the same features."""
    # sklearn takes ~4 s to import: only the worker that runs this file's probe tests pays it, not every collection
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, cv=5, max_iter=5000, scoring="accuracy",
                                                                 l1_ratios=(0.0,), use_legacy_attributes=False))
    probe.fit(train_x.numpy(), train_y.numpy())
    return float((probe.predict(val_x.numpy()) == val_y.numpy()).mean())


def test_the_fitted_head_reaches_the_logistic_regression_probe():
    train_x, train_y = overlapping_classes(0, 240)
    val_x, val_y = overlapping_classes(0, 1240)  # same centres (same seed); the last 1000 are unseen draws
    val_x, val_y = val_x[240:], val_y[240:]
    head = torch.nn.Linear(train_x.shape[1], 4)
    result = fit_head(head, train_x[None], train_y, torch.nn.CrossEntropyLoss(),
                      generator=torch.Generator().manual_seed(3))
    write_parameters(head, result.parameters)
    with torch.no_grad():
        fitted = float((head(val_x).argmax(1) == val_y).float().mean())
    probe = probe_accuracy(train_x, train_y, val_x, val_y)
    assert 0.6 < probe < 0.95  # a task where the regularisation matters, not a trivial one
    assert fitted >= probe - 0.02, (fitted, probe)
    assert result.converged and result.folds == 5
    # The parameters are for raw features: the standardisation was folded into the Linear layer.
    with torch.no_grad():
        logits = head(train_x)
    assert float((logits.argmax(1) == train_y).float().mean()) == pytest.approx(result.train_acc)
    assert float(torch.nn.functional.cross_entropy(logits, train_y)) == pytest.approx(result.train_loss, rel=1e-4)


def test_the_plain_lessons_head_stays_below_the_probe_where_the_fit_does_not():
    """The reason for the fit: the lesson's 30 Adam steps at 1e-3 leave this head far from the probe."""
    train_x, train_y = overlapping_classes(0, 240)
    val_x, val_y = overlapping_classes(0, 1240)
    val_x, val_y = val_x[240:], val_y[240:]
    torch.manual_seed(0)
    head = torch.nn.Linear(train_x.shape[1], 4)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    for step in range(30):
        batch = slice(8 * step % 240, 8 * step % 240 + 8)
        loss = torch.nn.functional.cross_entropy(head(train_x[batch]), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        lesson = float((head(val_x).argmax(1) == val_y).float().mean())
    assert lesson < probe_accuracy(train_x, train_y, val_x, val_y) - 0.1


def test_the_regularisation_choice_is_deterministic_for_a_seed_and_follows_the_folds():
    train_x, train_y = overlapping_classes(1, 120, dim=64)
    criterion = torch.nn.CrossEntropyLoss()
    settings = FitSettings(grid=(1.0, 0.1, 0.01, 1e-3, 1e-4))

    def run(seed: int):
        head = torch.nn.Linear(64, 4)
        torch.manual_seed(0)
        head.reset_parameters()
        return fit_head(head, train_x[None], train_y, criterion, generator=torch.Generator().manual_seed(seed),
                        settings=settings)

    first, again, other = run(7), run(7), run(8)
    assert first.l2 == again.l2 and first.cv_acc == again.cv_acc and first.cv_loss == again.cv_loss
    assert all(torch.equal(first.parameters[k], again.parameters[k]) for k in first.parameters)
    assert first.cv_loss != other.cv_loss  # another seed, other folds: the choice really comes from them
    best = max(range(len(first.grid)), key=lambda i: (first.cv_acc[i], -i))
    assert first.l2 == first.grid[best]
    # With 30 images per class in 64 noisy dimensions the weakest penalty overfits: it must not win.
    assert first.l2 > settings.grid[-1]


def test_folds_are_stratified_and_every_view_of_an_image_shares_its_fold():
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 5)
    folds = stratified_folds(labels, 5, torch.Generator().manual_seed(0))
    for cls in range(3):
        counts = torch.bincount(folds[labels == cls], minlength=5)
        assert int(counts.max() - counts.min()) <= 1  # each class spread over the folds evenly
    x = torch.randn(3, len(labels), 8)  # three views
    result = fit_head(torch.nn.Linear(8, 3), x, labels, torch.nn.CrossEntropyLoss(),
                      settings=FitSettings(grid=(1.0, 0.01)))
    assert result.rows == 3 * len(labels) and result.folds == 5


def test_ties_go_to_the_stronger_penalty_and_the_metric_decides():
    cv_loss, cv_acc = [0.5, 0.3, 0.2, 0.25], [0.9, 0.9, 0.9, 0.8]
    assert _best(cv_loss, cv_acc, "val_acc") == 0  # all of the first three reach 90 %: the strongest wins
    assert _best(cv_loss, cv_acc, "val_loss") == 2


def test_too_few_images_per_class_use_the_default_strength():
    x, labels = torch.randn(1, 5, 6), torch.tensor([0, 0, 1, 1, 2])  # class 2 has one image: no 2-fold split
    result = fit_head(torch.nn.Linear(6, 3), x, labels, torch.nn.CrossEntropyLoss())
    assert result.folds == 0 and result.cv_acc == [] and result.l2 == FitSettings().default_l2


def test_only_stacks_of_linear_layers_are_fitted():
    assert unfittable_reason(torch.nn.Linear(4, 2)) == ""
    mlp = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    assert unfittable_reason(mlp) == ""
    assert "Conv2d" in unfittable_reason(torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1), torch.nn.ReLU()))


def test_a_stop_leaves_the_head_as_it_was():
    head = torch.nn.Linear(6, 3)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    calls = []
    result = fit_head(head, torch.randn(1, 30, 6), torch.arange(30) % 3, torch.nn.CrossEntropyLoss(),
                      should_stop=lambda: calls.append(1) or len(calls) > 3)
    assert result is None
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())


# --- the fit inside a run -------------------------------------------------------------------------------------

def test_a_feature_extraction_run_fits_its_head_as_one_epoch_and_says_how(image_folder, runs_dir):
    rec = Recorder()
    result = fit(tiny_recipe(image_folder, "feature_extraction", epochs=4, out=runs_dir), [rec])
    assert result.status == "finished", result.error
    started = rec.of(ev.RunStarted)[0]
    assert started.total_epochs == 1 and started.lr_groups == []  # a fitted head is one epoch, with no rate
    assert rec.of(ev.PhaseStarted)[0].head_fit == "converge"
    assert rec.of(ev.BatchFinished) == []
    fitted = rec.of(ev.HeadFitted)
    assert len(fitted) == 1 and fitted[0].folds >= 2 and fitted[0].l2 in fitted[0].grid
    assert fitted[0].curve_objective[-1] <= fitted[0].curve_objective[0]
    progress = rec.of(ev.HeadFitProgressed)
    assert progress[0].stage == "cross-validation" and progress[-1].stage == "final fit"
    assert [p.done for p in progress] == sorted(p.done for p in progress)  # honest: it only moves forward
    epoch = rec.of(ev.EpochFinished)[0]
    assert (epoch.fit, epoch.l2, epoch.lrs) == ("lbfgs", fitted[0].l2, {})
    row = read_metrics(result.run_dir)[0]
    assert (row["fit"], row["l2"]) == ("lbfgs", fitted[0].l2)
    summary = json.loads((Path(result.run_dir) / "summary.json").read_text())
    entry = summary["phases"][0]["head_fit"]
    assert entry["method"] == "lbfgs" and entry["l2"] == fitted[0].l2 and "cross-validation" in entry["chosen_by"]
    assert entry["cv_acc"] == fitted[0].cv_acc and summary["phases"][0]["freeze_verified"] is True
    assert summary["final_val_acc"] == epoch.val_acc
    head = load_checkpoint(checkpoint_path(result.run_dir, "best"))["model"]["fc.weight"]
    assert torch.isfinite(head).all()


def test_a_head_only_phase_that_cannot_cache_trains_its_epochs_and_says_why(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=2, out=runs_dir)
    recipe.data.cache_features = "off"
    rec = Recorder()
    result = fit(recipe, [rec])
    assert result.status == "finished", result.error
    phase = rec.of(ev.PhaseStarted)[0]
    assert phase.head_fit == "epochs" and "cache_features" in phase.head_fit_note
    assert len(rec.of(ev.EpochFinished)) == 2 and rec.of(ev.HeadFitted) == [] and rec.of(ev.BatchFinished)
    assert "cache_features" in result.summary["phases"][0]["head_fit"]["note"]


def test_a_stop_during_the_fit_resumes_to_the_same_head(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=3, out=runs_dir)
    whole = fit(recipe)
    assert whole.status == "finished", whole.error
    control = ev.RunControl()
    holder, initial = {}, {}

    def stop_in_the_final_fit(event: ev.Event) -> None:
        if isinstance(event, ev.PhaseStarted) and event.phase_index == 0:
            initial["fc.weight"] = holder["trainer"].model.fc.weight.detach().clone()
        if isinstance(event, ev.HeadFitProgressed) and event.stage == "final fit":
            control.request_stop()

    rec = Recorder()
    trainer = holder["trainer"] = Trainer(recipe, [stop_in_the_final_fit, rec], control)
    stopped = trainer.fit()
    assert stopped.status == "stopped"
    assert rec.of(ev.HeadFitted) == [] and rec.of(ev.EpochFinished) == []
    halt = rec.of(ev.RunStopped)[0]
    assert (halt.epoch, halt.batch) == (0, 0)  # a stop during the fit is a stop at the phase's start
    kept = load_checkpoint(checkpoint_path(stopped.run_dir, "last"))
    assert torch.equal(kept["model"]["fc.weight"], initial["fc.weight"])  # the unfinished fit was not written
    resumed = resume(stopped.run_dir)
    assert resumed.status == "finished", resumed.error
    first = load_checkpoint(checkpoint_path(whole.run_dir, "last"))
    again = load_checkpoint(checkpoint_path(stopped.run_dir, "last"))
    for key, tensor in first["model"].items():
        assert torch.equal(tensor, again["model"][key]), key  # the whole run, bit for bit
    assert resumed.summary["phases"][0]["head_fit"]["l2"] == whole.summary["phases"][0]["head_fit"]["l2"]


def test_resuming_after_the_fit_does_not_fit_again_and_keeps_what_the_summary_says(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=3, out=runs_dir)
    holder = {}

    def poison_phase_2(event: ev.Event) -> None:  # the run fails at phase 2's first batch: last.pt is phase 1's end
        if isinstance(event, ev.PhaseStarted) and event.phase_index == 1:
            with torch.no_grad():
                holder["trainer"].model.fc.weight.fill_(float("nan"))

    trainer = holder["trainer"] = Trainer(recipe, [poison_phase_2])
    failed = trainer.fit()
    assert failed.status == "failed"
    fitted = failed.summary["phases"][0]["head_fit"]
    assert "l2" in fitted
    rec = Recorder()
    resumed = resume(failed.run_dir, [rec])
    assert resumed.status == "finished", resumed.error
    assert rec.of(ev.PhaseStarted)[0].phase_index == 0  # resumed from phase 1's last checkpoint
    assert rec.of(ev.HeadFitted) == []  # its fit is done: not redone
    assert resumed.summary["phases"][0]["head_fit"] == fitted


def test_a_run_saved_before_head_fit_existed_resumes_as_it_began(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=2, out=runs_dir)
    recipe.phases[0].head_fit = "epochs"
    control = ev.RunControl()
    stopped = Trainer(recipe, [lambda e: isinstance(e, ev.EpochFinished) and control.request_stop()], control).fit()
    last = checkpoint_path(stopped.run_dir, "last")
    state = load_checkpoint(last)
    for phase in state["recipe"]["phases"]:
        del phase["head_fit"]  # as an older Thaw wrote it
    save_checkpoint(last, state)
    rec = Recorder()
    resumed = resume(stopped.run_dir, [rec])
    assert resumed.status == "finished", resumed.error
    assert rec.of(ev.HeadFitted) == [] and [e.epoch for e in rec.of(ev.EpochFinished)] == [1]


def test_the_fit_respects_the_cap_on_training_batches(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir)
    recipe.data.max_train_batches = 2
    rec = Recorder()
    assert fit(recipe, [rec]).status == "finished"
    assert rec.of(ev.HeadFitted)[0].rows == 2 * recipe.batch_size


def test_an_mlp_head_is_fitted_too(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir)
    recipe.model.head.hidden, recipe.model.head.dropout = 16, 0.3
    rec = Recorder()
    result = fit(recipe, [rec])
    assert result.status == "finished", result.error
    assert len(rec.of(ev.HeadFitted)) == 1 and not math.isnan(rec.of(ev.HeadFitted)[0].train_loss)
    assert np.isfinite(rec.of(ev.EpochFinished)[0].val_loss)


def classes_around(seed: int, n: int, spread: float, dim: int = 32, classes: int = 3):
    """Gaussian classes around random centres: `spread` 6 separates them (every strength reaches 100 % held-out
    accuracy), 0.3 makes them overlap (a weak strength fits noise with huge logits: overconfident)."""
    g = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(classes, dim, generator=g)
    labels = torch.arange(n) % classes
    return centres[labels] + torch.randn(n, dim, generator=g), labels


def fitted(x, y, settings, hidden=0):
    torch.manual_seed(0)
    head = (torch.nn.Sequential(torch.nn.Linear(32, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3)) if hidden
            else torch.nn.Linear(32, 3))
    fit = fit_head(head, x[None], y, torch.nn.CrossEntropyLoss(), generator=torch.Generator().manual_seed(1),
                   settings=settings)
    write_parameters(head, fit.parameters)
    return head, fit


@pytest.mark.parametrize("hidden", [0, 16])
def test_the_temperature_calibrates_the_head_without_changing_a_prediction(hidden):
    x, y = classes_around(0, 90, spread=0.3)
    test_x, _ = classes_around(0, 390, spread=0.3)
    test_x = test_x[90:]
    grid = (1e-4, 1e-6)
    plain_head, plain = fitted(x, y, FitSettings(grid=grid, calibrate=False), hidden)
    head, calibrated = fitted(x, y, FitSettings(grid=grid), hidden)
    assert plain.l2 == calibrated.l2 and plain.temperature == 1.0 and math.isnan(plain.calibrated_cv_loss)
    assert calibrated.temperature > 1.0  # a weak strength on overlapping classes: overconfident, so cooled
    best = calibrated.grid.index(calibrated.l2)
    assert calibrated.calibrated_cv_loss < calibrated.cv_loss[best]  # a better held-out loss: the reason for it
    with torch.no_grad():
        before, after = plain_head(test_x), head(test_x)
    assert torch.equal(before.argmax(1), after.argmax(1))  # not one prediction changes
    # the output layer, and only it, was divided by the temperature
    torch.testing.assert_close(after, before / calibrated.temperature, rtol=1e-4, atol=1e-5)
    assert calibrated.train_loss > plain.train_loss  # the reported training loss is the calibrated head's


def test_a_head_is_cooled_never_sharpened():
    # every held-out image right: sharpening would lower the held-out loss without bound, and a sharpened head is
    # the hazard the calibration exists for; a timid head (strong L2) is left as it is
    x, y = classes_around(2, 90, spread=6.0)
    for l2 in (1e-6, 100.0):
        _, fit = fitted(x, y, FitSettings(grid=(l2,)))
        assert fit.temperature == 1.0, l2
    x, y = classes_around(2, 90, spread=0.3)
    _, weak = fitted(x, y, FitSettings(grid=(1e-6,)))
    _, strong = fitted(x, y, FitSettings(grid=(100.0,)))
    assert weak.temperature > 1.0 and strong.temperature == 1.0
