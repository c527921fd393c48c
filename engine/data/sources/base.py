"""The data-source protocol: what every source of labelled images says about itself, and what it gives a run.

A source is one record (`DataSource`) in the registry (engine/data/sources/__init__.py): a folder, a labels
CSV, or a torchvision data set. The CLI's `datasets` list, the studio's "Get a dataset…" dialog, the recipe's
`data.dataset` check and `download` all read the same records, so a new source is one registration.

A source gives a run `Loaded`: the class names and, for training and validation, either image files
(`(path, label)` pairs, read like a folder's — verified, RAM-cached, linked to by evaluations) or a torch
`Dataset` of PIL images where the set has no files (CIFAR, MNIST, STL-10, PCAM keep their images in arrays).
`val` None means the source has no official validation split: the caller splits `train` stratified and seeded
by `data.val_fraction` / `data.split_seed`, exactly as it splits a folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.data.scan import Problem, ScanReport

Samples = list[tuple[str, int]]

# How an archive is unpacked once fetched and verified: a tar (any compression), a zip, one gzip-compressed
# file, or nothing (the file is used as it is, e.g. Flowers-102's .mat label files).
UNPACK_KINDS = ("tar", "zip", "gunzip", "none")


@dataclass(frozen=True)
class Archive:
    """One file a download fetches: where from, its published MD5 (empty where torchvision publishes none),
    the folder under the data root it goes into, and how it is unpacked there."""

    url: str
    filename: str
    md5: str
    folder: str = ""  # relative to the data root, e.g. "flowers-102"
    unpack: str = "tar"
    size: int = 0  # bytes, when known (progress and the free-space check before the server says)
    google_drive_id: str = ""  # fetched through torchvision's Google Drive downloader (no HTTP Range there)

    def __post_init__(self) -> None:
        if self.unpack not in UNPACK_KINDS:
            raise ValueError(f"Archive.unpack {self.unpack!r} is not one of {', '.join(UNPACK_KINDS)}")


@dataclass
class Loaded:
    """What a source gives a run (see the module's docstring)."""

    classes: list[str]
    train: Samples | Any
    val: Samples | Any | None
    problems: list[Problem] = field(default_factory=list)
    report: ScanReport | None = None
    train_targets: list[int] | None = None  # for Dataset splits whose labels are not an attribute torch knows
    val_targets: list[int] | None = None


Opener = Callable[..., Loaded]  # (the recipe's data section, channels, a scan report already made or None)


@dataclass(frozen=True)
class DataSource:
    """One source of labelled images (see the module's docstring). Figures are the published ones."""

    name: str  # the recipe's data.dataset value
    title: str
    licence: str
    homepage: str
    images: int  # labelled images in all splits (0: depends on the user's data)
    classes: int
    split: str  # in words: the official split and how Thaw uses it, or "seeded stratified split"
    open: Opener
    download_bytes: int = 0
    disk_bytes: int = 0  # extracted
    # The files a download fetches; a function because the URLs and MD5s are read from torchvision's classes,
    # which only a download (not `--help` or the list) should pay the import of. None: nothing to download.
    archives: Callable[[], tuple[Archive, ...]] | None = None
    marker: str = ""  # a path under the data root that exists once the set is on disk
    needs: tuple[str, ...] = ()  # Python modules its reader needs beyond Thaw's own (e.g. h5py)
    splits: tuple[str, ...] = ()  # every split it has (an official one, or none)
    after_unpack: Callable[[Path], None] | None = None  # (the data root) a set whose archive holds archives
    local: bool = False  # the user's own images (a folder, a CSV): nothing to download

    def on_disk(self, root: str | Path) -> bool:
        return bool(self.marker) and (Path(root).expanduser() / self.marker).exists()

    def to_dict(self, root: str | Path | None = None) -> dict:
        data = {"name": self.name, "title": self.title, "images": self.images, "classes": self.classes,
                "split": self.split, "splits": list(self.splits), "licence": self.licence,
                "homepage": self.homepage, "download_bytes": self.download_bytes, "disk_bytes": self.disk_bytes,
                "needs": list(self.needs), "downloadable": self.archives is not None}
        if root is not None and not self.local:
            data["on_disk"] = self.on_disk(root)
        return data
