"""A gallery of evaluated images (the images behind a confusion-matrix cell, or every error): a thumbnail per
image — the crop the model saw with its Grad-CAM heat map, or the plain crop — captioned with the true and the
predicted class, the confidence and the loss; the tooltip has the top-k and the out-of-distribution score.

Sorted by loss, highest first, it is fastai's "top losses". Thumbnails arrive later, from a worker thread: until
then an item shows a grey square."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

from engine.infer.evaluation import ImageResult

PathRole = Qt.ItemDataRole.UserRole + 1
ICON_SIDE = 112
PLACEHOLDER_GREY = QColor(225, 225, 225)
WRONG_TEXT = QColor(190, 30, 30)


@dataclass(frozen=True)
class SortOrder:
    name: str
    title: str
    key: Callable[[ImageResult], object]


SORT_ORDERS = (
    SortOrder("loss", "Loss, highest first (top losses)", lambda r: -r.loss),
    SortOrder("loss_ascending", "Loss, lowest first", lambda r: r.loss),
    SortOrder("confidence", "Confidence, highest first", lambda r: -r.confidence),
    SortOrder("confidence_ascending", "Confidence, lowest first", lambda r: r.confidence),
    SortOrder("file", "File name", lambda r: r.path),
)


def sort_results(results: list[ImageResult], order: str) -> list[ImageResult]:
    found = next((o for o in SORT_ORDERS if o.name == order), None)
    if found is None:
        raise ValueError(f"sort order '{order}' is not one of {', '.join(o.name for o in SORT_ORDERS)}")
    return sorted(results, key=found.key)  # stable: equal keys keep the evaluation's order


def caption(result: ImageResult) -> str:
    verdict = f"{result.true_class} ✓" if result.correct else f"{result.true_class} → {result.predicted}"
    return f"{verdict}\n{result.confidence:.0%} · loss {result.loss:.2f}"


def tooltip(result: ImageResult) -> str:
    lines = [result.path, f"true class {result.true_class}, predicted {result.predicted} "
                          f"({result.confidence:.1%}), loss {result.loss:.3f}",
             "top-k: " + ", ".join(f"{name} {p:.3f}" for name, p in result.top)]
    if result.ood_score is not None:
        lines.append(f"OOD score {result.ood_score:.2f}" + (" — unlike the training data" if result.unfamiliar
                                                             else ""))
    if result.split:
        lines.append(f"split: {result.split}")
    return "\n".join(lines)


class ImageGallery(QListWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setIconSize(QSize(ICON_SIDE, ICON_SIDE))
        self.setGridSize(QSize(ICON_SIDE + 24, ICON_SIDE + 48))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        placeholder = QPixmap(ICON_SIDE, ICON_SIDE)
        placeholder.fill(PLACEHOLDER_GREY)
        self._placeholder = QIcon(placeholder)
        self._thumbnails: dict[str, tuple[QImage, QImage]] = {}  # path → (with heat map, plain crop)
        self._errors: dict[str, str] = {}
        self._heatmaps = True
        self._results: list[ImageResult] = []
        self._rows: dict[str, int] = {}  # path → its row

    # --- contents ------------------------------------------------------------------------------------------------
    def show_results(self, results: list[ImageResult]) -> None:
        """Show exactly `results`, in that order (thumbnails already received are reused)."""
        self._results = list(results)
        self._rows = {r.path: row for row, r in enumerate(self._results)}
        self.clear()
        for result in self._results:
            item = QListWidgetItem(caption(result))
            item.setData(PathRole, result.path)
            item.setToolTip(tooltip(result))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            if not result.correct:
                item.setForeground(QBrush(WRONG_TEXT))
            self.addItem(item)
            self._decorate(item)

    def results(self) -> list[ImageResult]:
        return list(self._results)

    def paths(self) -> list[str]:
        return [r.path for r in self._results]

    def forget_thumbnails(self) -> None:
        """Drop the received thumbnails (another checkpoint's heat maps)."""
        self._thumbnails.clear()
        self._errors.clear()

    def missing_thumbnails(self) -> list[str]:
        """Paths on display without a thumbnail or an error yet, in display order."""
        return [p for p in self.paths() if p not in self._thumbnails and p not in self._errors]

    def has_thumbnail(self, path: str) -> bool:
        return path in self._thumbnails

    def set_thumbnail(self, path: str, with_heatmap: QImage, plain: QImage) -> None:
        self._thumbnails[path] = (with_heatmap, plain)
        self._decorate_path(path)

    def set_error(self, path: str, error: str) -> None:
        self._errors[path] = error
        self._decorate_path(path)

    def thumbnail(self, path: str) -> QImage | None:
        """The image an item shows now (with or without the heat map), None while it has none."""
        pair = self._thumbnails.get(path)
        return None if pair is None else pair[0 if self._heatmaps else 1]

    # --- heat maps on or off ---------------------------------------------------------------------------------------
    @property
    def heatmaps_shown(self) -> bool:
        return self._heatmaps

    def set_heatmaps_shown(self, shown: bool) -> None:
        self._heatmaps = shown
        for row in range(self.count()):
            self._decorate(self.item(row))

    # --- items ------------------------------------------------------------------------------------------------------
    def _decorate_path(self, path: str) -> None:
        row = self._rows.get(path)
        if row is not None:
            self._decorate(self.item(row))

    def _decorate(self, item: QListWidgetItem) -> None:
        path = item.data(PathRole)
        image = self.thumbnail(path)
        if image is None:
            item.setIcon(self._placeholder)
        else:  # a 32-pixel crop is enlarged to the icon's size (an icon never grows a small pixmap by itself)
            item.setIcon(QIcon(QPixmap.fromImage(image.scaled(ICON_SIDE, ICON_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                                                              Qt.TransformationMode.SmoothTransformation))))
        if path in self._errors:
            item.setToolTip(f"{tooltip(self._results[self._rows[path]])}\nno heat map: {self._errors[path]}")
