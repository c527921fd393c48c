"""The Data tab's Capture page: collect images where you train. Pick a camera (or a video file standing in for one),
see its live image, choose a class (an existing one, or type a new name), and record frames into that class's
folder — one per click, or a burst of N frames one interval apart — with the counts per class beside it. When a
capture ends the Data tab rescans the folder with the same scan as any folder.

Frames are written by a FrameWriter in the page's thread (a camera-sized JPEG takes milliseconds to encode, a
burst of them must not stall the live image); the class folder is checked (and made) before the first frame, so a
read-only folder is refused in words with nothing written (engine/data/capture.py)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.data.capture import JPEG_QUALITY, capture_folder, next_capture_path
from engine.data.scan import LAYOUT_TRAIN_VAL
from engine.errors import BadInputError
from gui.document import RecipeDocument
from gui.panels.source_combo import SourceCombo
from gui.workers.frame_sources import DRAW_HZ, FrameSource
from gui.workers.requests import PanelThread

ERROR_STYLE = "color: #c62828;"


class FrameWriter(QObject):
    frame_written = Signal(str, str)  # class, path
    write_failed = Signal(str)

    @Slot(QImage, str, str)
    def write(self, image: QImage, label: str, folder: str) -> None:
        try:
            path = next_capture_path(folder)
        except BadInputError as exc:
            self.write_failed.emit(str(exc))
            return
        if not image.save(str(path), "JPG", JPEG_QUALITY):
            self.write_failed.emit(f"cannot write {path} (disk full, or the folder went read-only?)")
            return
        self.frame_written.emit(label, str(path))


class CapturePage(QWidget):
    write_requested = Signal(QImage, str, str)  # → FrameWriter.write
    capture_finished = Signal(str, int)  # the data folder and how many frames this capture wrote
    frame_captured = Signal(str)  # the path of a frame written

    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self._writer = FrameWriter()
        self.worker_thread = PanelThread("captureWriterThread", [self._writer], self)
        self.source: FrameSource | None = None
        self._frame: QImage | None = None
        self._frame_dirty = False
        self._remaining = 0  # frames still to record in this capture
        self._pending = 0  # frames sent to the writer and not written yet
        self._written = 0  # frames written by this capture
        self._next_due = 0.0  # source time of the next burst frame
        self._interval = 0.0
        self._folder = ""
        self._label = ""
        self._captured: dict[str, int] = {}  # class → frames written since the last scan
        self._listed = False  # cameras are listed when the page is first shown
        self._build()
        self._connect()
        self._on_data_scanned()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._listed:
            self._listed = True
            self.refresh_sources()

    def _build(self) -> None:
        self.captureSourceCombo = SourceCombo("captureSourceCombo", "Open a video to stand in for a camera")
        self.captureStartButton = QPushButton("Start camera", objectName="captureStartButton")
        self.captureStopButton = QPushButton("Stop", objectName="captureStopButton")
        self.captureStartButton.setToolTip("Show the camera's (or the video's) live image")
        self.captureStopButton.setToolTip("Stop the camera (a burst in progress stops too)")
        self.captureFrameView = QLabel("No camera running", objectName="captureFrameView")
        self.captureFrameView.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.captureFrameView.setMinimumSize(240, 180)
        self.captureFrameView.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.captureFrameView.setStyleSheet("background: #202020; color: #dddddd;")
        self.captureClassCombo = QComboBox(objectName="captureClassCombo")
        self.captureClassCombo.setEditable(True)
        self.captureClassCombo.setToolTip("The class the frames are recorded into; type a new name to start a class")
        self.captureSplitCombo = QComboBox(objectName="captureSplitCombo")
        self.captureSplitCombo.addItems(["train", "val"])
        self.captureSplitCombo.setToolTip("train/ and val/ layout: which split's class folder gets the frames")
        self.captureBurstSpin = QSpinBox(objectName="captureBurstSpin")
        self.captureBurstSpin.setRange(1, 10_000)
        self.captureBurstSpin.setValue(20)
        self.captureBurstSpin.setSuffix(" frames")
        self.captureBurstSpin.setToolTip("How many frames a burst records")
        self.captureIntervalSpin = QDoubleSpinBox(objectName="captureIntervalSpin")
        self.captureIntervalSpin.setRange(0.0, 60.0)
        self.captureIntervalSpin.setDecimals(2)
        self.captureIntervalSpin.setSingleStep(0.1)
        self.captureIntervalSpin.setValue(0.25)
        self.captureIntervalSpin.setSuffix(" s apart")
        self.captureIntervalSpin.setToolTip("Time between two frames of a burst (0: every frame the camera gives); "
                                            "move the object between frames for varied examples")
        self.captureOneButton = QPushButton("Capture one", objectName="captureOneButton")
        self.captureOneButton.setToolTip("Record the next frame into the class")
        self.captureBurstButton = QPushButton("Burst", objectName="captureBurstButton")
        self.captureBurstButton.setToolTip("Record N frames, one interval apart")
        self.captureCancelButton = QPushButton("Cancel burst", objectName="captureCancelButton")
        self.captureCancelButton.setToolTip("Stop the burst now; the frames already recorded stay")
        self.captureCountsTable = QTableWidget(0, 2, objectName="captureCountsTable")
        self.captureCountsTable.setHorizontalHeaderLabels(["Class", "Images"])
        self.captureCountsTable.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.captureCountsTable.verticalHeader().setVisible(False)
        self.captureCountsTable.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.captureCountsTable.setToolTip("Images per class: the last scan, plus the frames captured since")
        self.captureStatusLabel = QLabel(objectName="captureStatusLabel")
        self.captureStatusLabel.setWordWrap(True)

        source_row = QHBoxLayout()
        source_row.addWidget(self.captureSourceCombo, 1)
        source_row.addWidget(self.captureStartButton)
        source_row.addWidget(self.captureStopButton)
        form = self._form = QFormLayout()
        form.addRow("Class", self.captureClassCombo)
        form.addRow("Split", self.captureSplitCombo)
        burst = QHBoxLayout()
        burst.addWidget(self.captureBurstSpin)
        burst.addWidget(self.captureIntervalSpin)
        form.addRow("Burst", burst)
        buttons = QHBoxLayout()
        for button in (self.captureOneButton, self.captureBurstButton, self.captureCancelButton):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(source_row)
        layout.addWidget(self.captureStatusLabel)
        layout.addWidget(self.captureFrameView, 3)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.captureCountsTable, 2)
        self._draw_timer = QTimer(self, interval=1000 // DRAW_HZ)

    def _connect(self) -> None:
        self.captureSourceCombo.source_changed.connect(self._update_buttons)
        self.captureStartButton.clicked.connect(self.start_source)
        self.captureStopButton.clicked.connect(self.stop_source)
        self.captureOneButton.clicked.connect(self.capture_one)
        self.captureBurstButton.clicked.connect(self.capture_burst)
        self.captureCancelButton.clicked.connect(self.cancel_capture)
        self.captureClassCombo.currentTextChanged.connect(lambda _text: self._update_buttons())
        self._draw_timer.timeout.connect(self._draw)
        self.write_requested.connect(self._writer.write)
        self._writer.frame_written.connect(self._on_frame_written)
        self._writer.write_failed.connect(self._on_write_failed)
        self.document.data_scanned.connect(self._on_data_scanned)
        self.document.recipe_changed.connect(self._update_buttons)

    # --- the source -------------------------------------------------------------------------------------------------
    def refresh_sources(self) -> None:
        message = self.captureSourceCombo.refresh()
        if message:
            self._say(message)

    def set_video(self, path: str) -> None:
        """Use a video file as the camera."""
        self.captureSourceCombo.set_video(path)

    @Slot()
    def start_source(self) -> bool:
        if self.source is not None:
            return False
        source = self.captureSourceCombo.make_source(self)
        if source is None:
            return False
        self.source = source
        source.frame_arrived.connect(self._on_frame)
        source.source_failed.connect(self._on_source_failed)
        source.start()
        self._draw_timer.start()
        self._say(f"Showing {source.description}. Choose a class, then Capture one or Burst.")
        self._update_buttons()
        return True

    @Slot()
    def stop_source(self) -> None:
        if self.source is None:
            return
        self.cancel_capture()
        source, self.source = self.source, None
        source.stop()
        source.deleteLater()
        self._draw_timer.stop()
        self._update_buttons()

    @Slot(str)
    def _on_source_failed(self, message: str) -> None:
        self.stop_source()
        self._say(message, error=True)

    # --- capturing -------------------------------------------------------------------------------------------------
    @Slot()
    def capture_one(self) -> bool:
        return self._begin(1, 0.0)

    @Slot()
    def capture_burst(self) -> bool:
        return self._begin(self.captureBurstSpin.value(), self.captureIntervalSpin.value())

    def _begin(self, frames: int, interval: float) -> bool:
        if self.source is None or self._remaining or self._pending:
            return False
        root = self.document.recipe.data.root
        if not root or self.document.recipe.data.dataset != "folder":
            self._say("Choose the image folder first (above): frames are recorded into its class folders.",
                      error=True)
            return False
        label = self.captureClassCombo.currentText().strip()
        try:
            folder = capture_folder(root, label, self.captureSplitCombo.currentText())
        except BadInputError as exc:
            self._say(str(exc), error=True)
            return False
        if not self.worker_thread.ensure():
            return False
        self._folder, self._label = str(folder), label
        self._remaining, self._written, self._interval = frames, 0, interval
        self._next_due = -1.0  # the next frame that arrives is the first
        self._say(f"Recording {frames} frame(s) into {label} …")
        self._update_buttons()
        return True

    @Slot()
    def cancel_capture(self) -> None:
        if self._remaining:
            self._remaining = 0
            self._finish_if_done()

    @Slot(QImage, float)
    def _on_frame(self, image: QImage, at: float) -> None:
        if self.source is None:
            return
        self._frame, self._frame_dirty = image, True
        if self._remaining and at >= self._next_due:
            self._next_due = at + self._interval - 1e-6  # a frame per interval, never two for one instant
            self._remaining -= 1
            self._pending += 1
            self.write_requested.emit(image, self._label, self._folder)

    @Slot(str, str)
    def _on_frame_written(self, label: str, path: str) -> None:
        self._pending -= 1
        self._written += 1
        self._captured[label] = self._captured.get(label, 0) + 1
        self._show_counts()
        self.frame_captured.emit(path)
        self._finish_if_done()

    @Slot(str)
    def _on_write_failed(self, message: str) -> None:
        self._pending -= 1
        self._remaining = 0
        self._say(message, error=True)
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        if self._remaining or self._pending:
            return
        if self._written:
            self._say(f"Recorded {self._written} frame(s) into {self._label} ({self._folder}).")
            self.capture_finished.emit(self.document.recipe.data.root, self._written)
        self._written = 0
        self._update_buttons()

    @property
    def is_capturing(self) -> bool:
        return bool(self._remaining or self._pending)

    # --- counts ----------------------------------------------------------------------------------------------------
    @Slot()
    def _on_data_scanned(self) -> None:
        """A new scan counts every frame captured so far: the counts start again from it."""
        self._captured = {}
        report = self.document.scan
        current = self.captureClassCombo.currentText()
        self.captureClassCombo.blockSignals(True)
        self.captureClassCombo.clear()
        self.captureClassCombo.addItems(report.classes if report is not None else [])
        self.captureClassCombo.setEditText(current)
        self.captureClassCombo.blockSignals(False)
        # The row, label included (the combo alone left a "Split" label beside nothing in a class-folder layout).
        self._form.setRowVisible(self.captureSplitCombo, report is not None and report.layout == LAYOUT_TRAIN_VAL)
        self._show_counts()
        self._update_buttons()

    def counts(self) -> dict[str, int]:
        """Images per class: the last scan's (training split in train/val), plus the frames captured since."""
        report = self.document.scan
        counts = dict(report.counts) if report is not None else {}
        for label, n in self._captured.items():
            counts[label] = counts.get(label, 0) + n
        return counts

    def _show_counts(self) -> None:
        counts = self.counts()
        self.captureCountsTable.setRowCount(len(counts))
        for row, (label, n) in enumerate(sorted(counts.items())):
            fresh = self._captured.get(label, 0)
            name = QTableWidgetItem(label)
            number = QTableWidgetItem(f"{n}" + (f" (+{fresh} new)" if fresh else ""))
            number.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.captureCountsTable.setItem(row, 0, name)
            self.captureCountsTable.setItem(row, 1, number)

    # --- drawing ---------------------------------------------------------------------------------------------------
    @Slot()
    def _draw(self) -> None:
        if self._frame_dirty and self._frame is not None:
            self._frame_dirty = False
            self.captureFrameView.setPixmap(QPixmap.fromImage(self._frame).scaled(
                self.captureFrameView.size(), Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation))

    def _update_buttons(self) -> None:
        running = self.source is not None
        self.captureStartButton.setEnabled(not running and self.captureSourceCombo.has_source)
        self.captureStopButton.setEnabled(running)
        ready = running and bool(self.captureClassCombo.currentText().strip()) and not self.is_capturing
        self.captureOneButton.setEnabled(ready)
        self.captureBurstButton.setEnabled(ready)
        self.captureCancelButton.setEnabled(self.is_capturing)

    def _say(self, text: str, error: bool = False) -> None:
        self.captureStatusLabel.setStyleSheet(ERROR_STYLE if error else "")
        self.captureStatusLabel.setText(text)

    def shutdown(self) -> None:
        self.stop_source()
        self.worker_thread.shutdown()
