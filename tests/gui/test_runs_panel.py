"""The Runs tab lists real run folders, compares the selected runs, and hands a run back to the editor."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from engine.train.runs import checkpoint_path, list_runs
from engine.train.trainer import fit
from gui.document import RecipeDocument
from gui.panels.runs_panel import COLUMNS, RunsPanel
from tests.helpers import tiny_recipe

STRATEGY = [c.title for c in COLUMNS].index("Strategy")
BEST = [c.title for c in COLUMNS].index("Best val acc")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, image_folder) -> Path:
    """A runs folder with a feature-extraction run and a fine-tuning run (2 epochs of 2 batches each)."""
    root = tmp_path_factory.mktemp("runs")
    for strategy in ("feature_extraction", "fine_tune_all"):
        recipe = tiny_recipe(image_folder, strategy, epochs=2, out=root, name=f"tiny-{strategy}")
        recipe.phases[0].head_fit = "epochs"  # two epochs each, as the comparisons below count them
        recipe.data.max_train_batches = 2
        result = fit(recipe)
        assert result.status == "finished", result.error
    return root


@pytest.fixture
def panel(qtbot, two_runs, image_folder):
    document = RecipeDocument(tiny_recipe(image_folder, "from_scratch", epochs=3, out=two_runs))
    panel = RunsPanel(document)
    panel.show_error_dialogs = False
    qtbot.addWidget(panel)
    return panel


def cell(panel: RunsPanel, row: int, column: int) -> str:
    return panel.model.data(panel.model.index(row, column))


def select_rows(panel: RunsPanel, *rows: int) -> None:
    selection = panel.runsTable.selectionModel()
    selection.clearSelection()
    for row in rows:
        selection.select(panel.model.index(row, 0),
                         QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)


def row_of_strategy(panel: RunsPanel, strategy: str) -> int:
    return next(row for row in range(panel.model.rowCount()) if cell(panel, row, STRATEGY) == strategy)


def test_table_lists_each_run_with_its_strategy_and_accuracy(panel, two_runs):
    assert panel.model.rowCount() == 2
    assert sorted(cell(panel, row, STRATEGY) for row in range(2)) == ["feature_extraction", "fine_tune_all"]
    for row in range(2):
        assert cell(panel, row, BEST).endswith("%")
    assert str(two_runs) in panel.runsRootLabel.text()


def test_selecting_two_runs_overlays_their_curves_and_compares_time(panel):
    select_rows(panel, 0, 1)

    curves = panel.comparison.accuracy_curves()
    assert len(curves) == 2
    assert [len(c.getOriginalDataset()[0]) for c in curves] == [2, 2]  # val accuracy of each epoch
    lengths = panel.comparison.bar_lengths()
    assert len(lengths) == 2 and all(length > 0 for length in lengths)
    summary = panel.comparison.runsSummaryLabel.text()
    assert "Most accurate:" in summary and "faster than" in summary
    assert "feature_extraction" in summary and "fine_tune_all" in summary

    select_rows(panel, 0)
    assert len(panel.comparison.accuracy_curves()) == 1


def test_sorting_reorders_rows_and_keeps_the_selection(panel):
    fine_tune = panel.model.record(row_of_strategy(panel, "fine_tune_all")).path
    select_rows(panel, row_of_strategy(panel, "fine_tune_all"))

    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        panel.runsTable.sortByColumn(STRATEGY, order)
        strategies = [cell(panel, row, STRATEGY) for row in range(2)]
        assert strategies == sorted(strategies, reverse=order == Qt.SortOrder.DescendingOrder)
        assert [r.path for r in panel.selected_runs()] == [fine_tune]


def test_open_recipe_loads_the_run_recipe_into_the_document(panel, image_folder):
    document = panel._document
    document.set_path("/somewhere/else.json")
    select_rows(panel, row_of_strategy(panel, "feature_extraction"))

    panel.openRecipeButton.click()

    recipe = document.recipe
    assert recipe.strategy == "feature_extraction" and recipe.name == "tiny-feature_extraction"
    assert [p.name for p in recipe.phases] == ["feature_extraction"] and recipe.total_epochs == 2
    assert recipe.model.weights.startswith("ResNet18_Weights.")  # the exact weights the run used
    assert document.path == ""  # saving asks for a new file instead of overwriting the old one


def test_use_checkpoint_hands_the_best_checkpoint_to_inference(qtbot, panel):
    row = row_of_strategy(panel, "fine_tune_all")
    select_rows(panel, row)

    with qtbot.waitSignal(panel.checkpoint_chosen) as chosen:
        panel.useCheckpointButton.click()

    assert chosen.args == [str(checkpoint_path(panel.model.record(row).path, "best"))]


def test_refresh_picks_up_a_new_run_folder(panel, two_runs, tmp_path):
    assert panel.model.rowCount() == len(list_runs(two_runs)) == 2
    incomplete = two_runs / "20990101-000000-half-written"
    incomplete.mkdir()
    (incomplete / "recipe.json").write_text(tiny_recipe("x").to_json())
    try:
        panel.refreshRunsButton.click()
        assert panel.model.rowCount() == 3
        panel.runsTable.sortByColumn(BEST, Qt.SortOrder.DescendingOrder)
        assert cell(panel, 2, BEST) == "—"  # a run without results sorts last
    finally:
        (incomplete / "recipe.json").unlink()
        incomplete.rmdir()
