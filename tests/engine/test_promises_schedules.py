"""Groups and schedules: every trainable parameter in exactly one group at the rate asked for, weight decay only
where it belongs, schedules that set the documented rate at every step, and a preview that shows the rates the
run really uses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.errors import GroupAssignmentError
from engine.model.build import build_model
from engine.model.freezing import apply_freeze_plan
from engine.model.groups import (
    GroupInfo,
    assignment,
    current_lrs,
    no_decay_names,
    phase_groups,
    preset_groups,
    torch_param_groups,
    unassigned,
)
from engine.model.stages import Stage, StageMap
from engine.recipe import DataConfig, GroupSpec, ModelConfig, OptimizerConfig, PhaseConfig, ScheduleConfig
from engine.train import events as ev
from engine.train.optim import Schedule, WarmupCosine, build_optimizer, build_schedule, preview_lrs
from engine.train.trainer import Trainer
from tests.helpers import tiny_recipe


@pytest.fixture(scope="module")
def resnet():
    built = build_model(ModelConfig(arch="resnet18", weights="none"), 3, DataConfig(), pretrained=False)
    return built.model, built.stages


# --- presets ------------------------------------------------------------------------------------------------------
def test_discriminative_preset_is_the_lessons_rates(resnet):
    _, stages = resnet
    groups = preset_groups(stages, "discriminative", 1e-3)
    assert [(g.name, g.modules) for g in groups] == [
        ("early", ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"]), ("middle", ["layer3", "layer4"]),
        ("head", ["fc"])]
    assert [g.lr for g in groups] == pytest.approx([1e-5, 1e-4, 1e-3], rel=1e-12)
    assert all(g.weight_decay is None for g in groups)


def test_discriminative_preset_on_short_bodies():
    one = StageMap([Stage("block0", ["a"], depth=1), Stage("head", ["h"])])
    assert [(g.name, g.modules) for g in preset_groups(one, "discriminative", 0.1)] == [("early", ["a"]),
                                                                                         ("head", ["h"])]
    three = StageMap([Stage("s0", ["a"]), Stage("s1", ["b"]), Stage("s2", ["c"]), Stage("head", ["h"])])
    assert [g.modules for g in preset_groups(three, "discriminative", 0.1)] == [["a", "b"], ["c"], ["h"]]
    bare = StageMap([Stage("head", ["h"])])
    assert [(g.name, g.lr) for g in preset_groups(bare, "discriminative", 0.1)] == [("head", 0.1)]


def test_single_and_layerwise_presets(resnet):
    _, stages = resnet
    assert preset_groups(stages, "single", 0.01) == [GroupSpec("all", ["all"], 0.01)]
    layerwise = preset_groups(stages, "layerwise", 0.01, layer_decay=0.5)
    assert [g.name for g in layerwise] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    depths = {s.name: s.depth for s in stages.stages}
    assert depths["head"] == 0 and depths["layer4"] == 1 and depths["stem"] == 5
    for g in layerwise:
        assert g.lr == pytest.approx(0.01 * 0.5 ** depths[g.name], rel=1e-12), g.name
        assert g.modules == stages.get(g.name).modules
    assert preset_groups(stages, "layerwise", 0.01) == layerwise  # the default decay is the recipe's default
    assert PhaseConfig().layer_decay == 0.5
    with pytest.raises(ValueError, match="unknown lr preset 'fancy'"):
        preset_groups(stages, "fancy", 0.01)


def test_phase_groups_prefer_explicit_groups(resnet):
    _, stages = resnet
    explicit = [GroupSpec("mine", ["all"], 0.5)]
    phase = PhaseConfig("p", 1, ["all"], groups=explicit, lr_preset="discriminative")
    assert phase_groups(stages, phase) == explicit and phase_groups(stages, phase) is not explicit
    preset = PhaseConfig("p", 1, ["all"], lr_preset="layerwise", lr=0.2, layer_decay=0.25)
    assert phase_groups(stages, preset) == preset_groups(stages, "layerwise", 0.2, 0.25)


# --- assignment: every trainable parameter in exactly one group ---------------------------------------------------
def test_each_trainable_parameter_in_exactly_one_group(resnet):
    model, stages = resnet
    apply_freeze_plan(model, stages, ["layer4", "head"])
    owner = assignment(model, stages, preset_groups(stages, "discriminative", 1e-3))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert list(owner) == trainable  # frozen parameters are in no group
    assert {owner[n] for n in trainable if n.startswith("layer4.")} == {"middle"} and owner["fc.weight"] == "head"
    with pytest.raises(GroupAssignmentError, match="'fc.weight' is in several groups: head, again"):
        assignment(model, stages, [GroupSpec("middle", ["layer4"], 1), GroupSpec("head", ["head"], 1),
                                   GroupSpec("again", ["fc"], 1)])
    with pytest.raises(GroupAssignmentError) as info:
        assignment(model, stages, [GroupSpec("head", ["head"], 1)])
    assert str(info.value) == ("trainable parameter 'layer4.0.conv1.weight' is in no parameter group; add its "
                               "module ('layer4.0.conv1') or stage ('layer4') to a group, or freeze it")
    loose = assignment(model, stages, [GroupSpec("head", ["head"], 1), GroupSpec("b", ["fc.bias"], 1)],
                       strict=False)
    assert loose == {"fc.weight": "head", "fc.bias": "head"}  # the first owner wins; uncovered ones are left out
    missing = unassigned(model, stages, [GroupSpec("head", ["head"], 1)])
    assert missing == [n for n in trainable if n.startswith("layer4.")]
    assert unassigned(model, stages, preset_groups(stages, "single", 1)) == []


def test_a_bad_group_module_names_its_field(resnet):
    from engine.errors import RecipeError

    model, stages = resnet
    with pytest.raises(RecipeError) as info:
        assignment(model, stages, [GroupSpec("a", ["head"], 1), GroupSpec("b", ["layer7"], 1)], "phases[1].groups")
    assert info.value.field == "phases[1].groups[1].modules[0]"
    with pytest.raises(RecipeError) as info:
        torch_param_groups(model, stages, [GroupSpec("a", ["nowhere"], 1)], OptimizerConfig(), "phases[3].groups")
    assert info.value.field == "phases[3].groups[0].modules[0]"
    with pytest.raises(RecipeError) as info:  # the default prefix: a recipe's top-level groups
        assignment(model, stages, [GroupSpec("a", ["nowhere"], 1)])
    assert info.value.field == "groups[0].modules[0]"
    with pytest.raises(RecipeError) as info:
        torch_param_groups(model, stages, [GroupSpec("a", ["head"], 1), GroupSpec("b", ["nowhere"], 1)],
                           OptimizerConfig())
    assert info.value.field == "groups[1].modules[0]"


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)
        self.scale = nn.Parameter(torch.ones(4))
        self.fc = nn.Linear(4, 2)


class AdaNorm(nn.LayerNorm):
    """A norm layer with a projection inside (adaptive layer norm): the rule applies to each parameter's own
    module, so the projection's weight still decays."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.proj = nn.Linear(dim, dim)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm((2, 3))  # a 2-d norm weight: no decay because it is a norm layer
        self.attn_bias = nn.Parameter(torch.zeros(2, 2))  # a 2-d bias: no decay because of its name
        self.proj = nn.Sequential(nn.Linear(3, 3))
        self.ada = AdaNorm(3)


