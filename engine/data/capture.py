"""Where captured frames go: `DATA/<class>/capture-<date>-<time>-<n>.jpg` (or `DATA/<split>/<class>/…` in the
train/val layout), a new class folder made on the first frame of a new class, a read-only one refused in words,
and a name never reused, so a capture never overwrites an image.

JPEG at quality 95: what cameras and phones write, about a fifth of a PNG of a camera frame, and far above what
a 224-pixel crop can tell apart.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from engine.data.relabel import RelabelError, check_writable
from engine.data.scan import LAYOUT_TRAIN_VAL, class_folders
from engine.errors import BadInputError

CAPTURE_SUFFIX = ".jpg"
JPEG_QUALITY = 95
_BAD_NAME = re.compile(r"[\\/:*?\"<>|\x00-\x1f]")  # characters no class folder name may hold on some system


class CaptureError(BadInputError):
    """Frames cannot be captured into that class (nothing was written)."""


def capture_folder(root: str | os.PathLike, label: str, split: str = "train") -> Path:
    """The class folder frames of `label` are written to, made if needed. `split` counts only in the train/val
    layout (train or val)."""
    label = label.strip()
    if not label or label in (".", "..") or label.startswith(".") or _BAD_NAME.search(label):
        raise CaptureError(f"'{label}' cannot name a class folder: use letters, digits, spaces, - or _")
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise CaptureError(f"the data folder {root} does not exist: choose or make it first")
    try:
        layout, found = class_folders(root)
    except BadInputError:  # an empty folder: its first class is made now
        layout, found = "", []
    if layout == LAYOUT_TRAIN_VAL:
        if split not in ("train", "val"):
            raise CaptureError(f"split '{split}' is not train or val")
        existing = {name: Path(folder) for s, name, folder in found if s == split}
        split_folder = next((Path(folder).parent for s, _name, folder in found if s == split), root / split)
        folder = existing.get(label, split_folder / label)
    else:
        existing = {name: Path(folder) for _s, name, folder in found}
        folder = existing.get(label, root / label)
    try:
        check_writable(folder if folder.exists() else folder.parent, f"class folder '{label}'"
                       if folder.exists() else f"folder {folder.parent}")
    except RelabelError as exc:
        raise CaptureError(f"{exc}: no frame was captured") from exc
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaptureError(f"cannot make the class folder {folder}: {exc.strerror or exc}") from exc
    return folder


def next_capture_path(folder: str | os.PathLike, now: datetime | None = None) -> Path:
    """A name not taken yet in `folder`: capture-YYYYmmdd-HHMMSS-NNN.jpg (NNN counts frames within a second)."""
    folder = Path(folder)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 100_000):
        path = folder / f"capture-{stamp}-{n:03d}{CAPTURE_SUFFIX}"
        if not os.path.lexists(path):
            return path
    raise CaptureError(f"{folder} already holds 99 999 captures from {stamp}")
