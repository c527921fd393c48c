"""Edits of the phase list and of a phase's settings: each keeps the recipe valid or refuses, naming the field,
and changes nothing when it refuses. No Qt."""

from __future__ import annotations

import pytest

from engine.errors import RecipeError
from engine.planning.phase_edits import (
    add_phase,
    move_phase,
    remove_phase,
    set_lr_preset,
    set_momentum,
    set_optimizer,
    update_phase,
)
from engine.planning.presets import make_recipe
from engine.recipe import GroupSpec


def test_a_new_phase_copies_its_predecessor_under_a_new_name():
    recipe = make_recipe("feature_extraction")
    assert add_phase(recipe, 0) == 1
    first, added = recipe.phases
    assert added.name == "phase1" and added.trainable == ["head"]
    added.trainable.append("layer4")
    added.schedule.name = "cosine"
    assert first.trainable == ["head"] and first.schedule.name == "step"  # a copy, not the same objects
    recipe.validate()


def test_phases_move_and_the_last_one_cannot_be_removed():
    recipe = make_recipe("gradual_unfreezing")
    assert move_phase(recipe, 0, +1) == 1
    assert [p.name for p in recipe.phases] == ["head+layer4", "head", "all"]
    assert move_phase(recipe, 0, -1) == 0  # outside: nothing moves
    assert [p.name for p in recipe.phases] == ["head+layer4", "head", "all"]
    remove_phase(recipe, 2)
    remove_phase(recipe, 0)
    assert [p.name for p in recipe.phases] == ["head"]
    with pytest.raises(RecipeError, match="at least one phase"):
        remove_phase(recipe, 0)
    assert len(recipe.phases) == 1


def test_update_phase_writes_valid_settings():
    recipe = make_recipe("gradual_unfreezing")
    recipe.phases[1].groups = [GroupSpec("g", ["all"], 1e-3)]
    update_phase(recipe, 1, name="tail", epochs=7, trainable=["layer3", "layer9"], lr=2e-3, schedule="cosine")
    phase = recipe.phases[1]
    assert (phase.name, phase.epochs, phase.trainable, phase.lr, phase.schedule.name) == (
        "tail", 7, ["layer3", "layer9"], 2e-3, "cosine")  # an unknown stage is stored, for the plan to report
    update_phase(recipe, 1, lr_preset="layerwise")
    assert (phase.lr_preset, phase.groups) == ("layerwise", [])  # the preset replaces the explicit groups


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "phases[1].name"), ({"name": "head"}, "phases[1].name"), ({"epochs": 0}, "phases[1].epochs"),
    ({"trainable": []}, "phases[1].trainable"), ({"lr_preset": "fast"}, "phases[1].lr_preset"),
    ({"lr": 0.0}, "phases[1].lr"), ({"schedule": "linear"}, "phases[1].schedule.name"),
    ({"epochs": 3, "lr": -1.0}, "phases[1].lr"),
])
def test_update_phase_refuses_invalid_settings_and_changes_nothing(change, field):
    recipe = make_recipe("gradual_unfreezing")
    before = recipe.to_dict()
    with pytest.raises(RecipeError) as caught:
        update_phase(recipe, 1, **change)
    assert caught.value.field == field
    assert recipe.to_dict() == before


def test_settings_that_only_make_sense_together_change_together():
    phase = make_recipe("fine_tune_all").phases[0]
    phase.groups = [GroupSpec("g", ["all"], 1e-3)]
    set_lr_preset(phase, "single")
    assert (phase.lr_preset, phase.groups) == ("single", [])
    with pytest.raises(RecipeError):
        set_lr_preset(phase, "custom")

    set_optimizer(phase, "sgd")
    phase.optimizer.nesterov = True
    set_momentum(phase, 0.5)
    assert phase.optimizer.nesterov
    set_momentum(phase, 0.0)
    assert not phase.optimizer.nesterov  # Nesterov needs momentum
    set_momentum(phase, 0.9)
    phase.optimizer.nesterov = True
    set_optimizer(phase, "adamw")
    assert not phase.optimizer.nesterov  # and SGD
    phase.validate("phases[0]")
