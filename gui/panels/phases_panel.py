"""The Phases tab: the run as a sequence of phases (what trains, for how long, at which rates), a drawn
timeline of them, and the lesson's gradual unfreezing in one click. Edits are the engine's
(engine/planning/phase_edits.py, presets.apply_strategy) applied through the document."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRectF,
    QSignalBlocker,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.errors import RecipeError
from engine.planning.phase_edits import add_phase, move_phase, remove_phase, update_phase
from engine.planning.presets import apply_strategy
from engine.recipe import LR_PRESETS, SCHEDULES, PhaseConfig
from gui.document import RecipeDocument
from gui.models.phase_selection import PhaseSelection
from gui.widgets.formatting import scientific
from gui.widgets.tooltips import set_tooltips

COLUMNS = ("Name", "Epochs", "Trains", "LR preset", "Head LR", "Schedule")
COL_NAME, COL_EPOCHS, COL_TRAINS, COL_PRESET, COL_LR, COL_SCHEDULE = range(len(COLUMNS))
CHOICES = {COL_PRESET: LR_PRESETS, COL_SCHEDULE: SCHEDULES}
PHASE_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_ERROR_BRUSH = QBrush(QColor(255, 205, 210))
TIPS = {
    "phasesTable": "The run's phases in order; double-click (or F2) a cell to edit it. What a phase trains: stage "
                   "names or module paths (\"all\", \"head\", \"layer4\" …); fine-tune it in the Model tab's tree",
    "addPhaseButton": "Add a phase after the selected one, starting as a copy of it",
    "removePhaseButton": "Remove the selected phase (a run needs at least one)",
    "movePhaseUpButton": "Run the selected phase earlier",
    "movePhaseDownButton": "Run the selected phase later",
    "phasesTimeline": "The phases on an epoch axis; click one to select it",
}


def phase_errors(document: RecipeDocument) -> dict[int, str]:
    """What is wrong per phase index (-1: the recipe as a whole): validation first, then the plan's checks of
    stage names and paths against the model."""
    errors: dict[int, str] = {}
    try:
        document.recipe.validate()
    except RecipeError as exc:
        errors[_phase_of(exc.field)] = str(exc)
    plan = document.plan()
    if plan is None:
        errors.setdefault(-1, document.plan_error)
    else:
        for phase in plan.phases:
            if phase.error:
                errors.setdefault(phase.index, phase.error)
    return errors


def _phase_of(field: str) -> int:
    if field.startswith("phases["):
        return int(field[len("phases["):field.index("]")])
    return -1


class PhasesModel(QAbstractTableModel):
    """One row per phase of the document's recipe; edits go to the recipe."""

    def __init__(self, document: RecipeDocument, parent: QObject | None = None):
        super().__init__(parent)
        self._document = document
        self._rows = len(document.recipe.phases)
        self._errors: dict[int, str] = {}
        document.recipe_changed.connect(self.refresh)
        document.data_scanned.connect(self.refresh)
        self.refresh()

    def errors(self) -> dict[int, str]:
        return dict(self._errors)

    def refresh(self) -> None:
        self._errors = phase_errors(self._document)
        rows = len(self._document.recipe.phases)
        if rows != self._rows:
            self.beginResetModel()
            self._rows = rows
            self.endResetModel()
        elif rows:
            self.dataChanged.emit(self.index(0, 0), self.index(rows - 1, len(COLUMNS) - 1))

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        return COLUMNS[section] if orientation == Qt.Orientation.Horizontal else str(section + 1)

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        phase, column = self._document.recipe.phases[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(phase, column)
        if role == Qt.ItemDataRole.EditRole:
            if column == COL_EPOCHS:
                return phase.epochs
            if column == COL_LR:
                return repr(phase.lr)
            if column == COL_PRESET:
                return phase.lr_preset
            if column == COL_TRAINS:
                return ", ".join(phase.trainable)  # the frozen exceptions are edited in the layer tree
            return self._text(phase, column)
        if role == Qt.ItemDataRole.BackgroundRole and index.row() in self._errors:
            return _ERROR_BRUSH
        if role == Qt.ItemDataRole.ToolTipRole:
            if index.row() in self._errors:
                return self._errors[index.row()]
            if column == COL_TRAINS:
                return "Comma-separated stage names or module paths (\"all\" for the whole model)"
        return None

    @staticmethod
    def _text(phase: PhaseConfig, column: int) -> str:
        if column == COL_NAME:
            return phase.name
        if column == COL_EPOCHS:
            return str(phase.epochs)
        if column == COL_TRAINS:
            frozen = f" (frozen inside: {', '.join(phase.frozen)})" if phase.frozen else ""
            return ", ".join(phase.trainable) + frozen
        if column == COL_PRESET:
            return f"custom ({len(phase.groups)} groups)" if phase.groups else phase.lr_preset
        if column == COL_LR:
            return scientific(phase.lr)
        if column == COL_SCHEDULE:
            return phase.schedule.name
        return ""

    def setData(self, index: QModelIndex | QPersistentModelIndex, value, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        change = _parse(index.column(), str(value).strip())
        if change is None:
            return False
        row = index.row()
        try:
            self._document.edit(lambda recipe: update_phase(recipe, row, **change))
        except RecipeError:
            return False
        return True


_FIELDS = {COL_NAME: "name", COL_PRESET: "lr_preset", COL_SCHEDULE: "schedule"}


def _parse(column: int, text: str) -> dict[str, Any] | None:
    """The setting a cell's text sets, as a value; None when the text is not even of the right kind (validity is
    the engine's to decide)."""
    if column in _FIELDS:
        return {_FIELDS[column]: text}
    if column == COL_EPOCHS:
        epochs = _number(text, int)
        return {"epochs": epochs} if epochs is not None else None
    if column == COL_LR:
        lr = _number(text, float)
        return {"lr": lr} if lr is not None else None
    if column == COL_TRAINS:
        # Stored as typed: a name the model does not have is shown as the plan's error, not refused here.
        return {"trainable": [name.strip() for name in text.split(",") if name.strip()]}
    return None


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        return None


class ChoiceDelegate(QStyledItemDelegate):
    """A combo box editor for the columns whose values come from a fixed list."""

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex) -> QWidget:
        if index.column() not in CHOICES:
            return super().createEditor(parent, option, index)
        combo = QComboBox(parent)
        combo.addItems(list(CHOICES[index.column()]))
        return combo

    def setEditorData(self, editor: QWidget, index: QModelIndex) -> None:
        if isinstance(editor, QComboBox):
            editor.setCurrentText(str(index.data(Qt.ItemDataRole.EditRole)))
        else:
            super().setEditorData(editor, index)

    def setModelData(self, editor: QWidget, model: QAbstractTableModel, index: QModelIndex) -> None:
        if isinstance(editor, QComboBox):
            model.setData(index, editor.currentText(), Qt.ItemDataRole.EditRole)
        else:
            super().setModelData(editor, model, index)


class PhasesTimeline(QWidget):
    """An epoch axis with one block per phase, its width proportional to the phase's epochs."""

    phase_clicked = Signal(int)

    MARGIN = 8

    def __init__(self, document: RecipeDocument, selection: PhaseSelection, parent: QWidget | None = None):
        super().__init__(parent)
        self._document = document
        self._selection = selection
        self.setMinimumHeight(64)
        document.recipe_changed.connect(self.update)
        selection.index_changed.connect(self.update)

    def segments(self) -> list[tuple[str, int, int]]:
        """(name, first epoch, epochs) per phase, as the run counts them: a head fitted to convergence is one epoch
        (the Training tab's axis counts the same), whatever the phase's `epochs` says."""
        epochs = self._document.run_epochs()
        starts = [sum(epochs[:i]) for i in range(len(epochs))]
        return [(p.name, start, n) for p, start, n in zip(self._document.recipe.phases, starts, epochs)]

    def _block_rects(self, segments: list[tuple[str, int, int]]) -> list[QRectF]:
        total = max(1, sum(n for _, _, n in segments))
        width = self.width() - 2 * self.MARGIN
        scale = width / total
        return [QRectF(self.MARGIN + start * scale, self.MARGIN, epochs * scale, self.height() - 2 * self.MARGIN - 16)
                for _, start, epochs in segments]

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        segments = self.segments()
        total = sum(n for _, _, n in segments)
        for i, ((name, _, epochs), rect) in enumerate(zip(segments, self._block_rects(segments))):
            painter.setBrush(QColor(PHASE_COLOURS[i % len(PHASE_COLOURS)]))
            painter.setPen(QPen(QColor("#222"), 2.5) if i == self._selection.index else QPen(QColor("#fff"), 1))
            painter.drawRoundedRect(rect.adjusted(1, 0, -1, 0), 4, 4)
            painter.setPen(QColor("#fff"))
            count = "fitted once" if self._document.fits_head(i) else f"{epochs} ep"
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, f"{name}\n{count}")
        # The epoch axis under the blocks.
        painter.setPen(QColor("#555"))
        axis_y = self.height() - self.MARGIN - 12
        width = self.width() - 2 * self.MARGIN
        step = max(1, round(total / 10))
        for epoch in range(0, total + 1, step):
            x = self.MARGIN + epoch * width / max(1, total)
            painter.drawLine(int(x), axis_y, int(x), axis_y + 4)
            painter.drawText(QRectF(x - 20, axis_y + 4, 40, 12), Qt.AlignmentFlag.AlignCenter, str(epoch))
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        for i, rect in enumerate(self._block_rects(self.segments())):
            if rect.contains(event.position()):
                self.phase_clicked.emit(i)
                return
        super().mousePressEvent(event)


