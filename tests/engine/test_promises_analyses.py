"""Every analysis of a fine-tuned run uses the backbone it says it uses — the pretrained one the run started from, or
the fine-tuned one of the checkpoint — and refuses data that no longer matches the run's classes.

A feature-extraction run cannot tell the two backbones apart (its backbone never moved), so these tests use a run
whose every layer trained, and check each analysis against a computation of their own from the seeded weights file
(the start) and the checkpoint's tensors (the end): label issues (`backbone="start"` / `"trained"`), weight drift,
the network views (first-conv filters, stage feature maps) and the out-of-distribution calibration.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.data.images import load_image
from engine.errors import BadInputError
from engine.infer.drift import run_weight_drift
from engine.infer.evaluation import evaluate_checkpoint, write_run_evaluation
from engine.infer.label_issues import find_run_label_issues
from engine.infer.network_view import NetworkViews, first_conv_filters, stage_feature_maps
from engine.infer.run_checkpoint import open_checkpoint
from engine.model import zoo
from engine.recipe import PhaseConfig
from engine.train.checkpoints import load_checkpoint, save_checkpoint
from engine.train.runs import checkpoint_path


@pytest.fixture(scope="module")
def fine_tuned(trained_runs) -> Path:
    """Every layer trained at one rate (the session's fine-tuned run: tests/engine/test_export.py exports it)."""
    return trained_runs.get("fine_tune_all", epochs=2, phases=[PhaseConfig("all", 2, ["all"], lr=1e-2)])


@pytest.fixture
def own_fine_tuned(fine_tuned, trained_runs, tmp_path) -> Path:
    return trained_runs.copy(fine_tuned, tmp_path)


def pretrained_state(arch: str = "tiny_resnet") -> dict[str, torch.Tensor]:
    """The seeded pretrained file itself, read here (not through the code under test)."""
    path = zoo.cached_weights_path(zoo.weights_enum(arch).DEFAULT)
    return torch.load(path, weights_only=True)


def built_like(state: dict[str, torch.Tensor], classes: int = 3) -> torch.nn.Module:
    """tiny_resnet holding `state`'s backbone (the head is left out: its shape differs)."""
    model = zoo.get_model("tiny_resnet", num_classes=classes)
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in own and v.shape == own[k].shape}, strict=False)
    return model.eval()


def test_drift_runs_from_the_pretrained_file_to_the_checkpoint(fine_tuned):
    start, end = pretrained_state(), load_checkpoint(checkpoint_path(fine_tuned, "best"))["model"]
    drift = run_weight_drift(open_checkpoint(fine_tuned))
    layers = {layer.path: layer for layer in drift.layers}
    for path in ("conv1", "layer1.0.conv2", "layer3.0.downsample.0", "layer4.0.bn2"):
        names = [k for k in start if k.startswith(path + ".") and not k.endswith(("running_mean", "running_var",
                                                                                 "num_batches_tracked"))]
        distance = sum(float((end[k].double() - start[k].double()).pow(2).sum()) for k in names) ** 0.5
        norm = sum(float(start[k].double().pow(2).sum()) for k in names) ** 0.5
        assert layers[path].distance == pytest.approx(distance, rel=1e-6), path
        assert layers[path].relative == pytest.approx(distance / norm, rel=1e-6), path
        assert distance > 0  # every layer trained


def test_network_views_show_the_pretrained_and_the_fine_tuned_model(fine_tuned, image_folder):
    views = NetworkViews(open_checkpoint(fine_tuned))
    start, trained = views.filters(same_scale=True)
    limit = max(float(pretrained_state()["conv1.weight"].abs().max()),
                float(load_checkpoint(checkpoint_path(fine_tuned, "best"))["model"]["conv1.weight"].abs().max()))
    pretrained = built_like(pretrained_state())
    checkpoint = built_like(load_checkpoint(checkpoint_path(fine_tuned, "best"))["model"])
    assert np.array_equal(start.image, first_conv_filters(pretrained, limit=limit).image)
    assert np.array_equal(trained.image, first_conv_filters(checkpoint, limit=limit).image)
    assert not np.array_equal(start.image, trained.image)

    image = image_folder / "dog" / "dog_003.png"
    before, after = views.feature_maps(image, "layer2")
    tensor = views.transform(load_image(image, 3))
    stages = views.trained.stages
    assert np.array_equal(before.maps, stage_feature_maps(pretrained, stages, tensor, "layer2").maps)
    assert np.array_equal(after.maps, stage_feature_maps(checkpoint, stages, tensor, "layer2").maps)
    assert not np.array_equal(before.maps, after.maps)


