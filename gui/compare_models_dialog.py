"""Model → "Compare architectures…": compare-models (engine/advise/compare.py) on the current recipe's data, run as a
studio job that waits for the device, with each model's stage, progress and Cancel (gui/measure_dialog.py); a table
of every model (measured, or why not: no local weights), an accuracy-vs-latency scatter with the Pareto front, and
"Use in recipe" that puts the chosen model into the recipe. The results are kept as the CLI keeps them (the runs
folder's comparisons/), those of a comparison stopped part-way too."""

from __future__ import annotations

import copy

import pyqtgraph as pg  # PySide6 is imported first (gui/__init__ via the measure dialog's imports)
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.document import RecipeDocument
from gui.measure_dialog import MeasureDialog
from gui.widgets.plot_style import new_plot, series_color

DEFAULT_MODELS = "resnet18,resnet50,mobilenet_v3_large,mobilenet_v3_small,efficientnet_b0,convnext_tiny"
COLUMNS = ("Model", "CV accuracy", "Val accuracy", "Features s", "Latency ms", "ONNX ms", "Params M", "File MB",
           "Peak MB", "Status")


def run_comparison(recipe, archs, should_stop, progress, onnx: bool = False):
    """The job's engine call: the comparison (the models measured so far, when stopped), kept under the runs
    folder."""
    from engine.advise.compare import CompareSettings, compare_models, default_results_path, save_comparison

    comparison = compare_models(recipe, archs, CompareSettings(onnx=onnx),
                                lambda p: progress(f"[{p.index + 1}/{p.models}] {p.arch}: {p.stage}", p.done,
                                                   p.total), should_stop)
    save_comparison(comparison, default_results_path(recipe))
    return comparison


