"""Named stages of a model, found by structure: the units for freezing plans and per-block learning rates.

ResNet → stem, layer1 … layer4, head. VGG / MobileNet / EfficientNet → stem?, block0 … blockN (the children of
`features`, VGG's plain layers grouped up to each pooling layer), neck (classifier layers before the new
head), head. ViT → stem (patch projection, class token, position embedding), block0 … block11 (encoder
layers), neck (final LayerNorm), head.

The rule: the model's "body" is its single shallowest plain Sequential/ModuleList that does not hold the
head; its children are the blocks. A model with several such containers (ResNet's layer1–4) is split at its
top-level children instead. Parameters before the body form the stem, those after it the neck.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass
class Stage:
    name: str
    modules: list[str]  # module paths, or parameter names for parameters held directly by a container
    params: int = 0
    depth: int = 0  # stages between this one and the head (head = 0), for layer-wise learning-rate decay

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StageMap:
    stages: list[Stage] = field(default_factory=list)

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def get(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    @property
    def body(self) -> list[Stage]:
        """Every stage but the head, input to output."""
        return [s for s in self.stages if s.name != "head"]

    def stage_of(self, param_name: str) -> str | None:
        for stage in self.stages:
            if any(covers(path, param_name) for path in stage.modules):
                return stage.name
        return None


def covers(path: str, name: str) -> bool:
    """Does the module path (or parameter name) `path` cover the parameter or module `name`?"""
    return path in ("", "all") or name == path or name.startswith(path + ".")


def _is_plain_container(module: nn.Module) -> bool:
    # Exact types: subclasses such as Conv2dNormActivation are layers, not containers of blocks.
    return type(module) in (nn.Sequential, nn.ModuleList) and len(module) >= 2


def find_body(model: nn.Module, head_path: str) -> str | None:
    candidates = [
        name for name, m in model.named_modules()
        if name and _is_plain_container(m) and not covers(name, head_path)
        and any(True for _ in m.parameters())
    ]
    if not candidates:
        return None
    min_depth = min(n.count(".") for n in candidates)
    shallowest = [n for n in candidates if n.count(".") == min_depth]
    return shallowest[0] if len(shallowest) == 1 else None


def _blocks(container_path: str, container: nn.Module) -> list[list[str]]:
    """Children as blocks; consecutive plain layers (VGG's conv/ReLU) are grouped up to each pooling layer."""
    blocks: list[list[str]] = []
    pending: list[str] = []
    for child_name, child in container.named_children():
        path = f"{container_path}.{child_name}"
        if list(child.children()):
            if pending:
                blocks.append(pending)
                pending = []
            blocks.append([path])
        else:
            pending.append(path)
            if isinstance(child, POOLING):
                blocks.append(pending)
                pending = []
    if pending:
        blocks.append(pending)
    return blocks


def _param_count(model: nn.Module, paths: list[str]) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if any(covers(path, n) for path in paths))


def compute_stages(model: nn.Module, head_path: str) -> StageMap:
    body = find_body(model, head_path)
    units: list[tuple[str, list[str]]] = []  # (kind, paths) in order; kind: block / top
    if body is not None:
        for paths in _blocks(body, model.get_submodule(body)):
            units.append(("block", paths))
    else:
        pending: list[str] = []
        for name, child in model.named_children():
            if covers(name, head_path):
                continue
            if list(child.children()):
                if pending:
                    units.append(("top", pending))
                    pending = []
                units.append(("top", [name]))
            else:
                pending.append(name)
        if pending:
            units.append(("top", pending))

    # Assign every parameter outside the units and the head to the stem (before) or the neck (after).
    unit_of_param: dict[str, int] = {}
    params = [n for n, _ in model.named_parameters()]
    for i, (_, paths) in enumerate(units):
        for n in params:
            if any(covers(p, n) for p in paths):
                unit_of_param.setdefault(n, i)
    stem_extra, neck_extra = [], []
    seen_unit = False
    head_params = [n for n in params if covers(head_path, n)]
    for n in params:
        if n in head_params:
            continue
        if n in unit_of_param:
            seen_unit = True
            continue
        (neck_extra if seen_unit else stem_extra).append(n)

    stages: list[Stage] = []
    if stem_extra:
        stages.append(Stage("stem", _module_paths(model, stem_extra)))
    block_index = 0
    for i, (kind, paths) in enumerate(units):
        if not any(unit_of_param.get(n) == i for n in params):
            continue  # no parameters (ReLU, pooling)
        if kind == "top" and (len(paths) > 1 or not stages) and not list(model.get_submodule(paths[0]).children()):
            name = "stem" if not stages else paths[0]
        elif kind == "top":
            name = paths[0]
        else:
            name = f"block{block_index}"
            block_index += 1
        if stages and stages[-1].name == "stem" and name == "stem":
            stages[-1].modules += paths
        else:
            stages.append(Stage(name, list(paths)))
    if neck_extra:
        stages.append(Stage("neck", _module_paths(model, neck_extra)))
    stages.append(Stage("head", [head_path]))
    for depth, stage in enumerate(reversed(stages)):
        stage.depth = depth
        stage.params = _param_count(model, stage.modules)
    return StageMap(stages)


def _module_paths(model: nn.Module, param_names: list[str]) -> list[str]:
    """Compress parameter names to the smallest set of module paths that covers exactly them."""
    wanted = set(param_names)
    all_params = [n for n, _ in model.named_parameters()]
    paths: list[str] = []
    for name in param_names:
        if any(covers(p, name) for p in paths):
            continue
        # Climb while the parent module holds only wanted parameters.
        best = name
        parts = name.split(".")
        for k in range(len(parts) - 1, 0, -1):
            candidate = ".".join(parts[:k])
            under = [n for n in all_params if covers(candidate, n)]
            if under and all(n in wanted for n in under):
                best = candidate
            else:
                break
        paths.append(best)
    return paths
