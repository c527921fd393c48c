"""The headless CLI as a user runs it: exit codes 0 / 1 / 2, readable output. In this process (`cli`: the same
`engine.cli.main` a subprocess runs, without an interpreter's start-up); the process boundary itself (Ctrl-C, no
traceback on the terminal, torchrun) is tested in test_hostile_cli.py and test_distributed_runs.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.train.runs import checkpoint_path
from tests.helpers import tiny_recipe


def test_help_lists_the_commands(cli):
    out = cli("--help")
    assert out.returncode == 0
    for command in ("train", "resume", "predict", "models", "scan", "layers", "recipe"):
        assert command in out.stdout


@pytest.fixture(scope="module")
def trained_run(image_folder, tmp_path_factory, cli):
    folder = tmp_path_factory.mktemp("cli")
    recipe = tiny_recipe("data/placeholder", "gradual_unfreezing", epochs=3, out=folder / "unused")
    path = folder / "recipe.json"
    recipe.save(path)
    out = cli("train", path, "--data", image_folder, "--out", folder / "runs", "--quiet")
    assert out.returncode == 0, out.stderr
    runs = list((folder / "runs").iterdir())
    assert len(runs) == 1
    return runs[0], out


def test_train_prints_phases_epochs_and_skipped_files(trained_run):
    run_dir, out = trained_run
    text = out.stderr
    assert "Phase 1 'head'" in text and "Phase 3 'all'" in text
    assert text.count("Epoch ") >= 3 and "val loss" in text
    assert "truncated.jpg" in text and "notes.jpg" in text
    assert "Freeze verified" in text
    assert (run_dir / "metrics.csv").read_text().count("\n") == 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    evaluation = json.loads((run_dir / "evaluation.json").read_text())  # written at the end of every finished run
    assert "Evaluated the best checkpoint on 6 validation images" in text and str(run_dir / "evaluation.json") in text
    assert len(evaluation["images"]) == 6


def test_predict_json_and_text(trained_run, image_folder, cli):
    run_dir, _ = trained_run
    out = cli("predict", checkpoint_path(run_dir, "best"), image_folder / "dog" / "dog_000.png",
               image_folder / "cat" / "notes.jpg", "--topk", "2", "--json")
    assert out.returncode == 0
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 2
    assert len(rows[0]["top"]) == 2 and rows[0]["error"] == ""
    assert rows[0]["top"][0]["class"] in ("cat", "dog", "fox")
    assert "not an image" in rows[1]["error"]
    out = cli("predict", run_dir, image_folder / "fox")  # a run folder and a whole folder
    assert out.returncode == 0
    assert len(out.stdout.strip().splitlines()) == 12


def test_bad_inputs_exit_2_with_a_message(tmp_path, image_folder, cli):
    assert cli("train", tmp_path / "missing.json").returncode == 2
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=tmp_path / "runs")
    data = recipe.to_dict()
    data["phases"][0]["lr"] = 0
    (tmp_path / "bad.json").write_text(json.dumps(data))
    out = cli("train", tmp_path / "bad.json")
    assert out.returncode == 2 and "phases[0].lr" in out.stderr
    out = cli("train", tmp_path / "bad.json", "--data", tmp_path / "nowhere")
    assert out.returncode == 2
    out = cli("scan", tmp_path / "nowhere")
    assert out.returncode == 2 and "nowhere" in out.stderr
    out = cli("predict", tmp_path / "missing.pt", image_folder / "dog")
    assert out.returncode == 2 and "missing.pt" in out.stderr


def test_offline_without_cached_weights_names_the_file(tmp_path, image_folder, cli):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=tmp_path / "runs", arch="resnet34")
    recipe.save(tmp_path / "r.json")
    out = cli("train", tmp_path / "r.json")
    assert out.returncode == 1
    assert "resnet34-b627a593.pth" in out.stderr and "hub" in out.stderr and "weights_file" in out.stderr


def test_resume_a_stopped_run(tmp_path, image_folder, cli):
    from engine.train import events as ev
    from engine.train.trainer import Trainer

    control = ev.RunControl()
    recipe = tiny_recipe(image_folder, "extract_then_finetune", epochs=2, out=tmp_path / "runs")
    stopped = Trainer(recipe, [lambda e: isinstance(e, ev.EpochFinished) and control.request_stop()], control).fit()
    assert stopped.status == "stopped"
    out = cli("resume", stopped.run_dir, "--quiet")
    assert out.returncode == 0, out.stderr
    assert "Resuming" in out.stderr
    assert json.loads((Path(stopped.run_dir) / "summary.json").read_text())["status"] == "finished"


def test_scan_models_layers_recipe(image_folder, tmp_path, cli):
    out = cli("scan", image_folder)
    assert out.returncode == 0 and "truncated.jpg" in out.stdout and "cat" in out.stdout
    out = cli("models", "--json")
    names = {m["name"] for m in json.loads(out.stdout)}
    assert {"resnet18", "vgg16_bn", "mobilenet_v3_large", "efficientnet_b7", "vit_b_32"} <= names
    out = cli("layers", "resnet18")
    assert out.returncode == 0 and "layer4" in out.stdout and "trainable 11,181,642 of 11,181,642" in out.stdout
    out = cli("recipe", "gradual_unfreezing", "--model", "vit_b_16", "-o", tmp_path / "vit.json")
    assert out.returncode == 0
    phases = json.loads((tmp_path / "vit.json").read_text())["phases"]
    assert phases[1]["trainable"] == ["block11", "neck", "head"]
