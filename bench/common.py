"""Shared by the benchmarks: a generated JPEG data set (train/ + val/ folders, so the lesson's loop and Thaw read
the same split) and a seeded offline TORCH_HOME with ResNet-18 weights in torchvision's layout."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_jpeg_dataset(root: Path, classes: int = 10, train_per_class: int = 32, val_per_class: int = 8,
                      size: int = 256, seed: int = 0) -> Path:
    """Each class: a colour, a stripe frequency and orientation, plus noise; JPEG quality 90."""
    if (root / "done").exists():
        return root
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(37 * c) % 255, (91 * c + 60) % 255, (151 * c + 120) % 255], dtype=float)
            period = 6 + 3 * (c % 4)
            for i in range(count):
                phase = rng.uniform(0, period)
                stripes = ((xx * np.cos(c) + yy * np.sin(c) + phase) // period) % 2
                img = colour * (0.55 + 0.45 * stripes[..., None]) + rng.normal(0, 30, (size, size, 3))
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.jpg", quality=90)
    (root / "done").write_text("ok")
    return root


def seeded_torch_home() -> Path:
    """A TORCH_HOME holding a seeded ResNet-18 state dict under torchvision's file name (no download)."""
    import torch
    from torchvision import models as tvm

    home = Path(tempfile.gettempdir()) / "thaw-bench-torch-home"
    target = home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(tvm.resnet18().state_dict(), target)
    os.environ["TORCH_HOME"] = str(home)
    os.environ["THAW_OFFLINE"] = "1"
    return home


def bench_dirs() -> tuple[Path, Path]:
    base = Path(tempfile.gettempdir()) / "thaw-bench"
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=base.mkdir(parents=True, exist_ok=True) or base))
    os.environ["THAW_CACHE_DIR"] = str(runs / "feature-cache")  # start cold: features are computed in the run
    return base, runs
