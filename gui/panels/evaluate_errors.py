"""The Evaluate tab's "Errors" page: where the model errs. The confusion matrix as a heat map with counts (raw or
normalised by row); clicking a cell fills the gallery with exactly that cell's images (`Evaluation.cell`), sortable
by loss or confidence, each with its top-k and its Grad-CAM heat map; the per-class table; and the misclassified
images exported as CSV for relabelling.

Heat maps are computed by an ExplanationWorker in a thread this view owns, for the images on display, in display
order (the first MAX_EXPLAINED of them); clicking another cell abandons the previous cell's remaining ones."""

from __future__ import annotations

import os

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.errors import ThawError
from engine.infer.evaluation import Evaluation, ImageResult
from gui.models.class_metrics_model import ClassMetricsModel, ValueRole
from gui.models.confusion_model import ConfusionModel
from gui.widgets.gallery import SORT_ORDERS, ImageGallery, PathRole, sort_results
from gui.widgets.heat_cell import HeatCellDelegate
from gui.widgets.relabel_bar import RelabelBar, label_after
from gui.workers.evaluation import ExplanationWorker
from gui.workers.requests import PanelThread

MAX_EXPLAINED = 200  # heat maps per gallery filling: a diagonal cell of thousands must not occupy a core for minutes
CELL_SIDE = 56  # pixels: confusion-matrix cells are square
CSV_FILTER = "CSV (*.csv);;All files (*)"
ERROR_STYLE = "color: #c62828;"


