"""Cached features: the same head as the uncached loop, reused across runs, rebuilt when anything changes."""

from __future__ import annotations

import shutil

import pytest
import torch

from engine.train import events as ev
from engine.train.checkpoints import load_checkpoint
from engine.train.feature_cache import FeatureStore
from engine.train.runs import checkpoint_path, read_metrics
from engine.train.trainer import fit
from tests.helpers import make_image_folder, tiny_recipe


def run(recipe, cache: str):
    recipe = recipe.copy()
    recipe.data.cache_features = cache
    events = []
    result = fit(recipe, [events.append])
    assert result.status == "finished", result.error
    head = load_checkpoint(checkpoint_path(result.run_dir, "last"))["model"]
    return result, events, head


def cached_events(events):
    return [e for e in events if isinstance(e, ev.FeaturesCached)]


@pytest.mark.parametrize("augmentation, views", [("none", 1), ("lesson", 3)])
def test_cached_head_equals_uncached_head(image_folder, tmp_path, augmentation, views):
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=3, out=tmp_path)
    recipe.data.augmentation = augmentation
    recipe.data.feature_views = views  # one view per epoch: the same augmented images as the uncached loop
    plain, plain_events, plain_state = run(recipe, "off")
    cached, cached_events_, cached_state = run(recipe, "auto")
    assert cached_events(plain_events) == []
    assert len(cached_events(cached_events_)) == 1
    for key in ("fc.weight", "fc.bias"):
        assert torch.allclose(plain_state[key], cached_state[key], atol=1e-5), key
    for a, b in zip(read_metrics(plain.run_dir), read_metrics(cached.run_dir)):
        assert b["val_acc"] == pytest.approx(a["val_acc"])
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    assert cached.summary["phases"][0]["cached_features"]["views"] == views
    assert cached.summary["phases"][0]["freeze_verified"] is True


def test_cache_is_reused_then_rebuilt_when_data_or_backbone_change(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    recipe = tiny_recipe(data, "gradual_unfreezing", epochs=3, out=tmp_path / "runs")
    _, first, trained = run(recipe, "auto")
    assert [(e.phase_index, e.from_disk) for e in cached_events(first)] == [(0, False)]  # only the head phase
    recipe.phases = recipe.phases[:1]  # the phase the cache serves: the later runs need nothing else
    recipe.validate()
    FeatureStore.forget_memory()
    _, second, _ = run(recipe, "auto")
    assert cached_events(second)[0].from_disk and cached_events(second)[0].key == cached_events(first)[0].key
    # The data change: one more image.
    shutil.copy(next((data / "cat").glob("*.png")), data / "cat" / "extra.png")
    _, third, _ = run(recipe, "auto")
    assert not cached_events(third)[0].from_disk and cached_events(third)[0].key != cached_events(first)[0].key
    # The backbone change: other weights from a file (the first run's, fine-tuned by its later phases).
    weights = tmp_path / "other.pth"
    torch.save({k: v for k, v in trained.items() if not k.startswith("fc.")}, weights)
    recipe.model.weights_file = str(weights)
    _, fourth, _ = run(recipe, "auto")
    assert cached_events(fourth)[0].key not in {cached_events(e)[0].key for e in (first, third)}


def test_memory_only_cache_writes_nothing(tmp_path, offline_torch_home):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=5, seed=3)
    recipe = tiny_recipe(data, "feature_extraction", epochs=1, out=tmp_path / "runs")
    recipe.data.feature_cache_mb = 0
    before = set(offline_torch_home["cache"].glob("*.pt"))
    run(recipe, "auto")
    assert set(offline_torch_home["cache"].glob("*.pt")) == before
