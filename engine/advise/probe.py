"""One quick measurement of a backbone on the user's own images, shared by the advisor and compare-models.

The frozen backbone's features of every training and validation image (engine/train/feature_cache.py: the same
extractor, key and on-disk store as a feature-extraction run, so a later run reads them back), the fitted head on
them (engine/train/head_fit.py: L-BFGS, L2 by stratified cross-validation on the training features only), and the
BatchNorm domain shift of the images (domain_shift.py). What the probe reports is measured, never looked up.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine.advise.domain_shift import DomainShift, measure_domain_shift
from engine.data.datasets import PreparedData, prepare_data
from engine.data.transforms import eval_transform
from engine.infer.export_run import evenly_spaced
from engine.infer.run_checkpoint import make_loader
from engine.model.build import BuiltModel, build_model, resolve_preprocessing
from engine.recipe import Recipe
from engine.train.devices import setup_device
from engine.train.feature_cache import FeatureStore, build_feature_set
from engine.train.head_fit import FitSettings, fit_head, write_parameters

FEATURES, FIT, SHIFT = "features", "fit", "domain shift"


@dataclass(frozen=True)
class ProbeSettings:
    # One shuffle of the 5-fold cross-validation: the probe ranks and advises; a run fits with two (head_fit.py)
    fit: FitSettings = FitSettings(repeats=1)
    # Images passed again through the backbone for the BatchNorm statistics: the per-channel means and variances
    # of a few hundred images are stable to a few percent (they average over every pixel of every image)
    shift_images: int = 256
    measure_shift: bool = True
    # False: the backbone's pass always runs (its time is what compare-models reports); its features are still
    # stored for a later run. True (the advisor): features already in the cache are read back.
    reuse_features: bool = True


class _WriteOnlyStore(FeatureStore):
    """The feature store that never answers a lookup: the pass runs and is timed, and its result is kept."""

    def get(self, key: str):
        return None


@dataclass
class ProbeProgress:
    stage: str  # FEATURES, FIT or SHIFT
    done: int
    total: int


@dataclass
class Probe:
    arch: str
    weights: str  # exact, as the model was built
    classes: list[str]
    train_counts: list[int]  # training images per class, in the order of `classes`
    val_images: int
    feature_dim: int
    cv_accuracy: float | None  # the fitted head's pooled held-out accuracy at its chosen L2 (None: no CV possible)
    cv_folds: int
    l2: float
    val_accuracy: float  # the same fitted head on the validation features
    extraction_seconds: float | None  # the backbone's pass over train + val; None when read from the cache
    features_cached: bool
    fit_seconds: float
    shift: DomainShift | None
    device: str
    notes: list[str] = field(default_factory=list)

    @property
    def smallest_class(self) -> int:
        return min(self.train_counts) if self.train_counts else 0

    @property
    def median_per_class(self) -> float:
        return float(statistics.median(self.train_counts)) if self.train_counts else 0.0

    @property
    def imbalance(self) -> float:
        """The largest class over the smallest (1.0: balanced)."""
        return max(self.train_counts) / max(1, self.smallest_class) if self.train_counts else 1.0

    @property
    def chance(self) -> float:
        return 1.0 / max(1, len(self.classes))

    def to_dict(self) -> dict:
        return {"arch": self.arch, "weights": self.weights, "classes": len(self.classes),
                "train_images": sum(self.train_counts), "val_images": self.val_images,
                "images_per_class": {"smallest": self.smallest_class, "median": self.median_per_class,
                                     "largest": max(self.train_counts) if self.train_counts else 0},
                "imbalance": round(self.imbalance, 3), "feature_dim": self.feature_dim,
                "cv_accuracy": None if self.cv_accuracy is None else round(self.cv_accuracy, 4),
                "cv_folds": self.cv_folds, "l2": self.l2, "val_accuracy": round(self.val_accuracy, 4),
                "chance": round(self.chance, 4), "extraction_seconds": _rounded(self.extraction_seconds),
                "features_cached": self.features_cached, "fit_seconds": round(self.fit_seconds, 3),
                "domain_shift": self.shift.to_dict() if self.shift else None, "device": self.device}


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def probe_data(recipe: Recipe) -> PreparedData:
    """The recipe's training and validation images, both un-augmented (the probe measures the frozen features)."""
    prep = resolve_preprocessing(recipe.model, recipe.data)
    transform = eval_transform(prep)
    return prepare_data(recipe.data, transform, transform, recipe.model.in_channels, seed=recipe.seed)


