"""Freezing promises checked where they can break: a frozen tensor that moves is reported by name, and a
`frozen_stats` BatchNorm keeps its statistics bit for bit while its affine parameters train.

The integration tests use only the public API (Trainer(...).fit(), events as subscribers, a global forward hook)
so that they do not depend on how the trainer is split into parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.errors import RecipeError
from engine.model.build import build_model
from engine.model.freezing import (
    BN_FROZEN,
    BN_FROZEN_STATS,
    BN_TRAIN,
    Fingerprint,
    FreezeState,
    apply_freeze_plan,
    bn_layers,
    count_params,
    frozen_tensors,
    resolve,
    restore_freeze_state,
    set_train_mode,
)
from engine.model.stages import compute_stages
from engine.recipe import DataConfig, ModelConfig
from engine.train import events as ev
from engine.train.checkpoints import load_checkpoint
from engine.train.runs import checkpoint_path
from engine.train.sampling import seed_everything
from engine.train.trainer import Trainer
from tests.helpers import tiny_recipe


def initial_state(recipe, num_classes: int) -> dict[str, torch.Tensor]:
    """The model exactly as the trainer builds it before training (same seed → same new head)."""
    seed_everything(recipe.seed)
    model = build_model(recipe.model, num_classes, recipe.data).model
    return {k: v.clone() for k, v in model.state_dict().items()}


# --- 1. a frozen tensor that moves is reported by name, and the phase is not verified ------------------------------
TAMPERED = ("layer1.0.conv1.weight", "layer2.0.bn1.running_mean")


def tamper_after_first_batch():
    """A subscriber arms a global forward pre-hook that, on the next forward of the whole model, nudges one
    frozen weight and one frozen BN statistic — a bug elsewhere in the process writing into frozen tensors."""
    armed = {"on": False, "done": False}

    def subscriber(event):
        if isinstance(event, ev.BatchFinished) and event.batch == 0:
            armed["on"] = True

    def hook(module, _inputs):
        if armed["on"] and not armed["done"] and type(module).__name__ == "TinyResNet":
            with torch.no_grad():
                module.get_submodule("layer1.0.conv1").weight[0, 0, 0, 0] += 1e-3
                module.get_submodule("layer2.0.bn1").running_mean[0] += 1e-3
            armed["done"] = True

    return subscriber, hook, armed


def test_a_frozen_tensor_changed_during_the_phase_is_reported_by_name(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir)
    recipe.data.cache_features = "off"  # the whole model runs every batch, so the hook sees it
    subscriber, hook, armed = tamper_after_first_batch()
    events: list[ev.Event] = []
    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        result = Trainer(recipe, [subscriber, events.append]).fit()
    finally:
        handle.remove()
    assert armed["done"], "the tampering hook never ran"
    assert result.status == "finished", result.error  # reported, not fatal: the run's data is still worth having
    verified = [e for e in events if isinstance(e, ev.FreezeVerified)]
    assert len(verified) == 1
    assert sorted(verified[0].moved) == sorted(TAMPERED)
    assert verified[0].checked_tensors == 60 + 2 * 20  # every frozen parameter and BN statistic was compared
    phase = result.summary["phases"][0]
    assert phase["freeze_verified"] is False
    assert phase["moved"] == sorted(TAMPERED)
    on_disk = json.loads((Path(result.run_dir) / "summary.json").read_text())["phases"][0]
    assert on_disk["freeze_verified"] is False and on_disk["moved"] == sorted(TAMPERED)


def test_an_untouched_phase_is_verified(image_folder, runs_dir):
    """The control for the test above: the same run without the hook verifies (so the hook is what it catches)."""
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir)
    recipe.data.cache_features = "off"
    events: list[ev.Event] = []
    result = Trainer(recipe, [events.append]).fit()
    verified = [e for e in events if isinstance(e, ev.FreezeVerified)]
    assert [v.moved for v in verified] == [[]]
    assert result.summary["phases"][0]["freeze_verified"] is True


# --- 2. frozen_stats: statistics bit-identical after a real run, affine parameters trained ------------------------
def test_frozen_stats_keeps_bn_statistics_while_affine_parameters_train(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=1, out=runs_dir)
    # Every BN keeps its statistics except layer4's (the more specific entry wins): one run shows both sides.
    recipe.phases[0].bn_modes = {"all": "frozen_stats", "layer4": "train"}
    recipe.data.max_train_batches = 3
    before = initial_state(recipe, 3)
    events: list[ev.Event] = []
    result = Trainer(recipe, [events.append]).fit()
    assert result.status == "finished", result.error
    after = load_checkpoint(checkpoint_path(result.run_dir, "last"))["model"]
    bn_names = sorted({k.rsplit(".", 1)[0] for k in before if k.endswith("running_mean")})
    assert len(bn_names) == 20
    for bn in bn_names:
        stats_move = bn.startswith("layer4.")
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            same = torch.equal(before[f"{bn}.{buf}"], after[f"{bn}.{buf}"])
            assert same != stats_move, f"{bn}.{buf} {'did not move' if stats_move else 'moved'}"
        for p in ("weight", "bias"):  # the affine parameters train in both modes
            assert not torch.equal(before[f"{bn}.{p}"], after[f"{bn}.{p}"]), f"{bn}.{p} did not train"
    verified = [e for e in events if isinstance(e, ev.FreezeVerified)]
    # no frozen parameters; layer4 has 5 BN
    assert verified[0].moved == [] and verified[0].checked_tensors == 2 * (20 - 5)


# --- unit level: the same promises, fast enough for mutation testing --------------------------------------------
class Tiny(nn.Module):
    """conv → bn → block(conv → bn) → head; small enough to check every tensor."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


