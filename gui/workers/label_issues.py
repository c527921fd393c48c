"""Suspect labels, near-duplicates and leaks off the GUI thread: a LabelIssuesWorker (in a WorkerThread the
Evaluate tab owns) reads a run's label_issues.json and loads the images shown side by side, scaled down, so that a
folder of large photos never blocks the GUI thread. Computing the report (engine/infer/label_issues.py: features of
every training and validation image, then a k-fold head and confident learning) is a job, `label_issues_work`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from engine.data.images import load_image
from engine.errors import ThawError
from engine.infer.label_issues import LABEL_ISSUES_FILE, LabelIssueReport, find_run_label_issues
from engine.train.devices import pick_device
from gui.widgets.image_utils import chw_to_rgb, rgb_to_qimage
from gui.workers.requests import RequestWorker

PREVIEW_SIDE = 320  # pixels: the longest side of an image shown side by side


def preview_image(path: str, side: int = PREVIEW_SIDE) -> tuple[QImage | None, str]:
    """(the image scaled to fit `side`, "") or (None, why it cannot be shown)."""
    try:
        rgb = chw_to_rgb(load_image(path, 3))
    except ThawError as exc:
        return None, str(getattr(exc, "reason", "") or exc)
    except (OSError, ValueError) as exc:
        return None, str(exc)
    image = Image.fromarray(rgb)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return rgb_to_qimage(np.asarray(image)), ""


class LabelIssuesWorker(RequestWorker):
    # request, run folder, the report (None: the run has none yet), where it came from ("" when just computed)
    report_ready = Signal(int, str, object, str)
    report_failed = Signal(int, str)
    # request, [(path, QImage | None, error)] in the order asked
    previews_ready = Signal(int, list)

    def __init__(self, device: str = "auto", parent: QObject | None = None):
        super().__init__(parent)
        self._device_request = device

    @Slot(int, str)
    def load(self, request: int, run_dir: str) -> None:
        if not self.is_current(request):
            return
        path = Path(run_dir) / LABEL_ISSUES_FILE
        if not path.is_file():
            self.report_ready.emit(request, run_dir, None, "")
            return
        try:
            report = LabelIssueReport.load(path)
        except ThawError as exc:
            self.report_failed.emit(request, str(exc))
            return
        self.report_ready.emit(request, run_dir, report, str(path))

    @Slot(int, list)
    def load_previews(self, request: int, paths: list) -> None:
        """Previews have their own ids (the panel's): loading them never cancels a report being computed."""
        previews = []
        for path in paths:
            image, error = preview_image(path) if path else (None, "")
            previews.append((path, image, error))
        self.previews_ready.emit(request, previews)


def label_issues_work(run_dir: str, backbone: str, device_request: str = "auto"):
    """A JobRunner's work (gui/jobs/runner.py): compute the report (and write label_issues.json in the run folder);
    returns (run folder, report, where it was written); stops at the next image batch when cancelled."""

    def work(task):
        def progress(done: int, total: int) -> None:
            task.check()
            task.progress(done, total)

        device, _warning = pick_device(device_request)
        report = find_run_label_issues(run_dir, backbone=backbone, device=device, progress=progress)
        return run_dir, report, str(Path(run_dir) / LABEL_ISSUES_FILE)

    return work
