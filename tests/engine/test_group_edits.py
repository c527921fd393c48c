"""Parameter-group edits: the preset's groups are written out exactly as shown, a module moved into a group
leaves the others, and every trainable parameter stays in exactly one group. No Qt."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import RecipeError
from engine.model.freezing import apply_freeze_plan
from engine.model.groups import assignment
from engine.model.layer_tree import build_layer_tree
from engine.model.stages import covers
from engine.planning.group_edits import (
    add_group,
    compress_parameter_names,
    effective_groups,
    group_param_counts,
    materialise_groups,
    merge_groups,
    move_to_group,
    remove_groups,
    update_group,
)
from engine.planning.module_index import ModuleIndex, index_for
from engine.recipe import GroupSpec, ModelConfig, PhaseConfig


def index_of(arch: str = "resnet18") -> ModuleIndex:
    return index_for(ModelConfig(arch=arch), 2)


def discriminative(trainable: list[str] | None = None) -> PhaseConfig:
    return PhaseConfig("fine_tune", 1, trainable or ["all"], lr_preset="discriminative", lr=1e-3)


def owners(index: ModuleIndex, phase: PhaseConfig) -> dict[str, str]:
    """Trainable parameter → group, checked strictly (a parameter in no group or in two raises)."""
    apply_freeze_plan(index.model, index.stages, phase.trainable, phase.frozen)
    return assignment(index.model, index.stages, effective_groups(phase, index))


def test_the_preset_is_shown_by_stage_names_and_written_out_unchanged():
    index, phase = index_of(), discriminative()
    shown = effective_groups(phase, index)
    assert [(g.name, g.modules, g.lr) for g in shown] == [
        ("early", ["stem", "layer1", "layer2"], 1e-5), ("middle", ["layer3", "layer4"], 1e-4), ("head", ["head"], 1e-3)]
    assert phase.groups == []  # showing is not editing
    materialise_groups(phase, index)
    assert phase.groups == shown


def test_moving_a_stage_takes_it_out_of_its_old_group():
    index, phase = index_of(), discriminative()
    move_to_group(phase, index, "layer2", "middle")
    groups = {g.name: g for g in phase.groups}
    assert groups["early"].modules == ["stem", "layer1"]
    assert groups["middle"].modules == ["layer2", "layer3", "layer4"]
    assert set(owners(index, phase).values()) == {"early", "middle", "head"}


def test_a_new_group_starts_at_the_rate_the_module_had_and_emptied_groups_go():
    index, phase = index_of(), discriminative()
    move_to_group(phase, index, "layer4.1", "slow")
    slow = next(g for g in phase.groups if g.name == "slow")
    assert (slow.modules, slow.lr) == (["layer4.1"], pytest.approx(1e-4))
    assert next(g for g in phase.groups if g.name == "middle").modules == ["layer3", "layer4.0"]
    move_to_group(phase, index, "fc", "slow")
    assert [g.name for g in phase.groups] == ["early", "middle", "slow"]  # "head" lost its only module
    assert next(g for g in phase.groups if g.name == "slow").modules == ["layer4.1", "head"]


def test_a_vit_block_moved_out_of_one_group_leaves_the_stem_and_the_encoders_own_parameters_covered():
    index = index_of("vit_b_16")
    phase = PhaseConfig("p", 1, ["all"])
    move_to_group(phase, index, "encoder.layers.encoder_layer_3", "block3_slow")
    groups = {g.name: g.modules for g in phase.groups}
    assert groups["block3_slow"] == ["block3"]
    assert "stem" in groups["all"] and "block3" not in groups["all"]
    assert set(owners(index, phase).values()) == {"all", "block3_slow"}


def test_add_remove_and_merge_groups():
    index, phase = index_of(), discriminative()
    assert add_group(phase, index, ["fc"]) == "group1"
    assert (phase.groups[-1].modules, phase.groups[-1].lr) == (["fc"], 1e-3)
    remove_groups(phase, index, [3])
    merge_groups(phase, index, [0, 1])
    assert [(g.name, g.modules, g.lr) for g in phase.groups] == [
        ("early", ["stem", "layer1", "layer2", "layer3", "layer4"], 1e-5), ("head", ["head"], 1e-3)]
    remove_groups(phase, index, [0, 1])
    assert len(phase.groups) == 2  # the last group stays: no groups would mean "use the preset" again
    merge_groups(phase, index, [1])
    assert len(phase.groups) == 2  # one row: nothing to merge


def test_update_group_writes_valid_values_and_refuses_invalid_ones_without_a_change():
    index, phase = index_of(), discriminative()
    update_group(phase, index, 1, lr=3.3e-4, weight_decay=0.05)
    assert (phase.groups[1].lr, phase.groups[1].weight_decay) == (3.3e-4, 0.05)
    update_group(phase, index, 1, weight_decay=None, name="mid")
    assert (phase.groups[1].name, phase.groups[1].weight_decay) == ("mid", None)

    fresh = discriminative()
    for change, field in (({"lr": 0.0}, "groups[0].lr"), ({"lr": -1e-3}, "groups[0].lr"),
                          ({"weight_decay": -0.1}, "groups[0].weight_decay"), ({"name": ""}, "groups[0].name"),
                          ({"name": "head"}, "groups[0].name"), ({"modules": []}, "groups[0].modules")):
        with pytest.raises(RecipeError) as caught:
            update_group(fresh, index, 0, **change)
        assert caught.value.field == field
        assert fresh.groups == []  # not even materialised
    with pytest.raises(RecipeError, match="no group 7"):
        update_group(fresh, index, 6, lr=1e-3)


def test_group_counts_and_the_shortest_names_for_unassigned_parameters():
    index = index_of()
    phase = PhaseConfig("p", 1, ["layer4", "head"], groups=[GroupSpec("body", ["layer4"], 1e-4)])
    apply_freeze_plan(index.model, index.stages, phase.trainable)
    owned = assignment(index.model, index.stages, phase.groups, strict=False)
    tree = build_layer_tree(index.model, index.stages, param_groups=owned)
    layer4 = sum(p.numel() for n, p in index.model.named_parameters() if covers("layer4", n))
    assert group_param_counts(tree) == {"body": layer4}
    assert compress_parameter_names(["fc.weight", "fc.bias"], tree, index) == ["fc"]
    # Only part of what a module holds: named one by one (the module would also cover fc.bias, already grouped).
    assert compress_parameter_names(["fc.weight"], tree, index) == ["fc.weight"]
    everything_but = [n for n, _ in index.model.named_parameters() if covers("layer4", n) and n != "layer4.1.bn2.bias"]
    assert compress_parameter_names(everything_but, tree, index) == [
        "layer4.0", "layer4.1.conv1", "layer4.1.bn1", "layer4.1.conv2", "layer4.1.bn2.weight"]
    assert compress_parameter_names([], tree, index) == []


# --- any sequence of moves keeps every trainable parameter in exactly one group ---------------------------------

@pytest.mark.parametrize("arch", ("resnet18", "vit_b_16"))
@settings(max_examples=40, deadline=None, derandomize=True, database=None)  # the same examples on every run
@given(data=st.data())
def test_any_sequence_of_moves_puts_exactly_the_moved_subtrees_in_their_group(arch, data):
    index = index_of(arch)
    paths = [p for p in index._children if p and index.params(p)]
    shallow = [p for p in paths if p.count(".") <= 1]
    phase = discriminative()
    expected = owners(index, phase)
    names = st.sampled_from(["early", "middle", "head", "new1", "new2"])
    moves = data.draw(st.lists(st.tuples(st.sampled_from(shallow) | st.sampled_from(paths), names), min_size=1,
                               max_size=5))
    for path, group in moves:
        move_to_group(phase, index, path, group)
        expected.update({name: group for name in expected if covers(path, name)})
        assert owners(index, phase) == expected, (path, group, phase.groups)
