"""The model side of a run over several processes: DistributedDataParallel around what trains, SyncBatchNorm, the
learning-rate scaling rule, and a resumed phase adapted to another number of processes.

**DDP** wraps the module a phase trains — the whole model, or the head alone on cached features — and is built
again whenever that changes (a phase boundary changes `requires_grad`, and DDP registers the parameters that
train when it is built). Building it broadcasts rank 0's parameters and buffers, so every rank starts a phase
identical. Buffers are broadcast from rank 0 at every forward (DDP's default): BatchNorm layers that train keep
one set of running statistics, the one rank 0's checkpoint holds. Models with auxiliary classifiers (GoogLeNet,
Inception) leave those unused in the loss, so DDP is told to look for unused parameters there only.

**SyncBatchNorm** (`distributed.sync_batchnorm`): every BatchNorm layer becomes torch's SyncBatchNorm, which uses the
global batch's statistics when it trains and is a plain BatchNorm in eval mode (frozen layers never synchronise).
PyTorch implements it for GPUs only, so the recipe refuses it on the CPU.

**Learning-rate scaling** (`distributed.lr_scaling`): the recipe's rates are meant for one process's batch; with W
processes a step sees W× more images. "linear" multiplies every group's rate by W (Goyal et al., 2017: pair it
with warm-up), "sqrt" by √W, "none" (the default) keeps them. recipe.json keeps the rates as written; the phases'
groups (and the PhaseStarted event, the studio's and metrics.csv's rates) carry the scaled ones.
"""

from __future__ import annotations

import gc
import logging
import warnings
from typing import Any

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.recipe import GroupSpec, Recipe, lr_factor
from engine.train.distributed import DistContext
from engine.train.optim import build_schedule

log = logging.getLogger(__name__)

LR_RATE_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")  # every rate-like value torch's schedulers keep in a group


def scaled_groups(groups: list[GroupSpec], factor: float) -> list[GroupSpec]:
    if factor == 1.0:
        return groups
    return [GroupSpec(g.name, list(g.modules), g.lr * factor, g.weight_decay) for g in groups]


def with_sync_batchnorm(model: nn.Module, recipe: Recipe, dist: DistContext) -> nn.Module:
    if not (dist.active and recipe.distributed.sync_batchnorm):
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap_for_training(module: nn.Module, dist: DistContext) -> nn.Module:
    """`module` in DistributedDataParallel (built once per set of trainable parameters); itself in one process."""
    if not dist.active:
        return module
    trainable = tuple(id(p) for p in module.parameters() if p.requires_grad)
    key = (id(module), trainable)
    if dist.wrapped is not None and dist.wrapped[0] == key:
        return dist.wrapped[1]
    dist.wrapped = None
    gc.collect()  # the previous wrapper's reducer must let go of its gradient hooks before a new one registers
    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    unused = bool(getattr(module, "aux_logits", False))  # auxiliary classifiers take no part in the loss
    wrapper = DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=unused)
    dist.wrapped = (key, wrapper)
    return wrapper


def adapt_resumed_phase(phase, checkpoint: dict[str, Any], dist: DistContext, epoch_in_phase: int) -> None:
    """A checkpoint taken by another number of processes: the rates scaled to this one (when the recipe scales
    them) and a per-batch schedule placed at the start of epoch `epoch_in_phase` of the phase with this run's steps
    per epoch (the global batch, hence the steps of an epoch, changed)."""
    saved_world = int(checkpoint.get("world_size", 1))
    if saved_world == dist.world_size:
        return
    scaling = phase.setup.recipe.distributed.lr_scaling
    ratio = lr_factor(scaling, dist.world_size) / lr_factor(scaling, saved_world)
    optimizer, scheduler = phase.optimizer, phase.schedule.scheduler
    if ratio != 1.0:
        for group in optimizer.param_groups:
            for key in LR_RATE_KEYS:
                if key in group:
                    group[key] *= ratio
        if scheduler is not None and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
        # phase.group_lrs came from the recipe scaled for this run's processes already (setup.py): only what the
        # checkpoint restored (the optimizer's and the schedule's rates) carries the old factor.
    if phase.schedule.per_batch:
        _restart_schedule(phase, epoch_in_phase)


def _restart_schedule(phase, epoch_in_phase: int) -> None:
    """Rebuild the per-batch schedule for this run's steps per epoch and move it to the epoch's first step."""
    optimizer = phase.optimizer
    for group in optimizer.param_groups:  # the rate a fresh schedule starts from: the group's peak
        group["lr"] = group.get("max_lr", group.get("initial_lr", group["lr"]))
        for key in ("initial_lr", "max_lr", "min_lr"):
            group.pop(key, None)
    config = phase.config
    schedule = build_schedule(optimizer, config.schedule, config.epochs, phase.setup.steps_per_epoch)
    with warnings.catch_warnings():  # stepping a schedule before the optimizer's first step warns; here it is meant
        warnings.simplefilter("ignore")
        for _ in range(epoch_in_phase * phase.setup.steps_per_epoch):
            schedule.step_batch()
    phase.schedule = schedule
