"""The Inference tab: checkpoints from runs, real drops, predictions equal to the engine's, heat maps on demand."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine.infer.evaluation import write_run_evaluation
from engine.infer.explain import GRAD_CAM
from engine.infer.inference import Predictor
from engine.train.runs import checkpoint_path
from engine.train.trainer import fit
from gui.document import RecipeDocument
from gui.panels.inference_panel import OPEN_CHECKPOINT, InferencePanel
from gui.panels.predictions_table import UNFAMILIAR_BACKGROUND
from gui.widgets.image_utils import qimage_to_rgb
from gui.workers.inference import InferenceWorker
from tests.evaluation_helpers import noise_image
from tests.gui.drops import drop_urls
from tests.helpers import tiny_recipe

TIMEOUT_MS = 20000


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, image_folder) -> Path:
    """A one-epoch run in its own runs folder, plus a copy of it dated earlier (training twice is slow)."""
    root = tmp_path_factory.mktemp("inference_runs")
    result = fit(tiny_recipe(image_folder, epochs=1, out=root, name="newest", head_fit="converge"))  # a user's head
    assert result.status == "finished", result.error
    shutil.copytree(result.run_dir, root / "20000101-000000-older")
    return root


@pytest.fixture
def runs_root(trained_runs, monkeypatch) -> Path:
    monkeypatch.setenv("THAW_RUNS_DIR", str(trained_runs))
    return trained_runs


def newest_best(runs_root: Path) -> Path:
    return checkpoint_path(sorted(p for p in runs_root.iterdir() if p.is_dir())[-1], "best")


@pytest.fixture
def panel(qtbot, runs_root):
    widget = InferencePanel(RecipeDocument())
    qtbot.addWidget(widget)
    yield widget
    thread = widget.worker_thread.thread  # None when the test never needed the worker
    widget.shutdown()
    assert widget.worker_thread.thread is None
    if thread is not None:
        assert thread.qthread.isFinished()


def pixels(panel: InferencePanel) -> np.ndarray:
    pixmap = panel.heatmapView.pixmap()
    assert not pixmap.isNull()
    return qimage_to_rgb(pixmap.toImage())


def test_checkpoints_of_runs_are_listed_newest_best_first(panel, runs_root):
    combo = panel.checkpointCombo
    paths = [combo.itemData(i) for i in range(combo.count())]
    runs = sorted(p for p in runs_root.iterdir() if p.is_dir())
    assert paths == [str(checkpoint_path(run, kind)) for run in reversed(runs) for kind in ("best", "last")] + [
        OPEN_CHECKPOINT]
    assert combo.current_path() == str(newest_best(runs_root))
    assert "newest — best" in combo.currentText()


def test_dropped_images_are_predicted_as_the_engine_predicts(qtbot, panel, runs_root, image_folder):
    best = newest_best(runs_root)
    with qtbot.waitSignal(panel.checkpoint_loaded, timeout=TIMEOUT_MS) as loaded:
        panel.set_checkpoint(str(best))
    assert "tiny_resnet" in panel.checkpointInfoLabel.text() and "3 classes" in panel.checkpointInfoLabel.text()

    files = [image_folder / "dog" / "dog_000.png", image_folder / "fox" / "fox_003.png",
             image_folder / "cat" / "truncated.jpg"]
    with qtbot.waitSignals([panel.predictions_shown, panel.heatmap_shown], timeout=TIMEOUT_MS):
        assert drop_urls(panel.inferenceDropArea, files).isAccepted()

    # Same device as the panel's worker (a GPU when there is one), so that the numbers can agree closely.
    expected = Predictor.from_checkpoint(best, loaded.args[0]["device"]).predict(files, topk=5)
    table = panel.predictionsTable
    assert table.rowCount() == 3
    for row, (prediction, result) in enumerate(zip(expected, panel.results)):
        assert table.text(row, "File") == Path(prediction.path).name
        if prediction.ok:
            assert table.text(row, "Top-1") == prediction.top[0][0]
            assert table.text(row, "Probability") == f"{result['top'][0][1]:.1%}"
            assert [name for name, _ in result["top"]] == [name for name, _ in prediction.top]
            assert np.allclose([p for _, p in result["top"]], [p for _, p in prediction.top], atol=1e-4)
            assert table.text(row, "Error") == ""
            assert table.text(row, "OOD score") == "n/a"  # this run was never evaluated: no calibration
            assert table.text(row, "True class") == Path(prediction.path).parent.name  # dropped from class folders
            right = prediction.top[0][0] == Path(prediction.path).parent.name
            assert table.text(row, "Correct") == ("✓ correct" if right else "✗ incorrect")
    assert expected[2].error and table.text(2, "Error") == expected[2].error
    assert table.text(2, "Top-1") == "" and table.text(2, "Correct") == ""
    assert table.item(2, table.column("Error")).foreground().color().red() > 150
    assert "no out-of-distribution calibration" in panel.checkpointInfoLabel.text()

    # The first row is selected and explained; switching the overlay off shows the plain crop.
    assert table.currentRow() == 0
    with_overlay = pixels(panel)
    assert "Grad-CAM" in panel.heatmapCaption.text() and "32×32" in panel.heatmapCaption.text()
    with qtbot.waitSignal(panel.heatmap_shown, timeout=TIMEOUT_MS):
        panel.heatmapToggle.setChecked(False)
    plain = pixels(panel)
    assert plain.shape == with_overlay.shape and not np.array_equal(plain, with_overlay)

    # Another row is explained on selection; the unreadable one shows its reason instead.
    with qtbot.waitSignal(panel.heatmap_shown, timeout=TIMEOUT_MS) as shown:
        table.selectRow(1)
    assert shown.args == [str(files[1])]
    with qtbot.waitSignal(panel.heatmap_shown, timeout=TIMEOUT_MS):
        table.selectRow(2)
    assert panel.heatmapView.pixmap().isNull()
    assert expected[2].error in panel.heatmapCaption.text()


def test_topk_change_repredicts_with_fewer_classes(qtbot, panel, image_folder):
    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        panel.predict_files([image_folder / "dog"])  # a folder: the worker expands it; the default checkpoint loads
    assert panel.predictionsTable.rowCount() == 12
    assert all(len(result["top"]) == 3 for result in panel.results)  # top 5 of 3 classes is all 3
    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        panel.topkSpin.setValue(1)
    assert all(len(result["top"]) == 1 for result in panel.results)
    assert panel.predictionsTable.text(0, "Top-k").count(" ") == 1  # "dog 0.912"


def test_a_file_that_is_not_a_checkpoint_is_a_message(qtbot, panel, tmp_path, image_folder):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(panel._worker.inference_failed, timeout=TIMEOUT_MS):
        panel.set_checkpoint(str(bogus))
    # The worker's signal reaches the panel's slot through the GUI thread's queue: wait for the label itself.
    qtbot.waitUntil(lambda: "cannot load" in panel.checkpointInfoLabel.text(), timeout=TIMEOUT_MS)
    assert panel.checkpointCombo.current_path() == str(bogus)

    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        panel.predict_files([image_folder / "dog" / "dog_000.png"])
    assert panel.predictionsTable.text(0, "Error") == "no checkpoint loaded"


@pytest.fixture(scope="module")
def calibrated_best(trained_runs, tmp_path_factory) -> Path:
    """The newest run's best checkpoint, evaluated on its validation split as a finished run is: calibrated."""
    copy = tmp_path_factory.mktemp("calibrated") / "20300101-000000-calibrated"
    shutil.copytree(sorted(p for p in trained_runs.iterdir() if p.is_dir())[-1], copy)
    write_run_evaluation(copy)
    return checkpoint_path(copy, "best")