class ErrorsView(QWidget):
    explain_requested = Signal(int, str, list)  # → ExplanationWorker.explain_images
    gallery_filled = Signal(int)  # images now in the gallery
    thumbnails_finished = Signal()  # every heat map asked for the gallery's images has arrived
    image_selected = Signal(str)  # a gallery image was selected: its path
    exported = Signal(str)  # the CSV written

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.evaluation: Evaluation | None = None
        self._worker = ExplanationWorker()
        self.worker_thread = PanelThread("evaluationGalleryThread", [self._worker], self)
        self._request = 0
        self._pending: set[str] = set()  # paths asked for in the current request, not yet answered
        self._shown: tuple[str, str] | None = None  # (true, predicted) of the cell on display; None: every error
        self._build()
        self._connect()
        self.show_evaluation(None)

    # --- construction -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.confusion_model = ConfusionModel(self)
        self.confusionTable = QTableView(objectName="confusionTable")
        self.confusionTable.setModel(self.confusion_model)
        self.confusionTable.setItemDelegate(HeatCellDelegate(self.confusionTable))
        self.confusionTable.setToolTip("Rows: the true class; columns: the predicted class. Click a cell to see its "
                                       "images in the gallery")
        self.confusionTable.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.confusionTable.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for header in (self.confusionTable.horizontalHeader(), self.confusionTable.verticalHeader()):
            header.setDefaultSectionSize(CELL_SIDE)
        self.confusionTable.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.confusionTable.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.confusionTable.horizontalHeader().setMinimumSectionSize(CELL_SIDE)
        self.normalizeConfusionCheck = QCheckBox("Normalise by row", objectName="normalizeConfusionCheck")
        self.normalizeConfusionCheck.setToolTip("Show each true class's row as shares that sum to 1 (the diagonal is "
                                                "then the class's recall) instead of counts")
        confusion_header = QHBoxLayout()
        caption = QLabel("Confusion matrix — rows: true class · columns: predicted")
        caption.setWordWrap(True)  # wraps rather than widen the tab past a 1024-pixel screen (issue 28)
        confusion_header.addWidget(caption, 1)
        confusion_header.addWidget(self.normalizeConfusionCheck)

        self.class_metrics_model = ClassMetricsModel(self)
        sorter = QSortFilterProxyModel(self)
        sorter.setSourceModel(self.class_metrics_model)
        sorter.setSortRole(ValueRole)
        self.perClassTable = QTableView(objectName="perClassTable")
        self.perClassTable.setModel(sorter)
        self.perClassTable.setSortingEnabled(True)
        self.perClassTable.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the classes' own order until a click
        self.perClassTable.setToolTip("Precision, recall, F1 and support per class; click a header to sort")
        self.perClassTable.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.perClassTable.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.perClassTable.verticalHeader().setVisible(False)
        self.perClassTable.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

        left = QSplitter(Qt.Orientation.Vertical)
        matrix = QWidget()
        matrix_layout = QVBoxLayout(matrix)
        matrix_layout.setContentsMargins(0, 0, 0, 0)
        matrix_layout.addLayout(confusion_header)
        matrix_layout.addWidget(self.confusionTable, 1)
        left.addWidget(matrix)
        left.addWidget(self.perClassTable)

        self.galleryLabel = QLabel(objectName="galleryLabel")
        self.galleryLabel.setWordWrap(True)
        self.gallerySortCombo = QComboBox(objectName="gallerySortCombo")
        for order in SORT_ORDERS:
            self.gallerySortCombo.addItem(order.title, order.name)
        self.gallerySortCombo.setToolTip("The gallery's order; by loss, highest first, it is fastai's “top losses”")
        self.showMisclassifiedButton = QPushButton("All errors", objectName="showMisclassifiedButton")
        self.showMisclassifiedButton.setToolTip("Fill the gallery with every misclassified image")
        self.galleryHeatmapToggle = QCheckBox("Heat maps", objectName="galleryHeatmapToggle")
        self.galleryHeatmapToggle.setChecked(True)
        self.galleryHeatmapToggle.setToolTip("Show each image with its Grad-CAM heat map for the predicted class "
                                             "(where the model looked), or the plain crop")
        self.exportMisclassifiedButton = QPushButton("Export misclassified as CSV…",
                                                     objectName="exportMisclassifiedButton")
        self.exportMisclassifiedButton.setToolTip("Write every misclassified image (path, true and predicted class, "
                                                  "confidence, loss, top-k) to a CSV file, for relabelling")
        self.gallery = ImageGallery()
        self.gallery.setObjectName("evaluationGallery")
        self.gallery.setToolTip("The images behind the chosen cell; hover for the top-k, select one to look at its "
                                "feature maps on the Network page")
        self.galleryStatusLabel = QLabel(objectName="galleryStatusLabel")
        self.galleryStatusLabel.setWordWrap(True)
        self.galleryRelabelBar = RelabelBar("gallery")
        # Two rows: in one, the order, the heat maps and both buttons made the tab wider than a 1024-pixel screen
        # (issue 28: the Evaluate tab scrolled sideways with its buttons cut off).
        order = QHBoxLayout()
        order.addWidget(self.gallerySortCombo, 1)
        order.addWidget(self.galleryHeatmapToggle)
        actions = QHBoxLayout()
        actions.addWidget(self.showMisclassifiedButton)
        actions.addWidget(self.exportMisclassifiedButton)
        actions.addStretch(1)
        controls = QVBoxLayout()
        controls.addLayout(order)
        controls.addLayout(actions)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.galleryLabel)
        right_layout.addLayout(controls)
        right_layout.addWidget(self.gallery, 1)
        right_layout.addWidget(self.galleryRelabelBar)
        right_layout.addWidget(self.galleryStatusLabel)

        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(right)
        body.setStretchFactor(0, 2)
        body.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(body)

    def _connect(self) -> None:
        self.confusionTable.clicked.connect(self._on_cell_clicked)
        self.normalizeConfusionCheck.toggled.connect(self.confusion_model.set_normalized)
        self.gallerySortCombo.currentIndexChanged.connect(self._on_sort_changed)
        self.showMisclassifiedButton.clicked.connect(self.show_misclassified)
        self.galleryHeatmapToggle.toggled.connect(self.gallery.set_heatmaps_shown)
        self.exportMisclassifiedButton.clicked.connect(self._on_export_clicked)
        self.gallery.currentItemChanged.connect(self._on_gallery_item_changed)
        self.explain_requested.connect(self._worker.explain_images)
        self._worker.image_explained.connect(self._on_image_explained)
        self._worker.images_explained.connect(self._on_images_explained)
        self.galleryRelabelBar.image_relabelled.connect(self._on_image_relabelled)

    # --- an evaluation ------------------------------------------------------------------------------------------
    def show_evaluation(self, evaluation: Evaluation | None) -> None:
        """Show an evaluation (None: nothing); the gallery starts with every error, highest loss first."""
        self.evaluation = evaluation
        self.gallery.forget_thumbnails()
        if evaluation is None:
            self.confusion_model.clear()
            self.class_metrics_model.set_metrics([])
            self._fill([], None)
            self.galleryLabel.setText("No evaluation to show.")
            for widget in (self.showMisclassifiedButton, self.exportMisclassifiedButton):
                widget.setEnabled(False)
            return
        self.confusion_model.set_matrix(evaluation.classes, evaluation.metrics.confusion)
        self.class_metrics_model.set_metrics(evaluation.metrics.per_class)
        wrong = bool(evaluation.misclassified())
        self.showMisclassifiedButton.setEnabled(wrong)
        self.exportMisclassifiedButton.setEnabled(wrong)
        self.show_misclassified()

    def show_cell(self, true_class: str, predicted: str) -> None:
        """Fill the gallery with exactly the images of one confusion-matrix cell."""
        if self.evaluation is None:
            return
        self._fill(self.evaluation.cell(true_class, predicted), (true_class, predicted))

    @Slot()
    def show_misclassified(self) -> None:
        if self.evaluation is None:
            return
        self.confusionTable.clearSelection()
        self._fill(self.evaluation.misclassified(), None)

    @property
    def sort_order(self) -> str:
        return self.gallerySortCombo.currentData()

    def set_sort_order(self, name: str) -> None:
        self.gallerySortCombo.setCurrentIndex(self.gallerySortCombo.findData(name))

    def _fill(self, results: list[ImageResult], cell: tuple[str, str] | None) -> None:
        self._shown = cell
        self.gallery.show_results(sort_results(results, self.sort_order))
        if cell is not None:
            true_class, predicted = cell
            what = (f"{true_class}, predicted right" if true_class == predicted
                    else f"{true_class} predicted as {predicted}")
            self.galleryLabel.setText(f"{what}: {len(results)} image{'s' if len(results) != 1 else ''}")
        elif self.evaluation is not None:
            self.galleryLabel.setText(f"Every misclassified image: {len(results)}" if results
                                      else "No image was misclassified.")
        self.gallery_filled.emit(len(results))
        self._request_thumbnails()

    @Slot(QModelIndex)
    def _on_cell_clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.show_cell(*self.confusion_model.classes_at(index))

    @Slot(int)
    def _on_sort_changed(self, _index: int) -> None:
        if self.evaluation is None:
            return
        if self._shown is None:
            self._fill(self.evaluation.misclassified(), None)
        else:
            self.show_cell(*self._shown)

    @Slot()
    def _on_gallery_item_changed(self, current, _previous) -> None:
        self.galleryRelabelBar.set_image("")
        if current is not None:
            path = current.data(PathRole)
            result = next((r for r in self.gallery.results() if r.path == path), None)
            self.galleryRelabelBar.set_image(path, suggested=result.predicted if result is not None else "")
            self.image_selected.emit(path)

    @Slot(str, object)
    def _on_image_relabelled(self, root: str, change) -> None:
        """The gallery item follows its image: its caption says where it went (the evaluation keeps what was
        measured; evaluate again to score the fixed labels)."""
        before, after = os.path.join(root, change.source), os.path.join(root, change.target)
        for row in range(self.gallery.count()):
            item = self.gallery.item(row)
            if os.path.abspath(item.data(PathRole)) == os.path.abspath(before):
                where = label_after(root, change) or "trash"
                item.setText(item.text().split("\n⇒")[0] + f"\n⇒ {where}")
                item.setData(PathRole, after)

    # --- heat maps ----------------------------------------------------------------------------------------------
    def _request_thumbnails(self) -> None:
        missing = self.gallery.missing_thumbnails()
        asked = missing[:MAX_EXPLAINED]
        if self.evaluation is None or not asked or not self._ensure_thread():
            self._worker.cancel()  # the previous cell's remaining heat maps are no longer wanted
            self._pending = set()
            self._show_thumbnail_status()
            self.thumbnails_finished.emit()
            return
        self._request = self._worker.begin_request()
        self._pending = set(asked)
        self._show_thumbnail_status()
        self.explain_requested.emit(self._request, self.evaluation.checkpoint, asked)

    @Slot(int, dict)
    def _on_image_explained(self, request: int, result: dict) -> None:
        if request != self._request:
            return
        if result["error"]:
            self.gallery.set_error(result["path"], result["error"])
        else:
            self.gallery.set_thumbnail(result["path"], result["overlay"], result["plain"])
        self._pending.discard(result["path"])
        self._show_thumbnail_status()

    @Slot(int)
    def _on_images_explained(self, request: int) -> None:
        if request == self._request:
            self._pending = set()
            self._show_thumbnail_status()
            self.thumbnails_finished.emit()

    def _show_thumbnail_status(self) -> None:
        self.galleryStatusLabel.setStyleSheet("")
        total = self.gallery.count()
        if self._pending:
            text = f"Computing heat maps … {len(self._pending)} to go"
        elif total > MAX_EXPLAINED and self.gallery.missing_thumbnails():
            text = (f"Heat maps for the first {MAX_EXPLAINED} of {total} images in this order (sort differently to "
                    "see others).")
        else:
            text = "Heat maps: Grad-CAM for the predicted class, over the crop the model saw." if total else ""
        self.galleryStatusLabel.setText(text)

    # --- export ---------------------------------------------------------------------------------------------------
    @Slot()
    def _on_export_clicked(self) -> None:
        if self.evaluation is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export misclassified images", "misclassified.csv", CSV_FILTER)
        if path:
            self.export_misclassified(path)

    def export_misclassified(self, path: str) -> bool:
        """Write every misclassified image to `path` (CSV); a failure is said under the gallery."""
        try:
            self.evaluation.write_csv(path, self.evaluation.misclassified())
        except ThawError as exc:
            self.galleryStatusLabel.setStyleSheet(ERROR_STYLE)
            self.galleryStatusLabel.setText(str(exc))
            return False
        self.galleryStatusLabel.setStyleSheet("")
        self.galleryStatusLabel.setText(f"Wrote {len(self.evaluation.misclassified())} misclassified images to {path}")
        self.exported.emit(path)
        return True

    # --- the worker thread ------------------------------------------------------------------------------------------
    def _ensure_thread(self) -> bool:
        return self.worker_thread.ensure()

    def shutdown(self) -> None:
        self.worker_thread.shutdown()
