"""The RAM cache of decoded images at unit level: the estimate a user is shown before anything is cached, a hard
budget, the offset view a second dataset uses, and a fill that survives unreadable files."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import ram_cache
from engine.data.preprocessing import Preprocessing
from engine.data.ram_cache import (
    CacheEstimate,
    CacheView,
    DecodedImageCache,
    default_budget_bytes,
    estimate,
    fill,
    machine_memory_bytes,
)
from engine.data.transforms import eval_transform


def test_machine_memory_and_the_default_budget(monkeypatch):
    real = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert machine_memory_bytes() == real and default_budget_bytes() == real // 4
    assert type(default_budget_bytes()) is int  # a byte count, compared and shown as one

    def unsupported(_name):
        raise ValueError("unknown name")

    monkeypatch.setattr(os, "sysconf", unsupported)
    assert machine_memory_bytes() == 8 << 30 and default_budget_bytes() == 2 << 30


def test_estimate_text_says_whether_it_fits():
    fits = CacheEstimate(images=10, bytes=3 * 2**20, budget=3 * 2**20)
    assert fits.fits  # exactly the budget fits
    assert fits.text() == ("decoded-image cache: 10 images ≈ 3 MB at the training resolution; fits the budget of "
                           "3 MB")
    too_big = CacheEstimate(images=10, bytes=3 * 2**20 + 1, budget=3 * 2**20)
    assert not too_big.fits and "; does not fit the budget of 3 MB" in too_big.text()


def image(path, w, h):
    Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_estimate_uses_the_aspect_ratio_from_file_headers(tmp_path):
    wide = [image(tmp_path / f"w{i}.png", 80, 40) for i in range(3)]
    assert estimate(wide, 36, 3, budget=1 << 30) == CacheEstimate(3, 3 * 3 * 36 * 72, 1 << 30)
    tall = [image(tmp_path / "tall.png", 20, 60)]
    assert estimate(tall, 10, 1, budget=5).bytes == 10 * 30 and not estimate(tall, 10, 1, budget=5).fits
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    # .npy arrays count as square; unreadable files are left out of the ratio; no readable file → square.
    assert estimate([str(tmp_path / "x.npy"), wide[0]], 10, 3, 1).bytes == 2 * 3 * 10 * 15
    assert estimate([str(broken), wide[0]], 10, 3, 1).bytes == 2 * 3 * 10 * 20
    assert estimate([str(broken)], 10, 3, 1).bytes == 3 * 10 * 10
    assert estimate([], 10, 3, 1) == CacheEstimate(0, 0, 1)
    line = [image(tmp_path / "line.png", 1, 4)]  # one pixel wide: the ratio is 4, not 4 / 2
    assert estimate(line, 10, 1, 1).bytes == 10 * 40


def test_estimate_reads_only_a_sample_of_headers(tmp_path, monkeypatch):
    paths = [image(tmp_path / f"{i}.png", 40, 40) for i in range(10)]
    opened: list[str] = []
    real_open = Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(ram_cache.Image, "open", counting_open)
    assert estimate(paths, 8, 3, 1 << 20, probe=4).images == 10
    assert opened == [paths[0], paths[2], paths[4], paths[6]]  # every len // probe-th path, at most `probe`
    opened.clear()
    estimate(paths[:3], 8, 3, 1 << 20, probe=4)
    assert opened == paths[:3]
    opened.clear()
    estimate(paths * 7, 8, 3, 1 << 20)  # 70 paths: every 2nd, at most 32 by default
    assert len(opened) == 32


def test_cache_stays_in_its_budget_and_counts_refusals():
    cache = DecodedImageCache(8, "bilinear", budget=2 * 3 * 8 * 8)
    one = torch.zeros(3, 8, 8, dtype=torch.uint8)
    assert cache.put(0, one) and cache.put(1, one.clone())
    assert cache.bytes == 2 * 3 * 64 and cache.refused == 0
    assert cache.put(1, one) and cache.bytes == 2 * 3 * 64  # already there: not counted twice
    assert not cache.put(2, one) and cache.refused == 1 and cache.get(2) is None
    assert not cache.put(3, one) and cache.refused == 2  # every refusal is counted
    assert cache.get(0) is one and len(cache.images) == 2
    wide = DecodedImageCache(8, "bilinear", budget=10**6)
    assert wide.put(0, torch.zeros(3, 4, 4, dtype=torch.float32)) and wide.bytes == 3 * 16 * 4  # element size


def test_shrink_resizes_the_shorter_side_with_the_interpolation():
    big = torch.arange(3 * 40 * 80, dtype=torch.float32).reshape(3, 40, 80).to(torch.uint8)
    out = DecodedImageCache(20, "nearest", budget=1).shrink(big)
    assert out.shape == (3, 20, 40) and out.is_contiguous()
    assert torch.equal(out, big[:, ::2, ::2])  # nearest: every other pixel
    smooth = DecodedImageCache(20, "bilinear", budget=1).shrink(big)
    assert smooth.shape == (3, 20, 40) and not torch.equal(smooth, out)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_shrink_is_the_uncached_pipelines_resize(interpolation):
    """A cached image must be what the uncached path produces: the first step of the evaluation transform (the same
    Resize, antialiased, starts the lesson's training transform)."""
    prep = Preprocessing(resize_size=20, crop_size=16, interpolation=interpolation)
    resize = eval_transform(prep).transforms[0]
    image = torch.randint(0, 256, (3, 64, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(DecodedImageCache(20, interpolation, budget=1).shrink(image), resize(image))


def test_a_view_shifts_indices_into_the_shared_cache():
    cache = DecodedImageCache(4, "bilinear", budget=3 * 4 * 4 * 3)
    view = cache.view(10)
    assert isinstance(view, CacheView) and view.cache is cache and view.offset == 10
    tile = torch.ones(3, 4, 4, dtype=torch.uint8)
    assert view.put(2, tile) and cache.get(12) is tile and view.get(2) is tile and view.get(12) is None
    assert cache.put(2, tile.clone()) and view.get(2) is tile  # the first dataset's index 2 is another image
    assert view.shrink(torch.zeros(3, 8, 16, dtype=torch.uint8)).shape == (3, 4, 8)
    assert view.put(3, tile) and not view.put(4, tile)  # one budget for both datasets
    assert cache.refused == 1


def test_fill_decodes_every_image_once_and_skips_unreadable_ones():
    cache = DecodedImageCache(4, "bilinear", budget=10**6)
    calls: list[int] = []
    threads: set[str] = set()
    lock = threading.Lock()

    def load(index: int) -> torch.Tensor:
        with lock:
            calls.append(index)
            threads.add(threading.current_thread().name)
        if index == 3:
            raise OSError("truncated file")
        return torch.full((1, 2, 2), index, dtype=torch.uint8)

    fill(cache, 6, load, workers=3)
    assert sorted(calls) == list(range(6))
    assert sorted(cache.images) == [0, 1, 2, 4, 5] and int(cache.get(5)[0, 0, 0]) == 5
    calls.clear()
    fill(DecodedImageCache(4, "bilinear", budget=10**6), 2, load, workers=0)  # at least one worker
    assert sorted(calls) == [0, 1]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_cache_keeps_its_settings(interpolation):
    cache = DecodedImageCache(32, interpolation, budget=123)
    assert (cache.resize_size, cache.interpolation.value, cache.budget) == (32, interpolation, 123)
    assert (cache.images, cache.bytes, cache.refused) == ({}, 0, 0)