def test_an_unfamiliar_input_is_flagged_and_class_folders_get_a_verdict(qtbot, panel, calibrated_best,
                                                                         image_folder, tmp_path):
    noise = noise_image(tmp_path / "noise.png")
    misfiled = tmp_path / "cat" / "really_a_fox.png"  # a class folder holding another class's image
    misfiled.parent.mkdir()
    shutil.copyfile(image_folder / "fox" / "fox_001.png", misfiled)
    unsorted = tmp_path / "unsorted" / "dog.png"  # a folder that is no class: no verdict
    unsorted.parent.mkdir()
    shutil.copyfile(image_folder / "dog" / "dog_002.png", unsorted)
    files = [noise, image_folder / "dog" / "dog_000.png", image_folder / "fox" / "fox_003.png", misfiled, unsorted]
    with qtbot.waitSignal(panel.checkpoint_loaded, timeout=TIMEOUT_MS) as loaded:
        panel.set_checkpoint(str(calibrated_best))
    assert "out-of-distribution check calibrated on" in panel.checkpointInfoLabel.text()
    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        assert drop_urls(panel.inferenceDropArea, files).isAccepted()

    expected = Predictor.from_checkpoint(calibrated_best, loaded.args[0]["device"]).predict(files, topk=5)
    table = panel.predictionsTable
    assert all(p.ood_score is not None for p in expected)
    assert expected[0].unfamiliar and not any(p.unfamiliar for p in expected[1:3])
    for row, prediction in enumerate(expected):
        score = f"{prediction.ood_score:.2f}"
        assert table.text(row, "OOD score") == (f"⚠ {score}" if prediction.unfamiliar else score)
    # The foreign input is flagged, not presented as a confident class: the guess is only in the tooltip and top-k.
    top1 = table.item(0, table.column("Top-1"))
    assert top1.text() == "⚠ unlike the training data" and expected[0].top[0][0] not in top1.text()
    assert expected[0].top[0][0] in top1.toolTip() and table.text(0, "Probability").startswith("(")
    assert top1.background().color() == UNFAMILIAR_BACKGROUND
    assert table.item(1, table.column("Top-1")).background().color() != UNFAMILIAR_BACKGROUND
    # Images from class folders get a verdict, the others none.
    verdicts = [(table.text(row, "True class"), table.text(row, "Correct")) for row in range(len(files))]
    right = ["✓ correct" if p.top[0][0] == c else "✗ incorrect"
             for p, c in zip(expected[1:4], ("dog", "fox", "cat"))]
    assert verdicts == [("", ""), ("dog", right[0]), ("fox", right[1]), ("cat", right[2]), ("", "")]
    assert expected[3].top[0][0] == "fox" and right[2] == "✗ incorrect"  # the misfiled fox
    status = panel.inferenceStatusLabel.text()
    assert "1 unlike the training data" in status
    assert f"{right.count('✓ correct')} of 3 from class folders correct" in status