def build_probe_model(recipe: Recipe, classes: int) -> BuiltModel:
    """The recipe's model with its pretrained weights (local only: the caller checked) and a new head, seeded as
    the trainer seeds it."""
    torch.manual_seed(recipe.seed)
    built = build_model(recipe.model, classes, recipe.data)
    built.model.eval()
    return built


def run_probe(recipe: Recipe, data: PreparedData | None = None, settings: ProbeSettings = ProbeSettings(),
              progress: Callable[[ProbeProgress], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> Probe | None:
    """Probe the recipe's backbone on its data; None when `should_stop` asked to stop."""
    data = data or probe_data(recipe)
    device = setup_device(recipe.device, "fp32", "off").device
    built = build_probe_model(recipe, len(data.classes))
    model = built.model.to(device)
    # The trainer's description of a one-view, un-augmented cache (engine/infer/run_features.py does the same), so
    # a feature-extraction run of this recipe finds these features in the store.
    describe = {"arch": recipe.model.arch, "weights": built.weights_name, "in_channels": recipe.model.in_channels,
                "preprocessing": built.preprocessing.to_dict(), "augmentation": "none", "seed": recipe.seed,
                "head": built.head_path}

    def tell(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(ProbeProgress(stage, done, total))

    computed = [False]

    def on_features(done: int, total: int) -> None:
        computed[0] = True  # only a pass reports progress: a store hit does not
        tell(FEATURES, done, total)

    store = FeatureStore(budget_mb=recipe.data.feature_cache_mb) if settings.reuse_features else \
        _WriteOnlyStore(budget_mb=recipe.data.feature_cache_mb)
    features = build_feature_set(model, built.head_path, make_loader(recipe, device), data.train, data.val, 1,
                                 device, contextlib.nullcontext, False, describe, store, on_features, should_stop)
    if features is None:
        return None
    cached = not computed[0]
    train, labels = features.train.float().cpu(), features.train_labels.cpu()
    head = copy.deepcopy(model.get_submodule(built.head_path)).cpu().float()
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    fit = fit_head(head, train, labels, criterion, recipe.early_stopping.metric,
                   torch.Generator().manual_seed(recipe.seed), settings.fit, should_stop,
                   lambda p: tell(FIT, p.done, p.total))
    if fit is None:
        return None
    write_parameters(head, fit.parameters)
    with torch.no_grad():
        val_logits = head(features.val.float().cpu())
    val_labels = features.val_labels.cpu()
    val_accuracy = float((val_logits.argmax(1) == val_labels).float().mean()) if len(val_labels) else 0.0
    cv_accuracy = fit.cv_acc[fit.grid.index(fit.l2)] if fit.folds else None
    counts = torch.bincount(labels, minlength=len(data.classes)).tolist()
    notes = [] if fit.folds else ["a class has fewer than 2 training images: no cross-validation"]
    shift = None
    if settings.measure_shift:
        indices = evenly_spaced(len(data.train), settings.shift_images)
        loader = DataLoader(data.train, batch_size=max(1, recipe.batch_size), sampler=indices)
        done = [0]

        def batches():
            for x, y in loader:
                yield x, y
                done[0] += len(x)
                tell(SHIFT, done[0], len(indices))

        shift = measure_domain_shift(model, built.head_path, batches(), device, should_stop)
        if shift is None and should_stop():
            return None
        if shift is None:
            notes.append(f"{recipe.model.arch} has no BatchNorm layer: the domain shift is not measured")
    return Probe(recipe.model.arch, built.weights_name, list(data.classes), counts, len(data.val),
                 int(train.shape[-1]), cv_accuracy, fit.folds, fit.l2, val_accuracy,
                 None if cached else features.seconds, cached,
                 fit.seconds, shift, str(device), notes)
