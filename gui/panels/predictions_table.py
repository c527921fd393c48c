"""The Inference tab's table of predictions: one row per image, sortable by any column (numbers as numbers), and
its rows as a CSV file."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

ERROR_COLOUR = QColor(190, 30, 30)
RIGHT_COLOUR = QColor(46, 125, 50)
UNFAMILIAR_BACKGROUND = QColor(255, 224, 178)  # light orange: looked at first, without reading as an error
UNFAMILIAR_MARK = "⚠"
CSV_COLUMNS = ("path", "top1", "probability", "ood_score", "unfamiliar", "true_class", "correct", "top_k", "error")


class SortableItem(QTableWidgetItem):
    """A cell that sorts by its value, not its text: "9.5%" before "85.3%", errors and blanks last."""

    def __init__(self, text: str, key: tuple):
        super().__init__(text)
        self._key = key

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, SortableItem):
            return self._key < other._key
        return super().__lt__(other)


def _sort_key(result: dict, column: str, text: str) -> tuple:
    top = result["top"]
    value = {"Probability": top[0][1] if top else None, "OOD score": result.get("ood_score"),
             "Correct": result.get("correct")}.get(column, text.casefold() if text else None)
    return (value is None, value if value is not None else 0)


class PredictionsTable(QTableWidget):
    """One row per image: its top-1 class and probability, how unlike the training data it is, whether it is right
    (for an image from a class folder), the top-k, or why it could not be read. An input whose OOD score is above
    the threshold is not presented as a confident class: its row is marked and its top-1 reads as a warning."""

    COLUMNS = ("File", "Top-1", "Probability", "OOD score", "True class", "Correct", "Top-k", "Error")
    HEADER_TIPS = {
        "OOD score": "How unlike the training data the input is: the distance of its features to the nearest class, "
                     "in units of the threshold calibrated on the validation split. Above 1 it is flagged.",
        "True class": "The class folder the image sits in, when it is named like one of the model's classes",
        "Correct": "Whether the top-1 class is the class folder's",
    }

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(self.COLUMNS), parent)
        self.setHorizontalHeaderLabels(self.COLUMNS)
        for title, tip in self.HEADER_TIPS.items():
            self.horizontalHeaderItem(self.column(title)).setToolTip(tip)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(self.column("Top-k"), QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(self.column("Error"), QHeaderView.ResizeMode.Stretch)
        # Sortable by any column (a click on its header), but listed in the order predicted until then.
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        header.setSortIndicatorShown(True)
        self.setSortingEnabled(True)

    @classmethod
    def column(cls, title: str) -> int:
        return cls.COLUMNS.index(title)

    def text(self, row: int, title: str) -> str:
        item = self.item(row, self.column(title))
        return item.text() if item is not None else ""

    def show_results(self, results: list[dict]) -> None:
        """One row per result; each row's first item holds the result's index (`result_index`), so that a row
        sorted anywhere still finds its result."""
        blocker = QSignalBlocker(self)  # the panel selects a row itself once the rows are in
        self.setSortingEnabled(False)  # Qt sorts while items are set otherwise, scattering a row's cells
        self.clearContents()
        self.setRowCount(len(results))
        for row, result in enumerate(results):
            for column, (text, tip) in enumerate(_cells(result)):
                item = SortableItem(text, _sort_key(result, self.COLUMNS[column], text))
                item.setToolTip(tip or text)
                if column == 0:
                    item.setData(Qt.ItemDataRole.UserRole, row)
                if result["error"]:
                    item.setForeground(QBrush(ERROR_COLOUR))
                elif result.get("unfamiliar"):
                    item.setBackground(QBrush(UNFAMILIAR_BACKGROUND))
                if column == self.column("Correct") and result.get("correct") is not None:
                    item.setForeground(QBrush(RIGHT_COLOUR if result["correct"] else ERROR_COLOUR))
                self.setItem(row, column, item)
        self.setSortingEnabled(True)
        del blocker

    def result_index(self, row: int) -> int:
        """The index in the results of the row shown at `row` (-1: none)."""
        item = self.item(row, 0)
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else -1

    def row_of(self, index: int) -> int:
        return next((row for row in range(self.rowCount()) if self.result_index(row) == index), -1)


def _cells(result: dict) -> list[tuple[str, str]]:
    """(text, tooltip) of each column of a result row."""
    top = result["top"]
    name, probability = top[0] if top else ("", 0.0)
    score, unfamiliar = result.get("ood_score"), result.get("unfamiliar")
    top1 = (name, f"{name}: the model's most likely class" if top else "")
    shown_probability = f"{probability:.1%}" if top else ""
    if unfamiliar:
        # Not a confident class: the guess is kept in the tooltip and the top-k, the cell says what matters.
        top1 = (f"{UNFAMILIAR_MARK} unlike the training data",
                f"The input is {score:.1f}× as far from every class as the threshold allows: the model's guess, "
                f"{name} ({probability:.1%}), is not to be trusted.")
        shown_probability = f"({probability:.1%})"
    if score is None:
        ood = ("n/a" if top else "", "This checkpoint has no out-of-distribution calibration: evaluate its run on "
               "the validation split once (Evaluate tab) to calibrate it." if top else "")
    else:
        ood = (f"{UNFAMILIAR_MARK} {score:.2f}" if unfamiliar else f"{score:.2f}",
               "above the threshold: unlike the training data" if unfamiliar else "within the training data's range")
    correct = result.get("correct")
    verdict = ("" if correct is None else ("✓ correct" if correct else "✗ incorrect"), "")
    return [(os.path.basename(result["path"]), result["path"]), top1, (shown_probability, ""), ood,
            (result.get("true_class", ""), ""), verdict, (", ".join(f"{n} {p:.3f}" for n, p in top), ""),
            (result["error"], "")]


def results_summary(results: list[dict]) -> str:
    """"12 image(s), 1 could not be read, 2 unlike the training data; 8 of 10 from class folders correct (80.0 %)"."""
    failed = sum(1 for r in results if r["error"])
    flagged = sum(1 for r in results if r.get("unfamiliar"))
    judged = [r["correct"] for r in results if r.get("correct") is not None]
    text = f"{len(results)} image(s)" + (f", {failed} could not be read" if failed else "")
    if flagged:
        text += f", {flagged} unlike the training data ({UNFAMILIAR_MARK}: their classes are not to be trusted)"
    if judged:
        text += (f"; {sum(judged)} of {len(judged)} from class folders correct "
                 f"({100 * sum(judged) / len(judged):.1f} %)")
    return text


def write_predictions_csv(path: str | Path, results: list[dict]) -> int:
    """Every result as a row of `path` (the same columns whatever the top-k); the number of rows written."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            top = r["top"]
            writer.writerow([r["path"], top[0][0] if top else "", f"{top[0][1]:.6f}" if top else "",
                             "" if r.get("ood_score") is None else f"{r['ood_score']:.6f}",
                             "" if r.get("unfamiliar") is None else r["unfamiliar"], r.get("true_class", ""),
                             "" if r.get("correct") is None else r["correct"],
                             "; ".join(f"{n} {p:.6f}" for n, p in top), r["error"]])
    return len(results)
