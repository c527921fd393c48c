"""What the network sees, off the GUI thread: a NetworkViewWorker (in a WorkerThread the Evaluate tab owns) builds
a run's pretrained model and one of its checkpoints (best or last) once (engine/infer/network_view.py
`NetworkViews`) and turns their first convolution's filters and a stage's feature maps for one image into QImages,
side by side, with the weight drift of that checkpoint."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from engine.data.images import load_image
from engine.data.transforms import denormalize
from engine.infer.drift import weight_drift
from engine.infer.network_view import NetworkViews
from engine.infer.run_checkpoint import open_checkpoint
from gui.widgets.image_utils import chw_to_rgb, rgb_to_qimage
from gui.workers.requests import RequestWorker

FILTER_SCALE = 4  # pixels per weight in the filter grid (7×7 kernels → 28-pixel tiles)
MAP_SCALE = 4  # pixels per feature-map position


def grey_to_qimage(grey: np.ndarray):
    return rgb_to_qimage(np.repeat(np.ascontiguousarray(grey)[:, :, None], 3, axis=2))


class NetworkViewWorker(RequestWorker):
    # request, {run_dir, kind, checkpoint (which weights, in words), drift (WeightDrift of those weights), stages,
    # layer, filters, start, tuned (QImages), error}
    filters_ready = Signal(int, dict)
    # request, {run_dir, kind, image, stage, layer, input, start, tuned (QImages), channels, shown, error}
    feature_maps_ready = Signal(int, dict)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._views: NetworkViews | None = None
        self._opened: tuple[str, str] = ("", "")  # (run folder, checkpoint kind) of the views

    def _open(self, run_dir: str, kind: str) -> NetworkViews:
        if (run_dir, kind) != self._opened or self._views is None:
            self._views, self._opened = None, ("", "")  # a failure below leaves no half-opened run
            self._views, self._opened = NetworkViews(open_checkpoint(run_dir, kind)), (run_dir, kind)
        return self._views

    @Slot(int, str, str, bool)
    def filters(self, request: int, run_dir: str, kind: str, same_scale: bool) -> None:
        """The first convolution's filters of the model the run started from and of its `kind` checkpoint (best,
        last), and how far that checkpoint's weights moved; with `same_scale` one symmetric scale for both
        (magnitudes compare), else each tile stretched to its range."""
        if not self.is_current(request):
            return
        try:
            views = self._open(run_dir, kind)
            start, tuned = views.filters(FILTER_SCALE, same_scale)
            stages = views.stage_names()
            drift = weight_drift(views.trained.model, dict(views.start.model.named_parameters()),
                                 views.trained.stages)
        except Exception as exc:  # noqa: BLE001 - e.g. the pretrained weights are not cached, offline
            self.filters_ready.emit(request, {"run_dir": run_dir, "kind": kind, "error": str(exc)})
            return
        self.filters_ready.emit(request, {"run_dir": run_dir, "kind": kind,
                                          "checkpoint": views.checkpoint.describe(), "drift": drift,
                                          "stages": stages, "layer": start.layer,
                                          "filters": start.filters, "start": rgb_to_qimage(start.image),
                                          "tuned": rgb_to_qimage(tuned.image), "error": ""})

    @Slot(int, str, str, str, str, int)
    def feature_maps(self, request: int, run_dir: str, kind: str, image: str, stage: str, count: int) -> None:
        """The `count` strongest channels of `stage`'s output for `image`, both models, and the crop they saw."""
        if not self.is_current(request):
            return
        answer = {"run_dir": run_dir, "kind": kind, "image": image, "stage": stage}
        try:
            views = self._open(run_dir, kind)
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
