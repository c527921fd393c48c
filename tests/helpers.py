"""Test data made on the fly: small learnable image folders and tiny recipes. No network, no downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.planning.presets import make_recipe
from engine.recipe import Recipe

# Each class has its own colour and stripe direction: learnable in a few batches at 32×32.
CLASS_STYLES = {
    "cat": ((200, 60, 50), "h"),
    "dog": ((50, 170, 70), "v"),
    "fox": ((60, 80, 210), "d"),
    "owl": ((200, 190, 60), "n"),
}


def make_image(style, size: int, rng: np.random.Generator) -> np.ndarray:
    colour, stripes = style
    img = np.ones((size, size, 3)) * np.array(colour, dtype=float)
    yy, xx = np.mgrid[0:size, 0:size]
    pattern = {"h": (yy // 4) % 2, "v": (xx // 4) % 2, "d": ((xx + yy) // 4) % 2, "n": np.zeros_like(xx)}[stripes]
    img = img * (0.6 + 0.4 * pattern[..., None])
    img += rng.normal(0, 25, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def make_image_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 40, layout: str = "folder",
                      broken: bool = False, seed: int = 0) -> Path:
    """root/<class>/<i>.png (or root/train|val/<class>/…). `broken` adds a truncated JPEG and a non-image."""
    rng = np.random.default_rng(seed)
    names = list(CLASS_STYLES)[:classes]
    splits = [("train", per_class), ("val", max(2, per_class // 3))] if layout == "train_val" else [("", per_class)]
    for split, count in splits:
        for name in names:
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(make_image(CLASS_STYLES[name], size, rng)).save(folder / f"{name}_{i:03d}.png")
    if broken:
        first = root / (("train/" if layout == "train_val" else "") + names[0])
        good = Image.fromarray(make_image(CLASS_STYLES[names[0]], size, rng))
        good.save(first / "truncated.jpg", quality=95)
        data = (first / "truncated.jpg").read_bytes()
        (first / "truncated.jpg").write_bytes(data[: len(data) // 2])
        (first / "notes.jpg").write_bytes(b"this is not an image")
    return root


def tiny_recipe(data_root: Path | str, strategy: str = "feature_extraction", epochs: int = 2, arch: str = "tiny_resnet",
                out: Path | str = "", head_fit: str = "epochs", **overrides) -> Recipe:
    """A fast recipe on 32×32 crops: a few batches per epoch on the CPU.

    A head-only phase trains its head for its epochs (`head_fit="epochs"`) unless the test asks for the presets'
    cross-validated fit (`head_fit="converge"`): the fit's ~150 L-BFGS solves cost 1–3 s a run, and most tests
    that train are about something else (the fit's own promises: tests/engine/test_head_fit.py and its kin)."""
    recipe = make_recipe(strategy, arch, str(data_root), epochs=epochs)
    for phase in recipe.phases:
        if phase.head_fit == "converge":
            phase.head_fit = head_fit
    recipe.data.resize_size, recipe.data.crop_size = 36, 32
    recipe.data.num_workers = 0
    recipe.batch_size = 8
    recipe.device = "cpu"
    recipe.output_dir = str(out)
    for key, value in overrides.items():
        setattr(recipe, key, value)
    return recipe.validate()


def redirect_trash(monkeypatch, folder: Path) -> Path:
    """send2trash's freedesktop trash (what it uses on Linux without GIO) inside `folder`/Trash, for the test's
    duration: the real library moves files there, never to the user's trash. Returns the trash folder."""
    import os

    import send2trash
    import send2trash.plat_other as freedesktop

    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(freedesktop, "XDG_DATA_HOME", os.fsencode(folder))
    monkeypatch.setattr(freedesktop, "HOMETRASH_B", os.fsencode(folder / "Trash"))
    monkeypatch.setattr(freedesktop, "HOMETRASH", str(folder / "Trash"))
    monkeypatch.setattr(send2trash, "send2trash", freedesktop.send2trash)
    return folder / "Trash"


def jump_clocks(monkeypatch, seconds: float) -> None:
    """time.perf_counter (the engine's clocks) and time.monotonic (the studio's ETA) move `seconds` forward, for
    the test's duration: a pause that "lasted" that long, without waiting for it."""
    import time

    perf, mono = time.perf_counter, time.monotonic
    monkeypatch.setattr(time, "perf_counter", lambda: perf() + seconds)
    monkeypatch.setattr(time, "monotonic", lambda: mono() + seconds)
