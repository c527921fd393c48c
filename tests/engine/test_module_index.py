"""The module index: what freeze-plan and group entries cover (decided by the freezing code's own `resolve`), and
the path arithmetic the edits are built on. No Qt, no weights: the planning skeleton on the meta device."""

from __future__ import annotations

import pytest

from engine.errors import RecipeError
from engine.model.freezing import resolve
from engine.model.stages import covers
from engine.planning.module_index import ModuleIndex, index_for
from engine.recipe import ModelConfig


def index_of(arch: str = "resnet18", num_classes: int = 2) -> ModuleIndex:
    return index_for(ModelConfig(arch=arch), num_classes)


def coverage(index: ModuleIndex, entries: list[str]) -> set[str]:
    """The parameter names a list of entries covers."""
    paths = [m for e in entries for m in index.resolve(e) or []]
    return {n for n, _ in index.model.named_parameters() if any(covers(p, n) for p in paths)}


def all_params(index: ModuleIndex) -> set[str]:
    return {n for n, _ in index.model.named_parameters()}


def test_aliases_stages_modules_and_parameters_resolve():
    index = index_of()
    assert index.resolve("all") == [""] and index.resolve("") == [""]
    assert index.resolve("last_stage") == ["layer4"]  # the stage just before the head
    assert index.resolve("head") == ["fc"]
    assert index.resolve("layer4.1") == ["layer4.1"]
    assert index.resolve("fc.bias") == ["fc.bias"]


@pytest.mark.parametrize("entry", ["layer9", "layer4.7", "fc.gain", "stage_x"])
def test_names_the_model_does_not_have_resolve_to_none(entry):
    # "fc.gain" looks like a parameter of a module that holds parameters, but fc has no such parameter.
    assert index_of().resolve(entry) is None


@pytest.mark.parametrize("entry", ["all", "", "last_stage", "head", "stem", "layer2", "layer4.1.conv1", "fc.weight",
                                   "layer9", "fc.gain"])
def test_the_edits_accept_exactly_what_the_freezing_code_accepts(entry):
    index = index_of()
    try:
        applied = resolve(index.model, index.stages, [entry], "phase.trainable")
    except RecipeError:
        applied = None
    edited = index.resolve(entry)
    assert (edited is None) == (applied is None)
    if applied is not None:
        assert edited == ["" if p == "all" else p for p in applied]


def test_carving_a_subtree_out_of_everything_keeps_everything_else():
    index = index_of()
    entries = index.carve(["all"], "layer4.1.conv1")
    assert coverage(index, entries) == all_params(index) - {"layer4.1.conv1.weight"}
    assert "layer1" in entries and "head" in entries  # whole stages by name, not their modules
    assert "layer4.1.bn1" in entries and "layer4.0" in entries


def test_carving_leaves_unknown_and_unrelated_entries_alone():
    index = index_of()
    assert index.carve(["layer9", "layer2", "head"], "layer4") == ["layer9", "layer2", "head"]


def test_a_vit_subtree_is_carved_out_with_the_parameters_its_ancestors_hold_themselves():
    # ViT's class token belongs to the root and its position embedding to the encoder, not to any child.
    index = index_of("vit_b_16")
    assert index.direct_params("") == ["class_token"]
    entries = index.carve(["all"], "encoder.layers.encoder_layer_3")
    expected = {n for n in all_params(index) if not n.startswith("encoder.layers.encoder_layer_3.")}
    assert coverage(index, entries) == expected
    assert "stem" in entries and "block3" not in entries  # the stem: patch projection, class token, positions


def test_readable_names_use_stages_in_model_order():
    index = index_of()
    assert index.names_for(["fc", "bn1", "conv1", "layer1"]) == ["stem", "layer1", "head"]
    assert index.names_for(["relu", "layer2.0"]) == ["layer2.0"]  # a module without parameters names nothing
    assert index.names_for([""]) == ["all"]
    assert index.sorted(["head", "layer9", "layer1.0", "all"]) == ["all", "layer1.0", "head", "layer9"]
    assert index.tidy(["conv1", "bn1", "layer9"]) == ["stem", "layer9"]


def test_a_container_holding_exactly_a_stage_is_named_by_the_stage():
    index = index_of("vit_b_16")  # the head is heads.head inside the container "heads"
    assert index.name_of("heads") == "head"


def test_structure_counts_match_the_model():
    index = index_of()
    fc = index.model.get_submodule("fc")
    assert index.params("fc") == sum(p.numel() for p in fc.parameters())
    assert index.params("") == sum(p.numel() for p in index.model.parameters())
    assert index.params("relu") == 0 and index.params("layer9") == 0
    assert index.children("layer4") == ["layer4.0", "layer4.1"]


def test_one_index_per_model_configuration():
    assert index_of() is index_of()
    assert index_of(num_classes=5) is not index_of()
    assert index_of(num_classes=5).params("fc") == 512 * 5 + 5
