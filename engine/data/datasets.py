"""Datasets: the run's training and validation sets from its data source (engine/data/sources: a scanned image
folder, a labels CSV, a torchvision set on disk), split by the source's official split or a seeded stratified
one. Images stream from disk; unusable files were listed by the scan and are skipped.

Augmentation randomness is a pure function of (seed, epoch, sample index): a resumed run, or a run with a
different number of loader workers, sees exactly the same augmented images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from engine.data.images import UnreadableImageError, load_image
from engine.data.scan import Problem, ScanReport
from engine.data.sources import get_source
from engine.data.split import stratified_split
from engine.data.usable import check_usable  # noqa: F401 - its home was here; the studio imports it from here
from engine.errors import BadInputError
from engine.recipe import DataConfig

log = logging.getLogger(__name__)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729) % (2**63 - 1)


class SeededDataset(Dataset):
    """Base: applies `transform` under a per-sample seed so augmentation is reproducible anywhere."""

    def __init__(self, transform: Callable, seed: int = 0):
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int) -> tuple[torch.Tensor, int]:  # uint8 (C, H, W), label
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.load(index)
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: the transforms run on the CPU, and torch.manual_seed would also (lazily)
            # reseed every GPU, which fork_rng(devices=[]) does not restore, and records a stack trace per call.
            torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, index))
            return self.transform(image), label


class ImageFiles(SeededDataset):
    def __init__(self, samples: list[tuple[str, int]], transform: Callable, channels: int = 3, seed: int = 0):
        super().__init__(transform, seed)
        self.samples = samples
        self.channels = channels
        self.cache = None  # a DecodedImageCache (engine/data/ram_cache.py) once the trainer enables it

    def decode(self, index: int) -> torch.Tensor:
        """The image as the cache stores it: decoded and shrunk to the training resolution."""
        return self.cache.shrink(load_image(self.samples[index][0], self.channels))

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        if self.cache is not None:
            cached = self.cache.get(index)
            if cached is not None:
                return cached, self.samples[index][1]
        # A file that became unreadable after the scan is replaced by the next one, never a crash mid-run.
        for attempt in range(len(self.samples)):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                return load_image(path, self.channels), label
            except UnreadableImageError as exc:
                log.warning("skipping %s", exc)
        raise BadInputError("no image of the dataset can be read any more")


class TorchvisionImages(SeededDataset):
    """A torchvision dataset (PIL images) adapted to uint8 tensors with the model's channel count; `targets` for
    a set whose labels are no attribute torch knows (PCAM's are in an h5 file)."""

    def __init__(self, base: Dataset, transform: Callable, channels: int = 3, seed: int = 0,
                 targets: list[int] | None = None):
        super().__init__(transform, seed)
        self.base = base
        self.channels = channels
        self._targets = targets

    def __len__(self) -> int:
        return len(self.base)

    @property
    def targets(self) -> list[int]:
        targets = self._targets
        if targets is None:
            targets = getattr(self.base, "targets", None)
        if targets is None:
            targets = self.base.labels
        return [int(t) for t in targets]

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[index]
        mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(self.channels)
        if mode is None:
            raise BadInputError(f"torchvision datasets give 1- or 3-channel images, not {self.channels}")
        return pil_to_tensor(image.convert(mode)), int(label)


@dataclass
class PreparedData:
    train: SeededDataset
    val: SeededDataset
    classes: list[str]
    skipped: list[Problem] = field(default_factory=list)
    report: ScanReport | None = None


def prepare_data(config: DataConfig, train_transform: Callable, eval_transform: Callable, channels: int,
                 seed: int = 0, report: ScanReport | None = None) -> PreparedData:
    """The run's training and validation sets from the recipe's data source (engine/data/sources): image files
    become `ImageFiles` (streamed, verified, RAM-cacheable), a torchvision set of arrays `TorchvisionImages`. A
    source without an official validation split is split per class, seeded, the same way for every source."""
    loaded = get_source(config.dataset).open(config, channels, report)
    where = config.root or config.dataset
    train, val = loaded.train, loaded.val
    if isinstance(train, list):
        if val is None:
            train, val = stratified_split(train, config.val_fraction, config.split_seed)
        if not train or not val:
            raise BadInputError(f"{where}: the split leaves {len(train)} training and {len(val)} validation images")
        return PreparedData(ImageFiles(train, train_transform, channels, seed),
                            ImageFiles(val, eval_transform, channels, seed),
                            list(loaded.classes), list(loaded.problems), loaded.report)
    if val is None:  # no source of arrays lacks an official split; one that did would need a split of indices
        raise BadInputError(f"{config.dataset}: no validation split")
    train_set = TorchvisionImages(train, train_transform, channels, seed, loaded.train_targets)
    val_set = TorchvisionImages(val, eval_transform, channels, seed, loaded.val_targets)
    if not len(train_set) or not len(val_set):
        raise BadInputError(f"{where}: the split leaves {len(train_set)} training and {len(val_set)} validation "
                            f"images")
    classes = list(loaded.classes) or [str(i) for i in range(max(train_set.targets) + 1)]
    return PreparedData(train_set, val_set, classes, list(loaded.problems), loaded.report)


def check_same_classes(expected: list[str], found: list[str], root: str) -> None:
    """A resumed run's data (e.g. a folder that moved) must hold exactly the classes its model was built for."""
    if list(found) != list(expected):
        missing = [c for c in expected if c not in found]
        extra = [c for c in found if c not in expected]
        what = "; ".join(part for part in (f"missing {', '.join(missing[:5])}" if missing else "",
                                            f"new {', '.join(extra[:5])}" if extra else "") if part)
        raise BadInputError(f"{root} holds other classes than the run was trained on ({what or 'another order'}): "
                            f"the run's model has {len(expected)} outputs for {', '.join(expected[:8])}"
                            f"{' …' if len(expected) > 8 else ''}")