class PhasesPanel(QWidget):
    def __init__(self, document: RecipeDocument, parent: QWidget | None = None,
                 selection: PhaseSelection | None = None):
        super().__init__(parent)
        self.setObjectName("phasesPanel")
        self._document = document
        self._selection = selection or PhaseSelection.for_document(document)
        self.phases_model = PhasesModel(document, self)
        self._build()

        self._table.selectionModel().currentRowChanged.connect(self._on_row_chosen)
        self._selection.index_changed.connect(self._select_row)
        self.phases_model.modelReset.connect(lambda: self._select_row(self._selection.index))
        self._timeline.phase_clicked.connect(self._selection.set_index)
        self._add_button.clicked.connect(self._on_add_phase)
        self._remove_button.clicked.connect(self._on_remove_phase)
        self._up_button.clicked.connect(lambda: self._move_phase(-1))
        self._down_button.clicked.connect(lambda: self._move_phase(+1))
        self._gradual_button.clicked.connect(self.apply_gradual_preset)
        document.recipe_changed.connect(self._refresh)
        document.data_scanned.connect(self._refresh)
        self._refresh()
        self._select_row(self._selection.index)

    def _build(self) -> None:
        self._table = QTableView()
        self._table.setObjectName("phasesTable")
        self._table.setModel(self.phases_model)
        self._table.setItemDelegate(ChoiceDelegate(self._table))
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._table.horizontalHeader().setSectionResizeMode(COL_TRAINS, QHeaderView.ResizeMode.Stretch)

        self._add_button = QPushButton("Add phase")
        self._add_button.setObjectName("addPhaseButton")
        self._remove_button = QPushButton("Remove")
        self._remove_button.setObjectName("removePhaseButton")
        self._up_button = QPushButton("Move up")
        self._up_button.setObjectName("movePhaseUpButton")
        self._down_button = QPushButton("Move down")
        self._down_button.setObjectName("movePhaseDownButton")
        self._gradual_button = QPushButton("Lesson's gradual unfreezing")
        self._gradual_button.setObjectName("gradualPresetButton")
        self._gradual_button.setToolTip("Strategy → Gradual unfreezing: head 5 epochs → + the last stage 5 epochs → "
                                        "all 10 epochs, in place of the current phases")
        buttons = QHBoxLayout()
        for button in (self._add_button, self._remove_button, self._up_button, self._down_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self._gradual_button)
        self.advisor_button = QPushButton("Advise a strategy…")
        self.advisor_button.setObjectName("advisorButton")
        self.advisor_button.setToolTip("Measure your data and the frozen backbone, and get a recommended strategy "
                                       "with its reasons; apply it in one click")
        self.advisor_button.clicked.connect(self.open_advisor)
        buttons.addWidget(self.advisor_button)

        self._error_label = QLabel()
        self._error_label.setObjectName("phasesErrorLabel")
        self._error_label.setWordWrap(True)
        self._error_label.setStyleSheet("color: #c62828;")
        self._error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self._timeline = PhasesTimeline(self._document, self._selection)
        self._timeline.setObjectName("phasesTimeline")

        layout = QVBoxLayout(self)
        layout.addWidget(self._table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self._error_label)
        layout.addWidget(QLabel("Timeline (epochs)"))
        layout.addWidget(self._timeline)
        set_tooltips(self, TIPS)

    def _refresh(self) -> None:
        errors = self.phases_model.errors()
        self._error_label.setText("\n".join(f"⚠ {message}" for _, message in sorted(errors.items())))
        count = len(self._document.recipe.phases)
        index = self._selection.index
        self._remove_button.setEnabled(count > 1)
        self._up_button.setEnabled(index > 0)
        self._down_button.setEnabled(index < count - 1)

    def _select_row(self, row: int) -> None:
        with QSignalBlocker(self._table.selectionModel()):
            self._table.selectionModel().setCurrentIndex(
                self.phases_model.index(row, 0),
                QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self._table.viewport().update()
        self._refresh()

    def _on_row_chosen(self, current: QModelIndex) -> None:
        if current.isValid():
            self._selection.set_index(current.row())

    # --- edits ---------------------------------------------------------------------------------------------
    def open_advisor(self):
        from gui.advisor_dialog import AdvisorDialog

        dialog = AdvisorDialog(self._document, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def apply_gradual_preset(self) -> None:
        """The lesson's gradual unfreezing, exactly as the Strategy menu and the Model tab apply it."""
        self._document.edit(lambda recipe: apply_strategy(recipe, "gradual_unfreezing"))

    def _on_add_phase(self) -> None:
        after = self._selection.index
        self._document.edit(lambda recipe: add_phase(recipe, after))
        self._selection.set_index(after + 1)

    def _on_remove_phase(self) -> None:
        if len(self._document.recipe.phases) < 2:
            return
        at = self._selection.index
        self._document.edit(lambda recipe: remove_phase(recipe, at))

    def _move_phase(self, offset: int) -> None:
        at, to = self._selection.index, self._selection.index + offset
        if not 0 <= to < len(self._document.recipe.phases):
            return
        self._document.edit(lambda recipe: move_phase(recipe, at, offset))
        self._selection.set_index(to)
