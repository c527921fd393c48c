"""Dataset scan: find the classes and usable images under a folder, and say exactly what cannot be used.

Two layouts are understood:

- "folder":    root/<class>/<image>           (torchvision ImageFolder; subfolders of a class are included)
- "train_val": root/train/<class>/<image> and root/val/<class>/<image>  ("valid"/"validation" also name val)

train_val is chosen only when both train/ and a val folder exist (names matched case-insensitively); a lone
train/ folder is read as a class named "train", which the report's class list makes obvious.

The point of scanning before training is that a bad file should be a line in a report, not an exception in
epoch 7. With verify=True every candidate is fully decoded by `engine.data.images.load_image`, so truncated and
mislabelled files are found up front; the resulting `ScanReport.samples` only holds files known to decode.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

from engine.data.image_types import IMAGE_EXTENSIONS
from engine.errors import BadInputError

LAYOUT_FOLDER = "folder"
LAYOUT_TRAIN_VAL = "train_val"
VAL_FOLDER_NAMES = ("val", "valid", "validation")  # in order of preference when several exist

# Files and folders that operating systems and archivers drop everywhere; reporting them would be noise.
_JUNK_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})
_JUNK_FOLDERS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information"})

EMPTY_CLASS_REASON = "empty class folder (no usable images)"
_LOOSE_FILE_REASON = "file outside a class folder"
_MAX_PROGRESS_CALLS = 100
_IMBALANCE_WARNING_RATIO = 3.0

ProgressCallback = Callable[[int, int], None]


class DatasetError(BadInputError, ValueError):
    """The dataset folder cannot be used at all (missing, or not in a layout Thaw understands)."""


@dataclass
class Problem:
    """One thing under the dataset root that cannot be used. `is_folder` marks folder-level problems."""

    path: str
    reason: str
    is_folder: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Problem:
        return cls(path=data["path"], reason=data["reason"], is_folder=bool(data.get("is_folder", False)))


@dataclass
class ScanReport:
    """What a scan found. `samples` are (absolute path, class index, split), split "" for the folder layout."""

    root: str
    layout: str
    classes: list[str]
    samples: list[tuple[str, int, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    split_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def imbalance(self) -> float:
        """Largest class count over smallest non-empty one; empty classes are reported separately."""
        nonzero = [n for n in self.counts.values() if n > 0]
        if len(self.classes) <= 1 or not nonzero:
            return 1.0
        return max(nonzero) / min(nonzero)

    @property
    def skipped(self) -> int:
        """How many files were left out (folder-level problems are not files)."""
        return sum(1 for problem in self.problems if not problem.is_folder)

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": list(self.classes),
            "samples": [list(sample) for sample in self.samples],
            "counts": dict(self.counts),
            "split_counts": {split: dict(counts) for split, counts in self.split_counts.items()},
            "problems": [problem.to_dict() for problem in self.problems],
            "empty_classes": list(self.empty_classes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ScanReport:
        return cls(
            root=data["root"],
            layout=data["layout"],
            classes=list(data["classes"]),
            samples=[(str(path), int(index), str(split)) for path, index, split in data["samples"]],
            counts={name: int(n) for name, n in data["counts"].items()},
            split_counts={s: {name: int(n) for name, n in c.items()} for s, c in data["split_counts"].items()},
            problems=[Problem.from_dict(problem) for problem in data["problems"]],
            empty_classes=list(data["empty_classes"]),
        )

    def format_text(self) -> str:
        layout = "train/ + val/ folders" if self.layout == LAYOUT_TRAIN_VAL else "class folders"
        lines = [f"Dataset: {self.root}", f"Layout: {layout}", f"Classes ({len(self.classes)}):"]
        lines += self._class_lines()
        total = f"Total: {self.num_samples} usable images"
        if self.split_counts:
            total += " (" + ", ".join(f"{s} {sum(c.values())}" for s, c in self.split_counts.items()) + ")"
        lines.append(total)
        imbalance = f"Imbalance: {self.imbalance:.2f} (largest class / smallest non-empty class)"
        if self.imbalance > _IMBALANCE_WARNING_RATIO:
            imbalance += (
                f"\n  Warning: the largest class has over {_IMBALANCE_WARNING_RATIO:g}x the images of the smallest;"
                " accuracy may hide poor results on small classes."
            )
        lines.append(imbalance)
        file_problems = [p for p in self.problems if not p.is_folder]
        folder_problems = [p for p in self.problems if p.is_folder]
        if file_problems:
            lines.append(f"Unusable files ({len(file_problems)}):")
            lines += [f"  {p.path}: {p.reason}" for p in file_problems]
        if folder_problems:
            lines.append(f"Folder problems ({len(folder_problems)}):")
            lines += [f"  {p.path}: {p.reason}" for p in folder_problems]
        return "\n".join(lines)

    def _class_lines(self) -> list[str]:
        bar_width = 30
        largest = max(self.counts.values(), default=0)
        name_width = max((len(name) for name in self.classes), default=0)
        lines = []
        for name in self.classes:
            count = self.counts.get(name, 0)
            if self.split_counts:
                figures = "  ".join(f"{s} {c.get(name, 0):>6}" for s, c in self.split_counts.items())
            else:
                figures = f"{count:>6}"
            bar = "█" * max(1, round(bar_width * count / largest)) if count else "(empty)"
            lines.append(f"  {name:<{name_width}}  {figures}  {bar}")
        return lines


def scan_folder(
    root: str | os.PathLike,
    channels: int = 3,
    verify: bool = True,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> ScanReport:
    """Scan `root` and report its classes, usable samples and problems.

    verify=True decodes every candidate file (in a thread pool: PIL releases the GIL while decoding);
    verify=False only checks extensions. `progress(done, total)` is called at most about 100 times from the
    calling thread; an exception raised by it aborts the scan (the GUI's way to cancel).
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    root = os.path.abspath(os.fspath(root))
    if not os.path.exists(root):
        raise DatasetError(f"dataset folder not found: {root}")
    if not os.path.isdir(root):
        raise DatasetError(f"dataset path is not a folder: {root}")

    problems: list[Problem] = []
    layout, class_dirs = _find_class_folders(root, problems)
    class_dirs = _without_aliases(class_dirs, problems)
    classes = sorted({name for _split, name, _folder in class_dirs})
    class_index = {name: index for index, name in enumerate(classes)}

    candidates: list[tuple[str, int, str]] = []
    folder_of: dict[tuple[str, str], str] = {}  # (split, class) -> folder, to report empty ones
    for split, name, folder in class_dirs:
        folder_of[(split, name)] = folder
        for path in _files_under(folder, problems):
            candidates.append((path, class_index[name], split))

    if verify:
        reasons = _verify(candidates, channels, progress, workers)
    else:
        reasons = [None] * len(candidates)
        _report_progress(progress, len(candidates), len(candidates))
    problems += [Problem(path, reason) for (path, _, _), reason in zip(candidates, reasons) if reason is not None]
    samples = sorted(
        (sample for sample, reason in zip(candidates, reasons) if reason is None),
        key=lambda s: (s[2], s[1], s[0]),
    )

    counts = {name: 0 for name in classes}
    split_counts: dict[str, dict[str, int]] = {}
    if layout == LAYOUT_TRAIN_VAL:
        split_counts = {split: {name: 0 for name in classes} for split in ("train", "val")}
    for _, index, split in samples:
        counts[classes[index]] += 1
        if split_counts:
            split_counts[split][classes[index]] += 1

    usable = {(split, classes[index]) for _, index, split in samples}
    for key, folder in sorted(folder_of.items()):
        if key not in usable:
            problems.append(Problem(folder, EMPTY_CLASS_REASON, is_folder=True))
    # A class is "empty" when nothing can be trained on it: images that exist only in val/ do not help.
    training = split_counts["train"] if split_counts else counts
    empty_classes = [name for name in classes if training[name] == 0]

    problems.sort(key=lambda p: (p.path, p.reason))
    return ScanReport(
        root=root,
        layout=layout,
        classes=classes,
        samples=samples,
        counts=counts,
        split_counts=split_counts,
        problems=problems,
        empty_classes=empty_classes,
    )


def class_folders(root: str | os.PathLike) -> tuple[str, list[tuple[str, str, str]]]:
    """The layout of `root` and its class folders as (split, class name, folder path), exactly as `scan_folder`
    finds them, without reading a single image (for moving files between classes: engine/data/relabel.py)."""
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise DatasetError(f"dataset folder not found: {root}")
    problems: list[Problem] = []
    layout, found = _find_class_folders(root, problems)
    return layout, _without_aliases(found, problems)


@dataclass
class UnlabeledScan:
    """Every usable image under a folder whatever its layout (class folders are ignored: self-supervised
    pre-training reads no labels), and what cannot be used, in the scan's own words."""

    root: str
    images: list[str]
    problems: list[Problem]


def scan_unlabeled(root: str | os.PathLike, channels: int = 3, progress: ProgressCallback | None = None,
                   workers: int | None = None) -> UnlabeledScan:
    """Walk `root` (subfolders included) and decode every image file as `scan_folder` does; unreadable files
    and non-images become problems. An empty result is the caller's to refuse (it knows what the images are
    for)."""
    root = os.path.abspath(os.fspath(root))
    if not os.path.exists(root):
        raise DatasetError(f"image folder not found: {root}")
    if not os.path.isdir(root):
        raise DatasetError(f"image path is not a folder: {root}")
    problems: list[Problem] = []
    paths = sorted(_files_under(root, problems))
    reasons = _verify([(path, 0, "") for path in paths], channels, progress, workers)
    problems += [Problem(path, reason) for path, reason in zip(paths, reasons) if reason is not None]
    problems.sort(key=lambda p: (p.path, p.reason))
    return UnlabeledScan(root, [path for path, reason in zip(paths, reasons) if reason is None], problems)


# --- layout --------------------------------------------------------------------------------------------------


def _find_class_folders(root: str, problems: list[Problem]) -> tuple[str, list[tuple[str, str, str]]]:
    """Return the layout and its class folders as (split, class name, folder path)."""
    folders, loose_files = _list_dir(root, problems)
    problems += [Problem(path, _LOOSE_FILE_REASON) for path in loose_files]
    by_lower_name = {os.path.basename(folder).lower(): folder for folder in folders}
    train = by_lower_name.get("train")
    val = next((by_lower_name[name] for name in VAL_FOLDER_NAMES if name in by_lower_name), None)

    if train is None or val is None:
        if not folders:
            raise DatasetError(
                f"no class folders found in {root}. Expected one folder per class, root/<class>/<image>, "
                "or root/train/<class>/<image> with root/val/<class>/<image>."
            )
        return LAYOUT_FOLDER, [("", os.path.basename(folder), folder) for folder in folders]

    for folder in folders:
        if folder not in (train, val):
            problems.append(
                Problem(folder, "folder ignored (the train/val layout reads only train/ and val/)", is_folder=True)
            )
    train_classes = _class_folders_of_split(train, problems)
    if not train_classes:
        raise DatasetError(
            f"no class folders found in {train}. Expected root/train/<class>/<image> and root/val/<class>/<image>."
        )
    class_dirs = [("train", os.path.basename(folder), folder) for folder in train_classes]
    known = {name for _, name, _ in class_dirs}
    for folder in _class_folders_of_split(val, problems):
        name = os.path.basename(folder)
        if name in known:
            class_dirs.append(("val", name, folder))
        else:
            problems.append(Problem(folder, f"class '{name}' is not in train/ (ignored)", is_folder=True))
    return LAYOUT_TRAIN_VAL, class_dirs


def _class_folders_of_split(split_folder: str, problems: list[Problem]) -> list[str]:
    folders, loose_files = _list_dir(split_folder, problems)
    problems += [Problem(path, _LOOSE_FILE_REASON) for path in loose_files]
    return folders


def _without_aliases(class_dirs: list[tuple[str, str, str]], problems: list[Problem]) -> list[tuple[str, str, str]]:
    """Drop class folders that are the same folder as an earlier one (a symbolic link to it): their images
    would count twice, or, between train/ and val/, validation would score training images. A real folder
    wins over a link to it; each dropped one is a visible folder problem."""
    order = sorted(range(len(class_dirs)), key=lambda i: (os.path.islink(class_dirs[i][2]), i))
    seen: dict[str, tuple[str, str, str]] = {}
    dropped: set[int] = set()
    for i in order:
        split, name, folder = class_dirs[i]
        real = os.path.realpath(folder)
        first = seen.get(real)
        if first is None:
            seen[real] = class_dirs[i]
            continue
        dropped.add(i)
        other = f"{first[0]}/{first[1]}" if first[0] else first[1]
        problems.append(Problem(folder, f"same folder as class '{other}' (a symbolic link); not counted twice",
                                is_folder=True))
    return [d for i, d in enumerate(class_dirs) if i not in dropped]


# --- walking the file system ---------------------------------------------------------------------------------


def _list_dir(folder: str, problems: list[Problem]) -> tuple[list[str], list[str]]:
    """Sorted (subfolders, files) of `folder`, following symlinks, without hidden and junk entries."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        problems.append(Problem(folder, f"cannot read folder ({exc.strerror or exc})", is_folder=True))
        return [], []
    folders, files = [], []
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name.lower() in _JUNK_FILES or name.lower() in _JUNK_FOLDERS:
            continue
        path = os.path.join(folder, name)
        try:
            if entry.is_dir():  # follows symlinks
                folders.append(path)
            elif entry.is_file():
                files.append(path)
            elif entry.is_symlink():
                problems.append(Problem(path, "broken symbolic link"))
            # sockets, FIFOs and devices are not dataset content; skip them silently
        except OSError as exc:
            problems.append(Problem(path, f"cannot read ({exc.strerror or exc})"))
    return folders, files


def _files_under(class_folder: str, problems: list[Problem]) -> list[str]:
    """Image files anywhere below `class_folder`; other files become problems."""
    images: list[str] = []
    visited: set[tuple[int, int]] = set()  # (device, inode): a symlink cycle must not recurse forever
    pending = [class_folder]
    while pending:
        folder = pending.pop()
        try:
            stat = os.stat(folder)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) in visited:
            problems.append(Problem(folder, "folder already scanned (symbolic link loop?); skipped", is_folder=True))
            continue
        visited.add((stat.st_dev, stat.st_ino))
        subfolders, files = _list_dir(folder, problems)
        for path in files:
            extension = os.path.splitext(path)[1].lower()
            if extension in IMAGE_EXTENSIONS:
                images.append(path)
            else:
                what = f"extension {extension}" if extension else "no extension"
                problems.append(Problem(path, f"not an image file ({what})"))
        pending.extend(reversed(subfolders))
    return images


# --- verification --------------------------------------------------------------------------------------------


def _verify(
    candidates: list[tuple[str, int, str]],
    channels: int,
    progress: ProgressCallback | None,
    workers: int | None,
) -> list[str | None]:
    """Decode every candidate; return, in candidate order, None for usable files or the reason they are not."""
    total = len(candidates)
    reasons: list[str | None] = [None] * total
    if total == 0:
        return reasons
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thaw-scan")
    try:
        futures = {executor.submit(_decode_reason, path, channels): i for i, (path, _, _) in enumerate(candidates)}
        for done, future in enumerate(as_completed(futures), start=1):
            # Results land at their candidate's index, so the outcome does not depend on thread scheduling.
            reasons[futures[future]] = future.result()
            _report_progress(progress, done, total)
    except BaseException:
        # Cancelled (by the progress callback or Ctrl-C): do not decode the remaining thousands of files.
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return reasons


def verify_files(paths: list[str], channels: int = 3, progress: ProgressCallback | None = None,
                 workers: int | None = None) -> list[str | None]:
    """Decode every file as the scan does (for sources whose file lists come from elsewhere: a labels CSV, a
    torchvision set's index); in order, None for a usable file or the reason it is not."""
    return _verify([(path, 0, "") for path in paths], channels, progress, workers)


def _decode_reason(path: str, channels: int) -> str | None:
    # Imported here: decoding brings numpy and PIL (engine/data/images.py), which the layout alone
    # (`class_folders`, the relabel command) does not need.
    from engine.data.images import UnreadableImageError, decode_image

    try:
        decode_image(path, channels)
    except UnreadableImageError as exc:
        return exc.reason
    return None


def _report_progress(progress: ProgressCallback | None, done: int, total: int) -> None:
    if progress is None:
        return
    step = max(1, math.ceil(total / _MAX_PROGRESS_CALLS))
    if done % step == 0 or done == total:
        progress(done, total)
