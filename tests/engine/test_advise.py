"""The strategy advisor (engine/advise): its probe measures, its rules decide on both sides of every threshold, its
reasons carry the numbers it measured, and `advise` behaves as a command (JSON, --save, Ctrl-C exits 3)."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from torch import nn

from engine.advise import advisor as adv
from engine.advise.advisor import AdvisorRules, advise
from engine.advise.domain_shift import DomainShift, measure_domain_shift
from engine.advise.probe import Probe, run_probe
from engine.recipe import Recipe
from tests.helpers import make_image_folder, tiny_recipe

RULES = AdvisorRules()


def probe_of(counts, cv=0.8, shift: float | None = 0.04, val=0.8) -> Probe:
    """A probe as the advisor reads it, with chosen measurements: the rules are a function of these numbers."""
    classes = [f"c{i}" for i in range(len(counts))]
    measured = None if shift is None else DomainShift(shift, 20, 100, [shift] * 20)
    return Probe("resnet18", "w", classes, list(counts), 40, 512, cv, 5, 1.0, val, 3.0, False, 1.0, measured, "cpu")


# --- each rule, on both sides of its threshold -------------------------------------------------------------------


@pytest.mark.parametrize(("cv", "expected"), [(0.95, adv.FEATURE_EXTRACTION), (0.9499, adv.GRADUAL)])
def test_features_that_already_separate_the_classes_mean_feature_extraction(cv, expected):
    # a far domain with 48 a class would be gradual unfreezing (task b): only the separation changes it
    assert advise(probe_of([48] * 6, cv=cv, shift=0.458)).strategy == expected


@pytest.mark.parametrize(("smallest", "expected"), [(9, adv.PRETRAIN), (10, adv.GRADUAL)])
def test_a_far_domain_with_a_handful_of_images_means_domain_pretraining(smallest, expected):
    advice = advise(probe_of([smallest, 50, 50], shift=0.5))
    assert advice.strategy == expected
    if expected == adv.PRETRAIN:  # no pre-training preset yet: the safest one is applied, and the reason says so
        assert advice.preset == "feature_extraction" and "no pre-training preset" in advice.reasons[0]
        assert "python main.py pretrain" in advice.reasons[0]  # how to run it instead


@pytest.mark.parametrize(("shift", "expected"), [(0.15, adv.GRADUAL), (0.1499, adv.FEATURE_EXTRACTION)])
def test_a_far_domain_means_fine_tuning_a_near_one_with_small_data_feature_extraction(shift, expected):
    assert advise(probe_of([48] * 6, shift=shift)).strategy == expected


@pytest.mark.parametrize(("smallest", "expected"), [(1000, adv.FINE_TUNE), (999, adv.GRADUAL)])
def test_a_large_dataset_in_a_far_domain_fine_tunes_every_layer(smallest, expected):
    advice = advise(probe_of([smallest] * 4, shift=0.3))
    assert advice.strategy == expected and advice.preset == expected


@pytest.mark.parametrize(("smallest", "expected"), [(100, adv.GRADUAL), (99, adv.FEATURE_EXTRACTION)])
def test_enough_images_a_class_in_a_near_domain_mean_gradual_unfreezing(smallest, expected):
    assert advise(probe_of([smallest] * 5, shift=0.043)).strategy == expected


def test_the_smallest_class_decides_not_the_typical_one():
    advice = advise(probe_of([400, 400, 30], shift=0.043))  # median 400 ≥ 100, but one class has 30
    assert advice.strategy == adv.FEATURE_EXTRACTION
    assert "imbalance 13.3×" in " ".join(advice.reasons)


def test_without_batchnorm_the_size_decides_and_the_reasons_say_the_shift_was_not_measured():
    assert advise(probe_of([200] * 5, shift=None)).strategy == adv.GRADUAL
    advice = advise(probe_of([30] * 5, shift=None))
    assert advice.strategy == adv.FEATURE_EXTRACTION
    assert any("not measured" in r for r in advice.reasons)


@pytest.mark.parametrize(("task", "counts", "cv", "shift", "best"), [
    ("a", [32] * 5, 0.769, 0.043, adv.FEATURE_EXTRACTION),
    ("b", [48] * 6, 0.754, 0.458, adv.GRADUAL),
    ("c", [200] * 5, 0.828, 0.043, adv.GRADUAL)])
def test_the_bench_tasks_measurements_give_their_best_measured_strategy(task, counts, cv, shift, best):
    """The probe's figures on bench/tasks.py (bench/advisor.py, bench/README.md) and each task's best strategy."""
    assert advise(probe_of(counts, cv=cv, shift=shift)).strategy == best


# --- the domain shift --------------------------------------------------------------------------------------------


def _stats_model(data: torch.Tensor) -> nn.Module:
    """Conv → BN whose running statistics are exactly those of `data` through the conv (its pretraining)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    with torch.no_grad():
        out = model[0](data)
        model[1].running_mean.copy_(out.mean((0, 2, 3)))
        model[1].running_var.copy_(out.var((0, 2, 3), unbiased=False))
    return model.eval()


