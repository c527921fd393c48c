"""The Inference tab: pick a checkpoint, drop images or folders, read the top-k, and see where the model looked.

Everything that touches the model runs on an InferenceWorker in a QThread; the panel only sends requests and
draws results. Heat maps are computed on demand for the selected row (one forward and backward pass each), so
a folder of thousands of images costs only batched predictions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPixmap, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.data.images import IMAGE_EXTENSIONS
from engine.data.relabel import TRASH, UNDO
from engine.infer.explain import ATTENTION_ROLLOUT, overlay
from engine.train.runs import checkpoint_path, list_runs
from gui.document import RecipeDocument
from gui.panels.live_preview import LivePreviewView
from gui.panels.predictions_table import (
    ERROR_COLOUR,
    UNFAMILIAR_MARK,
    PredictionsTable,
    results_summary,
    write_predictions_csv,
)
from gui.widgets.colour_scale import ColourScale
from gui.widgets.image_utils import local_paths, rgb_to_qimage
from gui.widgets.relabel_bar import RelabelBar, label_after, run_data_root
from gui.workers.inference import InferenceWorker
from gui.workers.requests import PanelThread

HEATMAP_MIN_SIDE = 256
DEFAULT_HEATMAP_OPACITY = 35  # percent: the image stays readable under the heat map
OPEN_CHECKPOINT = "open"  # item data of the "Open checkpoint…" entry (checkpoint entries hold their path)
IMAGE_FILTER = "Images ({})".format(" ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS)))
# Every file first: each chosen file gets a row, an unreadable one with its reason, rather than being hidden.
OPEN_IMAGES_FILTERS = f"All files (*);;{IMAGE_FILTER}"


class CheckpointCombo(QComboBox):
    """best.pt / last.pt of every run, newest run first, then files opened by hand, then "Open checkpoint…"."""

    def __init__(self, parent: QWidget | None = None, objectName: str = ""):
        super().__init__(parent, objectName=objectName)
        self._opened: list[str] = []

    def populate(self, keep: str = "") -> None:
        """Relist the runs; keep `keep` selected when it is still there, else select the newest run's best."""
        blocker = QSignalBlocker(self)
        self.clear()
        for run in reversed(list_runs()):
            for kind in ("best", "last"):
                path = checkpoint_path(run.path, kind)
                if path.is_file():
                    accuracy = (f", val acc {run.best_val_acc:.1%}"
                                if kind == "best" and run.best_val_acc is not None else "")
                    self._add(f"{run.name} — {kind}{accuracy} · {run.arch} · {run.started}", str(path))
        for path in self._opened:
            self._add(f"{Path(path).parent.name}/{Path(path).name}", path)
        self.addItem("Open checkpoint…", OPEN_CHECKPOINT)
        index = self.findData(keep) if keep else -1
        self.setCurrentIndex(index if index >= 0 else (0 if self.count() > 1 else -1))
        del blocker

    def select_path(self, path: str) -> None:
        """Select the entry of `path`, adding it when it is not a listed run's."""
        if self.findData(path) < 0:
            self._opened.append(path)
            self.populate(keep=path)
        self.setCurrentIndex(self.findData(path))

    def _add(self, text: str, path: str) -> None:
        if self.findData(path) < 0:
            self.addItem(text, path)
            self.setItemData(self.count() - 1, path, Qt.ItemDataRole.ToolTipRole)

    def current_path(self) -> str:
        data = self.currentData()
        return data if isinstance(data, str) and data != OPEN_CHECKPOINT else ""


