"""What a recipe will do, before it runs: per phase, the layer tree with its freeze state, BN modes and groups,
the trainable count, parameters no group covers, and every group's learning rate over the run.

Models are built on the meta device (no memory, no weights, no download), so the GUI can show a ViT-L's tree
instantly. The result is plain data: the CLI prints it, the GUI's tree and plots are adapters over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn

from engine.errors import RecipeError, ThawError
from engine.model import zoo
from engine.model.freezing import apply_freeze_plan, count_params
from engine.model.groups import assignment, phase_groups, torch_param_groups
from engine.model.layer_tree import LayerNode, build_layer_tree
from engine.model.stages import StageMap, compute_stages
from engine.model.surgery import adapt_input_channels, replace_head
from engine.recipe import HeadConfig, Recipe, lr_factor
from engine.train.optim import preview_lrs


@dataclass
class PhasePlan:
    index: int
    name: str
    tree: LayerNode
    trainable_params: int
    total_params: int
    groups: dict[str, float]  # non-empty groups → lr
    group_params: dict[str, int]  # non-empty groups → number of parameter elements
    unassigned: list[str]  # trainable parameters in no group
    error: str = ""  # what is wrong with this phase (a bad path, a parameter in two groups), "" when fine


@dataclass
class RunPlan:
    stages: StageMap
    head_path: str
    phases: list[PhasePlan] = field(default_factory=list)
    lr_curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # group → (epoch, lr) points


@lru_cache(maxsize=8)
def _cached_skeleton(arch: str, num_classes: int, in_channels: int, dropout: float, hidden: int
                     ) -> tuple[nn.Module, str, StageMap]:
    model, head_path = skeleton(arch, num_classes, in_channels, HeadConfig(dropout, hidden))
    return model, head_path, compute_stages(model, head_path)


def skeleton(arch: str, num_classes: int, in_channels: int = 3, head=None) -> tuple[nn.Module, str]:
    """The architecture with its new head and input layer, on the meta device when possible."""
    try:
        with torch.device("meta"):
            model = zoo.get_model(arch)
    except Exception:  # noqa: BLE001 - RegNet needs real tensors to compute its widths
        model = zoo.get_model(arch)
    adapt_input_channels(model, in_channels)
    head_path = replace_head(model, num_classes, head)
    return model, head_path


def plan_run(recipe: Recipe, num_classes: int = 2, steps_per_epoch: int = 10) -> RunPlan:
    # One skeleton per architecture and head, reused across phases and edits: plan_run sets every flag it reads.
    head = recipe.model.head
    model, head_path, stages = _cached_skeleton(recipe.model.arch, num_classes, recipe.model.in_channels,
                                                head.dropout, head.hidden)
    plan = RunPlan(stages, head_path)
    starts = recipe.phase_start_epochs()
    for i, phase in enumerate(recipe.phases):
        error = ""
        groups_lr: dict[str, float] = {}
        group_params: dict[str, int] = {}
        unassigned: list[str] = []
        try:
            freeze = apply_freeze_plan(model, stages, phase.trainable, phase.frozen, phase.bn_modes, f"phases[{i}]")
            bn_modes = freeze.bn_modes
        except RecipeError as exc:  # show the phase as fully frozen, not with the previous phase's flags
            error, bn_modes = str(exc), {}
            for p in model.parameters():
                p.requires_grad_(False)
        specs = phase_groups(stages, phase)
        try:
            owners = assignment(model, stages, specs, f"phases[{i}].groups", strict=False)
            unassigned = [n for n, p in model.named_parameters() if p.requires_grad and n not in owners]
            if not error:
                _, infos = torch_param_groups(model, stages, specs, phase.optimizer, f"phases[{i}].groups")
                scale = lr_factor(recipe.distributed.lr_scaling, recipe.distributed.processes)  # as the run will
                groups_lr = {g.name: g.lr * scale for g in infos}
                group_params = {g.name: g.params for g in infos}
        except ThawError as exc:
            owners = {}
            error = error or str(exc)
        trainable, total = count_params(model)
        tree = build_layer_tree(model, stages, bn_modes, owners)
        plan.phases.append(PhasePlan(i, phase.name, tree, trainable, total, groups_lr, group_params, unassigned,
                                     error))
        if groups_lr:
            for name, values in preview_lrs(groups_lr, phase, steps_per_epoch).items():
                points = plan.lr_curves.setdefault(name, [])
                points.extend((starts[i] + k / steps_per_epoch, lr) for k, lr in enumerate(values))
    return plan
