"""The Data tab's background work: scanning a dataset folder (plus a few thumbnails) and previewing augmentations.

Both workers are QObjects moved to one QThread owned by the DataPanel; their slots are called through queued
signals and report back through signals. Images cross threads as QImage, never QPixmap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from engine.data.images import load_image, load_pil_rgb
from engine.data.scan import LAYOUT_TRAIN_VAL, ScanReport, scan_folder
from gui.widgets.image_utils import chw_to_rgb, pil_to_qimage, rgb_to_qimage
from gui.workers.requests import RequestWorker

if TYPE_CHECKING:
    from engine.data.preprocessing import Preprocessing

THUMBNAIL_SIZE = 64
THUMBNAILS_PER_CLASS = 4
MAX_THUMBNAILS = 120  # many classes: fewer per class, so that a 1000-class folder does not decode 4000 files


class _Superseded(Exception):
    """Raised from scan_folder's progress callback to abandon a scan that a newer request replaced."""


class ScanWorker(RequestWorker):
    """Scans one folder per request; a newer request cancels the running one at its next progress report."""

    scan_progressed = Signal(int, int)  # files checked, files found
    scan_finished = Signal(object)  # ScanReport
    scan_failed = Signal(str)
    thumbnails_loaded = Signal(list)  # [(class name, path, QImage)], a few per class

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)

    @Slot(int, str, int)
    def scan(self, request: int, root: str, channels: int) -> None:
        if not self.is_current(request):
            return

        def progress(done: int, total: int) -> None:
            if not self.is_current(request):
                raise _Superseded
            self.scan_progressed.emit(done, total)

        try:
            report = scan_folder(root, channels=channels, progress=progress)
        except _Superseded:
            return
        except Exception as exc:  # noqa: BLE001 - any failure is a message on the Data tab, never a dead thread
            if self.is_current(request):
                self.scan_failed.emit(str(exc))
            return
        if not self.is_current(request):
            return
        self.scan_finished.emit(report)
        self._load_thumbnails(request, report)

    def _load_thumbnails(self, request: int, report: ScanReport) -> None:
        per_class = max(1, min(THUMBNAILS_PER_CLASS, MAX_THUMBNAILS // max(1, len(report.classes))))
        chosen: dict[int, list[str]] = {}
        for path, index, split in report.samples:
            if report.layout == LAYOUT_TRAIN_VAL and split != "train":
                continue
            paths = chosen.setdefault(index, [])
            if len(paths) < per_class:
                paths.append(path)
        thumbnails = []
        for index in sorted(chosen):
            for path in chosen[index]:
                if not self.is_current(request):
                    return
                try:
                    image = load_pil_rgb(path)
                except Exception:  # noqa: BLE001 - the scan decoded it a moment ago; a vanished file just has no thumbnail
                    continue
                image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
                thumbnails.append((report.classes[index], path, pil_to_qimage(image)))
        if self.is_current(request):
            self.thumbnails_loaded.emit(thumbnails)


class AugmentationPreviewer(QObject):
    """Runs the real training transform several times on one image, as the model would see it in training."""

    previews_ready = Signal(int, list)  # seed (the request's id), [QImage]
    preview_failed = Signal(int, str)  # seed, message

    @Slot(str, object, str, bool, int, int)
    def preview(self, path: str, preprocessing: Preprocessing, augmentation: str, horizontal_flip: bool, seed: int,
                count: int) -> None:
        # torch here, not above: the Data tab scans while the studio still loads it; a preview is asked for once
        # it has loaded (DataPanel.preview)
        import torch

        from engine.data.transforms import denormalize, train_transform
        from gui.workers.torch_threads import one_torch_thread_here

        one_torch_thread_here()  # this thread may have started before torch was loaded

        try:
            transform = train_transform(preprocessing, augmentation, horizontal_flip)
            image = load_image(path, preprocessing.channels)
            # fork_rng: the preview's seed must not move the global RNG a training run in this process relies on.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                samples = [denormalize(transform(image), preprocessing) for _ in range(count)]
        except Exception as exc:  # noqa: BLE001 - shown next to the preview
            self.preview_failed.emit(seed, str(exc))
            return
        self.previews_ready.emit(seed, [rgb_to_qimage(chw_to_rgb(sample)) for sample in samples])
