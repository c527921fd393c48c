"""The layer tree tab's data: a Qt item model over the engine's LayerNode tree, and the freeze-plan edits a
tick in it makes.

The tree itself is the plan's (`document.plan().phases[i].tree`, napari's pattern: the Qt model adapts a Python
tree). Ticking a node never touches a model: it rewrites the phase's `trainable` / `frozen` lists (kept minimal
and readable, stage names where a whole stage is meant), the document re-plans, and the view refreshes.

`ModuleIndex` and the `*_subtree` functions below are plain Python (no Qt) so that they can be tested, and
moved into the engine, on their own.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from engine.model.layer_tree import EMPTY, FROZEN, PARTIAL, TRAINABLE, LayerNode
from engine.planning.plan import PhasePlan, skeleton
from engine.recipe import PhaseConfig
from engine.model.stages import StageMap, covers
from gui.document import RecipeDocument
from gui.models.phase_selection import PhaseSelection

ALL = "all"


def _overlap(a: str, b: str) -> bool:
    return covers(a, b) or covers(b, a)


# --- path arithmetic (no Qt) --------------------------------------------------------------------------------

class ModuleIndex:
    """What the entries of a freeze plan or a group (stage names, module paths, parameter names, "all") cover
    in one model, how to cut a subtree out of a list of entries exactly, and how to name module paths readably.

    `direct_params(path)` names the parameters a module holds itself (ViT's class token); it is asked only
    when a subtree with such parameters has to be split, because the tree carries counts, not names.
    """

    def __init__(self, root: LayerNode, stages: StageMap, direct_params: Callable[[str], list[str]] | None = None):
        self.root = root
        self.stages = stages
        self._nodes = {node.path: node for node in root.walk()}
        self._order = {path: i for i, path in enumerate(self._nodes)}
        self._direct_params = direct_params or (lambda path: [])

    def node(self, path: str) -> LayerNode | None:
        return self._nodes.get(path)

    def resolve(self, entry: str) -> list[str] | None:
        """The module paths / parameter names an entry covers ("" = the whole model); None when unknown."""
        if entry in (ALL, ""):
            return [""]
        if entry == "last_stage" and self.stages.body:
            return list(self.stages.body[-1].modules)
        stage = self.stages.get(entry)
        if stage is not None:
            return list(stage.modules)
        if entry in self._nodes or self._holds_direct_params(entry.rpartition(".")[0]):  # a module or a parameter
            return [entry]
        return None

    def _holds_direct_params(self, path: str) -> bool:
        node = self._nodes.get(path)
        return node is not None and node.total_params > sum(child.total_params for child in node.children)

    def covered(self, path: str, entries: list[str]) -> bool:
        """Does some entry cover the whole of `path`?"""
        return any(covers(m, path) for entry in entries for m in self.resolve(entry) or [])

    def overlapping(self, path: str, entries: list[str]) -> bool:
        return any(_overlap(m, path) for entry in entries for m in self.resolve(entry) or [])

    def inside(self, entry: str, path: str) -> bool:
        """Is everything `entry` covers inside the subtree at `path`? (False for unknown entries.)"""
        mods = self.resolve(entry)
        return bool(mods) and all(covers(path, m) for m in mods)

    def carve(self, entries: list[str], path: str) -> list[str]:
        """The entries with the subtree at `path` removed and everything else they covered still covered."""
        out: list[str] = []
        for entry in entries:
            mods = self.resolve(entry)
            if mods is None or not any(_overlap(m, path) for m in mods):
                out.append(entry)
                continue
            kept: list[str] = []
            for m in mods:
                if covers(path, m):
                    continue
                kept.extend(self.complement(m, path) if covers(m, path) else [m])
            out.extend(self.names_for(kept))
        return out

    def complement(self, ancestor: str, path: str) -> list[str]:
        """Module paths (and parameter names) that cover the subtree at `ancestor` except the one at `path`."""
        out: list[str] = []
        node = self._nodes.get("" if ancestor == ALL else ancestor)
        while node is not None and node.path != path:
            on_path = None
            for child in node.children:
                if covers(child.path, path):
                    on_path = child
                elif child.total_params:
                    out.append(child.path)
            if self._holds_direct_params(node.path):
                out.extend(self._direct_params(node.path))
            node = on_path
        return out

    def names_for(self, paths: list[str]) -> list[str]:
        """Readable entries for module paths: a stage's name where all of its modules are listed."""
        remaining = [p for p in dict.fromkeys(paths) if self._holds_params(p)]
        if "" in remaining:
            return [ALL]
        names: list[str] = []
        for stage in self.stages.stages:
            needed = [m for m in stage.modules if self._holds_params(m)]  # ResNet's stem lists its ReLU too
            if needed and all(m in remaining for m in needed):
                remaining = [p for p in remaining if p not in needed]
                names.append(stage.name)
                continue
            # A container holding exactly the stage (ViT's "heads" around the head "heads.head").
            same = next((p for p in remaining if p in self._nodes and self._nodes[p].total_params == stage.params
                         and needed and all(covers(p, m) for m in needed)), None)
            if same is not None:
                remaining.remove(same)
                names.append(stage.name)
        return self.sorted(names + remaining)

    def _holds_params(self, path: str) -> bool:
        node = self._nodes.get(path)
        return node is None or node.total_params > 0  # not a module: a parameter name

    def tidy(self, entries: list[str]) -> list[str]:
        """The same coverage as readable entries (stage names, no parameter-less modules); unknown names stay."""
        known = [e for e in entries if self.resolve(e) is not None]
        unknown = [e for e in entries if self.resolve(e) is None]
        return self.names_for([m for e in known for m in self.resolve(e)]) + unknown

    def name_of(self, path: str) -> str:
        return self.names_for([path])[0]

    def sorted(self, entries: list[str]) -> list[str]:
        """Entries in model order ("all" first, unknown names last, as typed)."""
        return sorted(entries, key=self._position)

    def _position(self, entry: str) -> float:
        mods = self.resolve(entry)
        if not mods:
            return float("inf")
        return min(self._module_position(m) for m in mods)

    def _module_position(self, path: str) -> float:
        if path in self._order:
            return self._order[path]
        return self._order.get(path.rpartition(".")[0], len(self._order)) + 0.5  # a parameter: after its module


# --- freeze-plan edits (no Qt) -----------------------------------------------------------------------------

def freeze_subtree(phase: PhaseConfig, path: str, index: ModuleIndex) -> None:
    """Freeze exactly the subtree at `path` in this phase (BN "frozen_stats" overrides inside it go too,
    because that mode keeps the affine parameters training)."""
    phase.trainable = [e for e in phase.trainable if not index.inside(e, path)]
    phase.frozen = [e for e in phase.frozen if not index.inside(e, path)]
    if index.overlapping(path, phase.trainable) and not index.covered(path, phase.frozen):
        phase.frozen.append(index.name_of(path))
    _drop_bn_overrides(phase, path, index, "frozen_stats")
    normalise_freeze_plan(phase, index)


def thaw_subtree(phase: PhaseConfig, path: str, index: ModuleIndex) -> None:
    """Make exactly the subtree at `path` trainable in this phase (BN "frozen" overrides inside it go too)."""
    phase.frozen = index.carve(phase.frozen, path)
    if not index.covered(path, phase.trainable):
        phase.trainable = [e for e in phase.trainable if not index.inside(e, path)] + [index.name_of(path)]
    _drop_bn_overrides(phase, path, index, "frozen")
    normalise_freeze_plan(phase, index)


def set_bn_mode(phase: PhaseConfig, path: str, mode: str | None, index: ModuleIndex) -> None:
    """Set the BN mode of every BN layer under `path` (None: back to the default that follows the freeze plan).
    More specific overrides inside the subtree are dropped: they would otherwise still win over this one."""
    phase.bn_modes = {key: value for key, value in phase.bn_modes.items() if not index.inside(key, path)}
    if mode is not None:
        phase.bn_modes[path or ALL] = mode


def _drop_bn_overrides(phase: PhaseConfig, path: str, index: ModuleIndex, mode: str) -> None:
    phase.bn_modes = {key: value for key, value in phase.bn_modes.items()
                      if not (value == mode and index.inside(key, path))}


def normalise_freeze_plan(phase: PhaseConfig, index: ModuleIndex) -> None:
    """Drop entries that change nothing (covered by another entry, trainable entries frozen whole, frozen
    entries outside everything trainable) and sort the rest in model order. The plan's meaning is unchanged."""
    trainable = _without_covered(phase.trainable, index)
    frozen = _without_covered(phase.frozen, index)
    trainable = [e for e in trainable if index.resolve(e) is None
                 or not all(index.covered(m, frozen) for m in index.resolve(e))]
    frozen = [e for e in frozen if index.resolve(e) is None
              or any(index.overlapping(m, trainable) for m in index.resolve(e))]
    phase.trainable = index.sorted(trainable)
    phase.frozen = index.sorted(frozen)


def _without_covered(entries: list[str], index: ModuleIndex) -> list[str]:
    kept: list[str] = []
    for i, entry in enumerate(entries):
        mods = index.resolve(entry)
        others = kept + entries[i + 1:]
        if entry in others:
            continue
        if mods is not None and all(index.covered(m, others) for m in mods):
            continue
        kept.append(entry)
    return kept


def direct_parameter_names(arch: str, num_classes: int, in_channels: int, head) -> Callable[[str], list[str]]:
    """`direct_params` for ModuleIndex: builds the model's skeleton only if a split ever needs it."""
    built = []

    def names(path: str) -> list[str]:
        if not built:
            built.append(skeleton(arch, num_classes, in_channels, head)[0])
        module = built[0].get_submodule(path)
        return [f"{path}.{name}" if path else name for name, _ in module.named_parameters(recurse=False)]

    return names


# --- the Qt item model --------------------------------------------------------------------------------------

COLUMNS = ("Module", "Type", "Params", "Trainable", "BN mode", "Group", "Stage")
COL_MODULE, COL_TYPE, COL_PARAMS, COL_TRAINABLE, COL_BN, COL_GROUP, COL_STAGE = range(len(COLUMNS))
PathRole = Qt.ItemDataRole.UserRole + 1

_CHECK = {FROZEN: Qt.CheckState.Checked, TRAINABLE: Qt.CheckState.Unchecked,
          PARTIAL: Qt.CheckState.PartiallyChecked}
_MARK = {FROZEN: "❄", TRAINABLE: "✓", PARTIAL: "◐", EMPTY: ""}
_FROZEN_BRUSH = QBrush(QColor(120, 130, 150))
_MOVED_BRUSH = QBrush(QColor(200, 30, 30))


class _Item:
    """Where a node sits: the internal pointer of its indexes (the view asks for parents constantly)."""

    __slots__ = ("node", "parent", "row", "children")

    def __init__(self, node: LayerNode, parent: "_Item | None", row: int):
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

    def module_index(self) -> ModuleIndex | None:
        plan = self._document.plan()
        if plan is None or self._top is None:
            return None
        model = self._document.recipe.model
        return ModuleIndex(self._top.node, plan.stages, direct_parameter_names(
            model.arch, self._document.num_classes, model.in_channels, model.head))

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

    # --- edits ---------------------------------------------------------------------------------------------
    def freeze(self, path: str) -> None:
        self._edit_phase(lambda phase, index: freeze_subtree(phase, path, index))

    def thaw(self, path: str) -> None:
        self._edit_phase(lambda phase, index: thaw_subtree(phase, path, index))

    def set_bn_mode(self, path: str, mode: str | None) -> None:
        self._edit_phase(lambda phase, index: set_bn_mode(phase, path, mode, index))

    def _edit_phase(self, change: Callable[[PhaseConfig, ModuleIndex], None]) -> None:
        index = self.module_index()
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
            return COLUMNS[section]
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
            return self._text(item, column)
        if role == Qt.ItemDataRole.CheckStateRole and column == COL_MODULE:
            return _CHECK.get(node.state)
        if role == PathRole:
            return node.path
        if role == Qt.ItemDataRole.ForegroundRole:
            if self._is_moved(node.path):
                return _MOVED_BRUSH
            return _FROZEN_BRUSH if node.state == FROZEN else None
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (COL_PARAMS, COL_TRAINABLE):
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
    def _text(self, item: _Item, column: int) -> str:
        node = item.node
        if column == COL_MODULE:
            return node.name
        if column == COL_TYPE:
            return node.type_name
        if column == COL_PARAMS:
            return f"{node.total_params:,}"
        if column == COL_TRAINABLE:
            return f"{_MARK[node.state]} {node.trainable_params:,}".strip() if node.total_params else ""
        if column == COL_BN:
            return node.bn_mode or ""
        if column == COL_GROUP:
            return node.group or ""
        if column == COL_STAGE:  # only where it changes, like the CLI's printout
            parent_stage = item.parent.node.stage if item.parent is not None else None
            return node.stage if node.stage and node.stage != parent_stage else ""
        return ""

    def _tooltip(self, node: LayerNode) -> str:
        lines = [node.path or "(whole model)", f"{node.type_name}: {node.trainable_params:,} of "
                 f"{node.total_params:,} parameters train"]
        if node.stage:
            lines.append(f"stage {node.stage}")
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