def test_no_decay_names_are_norms_biases_and_vectors():
    assert no_decay_names(Small()) == {"conv.bias", "bn.weight", "bn.bias", "ln.weight", "ln.bias", "scale",
                                       "fc.bias"}
    assert no_decay_names(Attention()) == {"norm.weight", "norm.bias", "attn_bias", "proj.0.bias", "ada.weight",
                                           "ada.bias", "ada.proj.bias"}


def test_torch_param_groups_split_decay_and_skip_empty_groups():
    model = Small()
    stages = StageMap([Stage("body", ["conv", "bn", "ln", "scale"]), Stage("head", ["fc"])])
    model.conv.requires_grad_(False)
    specs = [GroupSpec("early", ["conv"], 1e-5), GroupSpec("body", ["bn", "ln", "scale"], 1e-4, weight_decay=0.2),
             GroupSpec("head", ["fc"], 1e-3)]
    groups, infos = torch_param_groups(model, stages, specs,
                                       OptimizerConfig(weight_decay=0.05, no_decay_norm_bias=True))
    params = dict(model.named_parameters())
    names = {id(p): n for n, p in params.items()}
    summary = [(g["name"], [names[id(p)] for p in g["params"]], g["lr"], g["weight_decay"]) for g in groups]
    assert summary == [("body", ["scale", "bn.weight", "bn.bias", "ln.weight", "ln.bias"], 1e-4, 0.0),
                       ("head", ["fc.weight"], 1e-3, 0.05), ("head", ["fc.bias"], 1e-3, 0.0)]
    assert infos == [GroupInfo("body", 1e-4, 0.2, 4 * 5), GroupInfo("head", 1e-3, 0.05, 4 * 2 + 2)]
    groups, infos = torch_param_groups(model, stages, specs, OptimizerConfig(weight_decay=0.05))
    assert [(g["name"], len(g["params"]), g["weight_decay"]) for g in groups] == [("body", 5, 0.2), ("head", 2, 0.05)]


