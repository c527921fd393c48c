"""Edits of a recipe's phase list and of a phase's own settings, each keeping the recipe valid.

Every change is checked before it is written: a bad value raises RecipeError naming the field
(`phases[1].epochs`) and leaves the recipe as it was. Settings that only make sense together change together
(choosing an lr preset drops the explicit groups it replaces; Nesterov momentum goes when SGD or momentum does).
"""

from __future__ import annotations

import copy

from engine.errors import RecipeError
from engine.recipe import LR_PRESETS, SCHEDULES, PhaseConfig, Recipe


def unique_phase_name(phases: list[PhaseConfig], base: str = "phase") -> str:
    taken = {p.name for p in phases}
    return next(f"{base}{i}" for i in range(1, len(phases) + 2) if f"{base}{i}" not in taken)


def add_phase(recipe: Recipe, after: int) -> int:
    """A new phase after `after`, starting as a copy of it (own lists, a new name); returns its index."""
    phase = copy.deepcopy(recipe.phases[after])
    phase.name = unique_phase_name(recipe.phases)
    recipe.phases.insert(after + 1, phase)
    return after + 1


def remove_phase(recipe: Recipe, at: int) -> None:
    if len(recipe.phases) < 2:
        raise RecipeError("phases", "a run needs at least one phase")
    recipe.phases.pop(at)


def move_phase(recipe: Recipe, at: int, offset: int) -> int:
    """Swap the phase at `at` with the one `offset` away; returns where it went (`at` when that is outside)."""
    to = at + offset
    if not 0 <= to < len(recipe.phases):
        return at
    recipe.phases[at], recipe.phases[to] = recipe.phases[to], recipe.phases[at]
    return to


def update_phase(recipe: Recipe, row: int, *, name: str | None = None, epochs: int | None = None,
                 trainable: list[str] | None = None, lr_preset: str | None = None, lr: float | None = None,
                 schedule: str | None = None) -> None:
    """Change the given settings of phase `row` (`schedule` is the schedule's name). Stage names and module
    paths in `trainable` are stored as given: one the model lacks is the plan's error to report, not a refusal."""
    where = f"phases[{row}]"
    if name is not None and not name:
        raise RecipeError(f"{where}.name", "is empty")
    if name is not None and any(p.name == name for i, p in enumerate(recipe.phases) if i != row):
        raise RecipeError(f"{where}.name", f"'{name}' is the name of another phase")
    if epochs is not None and epochs < 1:
        raise RecipeError(f"{where}.epochs", f"must be >= 1, got {epochs}")
    if trainable is not None and not trainable:
        raise RecipeError(f"{where}.trainable", "lists nothing to train; use [\"head\"] for feature extraction")
    if lr_preset is not None and lr_preset not in LR_PRESETS:
        raise RecipeError(f"{where}.lr_preset", f"'{lr_preset}' is not one of {', '.join(LR_PRESETS)}")
    if lr is not None and not lr > 0:
        raise RecipeError(f"{where}.lr", f"must be > 0, got {lr}")
    if schedule is not None and schedule not in SCHEDULES:
        raise RecipeError(f"{where}.schedule.name", f"'{schedule}' is not one of {', '.join(SCHEDULES)}")

    phase = recipe.phases[row]
    if name is not None:
        phase.name = name
    if epochs is not None:
        phase.epochs = epochs
    if trainable is not None:
        phase.trainable = list(trainable)
    if lr_preset is not None:
        set_lr_preset(phase, lr_preset)
    if lr is not None:
        phase.lr = lr
    if schedule is not None:
        phase.schedule.name = schedule


def set_lr_preset(phase: PhaseConfig, preset: str) -> None:
    """Generate the groups from `preset` again: explicit groups would otherwise still win over it."""
    if preset not in LR_PRESETS:
        raise RecipeError("lr_preset", f"'{preset}' is not one of {', '.join(LR_PRESETS)}")
    phase.groups = []
    phase.lr_preset = preset


def set_optimizer(phase: PhaseConfig, name: str) -> None:
    phase.optimizer.name = name
    if name != "sgd":
        phase.optimizer.nesterov = False  # Nesterov exists only for SGD; the recipe would be invalid


def set_momentum(phase: PhaseConfig, momentum: float) -> None:
    phase.optimizer.momentum = momentum
    if momentum == 0:
        phase.optimizer.nesterov = False
