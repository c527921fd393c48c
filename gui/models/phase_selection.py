"""Which phase of the recipe the Model, Optimizer and Phases tabs are showing and editing.

The choice is view state, not part of the recipe, but the tabs must agree on it: one PhaseSelection exists
per document (`PhaseSelection.for_document`), and every phase selector binds to it.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from PySide6.QtCore import QObject, QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QComboBox, QWidget

from gui.document import RecipeDocument


class PhaseSelection(QObject):
    index_changed = Signal(int)

    _by_document: WeakKeyDictionary[RecipeDocument, PhaseSelection] = WeakKeyDictionary()

    def __init__(self, document: RecipeDocument):
        # A Qt child of the document, holding no Python reference to it: the WeakKeyDictionary entry dies with
        # the document.
        super().__init__(document)
        self._index = 0
        document.recipe_changed.connect(self._on_recipe_changed)

    @classmethod
    def for_document(cls, document: RecipeDocument) -> PhaseSelection:
        selection = cls._by_document.get(document)
        if selection is None:
            selection = cls(document)
            cls._by_document[document] = selection
        return selection

    @property
    def index(self) -> int:
        return self._index

    def set_index(self, index: int) -> None:
        index = max(0, min(index, self._phase_count() - 1))
        if index != self._index:
            self._index = index
            self.index_changed.emit(index)

    def _phase_count(self) -> int:
        document = self.parent()
        return max(1, len(document.recipe.phases)) if isinstance(document, RecipeDocument) else 1

    def _on_recipe_changed(self) -> None:
        self.set_index(self._index)  # phases may have been removed


class PhaseCombo(QComboBox):
    """A combo box of the recipe's phase names, bound both ways to a PhaseSelection."""

    def __init__(self, document: RecipeDocument, selection: PhaseSelection, parent: QWidget | None = None):
        super().__init__(parent)
        self._document = document
        self._selection = selection
        self.setToolTip("The phase whose freeze plan and parameter groups are shown and edited")
        self._refill()
        document.recipe_changed.connect(self._refill)
        selection.index_changed.connect(self._on_index_changed)
        self.currentIndexChanged.connect(self._on_current_index_changed)

    def _refill(self) -> None:
        phases = self._document.recipe.phases
        with QSignalBlocker(self):
            if [p.name for p in phases] != [self.itemText(i) for i in range(self.count())]:
                self.clear()
                self.addItems([p.name for p in phases])
            for i, phase in enumerate(phases):
                tip = f"phase {i + 1} of {len(phases)}: {phase.epochs} epochs"
                self.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
            self.setCurrentIndex(self._selection.index)

    def _on_index_changed(self, index: int) -> None:
        with QSignalBlocker(self):
            self.setCurrentIndex(index)

    def _on_current_index_changed(self, index: int) -> None:
        if index >= 0:
            self._selection.set_index(index)
