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


def calibration_images(count: int, size: int = 224, seed: int = 1):
    """Images unlike any benchmark class (smooth colour fields, stripes at random angles and periods, noise),
    normalised with ImageNet's statistics: what the seeded network's batch-norm statistics are estimated on."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    fields = F.interpolate(torch.rand(count, 3, 6, 6, generator=g), size=(size, size), mode="bicubic",
                           align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    angle = torch.rand(count, 1, 1, generator=g) * 3.1416
    period = 4 + 20 * torch.rand(count, 1, 1, generator=g)
    stripes = (((xx * angle.cos() + yy * angle.sin()) / period).floor() % 2)[:, None]
    images = (fields * (0.6 + 0.4 * stripes) + 0.1 * torch.randn(count, 3, size, size, generator=g)).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (images - mean) / std


def seeded_torch_home() -> Path:
    """A TORCH_HOME holding a seeded ResNet-18 state dict under torchvision's file name (no download).

    A pretrained network's batch-norm layers hold statistics of real images; a freshly initialised one holds
    mean 0 / variance 1, which no trained network has. With those, a frozen backbone in eval mode (Thaw's
    feature extraction) passes unnormalised activations, while the lesson's loop, which trains with the frozen
    backbone in train mode, re-estimates them on the fly: the comparison would measure that, not caching. So the
    seeded weights get their statistics estimated once (a cumulative average over 256 calibration images that
    are not benchmark data), as any released checkpoint has them."""
    import torch
    from torchvision import models as tvm

    home = Path(tempfile.gettempdir()) / "thaw-bench-torch-home-bn"
    target = home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = tvm.resnet18()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a cumulative average over every calibration batch
        model.train()
        with torch.no_grad():
            for batch in calibration_images(256).split(32):
                model(batch)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = 0.1
        torch.save(model.state_dict(), target)
    os.environ["TORCH_HOME"] = str(home)
    os.environ["THAW_OFFLINE"] = "1"
    return home


_RUNS: list[Path] = []


def remove_runs() -> None:
    """Delete this invocation's runs folders (each run writes checkpoints of 45-130 MB)."""
    import shutil

    while _RUNS:
        shutil.rmtree(_RUNS.pop(), ignore_errors=True)


def exit_now(code: int = 0) -> None:
    """Leave at once (os._exit: see the GUI benchmarks' SPARE_REFERENCES), the runs folders removed first."""
    sys.stdout.flush()
    remove_runs()
    os._exit(code)


def bench_dirs() -> tuple[Path, Path]:
    """The generated-data folder (kept between invocations) and a fresh runs folder (removed at exit)."""
    import atexit

    base = Path(tempfile.gettempdir()) / "thaw-bench"
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=base.mkdir(parents=True, exist_ok=True) or base))
    if not _RUNS:
        atexit.register(remove_runs)
    _RUNS.append(runs)
    os.environ["THAW_CACHE_DIR"] = str(runs / "feature-cache")  # start cold: features are computed in the run
    return base, runs
