"""Batch norm folded into the convolution before it, for a frozen backbone's forward passes (cached features).

In eval mode a BatchNorm2d is an affine map per channel, so conv → bn equals one conv with scaled weights and a
shifted bias (the same algebra as torch.ao's fuse_conv_bn_eval; float rounding differs by ~1e-6 relative).
On this 2-core CPU the eval-mode batch norms of ResNet-18 take ~15 % of a forward pass at 224 px, and folding
them makes it 1.1x faster (1.6x with channels_last as well).

The model is traced with torch.fx; the traced copy shares every module except the folded convolutions, so the
original is never changed. A model that cannot be traced is used as it is.
"""

from __future__ import annotations

import logging

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)


def fold_batch_norms(model: nn.Module) -> tuple[nn.Module, int]:
    """(a module computing what `model` computes in eval mode, how many batch norms were folded)."""
    if model.training:
        raise ValueError("batch norms can only be folded for an eval-mode forward pass")
    try:
        traced = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: run the model unchanged
        log.info("batch norms not folded (the model cannot be traced: %s)", exc)
        return model, 0
    modules = dict(traced.named_modules())
    folded = 0
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        conv_node = node.args[0]
        if not (isinstance(conv_node, fx.Node) and conv_node.op == "call_module"
                and isinstance(modules.get(conv_node.target), nn.Conv2d) and len(conv_node.users) == 1):
            continue
        bn = modules[node.target]
        if not bn.track_running_stats or bn.running_mean is None:
            continue  # batch statistics even in eval mode: not an affine map
        parent_name, _, name = conv_node.target.rpartition(".")
        parent = traced.get_submodule(parent_name) if parent_name else traced
        setattr(parent, name, fuse_conv_bn_eval(modules[conv_node.target], bn))
        node.replace_all_uses_with(conv_node)
        traced.graph.erase_node(node)
        folded += 1
    if not folded:
        return model, 0
    traced.graph.lint()
    traced.delete_all_unused_submodules()  # the folded batch norms
    traced.recompile()
    traced.eval()
    return traced, folded
