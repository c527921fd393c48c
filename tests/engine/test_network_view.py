"""What the network sees: weight drift is exactly 0 for frozen layers and > 0 for trained ones (and the start is
rebuilt exactly as the run started), the first convolution's filters as an image grid, a stage's feature maps,
pretrained and fine-tuned side by side."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer

from engine.errors import BadInputError
from engine.infer.drift import module_drift, run_weight_drift, weight_drift
from engine.infer.network_view import NetworkViews, first_conv_filters, stage_feature_maps
from engine.infer.run_checkpoint import open_checkpoint
from engine.model.stages import compute_stages
from engine.recipe import PhaseConfig
from engine.train import events as ev
from engine.train.trainer import Trainer
from tests.evaluation_helpers import make_styled_folder, train_run
from tests.helpers import tiny_recipe

BODY = ("conv1", "bn1", "layer1", "layer2", "layer3")  # frozen in the partly thawed run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_styled_folder(tmp_path_factory.mktemp("views") / "data", {"cat": "cat", "dog": "dog"}, per_class=8)


@pytest.fixture(scope="module")
def head_run(data, tmp_path_factory):
    return train_run(data, tmp_path_factory.mktemp("head-runs"), "feature_extraction", epochs=2)


@pytest.fixture(scope="module")
def layer4_run(data, tmp_path_factory):
    """layer4 and the head train; everything before layer4 is frozen."""
    return train_run(data, tmp_path_factory.mktemp("layer4-runs"), "feature_extraction", epochs=2,
                     phases=[PhaseConfig("layer4", 2, ["layer4", "head"], lr=1e-2)])


# --- weight drift ------------------------------------------------------------------------------------------------


def test_drift_is_exactly_zero_for_frozen_layers_and_positive_for_trained_ones(head_run, layer4_run):
    head_only = run_weight_drift(open_checkpoint(head_run))
    assert [layer.path for layer in head_only.layers if layer.relative != 0.0] == ["fc"]
    assert all(layer.distance == 0.0 for layer in head_only.layers if layer.path != "fc")
    assert head_only.relative_of("fc") > 0
    assert {s.name: s.relative == 0.0 for s in head_only.stages} == {
        "stem": True, "layer1": True, "layer2": True, "layer3": True, "layer4": True, "head": False}

    modules = module_drift(head_only)  # what the layer tree's column shows for every node
    assert modules["layer4"] == modules["layer1.0"] == modules["conv1"] == 0.0
    assert modules["fc"] == head_only.relative_of("fc") and 0 < modules[""] < modules["fc"]

    partial = run_weight_drift(open_checkpoint(layer4_run))
    for layer in partial.layers:
        if layer.path.startswith(BODY):
            assert layer.relative == 0.0, f"{layer.path} is frozen but drifted {layer.relative}"
        else:
            assert layer.relative > 0, f"{layer.path} trained but did not move"
    assert partial.relative_of("layer4.1.conv2") > 0 and partial.relative_of("layer4.0.bn1") > 0
    assert sum(layer.params for layer in partial.layers) == 53_738  # every parameter of tiny_resnet (2 classes)
    assert partial.to_dict() == type(partial).from_dict(partial.to_dict()).to_dict()


def test_the_start_is_rebuilt_exactly_as_the_run_started(data, tmp_path):
    """A run stopped before its first step saves the model it started with: its drift is 0 everywhere."""
    control = ev.RunControl()
    recipe = tiny_recipe(data, "fine_tune_all", epochs=1, out=tmp_path)
    stop = lambda e: isinstance(e, ev.EpochStarted) and control.request_stop()  # noqa: E731
    result = Trainer(recipe, [stop], control).fit()
    assert result.status == "stopped"
    drift = run_weight_drift(open_checkpoint(result.run_dir, "last"))
    assert drift.layers and all(layer.distance == 0.0 for layer in drift.layers)  # the new head too


def test_drift_by_hand():
    model = nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 5.0]]))
        model[0].bias.fill_(0.0)
        model[1].weight.fill_(2.0)
        model[1].bias.fill_(1.0)
    start = {"0.weight": torch.tensor([[3.0, 4.0]]), "0.bias": torch.tensor([0.0]),
             "1.weight": torch.tensor([[0.0]]), "1.bias": torch.tensor([0.0])}
    drift = weight_drift(model, start)
    assert drift.layers[0].path == "0"
    assert drift.layers[0].relative == pytest.approx(1 / 5)  # ‖(0, 1, 0)‖ / ‖(3, 4, 0)‖
    assert drift.layers[1].relative is None and drift.layers[1].distance == pytest.approx(5 ** 0.5)  # from zero
    # A module's drift takes its layers together: (distance² summed) / (start norm² summed), root included.
    assert module_drift(drift) == pytest.approx({"0": 1 / 5, "1": None, "": (1 + 5) ** 0.5 / 5}, nan_ok=True)
    with pytest.raises(ValueError, match="shape"):
        weight_drift(model, {**start, "0.weight": torch.zeros(2, 2)})
    with pytest.raises(KeyError, match="1.bias"):
        weight_drift(model, {k: v for k, v in start.items() if k != "1.bias"})


# --- filters and feature maps --------------------------------------------------------------------------------


def test_first_conv_filters_form_a_grid():
    conv = nn.Conv2d(3, 5, kernel_size=3)
    with torch.no_grad():
        conv.weight[1].zero_()
        conv.weight[2].fill_(-0.25)
        conv.weight[2, 0, 0, 0] = 0.5
    grid = first_conv_filters(nn.Sequential(conv), scale=2, padding=1)
    assert (grid.filters, grid.rows, grid.cols, grid.tile, grid.layer) == (5, 2, 3, 6, "0")
    assert grid.image.shape == (2 * 6 + 3, 3 * 6 + 4, 3) and grid.image.dtype == np.uint8

    def tile(image, index):
        r, c = divmod(index, 3)
        return image[1 + r * 7:1 + r * 7 + 6, 1 + c * 7:1 + c * 7 + 6]

    assert tile(grid.image, 0).min() == 0 and tile(grid.image, 0).max() == 255  # stretched on its own
    assert (tile(grid.image, 1) == 128).all()  # a constant filter is mid-grey
    same = first_conv_filters(nn.Sequential(conv), scale=2, padding=1, limit=0.5)
    assert (tile(same.image, 1) == 128).all()  # zero weight: grey on the symmetric scale
    assert tuple(tile(same.image, 2)[0, 0]) == (255, 64, 64)  # +0.5 → white in red, −0.25 → a quarter down
    assert (same.image[0] == 255).all()  # separators
    grey = first_conv_filters(nn.Sequential(nn.Conv2d(1, 4, 3)), scale=1)
    assert (grey.image[..., 0] == grey.image[..., 1]).all()  # one input channel: greyscale tiles


def test_pretrained_and_fine_tuned_side_by_side(head_run, layer4_run, data):
    image = data / "cat" / "cat_000.png"
    frozen = NetworkViews(open_checkpoint(head_run))
    start, trained = frozen.filters()
    assert start.image.shape == (3 * 12 + 4, 3 * 12 + 4, 3) and start.filters == 8  # 3×3 filters at 4×, 3 a row
    assert np.array_equal(start.image, trained.image)  # feature extraction never touched conv1
    before, after = frozen.feature_maps(image, "layer2")
    assert before.maps.shape == (16, 16, 16) and before.layer == "layer2"
    assert np.array_equal(before.maps, after.maps)
    assert before.order[0] == int(np.argmax(before.maps.mean(axis=(1, 2))))
    assert before.grid(count=4, scale=2).shape == (2 * 32 + 3, 2 * 32 + 3)
    # Another model's channel order picks the channels: here the second strongest, stretched to its range.
    second = before.maps[before.order[1]]
    stretched = np.rint(255 * (second - second.min()) / (second.max() - second.min())).astype(np.uint8)
    assert np.array_equal(before.grid(count=1, scale=1, padding=0, order=before.order[1:]), stretched)
    assert not np.array_equal(before.grid(count=1, scale=1, padding=0), stretched)

    partial = NetworkViews(open_checkpoint(layer4_run))
    assert partial.stage_names() == ["stem", "layer1", "layer2", "layer3", "layer4"]
    before, after = partial.feature_maps(image, "layer3")
    assert np.array_equal(before.maps, after.maps)  # frozen up to layer3
    before, after = partial.feature_maps(image, "layer4")
    assert before.maps.shape == (32, 4, 4)  # 32 px in, 4 × 4 out
    assert not np.array_equal(before.maps, after.maps)  # layer4 was fine-tuned


def test_stages_without_feature_maps_are_refused(head_run, data):
    views = NetworkViews(open_checkpoint(head_run))
    with pytest.raises(BadInputError, match="'layer9' is not a stage of this model .*layer4"):
        views.feature_maps(data / "cat" / "cat_000.png", "layer9")
    with pytest.raises(BadInputError, match="stage 'head' gives no spatial feature maps"):
        views.feature_maps(data / "cat" / "cat_000.png", "head")


def test_transformer_tokens_are_shown_as_their_patch_grid():
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=3)
    maps = stage_feature_maps(vit, compute_stages(vit, "heads.head"), torch.randn(3, 32, 32), "block1")
    assert maps.maps.shape == (16, 4, 4)  # 16 patch tokens (the class token left out), 16 channels
