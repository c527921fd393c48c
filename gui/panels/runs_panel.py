"""The Runs tab: every run in the runs folder as a sortable table; selected runs compared side by side.

Selecting two runs answers the lesson's exercise "compare feature extraction and fine-tuning: accuracy and
training time" in one view: their validation accuracy per epoch overlaid, their training times as bars (pauses
excluded, as everywhere), and a sentence with the accuracy difference and the speed ratio.

A run's name and note are edited in place (double-click, F2, or Rename / Note); neither touches what the run
recorded (engine/train/runs.py). Delete asks first, then moves the run folders to the system trash; where there is
no trash it asks again before deleting for good.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it
from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QSizePolicy,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.errors import BadInputError, RecipeError
from engine.recipe import Recipe
from engine.train.narrate import phase_results_text
from engine.train.runs import (
    ANNOTATIONS_FILE,
    RECIPE_FILE,
    SUMMARY_FILE,
    RunRecord,
    TrashUnavailableError,
    annotate_run,
    checkpoint_path,
    delete_run,
    list_runs,
    read_metrics,
    rename_run,
)
from gui.document import RecipeDocument
from gui.widgets.buttons import named_button
from gui.widgets.formatting import duration_text
from gui.widgets.plot_style import new_plot, series_color
from gui.widgets.tooltips import set_tooltips


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _by_phase(record: RunRecord) -> str:
    if len(record.phase_results) < 2:
        return ""
    return ("⚠ " if record.setbacks else "") + phase_results_text(record.phase_results)


def _one_line(note: str) -> str:
    return " · ".join(line.strip() for line in note.splitlines() if line.strip())


@dataclass(frozen=True)
class Column:
    title: str
    value: Callable[[RunRecord], Any]
    text: Callable[[Any], str] = str


COLUMNS = (
    Column("Name", lambda r: r.name),
    Column("Note", lambda r: r.note or None, _one_line),
    Column("Strategy", lambda r: r.strategy),
    Column("Model", lambda r: r.arch),
    Column("Status", lambda r: r.status),
    Column("Best val acc", lambda r: r.best_val_acc, _percent),
    Column("Best epoch", lambda r: r.best_epoch),
    Column("Final val acc", lambda r: r.final_val_acc, _percent),
    # Where each phase left the model: feature extraction vs fine-tuning read off one row; ⚠ a phase set it back
    Column("Val acc by phase", lambda r: _by_phase(r) or None),
    Column("Training time", lambda r: r.wall_seconds, duration_text),
    Column("Trainable params", lambda r: r.trainable_params, lambda v: f"{v:,}"),
    Column("Device", lambda r: r.device),
    Column("Started", lambda r: r.started),
)
STARTED_COLUMN = len(COLUMNS) - 1
NAME_COLUMN, NOTE_COLUMN = 0, 1
NOTE_WIDTH = 260
FOLLOW_INTERVAL_MS = 2000  # how often the shown table looks for runs that started or ended elsewhere
TIPS = {
    "runsTable": "Every run in the runs folder; select two or more to compare them. Double-click a name or a note "
                 "to edit it; Delete moves the selected runs to the trash",
    "runsComparePlot": "Validation accuracy per epoch of the selected runs",
    "runsTimePlot": "Training time of the selected runs (pauses excluded)",
}


class RunsTableModel(QAbstractTableModel):
    """A Qt table over a list of RunRecords (the engine's view of the runs folder). Sorting keeps selections.
    Names and notes are editable: an edit is written by the engine (rename_run / annotate_run) and read back."""

    edit_failed = Signal(str)  # why a name or note was refused

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._records: list[RunRecord] = []

    def set_records(self, records: list[RunRecord]) -> None:
        self.beginResetModel()
        self._records = list(records)
        self.endResetModel()

    def record(self, row: int) -> RunRecord:
        return self._records[row]

    def row_of(self, path: str) -> int:
        return next((i for i, r in enumerate(self._records) if r.path == path), -1)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802 - Qt's signature
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section].title
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        record, column = self._records[index.row()], COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            value = column.value(record)
            return ("" if index.column() == NOTE_COLUMN else "—") if value is None else column.text(value)
        if role == Qt.ItemDataRole.EditRole and index.column() in (NAME_COLUMN, NOTE_COLUMN):
            return record.name if index.column() == NAME_COLUMN else _one_line(record.note)
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [record.path]
            if record.name != record.recipe_name:
                lines.append(f"renamed; the recipe's name is {record.recipe_name}")
            if record.note:
                lines.append(f"Note: {record.note}")
            if len(record.phase_results) >= 2:
                lines.append("Validation accuracy at the end of each phase: "
                             + phase_results_text(record.phase_results))
            lines.extend(record.setbacks)
            return "\n".join(lines)
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(column.value(record), (int, float)):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        flags = super().flags(index)
        if index.isValid() and index.column() in (NAME_COLUMN, NOTE_COLUMN):
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def setData(self, index: QModelIndex, value, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        if role != Qt.ItemDataRole.EditRole or not index.isValid() or index.column() not in (NAME_COLUMN,
                                                                                                NOTE_COLUMN):
            return False
        record = self._records[index.row()]
        try:
            if index.column() == NAME_COLUMN:
                rename_run(record.path, str(value))
            else:
                annotate_run(record.path, str(value))
        except BadInputError as exc:
            self.edit_failed.emit(str(exc))
            return False
        fresh = RunRecord.load(record.path)
        if fresh is not None:
            self._records[index.row()] = fresh
        self.dataChanged.emit(self.index(index.row(), 0), self.index(index.row(), len(COLUMNS) - 1))
        return True

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        value = COLUMNS[column].value
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        moved = [(self._records[i.row()], i.column()) for i in persistent]
        known = sorted((r for r in self._records if value(r) is not None), key=value,
                       reverse=order == Qt.SortOrder.DescendingOrder)
        self._records = known + [r for r in self._records if value(r) is None]  # unknown values last
        rows = {id(r): i for i, r in enumerate(self._records)}
        self.changePersistentIndexList(persistent, [self.index(rows[id(r)], c) for r, c in moved])
        self.layoutChanged.emit()


def runs_folder_stamp(root: Path | None) -> tuple:
    """What changes when a run starts, ends, is renamed or annotated: each run folder's name and its summary's and
    annotations' modification times (cheap: no file is read)."""
    if root is None:
        return ()
    try:
        folders = sorted(entry.path for entry in os.scandir(root) if entry.is_dir())
    except OSError:
        return ()
    stamp = []
    for folder in folders:
        for name in (SUMMARY_FILE, ANNOTATIONS_FILE):
            try:
                stamp.append((folder, name, os.stat(os.path.join(folder, name)).st_mtime_ns))
            except OSError:
                stamp.append((folder, name, 0))
    return tuple(stamp)


def seconds_per_epoch(record: RunRecord) -> float | None:
    if not record.wall_seconds or not record.epochs_done:
        return None
    return record.wall_seconds / record.epochs_done


def _speed_lines(timed: list[RunRecord]) -> list[str]:
    """Who was faster: the whole run first (what the user waited for), then per epoch, which differs when the runs
    train different numbers of epochs (issue 28: "2.9× faster per epoch" for runs of 0:32 and 9:33)."""
    if len(timed) < 2:
        return []
    fast = min(timed, key=lambda r: r.wall_seconds)
    slow = max(timed, key=lambda r: r.wall_seconds)
    if fast.wall_seconds == slow.wall_seconds:
        return [f"Equally fast: every run took {duration_text(fast.wall_seconds)}."]
    line = (f"Fastest: {fast.name} ({fast.strategy}) took {duration_text(fast.wall_seconds)}, "
            f"{slow.wall_seconds / fast.wall_seconds:.1f}× less than {slow.name} ({slow.strategy}, "
            f"{duration_text(slow.wall_seconds)})")
    fast_epoch, slow_epoch = seconds_per_epoch(fast), seconds_per_epoch(slow)
    if fast.epochs_done != slow.epochs_done and fast_epoch and slow_epoch:
        ratio = slow_epoch / fast_epoch
        pace = (f"{ratio:.1f}× faster per epoch" if ratio > 1 else f"{1 / ratio:.1f}× slower per epoch"
                if ratio < 1 else "as fast per epoch")
        line += f"; {pace}, over {fast.epochs_done} epochs against {slow.epochs_done}"
    return [line + "."]


def comparison_text(records: list[RunRecord]) -> str:
    """A few lines a user can read aloud: each run's best accuracy and time; who is more accurate, who faster."""
    lines = []
    for r in records:
        best = _percent(r.best_val_acc) if r.best_val_acc is not None else "—"
        wall = duration_text(r.wall_seconds) if r.wall_seconds is not None else "—"
        per_epoch = seconds_per_epoch(r)
        pace = f", {per_epoch:.1f} s/epoch" if per_epoch is not None else ""
        final = (f" (epoch {r.best_epoch}; final {_percent(r.final_val_acc)})"
                 if r.best_epoch is not None and r.final_val_acc is not None else "")
        lines.append(f"{r.name} ({r.strategy}, {r.arch}): best val acc {best}{final}, {wall} for {r.epochs_done} "
                     f"epochs{pace}")
        if len(r.phase_results) >= 2:
            lines.append(f"  by phase: {phase_results_text(r.phase_results)}")
        lines.extend(f"  {line}" for line in r.setbacks)
    scored = [r for r in records if r.best_val_acc is not None]
    if len(scored) >= 2:
        top = max(scored, key=lambda r: r.best_val_acc)
        low = min(scored, key=lambda r: r.best_val_acc)
        if top.best_val_acc == low.best_val_acc:  # "+0.0 points over" itself said nothing (issue 28)
            lines.append(f"Equally accurate: every run reached {_percent(top.best_val_acc)}.")
        else:
            lines.append(f"Most accurate: {top.name} ({top.strategy}), "
                         f"{100 * (top.best_val_acc - low.best_val_acc):+.1f} points over {low.name} "
                         f"({low.strategy}).")
    lines.extend(_speed_lines([r for r in records if r.wall_seconds]))
    return "\n".join(lines)


class RunComparison(QWidget):
    """Validation accuracy per epoch of the selected runs overlaid, their training times as bars, and a summary."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.runsComparePlot = new_plot("runsComparePlot", "Validation accuracy", "epoch", "val accuracy (%)",
                                        legend=True)
        self._legend = self.runsComparePlot.getPlotItem().legend
        self.runsTimePlot = new_plot("runsTimePlot", "Training time")
        self.runsTimePlot.invertY(True)  # the first selected run on top, as in the table
        self._bars = pg.BarGraphItem(x0=0, y=[], width=[], height=0.6, pen=None)  # horizontal: names fit on the y axis
        self.runsTimePlot.addItem(self._bars)
        self.runsSummaryLabel = QLabel("Select two or more runs to compare their accuracy and training time.")
        self.runsSummaryLabel.setObjectName("runsSummaryLabel")
        self.runsSummaryLabel.setWordWrap(True)
        self.runsSummaryLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._curves: list[pg.PlotDataItem] = []

        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.runsComparePlot)
        plots.addWidget(self.runsTimePlot)
        plots.setStretchFactor(0, 3)
        plots.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(plots, 1)
        layout.addWidget(self.runsSummaryLabel)

    def accuracy_curves(self) -> list[pg.PlotDataItem]:
        """The curves that currently show a run (one per selected run)."""
        return [c for c in self._curves if c.isVisible()]

    def show_runs(self, records: list[RunRecord]) -> None:
        for i, record in enumerate(records):
            rows = [row for row in read_metrics(record.path) if row.get("val_acc") is not None]
            curve = self._curve(i)
            curve.setData([row["epoch"] for row in rows], [100 * row["val_acc"] for row in rows])
            self._legend.removeItem(curve)
            self._legend.addItem(curve, f"{record.name} ({record.strategy})")
            curve.show()
        for curve in self._curves[len(records):]:
            curve.setData([], [])
            self._legend.removeItem(curve)
            curve.hide()
        self._show_times(records)
        if len(records) >= 2:
            self.runsSummaryLabel.setText(comparison_text(records))
        elif records:
            self.runsSummaryLabel.setText(comparison_text(records) + "\nSelect another run to compare.")
        else:
            self.runsSummaryLabel.setText("Select two or more runs to compare their accuracy and training time.")

    def bar_lengths(self) -> list[float]:
        return list(self._bars.opts["width"])

    def _show_times(self, records: list[RunRecord]) -> None:
        seconds = [r.wall_seconds or 0.0 for r in records]
        unit, scale = ("h", 3600) if max(seconds, default=0) > 7200 else (
            ("min", 60) if max(seconds, default=0) > 120 else ("s", 1))
        colors = [self._color(i) for i in range(len(records))]
        self._bars.setOpts(x0=0, y=list(range(len(records))), width=[s / scale for s in seconds], height=0.6,
                           brushes=colors)
        self.runsTimePlot.setLabel("bottom", f"training time ({unit})")
        # Named as the table names them (a renamed run by its new name), not by strategy: two runs of one
        # strategy would read the same.
        self.runsTimePlot.getAxis("left").setTicks([[(i, r.name) for i, r in enumerate(records)]])

    def _curve(self, i: int) -> pg.PlotDataItem:
        while len(self._curves) <= i:
            color = self._color(len(self._curves))
            curve = self.runsComparePlot.plot([], [], pen=pg.mkPen(color, width=2), symbol="o", symbolSize=6,
                                              symbolBrush=color, symbolPen=None)
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")
            self._curves.append(curve)
        return self._curves[i]

    @staticmethod
    def _color(i: int):
        return series_color(i)


class RunsPanel(QWidget):
    """The runs table, the comparison of the selected runs, and actions on a run (open its recipe, use it)."""

    checkpoint_chosen = Signal(str)  # a checkpoint file for the inference tab
    runs_deleted = Signal(list)  # the folders of runs just deleted (other tabs list runs too)

    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runsPanel")
        self._document = document
        self._root: Path | None = None
        self.show_error_dialogs = True  # False: errors are not shown in a dialog (tests)
        # Asked before the document's recipe is replaced (the main window's Save / Discard / Cancel question).
        self.may_replace_recipe: Callable[[], bool] = lambda: True

        self.runsRootLabel = QLabel()
        self.runsRootLabel.setObjectName("runsRootLabel")
        self.runsRootLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A long runs folder is cut at the window's edge (the whole path in the tooltip), never a reason for the tab
        # to scroll sideways (issue 28: a 1024-pixel screen)
        self.runsRootLabel.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.refreshRunsButton = named_button("refreshRunsButton", "Refresh", "Read the runs folder again")
        self.openRecipeButton = named_button("openRecipeButton", "Open recipe",
                                             "Load the selected run's recipe into the editor, to re-run or change it")
        self.useCheckpointButton = named_button("useCheckpointButton", "Use for inference",
                                                "Classify images with the selected run's best checkpoint")
        self.exportRunButton = named_button("exportRunButton", "Export…",
                                            "Export the selected run's checkpoint as ONNX, .pt2 or TorchScript, "
                                            "checked against the checkpoint (optionally int8)")
        self.renameRunButton = named_button("renameRunButton", "Rename", "Give the selected run a name of your own "
                                            "(F2); its folder and recipe keep theirs")
        self.noteRunButton = named_button("noteRunButton", "Note", "Write a note on the selected run: what it tried, "
                                          "what it showed")
        self.deleteRunButton = named_button("deleteRunButton", "Delete…", "Move the selected runs to the trash "
                                            "(Del), after asking")
        self.export_dialog = None  # the open ExportDialog, if any
        self.model = RunsTableModel(self)
        self.runsTable = QTableView()
        self.runsTable.setObjectName("runsTable")
        self.runsTable.setModel(self.model)
        self.runsTable.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.runsTable.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.runsTable.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                       | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.runsTable.setTabKeyNavigation(False)
        self.runsTable.setSortingEnabled(True)
        self.runsTable.sortByColumn(STARTED_COLUMN, Qt.SortOrder.DescendingOrder)
        self.runsTable.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.runsTable.horizontalHeader().setSectionResizeMode(NOTE_COLUMN, QHeaderView.ResizeMode.Interactive)
        self.runsTable.horizontalHeader().resizeSection(NOTE_COLUMN, NOTE_WIDTH)  # a long note is elided: its
        self.runsTable.setWordWrap(False)  # tooltip has it all, and rows stay one line high
        self.runsTable.verticalHeader().hide()
        self.runsTable.installEventFilter(self)  # the Delete key deletes the selected runs (after asking)
        self.comparison = RunComparison()
        self._layout()
        set_tooltips(self, TIPS)

        self.refreshRunsButton.clicked.connect(self.refresh)
        self.openRecipeButton.clicked.connect(self._on_open_recipe)
        self.useCheckpointButton.clicked.connect(self._on_use_checkpoint)
        self.exportRunButton.clicked.connect(self._on_export)
        self.renameRunButton.clicked.connect(lambda: self._edit_selected(NAME_COLUMN))
        self.noteRunButton.clicked.connect(lambda: self._edit_selected(NOTE_COLUMN))
        self.deleteRunButton.clicked.connect(self.delete_selected_runs)
        self.model.edit_failed.connect(lambda message: self._show_error("Cannot change the run", message))
        self.model.dataChanged.connect(self._on_runs_edited)
        self.runsTable.selectionModel().selectionChanged.connect(self._on_selection_changed)
        document.recipe_changed.connect(self._on_recipe_changed)
        # The table follows runs as they start and end — here, in a CLI or in another studio — while it is seen.
        self._listed = runs_folder_stamp(None)
        self._follow_timer = QTimer(self)
        self._follow_timer.setInterval(FOLLOW_INTERVAL_MS)
        self._follow_timer.timeout.connect(self._follow)
        self._on_recipe_changed()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self._follow()
        self._follow_timer.start()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().hideEvent(event)
        self._follow_timer.stop()

    @Slot()
    def _follow(self) -> None:
        """Read the runs folder again when a run appeared, went, or wrote its summary (not while a name or note is
        being edited: a refresh would close the editor)."""
        if self.runsTable.state() == QAbstractItemView.State.EditingState:
            return
        if runs_folder_stamp(self._root) != self._listed:
            self.refresh()

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.runsRootLabel, 1)
        for button in (self.refreshRunsButton, self.openRecipeButton, self.useCheckpointButton, self.exportRunButton,
                       self.renameRunButton, self.noteRunButton, self.deleteRunButton):
            top.addWidget(button)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.runsTable)
        splitter.addWidget(self.comparison)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

    # --- convenience for tests and the main window -----------------------------------------------------------
    @property
    def runsComparePlot(self) -> pg.PlotWidget:  # noqa: N802 - named like the widget's objectName
        return self.comparison.runsComparePlot

    @property
    def runsTimePlot(self) -> pg.PlotWidget:  # noqa: N802
        return self.comparison.runsTimePlot

    @property
    def runs_root(self) -> Path | None:
        return self._root

    def selected_runs(self) -> list[RunRecord]:
        rows = sorted(i.row() for i in self.runsTable.selectionModel().selectedRows())
        return [self.model.record(row) for row in rows]

    def select_run(self, run_dir: str) -> None:
        row = self.model.row_of(run_dir)
        if row >= 0:
            self.runsTable.selectRow(row)

    # --- refreshing ---------------------------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Read the runs folder again, keeping the selection and the sort order."""
        selected = [r.path for r in self.selected_runs()]
        self._listed = runs_folder_stamp(self._root)
        self.model.set_records(list_runs(self._root))
        header = self.runsTable.horizontalHeader()
        self.model.sort(header.sortIndicatorSection(), header.sortIndicatorOrder())
        selection = self.runsTable.selectionModel()
        for path in selected:
            row = self.model.row_of(path)
            if row >= 0:
                selection.select(self.model.index(row, 0), selection.SelectionFlag.Select
                                 | selection.SelectionFlag.Rows)
        self._on_selection_changed()

    @Slot()
    def _on_recipe_changed(self) -> None:
        root = self._document.runs_root
        if root != self._root:
            self._root = root
            self.runsRootLabel.setText(f"Runs folder: {root}")
            self.runsRootLabel.setToolTip(str(root))
            self.refresh()

    def _on_selection_changed(self, *_args) -> None:
        runs = self.selected_runs()
        self.comparison.show_runs(runs)
        self.openRecipeButton.setEnabled(len(runs) == 1)
        self.useCheckpointButton.setEnabled(len(runs) == 1 and bool(self._checkpoint_of(runs[0])))
        self.exportRunButton.setEnabled(len(runs) == 1 and bool(self._checkpoint_of(runs[0])))
        self.renameRunButton.setEnabled(len(runs) == 1)
        self.noteRunButton.setEnabled(len(runs) == 1)
        self.deleteRunButton.setEnabled(bool(runs))

    def _on_runs_edited(self, *_args) -> None:
        self.comparison.show_runs(self.selected_runs())  # a new name is in the legend and the summary

    # --- actions on the selected run ------------------------------------------------------------------------------
    @staticmethod
    def _checkpoint_of(record: RunRecord) -> str:
        for kind in ("best", "last"):
            path = checkpoint_path(record.path, kind)
            if path.is_file():
                return str(path)
        return ""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if (obj is self.runsTable and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent)
                and event.matches(QKeySequence.StandardKey.Delete)
                and self.runsTable.state() != QAbstractItemView.State.EditingState):
            self.delete_selected_runs()
            return True
        return super().eventFilter(obj, event)

    def _edit_selected(self, column: int) -> None:
        runs = self.selected_runs()
        if len(runs) == 1:
            index = self.model.index(self.model.row_of(runs[0].path), column)
            self.runsTable.setCurrentIndex(index)
            self.runsTable.edit(index)

    @Slot()
    def delete_selected_runs(self) -> list[str]:
        """Ask, then move the selected runs to the trash (or, where there is none, ask again and delete them for
        good). Returns the folders deleted."""
        runs = self.selected_runs()
        if not runs:
            return []
        live = [r for r in runs if r.live]
        if live:
            self._show_error("Cannot delete a run in progress",
                             "Stop it first: " + ", ".join(f"{r.name} ({Path(r.path).name})" for r in live))
            return []
        listed = "\n".join(f"• {r.name} — {Path(r.path).name}" for r in runs[:12])
        more = f"\n… and {len(runs) - 12} more" if len(runs) > 12 else ""
        if not self._confirm("Delete runs", f"Move {len(runs)} run(s) to the trash?",
                             f"{listed}{more}\n\nTheir folders (checkpoints, metrics, evaluations) go to the "
                             f"system trash, where they can be restored.", "Move to Trash"):
            return []
        deleted, failed = [], []
        for record in runs:
            try:
                try:
                    delete_run(record.path)
                except TrashUnavailableError as exc:
                    if not self._confirm("No trash", f"{Path(record.path).name} cannot go to the trash.",
                                         f"{exc.reason}\n\nDelete it permanently? This cannot be undone.",
                                         "Delete permanently"):
                        continue
                    delete_run(record.path, permanently=True)
            except BadInputError as exc:
                failed.append(str(exc))
                continue
            deleted.append(record.path)
        self.refresh()
        if deleted:
            self.runs_deleted.emit(deleted)
        if failed:
            self._show_error("Some runs were not deleted", "\n".join(failed))
        return deleted

    def _confirm(self, title: str, text: str, details: str, action: str) -> bool:
        """A question with `action` and Cancel (the default, and Escape)."""
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=self)
        box.setObjectName("runsConfirmBox")
        box.setInformativeText(details)
        accept = box.addButton(action, QMessageBox.ButtonRole.DestructiveRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)
        box.setEscapeButton(cancel)
        box.exec()
        return box.clickedButton() is accept

    @Slot()
    def _on_open_recipe(self) -> None:
        runs = self.selected_runs()
        if len(runs) != 1 or not self.may_replace_recipe():
            return
        path = Path(runs[0].path) / RECIPE_FILE
        try:
            recipe = Recipe.load(path)
        except RecipeError as exc:
            self._show_error("Cannot open the run's recipe", f"{path}:\n{exc}")
            return
        self._document.set_recipe(recipe)
        self._document.set_path("")  # a run's recipe is a starting point: saving it asks for a new file

    @Slot()
    def _on_use_checkpoint(self) -> None:
        runs = self.selected_runs()
        if len(runs) == 1 and self._checkpoint_of(runs[0]):
            self.checkpoint_chosen.emit(self._checkpoint_of(runs[0]))

    @Slot()
    def _on_export(self) -> None:
        runs = self.selected_runs()
        if len(runs) == 1 and self._checkpoint_of(runs[0]):
            self.open_export_dialog(runs[0].path)

    def open_export_dialog(self, run_dir: str):
        """The Export dialog for `run_dir` (also what the studio offers after a run), shown without blocking; it
        deletes itself when closed."""
        from gui.panels.export_dialog import ExportDialog

        dialog = ExportDialog(run_dir, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.export_dialog = dialog
        return dialog

    def _show_error(self, title: str, message: str) -> None:
        if self.show_error_dialogs:
            box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
            box.open()
