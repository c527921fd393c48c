"""Screenshots of every tab of the studio for docs/GUI.md, made offscreen with real runs on generated images.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
WORK = Path(tempfile.mkdtemp(prefix="thaw-screens-"))
os.environ.update(THAW_RUNS_DIR=str(WORK / "runs"), THAW_CACHE_DIR=str(WORK / "cache"), THAW_OFFLINE="1",
                  TORCH_HOME=str(WORK / "torch"), THAW_SETTINGS=str(WORK / "settings.ini"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402

from engine.planning.presets import make_recipe  # noqa: E402
from engine.train.runs import annotate_run, checkpoint_path, list_runs, rename_run  # noqa: E402
from gui.app import create_app  # noqa: E402
from tests.conftest import seed_torch_home  # noqa: E402
from tests.helpers import make_image_folder  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def wait(condition, seconds: float, what: str) -> None:
    """Run the event loop until `condition()` holds (checked every 50 ms) or the time is up."""
    loop = QEventLoop()
    poll = QTimer(interval=50)
    poll.timeout.connect(lambda: condition() and loop.quit())
    poll.start()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    if not condition():
        loop.exec()
    poll.stop()
    if not condition():
        raise SystemExit(f"timed out waiting for {what}")


def _settle() -> None:
    """Let layouts and plots repaint once before a grab."""
    loop = QEventLoop()
    QTimer.singleShot(300, loop.quit)
    loop.exec()


def small(recipe, data: Path):
    recipe.data.root = str(data)
    recipe.data.resize_size, recipe.data.crop_size = 72, 64
    recipe.batch_size, recipe.device = 16, "cpu"
    return recipe.validate()


def main() -> None:
    seed_torch_home(WORK / "torch")
    data = make_image_folder(WORK / "pets", classes=4, per_class=24, size=80, broken=True)
    # Two wrong labels and a copied image: the Evaluate tab's Suspect labels page finds them.
    shutil.move(data / "cat" / "cat_003.png", data / "dog" / "was_cat_003.png")
    shutil.move(data / "fox" / "fox_005.png", data / "owl" / "was_fox_005.png")
    shutil.copyfile(data / "owl" / "owl_002.png", data / "owl" / "owl_002_copy.png")
    app = create_app([sys.argv[0]])  # noqa: F841 - kept alive while the window is shown
    from gui.main_window import MainWindow

    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    OUT.mkdir(parents=True, exist_ok=True)

    def shoot(tab: str, name: str = "") -> None:
        tabs = window.tabs
        index = next(i for i in range(tabs.count()) if tabs.tabText(i) == tab)
        tabs.setCurrentIndex(index)
        _settle()
        path = OUT / f"{name or tab.lower()}.png"
        window.grab().save(str(path))
        print("wrote", path)

    doc = window.document
    window.set_data_root(str(data))
    wait(lambda: doc.scan is not None, 60, "the data scan")
    panel = window.data_panel
    wait(lambda: panel.thumbnailsView.count() > 0, 60, "the thumbnails")
    previews = []
    panel.augment_preview_shown.connect(previews.append)
    panel.thumbnailsView.setCurrentRow(5)  # a click on a thumbnail previews what training makes of it
    wait(lambda: bool(previews), 60, "the augmentation preview")
    shoot("Data")

    # Two strategies on the same data: the lesson's comparison.
    for strategy, epochs in (("feature_extraction", 4), ("gradual_unfreezing", 6)):
        doc.set_recipe(small(make_recipe(strategy, "resnet18", str(data), epochs=epochs), data))
        window.training_panel.start_run()
        wait(lambda: window.controller.is_running, 30, "the run to start")
        wait(lambda: not window.controller.is_running, 900, f"the {strategy} run")
    shoot("Training")
    shoot("Model")
    shoot("Optimizer")
    shoot("Phases")

    for run in list_runs():  # a name and a note of the user's, as the Runs tab edits them
        if run.strategy == "feature_extraction":
            rename_run(run.path, "baseline: frozen backbone")
            annotate_run(run.path, "fast; the head alone already separates the classes")
    window.runs_panel.refresh()
    window.runs_panel.runsTable.selectAll()  # both runs: their curves overlaid, their times side by side
    shoot("Runs")

    # The Evaluate tab shows the newest run's evaluation.json, written when it finished (EvaluationWritten).
    evaluate = window.evaluate_panel
    wait(lambda: evaluate.evaluation is not None, 120, "the newest run's evaluation")
    thumbnails = []
    evaluate.errors_view.thumbnails_finished.connect(lambda: thumbnails.append(True))
    errors = evaluate.evaluation.metrics.most_confused(1)
    if errors:  # the cell behind the largest confusion, highest loss first
        true_class, predicted, _ = errors[0]
        evaluate.errors_view.show_cell(true_class, predicted)
        index = evaluate.errors_view.confusion_model.index(evaluate.evaluation.classes.index(true_class),
                                                           evaluate.evaluation.classes.index(predicted))
        evaluate.errors_view.confusionTable.setCurrentIndex(index)
    else:
        thumbnails.append(True)
    wait(lambda: bool(thumbnails), 120, "the gallery's heat maps")
    shoot("Evaluate")
    reports = []
    evaluate.labels_view.report_shown.connect(lambda report: report is not None and reports.append(report))
    previews = []
    evaluate.labels_view.previews_shown.connect(previews.append)
    evaluate.evaluateTabs.setCurrentWidget(evaluate.labels_view)
    evaluate.labels_view.find_label_issues()
    wait(lambda: bool(reports) and (bool(previews) or not reports[0].suspects), 300, "the label issues")
    shoot("Evaluate", "evaluate-labels")
    maps = []
    evaluate.network_view.feature_maps_shown.connect(maps.append)
    evaluate.evaluateTabs.setCurrentWidget(evaluate.network_view)
    wait(lambda: bool(maps), 120, "the feature maps")
    shoot("Evaluate", "evaluate-network")
    evaluate.evaluateTabs.setCurrentWidget(evaluate.errors_view)

    newest = max(list_runs(), key=lambda r: r.path)
    window.inference_panel.set_checkpoint(str(checkpoint_path(newest.path, "best")))
    foreign = WORK / "foreign" / "noise.png"  # nothing like the training images: flagged as unfamiliar
    foreign.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(foreign)
    images = [str(p) for p in sorted(data.rglob("*.png"))[::20]] + [str(foreign), str(data / "cat" / "notes.jpg")]
    shown = []
    window.inference_panel.predictions_shown.connect(shown.append)
    window.inference_panel.predict_files(images)
    wait(lambda: bool(shown), 120, "predictions")
    explained = []
    window.inference_panel.heatmap_shown.connect(explained.append)
    window.inference_panel.predictionsTable.selectRow(2)
    wait(lambda: bool(explained), 60, "the heat map")
    shoot("Inference")
    doc.set_modified(False)  # the recipes above were set by this script: nothing to save
    window.maybe_save_changes = lambda _doing: True  # a generated recipe: nothing to ask about
    window.close()


if __name__ == "__main__":
    main()
