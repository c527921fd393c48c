"""The Runs tab lists real run folders, compares the selected runs, and hands a run back to the editor."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QAbstractItemView, QLineEdit, QMessageBox

from engine.train.runs import RunRecord, checkpoint_path, list_runs, read_annotations
from engine.train.trainer import fit
from gui.document import RecipeDocument
from gui.panels.runs_panel import COLUMNS, RunComparison, RunsPanel, comparison_text
from tests.gui.dialogs import DialogAnswers
from tests.helpers import redirect_trash, tiny_recipe

STRATEGY = [c.title for c in COLUMNS].index("Strategy")
BEST = [c.title for c in COLUMNS].index("Best val acc")
NOTE = [c.title for c in COLUMNS].index("Note")


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
    accuracies = {panel.model.record(row).best_val_acc for row in range(2)}
    assert ("Equally accurate:" if len(accuracies) == 1 else "Most accurate:") in summary and "Fastest:" in summary
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
    assert recipe.model.weights.startswith("TinyResNet_Weights.")  # the exact weights the run used
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


@pytest.fixture
def own_runs(two_runs, tmp_path) -> Path:
    """A copy of the two runs that a test may rename, annotate and delete."""
    root = tmp_path / "own-runs"
    shutil.copytree(two_runs, root)
    return root


@pytest.fixture
def own_panel(qtbot, own_runs, image_folder, monkeypatch):
    panel = RunsPanel(RecipeDocument(tiny_recipe(image_folder, out=own_runs)))
    errors: list[tuple[str, str]] = []
    monkeypatch.setattr(panel, "_show_error", lambda title, message: errors.append((title, message)))
    panel.errors = errors
    qtbot.addWidget(panel)
    panel.show()
    return panel


def type_into_cell(qtbot, panel: RunsPanel, button, text: str) -> None:
    """Click Rename / Note, type in the cell's editor as a user would, press Enter."""
    button.click()
    (editor,) = [e for e in panel.runsTable.findChildren(QLineEdit) if e.isVisible()]  # closed ones linger hidden
    editor.selectAll()
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # Qt commits and closes the editor from its event queue
    qtbot.waitUntil(lambda: panel.runsTable.state() != QAbstractItemView.State.EditingState)


def test_rename_and_note_in_place_write_the_runs_annotations(qtbot, own_panel):
    panel = own_panel
    row = row_of_strategy(panel, "fine_tune_all")
    select_rows(panel, row)
    path = panel.model.record(row).path

    type_into_cell(qtbot, panel, panel.renameRunButton, "all layers, lr 1e-3")
    type_into_cell(qtbot, panel, panel.noteRunButton, "overfits after epoch 1")

    row = panel.model.row_of(path)
    assert cell(panel, row, 0) == "all layers, lr 1e-3" and cell(panel, row, NOTE) == "overfits after epoch 1"
    assert read_annotations(path) == {"name": "all layers, lr 1e-3", "note": "overfits after epoch 1"}
    assert RunRecord.load(path).recipe_name == "tiny-fine_tune_all"  # what the run recorded is untouched
    assert "all layers, lr 1e-3" in panel.comparison.runsSummaryLabel.text()  # the comparison uses the new name
    panel.refreshRunsButton.click()
    assert cell(panel, panel.model.row_of(path), 0) == "all layers, lr 1e-3"  # read back from the folder


def test_a_refused_name_is_said_and_changes_nothing(qtbot, own_panel):
    panel = own_panel
    select_rows(panel, 0)
    path = panel.model.record(0).path
    before = cell(panel, 0, 0)

    type_into_cell(qtbot, panel, panel.renameRunButton, "x" * 101)

    (title, message), = panel.errors
    assert "101 characters" in message and cell(panel, panel.model.row_of(path), 0) == before
    assert read_annotations(path) == {}


def test_delete_asks_then_moves_the_runs_to_the_trash(qtbot, own_panel, own_runs, tmp_path, monkeypatch):
    panel = own_panel
    trash = redirect_trash(monkeypatch, tmp_path / "xdg")
    select_rows(panel, 0, 1)
    paths = [r.path for r in panel.selected_runs()]

    answers = DialogAnswers(QMessageBox.StandardButton.Cancel)
    assert panel.delete_selected_runs() == []
    assert answers.pending == [] and "Move 2 run(s) to the trash?" in answers.asked[0]
    assert all(Path(p).is_dir() for p in paths) and panel.model.rowCount() == 2  # nothing without asking

    select_rows(panel, 0)
    doomed = panel.selected_runs()[0].path
    answers = DialogAnswers("Move to Trash")
    with qtbot.waitSignal(panel.runs_deleted) as deleted:
        qtbot.keyClick(panel.runsTable, Qt.Key.Key_Delete)  # the Delete key asks the same question

    assert answers.pending == [] and deleted.args == [[doomed]]
    assert not Path(doomed).exists() and (trash / "files" / Path(doomed).name / "recipe.json").is_file()
    assert panel.model.rowCount() == 1 and panel.model.record(0).path != doomed


