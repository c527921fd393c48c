"""Model surgery: a new classifier head for N classes and an input layer for any number of channels.

Both are found by structure, never by model name: the classifier is the last Linear layer in the model (the
last 1×1 Conv2d for all-convolutional nets such as SqueezeNet), the input layer is the first Conv2d (ResNet's
conv1, VGG's features.0, ViT's patch projection conv_proj, ...).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.recipe import HeadConfig


def find_classifier(model: nn.Module) -> str:
    """The module path of the layer producing the logits."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    if convs:
        return convs[-1]
    raise ValueError(f"{type(model).__name__} has no Linear or 1x1 Conv2d layer to use as its classifier")


def find_input_conv(model: nn.Module) -> str:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name
    raise ValueError(f"{type(model).__name__} has no Conv2d input layer")


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)


def disable_aux_heads(model: nn.Module) -> None:
    """GoogLeNet/Inception carry auxiliary classifiers for ImageNet training; Thaw trains the main head only."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for name in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, name):
                setattr(model, name, None)


def make_head(in_features: int, num_classes: int, config: HeadConfig, conv: bool = False) -> nn.Module:
    if conv:  # all-convolutional nets (SqueezeNet) keep their 1×1 conv head so the rest of forward() works
        return nn.Conv2d(in_features, num_classes, kernel_size=1)
    if config.hidden:
        return nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(in_features, config.hidden), nn.ReLU(inplace=True),
            nn.Dropout(config.dropout), nn.Linear(config.hidden, num_classes),
        )
    if config.dropout:
        return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(in_features, num_classes))
    return nn.Linear(in_features, num_classes)


def replace_head(model: nn.Module, num_classes: int, config: HeadConfig | None = None) -> str:
    """Replace the classifier with a fresh one for `num_classes`; returns its module path."""
    config = config or HeadConfig()
    disable_aux_heads(model)
    path = find_classifier(model)
    old = model.get_submodule(path)
    if isinstance(old, nn.Linear):
        new = make_head(old.in_features, num_classes, config)
    else:
        new = make_head(old.in_channels, num_classes, config, conv=True)
    device = next(old.parameters()).device
    set_submodule(model, path, new.to(device))
    return path


def adapt_input_channels(model: nn.Module, in_channels: int) -> str | None:
    """Replace the first conv for `in_channels` inputs, keeping the pretrained filters.

    The lesson's rule: RGB weights are copied and every extra channel is initialised with the mean of the RGB
    filters; one channel gets the sum of the RGB filters (a grey image then gives the same response as the
    same grey image replicated to RGB). With the extra channels at zero the model computes exactly what the
    RGB model computed.
    """
    path = find_input_conv(model)
    old: nn.Conv2d = model.get_submodule(path)
    if old.in_channels == in_channels:
        return None
    if old.groups != 1:
        raise ValueError(f"the input conv {path} is grouped; cannot adapt its channels")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    bias=old.bias is not None, padding_mode=old.padding_mode)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        weight = old.weight
        if in_channels == 1:
            new.weight.copy_(weight.sum(dim=1, keepdim=True))
        elif in_channels < weight.shape[1]:
            new.weight.copy_(weight[:, :in_channels])
        else:
            new.weight[:, : weight.shape[1]] = weight
            new.weight[:, weight.shape[1]:] = weight.mean(dim=1, keepdim=True)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    set_submodule(model, path, new)
    if hasattr(model, "transform_input"):
        model.transform_input = False  # Inception's input remapping assumes 3 normalised RGB channels
    return path
