"""The Evaluate tab on real runs: the newest finished run's evaluation is shown (and a new one when the
EvaluationWritten event arrives), clicking a confusion-matrix cell fills the gallery with exactly that cell's images,
the normalised rows sum to 1, the per-class table is the engine's, the CSV export holds exactly the misclassified
images, a run or a folder is evaluated off the GUI thread, suspect labels and leaks are found and shown side by side,
and the pretrained and fine-tuned networks are shown side by side with their weight drift."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from engine.infer.evaluation import EVALUATION_FILE, VALIDATION_SPLIT, Evaluation, write_run_evaluation
from engine.infer.explain import overlay
from engine.infer.inference import Predictor
from engine.infer.label_issues import LABEL_ISSUES_FILE
from engine.train import events as ev
from gui.document import RecipeDocument
from gui.models.class_metrics_model import COLUMN_TITLES, ValueRole
from gui.models.confusion_model import CountRole, FractionRole
from gui.panels.evaluate_panel import EvaluatePanel
from gui.widgets.gallery import PathRole
from gui.widgets.image_utils import qimage_to_rgb, rgb_to_qimage
from gui.workers.inference import explain_file
from gui.workers.training import TrainingController
from tests.evaluation_helpers import make_styled_folder, train_run

TIMEOUT_MS = 60_000
ALIKE = {"cat": "cat", "dog": "cat", "fox": "fox"}  # dog images are drawn exactly like cat images


@pytest.fixture(scope="module")
def alike_runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(runs root, newest run, an older copy of it): a finished run whose validation split confuses cat and dog,
    evaluated as a finished run in the studio is (evaluation.json, OOD calibration, drift)."""
    root = tmp_path_factory.mktemp("evaluate")
    data = make_styled_folder(root / "data", ALIKE, per_class=30)
    run = train_run(data, root / "runs", "feature_extraction", epochs=3)
    write_run_evaluation(run)
    older = root / "runs" / "20000101-000000-older"
    shutil.copytree(run, older)
    return root / "runs", run, older


@pytest.fixture
def runs_root(alike_runs, monkeypatch) -> Path:
    monkeypatch.setenv("THAW_RUNS_DIR", str(alike_runs[0]))
    return alike_runs[0]


@pytest.fixture
def panel(qtbot, runs_root):
    widget = EvaluatePanel(RecipeDocument())
    widget.resize(1300, 850)
    qtbot.addWidget(widget)
    yield widget
    threads = [view.worker_thread.thread for view in (widget, widget.errors_view, widget.labels_view,
                                                      widget.network_view) if view.worker_thread.thread is not None]
    widget.shutdown()
    assert all(t.qthread.isFinished() for t in threads)


def shown_panel(qtbot, panel: EvaluatePanel) -> Evaluation:
    """Show the panel; it reads the default run's evaluation off the GUI thread. The evaluation shown."""
    with qtbot.waitSignal(panel.evaluation_shown, timeout=TIMEOUT_MS) as shown:
        with qtbot.waitSignal(panel.errors_view.thumbnails_finished, timeout=TIMEOUT_MS):
            panel.show()
    qtbot.waitExposed(panel)
    return shown.args[0]


def click_cell(qtbot, panel: EvaluatePanel, row: int, column: int) -> None:
    table = panel.errors_view.confusionTable
    index = panel.errors_view.confusion_model.index(row, column)
    table.scrollTo(index)
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=table.visualRect(index).center())


# --- the run and its numbers ---------------------------------------------------------------------------------------