def test_current_lrs_one_per_group_name():
    a, b, c = (nn.Parameter(torch.zeros(1)) for _ in range(3))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.1, "name": "head"}, {"params": [b], "lr": 0.1, "name": "head"},
                                 {"params": [c], "lr": 0.01, "name": "body"}], lr=0.5)
    optimizer.param_groups[1]["lr"] = 7.0  # a sub-group never disagrees in practice; the first one is reported
    assert current_lrs(optimizer) == {"head": 0.1, "body": 0.01}
    assert list(current_lrs(optimizer)) == ["head", "body"]
    unnamed = torch.optim.SGD([a], lr=0.3)
    assert current_lrs(unnamed) == {"all": 0.3} and isinstance(current_lrs(unnamed)["all"], float)


# --- optimizers ---------------------------------------------------------------------------------------------------
def groups_of(*lrs):
    return [{"params": [nn.Parameter(torch.zeros(2))], "lr": lr, "name": f"g{i}"} for i, lr in enumerate(lrs)]


def test_build_optimizer_uses_every_setting():
    sgd = build_optimizer(groups_of(0.1, 0.2), OptimizerConfig(name="sgd", momentum=0.8, nesterov=True))
    assert type(sgd) is torch.optim.SGD and [g["lr"] for g in sgd.param_groups] == [0.1, 0.2]
    assert sgd.defaults["momentum"] == 0.8 and sgd.defaults["nesterov"] is True and sgd.defaults["lr"] == 0.1
    adamw = build_optimizer(groups_of(0.3), OptimizerConfig(name="adamw", betas=[0.8, 0.9]))
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["betas"] == (0.8, 0.9) and adamw.defaults["lr"] == 0.3
    adam = build_optimizer(groups_of(0.4), OptimizerConfig(name="adam", betas=[0.7, 0.95]))
    assert type(adam) is torch.optim.Adam and adam.defaults["betas"] == (0.7, 0.95)