def test_without_a_trash_deleting_for_good_is_asked_separately(qtbot, own_panel, monkeypatch):
    import send2trash

    panel = own_panel

    def no_trash(path):
        raise send2trash.TrashPermissionError(path)

    monkeypatch.setattr(send2trash, "send2trash", no_trash)
    select_rows(panel, 0)
    path = panel.selected_runs()[0].path

    answers = DialogAnswers("Move to Trash", QMessageBox.StandardButton.Cancel)
    assert panel.delete_selected_runs() == []
    assert answers.pending == [] and "cannot go to the trash" in answers.asked[1] and Path(path).is_dir()

    select_rows(panel, panel.model.row_of(path))
    answers = DialogAnswers("Move to Trash", "Delete permanently")
    assert panel.delete_selected_runs() == [path]
    assert answers.pending == [] and not Path(path).exists()


def test_a_run_in_progress_is_not_deleted(qtbot, own_panel):
    from engine.train.run_lock import RunLock

    panel = own_panel
    select_rows(panel, 0)
    path = panel.selected_runs()[0].path
    with RunLock(path):
        panel.refresh()  # now listed as live
        assert panel.delete_selected_runs() == []
    (title, message), = panel.errors
    assert "in progress" in title and Path(path).is_dir()


def record(name: str, strategy: str, best: float, seconds: float, epochs: int) -> RunRecord:
    return RunRecord(path=f"/runs/{name}", name=name, strategy=strategy, arch="resnet18", status="finished",
                     best_val_acc=best, final_val_acc=best, wall_seconds=seconds, trainable_params=1,
                     device="CPU", started="2026-12-07 10:00", epochs_done=epochs)


def test_the_comparison_says_what_the_runs_cost_and_names_them_as_the_table_does(qtbot):
    """Issue 28, bug 4: "+0.0 points over" a run as accurate as itself, "2.9× faster per epoch" for whole runs of
    0:32 and 9:33, and time bars labelled by strategy instead of the runs' (renamed) names."""
    quick = record("head only", "feature_extraction", 0.9, 32.0, 1)
    slow = record("all layers, lr 1e-3", "fine_tune_all", 0.9, 573.0, 6)
    text = comparison_text([quick, slow])
    assert "+0.0" not in text and "Equally accurate: every run reached 90.0 %." in text
    assert ("Fastest: head only (feature_extraction) took 0:32, 17.9× less than all layers, lr 1e-3 "
            "(fine_tune_all, 9:33); 3.0× faster per epoch, over 1 epochs against 6.") in text

    comparison = RunComparison()
    qtbot.addWidget(comparison)
    comparison.show_runs([quick, slow])
    ticks = comparison.runsTimePlot.getAxis("left")._tickLevels[0]
    assert [label for _, label in ticks] == ["head only", "all layers, lr 1e-3"]


def test_the_table_follows_runs_that_start_and_end_elsewhere(qtbot, panel, two_runs, tmp_path):
    """Issue 28: the Runs tab did not refresh by itself (a run started from the CLI, or one that ended)."""
    import json

    root = tmp_path / "runs"
    shutil.copytree(two_runs, root)
    panel._document.edit(lambda recipe: setattr(recipe, "output_dir", str(root)))
    panel.show()
    assert panel.model.rowCount() == 2
    source = next(p for p in root.iterdir() if p.is_dir())
    started = root / "29991231-235959-from-the-cli"
    shutil.copytree(source, started)
    summary = json.loads((started / "summary.json").read_text())
    (started / "summary.json").write_text(json.dumps({**summary, "status": "stopped"}))
    qtbot.waitUntil(lambda: panel.model.rowCount() == 3, timeout=10_000)  # it appeared: listed
    assert panel.model.record(panel.model.row_of(str(started))).status == "stopped"

    (started / "summary.json").write_text(json.dumps({**summary, "status": "finished", "wall_seconds": 1.0}))
    qtbot.waitUntil(lambda: panel.model.record(panel.model.row_of(str(started))).status == "finished",
                    timeout=10_000)  # it ended: its row says so
