"""torchvision's classification sets as data sources, each with its own split semantics.

torchvision's own classes read every set (its parsers of meta files, .mat labels, index files, pickles, h5 files
are not re-implemented here). Sets stored as image files (Caltech, Food-101, Flowers-102, Pets, DTD, EuroSAT,
FGVC-Aircraft, Imagenette) hand the run their file list, so they train like a folder: every file is decoded up
front (unusable ones are listed and left out), the RAM cache and evaluations' links to images work. The file list
is taken from the torchvision object (its private lists, or the path its __getitem__ builds); the tests check,
per set, that the file a sample names is the image torchvision returns for it, so a torchvision change that moves
them fails a test rather than a run. Sets stored as arrays (CIFAR, MNIST, STL-10, SVHN, PCAM) are read through
the torchvision dataset itself.

Splits: an official split is used as it is (the set's own `train=` flag or `split=` argument): the first of the
pair trains, the second validates. A set without one (Caltech-101, Caltech-256, EuroSAT) is split per class with
the recipe's `data.val_fraction` and `data.split_seed`, as a folder is.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.data.sources.base import Loaded, Samples
from engine.errors import BadInputError
from engine.recipe import DataConfig


def default_data_root() -> Path:
    """Where sets are downloaded to and read from when data.root is empty: the user's data folder, never the CWD."""
    import platformdirs  # not at the top: `--help` imports the CLI's modules

    return Path(platformdirs.user_data_dir("Thaw", appauthor=False)) / "datasets"


def data_root(config: DataConfig) -> Path:
    return Path(config.root).expanduser() if config.root else default_data_root()


@dataclass(frozen=True)
class Reader:
    """How one torchvision class is opened for a run."""

    cls_name: str
    split_arg: str = "train"  # the constructor's argument that picks the split ("train", "split"), "" for none
    run_splits: tuple[Any, Any] | None = (True, False)  # (training, validation) values; None: seeded split
    files: Callable[[Any], Samples] | None = None  # image-file sets: (path, label) per sample
    classes: Callable[[Any], list[str]] = lambda base: list(base.classes)
    targets: Callable[[Any], list[int]] | None = None  # array sets whose labels are no attribute torch reads
    kwargs: dict = field(default_factory=dict)


def open_with(reader: Reader, name: str, marker: str, needs: tuple[str, ...] = ()) -> Callable[..., Loaded]:
    def opener(config: DataConfig, channels: int, report=None) -> Loaded:
        return _open(reader, name, marker, needs, config, channels)

    return opener


def _open(reader: Reader, name: str, marker: str, needs: tuple[str, ...], config: DataConfig,
          channels: int) -> Loaded:
    root = data_root(config)
    check_needs(name, needs)
    if marker and not (root / marker).exists():
        raise BadInputError(
            f"{name} is not on disk under {root} (no {marker}): `python main.py download {name} --root {root}` "
            f"fetches it, or put the files there as torchvision's {name}(root, download=True) would, or point "
            f"data.root at the folder that holds them")
    values = reader.run_splits or (None,)
    bases = [open_split(reader, name, root, value) for value in values]
    classes = reader.classes(bases[0])
    if reader.files is None:
        targets = [reader.targets(base) if reader.targets else None for base in bases]
        return Loaded(classes, bases[0], bases[1] if len(bases) > 1 else None,
                      train_targets=targets[0], val_targets=targets[-1] if len(bases) > 1 else None)
    lists, problems = [], []
    for base in bases:
        samples = [(str(path), int(label)) for path, label in reader.files(base)]
        usable, unusable = _verified(samples, channels)
        lists.append(usable)
        problems += unusable
    if not lists[0]:
        raise BadInputError(f"{name} under {root}: none of its training images can be read")
    return Loaded(classes, lists[0], lists[1] if len(lists) > 1 else None, problems)


def open_split(reader: Reader, name: str, root: Path, value: Any):
    """The torchvision dataset of one split (`value` None: the set's only one), never downloading."""
    import torchvision.datasets as tvd  # heavy: only when a set is opened

    cls = getattr(tvd, reader.cls_name)
    args = dict(reader.kwargs)
    if reader.split_arg and value is not None:
        args[reader.split_arg] = value
    try:
        return cls(str(root), download=False, **args)
    except (RuntimeError, FileNotFoundError, OSError, KeyError, ValueError) as exc:
        raise BadInputError(f"{name} under {root} cannot be read ({exc}); `python main.py download {name} --root "
                            f"{root}` fetches it again") from exc


def check_needs(name: str, needs: tuple[str, ...]) -> None:
    missing = [module for module in needs if importlib.util.find_spec(module) is None]
    if missing:
        raise BadInputError(f"{name} needs the Python package {', '.join(missing)}, which is not installed: "
                            f"pip install {' '.join(missing)} (or pip install -e '.[datasets]')")


def _verified(samples: Samples, channels: int) -> tuple[Samples, list]:
    from engine.data.scan import Problem, verify_files  # torch: only once a set is opened, not for the list

    reasons = verify_files([path for path, _ in samples], channels)
    usable = [s for s, reason in zip(samples, reasons) if reason is None]
    problems = [Problem(path, reason) for (path, _), reason in zip(samples, reasons) if reason is not None]
    return usable, problems


# --- the file lists torchvision keeps (or builds in __getitem__) ------------------------------------------------

def caltech101_files(base) -> Samples:
    folder = Path(base.root) / "101_ObjectCategories"
    return [(folder / base.categories[y] / f"image_{i:04d}.jpg", y) for i, y in zip(base.index, base.y)]


def caltech256_files(base) -> Samples:
    folder = Path(base.root) / "256_ObjectCategories"
    return [(folder / base.categories[y] / f"{y + 1:03d}_{i:04d}.jpg", y) for i, y in zip(base.index, base.y)]


def caltech256_classes(base) -> list[str]:
    return [c.split(".", 1)[1] if "." in c else c for c in base.categories]  # "001.ak47" → "ak47"


def listed_files(base) -> Samples:
    """Food-101, Flowers-102, DTD, FGVC-Aircraft: `_image_files` and `_labels`."""
    return list(zip(base._image_files, base._labels))  # noqa: SLF001 - see the module's docstring


def pet_files(base) -> Samples:
    return list(zip(base._images, base._labels))  # noqa: SLF001


def imagenette_files(base) -> Samples:
    return list(base._samples)  # noqa: SLF001


def folder_files(base) -> Samples:
    return list(base.samples)


def imagenette_classes(base) -> list[str]:
    return [names[0] for names in base.classes]  # torchvision gives each class's synonyms


def flowers_classes(base) -> list[str]:
    return list(getattr(base, "classes", [])) or [str(i) for i in range(102)]


def pcam_targets(base) -> list[int]:
    """PCAM keeps its labels in an h5 file; read them at once rather than through 262 144 image decodes."""
    targets_file = base._FILES[base._split]["targets"][0]  # noqa: SLF001
    with base.h5py.File(base._base_folder / targets_file) as data:  # noqa: SLF001
        return [int(v) for v in data["y"][:, 0, 0, 0]]


def digits_classes(base) -> list[str]:
    return list(getattr(base, "classes", [])) or [str(i) for i in range(10)]
