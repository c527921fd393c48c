"""Optimizers and learning-rate schedules, built from a phase's config.

Each schedule knows whether it steps per batch (cosine with warm-up, one-cycle) or per epoch (step, plateau),
so the trainer never has to guess. `preview_lrs` runs the same schedule on dummy parameters so the GUI can draw
every group's learning rate over the whole run before training starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.recipe import OptimizerConfig, PhaseConfig, ScheduleConfig


def build_optimizer(param_groups: list[dict], config: OptimizerConfig) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(param_groups, lr=param_groups[0]["lr"], momentum=config.momentum,
                               nesterov=config.nesterov)
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(param_groups, lr=param_groups[0]["lr"], betas=tuple(config.betas))


@dataclass
class Schedule:
    scheduler: object | None
    per_batch: bool
    needs_metric: bool

    def step_batch(self) -> None:
        if self.scheduler is not None and self.per_batch:
            self.scheduler.step()

    def step_epoch(self, metric: float | None = None) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.needs_metric:
            self.scheduler.step(metric)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


class WarmupCosine:
    """lr factor: linear warm-up from ~0 to 1, then cosine down to `min_ratio`. A picklable callable, so the
    scheduler's state round-trips through a checkpoint."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float):
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, max(1, total_steps), min_ratio

    def __call__(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_schedule(optimizer: torch.optim.Optimizer, config: ScheduleConfig, epochs: int, steps_per_epoch: int,
                   metric_mode: str = "max") -> Schedule:
    steps_per_epoch = max(1, steps_per_epoch)
    if config.name == "none":
        return Schedule(None, False, False)
    if config.name == "step":
        return Schedule(torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma), False, False)
    if config.name == "cosine":
        total = epochs * steps_per_epoch
        fn = WarmupCosine(round(config.warmup_epochs * steps_per_epoch), total, config.min_lr_ratio)
        return Schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, fn), True, False)
    if config.name == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=epochs * steps_per_epoch,
                                                    pct_start=config.pct_start, div_factor=config.div_factor)
        return Schedule(sched, True, False)
    if config.name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=metric_mode, factor=config.factor,
                                                           patience=config.patience)
        return Schedule(sched, False, True)
    raise ValueError(f"unknown schedule {config.name!r}")


def preview_lrs(group_lrs: dict[str, float], phase: PhaseConfig, steps_per_epoch: int) -> dict[str, list[float]]:
    """Each group's lr at every batch of the phase, as the real schedule would set it (plateau: flat)."""
    params = {name: torch.nn.Parameter(torch.zeros(1)) for name in group_lrs}
    groups = [{"params": [p], "lr": group_lrs[name], "name": name} for name, p in params.items()]
    if not groups:
        return {}
    optimizer = build_optimizer(groups, phase.optimizer)
    schedule = build_schedule(optimizer, phase.schedule, phase.epochs, steps_per_epoch)
    out: dict[str, list[float]] = {name: [] for name in group_lrs}
    for _epoch in range(phase.epochs):
        for _batch in range(max(1, steps_per_epoch)):
            for g in optimizer.param_groups:
                out[g["name"]].append(float(g["lr"]))
            optimizer.step()  # a no-op step keeps torch from warning about the call order
            schedule.step_batch()
        if not schedule.needs_metric:  # plateau decays depend on validation results nobody knows yet: flat
            schedule.step_epoch()
    return out
