"""Classifying frames: a camera's or a video's, one at a time, with the checkpoint's (or the export's) own
preprocessing, top-k and out-of-distribution score — the studio's live preview and `predict RUN VIDEO`.

A frame is an (H, W, 3) uint8 RGB array, as a video decoder or a camera gives it; it is converted to the model's
channels exactly as an image file is (engine/data/images.py: RGB as is, grey as luminance), so a frame saved by the
capture page and classified later gets the same answer it got live.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.data.video import iter_frames
from engine.errors import BadInputError
from engine.infer.inference import Predictor


@dataclass
class FrameResult:
    time: float  # seconds into the video (or since the stream started)
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    ood_score: float | None = None  # as Prediction.ood_score: None without a calibration
    unfamiliar: bool | None = None
    seconds: float = 0.0  # the model's time for this frame (preprocessing included)
    frame: int = 0  # the frame's index in the video

    def to_dict(self) -> dict:
        data = asdict(self)
        data["top"] = [{"class": c, "probability": p} for c, p in self.top]
        return data


class FrameClassifier:
    """A Predictor applied to frames. Not thread-safe: one per thread (the studio's worker owns one)."""

    def __init__(self, predictor: Predictor, topk: int = 5):
        if predictor.channels not in (1, 3):
            raise BadInputError(f"this model takes {predictor.channels}-channel input (.npy arrays): camera and "
                                f"video frames are RGB")
        self.predictor = predictor
        self.topk = max(1, min(topk, len(predictor.class_names)))

    @property
    def class_names(self) -> list[str]:
        return self.predictor.class_names

    def prepare(self, rgb: np.ndarray) -> torch.Tensor:
        channels = self.predictor.channels
        if channels == 3:
            array = rgb
        elif channels == 1:
            array = np.asarray(Image.fromarray(rgb).convert("L"))[:, :, None]
        else:  # refused in __init__
            raise BadInputError(f"a {channels}-channel model cannot classify camera or video frames (RGB)")
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
        return self.predictor.transform(tensor)

    def classify(self, rgb: np.ndarray, at: float = 0.0, frame: int = 0) -> FrameResult:
        started = time.perf_counter()
        logits, ood = self.predictor.logits_and_ood(self.prepare(rgb).unsqueeze(0))
        values, indices = torch.softmax(logits, dim=1).topk(self.topk, dim=1)
        names = self.predictor.class_names
        result = FrameResult(at, [(names[i], float(v)) for v, i in zip(values[0].tolist(), indices[0].tolist())],
                             frame=frame)
        if ood is not None:
            result.ood_score = float(ood[0])
            result.unfamiliar = bool(ood[0] > 1.0)
        result.seconds = time.perf_counter() - started
        return result


def classify_video(predictor: Predictor, path: str | Path, every: float = 0.0, topk: int = 5) -> Iterator[FrameResult]:
    """Every frame of the video (or one per `every` seconds), classified in order."""
    classifier = FrameClassifier(predictor, topk)
    for frame in iter_frames(path, every):
        yield classifier.classify(frame.rgb, frame.time, frame.index)
