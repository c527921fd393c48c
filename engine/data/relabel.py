"""Fixing labels in place: move an image of a class folder to another class, or to the data folder's trash, and
undo the last change byte for byte. Every change is one line of a journal the user can read.

Where things live, inside the data folder (hidden: the scan skips names that start with a dot, so neither is read
as a class):

    DATA/.thaw/relabel-journal.jsonl   one JSON object per line: #, time, action, from, to, sha256, bytes
    DATA/.thaw/trash/<#>-<name>        a trashed image, kept whole until the user deletes the folder

Why not the system trash (send2trash, as a deleted run goes): it cannot give a file back by program on every
desktop, so "undo" could not promise the same bytes at the same path. A rename inside the data folder keeps the
bytes, the modification time and the disk space accounting; the journal's digest proves it on undo.

Nothing is ever overwritten: a name taken in the target class gets " (2)", " (3)" … before its suffix, an undo
whose original place is taken again is refused, and a read-only class folder (no write bit, or not writable by
this user, or on a read-only file system) is refused in words before anything moves.

The scan and the feature cache follow by construction: the scan reads the folders, and a feature cache entry is
keyed by every image's path, label, size and modification time (engine/train/feature_cache.py), so a moved or
trashed image makes a new key and an undo gives the old one back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from engine.data.scan import LAYOUT_TRAIN_VAL, VAL_FOLDER_NAMES, class_folders
from engine.errors import BadInputError

STATE_FOLDER = ".thaw"
JOURNAL_FILE = "relabel-journal.jsonl"
TRASH_FOLDER = "trash"
MOVE, TRASH, UNDO = "move", "trash", "undo"
_MAX_COPIES = 10_000  # " (2)" … " (9999)": past that a name collision is refused rather than looped on


class RelabelError(BadInputError):
    """A move, a trash or an undo that cannot be done; nothing was changed."""


@dataclass(frozen=True)
class Change:
    """One line of the journal. Paths are relative to the data folder, with forward slashes."""

    number: int
    time: str  # UTC, ISO 8601 to the second
    action: str  # move, trash or undo
    source: str  # where the image was
    target: str  # where it went (for an undo: where it is back)
    sha256: str  # of the image's bytes, checked again on undo
    size: int
    undoes: int = 0  # for an undo: the number of the change it reverted

    def to_json(self) -> str:
        data = {"#": self.number, "time": self.time, "action": self.action, "from": self.source,
                "to": self.target, "sha256": self.sha256, "bytes": self.size}
        if self.undoes:
            data["undoes"] = self.undoes
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Change:
        data = json.loads(line)
        return cls(int(data["#"]), str(data["time"]), str(data["action"]), str(data["from"]), str(data["to"]),
                   str(data["sha256"]), int(data["bytes"]), int(data.get("undoes", 0)))

    def describe(self) -> str:
        """One line for people: `#3 2026-12-07 17:50:01 moved train/cat/a.png → train/dog/a.png`."""
        when = self.time.replace("T", " ").removesuffix("Z")
        if self.action == MOVE:
            what = f"moved {self.source} → {self.target}"
        elif self.action == TRASH:
            what = f"trashed {self.source} (kept as {self.target})"
        else:
            what = f"undid #{self.undoes}: {self.source} → {self.target}"
        return f"#{self.number} {when} {what}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ImagePlace:
    """Where an image sits in the data folder's layout."""

    root: Path
    split: str  # "" for the folder layout, else train or val
    label: str  # its class
    class_folder: Path


def journal_path(root: str | os.PathLike) -> Path:
    return Path(root) / STATE_FOLDER / JOURNAL_FILE


def trash_folder(root: str | os.PathLike) -> Path:
    return Path(root) / STATE_FOLDER / TRASH_FOLDER


