"""Hostile input gets one line naming what and where, and exit 2, before anything trains: recipe files
(deep, mis-encoded, huge numbers, NaN/inf, empty names), runs folders that cannot be written, sizes that
cannot be allocated, data that cannot feed the model, phases that would train nothing."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

from engine.cli import main as cli_main
from engine.data.datasets import prepare_data
from engine.data.memory import check_input_memory
from engine.data.scan import scan_folder
from engine.errors import BadInputError, RecipeError
from engine.model.build import build_model
from engine.model.freezing import apply_freeze_plan
from engine.model.phase_checks import validate_phases
from engine.planning.presets import make_recipe
from engine.recipe import GroupSpec, Recipe, recipe_limits
from tests.helpers import make_image_folder, tiny_recipe

DOCS = Path(__file__).parents[2] / "docs" / "RECIPES.md"


def _valid() -> dict:
    return make_recipe("gradual_unfreezing", "resnet18", "/data/pets").to_dict()


def _text(edit) -> str:
    data = _valid()
    edit(data)
    return json.dumps(data)


# --- recipe files --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, field, words", [
    (b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "(file)", "nests objects or lists too deeply"),
    (b'{"name": "caf\xe9"}', "(file)", "is not valid UTF-8 text (byte 13: 0xe9); save it as UTF-8"),
    (b'{"seed": ' + b"7" * 5001 + b"}", "seed", "is an integer of 5001 digits, far outside any allowed range"),
    (b'{"seed": 1e30}', "seed", "must be an integer, got 1e+30"),
    (b'{"seed": 1000000000000000000000000000000}', "seed", "must be in [0, 4294967295], got an integer of about"),
    (b'{"model": {"in_channels": 1e30}}', "model.in_channels", "must be an integer, got 1e+30"),
    (b'{"model": {"head": {"hidden": 1000000000000}}}', "model.head.hidden", "must be in [0, 65536]"),
    (b'{"data": {"num_workers": 100000000000000000000000000000}}', "data.num_workers", "must be in [-1, 256]"),
    (b'{"data": {"feature_views": 100000000000000000000000000000}}', "data.feature_views", "must be in [1, 64]"),
    (b'{"data": {"resize_size": 100000, "crop_size": 90000}}', "data.resize_size", "must be in [0, 4096]"),
    (b'{"batch_size": 10000000}', "batch_size", "must be in [1, 65536], got 10000000"),
    (b'{"early_stopping": {"min_delta": NaN}}', "early_stopping.min_delta", "must be a finite number, got nan"),
    (b'{"phases": [{"lr": Infinity}]}', "phases[0].lr", "must be a finite number, got inf"),
    (b'{"phases": [{"lr": 1e400}]}', "phases[0].lr", "must be a finite number, got inf"),
    (b'{"phases": [{"optimizer": {"weight_decay": NaN}}]}', "phases[0].optimizer.weight_decay", "finite"),
    (b'{"phases": [{"schedule": {"div_factor": NaN}}]}', "phases[0].schedule.div_factor", "finite"),
    (b'{"phases": [{"schedule": {"warmup_epochs": -Infinity}}]}', "phases[0].schedule.warmup_epochs", "finite"),
    (b'{"phases": [{"lr": 1000000.0}]}', "phases[0].lr", "must be in (0, 10], got 1000000"),
    (b'{"phases": [{"trainable": [""]}]}', "phases[0].trainable[0]", "is empty"),
    (b'{"phases": [{"frozen": ["layer1", " "]}]}', "phases[0].frozen[1]", "is only white space"),
    (b'{"phases": [{"bn_modes": {"": "frozen"}}]}', "phases[0].bn_modes['']", "names no module"),
    (b'{"phases": [{"groups": [{"name": "g", "modules": [""], "lr": 0.1}]}]}', "phases[0].groups[0].modules[0]",
     "is empty"),
    (b'{"name": "' + b"x" * 300 + b'"}', "name", "is 300 characters long; at most 100 are allowed"),
    (b'{"data": {"root": "/data/\\u0000x"}}', "data.root", "contains the unprintable character '\\x00'"),
    (b'{"name": "\\ud800"}', "name", "is not valid text (an unpaired surrogate at character 0)"),
    (b'{"device": "cuda:x"}', "device", "'cuda:x' is not one of auto, cpu, cuda, cuda:N, mps"),
    (b'{"seed": 1, "seed": 2}', "(file)", "the key 'seed' appears twice in one object"),
    (b'[1, 2]', "(root)", "must be an object, got a list"),
])
def test_a_hostile_recipe_file_names_the_field(tmp_path, raw, field, words):
    path = tmp_path / "recipe.json"
    path.write_bytes(raw)
    with pytest.raises(RecipeError) as info:
        Recipe.load(path)
    assert info.value.field == field
    assert words in str(info.value) and "\n" not in str(info.value)


def test_utf16_and_bom_recipes_are_read(tmp_path):
    recipe = make_recipe("feature_extraction", "resnet18", "/data/pets")
    for encoding in ("utf-16", "utf-8-sig", "utf-32"):  # PowerShell's `>` writes UTF-16 with a BOM
        path = tmp_path / f"{encoding}.json"
        path.write_bytes(recipe.to_json().encode(encoding))
        assert Recipe.load(path) == recipe


def test_a_recipe_path_that_is_a_folder_or_too_large_says_so(tmp_path):
    with pytest.raises(RecipeError, match=f"{re.escape(str(tmp_path))} is a folder, not a recipe file"):
        Recipe.load(tmp_path)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (5 * 2**20) + b"{}")
    with pytest.raises(RecipeError, match="is 5.0 MB; a recipe is a small JSON file"):
        Recipe.load(big)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("edit, field", [
    (lambda d, v: d["early_stopping"].update(min_delta=v), "early_stopping.min_delta"),
    (lambda d, v: d["phases"][0].update(lr=v), "phases[0].lr"),
    (lambda d, v: d["phases"][1]["optimizer"].update(weight_decay=v), "phases[1].optimizer.weight_decay"),
    (lambda d, v: d["phases"][2]["schedule"].update(div_factor=v), "phases[2].schedule.div_factor"),
    (lambda d, v: d["phases"][0]["schedule"].update(warmup_epochs=v), "phases[0].schedule.warmup_epochs"),
    (lambda d, v: d.update(label_smoothing=v), "label_smoothing"),
])
def test_nan_and_infinity_are_refused_for_every_float(edit, field, value):
    data = _valid()
    edit(data, value)
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict(data)
    assert info.value.field == field and "finite" in str(info.value)


def test_every_bounded_field_is_documented_with_its_range():
    docs = DOCS.read_text(encoding="utf-8")
    limits = recipe_limits()
    assert len(limits) >= 35 and limits["batch_size"] == "[1, 65536]" and limits["phases[].lr"] == "(0, 10]"
    for path, allowed in limits.items():
        assert f"| `{path}` | {allowed} |" in docs, path


# --- the CLI: one line, exit 2, nothing trained ----------------------------------------------------------------

def _train(tmp_path, capsys, recipe: Recipe | None = None, raw: str | None = None, *extra) -> tuple[int, str]:
    path = tmp_path / "recipe.json"
    path.write_text(raw if raw is not None else recipe.to_json(), encoding="utf-8")
    code = cli_main(["train", str(path), "--quiet", *map(str, extra)])
    return code, capsys.readouterr().err


def test_cli_refuses_a_hostile_recipe_in_one_line(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, raw=_text(lambda d: d["phases"][1].update(trainable=[""])))
    assert code == 2 and err == "error: recipe field 'phases[1].trainable[0]': is empty\n"
    code, err = _train(tmp_path, capsys, raw=_text(lambda d: d.update(seed=12345)).replace("12345", "7" * 5001))
    assert code == 2 and err.startswith("error: recipe field 'seed': is an integer of 5001 digits")
    assert cli_main(["train", str(tmp_path)]) == 2
    assert f"{tmp_path} is a folder, not a recipe file" in capsys.readouterr().err
    code, err = _train(tmp_path, capsys, make_recipe("feature_extraction", "resnet18", "/d"), None, "--epochs", 0)
    assert code == 2 and err == "error: --epochs must be at least 1, got 0\n"


@pytest.mark.parametrize("where", ["proc", "file", "under_a_file", "read_only"])
def test_a_runs_folder_that_cannot_hold_runs_is_refused_before_the_data_is_read(tmp_path, capsys, where):
    if where == "read_only" and (sys.platform == "win32" or os.geteuid() == 0):
        pytest.skip("permissions do not stop root (or Windows' owner) from writing")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    out, words = {"proc": ("/proc/thaw-runs", "is inside /proc, a kernel file system"),
                  "file": (blocker, "is a file, not a folder"),
                  "under_a_file": (blocker / "runs", "cannot be written (Not a directory)"),
                  "read_only": (read_only, "cannot be written (Permission denied)")}[where]
    recipe = tiny_recipe(tmp_path / "no-such-data", out=out)  # the data is never looked at
    code, err = _train(tmp_path, capsys, recipe)
    assert code == 2 and words in err and "no-such-data" not in err and err.count("\n") == 1


def test_sizes_that_cannot_be_allocated_say_how_much_memory_they_need(tmp_path, capsys):
    with pytest.raises(BadInputError, match=r"one batch of input images alone needs 12.0 TiB as float32, more "
                                            r"than this machine's 16.0 GiB of memory"):
        check_input_memory(65536, 3, 4096, available=16 * 2**30)
    check_input_memory(64, 3, 224, available=16 * 2**30)
    recipe = tiny_recipe(tmp_path, out=tmp_path / "runs")
    recipe.batch_size, recipe.data.resize_size, recipe.data.crop_size = 65536, 4096, 4096
    code, err = _train(tmp_path, capsys, recipe)
    assert code == 2 and "batch_size 65536 × 3 channels × 4096×4096 px (data.crop_size)" in err
    assert "lower batch_size or data.crop_size" in err


# --- data ----------------------------------------------------------------------------------------------------------

def test_in_channels_that_ordinary_images_cannot_feed_says_so(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    recipe = tiny_recipe(data, out=tmp_path / "runs")
    recipe.model.in_channels = 5
    code, err = _train(tmp_path, capsys, recipe)
    assert code == 2
    assert ("none of its 6 image files can feed a model with model.in_channels 5: image files have 1, 3 or 4 "
            "channels, so 5-channel input needs .npy arrays (H×W×5)") in err
    assert "need at least two classes" not in err


def test_an_empty_class_folder_is_refused_naming_it(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", classes=3, per_class=4)
    (data / "owl").mkdir()
    (data / "owl" / "broken.png").write_bytes(b"not a png")
    recipe = tiny_recipe(data, out=tmp_path / "runs")
    code, err = _train(tmp_path, capsys, recipe)
    assert code == 2
    assert "class folder 'owl' (1 unusable files) has no usable training images; every class needs some" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert cli_main(["scan", str(data)]) == 0  # the scan still shows it, as the studio's data tab does
    assert "owl" in capsys.readouterr().out


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_a_class_folder_linked_to_another_is_counted_once_with_a_warning(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=4)
    os.symlink(data / "cat", data / "kitty")
    report = scan_folder(data)
    assert report.classes == ["cat", "dog"] and report.num_samples == 8
    problem = next(p for p in report.problems if p.path == str(data / "kitty"))
    assert problem.is_folder and problem.reason == "same folder as class 'cat' (a symbolic link); not counted twice"
    prepared = prepare_data(tiny_recipe(data).data, lambda x: x, lambda x: x, 3)
    assert prepared.classes == ["cat", "dog"]

    split = make_image_folder(tmp_path / "split", classes=2, per_class=4, layout="train_val")
    import shutil

    shutil.rmtree(split / "val" / "dog")
    os.symlink(split / "train" / "dog", split / "val" / "dog")  # validation would score training images
    report = scan_folder(split)
    assert report.split_counts["val"]["dog"] == 0 and report.split_counts["train"]["dog"] == 4
    assert any(p.path == str(split / "val" / "dog") and "same folder as class 'train/dog'" in p.reason
               for p in report.problems)


# --- phases checked against the model before anything trains --------------------------------------------------

@pytest.fixture(scope="module")
def resnet():
    built = build_model(make_recipe("fine_tune_all", "resnet18").model, 3, pretrained=False)
    return built.model, built.stages


def test_a_phase_whose_frozen_list_covers_what_it_trains_fails_before_phase_one(resnet):
    model, stages = resnet
    recipe = make_recipe("gradual_unfreezing", "resnet18")
    recipe.phases[2].frozen = ["all"]
    with pytest.raises(RecipeError) as info:
        validate_phases(model, stages, recipe.phases)
    assert info.value.field == "phases[2].frozen" and "the phase would train no parameter" in str(info.value)
    recipe.phases[2].frozen = ["layer1"]
    checked = validate_phases(model, stages, recipe.phases)
    assert checked[0].freeze.trainable == ["fc.weight", "fc.bias"]
    assert "layer2.0.conv1.weight" in checked[2].freeze.trainable
    assert not any(name.startswith("layer1.") for name in checked[2].freeze.trainable)


def test_a_group_naming_only_frozen_modules_is_refused(resnet):
    model, stages = resnet
    recipe = make_recipe("gradual_unfreezing", "resnet18")
    recipe.phases[1].groups = [GroupSpec("body", ["layer2"], 1e-4), GroupSpec("rest", ["layer4", "head"], 1e-3)]
    with pytest.raises(RecipeError) as info:
        validate_phases(model, stages, recipe.phases)
    assert info.value.field == "phases[1].groups[0].modules"
    assert "group 'body' names only modules this phase freezes (layer2): its lr would never be used" in str(info.value)


def test_a_bn_modes_error_names_the_key(resnet):
    model, stages = resnet
    with pytest.raises(RecipeError) as info:
        apply_freeze_plan(model, stages, ["all"], [], {"layer1": "frozen", "layer9": "frozen"}, "phases[0]")
    assert info.value.field == "phases[0].bn_modes[layer9]"
    assert "'layer9' is neither a stage" in str(info.value)
