"""The Evaluate tab's work off the GUI thread (each worker lives in a WorkerThread the panel owns):

    EvaluationWorker     reads a run's evaluation.json
    evaluation_work      evaluates its best checkpoint on the validation split (and writes evaluation.json) or on
                         another folder of class folders: a JobRunner's work, which waits for the device
    ExplanationWorker    the gallery's thumbnails: each image's crop with its Grad-CAM heat map

Requests carry an id; a newer request (`begin_request`) or `cancel()` abandons an older one at its next image
or batch, so clicking another cell or run never waits for the previous one to finish.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from engine.errors import ThawError
from engine.infer.evaluation import EVALUATION_FILE, Evaluation, evaluate_checkpoint, write_run_evaluation
from engine.infer.explain import overlay
from engine.infer.inference import Predictor
from engine.train.devices import pick_device
from gui.widgets.image_utils import rgb_to_qimage
from gui.workers.inference import explain_file
from gui.workers.requests import RequestWorker


class EvaluationWorker(RequestWorker):
    # request, run folder, the Evaluation (None: the run has no evaluation.json yet), where it came from
    evaluation_ready = Signal(int, str, object, str)
    evaluation_failed = Signal(int, str)  # request, a one-line reason

    def __init__(self, device: str = "auto", parent: QObject | None = None):
        super().__init__(parent)
        self._device_request = device

    @Slot(int, str)
    def load(self, request: int, run_dir: str) -> None:
        """The run's evaluation.json (fast: no model is built)."""
        if not self.is_current(request):
            return
        path = Path(run_dir) / EVALUATION_FILE
        if not path.is_file():
            self.evaluation_ready.emit(request, run_dir, None, "")
            return
        try:
            evaluation = Evaluation.load(path)
        except ThawError as exc:
            self.evaluation_failed.emit(request, str(exc))
            return
        self.evaluation_ready.emit(request, run_dir, evaluation, str(path))


def evaluation_work(run_dir: str, image_dir: str = "", device_request: str = "auto"):
    """A JobRunner's work (gui/jobs/runner.py): the best checkpoint on the run's validation split (writes
    evaluation.json, calibrates the OOD score and measures the drift) or, with `image_dir`, on that folder (nothing
    is written). Returns (run folder, Evaluation, where it came from); stops at the next batch when cancelled."""

    def work(task):
        def progress(done: int, total: int) -> None:
            task.check()
            task.progress(done, total)

        device, _warning = pick_device(device_request)
        if image_dir:
            evaluation = evaluate_checkpoint(run_dir, image_dir, "best", device, drift=True, progress=progress)
        else:
            evaluation = write_run_evaluation(run_dir, device, progress)
        return run_dir, evaluation, image_dir or str(Path(run_dir) / EVALUATION_FILE)

    return work


class ExplanationWorker(RequestWorker):
    # request, {path, overlay: QImage | None, plain: QImage | None, class_name, error}
    image_explained = Signal(int, dict)
    images_explained = Signal(int)  # request: every image asked for has been answered

    def __init__(self, device: str = "auto", parent: QObject | None = None):
        super().__init__(parent)
        self._device_request = device
        self._predictor: Predictor | None = None
        self._checkpoint = ""

    @Slot(int, str, list)
    def explain_images(self, request: int, checkpoint: str, paths: list) -> None:
        """Grad-CAM (for the predicted class) of each image, in the order given."""
        if not self.is_current(request):
            return
        error = self._use_checkpoint(checkpoint)
        for path in paths:
            if not self.is_current(request):
                return
            if error:
                self.image_explained.emit(request, {"path": path, "overlay": None, "plain": None, "class_name": "",
                                                    "error": error})
                continue
            explained = explain_file(self._predictor, path, checkpoint)
            result = {"path": path, "overlay": None, "plain": None, "class_name": explained["class_name"],
                      "error": explained["error"]}
            if not explained["error"]:
                result["plain"] = rgb_to_qimage(explained["image"])
                result["overlay"] = rgb_to_qimage(overlay(explained["image"], explained["heatmap"]))
            self.image_explained.emit(request, result)
        self.images_explained.emit(request)

    def _use_checkpoint(self, checkpoint: str) -> str:
        """Load `checkpoint` unless it is loaded; the reason when it cannot be."""
        if checkpoint == self._checkpoint and self._predictor is not None:
            return ""
        try:
            device, _warning = pick_device(self._device_request)
            self._predictor, self._checkpoint = Predictor.from_checkpoint(checkpoint, device), checkpoint
        except Exception as exc:  # noqa: BLE001 - a message per image, never a dead thread
            self._predictor, self._checkpoint = None, ""
            return f"cannot load {checkpoint}: {exc}"
        return ""
