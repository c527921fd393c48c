"""The phase being trained: its freeze plan applied, its parameter groups, optimizer, schedule and scaler, the
fingerprint of everything it must not change, and — when it trains only the head — the cached backbone features.

A phase starts fresh at its boundary (the optimizer rebuilt from the new groups, the state of parameters that
were already training carried over when the recipe asks) or from a checkpoint taken inside it, in which case its
freeze state, scheduler and optimizer are restored exactly (scheduler first, then the optimizer, so the groups'
learning rates are the saved ones).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from engine.data.transforms import eval_transform
from engine.model.freezing import (
    BN_TRAIN,
    Fingerprint,
    FreezeState,
    apply_freeze_plan,
    count_params,
    restore_freeze_state,
    set_train_mode,
)
from engine.model.groups import assignment, torch_param_groups
from engine.recipe import PhaseConfig
from engine.train import events as ev
from engine.train.feature_cache import FeatureSet, FeatureStore
from engine.train.head_fit import unfittable_reason
from engine.train.optim import Schedule, build_optimizer, build_schedule
from engine.train.setbacks import PhaseContext
from engine.train.setup import RunSetup


def head_fit_plan(setup: RunSetup, index: int) -> tuple[bool, str]:
    """(is phase `index`'s head fitted to convergence, why not when its recipe asked for it on a head-only phase)."""
    phase = setup.recipe.phases[index]
    if phase.head_fit != "converge" or not setup.phase_head_only[index]:
        return False, ""
    if setup.recipe.data.cache_features == "off":
        return False, "data.cache_features is 'off' (a fitted head needs cached features)"
    reason = unfittable_reason(setup.model.get_submodule(setup.built.head_path))
    return (False, reason) if reason else (True, "")


def phase_epochs(setup: RunSetup) -> list[int]:
    """Epochs per phase as the run counts them: a head fitted to convergence is one epoch, whatever `epochs` says
    (that count applies when the features cannot be cached)."""
    return [1 if head_fit_plan(setup, i)[0] else p.epochs for i, p in enumerate(setup.recipe.phases)]


def start_epochs(epochs: list[int]) -> list[int]:
    """The global epoch each phase starts at."""
    return [sum(epochs[:i]) for i in range(len(epochs))]


class ActivePhase:
    def __init__(self, setup: RunSetup, index: int, freeze: FreezeState, optimizer: torch.optim.Optimizer,
                 schedule: Schedule, scaler: torch.amp.GradScaler, group_lrs: dict[str, float]):
        self.setup = setup
        self.index = index
        self.config: PhaseConfig = setup.recipe.phases[index]
        self.freeze = freeze
        self.optimizer = optimizer
        self.schedule = schedule
        self.scaler = scaler
        self.group_lrs = group_lrs
        self.fingerprint = Fingerprint(setup.model, freeze.bn_modes)
        self.features: FeatureSet | None = None
        self.last_lrs: dict[str, float] = {}  # the rates the latest batch trained with (the loop keeps it)
        self.fits_head, self.head_fit_note = head_fit_plan(setup, index)
        self.fitted: ev.HeadFitted | None = None  # the fit of this session's fitted epoch, once done
        epochs = phase_epochs(setup)
        self.end_epoch = start_epochs(epochs)[index] + epochs[index]  # the global epoch after its last
        self.setback_context = self._setback_context()
        self.freeze_told = False  # the trainer says the phase's freeze verification once

    @classmethod
    def begin(cls, setup: RunSetup, index: int, epoch_mode: str, previous: torch.optim.Optimizer | None = None,
              checkpoint: dict[str, Any] | None = None) -> ActivePhase:
        """Apply phase `index` to the model. `checkpoint`: resuming inside this phase. `epoch_mode`: "max" / "min",
        how a plateau schedule reads the monitored metric."""
        phase = setup.recipe.phases[index]
        model, stages = setup.model, setup.built.stages
        freeze = apply_freeze_plan(model, stages, phase.trainable, phase.frozen, phase.bn_modes, f"phases[{index}]")
        if checkpoint is not None and "freeze" in checkpoint:
            freeze = FreezeState(list(checkpoint["freeze"]["trainable"]), dict(checkpoint["freeze"]["bn_modes"]))
            restore_freeze_state(model, freeze)
        groups, infos = torch_param_groups(model, stages, setup.phase_groups[index], phase.optimizer,
                                           f"phases[{index}].groups")
        optimizer = build_optimizer(groups, phase.optimizer)
        if previous is not None and phase.carry_optimizer_state and checkpoint is None:
            for group in optimizer.param_groups:  # Adam's moments of parameters that were already training
                for p in group["params"]:
                    if p in previous.state:
                        optimizer.state[p] = previous.state[p]
        schedule = build_schedule(optimizer, phase.schedule, phase.epochs, setup.steps_per_epoch, epoch_mode)
        scaler = torch.amp.GradScaler("cuda", enabled=setup.device.needs_scaler)
        if checkpoint is not None:
            schedule.load_state_dict(checkpoint.get("scheduler", {}))
            optimizer.load_state_dict(checkpoint["optimizer"])  # after the scheduler: restores the groups' lr
            if checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
        return cls(setup, index, freeze, optimizer, schedule, scaler, {g.name: g.lr for g in infos})

    def _setback_context(self) -> PhaseContext:
        """The phase's settings a setback's likely causes are read from (engine/train/setbacks.py)."""
        setup, index, schedule = self.setup, self.index, self.config.schedule
        head_params = [n for n, p in setup.model.get_submodule(setup.built.head_path).named_parameters()
                       if p.requires_grad]
        owners = assignment(setup.model, setup.built.stages, setup.phase_groups[index], strict=False)
        prefix = f"{setup.built.head_path}." if setup.built.head_path else ""
        head_group = owners.get(prefix + head_params[0], "") if head_params else ""
        return PhaseContext(
            phase_name=self.config.name, previous_name=setup.recipe.phases[index - 1].name if index else "",
            previous_fitted_head=index > 0 and head_fit_plan(setup, index - 1)[0],
            group_lrs=dict(self.group_lrs), head_group=head_group,
            warmup=schedule.name == "onecycle" or (schedule.name == "cosine" and schedule.warmup_epochs > 0),
            bn_layers_training=sum(1 for mode in self.freeze.bn_modes.values() if mode == BN_TRAIN),
            batch_size=setup.recipe.batch_size)

    # --- what the phase tells ---------------------------------------------------------------------------------
    def started_event(self) -> ev.PhaseStarted:
        trainable, total = count_params(self.setup.model)
        epochs = phase_epochs(self.setup)
        return ev.PhaseStarted(phase_index=self.index, name=self.config.name, epochs=epochs[self.index],
                               first_epoch=start_epochs(epochs)[self.index], trainable_params=trainable,
                               total_params=total, trainable_modules=trainable_modules(self.setup.model),
                               groups=dict(self.group_lrs), head_fit="converge" if self.fits_head else "epochs",
                               head_fit_note=self.head_fit_note)

    def verify_freeze(self) -> ev.FreezeVerified:
        """Compare every frozen tensor, bit for bit, with its value when the phase (or this session of it) began."""
        moved = self.fingerprint.moved(self.setup.model, self.freeze.bn_modes)
        return ev.FreezeVerified(phase_index=self.index, checked_tensors=len(self.fingerprint.digests), moved=moved)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "freeze": self.freeze.to_dict()}

    # --- what the loop calls ----------------------------------------------------------------------------------
    def set_train_mode(self) -> None:
        set_train_mode(self.setup.model, self.freeze.bn_modes, training=True)

    @property
    def forward(self) -> nn.Module:
        """The module a batch goes through: the head alone on cached features, else the whole model."""
        module = self.setup.model
        if self.features is not None:
            module = module.get_submodule(self.setup.built.head_path)
        return self.setup.train_module(module)  # in DistributedDataParallel under torchrun

    def train_batches(self, epoch: int, order: list[int]) -> Iterable:
        if self.features is not None:
            return self.features.train_batches(order, epoch % self.features.train.shape[0],
                                               self.setup.recipe.batch_size)
        return self.setup.loader(self.setup.data.train, order)

    def val_batches(self) -> Iterable:
        r = self.setup.recipe
        if self.features is not None:
            return self.features.val_batches(r.batch_size, r.data.max_val_batches)
        return self.setup.loader(self.setup.data.val, list(range(len(self.setup.data.val))))

    @property
    def caches_features(self) -> bool:
        """Does this phase train on cached features (only the head trains, and the recipe allows the cache)?"""
        return self.setup.recipe.data.cache_features != "off" and self.setup.phase_head_only[self.index]

    def feature_source(self) -> tuple[Any, dict[str, Any]]:
        """(the training set the features are computed from, the description that keys the cache)."""
        setup, r = self.setup, self.setup.recipe
        train_set, augmentation = setup.data.train, r.data.augmentation
        if r.data.feature_views == 1 and augmentation != "none":
            # One view: the un-augmented image (resize + centre crop, as validation sees it). A single random crop
            # reused for every epoch is a worse feature than the centre; K > 1 views give real augmentation.
            train_set = copy.copy(train_set)
            train_set.transform = eval_transform(setup.built.preprocessing)
            augmentation = "none"
        describe = {"arch": r.model.arch, "weights": setup.built.weights_name, "in_channels": r.model.in_channels,
                    "preprocessing": setup.built.preprocessing.to_dict(), "augmentation": augmentation,
                    "seed": r.seed, "head": setup.built.head_path}
        if augmentation != "none" and not r.data.horizontal_flip:  # only then: the keys of existing caches stay
            describe["horizontal_flip"] = False
        return train_set, describe

    def cache_features(self, bus: ev.EventBus, should_stop) -> ev.FeaturesCached | None:
        """When the phase trains only the head, compute (or load) the frozen backbone's features once
        (engine/train/feature_cache.py). None when the phase trains on images."""
        if not self.caches_features:
            return None
        setup, r = self.setup, self.setup.recipe
        views = r.data.feature_views
        train_set, describe = self.feature_source()

        def progress(done: int, total: int) -> None:
            bus.emit(ev.FeaturesProgressed(phase_index=self.index, done=done, total=total))

        device = setup.device
        features = setup.feature_builder(setup.model, setup.built.head_path, setup.loader, train_set, setup.data.val,
                                     views, device.device, device.autocast, device.channels_last, describe,
                                     FeatureStore(budget_mb=r.data.feature_cache_mb), progress, should_stop)
        if features is None:
            return None
        self.features = features.to(device.device)
        return ev.FeaturesCached(phase_index=self.index, key=features.key, images=int(features.train.shape[1]),
                                 views=views, dim=int(features.train.shape[2]), seconds=features.seconds,
                                 from_disk=features.from_disk)


def trainable_modules(model: nn.Module) -> list[str]:
    """The shallowest modules whose parameters all train (for the PhaseStarted event and the GUI)."""
    out: list[str] = []
    for name, module in model.named_modules():
        params = list(module.parameters())
        if name and params and all(p.requires_grad for p in params) and not any(name.startswith(o + ".") for o in out):
            out.append(name)
    return out
