"""Nothing is lost silently: New, Open, a run's recipe and Quit ask Save / Discard / Cancel over unsaved edits
(through the real dialog), and the recipe file open last comes back at the next start, saying so."""

from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QMessageBox

from engine.recipe import Recipe
from gui.app import open_at_start
from gui.document import RecipeDocument, fresh_recipe
from gui.main_window import MainWindow
from tests.gui.dialogs import DialogAnswers
from tests.helpers import tiny_recipe

SAVE, DISCARD, CANCEL = (QMessageBox.StandardButton.Save, QMessageBox.StandardButton.Discard,
                         QMessageBox.StandardButton.Cancel)


@pytest.fixture
def window(qtbot, image_folder, tmp_path):
    window = MainWindow(RecipeDocument(tiny_recipe(image_folder, out=tmp_path / "runs", name="mine")))
    window.training_panel.show_error_dialogs = False
    window.show()
    yield window
    # Closed here, not by qtbot (which closes its widgets while the real question is still installed).
    window.document.set_modified(False)
    window.close()
    window.deleteLater()


def rename(window: MainWindow, name: str) -> None:
    window.document.edit(lambda recipe: setattr(recipe, "name", name))


def test_new_recipe_asks_over_unsaved_edits_and_cancel_keeps_them(window, real_unsaved_question):
    rename(window, "edited")
    assert window.isWindowModified() and window.document.is_modified

    answers = DialogAnswers(CANCEL)
    window.newRecipeAction.trigger()

    assert answers.pending == [] and len(answers.asked) == 1
    assert "edited" in answers.asked[0] and "starting a new recipe" in answers.asked[0]
    assert window.document.recipe.name == "edited" and window.isWindowModified()  # cancelled: nothing changed

    answers = DialogAnswers(DISCARD)
    window.newRecipeAction.trigger()

    assert answers.pending == []
    assert window.document.recipe.name == fresh_recipe().name and not window.isWindowModified()


def test_new_recipe_does_not_ask_when_nothing_is_unsaved(window, monkeypatch):
    asked = []
    monkeypatch.setattr(window, "_ask_unsaved_changes", lambda doing: asked.append(doing) or CANCEL)
    window.newRecipeAction.trigger()
    assert asked == [] and window.document.recipe.name == fresh_recipe().name


def test_save_in_the_question_writes_the_file_then_goes_on(window, real_unsaved_question, tmp_path):
    path = tmp_path / "mine.json"
    assert window.save_recipe(str(path))
    rename(window, "renamed after saving")

    answers = DialogAnswers(SAVE)
    window.newRecipeAction.trigger()

    assert answers.pending == []
    assert json.loads(path.read_text())["name"] == "renamed after saving"  # saved where it was saved before
    assert window.document.recipe.name == fresh_recipe().name and window.document.path == ""


def test_save_of_an_untitled_recipe_cancelled_in_the_file_dialog_cancels_the_new_recipe(window, monkeypatch,
                                                                                         real_unsaved_question):
    rename(window, "never saved")
    monkeypatch.setattr(window, "_ask_save_path", lambda: "")  # the Save As dialog is cancelled

    answers = DialogAnswers(SAVE)
    window.newRecipeAction.trigger()

    assert answers.pending == []
    assert window.document.recipe.name == "never saved" and window.isWindowModified()


def test_open_asks_first_and_cancel_never_shows_the_file_dialog(window, real_unsaved_question, monkeypatch, tmp_path):
    rename(window, "edited")
    opened = []
    monkeypatch.setattr(window, "_ask_open_path", lambda: opened.append(True) or "")

    answers = DialogAnswers(CANCEL)
    window.openRecipeAction.trigger()
    assert answers.pending == [] and "opening another recipe" in answers.asked[0] and opened == []

    other = tmp_path / "other.json"
    tiny_recipe("somewhere", name="other").save(other)
    monkeypatch.setattr(window, "_ask_open_path", lambda: str(other))
    answers = DialogAnswers(DISCARD)
    window.openRecipeAction.trigger()
    assert answers.pending == []
    assert window.document.recipe.name == "other" and not window.isWindowModified()


def test_quit_asks_cancel_keeps_the_window_discard_closes(window, real_unsaved_question, tmp_path):
    path = tmp_path / "kept.json"
    assert window.save_recipe(str(path))
    rename(window, "unsaved")

    answers = DialogAnswers(CANCEL)
    assert not window.close()
    assert answers.pending == [] and "quitting" in answers.asked[0]
    assert window.isVisible()

    answers = DialogAnswers(DISCARD)
    assert window.close()
    assert answers.pending == [] and not window.isVisible()
    assert json.loads(path.read_text())["name"] == "mine"  # discarded: the file keeps what was saved


def test_quit_with_save_writes_the_edits(window, real_unsaved_question, tmp_path):
    path = tmp_path / "saved-on-quit.json"
    assert window.save_recipe(str(path))
    rename(window, "saved on quit")

    answers = DialogAnswers(SAVE)
    assert window.close()

    assert answers.pending == []
    assert Recipe.load(path).name == "saved on quit"


def test_opening_a_runs_recipe_asks_too(window, real_unsaved_question, tmp_path, image_folder):
    run = tmp_path / "runs" / "20240101-000000-earlier"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.json").write_text(tiny_recipe(image_folder, name="from the run").to_json())
    panel = window.runs_panel
    panel.refresh()
    panel.runsTable.selectRow(0)
    rename(window, "edited")

    answers = DialogAnswers(CANCEL)
    panel.openRecipeButton.click()
    assert answers.pending == [] and "opening the run's recipe" in answers.asked[0]
    assert window.document.recipe.name == "edited"

    answers = DialogAnswers(DISCARD)
    panel.openRecipeButton.click()
    assert answers.pending == [] and window.document.recipe.name == "from the run"


def test_the_last_recipe_is_reopened_at_the_next_start_and_the_status_bar_says_so(qtbot, window, tmp_path):
    path = tmp_path / "last.json"
    rename(window, "the last one")
    assert window.save_recipe(str(path))
    assert window.close()

    again = MainWindow()  # as `python main.py` starts: no document of its own
    qtbot.addWidget(again)
    open_at_start(again, [])

    assert again.document.path == str(path.resolve()) and again.document.recipe.name == "the last one"
    assert not again.isWindowModified()
    assert again.statusBar().currentMessage() == f"Reopened the last recipe: {path.resolve()}"


def test_arguments_win_over_the_last_recipe_and_a_vanished_one_is_said(qtbot, window, tmp_path, image_folder):
    path = tmp_path / "last.json"
    assert window.save_recipe(str(path))
    assert window.close()

    with_folder = MainWindow()
    qtbot.addWidget(with_folder)
    open_at_start(with_folder, [str(image_folder)])
    assert with_folder.document.path == "" and with_folder.document.recipe.data.root == str(image_folder)
    assert "Reopened" not in with_folder.statusBar().currentMessage()

    path.unlink()
    gone = MainWindow()
    qtbot.addWidget(gone)
    open_at_start(gone, [])
    assert gone.document.path == "" and gone.document.recipe.name == fresh_recipe().name
    assert "is gone" in gone.statusBar().currentMessage() and str(path.resolve()) in gone.statusBar().currentMessage()
