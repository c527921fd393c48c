"""Heat maps: right shape and range, on the evidence the class really uses, and the model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models as tvm

from engine.infer.explain import (
    ATTENTION_ROLLOUT,
    GRAD_CAM,
    ExplanationError,
    attention_rollout,
    explain,
    grad_cam,
    overlay,
)


class HalvesNet(nn.Module):
    """Class 0 sees only the right half of the image, class 1 only the left half.

    The halves are cut in the feature maps themselves (channel 0 keeps the right, channel 1 the left), so the
    last feature map, the one Grad-CAM explains, carries each class's evidence only where that class looks.
    """

    def __init__(self, size: int):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        with torch.no_grad():  # positive weights on a positive image: activations everywhere before the cut
            self.features[0].weight.abs_()
            self.features[0].bias.zero_()
        half = size // 4  # the pooled map is size/2 wide
        mask = torch.zeros(1, 2, size // 2, size // 2)
        mask[:, 0, :, half:] = 1
        mask[:, 1, :, :half] = 1
        self.register_buffer("mask", mask)
        self.cut = Cut()

    def forward(self, x):
        maps = self.cut(self.features(x), self.mask)
        return maps.mean(dim=(2, 3))


class Cut(nn.Module):
    def forward(self, maps, mask):
        return maps * mask


def left_share(heatmap: np.ndarray) -> float:
    half = heatmap.shape[1] // 2
    return float(heatmap[:, :half].sum() / heatmap.sum())


@pytest.fixture
def halves_net():
    torch.manual_seed(0)
    return HalvesNet(32)


def test_grad_cam_on_resnet18_gives_a_map_at_input_size():
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None, num_classes=4).eval()
    image = torch.randn(3, 64, 64)
    heatmap, class_index = grad_cam(model, image)
    assert heatmap.shape == (64, 64)
    assert heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
    assert heatmap.std() > 0.01  # not constant
    with torch.no_grad():
        assert class_index == int(model(image[None]).argmax())


def test_grad_cam_follows_the_evidence_of_the_asked_class(halves_net):
    image = torch.rand(3, 32, 32)
    left, _ = grad_cam(halves_net, image, target_class=1)
    right, _ = grad_cam(halves_net, image, target_class=0)
    assert left_share(left) > 0.95
    assert left_share(right) < 0.05


def test_grad_cam_leaves_the_model_as_it_was(halves_net):
    halves_net.train()
    halves_net.features[0].weight.requires_grad_(False)
    before = {name: p.detach().clone() for name, p in halves_net.named_parameters()}
    hooks_before = sum(len(m._forward_hooks) for m in halves_net.modules())

    grad_cam(halves_net, torch.rand(3, 32, 32), target_class=1)

    assert halves_net.training
    assert not halves_net.features[0].weight.requires_grad and halves_net.features[0].bias.requires_grad
    assert all(p.grad is None for p in halves_net.parameters())
    assert all(torch.equal(p, before[name]) for name, p in halves_net.named_parameters())
    assert sum(len(m._forward_hooks) for m in halves_net.modules()) == hooks_before


def test_grad_cam_on_a_named_layer_and_bad_requests(halves_net):
    image = torch.rand(3, 32, 32)
    heatmap, _ = grad_cam(halves_net, image, target_class=1, layer_path="features.0")
    assert heatmap.shape == (32, 32)  # the un-cut conv output covers both halves
    assert 0.2 < left_share(heatmap) < 0.8
    with pytest.raises(ExplanationError, match="class index 5"):
        grad_cam(halves_net, image, target_class=5)
    with pytest.raises(ExplanationError, match="one image"):
        grad_cam(halves_net, image[None])


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                 num_classes=3).eval()


def test_attention_rollout_maps_the_patch_grid_and_restores_the_model():
    model = tiny_vit()
    image = torch.randn(3, 32, 32)
    with torch.no_grad():
        before = model(image[None])

    heatmap = attention_rollout(model, image)

    assert heatmap.shape == (32, 32)
    assert heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
    assert heatmap.std() > 0.0
    with torch.no_grad():
        assert torch.equal(model(image[None]), before)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert "forward" not in vars(module)


def test_explain_dispatches_by_structure(halves_net):
    vit = explain(tiny_vit(), torch.randn(3, 32, 32))
    assert vit.method == ATTENTION_ROLLOUT and vit.heatmap.shape == (32, 32) and 0 <= vit.class_index < 3
    cnn = explain(halves_net, torch.rand(3, 32, 32), target_class=1)
    assert cnn.method == GRAD_CAM and cnn.class_index == 1 and left_share(cnn.heatmap) > 0.95


def test_overlay_colours_hot_regions_red_and_cold_ones_blue():
    grey = np.full((4, 6, 3), 128, dtype=np.uint8)
    heatmap = np.zeros((4, 6), dtype=np.float32)
    heatmap[:, :3] = 1.0
    out = overlay(grey, heatmap)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    hot, cold = out[0, 0].astype(int), out[0, 5].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]
    # A smaller heat map is stretched to the image.
    assert overlay(grey, heatmap[::2, ::2]).shape == (4, 6, 3)
