"""Weight drift: for every layer, how far its weights moved from where the run started, as the relative L2
distance ‖w − w₀‖ / ‖w₀‖ over all of the layer's own parameters (weight and bias together).

A frozen layer's tensors are bit-identical to the start, so its drift is exactly 0.0 (tensors are compared
for equality first; sums of squares accumulate in float64), which makes the drift column one more proof that
freezing froze. The start is the
run's own: the pretrained weights and the new head initialised from the run's seed, rebuilt as the trainer
builds them (engine/infer/run_checkpoint.start_model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from engine.errors import BadInputError
from engine.infer.run_checkpoint import RunCheckpoint, start_model, trained_model
from engine.model.stages import StageMap


@dataclass
class LayerDrift:
    path: str  # the module owning the parameters, e.g. "layer4.1.conv2"
    params: int
    distance: float  # ‖w − w₀‖
    start_norm: float  # ‖w₀‖
    relative: float | None  # distance / start_norm; None when the start was all zeros and the layer moved
    stage: str | None = None


@dataclass
class StageDrift:
    name: str
    params: int
    relative: float | None  # over the stage's parameters taken together


@dataclass
class WeightDrift:
    layers: list[LayerDrift] = field(default_factory=list)
    stages: list[StageDrift] = field(default_factory=list)

    def relative_of(self, path: str) -> float | None:
        return next((layer.relative for layer in self.layers if layer.path == path), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WeightDrift:
        return cls([LayerDrift(**d) for d in data.get("layers", [])], [StageDrift(**d) for d in data.get("stages", [])])


def _relative(distance_sq: float, norm_sq: float) -> float | None:
    if norm_sq > 0:
        return math.sqrt(distance_sq) / math.sqrt(norm_sq)
    return 0.0 if distance_sq == 0 else None


def weight_drift(model: nn.Module, start_state: dict[str, torch.Tensor], stages: StageMap | None = None
                 ) -> WeightDrift:
    """Per layer (every module owning parameters, in model order) and per stage. `start_state` holds the start's
    parameters under the same names as `model`'s."""
    sums: dict[str, list[float]] = {}  # layer → [params, distance², norm²]
    first_param: dict[str, str] = {}  # layer → one of its parameter names (the stage map speaks parameter names)
    for name, parameter in model.named_parameters():
        if name not in start_state:
            raise KeyError(f"the start state has no tensor '{name}'")
        start = start_state[name].detach().to("cpu")
        now = parameter.detach().to("cpu")
        if start.shape != now.shape:
            raise ValueError(f"'{name}' has shape {tuple(now.shape)} but started as {tuple(start.shape)}")
        layer = name.rpartition(".")[0]
        entry = sums.setdefault(layer, [0, 0.0, 0.0])
        first_param.setdefault(layer, name)
        entry[0] += now.numel()
        if not torch.equal(now, start):  # bit-identical tensors (frozen ones) add exactly 0
            entry[1] += float((now.float() - start.float()).pow(2).sum(dtype=torch.float64))
        entry[2] += float(start.float().pow(2).sum(dtype=torch.float64))
    drift = WeightDrift()
    for path, (params, distance_sq, norm_sq) in sums.items():
        stage = stages.stage_of(first_param[path]) if stages is not None else None
        drift.layers.append(LayerDrift(path, int(params), math.sqrt(distance_sq), math.sqrt(norm_sq),
                                       _relative(distance_sq, norm_sq), stage))
    if stages is not None:
        for stage in stages.stages:
            members = [sums[layer.path] for layer in drift.layers if layer.stage == stage.name]
            if members:
                drift.stages.append(StageDrift(stage.name, int(sum(m[0] for m in members)),
                                               _relative(sum(m[1] for m in members), sum(m[2] for m in members))))
    return drift


def module_drift(drift: WeightDrift) -> dict[str, float | None]:
    """The relative drift of every module that holds parameters somewhere below it ("" is the whole model):
    ‖w − w₀‖ / ‖w₀‖ over all of its layers' parameters taken together, as the stages' are. A module whose
    layers were all frozen is exactly 0.0."""
    sums: dict[str, list[float]] = {}  # module → [distance², norm²]
    for layer in drift.layers:
        parts = layer.path.split(".") if layer.path else []
        for depth in range(len(parts) + 1):
            entry = sums.setdefault(".".join(parts[:depth]), [0.0, 0.0])
            entry[0] += layer.distance ** 2
            entry[1] += layer.start_norm ** 2
    return {path: _relative(distance_sq, norm_sq) for path, (distance_sq, norm_sq) in sums.items()}


def run_weight_drift(checkpoint: RunCheckpoint) -> WeightDrift:
    """The drift of a checkpoint from its run's start (needs the pretrained weights in the local cache)."""
    if checkpoint.pruning:
        raise BadInputError(f"{checkpoint.path} holds a pruned model: its layers lost channels the pretrained "
                            f"model has, so there is no drift to measure; measure the run it was pruned from")
    trained = trained_model(checkpoint)
    start = start_model(checkpoint)
    return weight_drift(trained.model, dict(start.model.named_parameters()), trained.stages)
