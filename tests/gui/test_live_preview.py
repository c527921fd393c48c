"""The Inference tab's live preview with a generated video as the camera: frames are labelled by the tab's
checkpoint off the GUI thread, the GUI thread stays responsive, a slow model drops frames instead of lagging, the
out-of-distribution warning shows, and nothing is left running after Stop."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import Qt, QTimer

from engine.train.runs import checkpoint_path
from gui.panels.live_preview import LivePreviewView
from gui.workers.frame_sources import camera_names
from gui.workers.live_preview import FrameMailbox
from tests.video_helpers import make_video

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("live") / "camera.mp4", ("cat", "dog"), frames_per_class=6, fps=12)


@pytest.fixture
def view(qtbot, trained_runs, video):
    widget = LivePreviewView()
    qtbot.addWidget(widget)
    widget.set_checkpoint(str(checkpoint_path(trained_runs.get("feature_extraction", epochs=1), "best")))
    widget.set_video(str(video))
    widget.show()
    yield widget
    widget.shutdown()
    assert widget.worker_thread.thread is None and widget.source is None


def test_frames_are_labelled_while_the_gui_thread_stays_responsive(qtbot, view):
    gaps, last = [], [time.perf_counter()]

    def tick() -> None:  # a 10 ms timer: its longest gap is the GUI thread's worst latency during the preview
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    heartbeat = QTimer(interval=10)
    heartbeat.timeout.connect(tick)
    heartbeat.start()
    model_threads = set()  # where the model ran: a direct connection runs in the emitting (worker) thread
    view._worker.frame_classified.connect(lambda _result: model_threads.add(threading.get_ident()),
                                          Qt.ConnectionType.DirectConnection)
    assert view.liveStartButton.isEnabled()
    with qtbot.waitSignal(view.preview_started):
        view.liveStartButton.click()
    qtbot.waitUntil(lambda: view.frames_classified >= 8 and view.frames_drawn >= 8, timeout=TIMEOUT_MS)
    heartbeat.stop()
    top = view.top()
    assert len(top) == 3 and {name for name, _ in top} == {"cat", "dog", "fox"}
    assert top[0][1] >= top[1][1] >= top[2][1]
    assert view.findChild(type(view.liveFpsLabel), "liveTopkName0").text().startswith(top[0][0])
    assert "frames/s shown" in view.liveFpsLabel.text() and "classified" in view.liveFpsLabel.text()
    assert max(gaps) < 0.5, f"the GUI thread stalled for {max(gaps):.3f} s"
    assert model_threads and threading.get_ident() not in model_threads  # off the GUI thread
    with qtbot.waitSignal(view.preview_stopped):
        view.liveStopButton.click()
    assert not view.liveStopButton.isEnabled() and view.liveStartButton.isEnabled()


def test_a_slow_model_drops_frames_instead_of_lagging():
    mailbox = FrameMailbox()
    assert mailbox.put("frame 1", 0.0) is True  # the idle worker must be woken
    assert mailbox.put("frame 2", 0.1) is False  # it is awake: no second wake-up
    assert mailbox.put("frame 3", 0.2) is False
    assert mailbox.take().image == "frame 3" and mailbox.dropped == 2  # the newest frame wins
    assert mailbox.take() is None  # now idle …
    assert mailbox.put("frame 4", 0.3) is True  # … so the next frame wakes it


def test_the_out_of_distribution_warning_shows(qtbot, view):
    view._show_result({"time": 0.0, "top": [("cat", 0.9), ("dog", 0.1)], "ood_score": 2.5, "unfamiliar": True,
                       "seconds": 0.01, "latency": 0.02, "dropped": 0})
    assert "Unlike the training data" in view.liveOodLabel.text() and "2.50" in view.liveOodLabel.text()
    assert not view._bars[2].isVisible()  # two classes shown, the third bar hidden
    view._show_result({"time": 0.1, "top": [("cat", 0.9), ("dog", 0.1)], "ood_score": 0.5, "unfamiliar": False,
                       "seconds": 0.01, "latency": 0.02, "dropped": 0})
    assert view.liveOodLabel.text() == ""


def test_without_a_camera_the_message_says_what_to_do(qtbot):
    cameras, message = camera_names()
    if cameras:
        pytest.skip("this machine has a camera")
    assert "video file" in message and ("No camera found" in message or "pip install PySide6-Addons" in message)


def test_a_camera_that_is_gone_is_said_in_words(qtbot):
    from gui.workers.frame_sources import CameraSource

    source = CameraSource("no-such-camera", "USB camera")
    with qtbot.waitSignal(source.source_failed) as failed:
        source.start()
    assert "USB camera is gone" in failed.args[0] or "pip install PySide6-Addons" in failed.args[0]
    source.stop()


def test_a_video_source_delivers_every_frame_in_order_then_finishes(qtbot, video):
    from gui.workers.frame_sources import VideoFileSource

    source = VideoFileSource(str(video), loop=False, speed=8.0)
    times = []
    source.frame_arrived.connect(lambda image, at: times.append((at, image.width())))
    with qtbot.waitSignal(source.source_finished, timeout=TIMEOUT_MS):
        source.start()
    qtbot.waitUntil(lambda: len(times) == 12, timeout=TIMEOUT_MS)  # queued frames land before or after the end
    assert [round(at, 3) for at, _ in times] == [round(i / 12, 3) for i in range(12)]
    assert {width for _, width in times} == {40}
    source.stop()
    assert not source.is_running


def test_a_video_that_cannot_be_read_stops_the_preview_in_words(qtbot, view, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    view.set_video(str(broken))
    with qtbot.waitSignal(view.preview_stopped, timeout=TIMEOUT_MS):
        view.liveStartButton.click()
    assert "cannot be read as a video" in view.liveStatusLabel.text()
    assert view.source is None and view.liveStartButton.isEnabled()
