"""The Data tab's Capture page with a generated video as the camera: a burst writes N frames into the chosen class
folder, one interval apart, and the Data tab rescans them with the same scan as any folder; one per click; a new
class; a read-only class folder is refused in words with nothing written; no camera is said in words."""

from __future__ import annotations

import stat

import pytest
from PIL import Image

from gui.document import RecipeDocument
from gui.panels.data_panel import DataPanel
from tests.helpers import make_image_folder
from tests.video_helpers import make_video

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("capture") / "camera.mp4", ("cat", "dog"), frames_per_class=6, fps=12)


@pytest.fixture
def data(tmp_path):
    return make_image_folder(tmp_path / "data", classes=2, per_class=2, size=16)


@pytest.fixture
def panel(qtbot, data, video):
    document = RecipeDocument()
    widget = DataPanel(document)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(document.data_scanned, timeout=TIMEOUT_MS):
        widget.set_data_folder(str(data))
    widget.dataPagesTabs.setCurrentWidget(widget.capture_page)
    widget.capture_page.set_video(str(video))
    yield widget
    widget.shutdown()
    assert widget.capture_page.source is None and widget.capture_page.worker_thread.thread is None


def started(qtbot, page) -> None:
    assert page.captureStartButton.isEnabled()
    page.captureStartButton.click()
    qtbot.waitUntil(lambda: page._frame is not None, timeout=TIMEOUT_MS)


def test_a_burst_writes_n_frames_into_the_class_folder_and_the_scan_counts_them(qtbot, panel, data):
    page = panel.capture_page
    assert page.counts() == {"cat": 2, "dog": 2}
    started(qtbot, page)
    page.captureClassCombo.setEditText("dog")
    page.captureBurstSpin.setValue(4)
    page.captureIntervalSpin.setValue(0.15)
    times = []
    page.write_requested.connect(lambda _image, _label, _folder: times.append(page._next_due))
    with qtbot.waitSignal(panel.document.data_scanned, timeout=TIMEOUT_MS):  # the rescan after the burst
        with qtbot.waitSignal(page.capture_finished, timeout=TIMEOUT_MS) as finished:
            page.captureBurstButton.click()
    assert finished.args == [str(data), 4]
    captured = sorted((data / "dog").glob("capture-*.jpg"))
    assert len(captured) == 4
    assert all(Image.open(p).size == (40, 40) for p in captured)
    assert all(b - a >= 0.15 - 1e-3 for a, b in zip(times, times[1:]))  # one interval apart, at least
    assert page.counts() == {"cat": 2, "dog": 6}  # the rescan counts them
    assert panel.document.scan.counts["dog"] == 6
    assert "Recorded 4 frame(s) into dog" in page.captureStatusLabel.text()


def test_one_per_click_into_a_new_class(qtbot, panel, data):
    page = panel.capture_page
    started(qtbot, page)
    page.captureClassCombo.setEditText("owl")
    with qtbot.waitSignal(panel.document.data_scanned, timeout=TIMEOUT_MS):
        page.captureOneButton.click()
    assert len(list((data / "owl").glob("capture-*.jpg"))) == 1
    assert panel.document.scan.classes == ["cat", "dog", "owl"]
    page.stop_source()
    assert not page.captureOneButton.isEnabled()


def test_a_read_only_class_folder_is_refused_in_words(qtbot, panel, data):
    page = panel.capture_page
    started(qtbot, page)
    page.captureClassCombo.setEditText("cat")
    (data / "cat").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert not page.capture_one()
    finally:
        (data / "cat").chmod(0o755)
    assert "read-only" in page.captureStatusLabel.text() and "no frame was captured" in page.captureStatusLabel.text()
    assert not list((data / "cat").glob("capture-*"))


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b"])
def test_a_class_name_that_cannot_be_a_folder_is_refused(qtbot, panel, data, name):
    page = panel.capture_page
    started(qtbot, page)
    page.captureClassCombo.setEditText(name)
    assert not page._begin(1, 0.0)
    assert not list(data.parent.rglob("capture-*"))


def test_without_a_camera_the_page_says_so(qtbot, panel):
    from gui.workers.frame_sources import camera_names

    if camera_names()[0]:
        pytest.skip("this machine has a camera")
    assert panel.capture_page.captureStatusLabel.text() == ""  # cameras are looked for when the page is first seen
    panel.show()
    qtbot.waitExposed(panel)
    text = panel.capture_page.captureStatusLabel.text()
    assert "camera" in text.lower() and "video file" in text


def test_a_dataset_starts_from_an_empty_folder(qtbot, tmp_path, video):
    """Teachable Machine's first screen: an empty folder, a class typed in, frames recorded, a dataset scanned."""
    empty = tmp_path / "new"
    empty.mkdir()
    document = RecipeDocument()
    panel = DataPanel(document)
    qtbot.addWidget(panel)
    try:
        with qtbot.waitSignal(document.data_scanned, timeout=TIMEOUT_MS):
            panel.set_data_folder(str(empty))
        assert document.scan is None  # no class folder yet
        page = panel.capture_page
        page.set_video(str(video))
        started(qtbot, page)
        page.captureClassCombo.setEditText("mug")
        page.captureBurstSpin.setValue(2)
        page.captureIntervalSpin.setValue(0.0)
        with qtbot.waitSignal(document.data_scanned, timeout=TIMEOUT_MS):
            page.captureBurstButton.click()
        assert document.scan is not None and document.scan.counts == {"mug": 2}
    finally:
        panel.shutdown()


def test_the_split_row_shows_only_for_a_train_val_layout(qtbot, panel, tmp_path):
    page = panel.capture_page
    label = page._form.labelForField(page.captureSplitCombo)
    assert label.isHidden() and page.captureSplitCombo.isHidden()  # class folders: no "Split" beside nothing
    folder = make_image_folder(tmp_path / "split", classes=2, per_class=2, size=16, layout="train_val")
    with qtbot.waitSignal(panel.document.data_scanned, timeout=TIMEOUT_MS):
        panel.set_data_folder(str(folder))
    assert not label.isHidden() and not page.captureSplitCombo.isHidden()
