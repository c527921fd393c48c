"""The test suite's architecture: `tiny_resnet`, a ResNet in miniature (~50 k parameters with its 10-class
pretrained head) registered through the zoo (`engine.model.zoo.register_architecture`), with pretrained weights in
torchvision's own layout (a `WeightsEnum` whose file the seeded TORCH_HOME holds; torchvision's loader reads it).

It has ResNet-18's layout and module names — conv1, bn1, layer1 … layer4 (two BasicBlocks each, layer2–4 starting
with a strided downsample), fc — at 8–32 channels instead of 64–512, so stages, freezing plans, BatchNorm modes,
groups, layer-wise rates and gradual unfreezing ("layer4" the last stage, "layer4.1.bn2" a module) behave on it as
on resnet18, for a fifth of the compute at 32 px and a checkpoint of ~0.5 MB instead of ~90 MB.

Imported in every process of a test session (tests/conftest.py puts this module in THAW_ARCH_MODULES, which the
zoo imports at its first use), so the CLI in a subprocess and torchrun's ranks know the architecture too.
"""

# No `from __future__ import annotations`: torchvision finds the weights enum from the builder's evaluated
# `weights` annotation.
from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models import Weights, WeightsEnum
from torchvision.models._meta import _IMAGENET_CATEGORIES
from torchvision.models.resnet import BasicBlock
from torchvision.transforms._presets import ImageClassification

from engine.model import zoo

NAME = "tiny_resnet"
WIDTHS = (8, 16, 16, 32)  # layer1 … layer4
BLOCKS = 2  # per layer, as ResNet-18
CATEGORIES = list(_IMAGENET_CATEGORIES[:10])  # a 10-class "pretrained" head: the head is replaced anyway


class TinyResNet(nn.Module):
    """conv1 (3×3) → bn1 → relu → layer1 … layer4 (two BasicBlocks each) → global average pool → fc."""

    def __init__(self, num_classes: int = len(CATEGORIES)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = WIDTHS[0]
        for i, width in enumerate(WIDTHS, start=1):
            blocks = []
            for b in range(BLOCKS):
                stride = 2 if i > 1 and b == 0 else 1
                downsample = None
                if stride != 1 or inplanes != width:
                    downsample = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride=stride, bias=False),
                                               nn.BatchNorm2d(width))
                blocks.append(BasicBlock(inplanes, width, stride, downsample))
                inplanes = width
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyResNet_Weights(WeightsEnum):  # noqa: N801 - torchvision's naming, which Thaw shows as the weights' name
    IMAGENET1K_V1 = Weights(
        # Never downloaded (THAW_OFFLINE in the tests): the file is seeded where torchvision's loader looks,
        # <TORCH_HOME>/hub/checkpoints/tiny_resnet-5eedf11e.pth.
        url="https://thaw.invalid/weights/tiny_resnet-5eedf11e.pth",
        transforms=partial(ImageClassification, crop_size=32, resize_size=36),
        meta={
            "categories": CATEGORIES,
            "num_params": 0,  # filled below
            "min_size": (1, 1),
            "recipe": "tests/tiny_arch.py (random weights seeded by the tests)",
            "_metrics": {"ImageNet-1K": {"acc@1": 1.0, "acc@5": 5.0}},
            "_file_size": 0.22,
            "_ops": 0.002,
            "_docs": "A test architecture.",
        },
    )
    DEFAULT = IMAGENET1K_V1


TinyResNet_Weights.IMAGENET1K_V1.meta["num_params"] = sum(p.numel() for p in TinyResNet().parameters())


def tiny_resnet(*, weights: TinyResNet_Weights | None = None, progress: bool = True, **kwargs: Any) -> TinyResNet:
    """Built as torchvision's builders are: `weights` verified, the head sized to its categories, loaded by
    torchvision's loader (`WeightsEnum.get_state_dict` → `load_state_dict_from_url`: the hub cache)."""
    weights = TinyResNet_Weights.verify(weights)
    if weights is not None:
        kwargs["num_classes"] = len(weights.meta["categories"])
    model = TinyResNet(**kwargs)
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model


zoo.register_architecture(NAME, tiny_resnet)


# --- shallow members of two more families, for the export tests ----------------------------------------------------
# torchvision's own MobileNetV3 and EfficientNet classes with 3 and 2 inverted-residual stages instead of 11 and 16:
# every op kind their exports meet (hardswish, hardsigmoid squeeze-excitation, SiLU, sigmoid squeeze-excitation,
# stochastic depth, depthwise convolutions, the families' classifier layouts) at a third of the export time.


def _test_weights(name: str, arch: str) -> type[WeightsEnum]:
    # A weights enum only because the zoo asks every builder for one (torchvision's check); these architectures are
    # only ever built untrained.
    meta = {"categories": CATEGORIES, "num_params": 0, "min_size": (1, 1), "recipe": "tests/tiny_arch.py",
            "_metrics": {"ImageNet-1K": {"acc@1": 1.0, "acc@5": 5.0}}, "_file_size": 0.1, "_ops": 0.001,
            "_docs": "A test architecture, never pretrained."}
    weights = Weights(url=f"https://thaw.invalid/weights/{arch}.pth",
                      transforms=partial(ImageClassification, crop_size=32, resize_size=36), meta=meta)
    return WeightsEnum(name, {"IMAGENET1K_V1": weights, "DEFAULT": weights})


ShallowMobileNetV3_Weights = _test_weights("ShallowMobileNetV3_Weights", "shallow_mobilenet_v3")
ShallowEfficientNet_Weights = _test_weights("ShallowEfficientNet_Weights", "shallow_efficientnet")


def shallow_mobilenet_v3(*, weights: ShallowMobileNetV3_Weights | None = None, progress: bool = True,
                         **kwargs: Any) -> nn.Module:
    from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3

    if weights is not None:
        raise ValueError("shallow_mobilenet_v3 has no pretrained weights")
    block = partial(InvertedResidualConfig, width_mult=1.0)
    setting = [block(16, 3, 16, 16, True, "RE", 2, 1), block(16, 3, 72, 24, False, "RE", 2, 1),
               block(24, 5, 96, 40, True, "HS", 2, 1)]
    return MobileNetV3(setting, last_channel=128, **kwargs)


def shallow_efficientnet(*, weights: ShallowEfficientNet_Weights | None = None, progress: bool = True,
                         **kwargs: Any) -> nn.Module:
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig

    if weights is not None:
        raise ValueError("shallow_efficientnet has no pretrained weights")
    setting = [MBConvConfig(1, 3, 1, 32, 16, 1, 1.0, 1.0), MBConvConfig(6, 3, 2, 16, 24, 2, 1.0, 1.0)]
    return EfficientNet(setting, dropout=0.2, **kwargs)


zoo.register_architecture("shallow_mobilenet_v3", shallow_mobilenet_v3)
zoo.register_architecture("shallow_efficientnet", shallow_efficientnet)
