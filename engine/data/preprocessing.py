"""How images are turned into tensors for one model: stored with every run and checkpoint, so that training,
inference and export can never disagree (the preprocessing comes from the weights' own preset)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXTRA_CHANNEL_MEAN = 0.5
EXTRA_CHANNEL_STD = 0.25


@dataclass
class Preprocessing:
    resize_size: int = 256
    crop_size: int = 224
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    interpolation: str = "bilinear"  # a torchvision InterpolationMode value

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(**{k: data[k] for k in ("resize_size", "crop_size", "mean", "std", "interpolation") if k in data})

    @classmethod
    def from_weights(cls, weights: Any) -> Preprocessing:
        """Read a torchvision weights entry's own preset (`weights.transforms()`)."""
        preset = weights.transforms()
        return cls(
            resize_size=int(preset.resize_size[0]),
            crop_size=int(preset.crop_size[0]),
            mean=[float(v) for v in preset.mean],
            std=[float(v) for v in preset.std],
            interpolation=str(preset.interpolation.value),
        )

    def with_channels(self, channels: int, extra_mean: list[float] | None = None,
                      extra_std: list[float] | None = None) -> Preprocessing:
        """Per-channel statistics for `channels` inputs: 1 channel = the RGB means' mean (the grey image is
        replicated as RGB is summed by the adapted conv); extra channels get the given or default statistics."""
        mean, std = list(self.mean[:3]), list(self.std[:3])
        if channels == 1:
            mean, std = [sum(mean) / 3], [sum(std) / 3]
        elif channels > 3:
            n = channels - 3
            mean += list(extra_mean or [EXTRA_CHANNEL_MEAN] * n)
            std += list(extra_std or [EXTRA_CHANNEL_STD] * n)
        elif channels == 2:
            mean, std = mean[:2], std[:2]
        return Preprocessing(self.resize_size, self.crop_size, mean, std, self.interpolation)

    def with_sizes(self, resize_size: int = 0, crop_size: int = 0) -> Preprocessing:
        crop = crop_size or self.crop_size
        resize = resize_size or (self.resize_size if not crop_size else round(crop * self.resize_size / self.crop_size))
        return Preprocessing(max(resize, crop), crop, list(self.mean), list(self.std), self.interpolation)
