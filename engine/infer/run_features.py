"""The backbone features (the head's input) of a run's training and validation images, for the analyses that
work on features: out-of-distribution calibration and label issues.

They come from engine.train.feature_cache, the same extractor and the same on-disk store the trainer uses, with
the same description of what they depend on as the trainer's one-view, un-augmented cache. So after a feature
extraction run (whose backbone never changed) the features are read back from the cache instead of recomputed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.data.datasets import PreparedData
from engine.errors import ThawError
from engine.infer.run_checkpoint import RunCheckpoint, make_loader, sample_ids
from engine.model.build import BuiltModel
from engine.train.feature_cache import FeatureStore, build_feature_set


@dataclass
class SplitFeatures:
    train: torch.Tensor  # (N, D) float32 on the CPU
    train_labels: torch.Tensor  # (N,) int64
    train_ids: list[str]  # the images' paths (or torchvision ids), in the same order
    val: torch.Tensor  # (M, D)
    val_labels: torch.Tensor
    val_ids: list[str]
    key: str  # the feature cache's key
    seconds: float  # time this call took (a fraction of a second when the cache had them)


def split_features(checkpoint: RunCheckpoint, data: PreparedData, built: BuiltModel,
                   device: str | torch.device = "cpu",
                   progress: Callable[[int, int], None] | None = None) -> SplitFeatures:
    """Features of `built`'s backbone for every training and validation image (un-augmented, eval mode)."""
    device = torch.device(device)
    recipe = checkpoint.recipe
    model = built.model.to(device).eval()
    # Exactly the trainer's description of a one-view cache (Trainer._cached_features): equal keys, shared files.
    describe = {"arch": recipe.model.arch, "weights": built.weights_name, "in_channels": recipe.model.in_channels,
                "preprocessing": built.preprocessing.to_dict(), "augmentation": "none", "seed": recipe.seed,
                "head": built.head_path}
    started = time.perf_counter()
    features = build_feature_set(model, built.head_path, make_loader(recipe, device), data.train, data.val, 1,
                                 device, contextlib.nullcontext, False, describe,
                                 FeatureStore(budget_mb=recipe.data.feature_cache_mb), progress)
    if features is None:  # only when stopped, and nothing here asks to stop
        raise ThawError("the feature pass was interrupted")
    return SplitFeatures(features.train[0].float().cpu(), features.train_labels.cpu(), sample_ids(data.train, "train"),
                         features.val.float().cpu(), features.val_labels.cpu(), sample_ids(data.val, "val"),
                         features.key, time.perf_counter() - started)
