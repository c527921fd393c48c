"""The Phases tab: the table edits the recipe's phases, the gradual preset is one click, bad text is reported."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QTableView

from gui.document import RecipeDocument
from gui.models.phase_selection import PhaseSelection
from gui.panels.model_panel import ModelPanel
from gui.panels.phases_panel import COL_EPOCHS, COL_NAME, COL_PRESET, COL_TRAINS, PhasesPanel, PhasesTimeline
from tests.helpers import tiny_recipe


@pytest.fixture
def panel(qtbot, image_folder) -> PhasesPanel:
    panel = PhasesPanel(RecipeDocument(tiny_recipe(image_folder, "feature_extraction")))
    qtbot.addWidget(panel)
    return panel


def recipe_of(panel: PhasesPanel):
    return panel._document.recipe


def click(panel: PhasesPanel, name: str) -> None:
    panel.findChild(QPushButton, name).click()


def test_gradual_preset_gives_the_lessons_three_phases(panel):
    click(panel, "gradualPresetButton")
    phases = recipe_of(panel).phases
    assert [p.epochs for p in phases] == [5, 5, 10]
    assert [p.trainable for p in phases] == [["head"], ["layer4", "head"], ["all"]]
    assert recipe_of(panel).strategy == "gradual_unfreezing"
    model = panel.phases_model
    assert model.rowCount() == 3
    assert model.index(1, COL_TRAINS).data() == "layer4, head"
    assert model.index(2, COL_PRESET).data() == "discriminative"
    assert panel.findChild(QLabel, "phasesErrorLabel").text() == ""


def test_editing_epochs_in_the_table_changes_the_recipe_and_the_timeline(panel):
    model = panel.phases_model
    assert model.setData(model.index(0, COL_EPOCHS), 7)
    assert recipe_of(panel).phases[0].epochs == 7
    assert model.index(0, COL_EPOCHS).data() == "7"
    assert panel.findChild(PhasesTimeline, "phasesTimeline").segments() == [("feature_extraction", 0, 7)]
    assert not model.setData(model.index(0, COL_EPOCHS), 0)
    assert not model.setData(model.index(0, COL_EPOCHS), "many")
    assert recipe_of(panel).phases[0].epochs == 7


def test_an_unknown_stage_name_is_reported_next_to_the_table(panel):
    model = panel.phases_model
    assert model.setData(model.index(0, COL_TRAINS), "layer4, layer9")
    assert recipe_of(panel).phases[0].trainable == ["layer4", "layer9"]  # kept as typed, for the user to fix
    message = panel.findChild(QLabel, "phasesErrorLabel").text()
    assert "phases[0].trainable[1]" in message and "'layer9' is neither a stage" in message
    assert model.index(0, COL_NAME).data(Qt.ItemDataRole.BackgroundRole) is not None
    assert model.setData(model.index(0, COL_TRAINS), "layer4, head")
    assert panel.findChild(QLabel, "phasesErrorLabel").text() == ""


def test_a_duplicate_phase_name_is_refused(panel):
    click(panel, "addPhaseButton")
    model = panel.phases_model
    assert not model.setData(model.index(1, COL_NAME), "feature_extraction")
    assert model.setData(model.index(1, COL_NAME), "fine_tune")
    assert [p.name for p in recipe_of(panel).phases] == ["feature_extraction", "fine_tune"]


def test_add_move_and_remove_phases(panel):
    selection = PhaseSelection.for_document(panel._document)
    assert not panel.findChild(QPushButton, "removePhaseButton").isEnabled()
    click(panel, "addPhaseButton")
    phases = recipe_of(panel).phases
    assert [p.name for p in phases] == ["feature_extraction", "phase1"]
    assert phases[1].trainable == ["head"] and phases[1] is not phases[0]
    assert selection.index == 1
    recipe_of(panel).phases[1].trainable.append("layer4")
    assert phases[0].trainable == ["head"]  # a copy, not the same lists

    click(panel, "movePhaseUpButton")
    assert [p.name for p in recipe_of(panel).phases] == ["phase1", "feature_extraction"]
    assert selection.index == 0
    click(panel, "movePhaseDownButton")
    assert [p.name for p in recipe_of(panel).phases] == ["feature_extraction", "phase1"]
    click(panel, "removePhaseButton")
    assert [p.name for p in recipe_of(panel).phases] == ["feature_extraction"]
    assert selection.index == 0


def test_the_chosen_phase_is_shared_with_the_model_tab(qtbot, panel):
    model_panel = ModelPanel(panel._document)
    qtbot.addWidget(model_panel)
    click(panel, "gradualPresetButton")
    table = panel.findChild(QTableView, "phasesTable")
    table.selectRow(1)
    assert model_panel.findChild(QComboBox, "phaseCombo").currentIndex() == 1
    assert model_panel.tree_model.tree().find("layer4").state == "trainable"  # phase 2 trains layer4
    assert model_panel.tree_model.tree().find("layer3").state == "frozen"

    timeline = panel.findChild(PhasesTimeline, "phasesTimeline")
    timeline.resize(400, 80)
    with qtbot.waitSignal(timeline.phase_clicked) as clicked:
        qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPointF(390, 20).toPoint())
    assert clicked.args == [2]
    assert table.currentIndex().row() == 2
    assert model_panel.tree_model.tree().find("layer3").state == "trainable"


def test_the_phases_model_passes_qts_model_checks(panel, qtmodeltester):
    click(panel, "gradualPresetButton")
    qtmodeltester.check(panel.phases_model, force_py=True)


def test_the_timeline_counts_a_fitted_head_as_the_one_epoch_the_run_counts(qtbot, image_folder):
    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=7, head_fit="converge")
    panel = PhasesPanel(RecipeDocument(recipe))
    qtbot.addWidget(panel)
    timeline = panel.findChild(PhasesTimeline, "phasesTimeline")
    head, tail, everything = (p.epochs for p in recipe.phases)
    assert head > 1  # what the recipe says; the run fits the head once
    assert timeline.segments() == [("head", 0, 1), ("head+layer4", 1, tail), ("all", 1 + tail, everything)]
    assert [panel._document.fits_head(i) for i in range(3)] == [True, False, False]
    panel._document.edit(lambda r: setattr(r.data, "cache_features", "off"))  # no cached features: epochs again
    assert timeline.segments()[0] == ("head", 0, head)
    panel._document.edit(lambda r: setattr(r.data, "cache_features", "auto"))
    panel._document.edit(lambda r: setattr(r.phases[0], "head_fit", "epochs"))  # the lesson's way: epochs
    assert timeline.segments()[0] == ("head", 0, head) and not panel._document.fits_head(0)
