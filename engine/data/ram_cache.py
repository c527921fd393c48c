"""Decoded images in RAM: uint8 tensors already resized to the training resolution, so that from the second
epoch on no file is opened or decoded. The transforms then start with a resize that is a no-op on these
tensors, so a cached image gives exactly what the uncached path gives (for the lesson's and the evaluation
pipelines, which resize first).

The size is estimated before anything is cached (shown to the user), and the cache refuses to grow past its
budget: images beyond it are decoded from disk every epoch, and the caller is told how many.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F


def machine_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def default_budget_bytes() -> int:
    return machine_memory_bytes() // 4


@dataclass
class CacheEstimate:
    images: int
    bytes: int
    budget: int

    @property
    def fits(self) -> bool:
        return self.bytes <= self.budget

    def text(self) -> str:
        verdict = "fits" if self.fits else "does not fit"
        return (f"decoded-image cache: {self.images} images ≈ {self.bytes / 2**20:.0f} MB at the training "
                f"resolution; {verdict} the budget of {self.budget / 2**20:.0f} MB")


def estimate(paths: list[str], resize_size: int, channels: int, budget: int, probe: int = 32) -> CacheEstimate:
    """Bytes for all images resized so their shorter side is `resize_size` (aspect ratios from a sample of
    file headers; no decoding)."""
    ratios = []
    step = max(1, len(paths) // probe)
    for path in paths[::step][:probe]:
        try:
            if path.endswith(".npy"):
                ratios.append(1.0)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused when decoded, in Thaw's words
                with Image.open(path) as img:
                    w, h = img.size
            ratios.append(max(w, h) / max(1, min(w, h)))
        except (OSError, Image.DecompressionBombError):
            continue
    mean_ratio = sum(ratios) / len(ratios) if ratios else 1.0
    per_image = channels * resize_size * int(resize_size * mean_ratio)
    return CacheEstimate(len(paths), int(per_image * len(paths)), budget)


class DecodedImageCache:
    """index → uint8 (C, H, W) at the training resolution; thread-safe; bounded by `budget` bytes."""

    def __init__(self, resize_size: int, interpolation: str, budget: int):
        self.resize_size = resize_size
        self.interpolation = InterpolationMode(interpolation)
        self.budget = budget
        self.images: dict[int, torch.Tensor] = {}
        self.bytes = 0
        self.refused = 0
        self._lock = threading.Lock()

    def get(self, index: int) -> torch.Tensor | None:
        return self.images.get(index)

    def shrink(self, image: torch.Tensor) -> torch.Tensor:
        return F.resize(image, [self.resize_size], interpolation=self.interpolation, antialias=True).contiguous()

    def put(self, index: int, image: torch.Tensor) -> bool:
        """Store an already shrunk image; False (and counted) when it would exceed the budget."""
        size = image.numel() * image.element_size()
        with self._lock:
            if index in self.images:
                return True
            if self.bytes + size > self.budget:
                self.refused += 1
                return False
            self.images[index] = image
            self.bytes += size
        return True

    def view(self, offset: int) -> CacheView:
        """The same cache (and budget) for a second dataset, whose indices start at `offset`."""
        return CacheView(self, offset)


class CacheView:
    def __init__(self, cache: DecodedImageCache, offset: int):
        self.cache, self.offset = cache, offset

    def get(self, index: int) -> torch.Tensor | None:
        return self.cache.get(self.offset + index)

    def put(self, index: int, image: torch.Tensor) -> bool:
        return self.cache.put(self.offset + index, image)

    def shrink(self, image: torch.Tensor) -> torch.Tensor:
        return self.cache.shrink(image)


def fill(cache, count: int, load, workers: int = 4) -> None:
    """Decode every image once, in threads (PIL releases the GIL while decoding)."""

    def one(index: int) -> None:
        try:
            image = load(index)
        except Exception:  # noqa: BLE001 - an unreadable file stays uncached; the dataset reports it
            return
        cache.put(index, image)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(count)))
