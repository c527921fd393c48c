"""The data a run trains and validates on is a function of the recipe, not of the machine: the split depends on the
seed and the files, not on the order a file system lists them; every class with two images or more is in both
splits; each training sample gets augmentation of its own (seeded by seed, epoch and its index), and validation
images are never augmented."""

from __future__ import annotations

import random

import pytest
import torch

from engine.data.datasets import ImageFiles, prepare_data
from engine.data.images import load_image
from engine.data.preprocessing import Preprocessing
from engine.data.split import stratified_split
from engine.data.transforms import eval_transform, train_transform
from engine.recipe import DataConfig


def test_the_split_does_not_depend_on_the_order_files_are_listed():
    samples = [(f"/data/c{c}/{i:03d}.png", c) for c in range(3) for i in range(12)]
    split = stratified_split(samples, 0.25, seed=5)
    for seed in range(5):
        shuffled = list(samples)
        random.Random(seed).shuffle(shuffled)  # another file system, another listing order
        train, val = stratified_split(shuffled, 0.25, seed=5)
        assert (sorted(train), sorted(val)) == (sorted(split[0]), sorted(split[1]))


@pytest.mark.parametrize("sizes", [(2, 3, 4), (2, 2, 9), (3, 40)])
def test_every_class_of_two_images_or_more_is_in_both_splits(sizes):
    samples = [(f"c{c}/{i}.png", c) for c, n in enumerate(sizes) for i in range(n)]
    train, val = stratified_split(samples, 0.2, seed=0)
    for c, n in enumerate(sizes):
        in_val = sum(1 for _, k in val if k == c)
        in_train = sum(1 for _, k in train if k == c)
        assert in_val >= 1 and in_train >= 1 and in_val + in_train == n, (c, n, in_val)
        assert in_val == min(max(1, round(n * 0.2)), n - 1)


def test_each_sample_draws_its_own_augmentation(image_folder):
    """The same image at four positions of a data set: each position is a sample of its own and gets its own random
    crop and flip, the same again at the same epoch, another at the next."""
    path = str(sorted((image_folder / "cat").glob("*.png"))[0])
    data = ImageFiles([(path, 0)] * 4, train_transform(Preprocessing(resize_size=40, crop_size=24), "lesson"), seed=1)
    first = [data[i][0] for i in range(4)]
    assert sum(not torch.equal(first[0], other) for other in first[1:]) >= 2  # not one draw shared by all
    assert all(torch.equal(first[i], data[i][0]) for i in range(4))
    data.set_epoch(1)
    assert any(not torch.equal(first[i], data[i][0]) for i in range(4))


def test_validation_images_are_never_augmented(image_folder):
    prep = Preprocessing(resize_size=36, crop_size=32)
    config = DataConfig(root=str(image_folder), augmentation="trivialaugment")
    data = prepare_data(config, train_transform(prep, "trivialaugment"), eval_transform(prep), channels=3, seed=3)
    reference = eval_transform(prep)
    for epoch in (0, 1, 2):
        data.val.set_epoch(epoch)
        for i in range(len(data.val)):
            image, _ = data.val[i]
            assert torch.equal(image, reference(load_image(data.val.samples[i][0], 3))), (epoch, i)
    data.train.set_epoch(0)
    first = data.train[0][0]
    data.train.set_epoch(1)
    assert not torch.equal(first, data.train[0][0])  # (the training images are)
