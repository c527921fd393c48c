"""compare-models (engine/advise/compare.py): models with local weights are measured on the recipe's data, models
without are listed and never downloaded, the Pareto front is the models nothing beats on both axes, the results are
kept, and Ctrl-C keeps what was measured with exit 3."""

from __future__ import annotations

import json
import os
import signal

import pytest

from engine.advise import compare as cmp
from engine.advise.compare import CompareSettings, ModelRow, compare_models, pareto_front
from engine.model import zoo
from tests.helpers import tiny_recipe

MODELS = "tiny_resnet,mobilenet_v3_small,resnet50"  # two seeded in the test TORCH_HOME, resnet50 not


def _row(arch, acc, ms, status=cmp.MEASURED):
    return ModelRow(arch, status, cv_accuracy=acc, latency_ms=ms)


def test_the_pareto_front_is_the_models_nothing_beats_on_accuracy_and_latency():
    rows = [_row("fast", 0.70, 1.0), _row("good", 0.90, 5.0), _row("slow_worse", 0.80, 9.0),
            _row("tie_slower", 0.90, 6.0), _row("best", 0.95, 20.0), _row("gone", None, None, cmp.NO_WEIGHTS)]
    assert pareto_front(rows) == ["fast", "good", "best"]  # fastest first
    assert pareto_front([_row("a", 0.9, 2.0), _row("b", 0.9, 2.0)]) == ["a", "b"]  # equals do not beat each other


def test_unknown_model_names_are_refused_before_anything_runs(cli, image_folder, tmp_path):
    path = tmp_path / "recipe.json"
    tiny_recipe(image_folder).save(path)
    code, out, err = cli("compare-models", path, "--models", "tiny_resnet,resnet_51")
    assert code == 2 and "resnet_51" in err and err.count("\n") == 1


@pytest.fixture
def no_download(monkeypatch):
    """Downloads allowed by the environment, yet any attempt fails the test: compare-models must not try."""
    monkeypatch.delenv("THAW_OFFLINE", raising=False)

    def refuse(url, target, progress):
        raise AssertionError(f"compare-models tried to download {url}")

    monkeypatch.setattr(zoo, "_download", refuse)


def test_compare_models_measures_local_models_and_lists_the_others_without_downloading(
        cli, image_folder, tmp_path, no_download):
    path, out_file = tmp_path / "recipe.json", tmp_path / "cmp.json"
    tiny_recipe(image_folder).save(path)
    resnet50 = zoo.cached_weights_path(zoo.weights_enum("resnet50").DEFAULT)
    code, out, err = cli("compare-models", path, "--models", MODELS, "--latency-runs", "5", "--out", out_file,
                         "--json")
    assert code == 0, err
    assert not resnet50.exists()
    data = json.loads(out)
    assert json.loads(out_file.read_text())["rows"] == data["rows"]  # kept as printed
    rows = {r["arch"]: r for r in data["rows"]}
    assert [r["arch"] for r in data["rows"]] == MODELS.split(",")
    assert rows["resnet50"]["status"] == "no local weights" and resnet50.name in rows["resnet50"]["detail"]
    for arch in ("tiny_resnet", "mobilenet_v3_small"):
        r = rows[arch]
        assert r["status"] == "measured", r
        assert 0 <= r["cv_accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1
        assert r["extraction_seconds"] > 0 and r["latency_ms"] > 0 and r["peak_memory_mb"] > 0
        assert r["file_mb"] == round(os.path.getsize(r["weights_file"]) / 2**20, 2)
        assert r["onnx_latency_ms"] is None and "--onnx" in r["onnx_note"]
    assert rows["tiny_resnet"]["parameters"] < rows["mobilenet_v3_small"]["parameters"]
    assert rows["tiny_resnet"]["feature_dim"] == 32 and rows["mobilenet_v3_small"]["feature_dim"] == 1024
    assert data["pareto"] and set(data["pareto"]) <= {"tiny_resnet", "mobilenet_v3_small"}
    assert (data["classes"], data["train_images"], data["val_images"]) == (3, 30, 6)


def test_the_feature_pass_is_timed_even_when_its_features_are_cached(image_folder):
    recipe = tiny_recipe(image_folder)
    first = compare_models(recipe, ["tiny_resnet"], CompareSettings(latency_runs=5))
    second = compare_models(recipe, ["tiny_resnet"], CompareSettings(latency_runs=5))
    assert first.rows[0].extraction_seconds > 0 and second.rows[0].extraction_seconds > 0
    assert second.rows[0].cv_accuracy == first.rows[0].cv_accuracy  # the same features, the same fit


def test_onnx_latency_is_measured_on_request(image_folder):
    result = compare_models(tiny_recipe(image_folder), ["tiny_resnet"], CompareSettings(latency_runs=5, onnx=True))
    row = result.rows[0]
    assert row.onnx_latency_ms is not None and row.onnx_latency_ms > 0, row.onnx_note


def test_a_stop_keeps_the_models_measured_and_marks_the_rest(image_folder):
    stop = [False]

    def progress(p):
        if p.stage == "done":
            stop[0] = True  # asked after the first model

    result = compare_models(tiny_recipe(image_folder), ["tiny_resnet", "mobilenet_v3_small"],
                            CompareSettings(latency_runs=5), progress, lambda: stop[0])
    assert result.stopped
    assert [r.status for r in result.rows] == ["measured", "stopped"]


def test_ctrl_c_exits_3_and_keeps_the_models_measured_so_far(cli, image_folder, tmp_path, monkeypatch):
    real = cmp.measure_costs

    def then_ctrl_c(*args, **kwargs):
        costs = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, after the first model
        return costs

    monkeypatch.setattr(cmp, "measure_costs", then_ctrl_c)
    path, out_file = tmp_path / "recipe.json", tmp_path / "cmp.json"
    tiny_recipe(image_folder).save(path)
    code, out, err = cli("compare-models", path, "--models", "tiny_resnet,mobilenet_v3_small", "--latency-runs",
                         "5", "--out", out_file)
    assert code == 3, err
    kept = json.loads(out_file.read_text())
    assert [r["status"] for r in kept["rows"]] == ["measured", "stopped"] and kept["stopped"]
    assert "stopped" in err and str(out_file) in err and "Traceback" not in err
    assert "tiny_resnet" in out
