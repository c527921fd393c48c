"""The unlabeled images as a data set of augmented views, each drawn under a per-sample seed.

lightly's transforms draw from torch's, NumPy's and Python's global generators (its blur and solarisation use
NumPy). Every one of them is seeded from (seed, epoch, index) for the sample and restored afterwards, so the
views of an image depend neither on loader workers nor on where a run resumed — the training set's rule
(engine/data/datasets.py), extended to the three generators.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import to_pil_image

from engine.data.datasets import sample_seed
from engine.data.images import UnreadableImageError, load_image
from engine.errors import BadInputError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def seeded_generators(seed: int) -> Iterator[None]:
    """torch's CPU generator, NumPy's and Python's seeded with `seed` inside, as they were after."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class UnlabeledViews(Dataset):
    """`dataset[i]` → the list of views of image i (two for SimCLR, MoCo and BYOL; global then local for DINO)."""

    def __init__(self, paths: list[str], views: Callable, seed: int = 0):
        self.paths = paths
        self.views = views
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, index: int):
        # A file that became unreadable after the scan is replaced by the next one, never a crash mid-run.
        for attempt in range(len(self.paths)):
            path = self.paths[(index + attempt) % len(self.paths)]
            try:
                return to_pil_image(load_image(path, 3))
            except UnreadableImageError as exc:
                log.warning("skipping %s", exc)
        raise BadInputError("no unlabeled image can be read any more")

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        image = self._image(index)
        with seeded_generators(sample_seed(self.seed, self.epoch, index)):
            return list(self.views(image))
