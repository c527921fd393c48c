"""Suspect labels fixed in the studio: from the suspect-label list (and, with the same bar, the confusion-matrix
gallery and the Inference table) an image moves to the suggested class, the row follows it, the journal records
it, Undo restores it byte for byte, the Data tab rescans; a read-only class folder is refused in words."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from engine.data import relabel
from engine.infer.label_issues import LabelIssueReport, Suspect
from gui.panels.evaluate_labels import LabelIssuesView
from gui.widgets.relabel_bar import RelabelBar, run_data_root
from tests.helpers import make_image_folder


@pytest.fixture
def data(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data", classes=3, per_class=2, size=16)


@pytest.fixture
def view(qtbot, data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps({"data": {"root": str(data), "dataset": "folder"}}))
    widget = LabelIssuesView()
    qtbot.addWidget(widget)
    widget.run_dir = str(run)  # as set_run does, without reading a report from the run
    widget.suspectRelabelBar.set_data_roots(run_data_root(run))
    suspects = [Suspect(str(data / "cat" / "cat_001.png"), "train", "cat", "dog", 0.05, 0.9),
                Suspect(str(data / "fox" / "fox_000.png"), "val", "fox", "cat", 0.1, 0.8)]
    widget._show_report(LabelIssueReport("best.pt", "start", 5, ["cat", "dog", "fox"], 6, suspects))
    yield widget
    widget.shutdown()


def test_a_suspect_moves_to_the_suggested_class_and_undo_restores_it(qtbot, view, data):
    original = (data / "cat" / "cat_001.png").read_bytes()
    bar = view.suspectRelabelBar
    view.suspectsTable.selectRow(0)
    assert bar.moveToSuggestedButton.text() == "Move to dog" and bar.moveToSuggestedButton.isEnabled()
    with qtbot.waitSignal(bar.image_relabelled) as moved:
        bar.moveToSuggestedButton.click()
    assert moved.args[0] == str(data)
    assert not (data / "cat" / "cat_001.png").exists()
    assert (data / "dog" / "cat_001.png").read_bytes() == original
    assert view.suspectsTable.item(0, 2).text() == "dog"  # the row follows its image
    assert [c.action for c in relabel.read_journal(data)] == ["move"]
    assert "dog" in bar.statusLabel.text() and bar.undoButton.isEnabled()

    with qtbot.waitSignal(bar.image_relabelled):
        bar.undoButton.click()
    assert (data / "cat" / "cat_001.png").read_bytes() == original
    assert not (data / "dog" / "cat_001.png").exists()
    assert view.suspectsTable.item(0, 2).text() == "cat"
    assert not bar.undoButton.isEnabled()


def test_trash_from_the_list_then_undo(qtbot, view, data):
    original = (data / "fox" / "fox_000.png").read_bytes()
    view.suspectsTable.selectRow(1)
    view.suspectRelabelBar.trashButton.click()
    assert not (data / "fox" / "fox_000.png").exists()
    assert view.suspectsTable.item(1, 2).text() == "(in the trash)"
    assert view.suspectRelabelBar.undoButton.isEnabled()  # the image is gone, its undo is not
    view.suspectRelabelBar.undoButton.click()
    assert (data / "fox" / "fox_000.png").read_bytes() == original


def test_a_read_only_class_folder_is_refused_in_words(qtbot, view, data):
    view.suspectsTable.selectRow(0)
    (data / "dog").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with qtbot.assertNotEmitted(view.suspectRelabelBar.image_relabelled):
            assert not view.suspectRelabelBar.move_to("dog")
    finally:
        (data / "dog").chmod(0o755)
    text = view.suspectRelabelBar.statusLabel.text()
    assert "read-only" in text and "'dog'" in text
    assert (data / "cat" / "cat_001.png").exists() and relabel.read_journal(data) == []


def test_an_image_outside_class_folders_offers_nothing(qtbot, data):
    loose = data / "loose.png"
    loose.write_bytes((data / "cat" / "cat_000.png").read_bytes())
    bar = RelabelBar("loose")
    qtbot.addWidget(bar)
    bar.set_data_roots(str(data))
    bar.set_image(str(loose), suggested="cat")
    assert not bar.trashButton.isEnabled() and not bar.moveToClassButton.isEnabled()
    assert "no label to change" in bar.statusLabel.text()


def test_the_class_menu_lists_the_other_classes(qtbot, data):
    bar = RelabelBar("menu")
    qtbot.addWidget(bar)
    bar.set_image(str(data / "cat" / "cat_000.png"))  # no hint: the folder above the class folder
    assert [a.data() for a in bar.classMenu.actions()] == ["dog", "fox"]
    bar.classMenu.actions()[1].trigger()
    assert (data / "fox" / "cat_000.png").is_file()
    assert bar.path == str(data / "fox" / "cat_000.png")  # the bar follows the image


@pytest.fixture
def inference_panel(qtbot, runs_dir, monkeypatch):
    from gui.document import RecipeDocument
    from gui.panels.inference_panel import InferencePanel

    monkeypatch.setenv("THAW_RUNS_DIR", str(runs_dir))
    panel = InferencePanel(RecipeDocument())
    qtbot.addWidget(panel)
    yield panel
    panel.shutdown()


def test_an_image_of_the_inference_table_moves_and_its_row_follows(qtbot, trained_runs, data, inference_panel):
    from engine.train.runs import checkpoint_path

    panel = inference_panel
    best = str(checkpoint_path(trained_runs.get("feature_extraction", epochs=1), "best"))
    with qtbot.waitSignal(panel.checkpoint_loaded, timeout=20_000):
        panel.set_checkpoint(best)
    image = data / "cat" / "cat_000.png"
    with qtbot.waitSignal(panel.predictions_shown, timeout=20_000):
        panel.predict_files([str(image)])
    panel.predictionsTable.selectRow(0)
    bar = panel.inferenceRelabelBar
    assert bar.root == data and bar.suggested == panel.results[0]["top"][0][0]
    dog = next(a for a in bar.classMenu.actions() if a.data() == "dog")
    dog.trigger()
    assert (data / "dog" / "cat_000.png").is_file() and not image.exists()
    result = panel.results[0]
    assert result["path"] == str(data / "dog" / "cat_000.png") and result["true_class"] == "dog"
    assert panel.predictionsTable.text(0, "True class") == "dog"
    bar.undo()
    assert image.is_file() and panel.results[0]["true_class"] == "cat"


def test_a_gallery_image_moves_to_its_predicted_class(qtbot, data):
    from engine.infer.evaluation import ImageResult
    from gui.panels.evaluate_errors import ErrorsView

    view = ErrorsView()
    qtbot.addWidget(view)
    try:
        view.galleryRelabelBar.set_data_roots(str(data))
        image = str(data / "fox" / "fox_001.png")
        view.gallery.show_results([ImageResult(image, "fox", "dog", 0.8, 1.6, [("dog", 0.8), ("fox", 0.2)])])
        view.gallery.setCurrentRow(0)
        bar = view.galleryRelabelBar
        assert bar.moveToSuggestedButton.text() == "Move to dog"
        bar.moveToSuggestedButton.click()
        assert (data / "dog" / "fox_001.png").is_file()
        assert view.gallery.item(0).text().endswith("⇒ dog")
    finally:
        view.shutdown()