class DropArea(QLabel):
    """Accepts image files and folders dragged from the file manager."""

    paths_dropped = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Drop images or folders here", parent)
        self.setAcceptDrops(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumHeight(60)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime is not None and mime.hasUrls() and local_paths(mime.urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData().urls()) if event.mimeData() is not None else []
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.paths_dropped.emit(paths)


class InferencePanel(QWidget):
    """The Inference tab. Reads no recipe: a checkpoint carries its own model, classes and preprocessing."""

    checkpoint_requested = Signal(str)  # → InferenceWorker.load_checkpoint
    predict_requested = Signal(int, list, int, bool)  # → InferenceWorker.predict
    explain_requested = Signal(str)  # → InferenceWorker.explain
    checkpoint_loaded = Signal(dict)
    predictions_shown = Signal(int)  # rows in the table
    heatmap_shown = Signal(str)  # the image path whose heat map (or its error) is on display

    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document  # kept for the common panel interface; inference reads the checkpoint only
        self._worker = InferenceWorker()
        self.worker_thread = PanelThread("inferencePanelWorkerThread", [self._worker], self)
        self._requested_checkpoint = ""  # the path the worker was last asked to load
        self._chosen_by_hand = False  # a checkpoint the user chose stays until they choose another
        self._inputs: list[str] = []  # what was dropped or opened last (re-predicted on a new checkpoint)
        self._request = 0  # id of the predict request whose results the table should show
        self._results: list[dict] = []
        self._loaded_classes: list[str] = []  # the loaded checkpoint's classes (a relabelled row's verdict)
        self._pending: list[str] = []  # what the request in flight predicts
        self._appending = False  # whether its rows are added to the table (else they replace it)
        self._explanations: dict[str, dict] = {}  # path → the worker's explanation, for the loaded checkpoint
        self._explaining: set[str] = set()  # paths whose explanation was asked for and has not arrived
        self._open_folder = ""  # where "Open images…" was last
        self._build()
        self._connect()
        self._update_table_buttons()
        self.checkpointCombo.populate()

    # --- construction -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.checkpointCombo = CheckpointCombo(objectName="checkpointCombo")
        self.checkpointCombo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.checkpointCombo.setToolTip("The model to predict with: the best or last checkpoint of a run (newest "
                                        "first), or a .pt file opened by hand")
        self.refreshCheckpointsButton = QPushButton("Refresh", objectName="refreshCheckpointsButton")
        self.refreshCheckpointsButton.setToolTip("List the runs again")
        self.checkpointInfoLabel = QLabel(objectName="checkpointInfoLabel")
        self.checkpointInfoLabel.setWordWrap(True)
        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(QLabel("Checkpoint"))
        checkpoint_row.addWidget(self.checkpointCombo, 1)
        checkpoint_row.addWidget(self.refreshCheckpointsButton)

        self.inferenceDropArea = DropArea()
        self.inferenceDropArea.setObjectName("inferenceDropArea")
        self.inferenceDropArea.setToolTip("Drop image files or folders: folders are searched for images; an image "
                                          "in a folder named like a class gets a correct / incorrect verdict")
        self.openImagesButton = QPushButton("Open images…", objectName="openImagesButton")
        self.openImagesButton.setToolTip("Choose image files to classify")
        self.topkSpin = QSpinBox(objectName="topkSpin")
        self.topkSpin.setRange(1, 20)
        self.topkSpin.setValue(5)
        self.topkSpin.setPrefix("top ")
        self.topkSpin.setKeyboardTracking(False)
        self.topkSpin.setToolTip("How many of the most likely classes to list per image")
        self.clearPredictionsButton = QPushButton("Clear", objectName="clearPredictionsButton")
        self.clearPredictionsButton.setToolTip("Remove every row (a new Open or drop adds rows to the table)")
        self.exportPredictionsButton = QPushButton("Export CSV…", objectName="exportPredictionsButton")
        self.exportPredictionsButton.setToolTip("Save every row as a CSV file: path, top-1 and its probability, OOD "
                                                "score, true class, correct, top-k, error")
        self.inferenceProgress = QProgressBar(objectName="inferenceProgress")
        self.inferenceProgress.setVisible(False)
        self.inferenceStatusLabel = QLabel(objectName="inferenceStatusLabel")
        self.inferenceStatusLabel.setWordWrap(True)
        input_row = QHBoxLayout()
        input_row.addWidget(self.inferenceDropArea, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.openImagesButton)
        buttons.addWidget(self.topkSpin)
        buttons.addWidget(self.clearPredictionsButton)
        buttons.addWidget(self.exportPredictionsButton)
        input_row.addLayout(buttons)

        self.predictionsTable = PredictionsTable()
        self.predictionsTable.setObjectName("predictionsTable")
        self.predictionsTable.setToolTip("One row per image; select a row to see where the model looked. Rows "
                                         f"marked {UNFAMILIAR_MARK} are unlike the training data")
        self.heatmapView = QLabel(objectName="heatmapView")
        self.heatmapView.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.heatmapView.setMinimumSize(HEATMAP_MIN_SIDE, HEATMAP_MIN_SIDE)
        self.heatmapView.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.heatmapToggle = QCheckBox("Show where the model looked", objectName="heatmapToggle")
        self.heatmapToggle.setChecked(True)
        self.heatmapToggle.setToolTip("Lay the Grad-CAM heat map (attention rollout for a ViT) over the crop")
        self.heatmapOpacitySlider = QSlider(Qt.Orientation.Horizontal, objectName="heatmapOpacitySlider")
        self.heatmapOpacitySlider.setRange(0, 100)
        self.heatmapOpacitySlider.setValue(DEFAULT_HEATMAP_OPACITY)
        self.heatmapOpacitySlider.setToolTip("How strongly the heat map covers the image: at the default the image "
                                             "shows through (a heat map laid on thick hid the digit it explained)")
        self.heatmapCaption = QLabel(objectName="heatmapCaption")
        self.heatmapCaption.setWordWrap(True)
        self.heatmapScale = ColourScale(
            "heatmapScale", "low", "high", "The heat map's colours: how much each region raised the score of the "
            "class shown (Grad-CAM) or drew the class token's attention (ViT), from none (blue) to the image's most "
            "(red)")
        self.heatmapScale.setVisible(False)
        explanation = QWidget()
        explanation_layout = QVBoxLayout(explanation)
        explanation_layout.setContentsMargins(0, 0, 0, 0)
        explanation_layout.addWidget(self.heatmapView, 1)
        explanation_layout.addWidget(self.heatmapScale)
        heat_row = QHBoxLayout()
        heat_row.addWidget(self.heatmapToggle)
        heat_row.addWidget(QLabel("Opacity"))
        heat_row.addWidget(self.heatmapOpacitySlider, 1)
        explanation_layout.addLayout(heat_row)
        explanation_layout.addWidget(self.heatmapCaption)
        self.inferenceRelabelBar = RelabelBar("inference")
        self.inferenceRelabelBar.setToolTip("For an image from a class folder: move it to the predicted class, to "
                                            "another class or to the data folder's trash (journalled, with undo)")
        table_box = QWidget()
        table_layout = QVBoxLayout(table_box)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addWidget(self.predictionsTable, 1)
        table_layout.addWidget(self.inferenceRelabelBar)
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(table_box)
        body.addWidget(explanation)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(checkpoint_row)
        layout.addWidget(self.checkpointInfoLabel)
        layout.addLayout(input_row)
        layout.addWidget(self.inferenceProgress)
        layout.addWidget(self.inferenceStatusLabel)
        # The live preview (a camera or a video, classified continuously) shares the tab's checkpoint.
        self.live_preview = LivePreviewView()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(body)
        split.addWidget(self.live_preview)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout.addWidget(split, 1)

    def _connect(self) -> None:
        self.checkpointCombo.currentIndexChanged.connect(self._on_checkpoint_chosen)
        self.refreshCheckpointsButton.clicked.connect(self.refresh_checkpoints)
        self.inferenceDropArea.paths_dropped.connect(self.predict_files)
        self.openImagesButton.clicked.connect(self._on_open_images_clicked)
        self.topkSpin.valueChanged.connect(self._on_topk_changed)
        self.clearPredictionsButton.clicked.connect(self.clear_predictions)
        self.exportPredictionsButton.clicked.connect(self.export_predictions)
        self.predictionsTable.itemSelectionChanged.connect(self._on_row_selected)
        self.heatmapToggle.toggled.connect(self._show_selected)
        self.heatmapToggle.toggled.connect(self.heatmapOpacitySlider.setEnabled)
        self.heatmapOpacitySlider.valueChanged.connect(lambda _value: self._show_selected())

        self.inferenceRelabelBar.image_relabelled.connect(self._on_image_relabelled)
        self.checkpoint_requested.connect(self._worker.load_checkpoint)
        self.predict_requested.connect(self._worker.predict)
        self.explain_requested.connect(self._worker.explain)
        self._worker.checkpoint_loaded.connect(self._on_checkpoint_loaded)
        self._worker.predictions_progressed.connect(self._on_predictions_progressed)
        self._worker.predictions_ready.connect(self._on_predictions_ready)
        self._worker.explanation_ready.connect(self._on_explanation_ready)
        self._worker.inference_failed.connect(self._on_inference_failed)

    # --- public -----------------------------------------------------------------------------------------------
    @Slot(str)
    def set_checkpoint(self, path: str, by_hand: bool = True) -> None:
        """Select (adding it if needed) and load the checkpoint at `path`; `by_hand`: the user chose it, and a run
        that finishes later does not replace it."""
        self._chosen_by_hand = self._chosen_by_hand or by_hand
        blocker = QSignalBlocker(self.checkpointCombo)
        self.checkpointCombo.select_path(str(path))
        del blocker
        self._load(str(path))

    def offer_checkpoint(self, path: str) -> None:
        """A run just finished with `path`: try it, unless the user chose a checkpoint by hand (issue 28: the tab
        replaced the user's choice whenever another run finished); then it is only listed."""
        if self._chosen_by_hand:
            self.refresh_checkpoints()
        else:
            self.set_checkpoint(path, by_hand=False)

    @Slot(list)
    def predict_files(self, paths: list) -> None:
        """Predict image files and folders (folders are expanded by the worker) and add their rows to the table;
        a file listed already is predicted again in its row (issue 28: a new Open dropped the earlier rows)."""
        added = [str(path) for path in paths]
        self._inputs += [path for path in added if path not in self._inputs]
        self._run_predictions(added)

    @Slot()
    def clear_predictions(self) -> None:
        self._worker.cancel()
        self._inputs, self._pending, self._results = [], [], []
        self.inferenceProgress.setVisible(False)
        self.predictionsTable.show_results([])
        self.inferenceStatusLabel.setText("")
        self.heatmapView.clear()
        self.heatmapCaption.setText("")
        self._update_table_buttons()

    @Slot()
    def export_predictions(self) -> None:
        """The table's rows (every column, numbers unrounded) as a CSV file the user chooses."""
        if not self._results:
            return
        path = self._ask_csv_path()
        if not path:
            return
        try:
            count = write_predictions_csv(path, self._results)
        except OSError as exc:
            self.inferenceStatusLabel.setText(f"⚠ Could not write {path}: {exc}")
            return
        self.inferenceStatusLabel.setText(f"Wrote {count} row(s) to {path}")

    def _ask_csv_path(self) -> str:
        start = str(Path(self._open_folder or Path.home()) / "predictions.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Save the predictions as", start, "CSV (*.csv);;All files (*)")
        return path

    def _update_table_buttons(self) -> None:
        self.exportPredictionsButton.setEnabled(bool(self._results))
        self.clearPredictionsButton.setEnabled(bool(self._inputs))

    @Slot()
    def refresh_checkpoints(self) -> None:
        self.checkpointCombo.populate(keep=self.checkpointCombo.current_path() or self._requested_checkpoint)

    @property
    def results(self) -> list[dict]:
        """The rows on display, as the worker gave them (path, top, error)."""
        return list(self._results)

    def shutdown(self) -> None:
        """Stop the worker threads (the main window calls this on close; safe to call twice)."""
        self.live_preview.shutdown()
        self.worker_thread.shutdown()

    # --- checkpoints ------------------------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        # Loading waits until the tab is first seen: a model costs memory and seconds that most sessions never need.
        if not self._requested_checkpoint and self.checkpointCombo.current_path():
            self._load(self.checkpointCombo.current_path())

    @Slot(int)
    def _on_checkpoint_chosen(self, _index: int) -> None:
        if self.checkpointCombo.currentData() == OPEN_CHECKPOINT:
            self._open_checkpoint_file()
        elif self.checkpointCombo.current_path():
            self._chosen_by_hand = True
            self._load(self.checkpointCombo.current_path())

    def _open_checkpoint_file(self) -> None:
        start = str(Path(self._requested_checkpoint).parent) if self._requested_checkpoint else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a Thaw checkpoint", start, "Checkpoints (*.pt *.pth)")
        if path:
            self.set_checkpoint(path)
            return
        blocker = QSignalBlocker(self.checkpointCombo)  # cancelled: back to what was loaded
        index = self.checkpointCombo.findData(self._requested_checkpoint) if self._requested_checkpoint else 0
        self.checkpointCombo.setCurrentIndex(max(0, index) if self.checkpointCombo.count() > 1 else -1)
        del blocker

    def _load(self, path: str) -> None:
        self.live_preview.set_checkpoint(path)
        if path == self._requested_checkpoint or not self._ensure_thread():
            return
        self._requested_checkpoint = path
        self._explanations.clear()
        self._explaining.clear()
        self.checkpointInfoLabel.setText(f"Loading {path} …")
        self.checkpoint_requested.emit(path)
        if self._inputs:  # the worker loads first, then re-predicts what is on display with the new model
            self._run_predictions()

    @Slot(dict)
    def _on_checkpoint_loaded(self, info: dict) -> None:
        if info["path"] != self._requested_checkpoint:
            return  # a newer choice is already on its way
        classes = info["class_names"]
        self._loaded_classes = list(classes)
        shown = ", ".join(classes[:12]) + (f", … ({len(classes)} classes)" if len(classes) > 12 else "")
        ood = info.get("ood")
        calibration = (f"out-of-distribution check calibrated on {ood['validation_images']} validation images"
                       if ood else "no out-of-distribution calibration (evaluate the run on its validation split "
                                   "to add one)")
        self.checkpointInfoLabel.setText(
            f"{info['arch']} · {len(classes)} classes ({shown}) · {info['crop_size']} px crops, "
            f"{info['channels']} channel(s) · on {info['device']} · {calibration}")
        self.checkpointInfoLabel.setStyleSheet("")
        self.checkpoint_loaded.emit(info)

    @Slot(str)
    def _on_inference_failed(self, message: str) -> None:
        self._requested_checkpoint = ""  # so that choosing or using it again retries the load
        self.checkpointInfoLabel.setText(message)
        self.checkpointInfoLabel.setStyleSheet(f"color: {ERROR_COLOUR.name()}")

    # --- predictions ------------------------------------------------------------------------------------------
    @Slot()
    def _on_open_images_clicked(self) -> None:
        paths = self._ask_image_paths()
        if paths:
            self._open_folder = str(Path(paths[0]).parent)
            self.predict_files(paths)

    def _ask_image_paths(self) -> list[str]:
        paths, _ = QFileDialog.getOpenFileNames(self, "Images to classify", self._open_folder, OPEN_IMAGES_FILTERS)
        return paths

    @Slot(int)
    def _on_topk_changed(self, _value: int) -> None:
        if self._inputs:
            self._run_predictions()

    def _run_predictions(self, added: list[str] | None = None) -> None:
        """Predict `added` and add their rows, or (None) everything listed again (a new checkpoint or top-k)."""
        if added is None:
            self._pending, self._appending = list(self._inputs), False
        elif self._appending or not self._pending:
            # A request in flight is abandoned by the next: what it was adding is asked for again with `added`.
            self._pending = list(dict.fromkeys(self._pending + added)) if self._appending else list(added)
            self._appending = True
        else:
            self._pending = list(self._inputs)  # everything is being predicted again already: it covers `added`
        checkpoint = self.checkpointCombo.current_path()
        if not checkpoint:
            self.inferenceStatusLabel.setText("Choose a checkpoint first: train a run, or open a .pt file.")
            return
        if checkpoint != self._requested_checkpoint:
            self._load(checkpoint)  # _load re-runs the predictions once the load is queued
            return
        if not self._ensure_thread():
            return
        self._request = self._worker.begin_request()
        self.inferenceProgress.setRange(0, 0)
        self.inferenceProgress.setVisible(True)
        self.inferenceStatusLabel.setText("Predicting …")
        self.predict_requested.emit(self._request, list(self._pending), self.topkSpin.value(), False)

    @Slot(int, int, int)
    def _on_predictions_progressed(self, request: int, done: int, total: int) -> None:
        if request == self._request:
            self.inferenceProgress.setRange(0, max(1, total))
            self.inferenceProgress.setValue(done)

    @Slot(int, list)
    def _on_predictions_ready(self, request: int, results: list) -> None:
        if request != self._request:
            return  # superseded by a newer drop, checkpoint or top-k
        self.inferenceProgress.setVisible(False)
        if self._appending:
            rows = {r["path"]: i for i, r in enumerate(self._results)}
            merged = list(self._results)
            for result in results:  # a file predicted again keeps its row
                if result["path"] in rows:
                    merged[rows[result["path"]]] = result
                else:
                    rows[result["path"]] = len(merged)
                    merged.append(result)
            self._results = merged
        else:
            self._results = results
        self._pending, self._appending = [], False
        self.inferenceStatusLabel.setText(results_summary(self._results) if results
                                          else "No image files found in what was dropped.")
        self.predictionsTable.show_results(self._results)
        self._update_table_buttons()
        self.predictions_shown.emit(len(self._results))
        # The first readable image of those just predicted, in the order asked for, is selected (its heat map shown).
        chosen = next((r for r in results if not r["error"]), results[0] if results else None)
        first = next((i for i, r in enumerate(self._results) if chosen is not None and r["path"] == chosen["path"]),
                     -1)
        blocker = QSignalBlocker(self.predictionsTable)
        self.predictionsTable.setCurrentCell(self.predictionsTable.row_of(first), 0)
        del blocker
        self._on_row_selected()

    # --- heat maps --------------------------------------------------------------------------------------------
    def _selected_result(self) -> dict | None:
        index = self.predictionsTable.result_index(self.predictionsTable.currentRow())
        return self._results[index] if 0 <= index < len(self._results) else None

    @Slot()
    def _on_row_selected(self) -> None:
        """Show the selected image's heat map, asking the worker for it the first time."""
        result = self._selected_result()
        self._offer_relabel(result)
        needs_explanation = result is not None and not result["error"] and result["path"] not in self._explanations
        if not needs_explanation:
            self._show_selected()
        elif result["path"] not in self._explaining and self._ensure_thread():
            self._explaining.add(result["path"])
            self.heatmapView.clear()
            self.heatmapCaption.setText("Computing the heat map …")
            self.explain_requested.emit(result["path"])

    @Slot(str, object)
    def _on_image_relabelled(self, root: str, change) -> None:
        """The row follows its image to its new folder (its class verdict with it); a trashed image's row says so."""
        before, after = os.path.join(root, change.source), os.path.join(root, change.target)
        for result in self._results:
            if os.path.abspath(result["path"]) == os.path.abspath(before):
                result["path"] = after
                moved_to = label_after(root, change)
                result["true_class"] = moved_to if moved_to in self._loaded_classes else ""
                top = result.get("top") or []
                result["correct"] = (top[0][0] == result["true_class"]) if result["true_class"] and top else None
                if change.action == TRASH:
                    result["error"] = "moved to the data folder's trash (Undo brings it back)"
                elif change.action == UNDO and result["error"].startswith("moved to the data folder's trash"):
                    result["error"] = ""
        self.predictionsTable.show_results(self._results)

    def _offer_relabel(self, result: dict | None) -> None:
        """An image of a class folder can be moved: the checkpoint's run's data folder is looked in first."""
        checkpoint = Path(self._requested_checkpoint) if self._requested_checkpoint else None
        hints = [run_data_root(checkpoint.parent.parent)] if checkpoint is not None else []
        self.inferenceRelabelBar.set_data_roots(*hints)
        if result is None or result["error"]:
            self.inferenceRelabelBar.set_image("")
            return
        top = result.get("top") or []
        self.inferenceRelabelBar.set_image(result["path"], suggested=top[0][0] if top else "")

    @Slot(dict)
    def _on_explanation_ready(self, explanation: dict) -> None:
        self._explaining.discard(explanation["path"])
        if explanation["checkpoint"] != self._requested_checkpoint:
            return  # made by the model that was loaded before
        self._explanations[explanation["path"]] = explanation
        selected = self._selected_result()
        if selected is not None and selected["path"] == explanation["path"]:
            self._show_selected()

    @Slot()
    def _show_selected(self) -> None:
        if self._render():
            self.heatmap_shown.emit(self._selected_result()["path"])

    def _render(self) -> bool:
        """Draw the selected row's image and heat map (or say why there is none); False while it is computed."""
        result = self._selected_result()
        self.heatmapScale.setVisible(False)  # shown by _draw, with a heat map
        if result is None:
            self.heatmapView.clear()
            self.heatmapCaption.setText("")
            return False
        if result["error"]:
            self.heatmapView.clear()
            self.heatmapCaption.setText(f"{os.path.basename(result['path'])}: {result['error']}")
            return True
        explanation = self._explanations.get(result["path"])
        if explanation is None:
            return False
        if explanation["error"]:
            self.heatmapView.clear()
            self.heatmapCaption.setText(f"No heat map: {explanation['error']}")
        else:
            self._draw(explanation)
        return True

    def _draw(self, explanation: dict) -> None:
        image: np.ndarray = explanation["image"]
        heat = self.heatmapToggle.isChecked()
        if heat:
            image = overlay(image, explanation["heatmap"], alpha=self.heatmapOpacitySlider.value() / 100)
        self.heatmapScale.setVisible(heat)
        side = max(HEATMAP_MIN_SIDE, min(self.heatmapView.width(), self.heatmapView.height()))
        pixmap = QPixmap.fromImage(rgb_to_qimage(image))
        self.heatmapView.setPixmap(pixmap.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                                 Qt.TransformationMode.SmoothTransformation))
        method = ("Attention rollout (where the class token drew from; not class-specific)"
                  if explanation["method"] == ATTENTION_ROLLOUT else f"Grad-CAM for “{explanation['class_name']}”")
        size = f"{image.shape[1]}×{image.shape[0]}"
        caption = (f"{method}, over the {size} crop the model saw." if heat else
                   f"The {size} crop the model saw (heat map off), predicted “{explanation['class_name']}”."
                   if explanation["class_name"] else f"The {size} crop the model saw (heat map off).")
        selected = self._selected_result()
        if selected is not None and selected.get("unfamiliar"):
            caption = (f"{UNFAMILIAR_MARK} Unlike the training data (OOD score {selected['ood_score']:.2f}): the "
                       f"class is a guess. " + caption)
        self.heatmapCaption.setText(caption)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if not self.heatmapView.pixmap().isNull():
            self._render()

    # --- the worker thread ------------------------------------------------------------------------------------
    def _ensure_thread(self) -> bool:
        return self.worker_thread.ensure()