def test_the_newest_finished_run_is_shown_with_the_engines_numbers(qtbot, panel, alike_runs):
    _, run, older = alike_runs
    evaluation = shown_panel(qtbot, panel)
    saved = Evaluation.load(run / EVALUATION_FILE)
    assert panel.evaluationRunCombo.current_run() == str(run)  # the newest, not the older copy
    assert panel.evaluationRunCombo.count() == 2
    assert evaluation.to_dict() == saved.to_dict() and evaluation.source == VALIDATION_SPLIT
    summary = panel.evaluationSummaryLabel.text()
    assert f"{saved.metrics.count} images" in summary and f"accuracy {saved.metrics.accuracy:.1%}" in summary

    # The confusion matrix is the engine's, cell by cell.
    model = panel.errors_view.confusion_model
    classes = saved.classes
    assert [model.headerData(i, Qt.Orientation.Horizontal) for i in range(3)] == classes
    assert [[model.index(r, c).data(CountRole) for c in range(3)] for r in range(3)] == saved.metrics.confusion
    assert [[model.index(r, c).data() for c in range(3)] for r in range(3)] == [
        [str(n) for n in row] for row in saved.metrics.confusion]
    cat, dog = classes.index("cat"), classes.index("dog")
    assert saved.metrics.confusion[cat][dog] + saved.metrics.confusion[dog][cat] > 0, "the task must confuse"

    # The per-class table equals the engine's metrics (numbers in ValueRole, three decimals in the text).
    table = panel.errors_view.perClassTable.model()
    assert [table.headerData(i, Qt.Orientation.Horizontal) for i in range(table.columnCount())] == list(COLUMN_TITLES)
    assert table.rowCount() == len(saved.metrics.per_class)
    for row, metrics in enumerate(saved.metrics.per_class):
        values = [table.index(row, column).data(ValueRole) for column in range(table.columnCount())]
        assert values == [metrics.name, metrics.precision, metrics.recall, metrics.f1, metrics.support,
                          metrics.predicted]
        assert table.index(row, 3).data() == f"{metrics.f1:.3f}"


def test_clicking_a_cell_fills_the_gallery_with_exactly_its_images(qtbot, panel):
    evaluation = shown_panel(qtbot, panel)
    view = panel.errors_view
    # At first: every error, highest loss first (top losses).
    assert view.gallery.paths() == [r.path for r in sorted(evaluation.misclassified(), key=lambda r: -r.loss)]
    classes = evaluation.classes
    for row, true_class in enumerate(classes):
        for column, predicted in enumerate(classes):
            expected = evaluation.cell(true_class, predicted)
            with qtbot.waitSignal(view.thumbnails_finished, timeout=TIMEOUT_MS):
                click_cell(qtbot, panel, row, column)
            assert view.gallery.paths() == [r.path for r in sorted(expected, key=lambda r: -r.loss)], (
                f"cell {true_class} → {predicted}")
            assert view.gallery.count() == evaluation.metrics.confusion[row][column]
            assert f": {len(expected)} image" in view.galleryLabel.text()
    # Sorted by confidence instead: the same images, in that order.
    cat, dog = classes.index("cat"), classes.index("dog")
    busiest = max(((cat, dog), (dog, dog), (cat, cat)), key=lambda rc: evaluation.metrics.confusion[rc[0]][rc[1]])
    with qtbot.waitSignal(view.thumbnails_finished, timeout=TIMEOUT_MS):
        click_cell(qtbot, panel, *busiest)
    # The chosen cell keeps its heat colour (blue right, red wrong) inside a frame, not the selection's fill.
    index = view.confusion_model.index(*busiest)
    rect = view.confusionTable.visualRect(index)
    pixels = view.confusionTable.viewport().grab().toImage()
    assert pixels.pixelColor(rect.left() + 8, rect.top() + 8) == index.data(Qt.ItemDataRole.BackgroundRole)
    assert pixels.pixelColor(rect.left() + 2, rect.top() + 2).lightness() < 60  # the frame
    with qtbot.waitSignal(view.thumbnails_finished, timeout=TIMEOUT_MS):
        view.set_sort_order("confidence_ascending")
    cell = evaluation.cell(classes[busiest[0]], classes[busiest[1]])
    assert len(cell) >= 2
    assert view.gallery.paths() == [r.path for r in sorted(cell, key=lambda r: r.confidence)]


