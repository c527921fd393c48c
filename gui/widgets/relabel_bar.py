"""A row of buttons that fixes the label of the image on display: move it to the suggested class, to any class, or
to the data folder's trash, and undo the last change (engine/data/relabel.py: journalled, byte for byte). The
suspect-label list, the confusion-matrix gallery and the Inference table each show one under their image.

The moves run on the GUI thread on purpose: a rename and the digest of one image take milliseconds, and doing it
in place keeps the order of a click and its undo obvious. Whoever shows the bar rescans (the main window's Data
tab listens to `image_relabelled`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMenu, QPushButton, QToolButton, QWidget

from engine.data import relabel
from engine.errors import BadInputError

ERROR_STYLE = "color: #c62828;"


def run_data_root(run_dir: str | os.PathLike) -> str:
    """The image folder a run trained on (its recipe.json), or "" (a torchvision data set, a CSV, no run)."""
    if not run_dir:
        return ""
    try:
        data = json.loads((Path(run_dir) / "recipe.json").read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return str(data.get("root", "")) if data.get("dataset", "folder") == "folder" else ""


def label_after(root: str, change: relabel.Change) -> str:
    """The class an image has after `change` ("" when it went to the trash or lies outside the class folders)."""
    if change.action == relabel.TRASH:
        return ""
    try:
        return relabel.locate(root, Path(root) / change.target).label
    except BadInputError:
        return ""


class RelabelBar(QWidget):
    image_relabelled = Signal(str, object)  # the data folder and the journalled Change (a move, a trash or an undo)

    def __init__(self, prefix: str, parent: QWidget | None = None):
        super().__init__(parent)
        self._prefix = prefix
        self._hints: tuple[str, ...] = ()
        self.path = ""
        self.root: Path | None = None
        self._last_root: Path | None = None  # where the last change was: Undo stays possible after a trash
        self.suggested = ""
        self.moveToSuggestedButton = QPushButton("Move to …", objectName=f"{prefix}MoveToSuggestedButton")
        self.moveToSuggestedButton.setToolTip("Move the image into the suggested class's folder (journalled; Undo "
                                              "puts it back)")
        self.moveToClassButton = QToolButton(objectName=f"{prefix}MoveToClassButton")
        self.moveToClassButton.setText("Move to class")
        self.moveToClassButton.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.moveToClassButton.setToolTip("Move the image into another class's folder")
        self.classMenu = QMenu(self.moveToClassButton, objectName=f"{prefix}ClassMenu")
        self.moveToClassButton.setMenu(self.classMenu)
        self.trashButton = QPushButton("Trash", objectName=f"{prefix}TrashButton")
        self.trashButton.setToolTip("Move the image into the data folder's .thaw/trash (kept whole: Undo restores "
                                    "it; delete that folder to free the space)")
        self.undoButton = QPushButton("Undo", objectName=f"{prefix}UndoButton")
        self.undoButton.setToolTip("Revert the data folder's last move or trash, byte for byte")
        self.statusLabel = QLabel(objectName=f"{prefix}RelabelStatusLabel")
        self.statusLabel.setWordWrap(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.moveToSuggestedButton, self.moveToClassButton, self.trashButton, self.undoButton):
            layout.addWidget(widget)
        layout.addWidget(self.statusLabel, 1)
        self.moveToSuggestedButton.clicked.connect(lambda: self.move_to(self.suggested))
        self.classMenu.triggered.connect(lambda action: self.move_to(action.data()))
        self.trashButton.clicked.connect(self.trash)
        self.undoButton.clicked.connect(self.undo)
        self.set_image("")

    def set_data_roots(self, *roots: str) -> None:
        """Data folders to look in first (the run's): an image there is relabelled within that folder."""
        self._hints = tuple(r for r in roots if r)

    def set_image(self, path: str, suggested: str = "") -> None:
        """The image the buttons act on ("" : none) and the class to offer first."""
        if (path or "") != self.path:
            self._say("")  # what was said was about the image selected before
        self.path, self.suggested = path or "", suggested
        self.root = relabel.find_root(path, self._hints) if path and os.path.isfile(path) else None
        self._refresh()

    def _refresh(self) -> None:
        usable = self.root is not None
        label = ""
        classes: list[str] = []
        if usable:
            try:
                label = relabel.locate(self.root, self.path).label
                classes = relabel.classes_of(self.root)
            except BadInputError:
                usable = False
        self.classMenu.clear()
        for name in classes:
            if name != label:
                self.classMenu.addAction(name).setData(name)
        offer = usable and self.suggested in classes and self.suggested != label
        self.moveToSuggestedButton.setVisible(bool(self.suggested))
        self.moveToSuggestedButton.setText(f"Move to {self.suggested}" if self.suggested else "Move to …")
        self.moveToSuggestedButton.setEnabled(offer)
        self.moveToClassButton.setEnabled(usable and len(classes) > 1)
        self.trashButton.setEnabled(usable)
        last = self._last_change()
        self.undoButton.setEnabled(last is not None)
        self.undoButton.setToolTip(f"Undo {last.describe()}" if last else "Nothing to undo in this data folder")
        if self.path and not usable and not self.statusLabel.text():
            self._say("This image is not in a class folder: it has no label to change.")

    def _undo_root(self) -> Path | None:
        return self.root or self._last_root or (Path(self._hints[0]) if self._hints else None)

    def _last_change(self) -> relabel.Change | None:
        root = self._undo_root()
        if root is None or not root.is_dir():
            return None
        try:
            return relabel.last_undoable(root)
        except BadInputError:
            return None

    @Slot(str)
    def move_to(self, label: str) -> bool:
        if self.root is None or not label:
            return False
        return self._do(lambda: relabel.move_to_class(self.root, self.path, label))

    @Slot()
    def trash(self) -> bool:
        if self.root is None:
            return False
        return self._do(lambda: relabel.trash(self.root, self.path))

    @Slot()
    def undo(self) -> bool:
        root = self._undo_root()
        if root is None:
            return False
        return self._do(lambda: relabel.undo_last(root))

    def _do(self, change_files) -> bool:
        try:
            change = change_files()
        except BadInputError as exc:
            self._say(str(exc), error=True)
            self._refresh()
            return False
        root = self._last_root = self.root or self._undo_root()
        self._say(change.describe().split(" ", 3)[-1] + (" · Undo puts it back" if change.action != relabel.UNDO
                                                          else ""))
        # The bar now points at the image where it is: a second click acts on the same file.
        self.path = str(root / change.target) if change.action != relabel.TRASH else ""
        self.root = relabel.find_root(self.path, self._hints) if self.path else None
        self._refresh()
        self.image_relabelled.emit(str(root), change)
        return True

    def _say(self, text: str, error: bool = False) -> None:
        self.statusLabel.setStyleSheet(ERROR_STYLE if error else "")
        self.statusLabel.setText(text)
