"""Where live frames come from: a camera (Qt Multimedia) or a video file standing in for one (PyAV). Both are a
`FrameSource`: `start()`, `stop()`, and the same three signals, so the capture page and the live preview run one
code path whatever feeds them — which is how the tests drive them, with a generated video.

A video is paced to its own clock (a 2 s video takes 2 s, as a camera would) and, for the live preview, loops
until stopped. It is decoded in a thread of its own; a camera's frames arrive from Qt Multimedia's threads.

Qt Multimedia is in PySide6-Addons, not in PySide6-Essentials (the studio's dependency), and on Linux it loads the
PulseAudio client library even for video: without either, `camera_names()` says what to install instead of
listing cameras, and a video file still works.
"""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QLoggingCategory, QObject, Signal, Slot
from PySide6.QtGui import QImage

from engine.data.video import VideoError, iter_frames
from gui.widgets.image_utils import rgb_to_qimage
from gui.workers.threads import WorkerThread

# The views of a frame source (live preview, capture) draw at most this often: a fast camera never floods the event
# loop.
DRAW_HZ = 25

VIDEO_SOURCE = "video"
MULTIMEDIA_MISSING = ("Cameras need Qt Multimedia, which is not installed here: pip install PySide6-Addons (the "
                      "same version as PySide6-Essentials){linux}. A video file can stand in for a camera.")


def _multimedia():
    """The QtMultimedia module, or the reason it cannot be imported (a missing wheel or system library)."""
    # FFmpeg's optional libraries (PipeWire, VA-API) that Qt Multimedia probes for and logs as missing at import:
    # noise for a user, whose cameras work without them.
    QLoggingCategory.setFilterRules("qt.multimedia.symbolsresolver=false\nqt.multimedia.ffmpeg.info=false")
    try:
        from PySide6 import QtMultimedia
    except ImportError as exc:
        linux = "; on Linux also the PulseAudio client library (libpulse0)" if "libpulse" in str(exc) else ""
        return None, MULTIMEDIA_MISSING.format(linux=linux)
    return QtMultimedia, ""


def camera_names() -> tuple[list[tuple[str, str]], str]:
    """The cameras as (id, description), and a message when there are none (or none can be listed)."""
    multimedia, missing = _multimedia()
    if multimedia is None:
        return [], missing
    cameras = [(bytes(device.id().data()).decode(errors="replace"), device.description())
               for device in multimedia.QMediaDevices.videoInputs()]
    if not cameras:
        return [], "No camera found: connect one (and allow the studio to use it), or choose a video file."
    return cameras, ""


class FrameSource(QObject):
    frame_arrived = Signal(QImage, float)  # the frame and its time in seconds since the source started
    source_failed = Signal(str)  # one line: why frames stopped (or never came)
    source_finished = Signal()  # a video that does not loop has ended

    description = ""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class _VideoDecoder(QObject):
    """Decodes in its own thread, paced to the video's clock; `cancel()` (any thread) ends it between frames."""

    frame_decoded = Signal(QImage, float)
    decoding_failed = Signal(str)
    decoding_ended = Signal(bool)  # True: the video ended (not stopped)

    def __init__(self, path: str, loop: bool, speed: float):
        super().__init__()
        self.path, self.loop, self.speed = path, loop, speed
        self._stop = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    @Slot()
    def run(self) -> None:
        offset, started = 0.0, time.perf_counter()
        ended = False
        try:
            while not self._stop.is_set():
                last, frames = 0.0, 0
                for frame in iter_frames(self.path):
                    frames += 1
                    at = offset + frame.time
                    # Wait for the frame's moment like a camera would deliver it; the event wakes a stop at once.
                    if self._stop.wait(max(0.0, started + at / self.speed - time.perf_counter())):
                        break
                    self.frame_decoded.emit(rgb_to_qimage(frame.rgb), at)
                    last = frame.time
                else:
                    if not frames:  # looping over a video without a frame would spin for ever
                        self.decoding_failed.emit(f"{self.path} has no frame that can be decoded")
                        break
                    if not self.loop:
                        ended = True
                        break
                    offset += last + 1 / 30  # the next pass goes on after the last frame, as time does
                    continue
                break
        except VideoError as exc:
            self.decoding_failed.emit(str(exc))
        self.decoding_ended.emit(ended)


class VideoFileSource(FrameSource):
    """A video file as a camera. `loop`: start again at the end (the live preview); `speed` > 1 plays faster."""

    def __init__(self, path: str, loop: bool = True, speed: float = 1.0, parent: QObject | None = None):
        super().__init__(parent)
        self.path = path
        self.description = f"video {path}"
        self._loop, self._speed = loop, speed
        self._thread: WorkerThread | None = None
        self._decoder: _VideoDecoder | None = None

    def start(self) -> None:
        self.stop()
        decoder = _VideoDecoder(self.path, self._loop, self._speed)
        decoder.frame_decoded.connect(self.frame_arrived)
        decoder.decoding_failed.connect(self.source_failed)
        decoder.decoding_ended.connect(self._on_decoding_ended)
        self._decoder = decoder
        self._thread = WorkerThread("videoSourceThread", [decoder], owner=self, job=decoder.run,
                                    done=decoder.decoding_ended).start()

    @Slot(bool)
    def _on_decoding_ended(self, ended: bool) -> None:
        if ended:
            self.source_finished.emit()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread, self._decoder = None, None

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_running


class CameraSource(FrameSource):
    """A camera through Qt Multimedia: QCamera → QMediaCaptureSession → QVideoSink → QImage."""

    def __init__(self, camera_id: str, description: str = "", parent: QObject | None = None):
        super().__init__(parent)
        self.camera_id = camera_id
        self.description = description or f"camera {camera_id}"
        self._camera = self._session = self._sink = None
        self._started = 0.0

    def start(self) -> None:
        multimedia, missing = _multimedia()
        if multimedia is None:
            self.source_failed.emit(missing)
            return
        device = next((d for d in multimedia.QMediaDevices.videoInputs()
                       if bytes(d.id().data()).decode(errors="replace") == self.camera_id), None)
        if device is None:
            self.source_failed.emit(f"The camera {self.description} is gone (unplugged?): choose another.")
            return
        self._camera = multimedia.QCamera(device, self)
        self._session = multimedia.QMediaCaptureSession(self)
        self._sink = multimedia.QVideoSink(self)
        self._session.setCamera(self._camera)
        self._session.setVideoSink(self._sink)
        self._sink.videoFrameChanged.connect(self._on_frame)
        self._camera.errorOccurred.connect(lambda _error, text: self.source_failed.emit(
            f"The camera {self.description} failed: {text or 'no reason given'}"))
        self._started = time.perf_counter()
        self._camera.start()

    @Slot(object)
    def _on_frame(self, frame) -> None:
        image = frame.toImage()
        if not image.isNull():
            self.frame_arrived.emit(image, time.perf_counter() - self._started)

    def stop(self) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._sink.videoFrameChanged.disconnect(self._on_frame)
            for item in (self._camera, self._session, self._sink):
                item.deleteLater()
            self._camera = self._session = self._sink = None

