"""Edits of a recipe's model: the architecture, its weights, its input channels.

Each keeps the recipe valid and consistent: a weights file of another architecture is dropped, a generated run
name follows the new architecture (engine/planning/run_name.py), the extra channels' statistics go when their
count no longer matches.
"""

from __future__ import annotations

from engine.model.zoo import NO_WEIGHTS, preferred_weights
from engine.planning.run_name import name_follows
from engine.recipe import Recipe


def set_arch(recipe: Recipe, arch: str) -> None:
    """Choose the architecture; pretrained weights become its preferred ones (`zoo.preferred_weights`: the default,
    or offline a cached version when the default is not cached); none stays none."""
    model = recipe.model
    with name_follows(recipe):
        model.arch = arch
        model.weights_file = ""  # a state dict of another architecture would not load
        if model.weights.strip().lower() not in NO_WEIGHTS:
            model.weights = preferred_weights(arch)


def set_weights(recipe: Recipe, weights: str) -> None:
    """Named weights ("DEFAULT", "IMAGENET1K_V2", "none"): a local weights file no longer applies."""
    recipe.model.weights, recipe.model.weights_file = weights, ""


def set_weights_file(recipe: Recipe, path: str) -> None:
    recipe.model.weights_file = path


def set_in_channels(recipe: Recipe, channels: int) -> None:
    """Input channels; the extra channels' mean / std go back to their defaults when their count changes (a list
    of the wrong length would not validate)."""
    recipe.model.in_channels = channels
    extra = max(0, channels - 3)
    for name in ("extra_channel_mean", "extra_channel_std"):
        if len(getattr(recipe.data, name)) != extra:
            setattr(recipe.data, name, [])
