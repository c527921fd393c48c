"""A recipe's phases checked against the real model before anything trains: a bad phase 3 fails before phase
1 spends an hour. Each phase's freeze plan must resolve, must train something, its explicit groups must each
train something, and every trainable parameter must be in exactly one group.

The trainer calls `validate_phase` for every phase during its preparation (the model's flags are then the
checked phase's, so per-phase facts such as "head only" can be read right after); `validate_phases` checks
them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from engine.errors import RecipeError
from engine.model.freezing import FreezeState, apply_freeze_plan, check_trains_something, resolve
from engine.model.groups import phase_groups, torch_param_groups
from engine.model.stages import StageMap, covers
from engine.recipe import GroupSpec, PhaseConfig


@dataclass
class CheckedPhase:
    freeze: FreezeState
    groups: list[GroupSpec]  # the explicit groups or those the phase's lr preset generates


def validate_phase(model: nn.Module, stages: StageMap, phase: PhaseConfig, index: int) -> CheckedPhase:
    """Apply and check one phase's freeze plan and groups; RecipeError / GroupAssignmentError naming the field."""
    prefix = f"phases[{index}]"
    freeze = apply_freeze_plan(model, stages, phase.trainable, phase.frozen, phase.bn_modes, prefix)
    check_trains_something(freeze, phase.trainable, phase.frozen, prefix)
    if phase.groups:
        check_groups_train(model, stages, phase.groups, prefix)
    specs = phase_groups(stages, phase)
    torch_param_groups(model, stages, specs, phase.optimizer, f"{prefix}.groups")
    return CheckedPhase(freeze, specs)


def validate_phases(model: nn.Module, stages: StageMap, phases: list[PhaseConfig]) -> list[CheckedPhase]:
    return [validate_phase(model, stages, phase, i) for i, phase in enumerate(phases)]


def check_groups_train(model: nn.Module, stages: StageMap, groups: list[GroupSpec], prefix: str) -> None:
    """An explicit group must hold a parameter that trains in this phase: a group naming only frozen modules
    (or modules without parameters) has a learning rate that would silently never be used."""
    params = dict(model.named_parameters())
    for j, group in enumerate(groups):
        where = f"{prefix}.groups[{j}].modules"
        paths = resolve(model, stages, group.modules, where)
        names = [n for n in params if any(covers(path, n) for path in paths)]
        if not names:
            raise RecipeError(where, f"group '{group.name}' names modules without parameters ({_listed(group)})")
        if not any(params[n].requires_grad for n in names):
            raise RecipeError(where, f"group '{group.name}' names only modules this phase freezes ({_listed(group)}): "
                                     f"its lr would never be used; remove the group or make its modules trainable")


def _listed(group: GroupSpec) -> str:
    return ", ".join(group.modules[:4]) + (" …" if len(group.modules) > 4 else "")
