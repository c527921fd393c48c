"""A real transfer task for the benchmarks of issue 11: a ResNet-18 trained from scratch on some generated texture
classes (the "pretrained" backbone, installed as torchvision's default ResNet-18 weights in a bench TORCH_HOME so
that the lesson's loop, fastai and Thaw all load it), then transferred to *new* classes of the same kind of image
with few images each (5 classes × 40, 64 px, as the issue's report: 32 training + 8 validation per class).
Pretraining: 24 classes × 100 images (80 training), 14 epochs from scratch (Thaw's from_scratch preset).

Every class is a texture: stripes at an angle and a period, on a random colour, with a random phase, jitter of the
angle and the period, blotches and noise. Pretraining classes and new classes use different (angle, period)
pairs, so the new task needs the features, not the memory of the old classes.

Everything is generated once under $TMPDIR/thaw-bench/ and reused; nothing is downloaded.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT  # noqa: F401 - puts the project on sys.path
from PIL import Image

SIZE = 72  # stored images; the recipes resize to 73 and crop 64 (the lesson's 256 → 224 ratio)
PRETRAIN_CLASSES = [(a, p) for a in range(0, 180, 15) for p in (5, 9)]  # 24 (angle°, period px) pairs
NEW_CLASSES = [(7, 7), (52, 11), (97, 7), (142, 11), (172, 7)]  # 5 pairs never seen: other angles and periods


def texture(angle: float, period: float, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    a = math.radians(angle + rng.normal(0, 3))
    p = period * rng.uniform(0.9, 1.1)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / p + rng.uniform(0, 2 * math.pi))
    colour, other = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    img = colour * stripes[..., None] + other * (1 - stripes[..., None])
    for _ in range(2):  # blotches that hide part of the texture
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(3, 8)]
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[mask] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 25, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def write_classes(root: Path, classes: list[tuple[int, int]], train: int, val: int, seed: int) -> Path:
    if (root / "done").exists():
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for _c, (angle, period) in enumerate(classes):
            folder = root / split / f"texture_{angle:03d}_{period:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(texture(angle, period, rng)).save(folder / f"{i:04d}.jpg", quality=92)
    (root / "done").write_text("ok")
    return root


def bench_base() -> Path:
    base = Path(tempfile.gettempdir()) / "thaw-bench"
    base.mkdir(parents=True, exist_ok=True)
    return base


def target_data(per_class: int = 40) -> Path:
    """The new classes: 80 % training, 20 % validation images per class, in train/ and val/ folders."""
    val = max(2, per_class // 5)
    return write_classes(bench_base() / f"transfer2-new-{per_class}", NEW_CLASSES, per_class - val, val, seed=11)


def pretrained_torch_home(epochs: int = 14, per_class: int = 100) -> Path:
    """A TORCH_HOME whose default ResNet-18 weights are a backbone trained here on the pretraining classes (with
    a 1000-class fc, as torchvision's file has, so every library loads it unchanged). Trained once, reused."""
    import torch
    from torchvision import models as tvm

    home = bench_base() / f"torch-home-transfer2-{epochs}x{per_class}"
    target = home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    os.environ["TORCH_HOME"] = str(home)
    os.environ["THAW_OFFLINE"] = "1"
    if target.exists():
        return home
    data = write_classes(bench_base() / f"transfer2-pretrain-{per_class}", PRETRAIN_CLASSES, per_class - 20, 20,
                         seed=5)
    from engine.planning.presets import make_recipe
    from engine.train.checkpoints import load_checkpoint
    from engine.train.runs import checkpoint_path
    from engine.train.trainer import fit

    recipe = make_recipe("from_scratch", "resnet18", str(data), epochs=epochs)
    recipe.data.resize_size, recipe.data.crop_size, recipe.batch_size = 73, 64, 64
    recipe.data.augmentation = "lesson"
    recipe.output_dir = str(bench_base() / "runs-pretrain")
    started = time.perf_counter()
    result = fit(recipe)
    print(f"pretraining: {len(PRETRAIN_CLASSES)} classes × {per_class} images, {epochs} epochs from scratch: best "
          f"val acc {100 * result.summary['best_val_acc']:.1f} % in {time.perf_counter() - started:.0f} s")
    trained = load_checkpoint(checkpoint_path(result.run_dir, "best"))["model"]
    model = tvm.resnet18()
    state = model.state_dict()
    state.update({k: v for k, v in trained.items() if not k.startswith("fc.")})
    model.load_state_dict(state)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), target)
    return home