@pytest.fixture
def tiny():
    model = Tiny()
    return model, compute_stages(model, "head")


def train_steps(model: nn.Module, steps: int = 2) -> None:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(1)
    for _ in range(steps):
        loss = model(torch.randn(4, 3, 8, 8)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_fingerprint_names_exactly_the_frozen_tensors_that_moved(tiny):
    model, stages = tiny
    state = apply_freeze_plan(model, stages, ["head"], bn_overrides={"block": "train"})
    fingerprint = Fingerprint(model, state.bn_modes)
    # Checked: frozen parameters and the statistics of BN layers in eval mode, never num_batches_tracked.
    assert sorted(fingerprint.digests) == sorted(["stem.0.weight", "stem.0.bias", "stem.1.weight", "stem.1.bias",
                                                  "block.0.weight", "block.1.weight", "block.1.bias",
                                                  "stem.1.running_mean", "stem.1.running_var"])
    set_train_mode(model, state.bn_modes)
    train_steps(model)
    assert fingerprint.moved(model, state.bn_modes) == []  # block.1 statistics moved, as asked; head trained
    with torch.no_grad():
        model.stem[0].bias[1] += 1e-6
        model.stem[1].running_var.mul_(1.0)  # rewritten with the same bits: not a move
        model.stem[1].running_mean[3] = torch.nextafter(model.stem[1].running_mean[3], torch.tensor(1.0))
    assert fingerprint.moved(model, state.bn_modes) == ["stem.0.bias", "stem.1.running_mean"]


def test_fingerprint_of_an_empty_or_zero_tensor(tiny):
    model, stages = tiny
    state = apply_freeze_plan(model, stages, ["head"])
    fingerprint = Fingerprint(model, state.bn_modes)
    with torch.no_grad():
        model.stem[0].bias.zero_()
    assert fingerprint.moved(model, state.bn_modes) == ["stem.0.bias"]
    from engine.model.freezing import _digest

    assert _digest(torch.empty(0)) != _digest(torch.zeros(1))
    assert _digest(torch.zeros(2)) != _digest(torch.zeros(2, dtype=torch.float64))
    assert _digest(torch.tensor([0.0, -0.0])) != _digest(torch.tensor([0.0, 0.0]))  # bits, not values


def test_frozen_and_frozen_stats_bn_layers_stay_in_eval_mode_after_train(tiny):
    model, stages = tiny
    state = apply_freeze_plan(model, stages, ["all"], bn_overrides={"stem": "frozen_stats", "block": "frozen"})
    assert state.bn_modes == {"stem.1": BN_FROZEN_STATS, "block.1": BN_FROZEN}
    assert model.stem[1].weight.requires_grad and model.stem[1].bias.requires_grad  # frozen_stats: affine trains
    assert not model.block[1].weight.requires_grad  # frozen: affine frozen too
    assert model.block[0].weight.requires_grad and model.head.weight.requires_grad
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_train_mode(model, state.bn_modes, training=True)
    assert model.training and model.head.training and model.block[0].training
    assert not model.stem[1].training and not model.block[1].training
    train_steps(model)
    after = model.state_dict()
    for bn in ("stem.1", "block.1"):
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(before[f"{bn}.{buf}"], after[f"{bn}.{buf}"]), f"{bn}.{buf}"
    assert not torch.equal(before["stem.1.weight"], after["stem.1.weight"])
    assert torch.equal(before["block.1.weight"], after["block.1.weight"])
    set_train_mode(model, state.bn_modes, training=False)
    assert not any(m.training for m in model.modules())


def test_bn_modes_default_from_the_freeze_plan(tiny):
    model, stages = tiny
    state = apply_freeze_plan(model, stages, ["block", "head"])
    # A BN whose parameters train updates its statistics; one in a frozen subtree keeps them.
    assert state.bn_modes == {"stem.1": BN_FROZEN, "block.1": BN_TRAIN}
    set_train_mode(model, state.bn_modes)
    assert model.block[1].training and not model.stem[1].training
    assert state.trainable == ["block.0.weight", "block.1.weight", "block.1.bias", "head.weight", "head.bias"]
    assert state.to_dict() == {"trainable": state.trainable, "bn_modes": state.bn_modes}
    assert count_params(model) == (4 * 4 * 9 + 4 + 4 + 4 * 2 + 2, sum(p.numel() for p in model.parameters()))


def test_frozen_subtree_inside_a_trainable_one(tiny):
    model, stages = tiny
    state = apply_freeze_plan(model, stages, ["all"], frozen=["block.0"])
    assert not model.block[0].weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("block.0."))
    assert "block.0.weight" not in state.trainable and len(state.trainable) == 8
    assert set(bn_layers(model)) == {"stem.1", "block.1"}


