"""Applying a strategy: one function, one result (the lesson's phases and epochs) whatever the recipe was; the
weights a strategy needs; a generated run name that follows the model and the strategy, a typed one kept."""

from __future__ import annotations

import pytest

from engine.planning.model_edits import set_arch, set_in_channels, set_weights, set_weights_file
from engine.planning.presets import STRATEGIES, apply_strategy, make_recipe, strategy_phases, tail_stages
from engine.planning.run_name import generated_name, has_generated_name, name_follows, set_run_name
from engine.recipe import Recipe

LESSON_EPOCHS = {"feature_extraction": [10], "lesson_feature_extraction": [10], "fine_tune_all": [10],
                 "gradual_unfreezing": [5, 5, 10],
                 "extract_then_finetune": [10, 5], "from_scratch": [20]}


def test_every_strategy_has_its_lessons_epochs():
    assert set(LESSON_EPOCHS) == set(STRATEGIES)
    for strategy, epochs in LESSON_EPOCHS.items():
        assert [p.epochs for p in make_recipe(strategy).phases] == epochs


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_strategy_gives_the_same_phases_whatever_the_recipe_had_before(strategy):
    results = []
    for before, epochs in (("feature_extraction", 2), ("gradual_unfreezing", 40), ("from_scratch", None)):
        recipe = make_recipe(before, "resnet18", "/data/pets", epochs=epochs)
        recipe.batch_size, recipe.device = 8, "cpu"
        apply_strategy(recipe, strategy)
        assert (recipe.batch_size, recipe.device, recipe.data.root) == (8, "cpu", "/data/pets")  # kept
        results.append(recipe.to_dict())
    assert results[0] == results[1] == results[2]
    assert [p.epochs for p in Recipe.from_dict(results[0]).phases] == LESSON_EPOCHS[strategy]
    made = make_recipe(strategy, "resnet18", "/data/pets", batch_size=8, device="cpu")  # the CLI's preset
    assert made.to_dict() == results[0]


def test_the_second_gradual_phase_thaws_the_tail_of_the_recipes_model():
    recipe = make_recipe("feature_extraction", "vit_b_16")
    apply_strategy(recipe, "gradual_unfreezing")
    assert recipe.phases == strategy_phases("gradual_unfreezing", None, tail_stages("vit_b_16"))
    assert recipe.phases[1].trainable == ["block11", "neck", "head"]


def test_from_scratch_drops_the_weights_and_leaving_it_brings_the_default_back():
    recipe = make_recipe("feature_extraction")
    set_weights_file(recipe, "/weights/mine.pth")
    apply_strategy(recipe, "from_scratch")
    assert (recipe.model.weights, recipe.model.weights_file) == ("none", "")
    apply_strategy(recipe, "fine_tune_all")
    assert recipe.model.weights == "DEFAULT"
    set_weights(recipe, "IMAGENET1K_V1")
    apply_strategy(recipe, "gradual_unfreezing")
    assert recipe.model.weights == "IMAGENET1K_V1"  # a chosen pretrained weights stays
    set_weights_file(recipe, "/weights/mine.pth")
    set_weights(recipe, "none")
    assert recipe.model.weights_file == ""


def test_an_unknown_strategy_is_refused_and_changes_nothing():
    recipe = make_recipe("feature_extraction")
    before = recipe.to_dict()
    with pytest.raises(ValueError, match="unknown strategy 'transfer'"):
        apply_strategy(recipe, "transfer")
    assert recipe.to_dict() == before


# --- the run name ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_generated_name_follows_the_strategy(strategy):
    recipe = make_recipe("feature_extraction")
    assert recipe.name == "resnet18-feature_extraction" and has_generated_name(recipe)
    apply_strategy(recipe, strategy)
    assert recipe.name == f"resnet18-{strategy}"


def test_a_generated_name_follows_the_model_and_a_typed_one_stays():
    recipe = make_recipe("gradual_unfreezing")
    set_arch(recipe, "mobilenet_v3_small")
    assert recipe.name == "mobilenet_v3_small-gradual_unfreezing"

    set_run_name(recipe, "  pets baseline ")
    assert recipe.name == "pets baseline" and not has_generated_name(recipe)
    set_arch(recipe, "resnet18")
    apply_strategy(recipe, "from_scratch")
    assert recipe.name == "pets baseline"

    set_run_name(recipe, "")  # an empty name gives the generated one back, which follows again
    assert recipe.name == "resnet18-from_scratch"
    apply_strategy(recipe, "fine_tune_all")
    assert recipe.name == "resnet18-fine_tune_all"


def test_the_recipe_default_name_counts_as_generated():
    recipe = Recipe()
    assert recipe.name == "run" and has_generated_name(recipe)
    apply_strategy(recipe, "fine_tune_all")
    assert recipe.name == generated_name(recipe.model.arch, "fine_tune_all")


def test_an_edit_that_changes_neither_model_nor_strategy_keeps_any_name():
    recipe = make_recipe("feature_extraction", name="mine")
    with name_follows(recipe):
        recipe.batch_size = 3
    assert recipe.name == "mine"


# --- model edits -------------------------------------------------------------------------------------------------

def test_choosing_a_model_drops_a_weights_file_of_the_old_one():
    recipe = make_recipe("feature_extraction")
    set_weights(recipe, "IMAGENET1K_V1")
    set_weights_file(recipe, "/weights/resnet18.pth")
    set_arch(recipe, "mobilenet_v3_small")
    assert (recipe.model.arch, recipe.model.weights, recipe.model.weights_file) == ("mobilenet_v3_small", "DEFAULT",
                                                                                    "")
    set_weights(recipe, "none")
    set_arch(recipe, "resnet18")
    assert recipe.model.weights == "none"  # training from scratch stays from scratch


def test_changing_input_channels_resets_extra_channel_statistics_of_the_wrong_length():
    recipe = make_recipe("feature_extraction")
    set_in_channels(recipe, 5)
    recipe.data.extra_channel_mean, recipe.data.extra_channel_std = [0.4, 0.5], [0.2, 0.3]
    set_in_channels(recipe, 5)
    assert recipe.data.extra_channel_mean == [0.4, 0.5]
    set_in_channels(recipe, 4)
    assert (recipe.data.extra_channel_mean, recipe.data.extra_channel_std) == ([], [])
    recipe.validate()
