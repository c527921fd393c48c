"""Domain pre-training (`pretrain`, engine/pretrain/): the weights file it writes is a backbone any recipe starts from,
a stopped run resumes to the very losses and weights of one that never stopped, bad input is one line and exit 2.

Tiny: tiny_resnet at 16 px, 8 unlabeled images (plus two unusable files), batches of 4, one or two epochs."""

from __future__ import annotations

import builtins
import csv
import json
from pathlib import Path

import pytest
import torch

from engine.data.images import load_image
from engine.data.scan import scan_unlabeled
from engine.data.transforms import eval_transform
from engine.model.build import resolve_preprocessing
from engine.pretrain.config import PretrainConfig
from engine.pretrain.events import KnnMeasured, PretrainBatchFinished, PretrainStarted, PretrainStopped
from engine.pretrain.knn import knn_predict
from engine.pretrain.run import PretrainRun
from engine.recipe import DataConfig, ModelConfig
from engine.train.events import RunControl
from tests.helpers import make_image_folder, tiny_recipe

pytest.importorskip("lightly", reason="domain pre-training needs lightly (pip install '.[test]' installs it)")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """2 classes × 4 images of 20 px, a truncated JPEG and a non-image: labelled (k-NN) and unlabeled at once."""
    return make_image_folder(tmp_path_factory.mktemp("unlabeled"), classes=2, per_class=4, size=20, broken=True)


def _recipe(images: Path, out: Path, strategy: str = "feature_extraction"):
    recipe = tiny_recipe(images, strategy, out=out)
    recipe.data.resize_size, recipe.data.crop_size = 18, 16
    recipe.batch_size = 4
    return recipe.validate()


def _losses(run_dir: Path) -> list[str]:
    """The loss of every step as written (repr of the float: equal text is equal bits)."""
    with open(run_dir / "batches.csv", newline="") as f:
        return [row["loss"] for row in csv.DictReader(f)]


