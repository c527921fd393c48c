"""The RAM cache of decoded images returns exactly what the uncached path returns, and stays in its budget."""

from __future__ import annotations

import torch

from engine.data.datasets import ImageFiles
from engine.data.preprocessing import Preprocessing
from engine.data.ram_cache import DecodedImageCache, estimate, fill
from engine.data.transforms import eval_transform, train_transform
from engine.train import events as ev
from engine.train.trainer import fit
from tests.helpers import tiny_recipe


def files(folder):
    return [(str(p), i % 3) for i, p in enumerate(sorted(folder.rglob("*.png")))]


def test_cached_images_equal_uncached(image_folder):
    prep = Preprocessing(resize_size=36, crop_size=32)
    samples = files(image_folder)
    for transform in (train_transform(prep, "lesson"), eval_transform(prep)):
        plain = ImageFiles(samples, transform, seed=5)
        cached = ImageFiles(samples, transform, seed=5)
        cached.cache = DecodedImageCache(prep.resize_size, prep.interpolation, budget=1 << 30)
        fill(cached.cache, len(cached), cached.decode, workers=2)
        assert len(cached.cache.images) == len(samples)
        for epoch in (0, 1):
            plain.set_epoch(epoch)
            cached.set_epoch(epoch)
            for i in range(0, len(samples), 5):
                assert torch.equal(plain[i][0], cached[i][0])


def test_cache_refuses_to_grow_past_its_budget(image_folder):
    samples = files(image_folder)
    per_image = 3 * 36 * 36
    cache = DecodedImageCache(36, "bilinear", budget=per_image * 5 + 10)
    ds = ImageFiles(samples, eval_transform(Preprocessing(resize_size=36, crop_size=32)))
    ds.cache = cache
    fill(cache, len(ds), ds.decode, workers=1)
    assert len(cache.images) == 5 and cache.bytes <= cache.budget
    assert cache.refused == len(samples) - 5
    assert torch.equal(ds[len(samples) - 1][0], ImageFiles(samples, ds.transform)[len(samples) - 1][0])


def test_estimate_is_close_and_reported(image_folder, tmp_path):
    paths = [p for p, _ in files(image_folder)]
    guess = estimate(paths, 36, 3, budget=1 << 20)
    assert guess.bytes == len(paths) * 3 * 36 * 36 and guess.fits
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=1, out=tmp_path)
    events = []
    fit(recipe, [events.append])
    estimated = [e for e in events if isinstance(e, ev.DecodedCacheEstimated)]
    filled = [e for e in events if isinstance(e, ev.DecodedCacheFilled)]
    assert estimated[0].enabled and "MB" in estimated[0].message
    assert filled[0].images == 36 and filled[0].refused == 0
    recipe.data.ram_cache_mb = 0
    recipe.data.ram_cache = "off"
    events.clear()
    fit(recipe, [events.append])
    assert not [e for e in events if isinstance(e, ev.DecodedCacheEstimated)]
