"""The Inference tab's live preview: a camera or a video file classified continuously — the frame, the top-k as bars,
the out-of-distribution warning, and frames per second (shown, classified, dropped) with the model's latency.

The model is the Inference tab's checkpoint or an exported model opened here (ONNX, .pt2, TorchScript, OpenVINO). It
runs in the preview's own thread (gui/workers/live_preview.py) on the newest frame only; the GUI thread stores
frames and results and draws them at most DRAW_HZ times a second, so a fast camera never floods the event loop."""

from __future__ import annotations

import os
import time
from collections import deque

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from gui.panels.source_combo import SourceCombo
from gui.workers.frame_sources import DRAW_HZ, FrameSource
from gui.workers.live_preview import FrameMailbox, LiveClassifier
from gui.workers.requests import PanelThread

RATE_WINDOW_S = 2.0  # frames per second over the last two seconds
TOPK_ROWS = 5
ERROR_STYLE = "color: #c62828;"
WARNING_STYLE = "color: #b26a00; font-weight: bold;"
EXPORT_FILTER = "Exported models (*.onnx *.pt2 *.ts *.xml);;All files (*)"


class Rate:
    """Events per second over a sliding window."""

    def __init__(self, window: float = RATE_WINDOW_S):
        self.window = window
        self.times: deque[float] = deque()

    def tick(self) -> None:
        now = time.perf_counter()
        self.times.append(now)
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()

    def per_second(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def clear(self) -> None:
        self.times.clear()


class LivePreviewView(QGroupBox):
    model_requested = Signal(str)  # → LiveClassifier.load
    classify_requested = Signal()  # → LiveClassifier.drain
    preview_started = Signal()
    preview_stopped = Signal()
    frame_drawn = Signal(int)  # frames drawn so far (the throttled redraw ran)
    results_shown = Signal(dict)  # the newest result drawn

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Live preview: a camera or a video", parent)
        self.setObjectName("livePreviewBox")
        self.mailbox = FrameMailbox()
        self._worker = LiveClassifier(self.mailbox, TOPK_ROWS)
        self.worker_thread = PanelThread("livePreviewThread", [self._worker], self)
        self.source: FrameSource | None = None
        self.model_path = ""  # the model in use (the tab's checkpoint, or an export opened here)
        self._export_path = ""  # an export chosen here overrides the tab's checkpoint
        self._checkpoint = ""
        self._loaded = ""  # the model the worker has loaded
        self._frame: QImage | None = None
        self._frame_dirty = False
        self._result: dict | None = None
        self._result_dirty = False
        self.frames_drawn = 0
        self.frames_classified = 0
        self.shown_rate, self.classified_rate = Rate(), Rate()
        self._listed = False  # cameras are listed when the preview is first shown
        self._build()
        self._connect()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._listed:
            self._listed = True
            self.refresh_sources()

    def _build(self) -> None:
        self.liveSourceCombo = SourceCombo("liveSourceCombo", "Open a video")
        self.liveModelLabel = QLabel(objectName="liveModelLabel")
        self.liveModelLabel.setWordWrap(True)
        self.liveOpenExportButton = QPushButton("Exported model…", objectName="liveOpenExportButton")
        self.liveOpenExportButton.setToolTip("Classify with an exported model (ONNX, .pt2, TorchScript, OpenVINO) "
                                             "instead of the checkpoint chosen above")
        self.liveStartButton = QPushButton("Start", objectName="liveStartButton")
        self.liveStopButton = QPushButton("Stop", objectName="liveStopButton")
        self.liveStartButton.setToolTip("Classify the source's frames continuously (the newest frame each time the "
                                        "model is free: a slow model skips frames rather than lag behind)")
        self.liveStopButton.setToolTip("Stop the camera or the video and the classification")
        self.liveFrameView = QLabel(objectName="liveFrameView")
        self.liveFrameView.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.liveFrameView.setMinimumSize(240, 180)
        self.liveFrameView.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.liveFrameView.setStyleSheet("background: #202020; color: #dddddd;")
        self._bar_names: list[QLabel] = []
        self._bars: list[QProgressBar] = []
        bars = QWidget(objectName="liveTopkBars")
        grid = QGridLayout(bars)
        grid.setContentsMargins(0, 0, 0, 0)
        for row in range(TOPK_ROWS):
            name = QLabel(objectName=f"liveTopkName{row}")
            bar = QProgressBar(objectName=f"liveTopkBar{row}")
            bar.setRange(0, 1000)
            bar.setFormat("")
            grid.addWidget(name, row, 0)
            grid.addWidget(bar, row, 1)
            self._bar_names.append(name)
            self._bars.append(bar)
        self.liveOodLabel = QLabel(objectName="liveOodLabel")
        self.liveOodLabel.setWordWrap(True)
        self.liveOodLabel.setStyleSheet(WARNING_STYLE)
        self.liveFpsLabel = QLabel(objectName="liveFpsLabel")
        self.liveStatusLabel = QLabel(objectName="liveStatusLabel")
        self.liveStatusLabel.setWordWrap(True)

        controls = QHBoxLayout()
        controls.addWidget(self.liveSourceCombo, 1)
        controls.addWidget(self.liveOpenExportButton)
        controls.addWidget(self.liveStartButton)
        controls.addWidget(self.liveStopButton)
        side = QVBoxLayout()
        side.addWidget(self.liveModelLabel)
        side.addWidget(bars)
        side.addWidget(self.liveOodLabel)
        side.addWidget(self.liveFpsLabel)
        side.addStretch(1)
        body = QHBoxLayout()
        body.addWidget(self.liveFrameView, 3)
        body.addLayout(side, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.liveStatusLabel)
        layout.addLayout(body, 1)
        self._draw_timer = QTimer(self, interval=1000 // DRAW_HZ)
        self._show_model()
        self._update_buttons()

    def _connect(self) -> None:
        self.liveSourceCombo.source_changed.connect(self._update_buttons)
        self.liveOpenExportButton.clicked.connect(self._on_open_export_clicked)
        self.liveStartButton.clicked.connect(self.start)
        self.liveStopButton.clicked.connect(self.stop)
        self._draw_timer.timeout.connect(self._draw)
        self.model_requested.connect(self._worker.load)
        self.classify_requested.connect(self._worker.drain)
        self._worker.model_loaded.connect(self._on_model_loaded)
        self._worker.model_failed.connect(self._on_model_failed)
        self._worker.frame_classified.connect(self._on_frame_classified)

    # --- choices ----------------------------------------------------------------------------------------------------
    def refresh_sources(self) -> None:
        message = self.liveSourceCombo.refresh()
        if message:
            self._say(message)

    def set_video(self, path: str) -> None:
        """Use a video file as the source (listed after the cameras)."""
        self.liveSourceCombo.set_video(path)

    def set_checkpoint(self, path: str) -> None:
        """The Inference tab's checkpoint: used unless an exported model was opened here, and chosen again over it
        when the tab's choice changes (the newest choice wins)."""
        if path != self._checkpoint:
            self._export_path = ""
        self._checkpoint = path
        self._show_model()

    def set_export(self, path: str) -> None:
        self._export_path = path
        self._show_model()

    @Slot()
    def _on_open_export_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an exported model", "", EXPORT_FILTER)
        if path:
            self.set_export(path)

    def _show_model(self) -> None:
        path = self._export_path or self._checkpoint
        self.liveModelLabel.setText(f"Model: {os.path.basename(path)}" + (" (exported)" if self._export_path else "")
                                    if path else "Model: choose a checkpoint above, or an exported model")
        self.liveModelLabel.setToolTip(path)
        if path != self.model_path:
            self.model_path = path
            if self.is_running and path and self.worker_thread.ensure():
                self.model_requested.emit(path)  # the running preview goes on with the new model
                self._loaded = path
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = self.liveSourceCombo.has_source and bool(self.model_path)
        self.liveStartButton.setEnabled(ready and not self.is_running)
        self.liveStopButton.setEnabled(self.is_running)

    # --- running ----------------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.source is not None

    @Slot()
    def start(self) -> bool:
        if (self.is_running or not self.liveSourceCombo.has_source or not self.model_path
                or not self.worker_thread.ensure()):
            return False
        if self._loaded != self.model_path:
            self._say(f"Loading {os.path.basename(self.model_path)} …")
            self.model_requested.emit(self.model_path)  # queued before any frame: the first frames find it loaded
            self._loaded = self.model_path
        source = self.liveSourceCombo.make_source(self)
        if source is None:
            return False
        self.mailbox.clear()
        self.shown_rate.clear()
        self.classified_rate.clear()
        self.frames_drawn = self.frames_classified = 0
        self.source = source
        source.frame_arrived.connect(self._on_frame)
        source.source_failed.connect(self._on_source_failed)
        source.start()
        self._draw_timer.start()
        self._update_buttons()
        self.preview_started.emit()
        return True

    @Slot()
    def stop(self) -> None:
        if self.source is None:
            return
        source, self.source = self.source, None
        source.stop()
        source.deleteLater()
        self.mailbox.clear()
        self._draw_timer.stop()
        self._update_buttons()
        self.preview_stopped.emit()

    @Slot(QImage, float)
    def _on_frame(self, image: QImage, at: float) -> None:
        if self.source is None:
            return  # a frame queued before the stop
        self._frame, self._frame_dirty = image, True
        if self.mailbox.put(image, at):
            self.classify_requested.emit()

    @Slot(dict)
    def _on_frame_classified(self, result: dict) -> None:
        if self.source is None:
            return
        self.frames_classified += 1
        self.classified_rate.tick()
        self._result, self._result_dirty = result, True

    @Slot(dict)
    def _on_model_loaded(self, info: dict) -> None:
        calibration = "out-of-distribution check on" if info["ood"] else "no out-of-distribution calibration"
        self._say(f"{os.path.basename(info['path'])} ({info['kind']}): {len(info['class_names'])} classes · "
                  f"{calibration}")

    @Slot(str)
    def _on_model_failed(self, message: str) -> None:
        self._loaded = ""
        self._say(message, error=True)

    @Slot(str)
    def _on_source_failed(self, message: str) -> None:
        self.stop()
        self._say(message, error=True)

    # --- drawing (throttled) ------------------------------------------------------------------------------------------
    @Slot()
    def _draw(self) -> None:
        if self._frame_dirty and self._frame is not None:
            self._frame_dirty = False
            self.shown_rate.tick()
            size = self.liveFrameView.size()
            self.liveFrameView.setPixmap(QPixmap.fromImage(self._frame).scaled(
                size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation))
            self.frames_drawn += 1
            self.frame_drawn.emit(self.frames_drawn)
        if self._result_dirty and self._result is not None:
            self._result_dirty = False
            self._show_result(self._result)
        self.liveFpsLabel.setText(
            f"{self.shown_rate.per_second():.1f} frames/s shown · {self.classified_rate.per_second():.1f} classified"
            + (f" · model {1000 * self._result['seconds']:.0f} ms, latency {1000 * self._result['latency']:.0f} ms · "
               f"{self._result['dropped']} dropped" if self._result else ""))

    def _show_result(self, result: dict) -> None:
        top = result["top"]
        for row, (name_label, bar) in enumerate(zip(self._bar_names, self._bars)):
            if row < len(top):
                name, probability = top[row]
                name_label.setText(f"{name} {100 * probability:.0f}%")
                bar.setValue(round(1000 * probability))
            name_label.setVisible(row < len(top))
            bar.setVisible(row < len(top))
        if result["unfamiliar"]:
            self.liveOodLabel.setText(f"Unlike the training data (OOD score {result['ood_score']:.2f} > 1): do not "
                                      "trust this prediction")
        else:
            self.liveOodLabel.setText("")
        self.results_shown.emit(result)

    def top(self) -> list[tuple[str, float]]:
        """The top-k on display."""
        return list(self._result["top"]) if self._result else []

    def _say(self, text: str, error: bool = False) -> None:
        self.liveStatusLabel.setStyleSheet(ERROR_STYLE if error else "")
        self.liveStatusLabel.setText(text)

    def shutdown(self) -> None:
        self.stop()
        self.worker_thread.shutdown()
