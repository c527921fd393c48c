"""Structured channel pruning of a model with torch-pruning (the field's library), its head left whole.

torch-pruning traces the model once into a DependencyGraph: which layers must lose the same channels together
(a conv, its BatchNorm, the next conv's input, every branch of a residual sum). The MagnitudePruner ranks each
such group's channels by the L2 norm of their weights (GroupMagnitudeImportance, p=2: Li et al. 2017's filter
norm, summed over the group) and removes the weakest `amount` of every prunable layer's channels (one step, the
same share per layer). The head (and every module inside it) is ignored, so it keeps one output per class.

The pruned model's structure is then captured as plain values (engine/model/pruned_structure.py) and checked the
way a checkpoint will use it: a fresh model of the architecture, resized from the structure, loaded with the
pruned weights, must give the pruned model's very outputs. A model torch-pruning changes in a way the structure
cannot hold is refused here, before anything is trained or written.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.errors import BadInputError
from engine.model.pruned_structure import apply_structure, capture_structure

PACKAGE = "torch-pruning"
INSTALL_HINT = "pip install 'thaw[prune]' (or pip install torch-pruning)"


def require_torch_pruning() -> Any:
    """The torch_pruning module, or one line naming the package to install."""
    if importlib.util.find_spec("torch_pruning") is None:
        raise BadInputError(f"pruning needs the '{PACKAGE}' package, which is not installed: {INSTALL_HINT}")
    import torch_pruning

    return torch_pruning


def check_amount(amount: float) -> float:
    """The share of channels to remove: strictly between 0 and 1 (0 prunes nothing, 1 removes every channel)."""
    try:
        value = float(amount)
    except (TypeError, ValueError):
        raise BadInputError(f"--amount must be a number between 0 and 1 (exclusive), got {amount!r}") from None
    if not 0.0 < value < 1.0:  # also refuses nan, for which every comparison is false
        raise BadInputError(f"--amount must be between 0 and 1 (exclusive): the share of each layer's channels "
                            f"to remove, e.g. 0.3; got {amount!r}")
    return value


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class PruneOutcome:
    structure: dict  # capture_structure's plain values
    params_before: int
    params_after: int
    layers_pruned: int  # modules whose channels changed


def _head_modules(model: nn.Module, head_path: str) -> list[nn.Module]:
    head = model.get_submodule(head_path)
    return list(head.modules())


def prune_channels(model: nn.Module, reference: nn.Module, example: torch.Tensor, head_path: str,
                   amount: float) -> PruneOutcome:
    """Prune `model` in place (eval mode, on the CPU or its device); `reference` is an unpruned copy of the same
    architecture the structure is measured against (it is not changed). BadInputError when the model cannot be
    pruned or its pruned structure cannot be rebuilt from plain values."""
    tp = require_torch_pruning()
    amount = check_amount(amount)
    before = count_parameters(model)
    model.eval()
    try:
        pruner = tp.pruner.MagnitudePruner(
            model, example, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=amount,
            ignored_layers=_head_modules(model, head_path), global_pruning=False)
        pruner.step()
        with torch.no_grad():
            pruned_output = model(example)
    except Exception as exc:  # noqa: BLE001 - torch-pruning's failures on an architecture are many; say it once
        raise BadInputError(f"torch-pruning cannot prune this model: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
    try:
        structure = capture_structure(model, reference)
    except ValueError as exc:
        raise BadInputError(f"the pruned model cannot be stored as a structure of plain values: {exc}") from None
    check_rebuild(model, reference, structure, example, pruned_output)
    return PruneOutcome(structure, before, count_parameters(model), len(structure["modules"]))


def check_rebuild(pruned: nn.Module, reference: nn.Module, structure: dict, example: torch.Tensor,
                  expected: torch.Tensor) -> None:
    """The structure must rebuild the pruned model exactly as a checkpoint will (a fresh copy of the architecture,
    resized by apply_structure, loaded strictly): same outputs, bit for bit up to float rounding."""
    rebuilt = copy.deepcopy(reference)
    try:
        apply_structure(rebuilt, structure, "the pruned model")
        rebuilt.load_state_dict(pruned.state_dict())
        with torch.no_grad():
            output = rebuilt.eval()(example)
    except (BadInputError, RuntimeError) as exc:
        raise BadInputError(f"the pruned model cannot be rebuilt from its stored structure ({exc}); pruning this "
                            f"architecture is not supported") from None
    if output.shape != expected.shape or not torch.allclose(output, expected, rtol=1e-4, atol=1e-5):
        raise BadInputError("the pruned model rebuilt from its stored structure computes other outputs (a size "
                            "Thaw does not store changed); pruning this architecture is not supported")
