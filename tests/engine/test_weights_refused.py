"""A local weights file that does not cover the backbone is refused, saying what matched and what did not;
the expected differences (the new head, the documented first-conv adaptation) are accepted and reported."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from torchvision import models as tvm

from engine.cli import main as cli_main
from engine.errors import BadInputError
from engine.model.build import build_model
from engine.recipe import ModelConfig
from tests.helpers import tiny_recipe


# tiny_resnet (tests/tiny_arch.py: resnet18's layout and its 100 backbone tensors' names, at a hundredth of the
# bytes): what the file covers is the subject here, not the architecture.
@cache
def _tiny_imagenet_layout() -> dict[str, torch.Tensor]:
    from engine.model import zoo

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        # its 10-class "pretrained" head, 3-channel input: laid out as a torchvision file as downloaded
        return zoo.get_model("tiny_resnet").state_dict()


def _save(tmp_path, state, name="weights.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_a_state_dict_of_another_architecture_is_refused_with_what_matched(tmp_path):
    other = _save(tmp_path, tvm.mobilenet_v3_small().state_dict(), "mobilenet.pth")
    with pytest.raises(BadInputError) as info:
        build_model(ModelConfig(arch="tiny_resnet", weights_file=str(other)), num_classes=3)
    message = str(info.value)
    assert message.startswith(f"weights file {other} does not fit tiny_resnet: 0 of 100 backbone tensors match")
    assert "100 missing from the file (conv1.weight, bn1.weight, bn1.bias … (+97))" in message
    assert "file tensors unknown to tiny_resnet" in message and "Is it a state dict of tiny_resnet?" in message


def test_a_file_missing_part_of_the_backbone_is_refused_naming_it(tmp_path):
    state = dict(_tiny_imagenet_layout())
    del state["layer3.0.conv1.weight"]
    with pytest.raises(BadInputError, match=r"99 of 100 backbone tensors match; 1 missing from the file "
                                            r"\(layer3\.0\.conv1\.weight\)"):
        build_model(ModelConfig(arch="tiny_resnet", weights_file=str(_save(tmp_path, state))), num_classes=3)


def test_a_backbone_tensor_of_another_shape_is_refused_with_both_shapes(tmp_path):
    state = dict(_tiny_imagenet_layout())
    state["layer4.1.conv2.weight"] = torch.zeros(32, 32, 1, 1)
    with pytest.raises(BadInputError) as info:
        build_model(ModelConfig(arch="tiny_resnet", weights_file=str(_save(tmp_path, state))), num_classes=3)
    assert ("1 of another shape (layer4.1.conv2.weight [32, 32, 1, 1] in the file vs [32, 32, 3, 3])"
            in str(info.value))


def test_a_file_with_another_channel_count_says_which_to_use(tmp_path):
    five = build_model(ModelConfig(arch="tiny_resnet", weights="none", in_channels=5), num_classes=3).model
    path = _save(tmp_path, five.state_dict(), "five.pth")
    with pytest.raises(BadInputError, match="The file's input layer takes 5 channels: set model.in_channels to 5"):
        build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path), in_channels=3), num_classes=3)


def test_expected_differences_are_accepted_and_reported(tmp_path):
    path = _save(tmp_path, _tiny_imagenet_layout(), "imagenet_layout.pth")
    built = build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path), in_channels=5), num_classes=4)
    report = built.load_report
    assert report.fits and report.required == 100 and report.matched == 99
    assert report.adapted == ["conv1.weight"]  # the documented first-conv rule, from the file's RGB filters
    source = _tiny_imagenet_layout()["conv1.weight"]
    assert torch.equal(built.model.conv1.weight[:, :3], source)
    assert torch.allclose(built.model.conv1.weight[:, 3], source.mean(dim=1))
    assert report.head == ["fc.bias", "fc.weight"] and not report.head_loaded
    assert report.text() == (f"loaded {path}: 99 of 100 backbone tensors; input conv adapted to the recipe's "
                             f"channels (conv1.weight); new head (2 tensors)")


def test_cli_refuses_a_foreign_weights_file_and_prints_the_report_of_a_good_one(tmp_path, image_folder, capsys):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=tmp_path / "runs")
    recipe.data.max_train_batches = recipe.data.max_val_batches = 1
    recipe_path = tmp_path / "r.json"
    recipe.save(recipe_path)
    foreign = _save(tmp_path, tvm.mobilenet_v3_small().state_dict(), "foreign.pth")
    assert cli_main(["train", str(recipe_path), "--weights-file", str(foreign), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "does not fit tiny_resnet: 0 of 100 backbone tensors match" in err
    assert list((tmp_path / "runs").glob("*")) == []  # nothing trained

    good = _save(tmp_path, _tiny_imagenet_layout(), "good.pth")
    assert cli_main(["train", str(recipe_path), "--weights-file", str(good), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"Weights: loaded {good}: 100 of 100 backbone tensors; new head (2 tensors)" in err
