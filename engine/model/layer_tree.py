"""The layer tree: a pure-Python view of a model's modules, for the CLI and the GUI's tree view.

Each node knows its parameter counts, whether it is frozen, trainable or partly frozen, its BN mode, its stage
and the parameter group it belongs to. The GUI's item model is an adapter over this tree; edits go back into
the Recipe (a phase's `trainable` / `frozen` lists), never straight into the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from engine.model.stages import StageMap, covers

FROZEN, TRAINABLE, PARTIAL, EMPTY = "frozen", "trainable", "partial", "none"


@dataclass
class LayerNode:
    path: str  # "" for the root
    name: str  # the last path component (the class name for the root)
    type_name: str
    total_params: int = 0
    trainable_params: int = 0
    stage: str | None = None
    bn_mode: str | None = None  # only for BatchNorm layers
    group: str | None = None  # the group all of its trainable parameters belong to, "mixed", or None
    children: list[LayerNode] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.total_params == 0:
            return EMPTY
        if self.trainable_params == 0:
            return FROZEN
        return TRAINABLE if self.trainable_params == self.total_params else PARTIAL

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, path: str) -> LayerNode | None:
        return next((n for n in self.walk() if n.path == path), None)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "name": self.name, "type": self.type_name, "total_params": self.total_params,
            "trainable_params": self.trainable_params, "state": self.state, "stage": self.stage,
            "bn_mode": self.bn_mode, "group": self.group, "children": [c.to_dict() for c in self.children],
        }


def build_layer_tree(model: nn.Module, stages: StageMap | None = None, bn_modes: dict[str, str] | None = None,
                     param_groups: dict[str, str] | None = None) -> LayerNode:
    """`param_groups` maps parameter name → group name (see engine.model.groups.assignment)."""
    bn_modes = bn_modes or {}
    param_groups = param_groups or {}

    def make(path: str, module: nn.Module) -> LayerNode:
        node = LayerNode(path, path.rsplit(".", 1)[-1] if path else type(module).__name__, type(module).__name__)
        groups = set()
        for pname, p in module.named_parameters(prefix=path):
            node.total_params += p.numel()
            if p.requires_grad:
                node.trainable_params += p.numel()
                groups.add(param_groups.get(pname))
        node.group = None if not groups or groups == {None} else (groups.pop() if len(groups) == 1 else "mixed")
        if stages is not None and path:
            node.stage = next((s.name for s in stages.stages if any(covers(m, path) for m in s.modules)), None)
        if isinstance(module, _BatchNorm):
            node.bn_mode = bn_modes.get(path, "train" if module.training else "frozen")
        for child_name, child in module.named_children():
            node.children.append(make(f"{path}.{child_name}" if path else child_name, child))
        return node

    return make("", model)


def format_tree(root: LayerNode, max_depth: int = 2) -> str:
    """A text rendering like the lesson's printout, with a total line: 'trainable N of M (x %)'."""
    marks = {FROZEN: "❄", TRAINABLE: "✓", PARTIAL: "◐", EMPTY: " "}
    lines = []

    def visit(node: LayerNode, depth: int, parent_stage: str | None) -> None:
        if node.path:
            extra = []
            if node.stage and node.stage != parent_stage:
                extra.append(f"stage={node.stage}")
            if node.bn_mode:
                extra.append(f"bn={node.bn_mode}")
            if node.group:
                extra.append(f"group={node.group}")
            lines.append(f"{'  ' * (depth - 1)}{marks[node.state]} {node.path:<40} {node.type_name:<24} "
                         f"{node.trainable_params:>12,} / {node.total_params:<12,} {' '.join(extra)}".rstrip())
        if depth < max_depth:
            for child in node.children:
                visit(child, depth + 1, node.stage)

    visit(root, 0, None)
    lines.append(trainable_summary(root))
    return "\n".join(lines)


def trainable_summary(root: LayerNode) -> str:
    pct = 100.0 * root.trainable_params / root.total_params if root.total_params else 0.0
    return f"trainable {root.trainable_params:,} of {root.total_params:,} ({pct:.2f} %)"
