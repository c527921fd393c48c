"""Batch norms folded into convolutions compute what the model computes, and leave the model untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_small, resnet18

from engine.model.fusion import fold_batch_norms


def with_statistics(model: nn.Module) -> nn.Module:
    """Running statistics and affine parameters that are not the identity, as a trained network has."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("build, expected", [(resnet18, 20), (mobilenet_v3_small, 34)])
def test_folded_model_matches_the_original(build, expected):
    model = with_statistics(build(num_classes=5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)

    folded, count = fold_batch_norms(model)

    assert count == expected
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is unchanged
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_a_model_in_training_mode_is_refused():
    with pytest.raises(ValueError):
        fold_batch_norms(resnet18().train())


def test_an_untraceable_model_is_used_as_it_is():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > 0:  # control flow on a tensor's value: fx cannot trace it
                x = -x
            return self.bn(self.conv(x))

    model = DataDependent().eval()
    assert fold_batch_norms(model) == (model, 0)