def test_one_epoch_writes_the_backbone_that_train_accepts(images, tmp_path, cli, offline_torch_home):
    recipe_file = tmp_path / "recipe.json"
    _recipe(images, tmp_path / "runs").save(recipe_file)
    out = tmp_path / "domain.pth"

    code, _, err = cli("pretrain", recipe_file, "--unlabeled", images, "--epochs", "1", "--out", out, "--quiet")

    assert code == 0, err
    written = torch.load(out, weights_only=True)
    start = torch.load(offline_torch_home["files"]["tiny_resnet"], weights_only=True)  # what the recipe started from
    backbone = {k: v for k, v in start.items() if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in written.items()} == {k: tuple(v.shape) for k, v in backbone.items()}
    moved = [k for k in backbone if backbone[k].is_floating_point() and not torch.equal(written[k], backbone[k])]
    assert "conv1.weight" in moved and "layer4.1.conv2.weight" in moved
    run_dir = next((tmp_path / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["images"] == 8 and summary["skipped"] == 2
    assert summary["knn_start"] is not None and summary["knn_end"] is not None
    assert len(_losses(run_dir)) == 2  # 8 images, batches of 4
    assert "truncated.jpg" in err and "notes.jpg" in err  # the unusable files are named, and skipped

    _recipe(images, tmp_path / "runs", strategy="fine_tune_all").save(recipe_file)  # a run that trains the backbone
    code, _, err = cli("train", recipe_file, "--weights-file", out, "--epochs", "1", "--quiet")

    assert code == 0, err
    required = len([k for k in backbone if not k.endswith("num_batches_tracked")])  # as the load report counts
    assert f"loaded {out}: {required} of {required} backbone tensors" in err


def test_zero_epochs_only_reestimate_the_batchnorm_statistics_on_the_images(images, tmp_path, offline_torch_home):
    """AdaBN: the weights as they were, every BatchNorm layer's running statistics those of the unlabeled images
    (as every run ends: its statistics had followed the augmented views)."""
    run = PretrainRun(_recipe(images, tmp_path), PretrainConfig(unlabeled=str(images), epochs=0))
    assert run.run() == "finished"
    written = torch.load(run.run_dir / "backbone.pth", weights_only=True)
    start = torch.load(offline_torch_home["files"]["tiny_resnet"], weights_only=True)
    statistics = [k for k in written if "running_" in k]
    assert len(statistics) == 2 * 20  # tiny_resnet's 20 BatchNorm layers
    assert all(not torch.equal(written[k], start[k]) for k in statistics)
    assert all(torch.equal(written[k], start[k]) for k in written if "running_" not in k and "num_batches" not in k)
    # The first layer's statistics are those of every usable image as evaluation sees it: conv1's output averaged
    # over the images and positions (not a moving average of the last batches).
    prep = resolve_preprocessing(ModelConfig(arch="tiny_resnet"), DataConfig(resize_size=18, crop_size=16))
    transform = eval_transform(prep)
    x = torch.stack([transform(load_image(p, 3)) for p in scan_unlabeled(images).images])
    conv1 = torch.nn.functional.conv2d(x, start["conv1.weight"], padding=1)
    torch.testing.assert_close(written["bn1.running_mean"], conv1.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["batchnorm_layers"] == 20 and summary["knn_end"] is not None and not _losses(run.run_dir)


@pytest.mark.parametrize("method", ["moco", "byol"])
def test_a_stopped_run_resumes_to_the_same_losses_and_weights(images, tmp_path, cli, method):
    """MoCo keeps a queue of keys (lightly's memory bank, outside the state dict) and a momentum encoder; BYOL a
    momentum teacher and a predictor; both draw views from three generators. Stopped mid-epoch, resumed by the
    CLI: every loss and every weight as the run that never stopped."""
    config = dict(method=method, unlabeled=str(images), epochs=2)
    whole = PretrainRun(_recipe(images, tmp_path / "whole"), PretrainConfig(**config))
    assert whole.run() == "finished"

    control = RunControl()

    def stop_after_the_first_batch(event):
        if isinstance(event, PretrainBatchFinished) and (event.epoch, event.batch) == (0, 0):
            control.request_stop()

    stopped = PretrainRun(_recipe(images, tmp_path / "stopped"), PretrainConfig(**config),
                          [stop_after_the_first_batch], control)
    assert stopped.run() == "stopped"
    assert len(_losses(stopped.run_dir)) == 1

    code, _, err = cli("resume", stopped.run_dir, "--quiet")

    assert code == 0, err
    assert "resuming at epoch 1, batch 2" in err
    assert _losses(stopped.run_dir) == _losses(whole.run_dir)
    a = torch.load(whole.run_dir / "backbone.pth", weights_only=True)
    b = torch.load(stopped.run_dir / "backbone.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stop_at_an_epoch_end_resumes_at_the_next_epoch(images, tmp_path, recorder):
    control = RunControl()

    def stop_at_the_epoch_end(event):
        if isinstance(event, PretrainBatchFinished) and (event.epoch, event.batch) == (0, 1):
            control.request_stop()

    run = PretrainRun(_recipe(images, tmp_path), PretrainConfig(unlabeled=str(images), epochs=2),
                      [stop_at_the_epoch_end, recorder], control)
    assert run.run() == "stopped"
    assert recorder.first(PretrainStopped).epoch == 1 and recorder.first(PretrainStopped).batch == 0
    assert [e.epochs_done for e in recorder.of(KnnMeasured)] == [0, 1]

    resumed = PretrainRun.from_run_dir(run.run_dir, [recorder])
    assert resumed.run() == "finished"
    assert recorder.of(PretrainStarted)[-1].start_epoch == 1
    assert [e.epochs_done for e in recorder.of(KnnMeasured)] == [0, 1, 2]  # no second start measurement
    assert len(_losses(run.run_dir)) == 4


def test_a_run_whose_images_changed_is_not_resumed(tmp_path, cli):
    images = make_image_folder(tmp_path / "images", classes=2, per_class=3, size=20)
    control = RunControl()
    run = PretrainRun(_recipe(images, tmp_path / "runs"), PretrainConfig(unlabeled=str(images), epochs=2),
                      [lambda e: isinstance(e, PretrainBatchFinished) and control.request_stop()], control)
    assert run.run() == "stopped"
    (images / "cat" / "cat_000.png").unlink()

    code, _, err = cli("resume", run.run_dir)

    assert code == 2 and "changed since the run started (now 5)" in err and err.count("\n") == 1, err


def test_an_images_views_depend_on_seed_epoch_and_index_only(images):
    """lightly's SimCLR views draw from torch's, NumPy's and Python's generators (its blur and solarisation use
    NumPy): whatever state those are in, the views of (seed, epoch, index) are the same — a resumed run, or a loader
    worker, makes the views the uninterrupted run made — and another epoch gives other views."""
    import random

    import numpy as np

    from engine.pretrain.methods import METHODS
    from engine.pretrain.views import UnlabeledViews

    prep = resolve_preprocessing(ModelConfig(arch="tiny_resnet"), DataConfig(resize_size=18, crop_size=16))
    paths = sorted(str(p) for p in images.rglob("*.png"))
    views = UnlabeledViews(paths, METHODS["simclr"].views(prep, True), seed=3)

    def draw(global_seed: int) -> list[torch.Tensor]:
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        random.seed(global_seed)
        return views[2]

    first, again = draw(1), draw(2)
    assert len(first) == 2 and first[0].shape == (3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])  # two different views of the image
    views.set_epoch(1)
    assert not torch.equal(draw(1)[0], first[0])


def test_the_knn_vote_takes_the_nearest_labels():
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.2, 1.0]]), dim=1)
    assert knn_predict(queries, bank, labels, classes=2, k=2).tolist() == [0, 1]
    assert knn_predict(queries, bank, labels, classes=2, k=50).tolist() == [0, 1]  # k beyond the bank: all vote


