"""Parameter groups as data, and the learning-rate presets.

A group is (name, module paths or stage names, lr, weight decay). The torch dicts an optimizer wants are built
only here, only from trainable parameters, and only after checking that every trainable parameter is in
exactly one group. Frozen parameters are in no group, so they get no update (not even weight decay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from engine.errors import GroupAssignmentError
from engine.model.freezing import resolve
from engine.model.stages import StageMap, covers
from engine.recipe import GroupSpec, OptimizerConfig, PhaseConfig

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
              nn.LocalResponseNorm)


def preset_groups(stages: StageMap, preset: str, head_lr: float, layer_decay: float = 0.5) -> list[GroupSpec]:
    """Groups for a whole model; the optimizer later keeps only those with trainable parameters.

    discriminative (the lesson): early half of the body at head_lr/100, the later half at head_lr/10, the head
    at head_lr — ResNet: conv1, bn1, layer1, layer2 → 1e-5; layer3, layer4 → 1e-4; fc → 1e-3.
    layerwise: one group per stage, lr = head_lr × layer_decay^depth (depth in stages from the head).
    """
    if preset == "single":
        return [GroupSpec("all", ["all"], head_lr)]
    body = stages.body
    head = stages.get("head")
    if preset == "discriminative":
        split = math.ceil(len(body) / 2)
        groups = []
        early = [m for s in body[:split] for m in s.modules]
        middle = [m for s in body[split:] for m in s.modules]
        if early:
            groups.append(GroupSpec("early", early, head_lr / 100))
        if middle:
            groups.append(GroupSpec("middle", middle, head_lr / 10))
        groups.append(GroupSpec("head", list(head.modules), head_lr))
        return groups
    if preset == "layerwise":
        return [GroupSpec(s.name, list(s.modules), head_lr * layer_decay ** s.depth) for s in stages.stages]
    raise ValueError(f"unknown lr preset {preset!r}")


def phase_groups(stages: StageMap, phase: PhaseConfig) -> list[GroupSpec]:
    """The phase's explicit groups, or the ones its preset generates."""
    if phase.groups:
        return list(phase.groups)
    return preset_groups(stages, phase.lr_preset, phase.lr, phase.layer_decay)


def assignment(model: nn.Module, stages: StageMap, groups: list[GroupSpec], field_prefix: str = "groups",
               strict: bool = True) -> dict[str, str]:
    """Trainable parameter name → group name. With `strict`, a parameter in no group or in two is an error."""
    resolved = [(g.name, resolve(model, stages, g.modules, f"{field_prefix}[{i}].modules"))
                for i, g in enumerate(groups)]
    result: dict[str, str] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owners = [gname for gname, paths in resolved if any(covers(path, name) for path in paths)]
        if len(owners) > 1 and strict:
            raise GroupAssignmentError(f"trainable parameter '{name}' is in several groups: {', '.join(owners)}")
        if not owners:
            if strict:
                raise GroupAssignmentError(
                    f"trainable parameter '{name}' is in no parameter group; add its module "
                    f"('{name.rsplit('.', 1)[0]}') or stage ('{stages.stage_of(name)}') to a group, or freeze it")
            continue
        result[name] = owners[0]
    return result


def unassigned(model: nn.Module, stages: StageMap, groups: list[GroupSpec]) -> list[str]:
    """Trainable parameters that no group covers (for the GUI to flag)."""
    assigned = assignment(model, stages, groups, strict=False)
    return [n for n, p in model.named_parameters() if p.requires_grad and n not in assigned]


def no_decay_names(model: nn.Module) -> set[str]:
    """Biases, norm-layer parameters and 1-d tensors (timm's rule): weight decay only hurts them."""
    names = set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(module, NORM_TYPES) or pname.endswith("bias") or p.ndim <= 1:
                names.add(full)
    return names


@dataclass
class GroupInfo:
    name: str
    lr: float
    weight_decay: float
    params: int  # number of parameter elements


def torch_param_groups(model: nn.Module, stages: StageMap, groups: list[GroupSpec], optimizer: OptimizerConfig,
                       field_prefix: str = "groups") -> tuple[list[dict], list[GroupInfo]]:
    """Build torch's param-group dicts (deterministic order) and a summary of the non-empty groups."""
    owner = assignment(model, stages, groups, field_prefix)
    skip_decay = no_decay_names(model) if optimizer.no_decay_norm_bias else set()
    named = dict(model.named_parameters())
    torch_groups: list[dict] = []
    infos: list[GroupInfo] = []
    for spec in groups:
        members = [n for n in named if owner.get(n) == spec.name]
        if not members:
            continue  # e.g. the "early" group while only layer4 and the head train
        wd = optimizer.weight_decay if spec.weight_decay is None else spec.weight_decay
        decay = [n for n in members if n not in skip_decay]
        plain = [n for n in members if n in skip_decay]
        for names, group_wd in ((decay, wd), (plain, 0.0)):
            if names:
                torch_groups.append({"params": [named[n] for n in names], "lr": spec.lr, "weight_decay": group_wd,
                                     "name": spec.name})
        infos.append(GroupInfo(spec.name, spec.lr, wd, sum(named[n].numel() for n in members)))
    return torch_groups, infos


def current_lrs(optimizer) -> dict[str, float]:
    """Group name → current lr (sub-groups of one group share their lr)."""
    lrs: dict[str, float] = {}
    for group in optimizer.param_groups:
        lrs.setdefault(group.get("name", "all"), float(group["lr"]))
    return lrs
