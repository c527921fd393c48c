"""Datasets: a scanned image folder (seeded stratified split, or explicit train/ and val/), or a torchvision
dataset already on disk. Images stream from disk; unusable files were listed by the scan and are skipped.

Augmentation randomness is a pure function of (seed, epoch, sample index): a resumed run, or a run with a
different number of loader workers, sees exactly the same augmented images.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision.datasets as tvd
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from engine.data.images import CHANNELS_REASON, UnreadableImageError, load_image
from engine.data.scan import EMPTY_CLASS_REASON, DatasetError, Problem, ScanReport, scan_folder
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
    """A torchvision dataset (PIL images) adapted to uint8 tensors with the model's channel count."""

    def __init__(self, base: Dataset, transform: Callable, channels: int = 3, seed: int = 0):
        super().__init__(transform, seed)
        self.base = base
        self.channels = channels

    def __len__(self) -> int:
        return len(self.base)

    @property
    def targets(self) -> list[int]:
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


def stratified_split(samples: list[tuple[str, int]], val_fraction: float, seed: int
                     ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Per class: shuffle with `seed`, put round(n × fraction) in validation (at least one when n ≥ 2)."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label])
        rng.shuffle(items)
        n_val = round(len(items) * val_fraction)
        if len(items) >= 2:
            n_val = min(max(1, n_val), len(items) - 1)
        else:
            n_val = 0
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def prepare_data(config: DataConfig, train_transform: Callable, eval_transform: Callable, channels: int,
                 seed: int = 0, report: ScanReport | None = None) -> PreparedData:
    if config.dataset != "folder":
        return _torchvision_dataset(config, train_transform, eval_transform, channels, seed)
    if not config.root:
        raise BadInputError("recipe field 'data.root' is empty: point it at a folder of class folders")
    try:
        report = report or scan_folder(config.root, channels=channels)
    except DatasetError as exc:
        raise BadInputError(str(exc)) from exc
    check_usable(report, config.root, channels)
    if report.layout == "train_val":
        train = [(p, c) for p, c, split in report.samples if split == "train"]
        val = [(p, c) for p, c, split in report.samples if split == "val"]
    else:
        train, val = stratified_split([(p, c) for p, c, _ in report.samples], config.val_fraction, config.split_seed)
    if not train or not val:
        raise BadInputError(f"{config.root}: the split leaves {len(train)} training and {len(val)} validation images")
    return PreparedData(ImageFiles(train, train_transform, channels, seed),
                        ImageFiles(val, eval_transform, channels, seed),
                        list(report.classes), list(report.problems), report)


def check_usable(report: ScanReport, root: str, channels: int) -> None:
    """The data-layer rule the CLI and the studio share: every class folder needs training images.

    An empty class (no usable image in it, or in train/ for the train/val layout) is refused with the reason,
    not trained as a class the head can never learn (and `predict` would still rank). Remove the folder or
    add images. When nothing at all is usable because of the channel count, that is said first."""
    if report.num_samples == 0:
        refused = [p for p in report.problems if p.reason.startswith(CHANNELS_REASON)]
        if refused:
            raise BadInputError(
                f"{root}: none of its {len(refused)} image files can feed a model with model.in_channels "
                f"{channels}: {CHANNELS_REASON}, so {channels}-channel input needs .npy arrays (H×W×{channels}); "
                f"for ordinary images set model.in_channels to 3 (or 1 for greyscale)")
    if len(report.classes) < 2:
        raise BadInputError(f"{root}: need at least two class folders, found "
                            f"{', '.join(report.classes) or 'none'}")
    if report.empty_classes:
        details = []
        for name in report.empty_classes[:5]:
            folder = next((p.path for p in report.problems if p.is_folder and os.path.basename(p.path) == name
                           and p.reason == EMPTY_CLASS_REASON), name)
            unusable = sum(1 for p in report.problems if not p.is_folder and p.path.startswith(folder + os.sep))
            details.append(f"'{name}'" + (f" ({unusable} unusable files)" if unusable else ""))
        more = f" and {len(report.empty_classes) - 5} more" if len(report.empty_classes) > 5 else ""
        raise BadInputError(f"{root}: class folder {', '.join(details)}{more} has no usable training images; "
                            f"every class needs some (a class without images would be an output the model "
                            f"never learns): add images or remove the folder")


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


_SPLIT_ARGS = {"SVHN": ("split", "train", "test"), "STL10": ("split", "train", "test")}


def _torchvision_dataset(config: DataConfig, train_transform: Callable, eval_transform: Callable, channels: int,
                         seed: int) -> PreparedData:
    cls = getattr(tvd, config.dataset)
    root = Path(config.root or ".").expanduser()
    key, train_value, val_value = _SPLIT_ARGS.get(config.dataset, ("train", True, False))
    try:
        train_base = cls(str(root), **{key: train_value}, download=False)
        val_base = cls(str(root), **{key: val_value}, download=False)
    except (RuntimeError, FileNotFoundError) as exc:
        raise BadInputError(f"{config.dataset} is not on disk under {root} ({exc}). Thaw never downloads data sets: "
                            f"put the extracted files there (as torchvision's {config.dataset}(root, download=True) "
                            f"would) or point data.root at the folder that holds them") from exc
    classes = list(getattr(train_base, "classes", [])) or [
        str(i) for i in range(int(max(TorchvisionImages(train_base, None).targets)) + 1)]
    return PreparedData(TorchvisionImages(train_base, train_transform, channels, seed),
                        TorchvisionImages(val_base, eval_transform, channels, seed), classes)