def test_the_dry_run_measures_and_writes_nothing(images, tmp_path, cli):
    recipe_file = tmp_path / "recipe.json"
    _recipe(images, tmp_path / "runs").save(recipe_file)

    code, out, err = cli("pretrain", recipe_file, "--unlabeled", images, "--method", "byol", "--epochs", "3",
                         "--out", tmp_path / "w.pth", "--dry-run")

    assert code == 0, err
    assert "pre-training would start" in out and "8 unlabeled images (2 skipped)" in out and "3 epochs" in out
    assert "estimated time" in out
    assert not (tmp_path / "w.pth").exists() and not any((tmp_path / "runs").glob("*"))


@pytest.fixture
def unreadable_only(tmp_path) -> Path:
    folder = tmp_path / "unreadable" / "cls"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"not a png")
    (folder / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return folder.parent


def _no_lightly(monkeypatch):
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "lightly" or name.startswith("lightly."):
            raise ModuleNotFoundError(f"No module named '{name}'", name="lightly")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    import sys

    for name in [n for n in sys.modules if n == "lightly" or n.startswith("lightly.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize("case, expected", [
    ("empty folder", "0 usable image(s), at least 2 are needed"),
    ("unreadable images", "0 usable image(s), at least 2 are needed (2 unusable: a.png: "),
    ("missing folder", "image folder not found"),
    ("unknown method", "unknown pre-training method 'swav'; the methods are simclr, moco, byol, dino"),
    ("unsupported family", "simclr cannot pre-train squeezenet1_0 (family squeezenet): its classifier is a 1×1 "
                           "convolution"),
    ("several processes", "--processes 2: pre-training runs in one process"),
    ("lightly missing", "domain pre-training needs the lightly package (lightly is not installed): pip install "
                        "'thaw[pretrain]'"),
])
def test_bad_input_is_refused_in_one_line_with_exit_2(images, unreadable_only, tmp_path, cli, monkeypatch, case,
                                                      expected):
    recipe = _recipe(images, tmp_path / "runs")
    folder, extra = images, []
    if case == "empty folder":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "unreadable images":
        folder = unreadable_only
    elif case == "missing folder":
        folder = tmp_path / "nowhere"
    elif case == "unknown method":
        extra = ["--method", "swav"]
    elif case == "unsupported family":
        recipe.model.arch, recipe.model.weights = "squeezenet1_0", "none"
    elif case == "several processes":
        extra = ["--processes", "2"]
    elif case == "lightly missing":
        _no_lightly(monkeypatch)
    recipe.save(tmp_path / "recipe.json")

    code, out, err = cli("pretrain", tmp_path / "recipe.json", "--unlabeled", folder, "--out", tmp_path / "w.pth",
                         *extra)

    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / "w.pth").exists()
