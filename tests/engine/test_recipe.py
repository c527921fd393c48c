"""Recipes: JSON round trip, and errors that name the field and the allowed values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import RecipeError
from engine.planning.plan import plan_run
from engine.planning.presets import STRATEGIES, make_recipe
from engine.recipe import Recipe

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))


def test_round_trip_is_exact(tmp_path):
    recipe = make_recipe("gradual_unfreezing", "resnet18", "/data/pets", epochs=4)
    path = tmp_path / "r.json"
    recipe.save(path)
    assert Recipe.load(path) == recipe


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d["phases"][1].update(lr=-1), "phases[1].lr", "(0, 10]"),
    (lambda d: d["data"].update(augmentation="mixup"), "data.augmentation", "lesson, trivialaugment, none"),
    (lambda d: d["phases"][0]["optimizer"].update(name="lion"), "phases[0].optimizer.name", "adam, adamw, sgd"),
    (lambda d: d["phases"][2]["schedule"].update(name="poly"), "phases[2].schedule.name", "step, cosine"),
    (lambda d: d.update(batch_size="64"), "batch_size", "integer"),
    (lambda d: d["model"].update(arch_name="resnet18"), "model.arch_name", "not a known field"),
    (lambda d: d.update(device="tpu"), "device", "auto, cpu, cuda"),
    (lambda d: d["phases"][0].update(bn_modes={"layer1": "off"}), "phases[0].bn_modes[layer1]",
     "train, frozen_stats, frozen"),
    (lambda d: d["phases"][1].update(name="head"), "phases[1].name", "used twice"),
    (lambda d: d.update(phases=[]), "phases", "at least one"),
])
def test_bad_field_is_named(mutate, field, words):
    data = make_recipe("gradual_unfreezing", "resnet18", "/x").to_dict()
    mutate(data)
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict(data)
    assert info.value.field == field
    assert words in str(info.value)


def test_invalid_json_is_a_recipe_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(RecipeError, match="not valid JSON"):
        Recipe.load(bad)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_recipe_is_valid_and_plans(path):
    recipe = Recipe.load(path)
    plan = plan_run(recipe, num_classes=5)
    assert [p.error for p in plan.phases] == [""] * len(recipe.phases)
    assert all(p.unassigned == [] for p in plan.phases)
    assert plan.phases[-1].trainable_params > 0


def test_examples_cover_every_strategy():
    strategies = {json.loads(p.read_text())["strategy"] for p in EXAMPLES}
    assert set(STRATEGIES) <= strategies


def test_lesson_gradual_unfreezing_schedule():
    recipe = make_recipe("gradual_unfreezing", "resnet18")
    assert [(p.epochs, p.trainable) for p in recipe.phases] == [(5, ["head"]), (5, ["layer4", "head"]), (10, ["all"])]
    plan = plan_run(recipe, 10)
    assert plan.phases[2].groups == pytest.approx({"early": 1e-5, "middle": 1e-4, "head": 1e-3})


def test_examples_restore_the_best_epoch_where_their_presets_do():
    from engine.planning.presets import strategy_phases

    checked = 0
    for path in EXAMPLES:
        data = json.loads(path.read_text())
        if data["strategy"] not in STRATEGIES:
            continue
        preset = strategy_phases(data["strategy"])
        if len(preset) == len(data["phases"]):
            assert [p.get("restore_best", False) for p in data["phases"]] == [p.restore_best for p in preset], path.name
            checked += 1
    assert checked >= 8
