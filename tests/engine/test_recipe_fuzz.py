"""The recipe loader against hostile input (property-based): for any mutation of a valid recipe, loading
either succeeds with a recipe that round-trips as strict JSON, or raises RecipeError naming a field (or the
file) in one line. Never another exception. A few hundred cases here; bench/recipe_fuzz.py runs thousands."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from engine.errors import RecipeError
from engine.recipe import Recipe
from tests.recipe_mutations import field_is_named, mutated_recipe_bytes, mutated_recipe_dicts

FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _assert_clear(exc: RecipeError) -> None:
    message = str(exc)
    assert field_is_named(exc.field, message), exc.field
    assert "\n" not in message and len(message) < 1200, message[:300]
    assert "weights_only" not in message


@FAST
@given(mutated_recipe_dicts())
def test_any_mutated_recipe_loads_or_names_the_field(data):
    try:
        recipe = Recipe.from_dict(data)
    except RecipeError as exc:
        _assert_clear(exc)
        return
    text = json.dumps(recipe.to_dict(), allow_nan=False)  # a loaded recipe holds finite numbers only
    assert Recipe.from_json(text) == recipe


@FAST
@given(mutated_recipe_bytes())
def test_any_mutated_recipe_file_loads_or_names_the_problem(tmp_path_factory, raw):
    path = tmp_path_factory.getbasetemp() / "fuzzed_recipe.json"  # one file, rewritten by every example
    path.write_bytes(raw)
    try:
        Recipe.load(path)
    except RecipeError as exc:
        _assert_clear(exc)
