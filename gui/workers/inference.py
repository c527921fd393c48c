"""Prediction and explanation off the GUI thread: an InferenceWorker lives in a QThread owned by the
InferencePanel, holds the loaded Predictor, and is driven only through queued signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from engine.data.transforms import denormalize
from engine.infer.explain import explain
from engine.infer.inference import Predictor, expand_inputs
from engine.infer.ood import calibration_path, head_digest, load_calibration
from engine.train.devices import pick_device
from gui.widgets.image_utils import chw_to_rgb
from gui.workers.requests import RequestWorker

BATCH_SIZE = 32


class InferenceWorker(RequestWorker):
    """Loads a checkpoint, predicts lists of files in batches, and explains single images.

    A predict request is abandoned between batches as soon as a newer one is begun (`begin_request`), so dropping
    a second folder does not wait for the first to finish.
    """

    checkpoint_loaded = Signal(dict)  # path, arch, class_names, crop_size, channels, device, ood (calibration or None)
    predictions_progressed = Signal(int, int, int)  # request id, images done, images in all
    # request id, one dict per image: path, top [(class, probability)], error, ood_score, unfamiliar, true_class
    # (the class folder it came from when that is one of the model's classes, else ""), correct, heatmap, image,
    # method
    predictions_ready = Signal(int, list)
    # path, checkpoint, heatmap (H×W float32), image (H×W×3 uint8), method, class_name, error
    explanation_ready = Signal(dict)
    inference_failed = Signal(str)

    def __init__(self, device: str = "auto", parent: QObject | None = None):
        super().__init__(parent)
        self._device_request = device
        self._predictor: Predictor | None = None
        self._checkpoint = ""  # the path the predictor came from
        self._head_digest = ""  # which weights a calibration must belong to
        self._calibration_stamp: tuple[int, int] | None = None  # the calibration file's (mtime, size) when read

    @Slot(str)
    def load_checkpoint(self, path: str) -> None:
        try:
            device, _warning = pick_device(self._device_request)
            predictor = Predictor.from_checkpoint(path, device)
        except Exception as exc:  # noqa: BLE001 - a bad file is a message, never a dead thread
            self._predictor, self._checkpoint = None, ""
            self.inference_failed.emit(f"cannot load {path}: {exc}")
            return
        self._predictor, self._checkpoint = predictor, path
        self._head_digest = head_digest(predictor.model.state_dict(), predictor.head_path)
        self._calibration_stamp = _stamp(calibration_path(path))
        self._emit_loaded()

    def _emit_loaded(self) -> None:
        predictor = self._predictor
        recipe = predictor.recipe
        self.checkpoint_loaded.emit({
            "path": self._checkpoint,
            "arch": recipe.model.arch if recipe else "",
            "class_names": list(predictor.class_names),
            "crop_size": predictor.preprocessing.crop_size,
            "channels": predictor.channels,
            "device": str(predictor.device),
            "ood": predictor.ood.summary() if predictor.ood is not None else None,
        })

    def _refresh_calibration(self) -> None:
        """Re-read the OOD calibration when its file changed since the checkpoint was loaded: a run's evaluation
        writes it just after the run ends (when the studio may already have loaded the new checkpoint), and the
        Evaluate tab rewrites it."""
        if self._predictor is None:
            return
        stamp = _stamp(calibration_path(self._checkpoint))
        if stamp != self._calibration_stamp:
            self._calibration_stamp = stamp
            self._predictor.ood = load_calibration(self._checkpoint, self._head_digest)
            self._emit_loaded()

    @Slot(int, list, int, bool)
    def predict(self, request: int, paths: list, topk: int, with_heatmaps: bool) -> None:
        """Folders are expanded to their images; each file gets a result, unreadable ones with an error."""
        if not self.is_current(request):
            return
        self._refresh_calibration()
        files = [str(path) for path in expand_inputs(paths)]
        results: list[dict] = []
        for start in range(0, len(files), BATCH_SIZE):
            if not self.is_current(request):
                return
            batch = files[start:start + BATCH_SIZE]
            results += self._predict_batch(batch, topk, with_heatmaps)
            self.predictions_progressed.emit(request, len(results), len(files))
        self.predictions_ready.emit(request, results)

    def _predict_batch(self, paths: list[str], topk: int, with_heatmaps: bool) -> list[dict]:
        if self._predictor is None:
            return [_result(path, error="no checkpoint loaded") for path in paths]
        try:
            predictions = self._predictor.predict(paths, topk=topk, batch_size=BATCH_SIZE)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: every file of the batch says so
            return [_result(path, error=f"prediction failed: {exc}") for path in paths]
        classes = set(self._predictor.class_names)
        results = []
        for prediction in predictions:
            result = _result(prediction.path, top=prediction.top, error=prediction.error,
                             ood_score=prediction.ood_score, unfamiliar=prediction.unfamiliar,
                             true_class=class_folder(prediction.path, classes))
            if with_heatmaps and prediction.ok:
                explained = self._explain(prediction.path)
                result.update(heatmap=explained["heatmap"], image=explained["image"], method=explained["method"])
            results.append(result)
        return results

    @Slot(str)
    def explain(self, path: str) -> None:
        self.explanation_ready.emit(self._explain(path))

    def _explain(self, path: str) -> dict:
        if self._predictor is None:
            return {**_explanation(path, self._checkpoint), "error": "no checkpoint loaded"}
        return explain_file(self._predictor, path, self._checkpoint)


def explain_file(predictor: Predictor, path: str, checkpoint: str = "") -> dict:
    """The crop the model saw (as RGB) and the heat map over it, for its predicted class: path, checkpoint,
    heatmap (H×W float32 in [0, 1]), image (H×W×3 uint8), method, class_name, error."""
    try:
        tensor = predictor.prepare(path)
        explanation = explain(predictor.model, tensor)
    except Exception as exc:  # noqa: BLE001 - shown in place of the heat map
        return {**_explanation(path, checkpoint), "error": str(getattr(exc, "reason", "") or exc)}
    image = chw_to_rgb(denormalize(tensor, predictor.preprocessing))
    return {**_explanation(path, checkpoint), "heatmap": np.asarray(explanation.heatmap), "image": image,
            "method": explanation.method, "class_name": predictor.class_names[explanation.class_index]}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def class_folder(path: str | Path, class_names: set[str]) -> str:
    """The class an image is labelled with by the folder it sits in, when that folder is named like one of the
    model's classes (a validation folder dropped as it is); else ""."""
    folder = Path(path).parent.name
    return folder if folder in class_names else ""


def _explanation(path: str, checkpoint: str) -> dict:
    return {"path": path, "checkpoint": checkpoint, "heatmap": None, "image": None, "method": "", "class_name": "",
            "error": ""}


def _result(path: str | Path, top: list | None = None, error: str = "", ood_score: float | None = None,
            unfamiliar: bool | None = None, true_class: str = "") -> dict:
    top = list(top or [])
    correct = (top[0][0] == true_class) if true_class and top else None
    return {"path": str(path), "top": top, "error": error, "ood_score": ood_score, "unfamiliar": unfamiliar,
            "true_class": true_class, "correct": correct, "heatmap": None, "image": None, "method": ""}
