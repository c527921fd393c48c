"""Data for the evaluation and label-issue tests: class folders with chosen styles (two classes can be made
alike), foreign images, and a tiny trained run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.train.trainer import fit
from tests.helpers import CLASS_STYLES, make_image, tiny_recipe


def make_styled_folder(root: Path, styles: dict[str, str], per_class: int = 12, size: int = 40, seed: int = 0,
                       split: str = "") -> Path:
    """root[/split]/<class>/<class>_<i>.png where `styles` maps a class name to the CLASS_STYLES entry it is drawn
    with: mapping two classes to one style makes them indistinguishable."""
    rng = np.random.default_rng(seed)
    for name, style in styles.items():
        folder = root / split / name if split else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(make_image(CLASS_STYLES[style], size, rng)).save(folder / f"{name}_{i:03d}.png")
    return root


def noise_image(path: Path, size: int = 40, seed: int = 0) -> Path:
    """Uniform noise: nothing like any generated class."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def train_run(data: Path, out: Path, strategy: str = "feature_extraction", epochs: int = 3, head_fit: str = "converge",
              **overrides) -> Path:
    """A finished tiny run (tiny_resnet at 32 px on the CPU); its folder. A head-only phase is fitted as the presets
    fit it: the evaluations read a head like a user's."""
    result = fit(tiny_recipe(data, strategy, epochs=epochs, out=out, head_fit=head_fit, **overrides))
    assert result.status == "finished", result.error
    return Path(result.run_dir)
