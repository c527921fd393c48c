"""Training and evaluation transforms, from the weights' preset plus an augmentation preset.

Images arrive as uint8 tensors (C, H, W) from engine.data.images, so every transform works for any channel count.
Evaluation is always resize → centre crop → normalise, exactly what the weights were trained with; the same
Preprocessing travels in every checkpoint, so inference can never disagree with training.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from engine.data.preprocessing import Preprocessing
from engine.errors import RecipeError


def _interp(prep: Preprocessing) -> InterpolationMode:
    return InterpolationMode(prep.interpolation)


def _finish(prep: Preprocessing) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(prep.mean), std=list(prep.std))]


def eval_transform(prep: Preprocessing) -> v2.Compose:
    return v2.Compose([
        v2.Resize(prep.resize_size, interpolation=_interp(prep), antialias=True),
        v2.CenterCrop(prep.crop_size),
        *_finish(prep),
    ])


def train_transform(prep: Preprocessing, augmentation: str, horizontal_flip: bool = True) -> v2.Compose:
    """`horizontal_flip`: mirror at random (p = ½) in both presets; off for data whose meaning a mirror changes
    (digits, letters, text)."""
    interp = _interp(prep)
    flip = [v2.RandomHorizontalFlip()] if horizontal_flip else []
    if augmentation == "lesson":  # the lesson's Resize(256) → RandomCrop(224) → RandomHorizontalFlip
        steps = [v2.Resize(prep.resize_size, interpolation=interp, antialias=True), v2.RandomCrop(prep.crop_size),
                 *flip]
    elif augmentation == "trivialaugment":
        if prep.channels not in (1, 3):
            raise RecipeError("data.augmentation", f"trivialaugment changes colours and needs 1 or 3 channels, "
                                                   f"not {prep.channels}; use 'lesson' or 'none'")
        steps = [v2.RandomResizedCrop(prep.crop_size, interpolation=interp, antialias=True), *flip,
                 v2.TrivialAugmentWide(interpolation=interp)]
    elif augmentation == "none":
        return eval_transform(prep)
    else:
        raise RecipeError("data.augmentation", f"unknown augmentation '{augmentation}'")
    return v2.Compose([*steps, *_finish(prep)])


def denormalize(batch: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Normalised tensor → values in [0, 1] (for previews of augmented samples)."""
    mean = torch.tensor(prep.mean, dtype=batch.dtype, device=batch.device).view(-1, 1, 1)
    std = torch.tensor(prep.std, dtype=batch.dtype, device=batch.device).view(-1, 1, 1)
    return (batch * std + mean).clamp(0, 1)