def test_a_calibration_written_after_the_checkpoint_was_loaded_is_used(qtbot, panel, trained_runs, image_folder,
                                                                        tmp_path):
    """A finished run's evaluation calibrates its checkpoint just after the studio hands it to this tab."""
    run = tmp_path / "20300101-000000-late"
    shutil.copytree(sorted(p for p in trained_runs.iterdir() if p.is_dir())[-1], run)
    with qtbot.waitSignal(panel.checkpoint_loaded, timeout=TIMEOUT_MS):
        panel.set_checkpoint(str(checkpoint_path(run, "best")))
    image = image_folder / "dog" / "dog_000.png"
    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        panel.predict_files([image])
    assert panel.predictionsTable.text(0, "OOD score") == "n/a"

    write_run_evaluation(run)  # as RunEvaluator does when the run finishes
    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        panel.predict_files([image])
    assert panel.results[0]["ood_score"] is not None
    assert panel.predictionsTable.text(0, "OOD score").replace("⚠ ", "") == f"{panel.results[0]['ood_score']:.2f}"
    assert "out-of-distribution check calibrated on" in panel.checkpointInfoLabel.text()


def test_worker_predicts_folders_with_heatmaps(qtbot, runs_root, image_folder):
    worker = InferenceWorker(device="cpu")  # no thread: slots called directly, signals emitted synchronously
    with qtbot.waitSignal(worker.checkpoint_loaded) as loaded:
        worker.load_checkpoint(str(newest_best(runs_root)))
    assert loaded.args[0]["class_names"] == ["cat", "dog", "fox"]
    with qtbot.waitSignal(worker.predictions_ready) as ready:
        worker.predict(worker.begin_request(), [str(image_folder / "cat")], 2, True)
    request, results = ready.args
    assert len(results) == 14  # 12 images + the truncated JPEG + the non-image named .jpg
    broken = [r for r in results if r["error"]]
    assert sorted(Path(r["path"]).name for r in broken) == ["notes.jpg", "truncated.jpg"]
    assert all(r["heatmap"] is None for r in broken)
    good = [r for r in results if not r["error"]]
    for result in good:
        assert len(result["top"]) == 2 and result["method"] == GRAD_CAM
        assert result["heatmap"].shape == (32, 32) and result["image"].shape == (32, 32, 3)
        assert 0.0 <= result["heatmap"].min() and result["heatmap"].max() <= 1.0
        assert result["true_class"] == "cat" and result["correct"] == (result["top"][0][0] == "cat")
        assert result["ood_score"] is None and result["unfamiliar"] is None  # not calibrated
    assert all(r["correct"] is None for r in broken)  # no prediction, no verdict

    worker.begin_request()
    with qtbot.assertNotEmitted(worker.predictions_ready):
        worker.predict(request, [str(image_folder / "cat")], 2, False)  # superseded by the newer request


def test_the_heat_map_caption_and_colour_scale_follow_the_toggle(qtbot, panel, image_folder):
    from engine.infer.explain import jet

    panel.show()
    with qtbot.waitSignals([panel.predictions_shown, panel.heatmap_shown], timeout=TIMEOUT_MS):
        panel.predict_files([image_folder / "dog" / "dog_000.png"])
    assert "Grad-CAM for" in panel.heatmapCaption.text() and panel.heatmapScale.isVisible()
    bar = panel.heatmapScale.bar_rect()
    image = panel.heatmapScale.grab().toImage()
    for x, value in ((bar.left() + 1, 0.0), (bar.right() - 1, 1.0)):  # the overlay's own colours at the ends
        colour = image.pixelColor(x, bar.center().y())
        assert np.allclose([colour.redF(), colour.greenF(), colour.blueF()], jet(np.array(value)), atol=0.08)

    with qtbot.waitSignal(panel.heatmap_shown, timeout=TIMEOUT_MS):
        panel.heatmapToggle.setChecked(False)
    caption = panel.heatmapCaption.text()
    assert "Grad-CAM" not in caption and "heat map off" in caption and "32×32" in caption
    assert not panel.heatmapScale.isVisible()

    with qtbot.waitSignal(panel.heatmap_shown, timeout=TIMEOUT_MS):
        panel.heatmapToggle.setChecked(True)
    assert "Grad-CAM for" in panel.heatmapCaption.text() and panel.heatmapScale.isVisible()