def _cell(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


class CompareModelsDialog(MeasureDialog):
    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__("compare", "Model comparison", parent)
        self.setObjectName("compareModelsDialog")
        self.setWindowTitle("Compare architectures")
        self.document = document
        self.comparison = None
        self.models_edit = QLineEdit(DEFAULT_MODELS)
        self.models_edit.setObjectName("compareModelsEdit")
        self.models_edit.setToolTip("Architectures to compare, comma-separated. Only those whose pretrained weights "
                                    "are on this machine are measured; the others are listed, never downloaded.")
        self.onnx_check = QCheckBox("ONNX latency too")
        self.onnx_check.setObjectName("compareOnnxCheck")
        self.onnx_check.setToolTip("Also export each model to ONNX and time it on onnxruntime (seconds to minutes "
                                   "a model)")
        self.measure_button = QPushButton("Compare")
        self.measure_button.setObjectName("compareMeasureButton")
        self.use_button = QPushButton("Use in recipe")
        self.use_button.setObjectName("compareUseButton")
        self.use_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("compareCloseButton")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("compareTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.plot = new_plot("comparePlot", "Accuracy against latency", "batch-1 latency (ms)",
                             "cross-validated accuracy (%)",
                             tooltip="Each measured model; the line joins the Pareto front (no model is both more "
                                     "accurate and faster)")
        self.scatter = pg.ScatterPlotItem(size=11, brush=pg.mkBrush(*series_color(0)))
        self.front = pg.PlotDataItem(pen=pg.mkPen(series_color(1), width=2, style=Qt.PenStyle.DashLine))
        self.plot.addItem(self.front)
        self.plot.addItem(self.scatter)
        self.labels: list[pg.TextItem] = []

        self.measure_button.clicked.connect(self.start)
        self.use_button.clicked.connect(self.use_selected)
        self.close_button.clicked.connect(self.reject)
        self.table.itemSelectionChanged.connect(self._update_use)
        top = QHBoxLayout()
        top.addWidget(QLabel("Models:"))
        top.addWidget(self.models_edit, 1)
        top.addWidget(self.onnx_check)
        top.addWidget(self.measure_button)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.plot)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.use_button)
        bottom.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(bottom)
        self.resize(900, 640)

    @Slot()
    def start(self) -> None:
        from engine.advise.compare import parse_models
        from engine.errors import BadInputError

        try:
            archs = parse_models(self.models_edit.text())
        except BadInputError as exc:
            self.status.setText(str(exc))
            return
        recipe = copy.deepcopy(self.document.recipe)
        onnx = self.onnx_check.isChecked()
        self.start_measure(f"Comparing {len(archs)} architecture{'s' if len(archs) != 1 else ''}",
                           lambda stop, progress: run_comparison(recipe, archs, stop, progress, onnx))

    def running_changed(self, running: bool) -> None:
        self.measure_button.setEnabled(not running)
        self.models_edit.setEnabled(not running)
        self.onnx_check.setEnabled(not running)
        self._update_use()

    def on_result(self, comparison) -> None:
        self.comparison = comparison
        self._fill_table()
        self._fill_plot()
        measured = sum(r.status == "measured" for r in comparison.rows)
        ending = "stopped; the models measured before are kept" if comparison.stopped else "done"
        self.status.setText(f"{measured} of {len(comparison.rows)} models measured ({ending}): {comparison.path}")

    def _fill_table(self) -> None:
        rows = self.comparison.rows
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            pareto = r.arch in self.comparison.pareto
            status = ("Pareto front" if pareto else "measured") if r.status == "measured" else r.status
            values = (r.arch, _cell(r.cv_accuracy and 100 * r.cv_accuracy, ".1f"),
                      _cell(r.val_accuracy and 100 * r.val_accuracy, ".1f"), _cell(r.extraction_seconds, ".1f"),
                      _cell(r.latency_ms, ".2f"), _cell(r.onnx_latency_ms, ".2f"),
                      _cell(r.parameters and r.parameters / 1e6, ".2f"),
                      _cell(r.file_mb, ".1f"), _cell(r.peak_memory_mb, ".0f"), status)
            for j, value in enumerate(values):
                item = QTableWidgetItem(value)
                if j == len(values) - 1 and r.detail:
                    item.setToolTip(r.detail)
                if j == COLUMNS.index("ONNX ms") and r.onnx_note:
                    item.setToolTip(r.onnx_note)
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()

    def _fill_plot(self) -> None:
        for label in self.labels:
            self.plot.removeItem(label)
        self.labels = []
        measured = [r for r in self.comparison.rows if r.status == "measured" and r.cv_accuracy is not None]
        self.scatter.setData([r.latency_ms for r in measured], [100 * r.cv_accuracy for r in measured])
        front = [r for r in measured if r.arch in self.comparison.pareto]
        front.sort(key=lambda r: r.latency_ms)
        self.front.setData([r.latency_ms for r in front], [100 * r.cv_accuracy for r in front])
        for r in measured:
            label = pg.TextItem(r.arch, anchor=(0, 1))
            label.setPos(r.latency_ms, 100 * r.cv_accuracy)
            self.plot.addItem(label)
            self.labels.append(label)

    def selected_arch(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or self.comparison is None:
            return None
        row = self.comparison.rows[rows[0].row()]
        return row.arch if row.status == "measured" else None

    def select(self, arch: str) -> None:
        for i, r in enumerate(self.comparison.rows if self.comparison else []):
            if r.arch == arch:
                self.table.selectRow(i)

    @Slot()
    def _update_use(self) -> None:
        self.use_button.setEnabled(not self.running and self.selected_arch() is not None)

    @Slot()
    def use_selected(self) -> None:
        """The chosen model into the recipe as the Model tab chooses one (engine/planning/model_edits.py: a generated
        run name follows), with the exact weights the comparison measured."""
        from engine.planning.model_edits import set_arch, set_weights

        arch = self.selected_arch()
        if arch is None:
            return
        row = next(r for r in self.comparison.rows if r.arch == arch)

        def change(recipe) -> None:
            set_arch(recipe, arch)
            set_weights(recipe, row.weights)

        self.document.edit(change)
        self.status.setText(f"The recipe now uses {arch} ({row.weights}).")
