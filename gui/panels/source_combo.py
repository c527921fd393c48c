"""The choice of a frame source, shared by the capture page and the live preview: the cameras Qt Multimedia lists,
the video files chosen so far, and "Video file…", which opens a file dialog. It makes the chosen FrameSource.

Cameras are listed on demand (`refresh`), not when the combo is built: listing them loads Qt Multimedia and FFmpeg's
libraries and scans the devices, which the studio's start should not wait for."""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QComboBox, QFileDialog, QWidget

from engine.data.video import VIDEO_EXTENSIONS
from gui.workers.frame_sources import CameraSource, FrameSource, VideoFileSource, camera_names

CAMERA, VIDEO, OPEN_VIDEO = "camera", "video", "open-video"
VIDEO_FILTER = "Videos (" + " ".join(f"*{e}" for e in sorted(VIDEO_EXTENSIONS)) + ");;All files (*)"


class SourceCombo(QComboBox):
    source_changed = Signal()  # another source was chosen (or a video opened)

    def __init__(self, object_name: str, dialog_title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setToolTip("A camera, or a video file that stands in for one")
        self._dialog_title = dialog_title
        self.addItem("Video file…", (OPEN_VIDEO, "", ""))
        self.activated.connect(self._on_activated)

    def refresh(self) -> str:
        """List the cameras again (first, before the videos); the message when none can be used, else ""."""
        for index in reversed(range(self.count())):
            if self.itemData(index)[0] == CAMERA:
                self.removeItem(index)
        cameras, message = camera_names()
        for row, (camera_id, description) in enumerate(cameras):
            self.insertItem(row, description, (CAMERA, camera_id, description))
        if cameras:
            self.setCurrentIndex(0)
        self.source_changed.emit()
        return message

    def set_video(self, path: str) -> None:
        """Choose a video file (listed after the cameras, before "Video file…")."""
        data = (VIDEO, path, os.path.basename(path))
        index = self.findData(data)
        if index < 0:
            index = self.count() - 1
            self.insertItem(index, os.path.basename(path), data)
        self.setCurrentIndex(index)
        self.source_changed.emit()

    @property
    def has_source(self) -> bool:
        data = self.currentData()
        return bool(data) and data[0] != OPEN_VIDEO

    def make_source(self, parent: QObject) -> FrameSource | None:
        """The chosen camera or video as a FrameSource (a video loops: it stands in for a camera)."""
        kind, ident, description = self.currentData() or (OPEN_VIDEO, "", "")
        if kind == CAMERA:
            return CameraSource(ident, description, parent)
        if kind == VIDEO:
            return VideoFileSource(ident, loop=True, parent=parent)
        return None

    @Slot(int)
    def _on_activated(self, index: int) -> None:
        if self.itemData(index)[0] == OPEN_VIDEO:
            path, _ = QFileDialog.getOpenFileName(self, self._dialog_title, "", VIDEO_FILTER)
            if path:
                self.set_video(path)
                return
        self.source_changed.emit()