def read_journal(root: str | os.PathLike) -> list[Change]:
    """Every change recorded in the data folder, oldest first ([] when nothing was ever changed)."""
    path = journal_path(root)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RelabelError(f"cannot read the journal {path}: {exc.strerror or exc}") from exc
    changes = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            changes.append(Change.from_json(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise RelabelError(f"the journal {path} is damaged at line {number} ({exc}); fix or move it away") from exc
    return changes


def undoable(changes: list[Change]) -> list[Change]:
    """The moves and trashes not undone yet, oldest first: an undo reverts the last of them."""
    stack: list[Change] = []
    for change in changes:
        if change.action == UNDO:
            if stack and stack[-1].number == change.undoes:
                stack.pop()
        else:
            stack.append(change)
    return stack


def last_undoable(root: str | os.PathLike) -> Change | None:
    pending = undoable(read_journal(root))
    return pending[-1] if pending else None


def classes_of(root: str | os.PathLike) -> list[str]:
    """The class names of the data folder, as the scan finds them."""
    _layout, found = class_folders(root)
    return sorted({name for _split, name, _folder in found})


def locate(root: str | os.PathLike, path: str | os.PathLike) -> ImagePlace:
    """The split and class of an image of the data folder; RelabelError when it is not in one of its class
    folders (an image elsewhere has no label to fix)."""
    root = Path(os.path.abspath(root))
    image = Path(os.path.abspath(path))
    layout, found = class_folders(root)
    for split, name, folder in found:
        folder = Path(folder)
        if image.parent == folder or folder in image.parents:
            return ImagePlace(root, split, name, folder)
    where = "root/train/<class>/ or root/val/<class>/" if layout == LAYOUT_TRAIN_VAL else "root/<class>/"
    raise RelabelError(f"{image} is not in a class folder of {root} ({where}): it has no label to change")


def find_root(path: str | os.PathLike, hints: tuple[str | os.PathLike, ...] = ()) -> Path | None:
    """The data folder an image belongs to, or None: the first of `hints` (e.g. the run's data folder) that holds
    it in a class folder; else the folder above its class folder (two above, in a train/val layout). An image
    whose folder is not a class folder of anything has no label to fix."""
    image = Path(os.path.abspath(path))
    for hint in hints:
        if hint and Path(os.path.abspath(hint)) in image.parents:
            # Inside a known data folder but not in one of its class folders (a loose file at its root): no label,
            # and not a "class" of the folder above either.
            try:
                return locate(hint, image).root
            except BadInputError:
                return None
    class_folder = image.parent
    split_parent = class_folder.parent.parent
    candidates = [class_folder.parent]
    if class_folder.parent.name.lower() in ("train", *VAL_FOLDER_NAMES):
        candidates.insert(0, split_parent)
    for candidate in candidates:
        try:
            place = locate(candidate, image)
        except (RelabelError, BadInputError):
            continue
        if place.class_folder == class_folder:
            return place.root
    return None


def move_to_class(root: str | os.PathLike, path: str | os.PathLike, label: str) -> Change:
    """Move an image to the class `label` (the same split in the train/val layout) and journal it."""
    place, image = _source(root, path)
    classes = classes_of(place.root)
    if label not in classes:
        raise RelabelError(f"'{label}' is not a class of {place.root}: its classes are {', '.join(classes)} "
                           f"(make the folder first for a new class)")
    if label == place.label:
        raise RelabelError(f"{_relative(place.root, image)} is already in class '{label}'; nothing was moved")
    target_folder = (place.root / place.split / label) if place.split else place.root / label
    # A class folder the scan found under another spelling of the split keeps its own folder.
    for split, name, folder in class_folders(place.root)[1]:
        if name == label and split == place.split:
            target_folder = Path(folder)
    check_writable(place.class_folder, f"class folder '{place.label}'", image)
    if target_folder.exists():
        check_writable(target_folder, f"class folder '{label}'", image)
    else:
        check_writable(target_folder.parent, f"folder {target_folder.parent}", image)
    return _apply(place.root, image, target_folder, MOVE, image.name)


def trash(root: str | os.PathLike, path: str | os.PathLike) -> Change:
    """Move an image into the data folder's trash (restorable by undo) and journal it."""
    place, image = _source(root, path)
    check_writable(place.class_folder, f"class folder '{place.label}'", image)
    number = _next_number(place.root)
    return _apply(place.root, image, trash_folder(place.root), TRASH, f"{number}-{image.name}")


def undo_last(root: str | os.PathLike) -> Change:
    """Revert the last move or trash not undone yet: the same bytes back at the same path. Refused (nothing
    changed) when the image is gone, its bytes changed, or its old place is taken again."""
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise RelabelError(f"data folder not found: {root}")
    last = last_undoable(root)
    if last is None:
        raise RelabelError(f"nothing to undo in {root} (no move or trash left in its journal)")
    current, original = root / last.target, root / last.source
    if not current.is_file():
        raise RelabelError(f"cannot undo #{last.number}: {last.target} is no longer there")
    if original.exists() or original.is_symlink():
        raise RelabelError(f"cannot undo #{last.number}: {last.source} exists again; move it away first")
    digest, _size = _digest(current)
    if digest != last.sha256:
        raise RelabelError(f"cannot undo #{last.number}: {last.target} changed since (its bytes differ); "
                           f"nothing was moved")
    check_writable(current.parent, f"folder {current.parent.name}", current)
    if original.parent.exists():
        check_writable(original.parent, f"class folder '{original.parent.name}'", current)
    original.parent.mkdir(parents=True, exist_ok=True)
    _rename(current, original)
    change = Change(_next_number(root), _now(), UNDO, last.target, last.source, last.sha256, last.size, last.number)
    try:
        _append(root, change)
    except OSError as exc:
        _rename(original, current)
        raise RelabelError(f"cannot write the journal {journal_path(root)} ({exc.strerror or exc}); "
                           f"nothing was undone") from exc
    return change


# --- helpers -------------------------------------------------------------------------------------------------


def _source(root: str | os.PathLike, path: str | os.PathLike) -> tuple[ImagePlace, Path]:
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise RelabelError(f"data folder not found: {root}")
    image = Path(os.path.abspath(path))
    if not image.exists() and (root / path).exists():
        image = root / path  # a path relative to the data folder, as the journal prints them
    if image.is_symlink():
        raise RelabelError(f"{image} is a symbolic link; move the file it points to instead")
    if not image.is_file():
        raise RelabelError(f"{path}: no such image file")
    if Path(root / STATE_FOLDER) in image.parents:
        raise RelabelError(f"{image} is in the data folder's trash; use undo to bring it back")
    return locate(root, image), image


def check_writable(folder: Path, what: str, image: Path | None = None) -> None:
    """A folder without any write bit is read-only to Thaw even for a user who could write it (root): the
    owner marked it so. os.access covers the rest (another owner, a read-only mount)."""
    try:
        mode = folder.stat().st_mode
    except OSError as exc:
        raise RelabelError(f"cannot read {folder}: {exc.strerror or exc}") from exc
    if not (mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) or not os.access(folder, os.W_OK):
        raise RelabelError(f"the {what} ({folder}) is read-only" + (f": {image.name} was not moved" if image else ""))


def _free_name(folder: Path, name: str) -> Path:
    """`name` in `folder`, or `stem (2).suffix`, `stem (3).suffix` … when taken: nothing is overwritten."""
    target = folder / name
    if not (target.exists() or target.is_symlink()):
        return target
    stem, suffix = Path(name).stem, Path(name).suffix
    for copy in range(2, _MAX_COPIES):
        target = folder / f"{stem} ({copy}){suffix}"
        if not (target.exists() or target.is_symlink()):
            return target
    raise RelabelError(f"{folder} already holds {_MAX_COPIES} copies named like {name}; nothing was moved")


def _apply(root: Path, image: Path, folder: Path, action: str, name: str) -> Change:
    digest, size = _digest(image)
    state = root / STATE_FOLDER
    if not state.exists():
        check_writable(root, "data folder", image)  # the journal must be writable before anything moves
    elif not os.access(state, os.W_OK):
        raise RelabelError(f"the journal's folder {state} is read-only: {image.name} was not moved")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        state.mkdir(exist_ok=True)
    except OSError as exc:
        raise RelabelError(f"cannot create {folder}: {exc.strerror or exc}; {image.name} was not moved") from exc
    target = _free_name(folder, name)
    _rename(image, target)
    change = Change(_next_number(root), _now(), action, _relative(root, image), _relative(root, target), digest, size)
    try:
        _append(root, change)
    except OSError as exc:
        _rename(target, image)  # a change that is not journalled could not be undone: put it back
        raise RelabelError(f"cannot write the journal {journal_path(root)} ({exc.strerror or exc}); "
                           f"{image.name} was not moved") from exc
    return change


def _rename(source: Path, target: Path) -> None:
    """Move without ever replacing a file: a hard link fails when the target exists (atomically), then the
    source's name goes. Where links are not supported, a checked rename; across file systems a copy that keeps
    the modification time, then the source is removed."""
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError as exc:
        raise RelabelError(f"{target} appeared meanwhile; {source.name} was not moved") from exc
    except PermissionError as exc:
        raise RelabelError(f"permission denied moving {source.name} to {target.parent}: nothing was moved") from exc
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise RelabelError(f"{target.parent} is on a read-only file system: nothing was moved") from exc
        if target.exists():
            raise RelabelError(f"{target} appeared meanwhile; {source.name} was not moved") from exc
        try:
            os.rename(source, target)
        except OSError as rename_error:
            if rename_error.errno != errno.EXDEV:
                raise RelabelError(f"cannot move {source.name} to {target.parent}: "
                                   f"{rename_error.strerror or rename_error}") from rename_error
            shutil.copy2(source, target)
            os.unlink(source)
        return
    try:
        os.unlink(source)
    except OSError as exc:
        os.unlink(target)  # the link only: the source is untouched
        raise RelabelError(f"cannot remove {source.name} from its folder ({exc.strerror or exc}): "
                           f"nothing was moved") from exc


def _append(root: Path, change: Change) -> None:
    path = journal_path(root)
    path.parent.mkdir(exist_ok=True)
    with open(path, "a", encoding="utf-8") as journal:
        journal.write(change.to_json() + "\n")
        journal.flush()
        os.fsync(journal.fileno())


def _next_number(root: Path) -> int:
    changes = read_journal(root)
    return changes[-1].number + 1 if changes else 1


def _digest(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


def _relative(root: Path, path: Path) -> str:
    return str(PurePosixPath(*path.relative_to(root).parts))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
