"""Every input check of a recipe (engine/recipe.py) refuses what it must, naming the field and what is allowed, and
accepts the edge of what is allowed: one row per rule. The fuzz test (test_recipe_fuzz.py) shows that whatever is
refused is refused in one line; this table shows that each rule refuses at all — a removed or loosened check
loads the bad value and fails its row."""

from __future__ import annotations

import copy

import pytest

from engine.errors import RecipeError
from engine.planning.presets import make_recipe
from engine.recipe import Recipe

BASE = make_recipe("gradual_unfreezing", "resnet18", "/data").to_dict()  # phases: head, head+layer4, all
BASE["data"].update(resize_size=256, crop_size=224)


def with_change(path: str, value) -> dict:
    """BASE with one value replaced: `path` like "phases.1.optimizer.betas" (list indices as numbers)."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


GROUP = {"name": "g", "modules": ["layer4"], "lr": 1e-3, "weight_decay": None}

# (where, bad value, the field the error names, words of the message) — and below, the edge values allowed.
REFUSED = [
    ("name", "", "name", "is empty"),
    ("phases", [], "phases", "at least one phase"),
    ("phases.1.name", "head", "phases[1].name", "used twice"),
    ("device", "tpu", "device", "auto, cpu, cuda, cuda:N, mps"),
    ("device", "cuda:x", "device", "auto, cpu, cuda, cuda:N, mps"),
    ("precision", "fp8", "precision", "is not one of"),
    ("channels_last", "yes", "channels_last", "auto, on, off"),
    ("batch_size", 0, "batch_size", "must be in"),
    ("seed", -1, "seed", "must be in"),
    ("data.dataset", "ImageNet", "data.dataset", "is not one of"),
    ("data.augmentation", "mixup", "data.augmentation", "lesson, trivialaugment, none"),
    ("data.crop_size", 300, "data.crop_size", "larger than resize_size 256"),
    ("data.cache_features", "on", "data.cache_features", "auto, off"),
    ("data.ram_cache", "always", "data.ram_cache", "auto, on, off"),
    ("data.val_fraction", 0.0, "data.val_fraction", "(0, 1)"),
    ("data.val_fraction", 1.0, "data.val_fraction", "(0, 1)"),
    ("data.feature_views", 0, "data.feature_views", "[1, 64]"),
    ("data.feature_views", 65, "data.feature_views", "[1, 64]"),
    ("data.extra_channel_std", [0.0, 0.1], "data.extra_channel_std[0]", "(0, 1000]"),
    ("data.num_workers", -2, "data.num_workers", "[-1, 256]"),
    ("model.arch", "", "model.arch", "is empty"),
    ("model.in_channels", 0, "model.in_channels", "[1, 1024]"),
    ("model.head.dropout", 1.0, "model.head.dropout", "[0, 1)"),
    ("model.head.hidden", -1, "model.head.hidden", "[0, 65536]"),
    ("phases.0.name", "", "phases[0].name", "is empty"),
    ("phases.0.epochs", 0, "phases[0].epochs", "[1, 10000]"),
    ("phases.0.trainable", [], "phases[0].trainable", "lists nothing to train"),
    ("phases.0.lr", 0.0, "phases[0].lr", "(0, 10]"),
    ("phases.0.lr", 11.0, "phases[0].lr", "(0, 10]"),
    ("phases.0.layer_decay", 0.0, "phases[0].layer_decay", "(0, 1]"),
    ("phases.0.lr_preset", "steep", "phases[0].lr_preset", "is not one of"),
    ("phases.0.head_fit", "exact", "phases[0].head_fit", "is not one of converge, epochs"),
    ("phases.0.bn_modes", {"layer1": "off"}, "phases[0].bn_modes[layer1]", "train, frozen_stats, frozen"),
    ("phases.0.bn_modes", {"": "frozen"}, "phases[0].bn_modes['']", "names no module"),
    ("phases.0.groups", [GROUP, GROUP], "phases[0].groups[1].name", "used twice"),
    ("phases.0.groups", [{**GROUP, "name": ""}], "phases[0].groups[0].name", "is empty"),
    ("phases.0.groups", [{**GROUP, "modules": []}], "phases[0].groups[0].modules", "lists no module"),
    ("phases.0.groups", [{**GROUP, "lr": 0.0}], "phases[0].groups[0].lr", "(0, 10]"),
    ("phases.0.groups", [{**GROUP, "weight_decay": 2.0}], "phases[0].groups[0].weight_decay", "[0, 1]"),
    ("phases.0.optimizer.name", "lion", "phases[0].optimizer.name", "adam, adamw, sgd"),
    ("phases.0.optimizer.betas", [0.9], "phases[0].optimizer.betas", "two numbers"),
    ("phases.0.optimizer.betas", [0.9, 1.0], "phases[0].optimizer.betas[1]", "[0, 1)"),
    ("phases.0.optimizer.momentum", 1.0, "phases[0].optimizer.momentum", "[0, 1)"),
    ("phases.0.optimizer.weight_decay", -0.1, "phases[0].optimizer.weight_decay", "[0, 1]"),
    ("phases.0.optimizer.nesterov", True, "phases[0].optimizer.nesterov", "needs optimizer 'sgd'"),
    ("phases.0.schedule.name", "poly", "phases[0].schedule.name", "is not one of"),
    ("phases.0.schedule.gamma", 0.0, "phases[0].schedule.gamma", "(0, 1]"),
    ("phases.0.schedule.step_size", 0, "phases[0].schedule.step_size", "[1, 10000]"),
    ("phases.0.schedule.min_lr_ratio", 1.0, "phases[0].schedule.min_lr_ratio", "[0, 1)"),
    ("phases.0.schedule.pct_start", 0.0, "phases[0].schedule.pct_start", "(0, 1)"),
    ("phases.0.schedule.pct_start", 1.0, "phases[0].schedule.pct_start", "(0, 1)"),
    ("phases.0.schedule.div_factor", 0.5, "phases[0].schedule.div_factor", "[1, 1000000]"),
    ("phases.0.schedule.factor", 0.0, "phases[0].schedule.factor", "(0, 1]"),
    ("early_stopping.metric", "val_f1", "early_stopping.metric", "val_acc, val_loss"),
    ("early_stopping.patience", -1, "early_stopping.patience", "[0, 10000]"),
    ("early_stopping.min_delta", -0.1, "early_stopping.min_delta", "[0, 1000]"),
    ("distributed.lr_scaling", "cubic", "distributed.lr_scaling", "is not one of"),
    ("distributed.processes", 0, "distributed.processes", "must be in"),
]


def refused_with(data: dict) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict(data)
    return info.value


@pytest.mark.parametrize("where, value, field, words", REFUSED, ids=[f"{r[0]}={r[1]!r}"[:60] for r in REFUSED])
def test_each_rule_refuses_its_bad_value_naming_the_field(where, value, field, words):
    error = refused_with(with_change(where, value))
    assert (error.field, words in str(error)) == (field, True), str(error)


def test_nesterov_needs_momentum_too():
    data = with_change("phases.0.optimizer.name", "sgd")
    data["phases"][0]["optimizer"].update(nesterov=True, momentum=0.0)
    assert refused_with(data).field == "phases[0].optimizer.nesterov"
    data["phases"][0]["optimizer"]["momentum"] = 0.9
    assert Recipe.from_dict(data).phases[0].optimizer.nesterov


@pytest.mark.parametrize("in_channels, values, ok", [(5, [0.5, 0.5], True), (5, [0.5], False), (5, [0.5] * 3, False),
                                                     (3, [0.5], False), (5, [], True)])
def test_extra_channel_statistics_have_one_value_per_extra_channel(in_channels, values, ok):
    data = with_change("model.in_channels", in_channels)
    for name in ("extra_channel_mean", "extra_channel_std"):
        data["data"][name] = values
        if ok:
            Recipe.from_dict(data)
        else:
            error = refused_with(data)
            assert error.field == f"data.{name}" and f"has {len(values)} values for {in_channels - 3}" in str(error)
        data["data"][name] = []


@pytest.mark.parametrize("device, sync, field, words", [
    ("mps", False, "device", "'mps' cannot be shared by 2 processes"),
    ("cuda:1", False, "device", "'cuda:1' names one GPU"),
    ("cuda:0", False, "device", "'cuda:0' names one GPU"),
    ("cpu", True, "distributed.sync_batchnorm", "needs CUDA"),
])
def test_several_processes_refuse_a_device_they_cannot_share(device, sync, field, words):
    data = with_change("distributed.processes", 2)
    data["device"] = device
    data["distributed"]["sync_batchnorm"] = sync
    error = refused_with(data)
    assert error.field == field and words in str(error)
    data["distributed"]["processes"] = 1  # one process may use any of them
    data["distributed"]["sync_batchnorm"] = False
    assert Recipe.from_dict(data).device == device


ALLOWED = [  # the edge of each range, and values next to a refused one, load
    ("data.crop_size", 256), ("data.val_fraction", 0.999), ("data.feature_views", 64), ("data.num_workers", -1),
    ("model.head.dropout", 0.999), ("phases.0.lr", 10.0), ("phases.0.layer_decay", 1.0),
    ("phases.0.optimizer.betas", [0.0, 0.999]), ("phases.0.schedule.pct_start", 0.999),
    ("phases.0.schedule.min_lr_ratio", 0.999), ("phases.0.schedule.gamma", 1.0), ("phases.0.schedule.div_factor", 1.0),
    ("early_stopping.metric", "val_loss"), ("early_stopping.patience", 0), ("device", "cuda:3"),
    ("distributed.lr_scaling", "sqrt"), ("phases.0.bn_modes", {"layer1": "frozen_stats"}),
    ("phases.0.groups", [GROUP, {**GROUP, "name": "h", "modules": ["head"]}]),
]


@pytest.mark.parametrize("where, value", ALLOWED, ids=[f"{a[0]}={a[1]!r}"[:60] for a in ALLOWED])
def test_the_edge_of_each_allowed_range_loads(where, value):
    Recipe.from_dict(with_change(where, value))