def constant_backbone(run: Path) -> None:
    """Make the checkpoint's fine-tuned backbone map every image to the same features: layer4's residual branch and
    shortcut both output a constant (their last BatchNorm scaled to 0, shifted to 1)."""
    for kind in ("best", "last"):
        path = checkpoint_path(run, kind)
        state = load_checkpoint(path)
        for bn in ("layer4.0.bn2", "layer4.0.downsample.1"):
            state["model"][f"{bn}.weight"].zero_()
            state["model"][f"{bn}.bias"].fill_(1.0)
        path.unlink()  # best.pt is a hard link to a last.pt: write each as a file of its own
        save_checkpoint(path, state)


def test_label_issues_use_the_backbone_they_are_asked_for(own_fine_tuned):
    constant_backbone(own_fine_tuned)
    start = find_run_label_issues(own_fine_tuned, backbone="start", write=False)
    trained = find_run_label_issues(own_fine_tuned, backbone="trained", write=False)
    assert (start.backbone, trained.backbone) == ("start", "trained")
    # The pretrained backbone tells the three styles apart; the (now constant) fine-tuned one cannot.
    assert start.out_of_fold_accuracy > 0.9
    assert trained.out_of_fold_accuracy < 0.5


def test_the_ood_calibration_is_fitted_on_the_fine_tuned_features(own_fine_tuned):
    """The calibration's threshold is the 95th percentile of the validation images' distances under the features a
    prediction is scored with — the fine-tuned model's: scored again through the Predictor, the validation images'
    quantile is exactly 1.0."""
    evaluation = write_run_evaluation(own_fine_tuned)
    scores = [image["ood_score"] for image in evaluation.to_dict()["images"]]
    assert len(scores) == len(evaluation.to_dict()["images"]) > 3
    # (the calibration's features come from the folded-BatchNorm feature pass: equal to float32 rounding)
    assert float(np.quantile(scores, 0.95)) == pytest.approx(1.0, rel=1e-3)


# --- data that changed since the run ---------------------------------------------------------------------------


def renamed_class(run: Path, tmp_path: Path, old: str = "cat", new: str = "cow") -> Path:
    """The run's data copied and one class folder renamed (as many classes as before), the run pointed at it."""
    data = Path(open_checkpoint(run).recipe.data.root)
    moved = tmp_path / "renamed"
    shutil.copytree(data, moved)
    (moved / old).rename(moved / new)
    for kind in ("best", "last"):
        path = checkpoint_path(run, kind)
        state = load_checkpoint(path)
        state["recipe"]["data"]["root"] = str(moved)
        path.unlink()
        save_checkpoint(path, state)
    return moved


def test_evaluation_and_label_issues_refuse_a_data_folder_whose_classes_changed(own_fine_tuned, tmp_path):
    renamed_class(own_fine_tuned, tmp_path)
    with pytest.raises(BadInputError, match="now holds the classes cow, dog, fox.*trained on cat, dog, fox"):
        evaluate_checkpoint(own_fine_tuned)
    with pytest.raises(BadInputError, match="now holds the classes cow, dog, fox.*trained on cat, dog, fox"):
        find_run_label_issues(own_fine_tuned, write=False)


def test_the_cli_refuses_it_in_one_line_with_exit_2(own_fine_tuned, tmp_path, cli):
    renamed_class(own_fine_tuned, tmp_path)
    for command in (["evaluate", own_fine_tuned], ["label-issues", own_fine_tuned]):
        out = cli(*command)
        assert out.code == 2, out.err
        assert out.err.startswith("error: ") and out.err.count("\n") == 1 and "cow, dog, fox" in out.err
