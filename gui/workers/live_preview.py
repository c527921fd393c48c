"""The live preview's model, off the GUI thread: a LiveClassifier lives in a thread the preview owns, holds the
loaded model (a checkpoint or an export) and classifies the newest frame only.

Latest frame wins: frames go into a one-slot `FrameMailbox`; a frame not yet taken when the next arrives is dropped
(counted), so a model slower than the camera shows the present a little less often instead of an ever-older past.
The GUI thread wakes the worker only when it is idle (one queued call per burst of frames, not one per frame).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from engine.errors import BadInputError
from engine.infer.exported import looks_like_export
from engine.infer.inference import Predictor
from engine.infer.live import FrameClassifier
from engine.train.devices import pick_device
from gui.widgets.image_utils import qimage_to_rgb


@dataclass
class _Frame:
    image: QImage
    at: float  # the frame's time in its source
    arrived: float  # perf_counter() when the GUI thread received it: the latency's start


class FrameMailbox:
    """One slot shared by the GUI thread (put) and the worker (take)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: _Frame | None = None
        self._busy = False  # the worker is draining: no wake-up needed
        self.dropped = 0

    def put(self, image: QImage, at: float) -> bool:
        """Leave the frame for the worker; True when the worker must be woken (it was idle)."""
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = _Frame(image, at, time.perf_counter())
            wake = not self._busy
            self._busy = True
            return wake

    def take(self) -> _Frame | None:
        """The newest frame, or None (then the worker is idle until the next wake-up)."""
        with self._lock:
            frame, self._frame = self._frame, None
            if frame is None:
                self._busy = False
            return frame

    def clear(self) -> None:
        with self._lock:
            self._frame = None
            self.dropped = 0


class LiveClassifier(QObject):
    model_loaded = Signal(dict)  # path, kind ("checkpoint" or the export's format), class_names, ood (bool)
    model_failed = Signal(str)
    # time, top [(class, p)], ood_score, unfamiliar, seconds (the model's), latency (frame arrived → result), dropped
    frame_classified = Signal(dict)

    def __init__(self, mailbox: FrameMailbox, topk: int = 5, device: str = "auto", parent: QObject | None = None):
        super().__init__(parent)
        self.mailbox = mailbox
        self.topk = topk
        self._device = device
        self._classifier: FrameClassifier | None = None

    @Slot(str)
    def load(self, path: str) -> None:
        try:
            device, _warning = pick_device(self._device)
            if looks_like_export(path):
                predictor, kind = Predictor.from_export(path, device), Path(path).suffix.lstrip(".")
            else:
                predictor, kind = Predictor.from_checkpoint(path, device), "checkpoint"
        except Exception as exc:  # noqa: BLE001 - a bad file is a message, never a dead thread
            self._classifier = None
            self.model_failed.emit(f"cannot load {path}: {exc}")
            return
        try:
            self._classifier = FrameClassifier(predictor, self.topk)
        except BadInputError as exc:  # a model of .npy arrays with other than 1 or 3 channels
            self._classifier = None
            self.model_failed.emit(f"cannot use {path} here: {exc}")
            return
        self.model_loaded.emit({"path": path, "kind": kind, "class_names": list(predictor.class_names),
                                "ood": predictor.ood is not None})

    @Slot()
    def drain(self) -> None:
        """Classify frames until the mailbox is empty (each time the newest one)."""
        while (frame := self.mailbox.take()) is not None:
            if self._classifier is None:
                continue
            try:
                result = self._classifier.classify(qimage_to_rgb(frame.image), frame.at)
            except Exception as exc:  # noqa: BLE001 - one bad frame (or a model that cannot take RGB) is a message
                self.model_failed.emit(f"cannot classify the frame at {frame.at:.2f} s: {exc}")
                continue
            self.frame_classified.emit({"time": result.time, "top": result.top, "ood_score": result.ood_score,
                                        "unfamiliar": result.unfamiliar, "seconds": result.seconds,
                                        "latency": time.perf_counter() - frame.arrived,
                                        "dropped": self.mailbox.dropped})

    def cancel(self) -> None:
        self.mailbox.clear()