# --- schedules: the documented rate at every step -----------------------------------------------------------------
def test_warmup_cosine_factors():
    fn = WarmupCosine(warmup_steps=4, total_steps=12, min_ratio=0.1)
    assert [fn(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up, never 0
    assert fn(4) == pytest.approx(1.0) and fn(8) == pytest.approx(0.55) and fn(6) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert fn(12) == pytest.approx(0.1) and fn(30) == pytest.approx(0.1)  # stays at the floor
    no_warmup = WarmupCosine(0, 10, 0.0)
    assert (no_warmup(0) == pytest.approx(1.0) and no_warmup(5) == pytest.approx(0.5)
            and no_warmup(10) == pytest.approx(0))
    assert WarmupCosine(0, 0, 0.0).total_steps == 1
    short = WarmupCosine(4, 4, 0.0)  # all warm-up: the decay spans one step
    assert short(3) == 1.0 and short(4) == pytest.approx(1.0) and short(5) == pytest.approx(0.0)


def rates(schedule: Schedule, optimizer, epochs: int, steps: int, metrics=None) -> list[float]:
    out = []
    for epoch in range(epochs):
        for _ in range(steps):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step_batch()
        schedule.step_epoch(metrics[epoch] if metrics else None)
    return out


def test_step_schedule_steps_per_epoch():
    optimizer = build_optimizer(groups_of(1.0), OptimizerConfig(name="sgd", momentum=0.0))
    schedule = build_schedule(optimizer, ScheduleConfig(name="step", step_size=2, gamma=0.5), epochs=5,
                              steps_per_epoch=2)
    assert (schedule.per_batch, schedule.needs_metric) == (False, False)
    assert rates(schedule, optimizer, 5, 2) == [1.0] * 4 + [0.5] * 4 + [0.25] * 2


def test_cosine_schedule_steps_per_batch_with_its_warmup():
    optimizer = build_optimizer(groups_of(1.0, 0.1), OptimizerConfig(name="sgd", momentum=0.0))
    schedule = build_schedule(optimizer, ScheduleConfig(name="cosine", warmup_epochs=0.5, min_lr_ratio=0.2),
                              epochs=3, steps_per_epoch=4)
    assert (schedule.per_batch, schedule.needs_metric) == (True, False)
    fn = schedule.scheduler.lr_lambdas[0]
    assert (fn.warmup_steps, fn.total_steps, fn.min_ratio) == (2, 12, 0.2)
    assert rates(schedule, optimizer, 3, 4) == pytest.approx([fn(s) for s in range(12)])
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.1 * fn(12))  # every group follows its own peak


def test_onecycle_schedule_uses_each_groups_rate_as_its_peak():
    optimizer = build_optimizer(groups_of(1.0, 0.1), OptimizerConfig(name="sgd", momentum=0.0))
    schedule = build_schedule(optimizer, ScheduleConfig(name="onecycle", pct_start=0.25, div_factor=10.0), epochs=2,
                              steps_per_epoch=4)
    assert (schedule.per_batch, schedule.needs_metric) == (True, False)
    assert schedule.scheduler.total_steps == 8
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.01])  # peak / div_factor
    lrs = rates(schedule, optimizer, 2, 4)
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 1
    assert lrs[-1] < 0.01  # annealed far below the start


def test_plateau_schedule_needs_the_metric_and_its_mode():
    optimizer = build_optimizer(groups_of(1.0), OptimizerConfig(name="sgd", momentum=0.0))
    schedule = build_schedule(optimizer, ScheduleConfig(name="plateau", patience=1, factor=0.5), epochs=6,
                              steps_per_epoch=1, metric_mode="min")
    assert (schedule.per_batch, schedule.needs_metric) == (False, True)
    # val_loss (mode min): improves, then stalls for two epochs (> patience 1) → halved.
    assert rates(schedule, optimizer, 6, 1, metrics=[1.0, 0.5, 0.6, 0.6, 0.6, 0.6]) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    maximise = build_optimizer(groups_of(1.0), OptimizerConfig(name="sgd", momentum=0.0))
    schedule = build_schedule(maximise, ScheduleConfig(name="plateau", patience=0, factor=0.1), epochs=3,
                              steps_per_epoch=1)
    assert rates(schedule, maximise, 3, 1, metrics=[0.5, 0.6, 0.7]) == [1.0, 1.0, 1.0]  # accuracy rising: no decay


def test_no_schedule_and_unknown_schedules():
    optimizer = build_optimizer(groups_of(1.0), OptimizerConfig(name="sgd", momentum=0.0))
    schedule = build_schedule(optimizer, ScheduleConfig(name="none"), epochs=2, steps_per_epoch=0)
    assert schedule.scheduler is None and (schedule.per_batch, schedule.needs_metric) == (False, False)
    schedule.step_batch()
    schedule.step_epoch(1.0)
    assert schedule.state_dict() == {} and optimizer.param_groups[0]["lr"] == 1.0
    schedule.load_state_dict({"last_epoch": 5})  # nothing to restore into: ignored
    bad = ScheduleConfig(name="cosine")
    bad.name = "wobble"
    with pytest.raises(ValueError, match="unknown schedule 'wobble'"):
        build_schedule(optimizer, bad, epochs=2, steps_per_epoch=2)


