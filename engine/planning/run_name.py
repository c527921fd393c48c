"""The run's name: typed by the user, or generated from the model and the strategy ("resnet18-fine_tune_all").

The one rule, kept here and nowhere else: a recipe's name is *generated* when it is empty, the Recipe default
"run", or exactly `generated_name(arch, strategy)` of the recipe as it stands; any other name was typed and is
kept. Edits that change the model or the strategy run inside `name_follows`, so a generated name follows them
and a typed one stays. The fact lives in the recipe itself, so it survives saving, opening and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from engine.recipe import Recipe

UNNAMED = "run"  # Recipe.name's default


def generated_name(arch: str, strategy: str) -> str:
    return f"{arch}-{strategy}"


def has_generated_name(recipe: Recipe) -> bool:
    return recipe.name in ("", UNNAMED, generated_name(recipe.model.arch, recipe.strategy))


@contextmanager
def name_follows(recipe: Recipe) -> Iterator[None]:
    """Around an edit of the model or the strategy: a generated name is generated again afterwards."""
    generated = has_generated_name(recipe)
    yield
    if generated:
        recipe.name = generated_name(recipe.model.arch, recipe.strategy)


def set_run_name(recipe: Recipe, name: str) -> None:
    """A typed name (surrounding blanks dropped); an empty one gives the generated name back."""
    name = name.strip()
    recipe.name = name or generated_name(recipe.model.arch, recipe.strategy)
