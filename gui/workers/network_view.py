"""What the network sees, off the GUI thread: a NetworkViewWorker (in a WorkerThread the Evaluate tab owns) builds
a run's pretrained and fine-tuned models once (engine/infer/network_view.py `NetworkViews`) and turns their first
convolution's filters and a stage's feature maps for one image into QImages, side by side."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from engine.data.images import load_image
from engine.data.transforms import denormalize
from engine.infer.network_view import NetworkViews
from engine.infer.run_checkpoint import open_checkpoint
from gui.widgets.image_utils import chw_to_rgb, rgb_to_qimage
from gui.workers.requests import RequestWorker

FILTER_SCALE = 4  # pixels per weight in the filter grid (7×7 kernels → 28-pixel tiles)
MAP_SCALE = 4  # pixels per feature-map position


def grey_to_qimage(grey: np.ndarray):
    return rgb_to_qimage(np.repeat(np.ascontiguousarray(grey)[:, :, None], 3, axis=2))


class NetworkViewWorker(RequestWorker):
    # request, {run_dir, stages, layer, filters, start, tuned (QImages), error}
    filters_ready = Signal(int, dict)
    # request, {image, stage, layer, input, start, tuned (QImages), channels, shown, error}
    feature_maps_ready = Signal(int, dict)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._views: NetworkViews | None = None
        self._run_dir = ""

    def _open(self, run_dir: str) -> NetworkViews:
        if run_dir != self._run_dir or self._views is None:
            self._views, self._run_dir = None, ""  # a failure below leaves no half-opened run
            self._views, self._run_dir = NetworkViews(open_checkpoint(run_dir)), run_dir
        return self._views

    @Slot(int, str, bool)
    def filters(self, request: int, run_dir: str, same_scale: bool) -> None:
        """The first convolution's filters of the model the run started from and of the fine-tuned one; with
        `same_scale` one symmetric scale for both (magnitudes compare), else each tile stretched to its range."""
        if not self.is_current(request):
            return
        try:
            views = self._open(run_dir)
            start, tuned = views.filters(FILTER_SCALE, same_scale)
            stages = views.stage_names()
        except Exception as exc:  # noqa: BLE001 - e.g. the pretrained weights are not cached, offline
            self.filters_ready.emit(request, {"run_dir": run_dir, "error": str(exc)})
            return
        self.filters_ready.emit(request, {"run_dir": run_dir, "stages": stages, "layer": start.layer,
                                          "filters": start.filters, "start": rgb_to_qimage(start.image),
                                          "tuned": rgb_to_qimage(tuned.image), "error": ""})

    @Slot(int, str, str, str, int)
    def feature_maps(self, request: int, run_dir: str, image: str, stage: str, count: int) -> None:
        """The `count` strongest channels of `stage`'s output for `image`, both models, and the crop they saw."""
        if not self.is_current(request):
            return
        answer = {"run_dir": run_dir, "image": image, "stage": stage}
        try:
            views = self._open(run_dir)
            start, tuned = views.feature_maps(image, stage)
            checkpoint = views.checkpoint
            crop = views.transform(load_image(image, checkpoint.channels))
        except Exception as exc:  # noqa: BLE001 - an unreadable image, a stage without maps: said in place
            self.feature_maps_ready.emit(request, {**answer, "error": str(exc)})
            return
        shown = min(count, start.maps.shape[0])
        self.feature_maps_ready.emit(request, {
            **answer, "layer": start.layer, "channels": int(start.maps.shape[0]), "shown": shown,
            "size": tuple(int(n) for n in start.maps.shape[1:]),
            "input": rgb_to_qimage(chw_to_rgb(denormalize(crop, checkpoint.preprocessing))),
            "start": grey_to_qimage(start.grid(shown, MAP_SCALE)),
            "tuned": grey_to_qimage(tuned.grid(shown, MAP_SCALE, order=start.order)), "error": ""})