def test_zero_steps_per_epoch_counts_as_one():
    optimizer = build_optimizer(groups_of(1.0), OptimizerConfig(name="sgd", momentum=0.0))
    schedule = build_schedule(optimizer, ScheduleConfig(name="cosine"), epochs=3, steps_per_epoch=0)
    assert schedule.scheduler.lr_lambdas[0].total_steps == 3


def test_schedule_state_round_trips():
    def make():
        optimizer = build_optimizer(groups_of(1.0), OptimizerConfig(name="sgd", momentum=0.0))
        return optimizer, build_schedule(optimizer, ScheduleConfig(name="cosine", warmup_epochs=1), 4, 3)

    optimizer, schedule = make()
    rates(schedule, optimizer, 2, 3)
    state = schedule.state_dict()
    assert state["last_epoch"] == 6
    optimizer2, schedule2 = make()
    schedule2.load_state_dict(state)
    optimizer2.load_state_dict(optimizer.state_dict())
    assert rates(schedule2, optimizer2, 2, 3) == rates(schedule, optimizer, 2, 3)
    epochwise = Schedule(torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5), per_batch=False, needs_metric=False)
    before = optimizer.param_groups[0]["lr"]
    epochwise.step_batch()
    assert optimizer.param_groups[0]["lr"] == before  # an epoch-wise schedule ignores batches
    batchwise = Schedule(torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5), per_batch=True, needs_metric=False)
    batchwise.step_epoch()
    assert optimizer.param_groups[0]["lr"] == before  # and a batch-wise one ignores epochs


# --- the preview is what the run uses -----------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", [ScheduleConfig(name="cosine", warmup_epochs=1.0, min_lr_ratio=0.1),
                                      ScheduleConfig(name="onecycle"), ScheduleConfig(name="step", step_size=1,
                                                                                     gamma=0.5)],
                         ids=["cosine", "onecycle", "step"])
def test_preview_equals_the_rates_a_real_run_records(image_folder, runs_dir, schedule):
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=runs_dir)
    recipe.phases[0].schedule = schedule
    events: list[ev.Event] = []
    result = Trainer(recipe, [events.append]).fit()
    assert result.status == "finished", result.error
    seen = [e.lrs["all"] for e in events if isinstance(e, ev.BatchFinished)]
    steps = max(e.batch for e in events if isinstance(e, ev.BatchFinished)) + 1
    # BatchFinished reports the rate the batch trained with; an epoch's rates are those of its last batch.
    preview = preview_lrs({"all": recipe.phases[0].lr}, recipe.phases[0], steps)["all"]
    assert len(preview) == len(seen) == 2 * steps
    assert seen == pytest.approx(preview, rel=1e-12)
    per_epoch = [e.lrs["all"] for e in events if isinstance(e, ev.EpochFinished)]
    assert per_epoch == [seen[steps - 1], seen[-1]]


def test_preview_of_every_group_and_of_a_plateau():
    phase = PhaseConfig("p", 6, ["all"], schedule=ScheduleConfig(name="plateau", patience=1))
    out = preview_lrs({"body": 1e-4, "head": 1e-3}, phase, steps_per_epoch=2)
    assert out == {"body": [1e-4] * 12, "head": [1e-3] * 12}  # plateau decays depend on validation: flat
    assert preview_lrs({}, phase, 2) == {}
    step = PhaseConfig("p", 3, ["all"], schedule=ScheduleConfig(name="step", step_size=1, gamma=0.1))
    out = preview_lrs({"head": 1.0}, step, steps_per_epoch=0)
    assert out["head"] == pytest.approx([1.0, 0.1, 0.01])