def test_open_images_offers_every_file_and_shows_each_chosen_one(qtbot, panel, image_folder, tmp_path, monkeypatch):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    chosen = [str(image_folder / "dog" / "dog_000.png"), str(notes), str(tmp_path / "gone.png")]
    asked = []

    def dialog(parent, caption, folder, filters):
        asked.append(filters)
        return chosen, filters.split(";;")[0]

    monkeypatch.setattr("gui.panels.inference_panel.QFileDialog.getOpenFileNames", dialog)
    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        panel.openImagesButton.click()

    assert asked[0].split(";;")[0] == "All files (*)"  # the default filter hides nothing
    table = panel.predictionsTable
    assert [table.text(row, "File") for row in range(table.rowCount())] == ["dog_000.png", "notes.txt", "gone.png"]
    assert table.text(0, "Error") == "" and table.text(0, "Top-1")
    assert table.text(1, "Error") and table.text(2, "Error")  # each with its reason, none dropped
    assert "could not be read" in panel.inferenceStatusLabel.text()


def test_rows_are_added_sorted_by_value_and_exported_as_csv(qtbot, panel, image_folder, tmp_path, monkeypatch):
    """Issue 28: a new Open dropped the earlier rows, and the table could not be sorted or saved."""
    import csv

    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        panel.predict_files([image_folder / "dog"])
    dogs = [r["path"] for r in panel.results]
    with qtbot.waitSignal(panel.predictions_shown, timeout=TIMEOUT_MS):
        panel.predict_files([image_folder / "cat" / "cat_000.png", image_folder / "dog" / "dog_000.png"])
    table = panel.predictionsTable
    assert table.rowCount() == 13 and [r["path"] for r in panel.results][:12] == dogs  # added, not replaced
    assert panel.results[12]["path"].endswith("cat_000.png")
    assert panel._selected_result()["path"].endswith("cat_000.png")  # the new image is selected

    table.horizontalHeader().setSortIndicator(table.column("Probability"), Qt.SortOrder.AscendingOrder)
    shown = [float(table.text(row, "Probability").rstrip("%")) for row in range(13)]
    assert shown == sorted(shown)  # as numbers: 9.5 % before 85.3 %
    table.setCurrentCell(0, 0)
    lowest = min(panel.results, key=lambda r: r["top"][0][1])
    assert panel._selected_result() is lowest  # a sorted row still finds its own result

    out = tmp_path / "predictions.csv"
    monkeypatch.setattr(panel, "_ask_csv_path", lambda: str(out))
    panel.exportPredictionsButton.click()
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [row["path"] for row in rows] == [r["path"] for r in panel.results]
    assert [float(row["probability"]) for row in rows] == pytest.approx([r["top"][0][1] for r in panel.results],
                                                                      abs=1e-6)  # six decimals
    assert "Wrote 13 row(s)" in panel.inferenceStatusLabel.text()

    panel.clearPredictionsButton.click()
    assert table.rowCount() == 0 and not panel.exportPredictionsButton.isEnabled()


def test_the_heat_maps_opacity_is_adjustable_and_lets_the_image_show_by_default(qtbot, panel, image_folder):
    """Issue 28: the Grad-CAM overlay hid the digit it explained."""
    panel.show()
    with qtbot.waitSignals([panel.predictions_shown, panel.heatmap_shown], timeout=TIMEOUT_MS):
        panel.predict_files([image_folder / "dog" / "dog_000.png"])
    slider = panel.heatmapOpacitySlider
    assert slider.value() == 35 < 45  # lighter than the engine's 0.45 that hid digits
    default = pixels(panel)
    slider.setValue(0)
    plain = pixels(panel)
    slider.setValue(100)
    full = pixels(panel)
    panel.heatmapToggle.setChecked(False)
    assert np.array_equal(plain, pixels(panel)) and not slider.isEnabled()  # no heat at all: the crop itself
    # The default lies between: nearer the image than a full heat map is.
    assert np.abs(default.astype(int) - plain).mean() < np.abs(full.astype(int) - plain).mean()
