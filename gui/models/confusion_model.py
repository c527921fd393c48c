"""The confusion matrix as a Qt table model: rows are the true classes, columns the predicted ones (as
scikit-learn's `confusion_matrix`), each cell a count or, normalised, the share of its row (the recall of the
row's class on the diagonal). Cells are coloured as a heat map: right answers in blue, errors in red."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from gui.widgets.plot_style import heat_color, text_color_on

CountRole = Qt.ItemDataRole.UserRole + 1  # the cell's number of images
FractionRole = Qt.ItemDataRole.UserRole + 2  # the cell's share of its row (0 for a class without images)


class ConfusionModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._classes: list[str] = []
        self._counts: list[list[int]] = []
        self._row_totals: list[int] = []
        self._largest = 0
        self._normalized = False

    # --- what is shown -----------------------------------------------------------------------------------------
    def set_matrix(self, classes: list[str], confusion: list[list[int]]) -> None:
        if len(confusion) != len(classes) or any(len(row) != len(classes) for row in confusion):
            raise ValueError(f"a confusion matrix of {len(classes)} classes must be {len(classes)} × {len(classes)}")
        self.beginResetModel()
        self._classes = list(classes)
        self._counts = [[int(n) for n in row] for row in confusion]
        self._row_totals = [sum(row) for row in self._counts]
        self._largest = max((n for row in self._counts for n in row), default=0)
        self.endResetModel()

    def clear(self) -> None:
        self.set_matrix([], [])

    @property
    def normalized(self) -> bool:
        return self._normalized

    def set_normalized(self, normalized: bool) -> None:
        """Show each row's shares (summing to 1 for a class with images) instead of counts."""
        if normalized != self._normalized:
            self._normalized = normalized
            if self._classes:
                last = len(self._classes) - 1
                self.dataChanged.emit(self.index(0, 0), self.index(last, last))

    def classes_at(self, index: QModelIndex | QPersistentModelIndex) -> tuple[str, str]:
        """(true class, predicted class) of a cell."""
        return self._classes[index.row()], self._classes[index.column()]

    def count(self, row: int, column: int) -> int:
        return self._counts[row][column]

    def fraction(self, row: int, column: int) -> float:
        total = self._row_totals[row]
        return self._counts[row][column] / total if total else 0.0

    def shown_value(self, row: int, column: int) -> float:
        return self.fraction(row, column) if self._normalized else float(self.count(row, column))

    # --- QAbstractTableModel -------------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._classes)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._classes)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if not 0 <= section < len(self._classes):
            return None
        name = self._classes[section]
        if role == Qt.ItemDataRole.DisplayRole:
            if orientation == Qt.Orientation.Vertical:
                return f"{name} ({self._row_totals[section]})"
            return name
        if role == Qt.ItemDataRole.ToolTipRole:
            if orientation == Qt.Orientation.Vertical:
                return f"true class {name}: {self._row_totals[section]} images"
            predicted = sum(row[section] for row in self._counts)
            return f"predicted as {name}: {predicted} images"
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        count = self._counts[row][column]
        if role == Qt.ItemDataRole.DisplayRole:
            if self._normalized:
                return f"{self.fraction(row, column):.2f}" if self._row_totals[row] else "–"
            return str(count)
        if role == CountRole:
            return count
        if role == FractionRole:
            return self.fraction(row, column)
        if role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole):
            background = heat_color(self._intensity(row, column), wrong=row != column and count > 0)
            return background if role == Qt.ItemDataRole.BackgroundRole else text_color_on(background)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            true, predicted = self._classes[row], self._classes[column]
            share = f" ({100 * self.fraction(row, column):.1f} % of {true})" if self._row_totals[row] else ""
            what = "right" if row == column else "wrong"
            return (f"true {true}, predicted {predicted}: {count} image{'s' if count != 1 else ''}{share}, {what}.\n"
                    "Click to see them in the gallery.")
        return None

    def _intensity(self, row: int, column: int) -> float:
        """Colour strength: the row's share when normalised, else the count relative to the largest cell."""
        if self._normalized:
            return self.fraction(row, column)
        return self._counts[row][column] / self._largest if self._largest else 0.0
