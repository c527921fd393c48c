"""The Data tab: which images, how they are split and augmented, and what cannot be used.

The panel edits `recipe.data` (and `recipe.batch_size`) through the document and shows `document.scan`. A scan
starts whenever the folder, the dataset kind or the model's input channel count changes (all three decide what
is usable), runs on a worker thread, and lands in the document with `set_scan`; the tables are drawn from the
document, so a scan set by anyone else shows here too.

The augmentation preview runs the real training transform on one image (the selected thumbnail: clicking one
previews it). It never outlives what it shows: another folder clears it, another augmentation, flip or size
setting draws it again, and a preview that arrives after either is dropped.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from PySide6.QtCore import QObject, QSignalBlocker, QSize, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QDragEnterEvent, QDropEvent, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.data.scan import LAYOUT_TRAIN_VAL, ScanReport
from engine.data.sources import get_source
from engine.data.split import stratified_split
from engine.errors import BadInputError
from engine.recipe import AUGMENTATIONS, BUILTIN_DATASETS, Recipe
from gui.dataset_dialog import DatasetDialog
from gui.document import LOADING_TEXT, RecipeDocument
from gui.panels.capture_page import CapturePage
from gui.widgets.image_utils import local_paths
from gui.widgets.tooltips import set_tooltips
from gui.workers.requests import PanelThread
from gui.workers.scan import AugmentationPreviewer, ScanWorker

FOLDER_DATASET = "folder"
IMBALANCE_WARNING_RATIO = 3.0
PREVIEW_COUNT = 8
PREVIEW_ICON_SIZE = 96
ERROR_COLOUR = QColor(190, 30, 30)
WARNING_COLOUR = QColor(180, 95, 0)
AUGMENTATION_LABELS = {
    "lesson": "Resize → random crop (the lesson's)",
    "trivialaugment": "TrivialAugment (random crop, one random colour/shape op)",
    "none": "None (the evaluation transform)",
}
# Data sets of characters: a mirrored digit or letter is another shape (or another class).
CHARACTER_DATASETS = ("MNIST", "SVHN")
TIPS = {
    "datasetCombo": "Your own image folder, a labels CSV (path,label), or a torchvision data set on disk (Get a "
                    "dataset… downloads one)",
    "dataFolderEdit": "A folder with one folder per class (a validation split is made), or with train/ and val/ "
                      "folders; type a path and press Enter, or drop a folder on this tab",
    "browseDataButton": "Choose the dataset folder",
    "getDatasetButton": "Download one of torchvision's classification sets (Caltech-101, Food-101, CIFAR …) and "
                        "train on it",
    "valFractionSpin": "Share of each class held out for validation (stratified, seeded); not used with train/ and "
                       "val/ folders",
    "splitSeedSpin": "Seed of the train/validation split: the same seed gives the same split every time",
    "augmentationCombo": "How training images are varied each epoch; validation always sees the plain resize and "
                         "centre crop",
    "resizeSizeSpin": "The shorter side images are resized to before cropping; 0 takes the pretrained weights' size",
    "cropSizeSpin": "The square the model sees; 0 takes the pretrained weights' size (e.g. 224)",
    "batchSizeSpin": "Images per optimizer step; lower it if memory runs out",
    "augmentPreviewButton": "Run the training transform 8 times on the selected sample (or the first), with new "
                            "random draws on each click",
    "augmentPreview": "What training sees: the selected sample through the training transform, 8 random draws",
    "thumbnailsView": "A few images of each class; click one to preview its augmentation",
    "problemsTable": "Every file or folder that cannot be used, and why; training skips them",
    "classesTable": "Images per class, their share, and the train / validation split training will make",
}
FLIP_TIP = ("Mirror each training image left-right at random (half of the time), as the lesson does: more variety "
            "for photos of things that look the same mirrored. Untick it for digits, letters, text, and anything "
            "whose meaning a mirror changes (b / d, arrows, left / right).")


class ClassesTable(QTableWidget):
    """One row per class: count, a bar, share of all images, and the train/val split it will get."""

    COLUMNS = ("Class", "Images", "", "Share", "Train", "Val")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(self.COLUMNS), parent)
        self.setHorizontalHeaderLabels(self.COLUMNS)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self._shown: tuple | None = None  # (report, split) on display, compared by identity

    def show_report(self, report: ScanReport | None, split: dict[str, Counter] | None, split_source: str) -> None:
        if self._shown is not None and self._shown[0] is report and self._shown[1] is split:
            return  # every recipe edit asks; rebuilding a thousand rows each time would make typing lag
        self._shown = (report, split)
        self.setRowCount(0)
        if report is None:
            return
        total = max(1, report.num_samples)
        largest = max(report.counts.values(), default=0)
        self.setRowCount(len(report.classes))
        for row, name in enumerate(report.classes):
            count = report.counts.get(name, 0)
            empty = name in report.empty_classes
            self.setItem(row, 0, _item(name + ("  (nothing to train on)" if empty else ""), error=empty))
            self.setItem(row, 1, _item(str(count), align_right=True))
            bar = QProgressBar()
            bar.setRange(0, max(1, largest))
            bar.setValue(count)
            bar.setTextVisible(False)
            self.setCellWidget(row, 2, bar)
            self.setItem(row, 3, _item(f"{100.0 * count / total:.1f} %", align_right=True))
            for column, part in ((4, "train"), (5, "val")):
                value = split[part][name] if split is not None else 0
                item = _item(str(value), align_right=True)
                item.setToolTip(split_source)
                self.setItem(row, column, item)


class ProblemsTable(QTableWidget):
    """Every file or folder under the root that cannot be used, with the reason."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(("File", "Why it cannot be used"))
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)

    def show_report(self, report: ScanReport | None) -> None:
        problems = report.problems if report is not None else []
        self.setRowCount(len(problems))
        for row, problem in enumerate(problems):
            shown = _relative(problem.path, report.root) + ("/" if problem.is_folder else "")
            path_item = _item(shown)
            path_item.setToolTip(problem.path)
            self.setItem(row, 0, path_item)
            self.setItem(row, 1, _item(problem.reason, error=True))