def test_a_bn_override_can_train_statistics_of_a_frozen_layer(tiny):
    model, stages = tiny
    state = apply_freeze_plan(model, stages, ["head"], bn_overrides={"stem.1": "train"})
    assert state.bn_modes == {"stem.1": BN_TRAIN, "block.1": BN_FROZEN}
    assert not model.stem[1].weight.requires_grad  # statistics adapt; the affine stays as the plan says
    set_train_mode(model, state.bn_modes)
    assert model.stem[1].training and not model.block[1].training
    names = [name for name, _ in frozen_tensors(model, state.bn_modes)]
    assert "stem.1.running_mean" not in names and "block.1.running_mean" in names
    assert "block.1.num_batches_tracked" not in names


def test_apply_keeps_the_models_train_or_eval_mode(tiny):
    model, stages = tiny
    model.eval()
    apply_freeze_plan(model, stages, ["all"])
    assert not any(m.training for m in model.modules())
    model.train()
    apply_freeze_plan(model, stages, ["head"])
    assert model.training and model.head.training and not model.stem[1].training


def test_restore_freeze_state_applies_a_saved_state_exactly(tiny):
    model, stages = tiny
    saved = FreezeState(["block.0.weight", "head.bias"], {"stem.1": BN_FROZEN_STATS, "block.1": BN_TRAIN})
    model.train()
    restore_freeze_state(model, saved)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["block.0.weight", "head.bias"]
    assert model.training and not model.stem[1].training and model.block[1].training
    model.eval()
    restore_freeze_state(model, saved)
    assert not model.block[1].training


def test_resolve_stage_names_aliases_and_paths(tiny):
    model, stages = tiny
    assert resolve(model, stages, ["all", ""], "f") == ["all", "all"]
    assert resolve(model, stages, ["head", "block.1", "stem.0.weight"], "f") == ["head", "block.1", "stem.0.weight"]
    assert resolve(model, stages, ["last_stage"], "f") == stages.body[-1].modules
    with pytest.raises(RecipeError) as info:
        resolve(model, stages, ["head", "layer9"], "phases[2].trainable")
    assert info.value.field == "phases[2].trainable[1]"
    assert info.value.message == (f"'layer9' is neither a stage ({', '.join(stages.names())}) nor a module path of "
                                  f"this model")
    assert ", ".join(stages.names()) == "stem, block, head"


def test_last_stage_is_the_stage_just_before_the_head():
    built = build_model(ModelConfig(arch="resnet18", weights="none"), 3, DataConfig(), pretrained=False)
    assert resolve(built.model, built.stages, ["last_stage"], "f") == ["layer4"]


def test_a_bad_bn_override_names_its_field(tiny):
    model, stages = tiny
    with pytest.raises(RecipeError) as info:
        apply_freeze_plan(model, stages, ["head", "nothing"])
    assert info.value.field == "phase.trainable[1]"  # the default prefix when no phase index is given
    with pytest.raises(RecipeError) as info:
        apply_freeze_plan(model, stages, ["all"], frozen=["stem", "nothing"])
    assert info.value.field == "phase.frozen[1]"
    with pytest.raises(RecipeError) as info:
        apply_freeze_plan(model, stages, ["head"], bn_overrides={"nowhere": "train"}, field_prefix="phases[1]")
    assert info.value.field == "phases[1].bn_modes[nowhere]"  # the key itself names the entry


def test_real_resnet_frozen_stats_in_eval_mode():
    """The BN mode on a torchvision model: every BN in frozen_stats is in eval mode after model.train()."""
    built = build_model(ModelConfig(arch="resnet18", weights="none"), 3, DataConfig(), pretrained=False)
    state = apply_freeze_plan(built.model, built.stages, ["all"], bn_overrides={"all": "frozen_stats"})
    set_train_mode(built.model, state.bn_modes)
    bns = bn_layers(built.model)
    assert len(bns) == 20 and not any(bn.training for bn in bns.values())
    assert all(bn.weight.requires_grad for bn in bns.values())
