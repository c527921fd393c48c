"""engine.model.stages + engine.model.groups: named stages found by structure, every parameter in exactly one stage, the
lesson's learning-rate presets, and parameter groups that cover every trainable parameter exactly once."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from engine.errors import GroupAssignmentError, RecipeError
from engine.model.build import stage_map_of
from engine.model.freezing import apply_freeze_plan
from engine.model.groups import assignment, preset_groups, torch_param_groups, unassigned
from engine.model.stages import StageMap, compute_stages, covers
from engine.model.surgery import replace_head
from engine.planning.presets import make_recipe, tail_stages
from engine.recipe import GroupSpec, OptimizerConfig


def meta_model(arch: str, num_classes: int = 7) -> tuple[nn.Module, StageMap]:
    with torch.device("meta"):
        model = tvm.get_model(arch)
    head = replace_head(model, num_classes)
    return model, compute_stages(model, head)


def cpu_resnet18(num_classes: int = 7) -> tuple[nn.Module, StageMap]:
    torch.manual_seed(0)
    model = tvm.resnet18()
    head = replace_head(model, num_classes)
    return model, compute_stages(model, head)


def owners(stages: StageMap, param: str) -> list[str]:
    return [s.name for s in stages.stages if any(covers(path, param) for path in s.modules)]


# --- stages -----------------------------------------------------------------------------------------------------

def test_resnet18_stages():
    model, stages = meta_model("resnet18")
    assert stages.names() == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert {"conv1", "bn1"} <= set(stages.get("stem").modules)
    for param in ("conv1.weight", "bn1.weight", "bn1.bias"):
        assert stages.stage_of(param) == "stem"
    for i in range(1, 5):
        assert stages.get(f"layer{i}").modules == [f"layer{i}"]
    assert stages.get("head").modules == ["fc"]
    assert stages.stage_of("layer3.1.bn2.weight") == "layer3"
    assert stages.stage_of("fc.weight") == "head"
    assert [s.depth for s in stages.stages] == [5, 4, 3, 2, 1, 0]
    assert stages.get("stem").params == 64 * 3 * 7 * 7 + 2 * 64
    assert stages.get("head").params == 512 * 7 + 7
    assert [s.name for s in stages.body] == ["stem", "layer1", "layer2", "layer3", "layer4"]


def test_vgg16_blocks_split_at_max_pools():
    model, stages = meta_model("vgg16")
    assert stages.names() == ["block0", "block1", "block2", "block3", "block4", "neck", "head"]
    convs_per_block = []
    for i in range(5):
        block = stages.get(f"block{i}")
        modules = [model.get_submodule(p) for p in block.modules]
        assert isinstance(modules[-1], nn.MaxPool2d), block.modules
        assert not any(isinstance(m, nn.MaxPool2d) for m in modules[:-1])
        convs_per_block.append(sum(isinstance(m, nn.Conv2d) for m in modules))
    assert convs_per_block == [2, 2, 3, 3, 3]
    assert stages.get("block0").modules == [f"features.{i}" for i in range(5)]
    assert stages.get("block4").modules[-1] == "features.30"
    assert stages.get("neck").modules == ["classifier.0", "classifier.3"]
    assert stages.get("head").modules == ["classifier.6"]
    assert stages.stage_of("features.28.weight") == "block4"
    assert stages.stage_of("classifier.3.bias") == "neck"


def test_vit_b_16_stages():
    model, stages = meta_model("vit_b_16")
    names = stages.names()
    assert names == ["stem"] + [f"block{i}" for i in range(12)] + ["neck", "head"]
    assert set(stages.get("stem").modules) == {"conv_proj", "class_token", "encoder.pos_embedding"}
    for param in ("conv_proj.weight", "conv_proj.bias", "class_token", "encoder.pos_embedding"):
        assert stages.stage_of(param) == "stem"
    for i in range(12):
        assert stages.get(f"block{i}").modules == [f"encoder.layers.encoder_layer_{i}"]
    assert stages.get("neck").modules == ["encoder.ln"]
    assert stages.get("head").modules == ["heads.head"]
    assert stages.get("block11").depth == 2 and stages.get("stem").depth == 14


def test_efficientnet_b0_stages():
    model, stages = meta_model("efficientnet_b0")
    assert stages.names() == [f"block{i}" for i in range(9)] + ["head"]
    assert [s.modules for s in stages.body] == [[f"features.{i}"] for i in range(9)]
    assert stages.get("head").modules == ["classifier.1"]
    assert stages.stage_of("features.0.0.weight") == "block0"


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("arch", ["resnet18", "vgg16", "vgg11_bn", "vit_b_16", "efficientnet_b0",
                                  "mobilenet_v3_small", "mobilenet_v2", "googlenet", "inception_v3", "densenet121",
                                  "convnext_tiny", "swin_t", "squeezenet1_1", "alexnet"])
def test_every_parameter_in_exactly_one_stage(arch):
    model, stages = meta_model(arch)
    params = dict(model.named_parameters())
    for name in params:
        assert stages.stage_of(name) is not None, name
        assert len(owners(stages, name)) == 1, (name, owners(stages, name))
    assert sum(s.params for s in stages.stages) == sum(p.numel() for p in params.values())
    assert all(s.params > 0 for s in stages.stages)
    assert [s.depth for s in stages.stages] == list(range(len(stages.stages) - 1, -1, -1))
    assert stages.stages[-1].name == "head"
    assert len(set(stages.names())) == len(stages.stages)


def test_stage_map_of_is_computed_without_memory():
    stages = stage_map_of("resnet18", 5)
    assert stages.names() == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert stages.get("head").params == 512 * 5 + 5
    assert stage_map_of("regnet_x_400mf") is None  # RegNet cannot be built on the meta device


# --- tail stages for gradual unfreezing -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, tail", [
    ("resnet18", ["layer4"]),
    ("vit_b_16", ["block11", "neck"]),
    ("vgg16", ["block4", "neck"]),
    ("efficientnet_b0", ["block8"]),
    ("mobilenet_v3_small", ["block12", "neck"]),
    ("regnet_x_400mf", ["last_stage"]),
])
def test_tail_stages(arch, tail):
    assert tail_stages(arch) == tail


def test_gradual_unfreezing_thaws_the_tail_of_each_family():
    assert make_recipe("gradual_unfreezing", "resnet18").phases[1].trainable == ["layer4", "head"]
    assert make_recipe("gradual_unfreezing", "vit_b_16").phases[1].trainable == ["block11", "neck", "head"]


# --- learning-rate presets -------------------------------------------------------------------------------------------

def test_discriminative_preset_is_the_lessons_rates():
    model, stages = meta_model("resnet18")
    groups = preset_groups(stages, "discriminative", 1e-3)
    assert [g.name for g in groups] == ["early", "middle", "head"]
    early, middle, head = groups
    assert early.lr == pytest.approx(1e-5)
    assert middle.lr == pytest.approx(1e-4)
    assert head.lr == pytest.approx(1e-3)
    owner = assignment(model, stages, groups)
    assert set(owner) == {n for n, _ in model.named_parameters()}
    for name in ("conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.1.bn2.bias"):
        assert owner[name] == "early", name
    for name in ("layer3.0.conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.conv2.weight"):
        assert owner[name] == "middle", name
    assert owner["fc.weight"] == owner["fc.bias"] == "head"
    assert {n for n, g in owner.items() if g == "head"} == {"fc.weight", "fc.bias"}


def test_layerwise_preset_halves_per_stage():
    model, stages = meta_model("resnet18")
    groups = preset_groups(stages, "layerwise", 1e-3, layer_decay=0.5)
    lrs = {g.name: g.lr for g in groups}
    assert list(lrs) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert lrs["head"] == pytest.approx(1e-3)
    assert lrs["layer4"] == pytest.approx(5e-4)
    assert lrs["layer3"] == pytest.approx(2.5e-4)
    assert lrs["layer2"] == pytest.approx(1.25e-4)
    assert lrs["layer1"] == pytest.approx(6.25e-5)
    assert lrs["stem"] == pytest.approx(3.125e-5)
    owner = assignment(model, stages, groups)
    assert owner["conv1.weight"] == "stem" and owner["layer4.0.conv1.weight"] == "layer4"


def test_single_preset_and_unknown_preset():
    model, stages = meta_model("resnet18")
    groups = preset_groups(stages, "single", 3e-4)
    assert [(g.name, g.modules, g.lr) for g in groups] == [("all", ["all"], 3e-4)]
    assert set(assignment(model, stages, groups).values()) == {"all"}
    with pytest.raises(ValueError, match="unknown lr preset"):
        preset_groups(stages, "triangular", 1e-3)


# --- group assignment ---------------------------------------------------------------------------------------------

def test_trainable_parameter_in_no_group_is_named():
    model, stages = meta_model("resnet18")
    groups = [GroupSpec("body", ["layer1", "layer2", "layer3", "layer4"], 1e-4), GroupSpec("head", ["head"], 1e-3)]
    with pytest.raises(GroupAssignmentError) as info:
        assignment(model, stages, groups)
    message = str(info.value)
    assert "'conv1.weight'" in message
    assert "no parameter group" in message
    assert "'stem'" in message  # the stage to add is suggested
    assert unassigned(model, stages, groups) == ["conv1.weight", "bn1.weight", "bn1.bias"]
    loose = assignment(model, stages, groups, strict=False)
    assert "conv1.weight" not in loose and loose["fc.weight"] == "head"


def test_trainable_parameter_in_two_groups_is_named():
    model, stages = meta_model("resnet18")
    groups = [GroupSpec("rest", ["stem", "layer1", "layer2", "layer3", "head"], 1e-3),
              GroupSpec("a", ["layer4"], 1e-4), GroupSpec("b", ["layer4.1"], 1e-5)]
    with pytest.raises(GroupAssignmentError) as info:
        assignment(model, stages, groups)
    message = str(info.value)
    assert "'layer4.1.conv1.weight'" in message
    assert "a, b" in message


def test_frozen_parameters_need_no_group():
    model, stages = meta_model("resnet18")
    apply_freeze_plan(model, stages, ["head"])
    owner = assignment(model, stages, [GroupSpec("head", ["head"], 1e-3)])
    assert owner == {"fc.weight": "head", "fc.bias": "head"}


def test_unknown_module_in_a_group_names_the_field():
    model, stages = meta_model("resnet18")
    with pytest.raises(RecipeError) as info:
        assignment(model, stages, [GroupSpec("x", ["layer9"], 1e-3)], field_prefix="phases[1].groups")
    assert info.value.field == "phases[1].groups[0].modules[0]"
    assert "layer4" in info.value.message  # the stages are listed


def test_torch_param_groups_hold_only_trainable_parameters_once():
    model, stages = cpu_resnet18()
    apply_freeze_plan(model, stages, ["layer4", "head"])
    groups = preset_groups(stages, "discriminative", 1e-3)
    torch_groups, infos = torch_param_groups(model, stages, groups, OptimizerConfig(weight_decay=0.01))
    ids = [id(p) for g in torch_groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(ids) == trainable
    frozen = {id(p) for n, p in model.named_parameters() if not n.startswith(("layer4.", "fc."))}
    assert not frozen & set(ids)
    assert [i.name for i in infos] == ["middle", "head"]  # "early" has no trainable parameter
    assert {g["name"]: g["lr"] for g in torch_groups} == {"middle": pytest.approx(1e-4), "head": pytest.approx(1e-3)}
    assert all(g["weight_decay"] == 0.01 for g in torch_groups)
    layer4 = sum(p.numel() for p in model.layer4.parameters())
    assert {i.name: i.params for i in infos} == {"middle": layer4, "head": 512 * 7 + 7}
    optimizer = torch.optim.AdamW(torch_groups)
    assert len(optimizer.param_groups) == 2


def test_no_decay_for_norms_and_biases():
    model, stages = cpu_resnet18()
    groups = preset_groups(stages, "single", 1e-3)
    torch_groups, infos = torch_param_groups(model, stages, groups, OptimizerConfig(weight_decay=0.05,
                                                                                    no_decay_norm_bias=True))
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in torch_groups}
    assert set(by_decay) == {0.05, 0.0}
    named = dict(model.named_parameters())
    assert id(named["conv1.weight"]) in by_decay[0.05]
    assert id(named["fc.weight"]) in by_decay[0.05]
    for name in ("bn1.weight", "bn1.bias", "fc.bias", "layer4.1.bn2.weight"):
        assert id(named[name]) in by_decay[0.0], name
    assert [(i.name, i.weight_decay) for i in infos] == [("all", 0.05)]