class DataPanel(QWidget):
    """The Data tab. Edits recipe.data and recipe.batch_size; scans folders off the GUI thread."""

    scan_requested = Signal(int, str, int)  # request id, root, channels → ScanWorker.scan
    preview_requested = Signal(str, object, str, bool, int, int)  # → AugmentationPreviewer.preview
    scan_failed = Signal(str)
    thumbnails_shown = Signal(int)
    augment_preview_shown = Signal(int)

    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self._scan_worker = ScanWorker()
        self._previewer = AugmentationPreviewer()
        self.worker_thread = PanelThread("dataPanelWorkerThread", [self._scan_worker, self._previewer], self)
        self._scan_key: tuple | None = None  # (dataset, root, channels) of the last scan asked for
        self._preview_seed = 0  # also the id of the preview on its way: older ones are dropped
        self._preview_path = ""  # the image the preview shows ("" when none is shown)
        self._preview_settings: tuple | None = None  # what decided the preview's look when it was drawn
        self._split_cache: tuple[ScanReport, tuple, dict[str, Counter]] | None = None  # report, (fraction, seed)
        self.setAcceptDrops(True)
        self._build()
        self._connect()
        self._on_recipe_changed()
        self._on_data_scanned()

    # --- construction -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.datasetCombo = QComboBox(objectName="datasetCombo")
        for name in BUILTIN_DATASETS:
            self.datasetCombo.addItem("Image folder" if name == FOLDER_DATASET else name, name)
        self.dataFolderEdit = QLineEdit(objectName="dataFolderEdit")
        self.dataFolderEdit.setPlaceholderText("A folder of class folders, or with train/ and val/ — or drop one here")
        self.dataFolderEdit.setAcceptDrops(False)  # a dropped folder goes to the panel, not in as URL text
        self.browseDataButton = QPushButton("Browse…", objectName="browseDataButton")
        self.getDatasetButton = QPushButton("Get a dataset…", objectName="getDatasetButton")
        self.rescanButton = QPushButton("Rescan", objectName="rescanButton")
        self.rescanButton.setToolTip("Scan the folder again (after adding, removing or fixing files)")
        self.scanProgress = QProgressBar(objectName="scanProgress")
        self.scanProgress.setVisible(False)
        self.scanStatusLabel = QLabel(objectName="scanStatusLabel")
        self.scanStatusLabel.setWordWrap(True)
        self.builtinNoteLabel = QLabel(objectName="builtinNoteLabel")
        self.builtinNoteLabel.setWordWrap(True)
        self.builtinNoteLabel.setVisible(False)

        folder_row = QHBoxLayout()
        folder_row.addWidget(self.datasetCombo)
        folder_row.addWidget(self.dataFolderEdit, 1)
        folder_row.addWidget(self.browseDataButton)
        folder_row.addWidget(self.getDatasetButton)
        folder_row.addWidget(self.rescanButton)
        source = QGroupBox("Images")
        source_layout = QVBoxLayout(source)
        source_layout.addLayout(folder_row)
        source_layout.addWidget(self.scanProgress)
        source_layout.addWidget(self.scanStatusLabel)
        source_layout.addWidget(self.builtinNoteLabel)

        self.classesTable = ClassesTable()
        self.classesTable.setObjectName("classesTable")
        self.imbalanceLabel = QLabel(objectName="imbalanceLabel")
        self.imbalanceLabel.setWordWrap(True)
        self.problemsTable = ProblemsTable()
        self.problemsTable.setObjectName("problemsTable")
        self.problemsLabel = QLabel("Unusable files", objectName="problemsLabel")
        self.thumbnailsView = _icon_list("thumbnailsView", 64)

        classes_box = QWidget()
        classes_layout = QVBoxLayout(classes_box)
        classes_layout.setContentsMargins(0, 0, 0, 0)
        classes_layout.addWidget(QLabel("Classes"))
        classes_layout.addWidget(self.classesTable, 1)
        classes_layout.addWidget(self.imbalanceLabel)
        problems_box = QWidget()
        problems_layout = QVBoxLayout(problems_box)
        problems_layout.setContentsMargins(0, 0, 0, 0)
        problems_layout.addWidget(self.problemsLabel)
        problems_layout.addWidget(self.problemsTable, 1)
        samples_box = QWidget()
        samples_layout = QVBoxLayout(samples_box)
        samples_layout.setContentsMargins(0, 0, 0, 0)
        samples_layout.addWidget(QLabel("Samples (select one to preview its augmentation)"))
        samples_layout.addWidget(self.thumbnailsView, 1)
        report_splitter = QSplitter(Qt.Orientation.Vertical)
        for box in (classes_box, problems_box, samples_box):
            report_splitter.addWidget(box)

        self.valFractionSpin = QDoubleSpinBox(objectName="valFractionSpin")
        self.valFractionSpin.setRange(0.05, 0.9)
        self.valFractionSpin.setSingleStep(0.05)
        self.valFractionSpin.setDecimals(2)
        self.splitSeedSpin = QSpinBox(objectName="splitSeedSpin")
        self.splitSeedSpin.setRange(0, 2**31 - 1)
        self.augmentationCombo = QComboBox(objectName="augmentationCombo")
        for name in AUGMENTATIONS:
            self.augmentationCombo.addItem(AUGMENTATION_LABELS.get(name, name), name)
        self.horizontalFlipCheck = QCheckBox("Mirror left-right at random", objectName="horizontalFlipCheck")
        self.horizontalFlipCheck.setToolTip(FLIP_TIP)
        self.flipWarningLabel = QLabel(objectName="flipWarningLabel")
        self.flipWarningLabel.setWordWrap(True)
        self.flipWarningLabel.setStyleSheet(f"color: {WARNING_COLOUR.name()}")
        self.flipWarningLabel.setVisible(False)
        self.resizeSizeSpin = _size_spin("resizeSizeSpin")
        self.cropSizeSpin = _size_spin("cropSizeSpin")
        self.batchSizeSpin = QSpinBox(objectName="batchSizeSpin")
        self.batchSizeSpin.setRange(1, 4096)
        for spin in (self.valFractionSpin, self.splitSeedSpin, self.resizeSizeSpin, self.cropSizeSpin,
                     self.batchSizeSpin):
            spin.setKeyboardTracking(False)  # one recipe edit per committed value, not per keystroke
        self.effectiveSizeLabel = QLabel(objectName="effectiveSizeLabel")
        self.effectiveSizeLabel.setWordWrap(True)
        self.dataHintLabel = QLabel(objectName="dataHintLabel")
        self.dataHintLabel.setWordWrap(True)
        self.dataHintLabel.setStyleSheet(f"color: {ERROR_COLOUR.name()}")

        settings = QGroupBox("Split and preprocessing")
        form = QFormLayout(settings)
        form.addRow("Validation fraction", self.valFractionSpin)
        form.addRow("Split seed", self.splitSeedSpin)
        form.addRow("Augmentation", self.augmentationCombo)
        form.addRow("", self.horizontalFlipCheck)
        form.addRow(self.flipWarningLabel)
        form.addRow("Resize to", self.resizeSizeSpin)
        form.addRow("Crop size", self.cropSizeSpin)
        form.addRow("Batch size", self.batchSizeSpin)
        form.addRow(self.effectiveSizeLabel)
        form.addRow(self.dataHintLabel)

        self.augmentPreviewButton = QPushButton("Preview augmentation", objectName="augmentPreviewButton")
        self.augmentPreview = _icon_list("augmentPreview", PREVIEW_ICON_SIZE)
        self.augmentStatusLabel = QLabel(objectName="augmentStatusLabel")
        self.augmentStatusLabel.setWordWrap(True)
        preview = QGroupBox("What training sees")
        preview_layout = QVBoxLayout(preview)
        preview_layout.addWidget(self.augmentPreviewButton)
        preview_layout.addWidget(self.augmentPreview, 1)
        preview_layout.addWidget(self.augmentStatusLabel)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(settings)
        right_layout.addWidget(preview, 1)
        # The right column's pages: how the images are prepared, and capturing new ones from a camera.
        self.capture_page = CapturePage(self.document)
        self.dataPagesTabs = QTabWidget(objectName="dataPagesTabs")
        self.dataPagesTabs.addTab(right, "Split and preprocessing")
        self.dataPagesTabs.addTab(self.capture_page, "Capture")
        self.dataPagesTabs.setTabToolTip(1, "Record images from a camera (or a video) into a class folder")
        self.dataPagesTabs.setToolTip("How the images are split and prepared; capturing new ones from a camera")
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(report_splitter)
        body.addWidget(self.dataPagesTabs)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addWidget(source)
        layout.addWidget(body, 1)
        set_tooltips(self, TIPS)

    def _connect(self) -> None:
        self.document.recipe_changed.connect(self._on_recipe_changed)
        self.document.data_scanned.connect(self._on_data_scanned)
        self.document.engine_loaded.connect(self._on_engine_loaded)
        self.datasetCombo.currentIndexChanged.connect(self._on_dataset_chosen)
        self.dataFolderEdit.editingFinished.connect(self._on_folder_edited)
        self.browseDataButton.clicked.connect(self._on_browse_clicked)
        self.getDatasetButton.clicked.connect(self.open_dataset_dialog)
        self.rescanButton.clicked.connect(self.rescan)
        self.capture_page.capture_finished.connect(self.follow_relabel)  # the same rescan: new images are counted
        self.valFractionSpin.valueChanged.connect(lambda v: self._edit_data("val_fraction", round(float(v), 4)))
        self.splitSeedSpin.valueChanged.connect(lambda v: self._edit_data("split_seed", int(v)))
        self.augmentationCombo.currentIndexChanged.connect(
            lambda _: self._edit_data("augmentation", self.augmentationCombo.currentData()))
        self.horizontalFlipCheck.toggled.connect(lambda on: self._edit_data("horizontal_flip", bool(on)))
        self.thumbnailsView.currentItemChanged.connect(self._on_thumbnail_chosen)
        self.resizeSizeSpin.valueChanged.connect(lambda v: self._edit_data("resize_size", int(v)))
        self.cropSizeSpin.valueChanged.connect(lambda v: self._edit_data("crop_size", int(v)))
        self.batchSizeSpin.valueChanged.connect(self._on_batch_size_changed)
        self.augmentPreviewButton.clicked.connect(self._on_augment_preview_clicked)

        self.scan_requested.connect(self._scan_worker.scan)
        self.preview_requested.connect(self._previewer.preview)
        self._scan_worker.scan_progressed.connect(self._on_scan_progressed)
        self._scan_worker.scan_finished.connect(self._on_scan_finished)
        self._scan_worker.scan_failed.connect(self._on_scan_failed)
        self._scan_worker.thumbnails_loaded.connect(self._on_thumbnails_loaded)
        self._previewer.previews_ready.connect(self._on_previews_ready)
        self._previewer.preview_failed.connect(self._on_preview_failed)

    # --- public -----------------------------------------------------------------------------------------------
    @Slot(str)
    def set_data_folder(self, path: str) -> None:
        """Point the recipe at `path` (a scan follows from the recipe change)."""
        path = os.path.abspath(os.path.expanduser(path)) if path else ""
        self.dataFolderEdit.setText(path)
        if path != self.document.recipe.data.root:
            self._edit_data("root", path)

    @Slot()
    def rescan(self) -> None:
        self._scan_key = None
        self._sync_scan()

    @Slot(str, object)
    def follow_relabel(self, root: str, _change=None) -> None:
        """An image of `root` moved between classes (or to its trash) elsewhere in the studio, or frames were
        captured into it: rescan when it is the folder on display."""
        current = self.document.recipe.data.root
        if current and os.path.abspath(current) == os.path.abspath(root):
            self.rescan()

    def shutdown(self) -> None:
        """Stop the worker threads (the main window calls this on close; safe to call twice)."""
        self.capture_page.shutdown()
        self.worker_thread.shutdown()

    # --- editing the recipe ------------------------------------------------------------------------------------
    def _edit_data(self, field: str, value) -> None:
        if getattr(self.document.recipe.data, field) != value:
            self.document.edit(lambda recipe: setattr(recipe.data, field, value))

    @Slot(int)
    def _on_batch_size_changed(self, value: int) -> None:
        if self.document.recipe.batch_size != value:
            self.document.edit(lambda recipe: setattr(recipe, "batch_size", int(value)))

    @Slot(int)
    def _on_dataset_chosen(self, _index: int) -> None:
        self._edit_data("dataset", self.datasetCombo.currentData())

    @Slot()
    def _on_folder_edited(self) -> None:
        self.set_data_folder(self.dataFolderEdit.text().strip())

    @Slot()
    def _on_browse_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the dataset folder", self.document.recipe.data.root)
        if folder:
            self.set_data_folder(folder)

    @Slot()
    def open_dataset_dialog(self) -> DatasetDialog:
        """The "Get a dataset…" dialog (gui/dataset_dialog.py); a set picked there goes into the recipe."""
        data = self.document.recipe.data
        dialog = DatasetDialog(data.root if data.dataset not in (FOLDER_DATASET, "csv") else "", self)
        dialog.accepted.connect(lambda: self._use_dataset(dialog.chosen))
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    def _use_dataset(self, chosen: tuple[str, str] | None) -> None:
        if chosen is not None:
            self.document.edit(lambda recipe: (setattr(recipe.data, "dataset", chosen[0]),
                                               setattr(recipe.data, "root", chosen[1])))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _dropped_folder(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        folder = _dropped_folder(event)
        if folder is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.set_data_folder(folder)

    # --- showing the recipe ------------------------------------------------------------------------------------
    @Slot()
    def _on_recipe_changed(self) -> None:
        recipe = self.document.recipe
        data = recipe.data
        _set_quietly(self.datasetCombo, self.datasetCombo.setCurrentIndex, self.datasetCombo.findData(data.dataset))
        if self.dataFolderEdit.text() != data.root:
            self.dataFolderEdit.setText(data.root)
        _set_quietly(self.valFractionSpin, self.valFractionSpin.setValue, data.val_fraction)
        _set_quietly(self.splitSeedSpin, self.splitSeedSpin.setValue, data.split_seed)
        _set_quietly(self.augmentationCombo, self.augmentationCombo.setCurrentIndex,
                     self.augmentationCombo.findData(data.augmentation))
        _set_quietly(self.horizontalFlipCheck, self.horizontalFlipCheck.setChecked, data.horizontal_flip)
        self.horizontalFlipCheck.setEnabled(data.augmentation != "none")
        _set_quietly(self.resizeSizeSpin, self.resizeSizeSpin.setValue, data.resize_size)
        _set_quietly(self.cropSizeSpin, self.cropSizeSpin.setValue, data.crop_size)
        _set_quietly(self.batchSizeSpin, self.batchSizeSpin.setValue, recipe.batch_size)
        builtin = data.dataset != FOLDER_DATASET
        self.builtinNoteLabel.setVisible(builtin)
        if builtin:
            source = get_source(data.dataset)
            self.builtinNoteLabel.setText(
                f"{source.title}: {source.split}. " + ("" if source.local else
                "It is read from the folder above as torchvision stores it; Get a dataset… downloads it there."))
        # The split settings matter wherever the source has no official split (Caltech, EuroSAT, a labels CSV).
        seeded = not builtin or not get_source(data.dataset).splits
        for widget in (self.valFractionSpin, self.splitSeedSpin):
            widget.setEnabled(seeded)
        self.rescanButton.setEnabled(not builtin)
        self._show_effective_sizes(recipe)
        self._sync_scan()
        self._show_classes()
        self._show_flip_warning()
        self._refresh_preview()

    def _preprocessing(self, recipe: Recipe):
        """The model's preprocessing for this data (its weights' sizes and statistics); None while the studio is
        still loading the model zoo (torch): the views that need it refresh when it has loaded."""
        if not self.document.is_engine_loaded:
            return None
        from engine.model.build import resolve_preprocessing

        return resolve_preprocessing(recipe.model, recipe.data)

    def _show_effective_sizes(self, recipe: Recipe) -> None:
        try:
            recipe.data.validate()
            prep = self._preprocessing(recipe)
        except BadInputError as exc:
            self.dataHintLabel.setText(str(exc))
            self.effectiveSizeLabel.setText("")
            return
        self.dataHintLabel.setText("")
        if prep is None:
            self.effectiveSizeLabel.setText(f"The model's image size follows once it has loaded ({LOADING_TEXT})")
            return
        self.effectiveSizeLabel.setText(
            f"Images are resized to {prep.resize_size} px (shorter side) and cropped to "
            f"{prep.crop_size}×{prep.crop_size}; {prep.channels} channel(s).")

    # --- scanning ---------------------------------------------------------------------------------------------
    def _sync_scan(self) -> None:
        """Scan when what decides the usable images changed; a builtin dataset or no folder has no scan."""
        data = self.document.recipe.data
        key = (data.dataset, data.root, self.document.recipe.model.in_channels)
        if key == self._scan_key:
            return
        self._scan_key = key
        self._scan_worker.cancel()
        self.thumbnailsView.clear()
        self._clear_preview()  # it showed an image of the folder before
        if data.dataset != FOLDER_DATASET or not data.root:
            self.scanProgress.setVisible(False)
            self.scanStatusLabel.setText("" if data.dataset != FOLDER_DATASET else "Choose or drop a dataset folder.")
            if self.document.scan is not None:
                self.document.set_scan(None)
            return
        if not self._ensure_thread():
            return
        self.scanProgress.setRange(0, 0)  # busy until the first count arrives
        self.scanProgress.setVisible(True)
        self.scanStatusLabel.setText(f"Scanning {data.root} …")
        self.scan_requested.emit(self._scan_worker.begin_request(), data.root, key[2])

    @Slot(int, int)
    def _on_scan_progressed(self, done: int, total: int) -> None:
        self.scanProgress.setRange(0, max(1, total))
        self.scanProgress.setValue(done)

    @Slot(object)
    def _on_scan_finished(self, report: ScanReport) -> None:
        self.scanProgress.setVisible(False)
        layout = "train/ and val/ folders" if report.layout == LAYOUT_TRAIN_VAL else "class folders"
        skipped = f", {report.skipped} file(s) left out" if report.skipped else ""
        self.scanStatusLabel.setText(
            f"{report.num_samples} usable images in {len(report.classes)} classes ({layout}){skipped}.")
        self.document.set_scan(report)

    @Slot(str)
    def _on_scan_failed(self, message: str) -> None:
        self.scanProgress.setVisible(False)
        self.scanStatusLabel.setText(message)
        self.document.set_scan(None)
        self.scan_failed.emit(message)

    @Slot()
    def _on_data_scanned(self) -> None:
        report = self.document.scan
        self.problemsTable.show_report(report)
        file_problems = report.skipped if report else 0
        folder_problems = len(report.problems) - file_problems if report else 0
        self.problemsLabel.setText(f"Unusable files: {file_problems}" +
                                   (f", folder problems: {folder_problems}" if folder_problems else ""))
        if report is None:
            self.thumbnailsView.clear()
        self._show_classes()

    def _show_classes(self) -> None:
        report = self.document.scan
        split, source = self._split_counts(report)
        self.classesTable.show_report(report, split, source)
        self.imbalanceLabel.setText(_imbalance_text(report))
        self.augmentPreviewButton.setEnabled(bool(report and report.samples))
        self._show_flip_warning()

    def _show_flip_warning(self) -> None:
        data = self.document.recipe.data
        report = self.document.scan
        characters = data.dataset in CHARACTER_DATASETS or (
            data.dataset == FOLDER_DATASET and report is not None and looks_like_characters(report.classes))
        warn = characters and data.horizontal_flip and data.augmentation != "none"
        self.flipWarningLabel.setVisible(warn)
        self.flipWarningLabel.setText("⚠ The classes look like digits or letters: a mirrored character is another "
                                      "shape. Untick “Mirror left-right” unless a mirrored image is still of the "
                                      "same class." if warn else "")

    def _split_counts(self, report: ScanReport | None) -> tuple[dict[str, Counter] | None, str]:
        """Per-class train/val counts exactly as training will split them."""
        if report is None:
            return None, ""
        if report.layout == LAYOUT_TRAIN_VAL:
            return {part: Counter(report.split_counts.get(part, {})) for part in ("train", "val")}, \
                "from the train/ and val/ folders"
        data = self.document.recipe.data
        settings = (data.val_fraction, data.split_seed)
        cached = self._split_cache
        if cached is None or cached[0] is not report or cached[1] != settings:
            # Cached: every recipe edit refreshes this table, and splitting a large dataset is not free.
            train, val = stratified_split([(path, index) for path, index, _ in report.samples], data.val_fraction,
                                          data.split_seed)
            counts = {part: Counter(report.classes[index] for _, index in samples)
                      for part, samples in (("train", train), ("val", val))}
            self._split_cache = (report, settings, counts)
        return self._split_cache[2], f"validation fraction {data.val_fraction:g}, split seed {data.split_seed}"

    @Slot(list)
    def _on_thumbnails_loaded(self, thumbnails: list) -> None:
        self.thumbnailsView.clear()
        for class_name, path, image in thumbnails:
            item = QListWidgetItem(QIcon(QPixmap.fromImage(image)), class_name)
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(path)
            self.thumbnailsView.addItem(item)
        self.thumbnails_shown.emit(len(thumbnails))

    # --- augmentation preview ---------------------------------------------------------------------------------
    @Slot()
    def _on_augment_preview_clicked(self) -> None:
        report = self.document.scan
        if report is None or not report.samples:
            return
        selected = self.thumbnailsView.currentItem()
        self.preview(selected.data(Qt.ItemDataRole.UserRole) if selected is not None else report.samples[0][0])

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_thumbnail_chosen(self, current: QListWidgetItem | None, _previous=None) -> None:
        if current is not None:
            self.preview(current.data(Qt.ItemDataRole.UserRole))

    def preview(self, path: str) -> None:
        """Run the training transform PREVIEW_COUNT times on `path` (a new seed each time: new draws)."""
        recipe = self.document.recipe
        self._preview_seed += 1  # a new seed per request, and the id that tells a late answer from this one
        self._preview_path = path
        self._preview_settings = self._look()
        try:
            preprocessing = self._preprocessing(recipe)
        except BadInputError as exc:
            self._show_preview_failure(str(exc))
            return
        if preprocessing is None:  # asked again when the engine has loaded (_on_recipe_changed → _refresh_preview)
            self._show_preview_failure(f"The preview shows the model's training transform: {LOADING_TEXT}")
            return
        if not self._ensure_thread():
            return
        flip = " (mirrored at random)" if recipe.data.horizontal_flip and recipe.data.augmentation != "none" else ""
        self.augmentStatusLabel.setText(f"{os.path.basename(path)} through the training transform{flip}")
        self.preview_requested.emit(path, preprocessing, recipe.data.augmentation, recipe.data.horizontal_flip,
                                    self._preview_seed, PREVIEW_COUNT)

    @property
    def previewed_path(self) -> str:
        """The image the augmentation preview shows or is drawing ("" when none)."""
        return self._preview_path

    def _look(self) -> tuple:
        data, model = self.document.recipe.data, self.document.recipe.model
        return (data.augmentation, data.horizontal_flip, data.resize_size, data.crop_size, model.arch,
                model.weights, model.weights_file, model.in_channels)

    @Slot()
    def _on_engine_loaded(self) -> None:
        if self._preview_path:  # it said "loading": the model's transform can be drawn now
            self.preview(self._preview_path)

    def _refresh_preview(self) -> None:
        """A preview on display follows the settings that decide its look: it is drawn again when they change."""
        if self._preview_path and self._preview_settings != self._look():
            self.preview(self._preview_path)

    def _clear_preview(self) -> None:
        self._preview_seed += 1  # whatever is on its way belongs to what is cleared
        self._preview_path = ""
        self._preview_settings = None
        self.augmentPreview.clear()
        self.augmentStatusLabel.setText("")

    @Slot(int, list)
    def _on_previews_ready(self, seed: int, images: list) -> None:
        if seed != self._preview_seed:
            return  # asked for before another folder, image or setting: not what the panel shows now
        self.augmentPreview.clear()
        for image in images:
            self.augmentPreview.addItem(QListWidgetItem(QIcon(QPixmap.fromImage(image)), ""))
        self.augment_preview_shown.emit(len(images))

    @Slot(int, str)
    def _on_preview_failed(self, seed: int, message: str) -> None:
        if seed == self._preview_seed:
            self._show_preview_failure(message)

    def _show_preview_failure(self, message: str) -> None:
        self.augmentPreview.clear()
        self.augmentStatusLabel.setText(message)

    # --- the worker thread ------------------------------------------------------------------------------------
    def _ensure_thread(self) -> bool:
        return self.worker_thread.ensure()


# --- helpers ---------------------------------------------------------------------------------------------------


def _item(text: str, error: bool = False, align_right: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if error:
        item.setForeground(QBrush(ERROR_COLOUR))
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _icon_list(name: str, icon_size: int) -> QListWidget:
    view = QListWidget(objectName=name)
    view.setViewMode(QListWidget.ViewMode.IconMode)
    view.setIconSize(QSize(icon_size, icon_size))
    view.setResizeMode(QListWidget.ResizeMode.Adjust)
    view.setMovement(QListWidget.Movement.Static)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setDragDropMode(QAbstractItemView.DragDropMode.NoDragDrop)  # icon mode would accept drops of its own
    view.setAcceptDrops(False)
    return view


def _size_spin(name: str) -> QSpinBox:
    spin = QSpinBox(objectName=name)
    spin.setRange(0, 4096)
    spin.setSuffix(" px")
    spin.setSpecialValueText("from the weights")  # shown for 0
    return spin


def _set_quietly(widget: QObject, setter, value) -> None:
    """Show a recipe value without echoing it back into the recipe as an edit."""
    blocker = QSignalBlocker(widget)
    setter(value)
    del blocker


def _relative(path: str, root: str) -> str:
    try:
        relative = os.path.relpath(path, root)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def _dropped_folder(event: QDropEvent | QDragEnterEvent) -> str | None:
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return None
    return next((path for path in local_paths(mime.urls()) if os.path.isdir(path)), None)


def looks_like_characters(classes: list[str]) -> bool:
    """Class names that are digits or single letters ("0" … "9", "a" … "z", "7_seven", "digit_5", "letter-b"):
    characters, which a mirror turns into other shapes. Only the first word was checked once, and classes named
    digit_5 … digit_9 got no warning (issue 28)."""
    if len(classes) < 2:
        return False
    return all(_names_a_character(name) for name in classes)


def _names_a_character(name: str) -> bool:
    words = [w for w in re.split(r"[_\-\s.]+", name) if w]
    if words and re.fullmatch(r"\d+|[^\W\d_]", words[0]):  # "7", "10", "a", "7_seven"
        return True
    # A later word of one character ("digit_5"); longer numbers there are more often versions ("resnet_50").
    return any(re.fullmatch(r"\d|[^\W\d_]", word) for word in words[1:])


def _imbalance_text(report: ScanReport | None) -> str:
    if report is None or not report.classes:
        return ""
    if report.empty_classes:
        return ("Warning: no training images for " + ", ".join(report.empty_classes) +
                ". Training needs images in every class.")
    ratio = report.imbalance
    if ratio > IMBALANCE_WARNING_RATIO:
        return (f"Warning: the largest class has {ratio:.1f}× the images of the smallest. Accuracy can hide poor "
                "results on the small classes; look at per-class results.")
    return f"Balance: the largest class has {ratio:.1f}× the images of the smallest."
