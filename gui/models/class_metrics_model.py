"""The per-class table of an evaluation: precision, recall, F1, support and how many images were predicted as the
class, exactly the engine's numbers (engine/infer/metrics.py); the text shows three decimals, `ValueRole` holds the
number itself (and is the sort key)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from engine.infer.metrics import ClassMetrics

ValueRole = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class MetricColumn:
    title: str
    value: Callable[[ClassMetrics], object]
    text: Callable[[object], str]
    tooltip: str


def _ratio(value: object) -> str:
    return f"{value:.3f}"


COLUMNS = (
    MetricColumn("Class", lambda c: c.name, str, "The class"),
    MetricColumn("Precision", lambda c: c.precision, _ratio,
                 "Of the images predicted as this class, the share that are (0 when none was predicted)"),
    MetricColumn("Recall", lambda c: c.recall, _ratio, "Of this class's images, the share predicted as it"),
    MetricColumn("F1", lambda c: c.f1, _ratio, "The harmonic mean of precision and recall"),
    MetricColumn("Support", lambda c: c.support, str, "Images of this class that were evaluated"),
    MetricColumn("Predicted", lambda c: c.predicted, str, "Images predicted as this class"),
)
COLUMN_TITLES = tuple(c.title for c in COLUMNS)


class ClassMetricsModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._rows: list[ClassMetrics] = []

    def set_metrics(self, per_class: list[ClassMetrics]) -> None:
        self.beginResetModel()
        self._rows = list(per_class)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].tooltip
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        column = COLUMNS[index.column()]
        value = column.value(self._rows[index.row()])
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(value)
        if role == ValueRole:
            return value
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None
