"""A pruned model's structure as plain values, and putting it back on a freshly built model.

Structured pruning (engine/infer/pruning.py) removes channels: convolutions, norms and linear layers end up with
fewer channels than the architecture's builder makes. A checkpoint must rebuild that model without unpickling
anything (Thaw loads checkpoints with weights_only=True; torch-pruning's own `tp.state_dict` pickles modules), so
the structure travels as plain values in the checkpoint's "pruning" entry:

    {"modules": {"layer1.0.conv1": {"type": "Conv2d", "ints": {"in_channels": 64, "out_channels": 45, …},
                                   "shapes": {"weight": [45, 64, 3, 3]}}, …}, …}

`apply_structure` is the one function every place that builds a model from a checkpoint calls after building the
architecture and before loading the weights (engine/train/checkpoints.py `model_of_checkpoint`,
engine/infer/run_checkpoint.py `trained_model`). It only touches the modules listed, only the attributes of
ALLOWED_INTS, and only tensors the module already has, so a tampered entry can shrink a layer but never run code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.errors import BadInputError

PRUNING_KEY = "pruning"  # the checkpoint's entry
# The integer attributes through which modules size themselves (what torch-pruning's pruners rewrite for the
# layers of torchvision's CNNs). A module's forward reads them (groups above all: a depthwise conv), so they are
# stored with the tensors' shapes.
ALLOWED_INTS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                "num_channels", "num_groups", "normalized_shape")
MAX_DIM = 1 << 24  # a bigger size in a structure is a damaged file, not a layer


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors = {name: t for name, t in module.named_parameters(recurse=False)}
    tensors.update({name: t for name, t in module.named_buffers(recurse=False) if t is not None})
    return tensors


def capture_structure(pruned: nn.Module, reference: nn.Module) -> dict[str, Any]:
    """The modules of `pruned` whose own tensors differ in shape from `reference`'s (the same architecture as
    built), each with its type, its ALLOWED_INTS attributes and every own tensor's shape. Plain values only."""
    reference_modules = dict(reference.named_modules())
    modules: dict[str, Any] = {}
    for path, module in pruned.named_modules():
        original = reference_modules.get(path)
        if original is None:
            raise ValueError(f"pruning added the module '{path}'")
        own, before = _own_tensors(module), _own_tensors(original)
        if set(own) != set(before):
            raise ValueError(f"pruning changed the tensors of '{path}'")
        if all(tuple(own[n].shape) == tuple(before[n].shape) for n in own):
            continue
        ints = {}
        for name in ALLOWED_INTS:
            value = getattr(module, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                ints[name] = value
            elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
                ints[name] = list(value)
        modules[path] = {"type": type(module).__name__, "ints": ints,
                         "shapes": {n: list(t.shape) for n, t in own.items()}}
    return {"modules": modules}


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_DIM


def apply_structure(model: nn.Module, structure: Any, source: str = "the checkpoint") -> None:
    """Resize the modules `structure` lists (from `capture_structure`, read back from a checkpoint) on `model`, a
    freshly built model of the same architecture: their size attributes are set and their tensors replaced by
    uninitialised ones of the stored shapes, on the same device and dtype (the meta device too), ready for
    load_state_dict. None or {} leaves the model as built. BadInputError naming the entry for anything else."""
    if not structure:
        return
    where = f"{source}: its pruned structure"
    modules = structure.get("modules") if isinstance(structure, dict) else None
    if not isinstance(modules, dict):
        raise BadInputError(f"{where} is not a structure (no 'modules')")
    own_modules = dict(model.named_modules())
    for path, entry in modules.items():
        module = own_modules.get(path) if isinstance(path, str) else None
        if module is None:
            raise BadInputError(f"{where} names a module '{str(path)[:80]}' the architecture does not have")
        if not isinstance(entry, dict) or entry.get("type") != type(module).__name__:
            raise BadInputError(f"{where}: '{path}' is a {type(module).__name__}, not what the structure says")
        ints, shapes = entry.get("ints"), entry.get("shapes")
        if not isinstance(ints, dict) or not isinstance(shapes, dict):
            raise BadInputError(f"{where}: '{path}' has no 'ints' and 'shapes'")
        for name, value in ints.items():
            if name not in ALLOWED_INTS or not hasattr(module, name):
                raise BadInputError(f"{where}: '{path}.{name}' is not a size Thaw sets")
            if isinstance(value, list) and value and all(_size(v) for v in value):
                value = tuple(value)
            elif not _size(value):
                raise BadInputError(f"{where}: '{path}.{name}' is {value!r}, not a size")
            setattr(module, name, value)
        tensors = _own_tensors(module)
        for name, shape in shapes.items():
            if name not in tensors:
                raise BadInputError(f"{where}: '{path}' has no tensor '{str(name)[:40]}'")
            if not isinstance(shape, list) or not all(_size(v) for v in shape) or len(shape) != tensors[name].dim():
                raise BadInputError(f"{where}: '{path}.{name}' has no usable shape ({str(shape)[:80]})")
            old = tensors[name]
            new = torch.empty(shape, dtype=old.dtype, device=old.device)
            if isinstance(old, nn.Parameter):
                setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))
            else:
                module.register_buffer(name, new, persistent=name not in module._non_persistent_buffers_set)  # noqa: SLF001


def is_pruned(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint holds a pruned model."""
    return bool(state.get(PRUNING_KEY))
