"""Generated video files: the tests' camera (engine/data/video.py writes them with PyAV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data.video import write_video
from tests.helpers import CLASS_STYLES, make_image


def make_video(path: Path, classes: tuple[str, ...] = ("cat", "dog"), frames_per_class: int = 5, fps: int = 10,
               size: int = 40) -> Path:
    """`frames_per_class` frames drawn like each class of tests.helpers' image folders, in order, at `fps`."""
    rng = np.random.default_rng(0)
    frames = [make_image(CLASS_STYLES[name], size, rng) for name in classes for _ in range(frames_per_class)]
    return write_video(path, frames, fps)
