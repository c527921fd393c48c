"""Freeze-plan edits: freezing or thawing a subtree changes exactly that subtree when the plan is applied to a
model, and the lists stay minimal and readable. No Qt."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.model.freezing import apply_freeze_plan
from engine.model.stages import covers
from engine.planning.freeze_edits import freeze_subtree, normalise_freeze_plan, set_bn_mode, thaw_subtree
from engine.planning.module_index import ModuleIndex, index_for
from engine.recipe import ModelConfig, PhaseConfig


def index_of(arch: str = "resnet18") -> ModuleIndex:
    return index_for(ModelConfig(arch=arch), 2)


def head_only() -> PhaseConfig:
    return PhaseConfig("feature_extraction", 1, ["head"])


def trained(index: ModuleIndex, phase: PhaseConfig) -> set[str]:
    """What really trains when the phase's plan is applied to the model (the trainer's own code)."""
    state = apply_freeze_plan(index.model, index.stages, phase.trainable, phase.frozen, phase.bn_modes)
    return set(state.trainable)


def under(index: ModuleIndex, path: str) -> set[str]:
    return {n for n, _ in index.model.named_parameters() if covers(path, n)}


def test_thawing_a_stage_adds_it_by_name():
    index, phase = index_of(), head_only()
    thaw_subtree(phase, "layer4", index)
    assert (phase.trainable, phase.frozen) == (["layer4", "head"], [])
    assert trained(index, phase) == under(index, "layer4") | under(index, "fc")


def test_freezing_a_block_inside_a_trainable_stage_adds_one_frozen_entry():
    index, phase = index_of(), head_only()
    thaw_subtree(phase, "layer4", index)
    freeze_subtree(phase, "layer4.1", index)
    assert (phase.trainable, phase.frozen) == (["layer4", "head"], ["layer4.1"])
    assert trained(index, phase) == under(index, "layer4.0") | under(index, "fc")


def test_thawing_inside_a_frozen_block_splits_it_into_its_siblings_and_refreezing_folds_back():
    index, phase = index_of(), head_only()
    thaw_subtree(phase, "layer4", index)
    freeze_subtree(phase, "layer4.1", index)
    thaw_subtree(phase, "layer4.1.conv1", index)
    assert phase.frozen == ["layer4.1.bn1", "layer4.1.conv2", "layer4.1.bn2"]
    assert trained(index, phase) == under(index, "layer4.0") | under(index, "layer4.1.conv1") | under(index, "fc")
    freeze_subtree(phase, "layer4", index)
    assert (phase.trainable, phase.frozen) == (["head"], [])


def test_freezing_a_part_of_all_lists_it_as_frozen():
    index = index_of()
    phase = PhaseConfig("fine_tune", 1, ["all"])
    freeze_subtree(phase, "layer1", index)
    assert (phase.trainable, phase.frozen) == (["all"], ["layer1"])
    thaw_subtree(phase, "layer1", index)
    assert (phase.trainable, phase.frozen) == (["all"], [])


def test_names_the_model_does_not_have_are_kept_untouched():
    index = index_of()
    phase = PhaseConfig("p", 1, ["all", "layer9"])
    freeze_subtree(phase, "layer1", index)
    assert (phase.trainable, phase.frozen) == (["all", "layer9"], ["layer1"])


def test_bn_modes_set_for_a_subtree_replace_more_specific_ones():
    index, phase = index_of(), head_only()
    set_bn_mode(phase, "layer1.0.bn1", "train", index)
    set_bn_mode(phase, "layer1", "frozen_stats", index)
    assert phase.bn_modes == {"layer1": "frozen_stats"}
    assert under(index, "layer1.0.bn1") <= trained(index, phase)  # frozen_stats: the affine parameters train
    set_bn_mode(phase, "", "frozen", index)
    assert phase.bn_modes == {"all": "frozen"}
    set_bn_mode(phase, "", None, index)
    assert phase.bn_modes == {}


def test_freezing_drops_frozen_stats_and_thawing_drops_frozen_overrides_inside_the_subtree():
    index, phase = index_of(), head_only()
    set_bn_mode(phase, "layer1", "frozen_stats", index)
    set_bn_mode(phase, "layer2", "frozen", index)
    freeze_subtree(phase, "layer1", index)
    assert phase.bn_modes == {"layer2": "frozen"}
    assert not under(index, "layer1") & trained(index, phase)  # nothing of layer1 trains any more
    thaw_subtree(phase, "layer2", index)
    assert phase.bn_modes == {}
    assert under(index, "layer2") <= trained(index, phase)


def test_thawing_a_block_inside_a_frozen_vit_encoder_keeps_the_encoders_own_parameters_frozen():
    index = index_of("vit_b_16")
    phase = PhaseConfig("p", 1, ["all"])
    freeze_subtree(phase, "encoder", index)
    thaw_subtree(phase, "encoder.layers.encoder_layer_3", index)
    assert "encoder.pos_embedding" in phase.frozen  # held by the encoder itself, not by a child
    assert trained(index, phase) == (under(index, "") - under(index, "encoder")) | under(
        index, "encoder.layers.encoder_layer_3")


def test_normalising_drops_what_changes_nothing_and_sorts_in_model_order():
    index = index_of()
    phase = PhaseConfig("p", 1, ["head", "layer4.1", "layer4", "layer2"], frozen=["layer1", "layer2"])
    before = trained(index, phase)
    normalise_freeze_plan(phase, index)
    assert (phase.trainable, phase.frozen) == (["layer4", "head"], [])
    assert trained(index, phase) == before


# --- any sequence of ticks does exactly what each tick says ----------------------------------------------------

def _tickable(arch: str) -> list[str]:
    index = index_of(arch)
    return [p for p in index._children if p and index.params(p)]


ARCHS = ("resnet18", "vit_b_16")  # vit_b_16: parameters held by the root and the encoder themselves


@pytest.mark.parametrize("arch", ARCHS)
@settings(max_examples=60, deadline=None, derandomize=True, database=None)  # the same examples on every run
@given(data=st.data())
def test_any_sequence_of_ticks_freezes_exactly_the_ticked_subtrees(arch, data):
    index = index_of(arch)
    paths = _tickable(arch)
    phase = data.draw(st.sampled_from([["head"], ["all"], ["last_stage", "head"]]).map(
        lambda trainable: PhaseConfig("p", 1, list(trainable))))
    expected = trained(index, phase)
    # Shallow modules half of the time: ticks inside a ticked ancestor are where lists get split.
    shallow = [p for p in paths if p.count(".") <= 1]
    path = st.sampled_from(shallow) | st.sampled_from(paths)
    ticks = data.draw(st.lists(st.tuples(st.booleans(), path), min_size=1, max_size=6))
    for freeze, path in ticks:
        (freeze_subtree if freeze else thaw_subtree)(phase, path, index)
        expected = expected - under(index, path) if freeze else expected | under(index, path)
        if not expected:
            break  # nothing left to train: the recipe would be invalid, the edit is still exact
        assert trained(index, phase) == expected, (freeze, path, phase.trainable, phase.frozen)
        # Minimal: normalising again changes nothing.
        again = PhaseConfig("p", 1, list(phase.trainable), list(phase.frozen))
        normalise_freeze_plan(again, index)
        assert (again.trainable, again.frozen) == (phase.trainable, phase.frozen)
