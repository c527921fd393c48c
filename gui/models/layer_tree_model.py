"""The layer tree tab's data: a Qt item model over the engine's layer tree, in napari's way (an adapter, no
logic of its own).

The tree is the plan's (`document.plan().phases[i].tree`); the model maps rows and columns to its nodes and
forwards a tick to the engine's freeze edits (engine/planning/freeze_edits.py) through the document, which
re-plans; the view then refreshes. Columns are data (`COLUMNS`): a new one is one more `Column`.

The Drift column shows a run's weight drift (`set_drift`, from its evaluation): how far each module moved from
where the run started, ‖w − w₀‖ / ‖w₀‖ over the module's parameters (engine/infer/drift.py `module_drift`);
a frozen module reads exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from engine.infer.drift import WeightDrift, module_drift
from engine.model.layer_tree import EMPTY, FROZEN, PARTIAL, TRAINABLE, LayerNode
from engine.model.stages import covers
from engine.planning.freeze_edits import freeze_subtree, set_bn_mode, thaw_subtree
from engine.planning.module_index import ModuleIndex
from engine.planning.plan import PhasePlan
from engine.recipe import PhaseConfig
from gui.document import RecipeDocument
from gui.models.phase_selection import PhaseSelection
from gui.widgets.formatting import drift_text

# --- columns ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """One column of the tree: its title, the text of a row (from the model and the row's item, so that a column
    can show what the model knows beyond the tree, such as a run's results), its width in the view."""

    title: str
    text: Callable[[LayerTreeModel, _Item], str]
    width: int
    numeric: bool = False  # right-aligned


_CHECK = {FROZEN: Qt.CheckState.Checked, TRAINABLE: Qt.CheckState.Unchecked,
          PARTIAL: Qt.CheckState.PartiallyChecked}
_MARK = {FROZEN: "❄", TRAINABLE: "✓", PARTIAL: "◐", EMPTY: ""}
_FROZEN_BRUSH = QBrush(QColor(120, 130, 150))
_MOVED_BRUSH = QBrush(QColor(200, 30, 30))


def _trainable_text(_model: LayerTreeModel, item: _Item) -> str:
    node = item.node
    return f"{_MARK[node.state]} {node.trainable_params:,}".strip() if node.total_params else ""


def _stage_text(_model: LayerTreeModel, item: _Item) -> str:
    # Only where it changes, like the CLI's printout.
    parent_stage = item.parent.node.stage if item.parent is not None else None
    return item.node.stage if item.node.stage and item.node.stage != parent_stage else ""


def _drift_text(model: LayerTreeModel, item: _Item) -> str:
    return drift_text(model.drift_of(item.node.path)) if item.node.total_params else ""


COLUMNS: tuple[Column, ...] = (
    Column("Module", lambda _m, item: item.node.name, 260),  # the tree column, with the freeze check box
    Column("Type", lambda _m, item: item.node.type_name, 150),
    Column("Params", lambda _m, item: f"{item.node.total_params:,}", 100, numeric=True),
    Column("Trainable", _trainable_text, 110, numeric=True),
    Column("BN mode", lambda _m, item: item.node.bn_mode or "", 90),
    Column("Group", lambda _m, item: item.node.group or "", 80),
    Column("Stage", _stage_text, 70),
    Column("Drift", _drift_text, 80, numeric=True),  # a run's weight drift (set_drift)
)


def column_index(title: str) -> int:
    return next(i for i, column in enumerate(COLUMNS) if column.title == title)


COL_MODULE = 0
COL_TYPE, COL_PARAMS, COL_TRAINABLE = column_index("Type"), column_index("Params"), column_index("Trainable")
COL_BN, COL_GROUP, COL_STAGE = column_index("BN mode"), column_index("Group"), column_index("Stage")
COL_DRIFT = column_index("Drift")
PathRole = Qt.ItemDataRole.UserRole + 1
DriftRole = Qt.ItemDataRole.UserRole + 2  # the module's relative drift as a float (None: no drift shown)


# --- the Qt item model --------------------------------------------------------------------------------------

class _Item:
    """Where a node sits: the internal pointer of its indexes (the view asks for parents constantly)."""

    __slots__ = ("node", "parent", "row", "children")

    def __init__(self, node: LayerNode, parent: _Item | None, row: int):
        self.node, self.parent, self.row = node, parent, row
        self.children = [_Item(child, self, i) for i, child in enumerate(node.children)]

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


class LayerTreeModel(QAbstractItemModel):
    """The selected phase's layer tree. The model's root module is the single top-level row.

    Ticking a node freezes its subtree, unticking thaws it (checked = frozen, partially checked = partly
    frozen); both edit the recipe through the document.
    """

    def __init__(self, document: RecipeDocument, selection: PhaseSelection | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._document = document
        self._selection = selection or PhaseSelection.for_document(document)
        self._top: _Item | None = None
        self._items: dict[str, _Item] = {}
        self._verified: dict[int, tuple[list[str], int]] = {}
        self._drift: WeightDrift | None = None
        self._module_drift: dict[str, float | None] = {}  # empty unless the drift's layers are this tree's
        document.recipe_changed.connect(self.refresh)
        document.data_scanned.connect(self.refresh)  # the class count sizes the head
        self._selection.index_changed.connect(self.refresh)
        self.refresh()

    # --- what is shown ---------------------------------------------------------------------------------
    def phase_plan(self) -> PhasePlan | None:
        plan = self._document.plan()
        index = self._selection.index
        return plan.phases[index] if plan is not None and index < len(plan.phases) else None

    def tree(self) -> LayerNode | None:
        return self._top.node if self._top is not None else None

    def index_of(self, path: str, column: int = COL_MODULE) -> QModelIndex:
        item = self._items.get(path)
        return self.createIndex(item.row, column, item) if item is not None else QModelIndex()

    def set_verification(self, phase_index: int, moved: list[str], checked: int) -> None:
        """A run's freeze check of a phase: `checked` frozen tensors compared, `moved` the names of those that
        changed. The modules holding them are shown in red."""
        self._verified[phase_index] = (list(moved), checked)
        self._emit_all_changed()

    def verification(self, phase_index: int) -> tuple[list[str], int] | None:
        return self._verified.get(phase_index)

    def set_drift(self, drift: WeightDrift | None) -> None:
        """Show a run's weight drift in the Drift column (None: clear it)."""
        self._drift = drift
        self._match_drift()
        self._emit_all_changed()

    def _match_drift(self) -> None:
        self._module_drift = module_drift(self._drift) if self.drift_applies() else {}

    @property
    def drift(self) -> WeightDrift | None:
        return self._drift

    def drift_applies(self) -> bool:
        """The drift's layers are this tree's modules (the run trained this architecture)."""
        return self._drift is not None and bool(self._drift.layers) and all(
            layer.path in self._items for layer in self._drift.layers)

    def drift_of(self, path: str) -> float | None:
        """The relative drift of the module at `path`; None without a drift that applies to this tree."""
        return self._module_drift.get(path)

    def refresh(self) -> None:
        phase = self.phase_plan()
        tree = phase.tree if phase is not None else None
        if tree is not None and self._top is not None and _shape(tree) == _shape(self._top.node):
            # Same model, new states: update in place so that expansion and selection survive.
            for item, node in zip(self._top.walk(), tree.walk()):
                item.node = node
            self._emit_all_changed()
            return
        self.beginResetModel()
        self._top = _Item(tree, None, 0) if tree is not None else None
        self._items = {item.node.path: item for item in self._top.walk()} if self._top else {}
        self._match_drift()  # another architecture's tree: the drift may apply now, or no longer
        self.endResetModel()

    def _emit_all_changed(self) -> None:
        if self._top is None:
            return
        last = len(COLUMNS) - 1
        self.dataChanged.emit(self.createIndex(0, 0, self._top), self.createIndex(0, last, self._top))
        for item in self._top.walk():
            if item.children:
                first, end = item.children[0], item.children[-1]
                self.dataChanged.emit(self.createIndex(0, 0, first), self.createIndex(end.row, last, end))

    # --- edits: forwarded to the engine ----------------------------------------------------------------
    def freeze(self, path: str) -> None:
        self._edit_phase(lambda phase, index: freeze_subtree(phase, path, index))

    def thaw(self, path: str) -> None:
        self._edit_phase(lambda phase, index: thaw_subtree(phase, path, index))

    def set_bn_mode(self, path: str, mode: str | None) -> None:
        self._edit_phase(lambda phase, index: set_bn_mode(phase, path, mode, index))

    def _edit_phase(self, change: Callable[[PhaseConfig, ModuleIndex], None]) -> None:
        index = self._document.module_index()
        if index is None:
            return
        phase_index = self._selection.index
        self._document.edit(lambda recipe: change(recipe.phases[phase_index], index))

    # --- QAbstractItemModel ------------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:
        if column < 0 or column >= len(COLUMNS) or self._top is None:
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, self._top) if row == 0 else QModelIndex()
        children = parent.internalPointer().children
        return self.createIndex(row, column, children[row]) if 0 <= row < len(children) else QModelIndex()

    def parent(self, index: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore
        if not index.isValid():
            return QModelIndex()
        up = index.internalPointer().parent
        return self.createIndex(up.row, 0, up) if up is not None else QModelIndex()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        if self._top is None:
            return 0
        if not parent.isValid():
            return 1
        return len(parent.internalPointer().children) if parent.column() == 0 else 0

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        node = index.internalPointer().node
        # The root is not tickable: freezing everything would leave nothing to train.
        if index.column() == COL_MODULE and node.path and node.total_params:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        item: _Item = index.internalPointer()
        node, column = item.node, index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[column].text(self, item)
        if role == Qt.ItemDataRole.CheckStateRole and column == COL_MODULE:
            return _CHECK.get(node.state)
        if role == PathRole:
            return node.path
        if role == DriftRole:
            return self.drift_of(node.path)
        if role == Qt.ItemDataRole.ForegroundRole:
            if self._is_moved(node.path):
                return _MOVED_BRUSH
            return _FROZEN_BRUSH if node.state == FROZEN else None
        if role == Qt.ItemDataRole.TextAlignmentRole and COLUMNS[column].numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node)
        return None

    def setData(self, index: QModelIndex | QPersistentModelIndex, value, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.CheckStateRole or not (self.flags(index) & Qt.ItemFlag.ItemIsUserCheckable):
            return False
        path = index.internalPointer().node.path
        if Qt.CheckState(value) == Qt.CheckState.Checked:
            self.freeze(path)
        else:
            self.thaw(path)
        return True

    # --- presentation -------------------------------------------------------------------------------------
    def _tooltip(self, node: LayerNode) -> str:
        lines = [node.path or "(whole model)", f"{node.type_name}: {node.trainable_params:,} of "
                 f"{node.total_params:,} parameters train"]
        if node.stage:
            lines.append(f"stage {node.stage}")
        drift = self.drift_of(node.path)
        if drift is not None:
            lines.append(f"drift from the run's start: {drift_text(drift)}"
                         + (" (bit-identical: it did not train)" if drift == 0.0 else " (relative L2)"))
        moved = [name for name in self._moved_names() if covers(node.path, name)]
        if moved:
            lines.append("changed although frozen: " + ", ".join(moved[:8]))
        return "\n".join(lines)

    def _moved_names(self) -> list[str]:
        return self._verified.get(self._selection.index, ([], 0))[0]

    def _is_moved(self, path: str) -> bool:
        return any(covers(path, name) for name in self._moved_names())


def _shape(tree: LayerNode) -> list[tuple[str, str]]:
    return [(node.path, node.type_name) for node in tree.walk()]
