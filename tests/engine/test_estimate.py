"""What a run will cost, before it starts: `train --dry-run` exits 0 with an estimate or 2 with the reason, trains
nothing and writes no run folder; the estimate accounts for the feature cache, checkpoints and memory."""

from __future__ import annotations

import functools
import json
import shutil

import pytest

from engine.cli import main as cli_main
from engine.errors import BadInputError
from engine.model.build import build_model
from engine.train.estimate import estimate_run
from engine.train.feature_cache import FeatureStore
from engine.train.runs import checkpoint_path
from engine.train.trainer import fit
from tests.helpers import make_image_folder
from tests.helpers import tiny_recipe as _tiny_recipe

# The presets' cross-validated head fit, as users get it: what these tests count (tiny_recipe trains heads for their
# epochs elsewhere).
tiny_recipe = functools.partial(_tiny_recipe, head_fit="converge")


def test_dry_run_prints_an_estimate_and_trains_nothing(image_folder, tmp_path, cli):
    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=3, out=tmp_path / "runs")
    recipe.save(tmp_path / "r.json")
    out = cli("train", tmp_path / "r.json", "--dry-run")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "the run would start" in text and "whole run ≈" in text
    assert "phase 1 'head': " in text and "fitted to convergence" in text
    assert "phase 3 'all': 1 epoch × " in text and "steps on images" in text
    assert "peak memory ≈" in text and "(process RSS)" in text and "checkpoint last.pt" in text
    assert not (tmp_path / "runs").exists()  # no run folder, no checkpoint
    data = json.loads(cli("train", tmp_path / "r.json", "--dry-run", "--json").stdout)
    assert [p["kind"] for p in data["phases"]] == ["fitted head", "images", "images"]
    assert data["total_seconds"] == pytest.approx(data["setup_seconds"] + data["ram_cache_seconds"]
                                                  + sum(p["seconds"] for p in data["phases"]))


def test_dry_run_exits_2_naming_a_missing_folder(image_folder, tmp_path, cli):
    recipe = tiny_recipe(tmp_path / "nowhere", "feature_extraction", epochs=1, out=tmp_path / "runs")
    recipe.save(tmp_path / "r.json")
    out = cli("train", tmp_path / "r.json", "--dry-run")
    assert out.returncode == 2
    assert "not found" in out.stderr and str(tmp_path / "nowhere") in out.stderr
    assert "Traceback" not in out.stderr


def test_dry_run_exits_2_naming_an_empty_class(image_folder, tmp_path, cli):
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    (data / "zebra").mkdir()
    recipe = tiny_recipe(data, "feature_extraction", epochs=1, out=tmp_path / "runs")
    recipe.save(tmp_path / "r.json")
    out = cli("train", tmp_path / "r.json", "--dry-run")
    assert out.returncode == 2 and "'zebra'" in out.stderr and "no usable training images" in out.stderr
    assert "Traceback" not in out.stderr


def test_dry_run_says_what_building_the_model_refuses(image_folder, tmp_path, monkeypatch, capsys):
    """A weights file of another architecture is refused when the model is built (engine/model/build.py); the dry
    run reports that refusal as the run would, exit 2."""
    import engine.train.setup as setup

    def refuse(*args, **kwargs):
        raise BadInputError("weights file other.pth does not fit resnet18: 0 of 62 backbone tensors match")

    monkeypatch.setattr(setup, "build_model", refuse)
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=tmp_path / "runs")
    recipe.save(tmp_path / "r.json")
    assert cli_main(["train", str(tmp_path / "r.json"), "--dry-run"]) == 2
    assert "does not fit resnet18" in capsys.readouterr().err


def test_the_estimate_counts_features_only_when_they_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_CACHE_DIR", str(tmp_path / "cache"))
    FeatureStore.forget_memory()
    data = make_image_folder(tmp_path / "data", classes=3, per_class=12)
    recipe = tiny_recipe(data, "feature_extraction", epochs=1, out=tmp_path / "runs")
    cold = estimate_run(recipe)
    assert [p.kind for p in cold.phases] == ["fitted head"] and cold.phases[0].features_seconds > 0
    assert cold.feature_cache_bytes > 0  # (36 images) × 512 floats would be stored
    assert not (tmp_path / "runs").exists()
    assert fit(recipe).status == "finished"
    warm = estimate_run(recipe)
    assert warm.phases[0].features_seconds == 0.0  # the run cached them: a second run would not compute them


def test_checkpoint_and_memory_figures_are_the_runs(image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=2, out=tmp_path / "runs")
    estimate = estimate_run(recipe, batches=2)
    parameters = sum(p.numel() for p in build_model(recipe.model, 3, recipe.data).model.parameters()) * 4  # float32
    assert estimate.checkpoint_bytes > 3 * parameters  # model + Adam's two moments
    assert estimate.peak_memory_bytes > parameters
    phase = estimate.phases[0]
    assert (phase.kind, phase.epochs, phase.steps_per_epoch) == ("images", 2, 4)
    assert phase.train_seconds > 0 and phase.val_seconds > 0 and phase.measured_batches == 2
    assert estimate.total_seconds == pytest.approx(estimate.setup_seconds + estimate.ram_cache_seconds
                                                   + 2 * phase.epoch_seconds)
    lines = "\n".join(estimate.lines())
    assert "2 epochs × " in lines and "4 steps on images" in lines
    assert estimate.gpu_peak_bytes == 0  # the recipe trains on the CPU
    result = fit(recipe)
    assert result.status == "finished", result.error
    assert estimate.checkpoint_bytes == pytest.approx(checkpoint_path(result.run_dir, "last").stat().st_size, rel=0.05)