def test_the_domain_shift_is_zero_on_the_pretraining_statistics_and_grows_with_the_shift():
    torch.manual_seed(1)
    data = torch.randn(64, 3, 16, 16)
    model = _stats_model(data).train()  # as the caller left it: the measurement must not update the statistics
    same = measure_domain_shift(model, "3", [(data[:32], None), (data[32:], None)], torch.device("cpu"))
    assert same.layers == 1 and same.images == 64 and same.score < 1e-6
    moved = measure_domain_shift(model, "3", [(data * 0.5 + 1, None)], torch.device("cpu"))
    further = measure_domain_shift(model, "3", [(data * 0.2 + 3, None)], torch.device("cpu"))
    assert 0.05 < moved.score < further.score
    assert torch.equal(model[1].running_mean, _stats_model(data)[1].running_mean)  # read, never updated
    assert model.training  # the caller's mode restored


def test_the_shift_of_a_channel_is_the_kl_divergence_of_two_gaussians():
    from engine.advise.domain_shift import gaussian_kl

    mean_p, var_p = torch.tensor([0.0, -2.0, 1.0]), torch.tensor([1.0, 0.5, 4.0])
    mean_q, var_q = torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean_p, var_p.sqrt()),
                                                 torch.distributions.Normal(mean_q, var_q.sqrt()))
    assert torch.allclose(gaussian_kl(mean_p, var_p, mean_q, var_q), expected)


def test_the_heads_batchnorm_is_not_the_backbones_and_a_model_without_one_has_no_shift():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Sequential(nn.BatchNorm1d(4 * 14 * 14)))
    assert measure_domain_shift(model, "2", [(torch.randn(4, 3, 16, 16), None)], torch.device("cpu")) is None


# --- the probe and the command -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def advise_data(tmp_path_factory):
    """4 classes, unbalanced: 14, 14, 14 and 8 images (a fifth of each in validation)."""
    root = make_image_folder(tmp_path_factory.mktemp("advise"), classes=4, per_class=14)
    last = sorted(p for p in root.iterdir() if p.is_dir())[-1]
    for image in sorted(last.iterdir())[8:]:
        image.unlink()
    return root


def test_the_probe_measures_the_data_and_the_frozen_features(advise_data):
    recipe = tiny_recipe(advise_data)
    probe = run_probe(recipe)
    assert probe.classes == sorted(p.name for p in advise_data.iterdir() if p.is_dir())
    assert sorted(probe.train_counts) == [6, 11, 11, 11] and probe.val_images == 11
    assert probe.imbalance == pytest.approx(11 / 6)
    assert probe.feature_dim == 32 and probe.cv_folds == 5 and 0 <= probe.cv_accuracy <= 1
    assert probe.shift is not None and probe.shift.layers == 20 and probe.shift.images == 39
    again = run_probe(recipe)  # the features come back from the cache: same numbers, no second pass
    assert again.features_cached and again.extraction_seconds is None
    assert again.cv_accuracy == probe.cv_accuracy and again.shift.score == pytest.approx(probe.shift.score)


def test_advise_json_holds_the_strategy_reasons_with_the_measured_numbers(cli, advise_data, tmp_path):
    path = tmp_path / "recipe.json"
    tiny_recipe(advise_data).save(path)
    code, out, err = cli("advise", path, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= {"strategy", "reasons", "measurements"}
    m = data["measurements"]
    text = " ".join(data["reasons"])
    assert f"{100 * m['cv_accuracy']:.1f} % cross-validated accuracy" in text  # the numbers it measured, as measured
    assert f"{100 * m['val_accuracy']:.1f} % on the {m['val_images']} validation images" in text
    assert f"{m['domain_shift']['score']:.3f}" in text
    assert f"{m['images_per_class']['smallest']} in the smallest class" in text
    assert m["images_per_class"]["smallest"] == 6 and data["strategy"] in adv.PRESETS


def test_advise_save_writes_the_recipe_with_the_recommended_preset(cli, advise_data, tmp_path):
    path, saved = tmp_path / "recipe.json", tmp_path / "advised.json"
    tiny_recipe(advise_data, strategy="fine_tune_all").save(path)
    code, out, err = cli("advise", path, "--save", saved)
    assert code == 0, err
    assert out.startswith("Recommended: ")
    advised = Recipe.load(saved)
    assert advised.strategy == "feature_extraction"  # 6 images in the smallest class: rule 6 (or rule 1)
    assert advised.data.root == str(advise_data) and advised.data.crop_size == 32  # the rest stays
    assert Recipe.load(path).strategy == "fine_tune_all"  # the original is not touched


def test_ctrl_c_during_the_probe_exits_3_without_advice(cli, advise_data, tmp_path, monkeypatch):
    import engine.advise.probe as probe_module

    real = probe_module.fit_head

    def interrupted_fit(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, delivered to the CLI's handler
        return real(*args, **kwargs)

    monkeypatch.setattr(probe_module, "fit_head", interrupted_fit)
    path = tmp_path / "recipe.json"
    tiny_recipe(advise_data, seed=7).save(path)
    code, out, err = cli("advise", path, "--json")
    assert code == 3, err
    assert out == "" and "stopped" in err and "Traceback" not in err


def test_advise_refuses_a_missing_recipe_in_one_line(cli, tmp_path):
    code, out, err = cli("advise", tmp_path / "nope.json")
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err


def test_advise_without_local_weights_offline_names_the_file_as_train_does(cli, image_folder, tmp_path):
    path = tmp_path / "recipe.json"
    tiny_recipe(image_folder, arch="resnet50").save(path)
    code, out, err = cli("advise", path)
    assert code == 1 and out == "" and "resnet50-11ad3fa6.pth" in err and "Traceback" not in err
