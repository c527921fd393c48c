"""Build the model a Recipe asks for: backbone + weights + input adapter + new head, with its stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from engine.data.preprocessing import Preprocessing
from engine.errors import BadInputError
from engine.model import zoo
from engine.model.stages import StageMap, compute_stages
from engine.model.surgery import adapt_input_channels, replace_head
from engine.recipe import DataConfig, ModelConfig


def resolve_preprocessing(config: ModelConfig, data: DataConfig | None = None) -> Preprocessing:
    """The weights' preset, resized as the recipe asks, with statistics for every input channel."""
    data = data or DataConfig()
    weights = zoo.resolve_weights(config.arch, config.weights) if not config.weights_file else None
    return (zoo.default_preprocessing(config.arch, weights)
            .with_sizes(data.resize_size, data.crop_size)
            .with_channels(config.in_channels, data.extra_channel_mean, data.extra_channel_std))


@dataclass
class BuiltModel:
    model: nn.Module
    head_path: str
    input_conv: str | None  # the adapted input conv, None when the channel count is unchanged
    stages: StageMap
    weights_name: str  # exact: "ResNet50_Weights.IMAGENET1K_V2", "file:<path>" or "none"
    preprocessing: Preprocessing
    load_report: zoo.LoadReport | None = None  # set when a local weights file was loaded; print it always


def build_model(config: ModelConfig, num_classes: int, data: DataConfig | None = None,
                progress: Callable[[int, int], None] | None = None, pretrained: bool = True) -> BuiltModel:
    """`pretrained=False` builds the same architecture without loading any weights (to restore a checkpoint).

    A local weights file must cover the backbone (see `zoo.LoadReport`): a file of another architecture is
    refused with BadInputError saying what matched and what did not, never trained from random weights."""
    weights = zoo.resolve_weights(config.arch, config.weights) if not config.weights_file else None
    preprocessing = resolve_preprocessing(config, data)
    state = zoo.read_state_dict(config.weights_file) if config.weights_file and pretrained else None
    if pretrained and weights is not None:
        model = zoo.build_backbone(config.arch, weights, progress)  # torchvision configures and loads
    else:  # the same architecture the weights (or the preprocessing) call for, without loading anything
        model = zoo.build_backbone(config.arch, None, progress,
                                   **zoo.architecture_kwargs(config.arch, weights, preprocessing.crop_size))
    # A file of the torchvision model as built (e.g. an ImageNet state dict) loads before surgery, so the
    # input conv is adapted from its filters; one saved from an adapted model (other channel count, this
    # many classes: a Thaw checkpoint) fits only after surgery. Both passes load what fits.
    before = zoo.load_matching(model, state) if state is not None else set()
    original_keys = set(model.state_dict()) if state is not None else set()
    input_conv = adapt_input_channels(model, config.in_channels)
    head_path = replace_head(model, num_classes, config.head)
    report = None
    if state is not None:
        after = zoo.load_matching(model, state)
        replaced = original_keys - set(model.state_dict())
        report = zoo.assess_load(config.weights_file, model, state, before, after, replaced, head_path, input_conv)
        if not report.fits:
            raise BadInputError(report.refusal(config.arch))
    if weights is not None:
        weights_name = str(weights)
    elif config.weights_file:
        weights_name = f"file:{config.weights_file}"
    else:
        weights_name = "none"
    return BuiltModel(model, head_path, input_conv, compute_stages(model, head_path), weights_name,
                      preprocessing, report)


@lru_cache(maxsize=64)
def stage_map_of(arch: str, num_classes: int = 2) -> StageMap | None:
    """The stages of an architecture, computed on the meta device (no memory, no weights); None if the model
    cannot be built there (RegNet computes its widths with real tensors)."""
    try:
        with torch.device("meta"):
            model = zoo.get_model(arch)
            head = replace_head(model, num_classes)
    except Exception:  # noqa: BLE001 - fall back to the alias; the real build will tell
        return None
    return compute_stages(model, head)
