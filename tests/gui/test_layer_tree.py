"""The Model tab's layer tree: ticking modules edits the phase's freeze plan, and the tree shows the result."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QTreeView

from engine.model.layer_tree import FROZEN, TRAINABLE, trainable_summary
from engine.model.zoo import list_model_names
from gui.document import RecipeDocument
from gui.models.layer_tree_model import COL_BN, COL_DRIFT, COL_MODULE, COL_PARAMS, COLUMNS, DriftRole
from gui.panels.model_panel import ArchRole, ModelPanel
from tests.helpers import tiny_recipe


@pytest.fixture
def panel(qtbot, image_folder) -> ModelPanel:
    panel = ModelPanel(RecipeDocument(tiny_recipe(image_folder, "feature_extraction")))
    qtbot.addWidget(panel)
    return panel


def document_of(panel: ModelPanel) -> RecipeDocument:
    return panel._document


def phase(panel: ModelPanel):
    return document_of(panel).recipe.phases[0]


def tree_root(panel: ModelPanel):
    return document_of(panel).plan().phases[0].tree


def check_state(panel: ModelPanel, path: str):
    return panel.tree_model.index_of(path).data(Qt.ItemDataRole.CheckStateRole)


def set_check(panel: ModelPanel, path: str, state: Qt.CheckState) -> None:
    assert panel.tree_model.setData(panel.tree_model.index_of(path), state, Qt.ItemDataRole.CheckStateRole)


def all_indexes(model, parent=QModelIndex()):
    for row in range(model.rowCount(parent)):
        index = model.index(row, COL_MODULE, parent)
        yield index
        yield from all_indexes(model, index)


def test_feature_extraction_tree_shows_the_head_trainable_and_the_body_frozen(panel):
    assert check_state(panel, "fc") == Qt.CheckState.Unchecked
    assert check_state(panel, "layer1") == Qt.CheckState.Checked
    assert check_state(panel, "") == Qt.CheckState.PartiallyChecked
    label = panel.findChild(QLabel, "trainableLabel")
    assert label.text() == trainable_summary(tree_root(panel))
    assert label.text().startswith("trainable 66 of ")  # tiny_resnet's new 2-class head: 32 × 2 + 2


def test_unticking_layer4_thaws_exactly_layer4(panel):
    before = tree_root(panel).trainable_params
    layer4_params = tree_root(panel).find("layer4").total_params
    set_check(panel, "layer4", Qt.CheckState.Unchecked)
    assert "layer4" in phase(panel).trainable
    assert phase(panel).frozen == []
    assert tree_root(panel).trainable_params == before + layer4_params
    assert check_state(panel, "layer4") == Qt.CheckState.Unchecked
    assert check_state(panel, "layer3") == Qt.CheckState.Checked
    assert panel.findChild(QLabel, "trainableLabel").text() == trainable_summary(tree_root(panel))


def test_freezing_a_block_inside_a_trainable_stage_leaves_the_stage_partly_frozen(panel):
    set_check(panel, "layer4", Qt.CheckState.Unchecked)
    set_check(panel, "layer4.1", Qt.CheckState.Checked)
    assert check_state(panel, "layer4") == Qt.CheckState.PartiallyChecked
    assert check_state(panel, "layer4.1") == Qt.CheckState.Checked
    assert check_state(panel, "layer4.0") == Qt.CheckState.Unchecked
    assert phase(panel).frozen == ["layer4.1"]
    assert phase(panel).trainable == ["layer4", "head"]


def test_thawing_inside_a_frozen_block_shows_exactly_that_module_training(panel):
    # How the plan's lists are split and folded back is the engine's (tests/engine/test_freeze_edits.py).
    set_check(panel, "layer4", Qt.CheckState.Unchecked)
    set_check(panel, "layer4.1", Qt.CheckState.Checked)
    before = tree_root(panel).trainable_params
    conv1 = tree_root(panel).find("layer4.1.conv1").total_params
    set_check(panel, "layer4.1.conv1", Qt.CheckState.Unchecked)
    assert tree_root(panel).trainable_params == before + conv1
    assert check_state(panel, "layer4.1") == Qt.CheckState.PartiallyChecked
    assert check_state(panel, "layer4.1.conv1") == Qt.CheckState.Unchecked
    assert check_state(panel, "layer4.1.bn1") == Qt.CheckState.Checked
    set_check(panel, "layer4", Qt.CheckState.Checked)
    assert check_state(panel, "layer4.1.conv1") == Qt.CheckState.Checked


def test_the_root_and_parameterless_modules_are_not_tickable(panel):
    model = panel.tree_model
    assert not model.flags(model.index_of("")) & Qt.ItemFlag.ItemIsUserCheckable
    assert model.index_of("relu").data(Qt.ItemDataRole.CheckStateRole) is None
    assert not model.setData(model.index_of("relu"), Qt.CheckState.Checked, Qt.ItemDataRole.CheckStateRole)


def test_strategies_apply_in_one_click(panel):
    combo = panel.findChild(QComboBox, "strategyCombo")
    button = panel.findChild(QPushButton, "applyStrategyButton")
    combo.setCurrentIndex(combo.findData("fine_tune_all"))
    button.click()
    recipe = document_of(panel).recipe
    assert recipe.strategy == "fine_tune_all"
    assert [p.epochs for p in recipe.phases] == [10]  # the lesson's, not the 2 the recipe had
    assert recipe.batch_size == 8 and recipe.data.crop_size == 32  # kept
    states = [index.data(Qt.ItemDataRole.CheckStateRole) for index in all_indexes(panel.tree_model)]
    assert states.count(None) > 0  # ReLU, pooling: no parameters, no box
    assert {s for s in states if s is not None} == {Qt.CheckState.Unchecked}

    combo.setCurrentIndex(combo.findData("feature_extraction"))
    button.click()
    for node in tree_root(panel).walk():
        if node.path and node.total_params:
            assert node.state == (TRAINABLE if node.path.startswith("fc") else FROZEN), node.path


def test_expanded_modules_stay_expanded_after_an_edit(panel):
    view = panel.findChild(QTreeView, "layerTree")
    view.expand(panel.tree_model.index_of("layer4"))
    set_check(panel, "layer4", Qt.CheckState.Unchecked)
    assert view.isExpanded(panel.tree_model.index_of("layer4"))
    assert not view.isExpanded(panel.tree_model.index_of("layer3"))


def test_context_menu_sets_bn_modes(panel):
    menu = panel.context_menu(panel.tree_model.index_of("layer1"))
    bn_menu = next(a.menu() for a in menu.actions() if a.text() == "Set BN mode")
    next(a for a in bn_menu.actions() if a.text() == "frozen_stats").trigger()
    assert phase(panel).bn_modes == {"layer1": "frozen_stats"}
    assert panel.tree_model.index_of("layer1.0.bn1").siblingAtColumn(COL_BN).data() == "frozen_stats"
    # frozen_stats keeps the affine parameters training: the BN layer's 128 parameters now train.
    assert tree_root(panel).find("layer1.0.bn1").trainable_params == 16

    freeze_menu = panel.context_menu(panel.tree_model.index_of("layer1"))
    next(a for a in freeze_menu.actions() if a.text() == "Freeze subtree").trigger()
    assert phase(panel).bn_modes == {}  # freezing the subtree drops what would keep parts of it training
    assert tree_root(panel).find("layer1").trainable_params == 0


def test_add_to_group_materialises_the_preset_and_moves_the_module(panel):
    panel.apply_strategy("fine_tune_all")  # discriminative: early (stem, layer1, layer2), middle, head
    menu = panel.context_menu(panel.tree_model.index_of("layer2"))
    group_menu = next(a.menu() for a in menu.actions() if a.text() == "Add to group")
    assert [a.text() for a in group_menu.actions() if a.isCheckable() and a.isChecked()] == ["early"]
    next(a for a in group_menu.actions() if a.text() == "middle").trigger()
    groups = {g.name: g for g in phase(panel).groups}
    assert groups["early"].modules == ["stem", "layer1"]
    assert groups["middle"].modules == ["layer2", "layer3", "layer4"]
    assert groups["middle"].lr == pytest.approx(1e-4)
    plan_phase = document_of(panel).plan().phases[0]
    assert plan_phase.unassigned == [] and plan_phase.error == ""
    assert tree_root(panel).find("layer2").group == "middle"


def test_freeze_verification_is_shown_and_moved_modules_are_marked(panel):
    panel.show_freeze_verification(0, [], 62)
    label = panel.findChild(QLabel, "verifiedLabel")
    assert "62" in label.text() and "✓" in label.text()
    panel.show_freeze_verification(0, ["layer1.0.conv1.weight"], 62)
    assert "1 of 62" in label.text() and "layer1.0.conv1.weight" in label.text()
    moved = panel.tree_model.index_of("layer1.0.conv1").data(Qt.ItemDataRole.ForegroundRole)
    untouched = panel.tree_model.index_of("layer2").data(Qt.ItemDataRole.ForegroundRole)
    assert moved.color() != untouched.color()


def test_model_and_weights_choices(panel):
    combo = panel.findChild(QComboBox, "modelCombo")
    archs = {combo.itemData(i, ArchRole) for i in range(combo.count())} - {None}
    assert archs == set(list_model_names())
    combo.set_arch("mobilenet_v3_small")
    assert document_of(panel).recipe.model.arch == "mobilenet_v3_small"
    weights = panel.findChild(QComboBox, "weightsCombo")
    assert weights.currentText() == "DEFAULT (MobileNet_V3_Small_Weights.IMAGENET1K_V1)"
    entry = weights.itemText(weights.findData("MobileNet_V3_Small_Weights.IMAGENET1K_V1"))
    assert "acc@1 67.67 %" in entry and "cached" in entry  # the test TORCH_HOME holds this file
    assert "67.67" in panel.findChild(QLabel, "modelInfoLabel").text()
    assert tree_root(panel).find("classifier.3").state == TRAINABLE  # the tree follows the new model

    weights.setCurrentIndex(weights.findData("none"))
    assert document_of(panel).recipe.model.weights == "none"
    panel.set_weights_file("/tmp/my_weights.pth")
    assert weights.currentText() == "Local file: my_weights.pth"


def test_the_tree_model_passes_qts_model_checks(panel, qtmodeltester):
    qtmodeltester.check(panel.tree_model, force_py=True)
    set_check(panel, "layer4", Qt.CheckState.Unchecked)  # an in-place update
    panel.findChild(QComboBox, "modelCombo").set_arch("mobilenet_v3_small")  # a reset
    qtmodeltester.check(panel.tree_model, force_py=True)


def test_edits_keep_names_the_model_does_not_have(panel):
    # A typo stays in the list for the plan to report; the tree's edits neither drop nor interpret it.
    document_of(panel).edit(lambda r: setattr(r.phases[0], "trainable", ["all", "layer9"]))
    set_check(panel, "layer1", Qt.CheckState.Checked)
    assert phase(panel).trainable == ["all", "layer9"]
    assert phase(panel).frozen == ["layer1"]
    assert "'layer9' is neither a stage" in panel.findChild(QLabel, "modelErrorLabel").text()


def test_the_columns_come_from_one_list(panel):
    # One more Column in COLUMNS is one more column everywhere: header, width, alignment.
    model, view = panel.tree_model, panel.findChild(QTreeView, "layerTree")
    assert [model.headerData(i, Qt.Orientation.Horizontal) for i in range(model.columnCount())] == [
        c.title for c in COLUMNS]
    assert [view.header().sectionSize(i) for i in range(model.columnCount())] == [c.width for c in COLUMNS]
    params = model.index_of("fc", COL_PARAMS)
    assert params.data() == "66" and params.data(Qt.ItemDataRole.TextAlignmentRole) & Qt.AlignmentFlag.AlignRight
    assert not model.index_of("fc", COL_BN).data(Qt.ItemDataRole.TextAlignmentRole)


# --- a run's weight drift in the Drift column ------------------------------------------------------------------


@pytest.fixture(scope="module")
def layer4_drift(tmp_path_factory):
    """The drift of a real run where layer4 and the head trained and everything before them was frozen."""
    from engine.infer.drift import run_weight_drift
    from engine.infer.run_checkpoint import open_checkpoint
    from engine.recipe import PhaseConfig
    from tests.evaluation_helpers import make_styled_folder, train_run

    root = tmp_path_factory.mktemp("drift")
    data = make_styled_folder(root / "data", {"cat": "cat", "dog": "dog"}, per_class=8)
    run = train_run(data, root / "runs", "feature_extraction", epochs=2,
                    phases=[PhaseConfig("layer4", 2, ["layer4", "head"], lr=1e-2)])
    return run_weight_drift(open_checkpoint(run))


def drift_cell(panel: ModelPanel, path: str) -> tuple[str, float | None]:
    index = panel.tree_model.index_of(path, COL_DRIFT)
    return index.data(), index.data(DriftRole)


def test_the_drift_column_is_exactly_zero_for_frozen_layers_and_positive_for_trained_ones(panel, layer4_drift):
    assert COLUMNS[COL_DRIFT].title == "Drift"
    assert drift_cell(panel, "layer4") == ("", None)  # no run's drift yet
    panel.show_drift(layer4_drift, "partly thawed")
    frozen = ("conv1", "bn1", "layer1", "layer2", "layer3")
    for layer in layer4_drift.layers:
        text, value = drift_cell(panel, layer.path)
        if layer.path.startswith(frozen):
            assert (text, value) == ("0", 0.0), layer.path
        else:
            assert value == layer.relative and value > 0 and text not in ("0", ""), layer.path
    # A module takes its layers together: stages and blocks as the engine's stage drift says.
    stages = {s.name: s.relative for s in layer4_drift.stages}
    for stage in ("layer1", "layer2", "layer3"):
        assert drift_cell(panel, stage) == ("0", 0.0)
    assert drift_cell(panel, "layer4")[1] == pytest.approx(stages["layer4"]) and stages["layer4"] > 0
    assert drift_cell(panel, "relu") == ("", None)  # no parameters: nothing to drift
    assert 0 < drift_cell(panel, "")[1]
    tooltip = panel.tree_model.index_of("layer1.0.conv1").data(Qt.ItemDataRole.ToolTipRole)
    assert "bit-identical" in tooltip
    label = panel.findChild(QLabel, "treeDriftLabel").text()
    frozen_layers = sum(1 for layer in layer4_drift.layers if layer.path.startswith(frozen))
    assert "partly thawed" in label and f"{frozen_layers} of {len(layer4_drift.layers)} layers" in label


def test_another_models_drift_is_not_shown_in_this_tree(panel, layer4_drift):
    from engine.infer.drift import LayerDrift, WeightDrift

    other = WeightDrift([LayerDrift("features.0.0", 432, 0.5, 2.0, 0.25),
                         LayerDrift("classifier.3", 10, 1.0, 1.0, 1.0)])
    panel.show_drift(other, "a mobilenet run")
    assert all(index.siblingAtColumn(COL_DRIFT).data() == "" for index in all_indexes(panel.tree_model))
    assert "trained another model" in panel.findChild(QLabel, "treeDriftLabel").text()
    panel.show_drift(layer4_drift, "partly thawed")
    assert drift_cell(panel, "layer3") == ("0", 0.0)
    panel.show_drift(None)
    assert drift_cell(panel, "layer3") == ("", None)