def test_each_gallery_image_has_its_top_k_and_its_grad_cam(qtbot, panel):
    evaluation = shown_panel(qtbot, panel)
    gallery = panel.errors_view.gallery
    first = gallery.results()[0]
    item = gallery.item(0)
    assert item.data(PathRole) == first.path
    assert "top-k: " + ", ".join(f"{c} {p:.3f}" for c, p in first.top) in item.toolTip()
    assert f"{first.true_class} → {first.predicted}" in item.text()
    # The thumbnail is the crop with Grad-CAM for the predicted class, as the engine computes it.
    explained = explain_file(Predictor.from_checkpoint(evaluation.checkpoint), first.path)
    assert explained["class_name"] == first.predicted
    expected = qimage_to_rgb(rgb_to_qimage(overlay(explained["image"], explained["heatmap"])))
    assert np.abs(qimage_to_rgb(gallery.thumbnail(first.path)).astype(int) - expected).max() <= 2
    panel.errors_view.galleryHeatmapToggle.setChecked(False)  # the plain crop
    assert np.array_equal(qimage_to_rgb(gallery.thumbnail(first.path)), explained["image"])
    assert all(gallery.has_thumbnail(path) for path in gallery.paths())


def test_the_normalised_view_shows_row_shares_that_sum_to_one(qtbot, panel):
    evaluation = shown_panel(qtbot, panel)
    view = panel.errors_view
    model = view.confusion_model
    view.normalizeConfusionCheck.setChecked(True)
    for row, counts in enumerate(evaluation.metrics.confusion):
        fractions = [model.index(row, column).data(FractionRole) for column in range(len(counts))]
        assert sum(fractions) == pytest.approx(1.0)
        assert fractions == pytest.approx([n / sum(counts) for n in counts])
        assert [model.index(row, c).data() for c in range(len(counts))] == [f"{f:.2f}" for f in fractions]
    view.normalizeConfusionCheck.setChecked(False)
    assert model.index(0, 0).data() == str(evaluation.metrics.confusion[0][0])
    # A class without images has no shares: its row reads "–" and sums to 0, never a division by zero.
    model.set_matrix(["a", "b"], [[2, 1], [0, 0]])
    model.set_normalized(True)
    assert [model.index(0, c).data(FractionRole) for c in (0, 1)] == pytest.approx([2 / 3, 1 / 3])
    assert [model.index(1, c).data() for c in (0, 1)] == ["–", "–"]


def test_the_csv_export_holds_exactly_the_misclassified_images(qtbot, panel, tmp_path):
    evaluation = shown_panel(qtbot, panel)
    wrong = evaluation.misclassified()
    assert wrong and len(wrong) < len(evaluation.images)
    target = tmp_path / "relabel.csv"
    with qtbot.waitSignal(panel.errors_view.exported):
        assert panel.errors_view.export_misclassified(str(target))
    with target.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(r.path for r in wrong)
    assert all(r["true_class"] != r["predicted"] and r["correct"] == "False" for r in rows)
    assert "Wrote" in panel.errors_view.galleryStatusLabel.text()
    # A file that cannot be written is said in place, with the path.
    assert not panel.errors_view.export_misclassified(str(tmp_path))  # a folder
    assert str(tmp_path) in panel.errors_view.galleryStatusLabel.text()


# --- choosing and evaluating runs ---------------------------------------------------------------------------------


def test_an_evaluation_written_event_shows_that_run_unless_one_was_chosen_by_hand(qtbot, panel, alike_runs):
    _, run, older = alike_runs
    shown_panel(qtbot, panel)
    controller = TrainingController()
    controller.event_emitted.connect(panel.handle_event)
    written = ev.EvaluationWritten(run_dir=str(older), path=str(older / EVALUATION_FILE), count=18, accuracy=0.5,
                                   top_k=3, top_k_accuracy=1.0, flagged=0, seconds=1.0)
    with qtbot.waitSignal(panel.evaluation_shown, timeout=TIMEOUT_MS):
        controller.event_emitted.emit(written)  # as the training worker forwards it
    assert panel.run_dir == str(older) and panel.evaluationRunCombo.current_run() == str(older)

    # Chosen by hand: a later run's evaluation is listed, not shown in its place.
    index = panel.evaluationRunCombo.findData(str(run))
    with qtbot.waitSignal(panel.evaluation_shown, timeout=TIMEOUT_MS):
        panel.evaluationRunCombo.setCurrentIndex(index)
        panel.evaluationRunCombo.activated.emit(index)
    with qtbot.assertNotEmitted(panel.evaluation_shown):
        controller.event_emitted.emit(written)
    assert panel.run_dir == str(run)


