"""Freezing happens here: which parameters train, and what every BatchNorm layer does.

A freeze plan is data (`PhaseConfig.trainable` / `.frozen` / `.bn_modes`); `apply_freeze_plan` turns it into
`requires_grad` flags and per-BN modes, and `set_train_mode` re-applies the BN modes after every
`model.train()` (which would otherwise silently put frozen BN layers back into training mode and move their
running statistics). `Fingerprint` proves afterwards that frozen tensors did not change by a single bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from engine.errors import RecipeError
from engine.model.stages import StageMap, covers

# train: statistics update, affine follows the freeze plan; frozen_stats: eval mode (statistics fixed), affine
# trainable (except under a path the phase's `frozen` list names: that freeze wins); frozen: eval mode and affine
# frozen.
BN_TRAIN, BN_FROZEN_STATS, BN_FROZEN = "train", "frozen_stats", "frozen"


@dataclass
class FreezeState:
    trainable: list[str]  # parameter names that train
    bn_modes: dict[str, str] = field(default_factory=dict)  # BN module path → mode

    def to_dict(self) -> dict:
        return {"trainable": list(self.trainable), "bn_modes": dict(self.bn_modes)}


def resolve(model: nn.Module, stages: StageMap, names: list[str], field_name: str) -> list[str]:
    """Stage names and module paths → module paths / parameter names. Unknown names raise, naming the field."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    out: list[str] = []
    for i, name in enumerate(names):
        if name in ("all", ""):
            out.append("all")
        elif name == "last_stage" and stages.body:  # alias: the stage just before the head
            out.extend(stages.body[-1].modules)
        elif stages.get(name) is not None:
            out.extend(stages.get(name).modules)
        elif name in modules or name in params:
            out.append(name)
        else:
            raise RecipeError(f"{field_name}[{i}]", f"'{name}' is neither a stage ({', '.join(stages.names())}) "
                                                    f"nor a module path of this model")
    return out


def bn_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _BatchNorm)}


def apply_freeze_plan(model: nn.Module, stages: StageMap, trainable: list[str], frozen: list[str] | None = None,
                      bn_overrides: dict[str, str] | None = None, field_prefix: str = "phase") -> FreezeState:
    """Freeze everything, thaw the `trainable` subtrees, re-freeze the `frozen` ones, then set BN modes."""
    thaw = resolve(model, stages, trainable, f"{field_prefix}.trainable")
    freeze = resolve(model, stages, frozen or [], f"{field_prefix}.frozen")
    for name, p in model.named_parameters():
        p.requires_grad_(any(covers(path, name) for path in thaw) and not any(covers(path, name) for path in freeze))

    overrides = {}
    for path, mode in (bn_overrides or {}).items():
        try:
            targets = resolve(model, stages, [path], f"{field_prefix}.bn_modes")
        except RecipeError as exc:  # name the key the user wrote, not its index in a one-element list
            raise RecipeError(f"{field_prefix}.bn_modes[{path}]", exc.message) from None
        for target in targets:
            overrides[target] = mode
    modes: dict[str, str] = {}
    for name, bn in bn_layers(model).items():
        own = [p for p in bn.parameters(recurse=False)]
        mode = BN_TRAIN if any(p.requires_grad for p in own) else BN_FROZEN  # a frozen subtree keeps its stats
        for path, override in overrides.items():  # later, more specific entries win
            if covers(path, name):
                mode = override
        if mode == BN_FROZEN_STATS and any(covers(path, name) for path in freeze):
            mode = BN_FROZEN  # a `frozen` entry is explicit: a broad frozen_stats entry never thaws inside it
        if mode == BN_FROZEN:
            for p in own:
                p.requires_grad_(False)
        elif mode == BN_FROZEN_STATS:
            for p in own:
                p.requires_grad_(True)
        modes[name] = mode
    set_train_mode(model, modes, training=model.training)
    return FreezeState([n for n, p in model.named_parameters() if p.requires_grad], modes)


def restore_freeze_state(model: nn.Module, state: FreezeState) -> None:
    """Apply a saved freeze state exactly (used on resume)."""
    trainable = set(state.trainable)
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    set_train_mode(model, state.bn_modes, training=model.training)


def set_train_mode(model: nn.Module, bn_modes: dict[str, str], training: bool = True) -> None:
    """model.train(training), then put BN layers whose statistics are frozen into eval mode."""
    model.train(training)
    if training:
        modules = dict(model.named_modules())
        for name, mode in bn_modes.items():
            if mode in (BN_FROZEN, BN_FROZEN_STATS) and name in modules:
                modules[name].eval()


def check_trains_something(state: FreezeState, trainable: list[str], frozen: list[str], field_prefix: str) -> None:
    """A phase must train at least one parameter: refuse (before any phase runs) one whose `frozen` list, or
    BN modes, freeze everything its `trainable` list names."""
    if state.trainable:
        return
    if frozen:
        raise RecipeError(f"{field_prefix}.frozen", f"freezes everything {trainable} trains: the phase would train "
                                                    f"no parameter; remove entries from frozen or add to trainable")
    raise RecipeError(f"{field_prefix}.trainable", f"{trainable} holds no trainable parameter (BatchNorm modes "
                                                   f"freeze them all); the phase would train nothing")


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


class Fingerprint:
    """Bit-exact digests of every tensor that must not move: frozen parameters and the buffers of BN layers in
    eval mode. Taken at a phase start and compared at its end."""

    def __init__(self, model: nn.Module, bn_modes: dict[str, str]):
        self.digests = {name: _digest(t) for name, t in frozen_tensors(model, bn_modes)}

    def moved(self, model: nn.Module, bn_modes: dict[str, str]) -> list[str]:
        now = dict(frozen_tensors(model, bn_modes))
        return [name for name, digest in self.digests.items() if name in now and _digest(now[name]) != digest]


def frozen_tensors(model: nn.Module, bn_modes: dict[str, str]):
    for name, p in model.named_parameters():
        if not p.requires_grad:
            yield name, p
    modules = dict(model.named_modules())
    for bn_name, mode in bn_modes.items():
        if mode in (BN_FROZEN, BN_FROZEN_STATS) and bn_name in modules:
            for buf_name, buf in modules[bn_name].named_buffers(recurse=False):
                if buf is not None and buf_name != "num_batches_tracked":
                    yield f"{bn_name}.{buf_name}", buf


def _digest(t: torch.Tensor) -> str:
    data = t.detach().to("cpu").contiguous()
    return hashlib.blake2b(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"",
                           digest_size=16).hexdigest()