def test_a_run_without_an_evaluation_is_evaluated_on_its_validation_split(qtbot, panel, alike_runs, tmp_path):
    _, run, _ = alike_runs
    copy = tmp_path / "runs" / "29991231-235959-unevaluated"
    shutil.copytree(run, copy)
    (copy / EVALUATION_FILE).unlink()
    with qtbot.waitSignal(panel.evaluation_shown, timeout=TIMEOUT_MS) as shown:
        panel.select_run(str(copy))
    assert shown.args == [None]
    assert "no evaluation yet" in panel.evaluationSummaryLabel.text()
    assert panel.errors_view.gallery.count() == 0 and not panel.errors_view.exportMisclassifiedButton.isEnabled()

    with qtbot.waitSignal(panel.evaluation_shown, timeout=TIMEOUT_MS) as shown:
        qtbot.mouseClick(panel.evaluateRunButton, Qt.MouseButton.LeftButton)
    evaluation = shown.args[0]
    assert (copy / EVALUATION_FILE).is_file()  # written, as a finished run writes it
    assert evaluation.source == VALIDATION_SPLIT and evaluation.drift is not None
    assert evaluation.metrics.confusion == Evaluation.load(run / EVALUATION_FILE).metrics.confusion


def test_an_evaluation_shows_its_progress_and_cancel_writes_nothing(qtbot, panel, alike_runs, tmp_path):
    _, run, _ = alike_runs
    copy = tmp_path / "runs" / "29991231-235959-unevaluated"
    shutil.copytree(run, copy)
    (copy / EVALUATION_FILE).unlink()
    with qtbot.waitSignal(panel.evaluation_shown, timeout=TIMEOUT_MS):
        panel.select_run(str(copy))
    runner = panel.evaluationRunner
    cancel = panel.findChild(QPushButton, "evaluationCancelButton")
    with qtbot.waitSignal(runner.job_cancelled, timeout=TIMEOUT_MS):
        qtbot.mouseClick(panel.evaluateRunButton, Qt.MouseButton.LeftButton)
        assert cancel.isVisibleTo(panel) and not panel.evaluateRunButton.isEnabled()
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)  # stops at the first batch's progress
    assert not (copy / EVALUATION_FILE).exists()
    assert panel.evaluationSummaryLabel.text() == "Evaluation cancelled: nothing was written."
    assert panel.evaluateRunButton.isEnabled() and not cancel.isVisibleTo(panel)


def test_a_folder_is_evaluated_and_a_folder_of_unknown_classes_is_refused(qtbot, panel, alike_runs, tmp_path):
    _, run, _ = alike_runs
    shown_panel(qtbot, panel)
    folder = make_styled_folder(tmp_path / "more", {"fox": "fox", "cat": "cat"}, per_class=3, seed=9)
    with qtbot.waitSignal(panel.evaluation_shown, timeout=TIMEOUT_MS) as shown:
        panel.evaluate_folder(str(folder))
    evaluation = shown.args[0]
    assert evaluation.source == str(folder.resolve()) and evaluation.metrics.count == 6
    assert str(folder.resolve()) in panel.evaluationSummaryLabel.text()
    assert not (folder / EVALUATION_FILE).exists()

    strange = make_styled_folder(tmp_path / "strange", {"zebra": "owl"}, per_class=2)
    with qtbot.assertNotEmitted(panel.evaluation_shown):
        with qtbot.waitSignal(panel.evaluationRunner.job_failed, timeout=TIMEOUT_MS):
            panel.evaluate_folder(str(strange))
    qtbot.waitUntil(lambda: "zebra" in panel.evaluationSummaryLabel.text(), timeout=TIMEOUT_MS)
    assert "not among the checkpoint's classes" in panel.evaluationSummaryLabel.text()
    assert panel.evaluateFolderButton.isEnabled()  # ready for another try


# --- suspect labels ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run, a flipped file, a leak): train/ and val/ folders; one cat image filed as dog, one training image
    copied into validation."""
    root = tmp_path_factory.mktemp("noisy")
    data = root / "data"
    styles = {"cat": "cat", "dog": "dog", "fox": "fox"}
    make_styled_folder(data, styles, per_class=10, seed=3, split="train")
    make_styled_folder(data, styles, per_class=4, seed=4, split="val")
    flipped = data / "train" / "dog" / "was_cat_000.png"
    shutil.move(data / "train" / "cat" / "cat_000.png", flipped)
    leak = data / "val" / "fox" / "fox_copy.png"
    shutil.copyfile(data / "train" / "fox" / "fox_005.png", leak)
    run = train_run(data, root / "runs", "feature_extraction", epochs=2)
    return run, flipped, leak


def test_suspect_labels_are_found_and_shown_beside_examples_of_both_classes(qtbot, noisy_run):
    from gui.panels.evaluate_labels import LabelIssuesView

    run, flipped, leak = noisy_run
    view = LabelIssuesView()
    qtbot.addWidget(view)
    try:
        view.set_run(str(run))
        with qtbot.waitSignal(view.report_shown, timeout=TIMEOUT_MS,
                              check_params_cb=lambda report: report is not None) as shown:
            qtbot.mouseClick(view.findLabelIssuesButton, Qt.MouseButton.LeftButton)
        report = shown.args[0]
        assert (run / LABEL_ISSUES_FILE).is_file()
        listed = [view.suspectsTable.item(row, 0).data(Qt.ItemDataRole.UserRole)
                  for row in range(view.suspectsTable.rowCount())]
        assert listed == [s.path for s in report.suspects] and str(flipped) in listed[:2]
        suspect = next(s for s in report.suspects if s.path == str(flipped))
        assert (suspect.given, suspect.suggested) == ("dog", "cat")

        # The flipped image beside a typical dog (its given label) and a typical cat (the suggestion).
        with qtbot.waitSignal(view.previews_shown, timeout=TIMEOUT_MS) as previews:
            view.suspectsTable.selectRow(listed.index(str(flipped)))
        assert previews.args[0] == [str(flipped), report.examples["dog"], report.examples["cat"]]
        assert Path(report.examples["cat"]).parent.name == "cat"
        for image in (view.suspectImage, view.givenExampleImage, view.suggestedExampleImage):
            assert not image.image().isNull() and image.image().width() > 0
        assert "labelled dog" in view.suspectImage.caption.text()
        assert "an example of cat, the suggested label" in view.suggestedExampleImage.caption.text()

        # The leak: the copied training image is listed among the train/validation pairs, both shown.
        assert view.duplicatesFilterCombo.currentData() == "leaks"
        pairs = view.pairs()
        row = next(i for i, p in enumerate(pairs) if {p.a, p.b} == {str(leak), str(leak).replace(
            "val/fox/fox_copy.png", "train/fox/fox_005.png")})
        assert pairs[row].exact and pairs[row].crosses_split
        with qtbot.waitSignal(view.previews_shown, timeout=TIMEOUT_MS) as previews:
            view.duplicatesTable.selectRow(row)
        assert sorted(previews.args[0]) == sorted([pairs[row].a, pairs[row].b])
        assert qimage_to_rgb(view.duplicateImageA.image()).shape == qimage_to_rgb(view.duplicateImageB.image()).shape
    finally:
        view.shutdown()

    # Another view of the same run reads the report back from label_issues.json.
    again = LabelIssuesView()
    qtbot.addWidget(again)
    try:
        with qtbot.waitSignal(again.report_shown, timeout=TIMEOUT_MS,
                              check_params_cb=lambda r: r is not None) as shown:
            again.set_run(str(run))
        assert shown.args[0].to_dict() == report.to_dict()
        assert str(run / LABEL_ISSUES_FILE) in again.labelIssuesStatusLabel.text()
    finally:
        again.shutdown()


def test_showing_the_same_run_again_does_not_abandon_a_search(qtbot, noisy_run, tmp_path):
    from gui.panels.evaluate_labels import LabelIssuesView

    run = tmp_path / "run"
    shutil.copytree(noisy_run[0], run)
    (run / LABEL_ISSUES_FILE).unlink(missing_ok=True)
    view = LabelIssuesView()
    qtbot.addWidget(view)
    try:
        view.set_run(str(run))
        with qtbot.waitSignal(view.report_shown, timeout=TIMEOUT_MS, check_params_cb=lambda r: r is not None):
            view.find_label_issues()
            view.set_run(str(run))  # the Evaluate tab re-shows the run (a refresh, a re-evaluation)
        assert (run / LABEL_ISSUES_FILE).is_file()
    finally:
        view.shutdown()


def test_label_issues_that_cannot_be_found_say_why(qtbot, tmp_path):
    from gui.panels.evaluate_labels import LabelIssuesView

    view = LabelIssuesView()
    qtbot.addWidget(view)
    try:
        view.set_run(str(tmp_path))  # not a run folder
        with qtbot.waitSignal(view.labelIssuesRunner.job_failed, timeout=TIMEOUT_MS):
            view.find_label_issues()
        qtbot.waitUntil(lambda: "not a run folder" in view.labelIssuesStatusLabel.text(), timeout=TIMEOUT_MS)
        assert view.findLabelIssuesButton.isEnabled() and view.report is None
    finally:
        view.shutdown()


# --- what the network sees ---------------------------------------------------------------------------------------


def test_filters_feature_maps_and_drift_side_by_side(qtbot, panel):
    evaluation = shown_panel(qtbot, panel)
    network = panel.network_view
    with qtbot.waitSignal(network.feature_maps_shown, timeout=TIMEOUT_MS) as maps:
        with qtbot.waitSignal(network.filters_shown, timeout=TIMEOUT_MS) as filters:
            panel.evaluateTabs.setCurrentWidget(network)  # the models are built when the page is first seen
    assert filters.args[0]["error"] == "" and filters.args[0]["layer"] == "conv1"
    start, tuned = network.pretrainedFiltersView.image(), network.finetunedFiltersView.image()
    assert not start.isNull() and start == tuned  # feature extraction: conv1 never moved
    assert maps.args[0]["error"] == "" and maps.args[0]["image"] == evaluation.images[0].path
    assert network.stage() == maps.args[0]["stage"] and network.featureStageCombo.count() == 5
    assert network.pretrainedFeatureMapsView.image() == network.finetunedFeatureMapsView.image()  # frozen body
    assert not network.featureInputView.image().isNull()

    # The drift bars are the evaluation's: exactly 0 for the frozen stages, > 0 for the head.
    plot = network.drift_plot
    assert plot.names == [s.name for s in evaluation.drift.stages]
    assert plot.bar_lengths() == [s.relative for s in evaluation.drift.stages]
    assert [length == 0.0 for length in plot.bar_lengths()] == [True] * 5 + [False]
    network.driftByLayerCheck.setChecked(True)
    assert plot.names == [layer.path for layer in evaluation.drift.layers]
    assert plot.bar_lengths() == [layer.relative for layer in evaluation.drift.layers]

    # Another image (as selecting it in the gallery chooses it) and another stage.
    other = evaluation.images[-1].path
    with qtbot.waitSignal(network.feature_maps_shown, timeout=TIMEOUT_MS,
                          check_params_cb=lambda answer: answer["image"] == other):
        network.set_image(other)
    with qtbot.waitSignal(network.feature_maps_shown, timeout=TIMEOUT_MS,
                          check_params_cb=lambda answer: answer["stage"] == "layer1") as maps:
        network.set_stage("layer1")
    assert maps.args[0]["size"] == (32, 32)  # 32-pixel crops: tiny_resnet's layer1 works at the full side


def test_a_gallery_selection_chooses_the_image_of_the_feature_maps(qtbot, panel):
    shown_panel(qtbot, panel)
    gallery = panel.errors_view.gallery
    gallery.setCurrentRow(gallery.count() - 1)
    assert panel.network_view.image == gallery.item(gallery.count() - 1).data(PathRole)


def test_without_the_pretrained_weights_the_network_page_says_why(qtbot, panel, tmp_path, monkeypatch):
    shown_panel(qtbot, panel)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # offline, and nothing cached
    network = panel.network_view
    with qtbot.waitSignal(network.filters_shown, timeout=TIMEOUT_MS) as filters:
        panel.evaluateTabs.setCurrentWidget(network)
    assert filters.args[0]["error"]
    assert network.networkStatusLabel.text().startswith("Cannot show what the network sees")
    assert network.pretrainedFiltersView.image().isNull()
    assert network.drift_plot.names  # the drift comes from the evaluation, not from the models



def test_the_network_page_names_the_checkpoint_it_shows_and_offers_best_and_last(qtbot, trained_runs):
    """Issue 28, bug 7: a gradual run's best.pt (epoch 1, backbone frozen) was shown as "after the run"."""
    from engine.infer.drift import run_weight_drift
    from engine.infer.run_checkpoint import open_checkpoint
    from gui.panels.evaluate_network import NetworkView

    run = trained_runs.get("gradual_unfreezing", epochs=3)
    best, last = open_checkpoint(run, "best"), open_checkpoint(run, "last")
    assert last.epoch == 3 and best.describe().startswith(f"best.pt (after epoch {best.epoch} of 3, phase ")
    view = NetworkView()
    qtbot.addWidget(view)
    try:
        view.set_run(str(run), None)
        assert [view.networkCheckpointCombo.itemText(i) for i in range(2)] == ["best.pt", "last.pt"]
        with qtbot.waitSignal(view.filters_shown, timeout=TIMEOUT_MS) as shown:
            view.show()
        assert shown.args[0]["error"] == "" and shown.args[0]["kind"] == "best"
        assert view.finetunedFiltersView.caption.text() == f"fine-tuned: the same filters in {best.describe()}"
        assert "after the run" not in view.finetunedFiltersView.caption.text()

        with qtbot.waitSignal(view.filters_shown, timeout=TIMEOUT_MS) as shown:
            view.set_kind("last")
        assert view.finetunedFiltersView.caption.text() == (
            f"fine-tuned: the same filters in last.pt (after epoch 3 of 3, phase 3 '{last.recipe.phases[2].name}')")
        expected = run_weight_drift(last)
        assert view.drift_plot.bar_lengths() == pytest.approx([s.relative for s in expected.stages])
        assert view.driftLabel.text().startswith(f"How far the weights of {last.describe()} moved")
    finally:
        view.shutdown()


def test_building_the_network_views_shows_progress_and_can_be_cancelled(qtbot, trained_runs):
    from gui.panels.evaluate_network import NetworkView

    view = NetworkView()
    qtbot.addWidget(view)
    try:
        view.set_run(str(trained_runs.get("feature_extraction", epochs=1)), None)
        with qtbot.assertNotEmitted(view.filters_shown, wait=500):
            view.show()  # the page is seen: the models are built
            assert view.networkProgress.isVisible() and view.networkCancelButton.isVisible()
            qtbot.mouseClick(view.networkCancelButton, Qt.MouseButton.LeftButton)
            assert view.networkStatusLabel.text().startswith("Cancelled")
            assert not view.networkProgress.isVisible() and view.pretrainedFiltersView.image().isNull()
        with qtbot.waitSignal(view.filters_shown, timeout=TIMEOUT_MS):
            view.set_kind("last")  # choosing a checkpoint again builds them
        assert not view.networkCancelButton.isVisible() and not view.finetunedFiltersView.image().isNull()
    finally:
        view.shutdown()
