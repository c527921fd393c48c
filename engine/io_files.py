"""Every file Thaw writes goes through here, so that it goes only where a regular file may go and a reader never
sees half of one.

- `check_target(path)`: refuses (UnwritableError, a BadInputError: one line, exit 2) a place a regular file may
  not go, before any work: an existing entry that is a device, a socket, a FIFO (or a folder), a kernel
  filesystem such as /proc or /sys, a parent that is not a folder, a read-only folder.
- `write_json_atomic`, `write_text_atomic`: temp file beside the target (created with O_EXCL and owner-only
  permissions by `tempfile.mkstemp`, so it never follows a symlink), fsync, `replace_into` the target.
- `temp_dir_beside(path)`: an owner-only hidden folder `.NAME.<pid>.XXXX.partial` beside the target for writers
  that make several files (export); the folders of a killed process are removed by the next call.
- `replace_into(src, path)`: checks the target again, then renames.
- `replace_folder_into(src, path)`: the same for a folder written whole (a Core ML package): an earlier one at
  `path` is moved aside, the new one renamed in, the old one removed; `path` never holds a half-written folder.

The lowest layer of the engine besides engine/errors.py: no torch, nothing of the engine imported but its errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import UnwritableError

# Filesystems of the kernel: their files are interfaces, not storage; Thaw never writes there.
KERNEL_FILESYSTEMS = frozenset({"proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs",
                                "cgroup", "cgroup2", "configfs", "pstore", "bpf", "mqueue", "fusectl",
                                "binfmt_misc", "efivarfs", "hugetlbfs", "autofs", "rpc_pipefs", "nsfs"})
PARTIAL_SUFFIX = ".partial"
STALE_LEGACY_SECONDS = 24 * 3600  # a .partial folder without a pid (older Thaw) is removed after a day

_UMASK = os.umask(0)
os.umask(_UMASK)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _mount_type(path: Path) -> str:
    """The filesystem type of the mount holding `path` (resolved), from /proc/self/mounts; "" where unknown."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split()[:3] for line in f]
    except OSError:
        return ""
    best, fstype = "", ""
    text = str(path)
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (text == point or text.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def check_target(path: str | Path, what: str = "output file", folder: bool = False) -> Path:
    """`path` if a regular file may be written there (replacing a regular file already there); else
    UnwritableError (a BadInputError) in one line naming `what`, the path and why. Makes nothing. `folder`: a
    folder is to be written there instead (replacing a folder already there; whether that folder may be replaced
    is the caller's judgement)."""
    path = Path(path)
    try:
        info = path.stat()  # a symlink is judged by what it points at
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise UnwritableError(f"{what} {path} cannot be used: {exc.strerror or exc}") from None
    if info is not None and folder and not stat.S_ISDIR(info.st_mode):
        raise UnwritableError(f"{what} {path} is {_kind(info.st_mode)}; what Thaw writes there is a folder")
    if info is not None and not folder and not stat.S_ISREG(info.st_mode):
        raise UnwritableError(f"{what} {path} is {_kind(info.st_mode)}; Thaw writes only regular files")
    resolved = Path(os.path.realpath(path))
    fstype = _mount_type(resolved)
    if fstype in KERNEL_FILESYSTEMS:
        raise UnwritableError(f"{what} {path} is on the kernel's {fstype} filesystem, where files cannot be stored")
    parent = resolved.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the folders still to make: judged by the nearest one that exists
    if not parent.is_dir():
        raise UnwritableError(f"{what} {path} cannot be written: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UnwritableError(f"{what} {path} cannot be written: the folder {parent} is read-only")
    return path


def replace_into(source: str | Path, path: str | Path, what: str = "output file") -> Path:
    """Rename `source` over `path` after checking `path` again (it may have become a device since)."""
    check_target(path, what)
    os.replace(source, path)
    return Path(path)


def replace_folder_into(source: str | Path, path: str | Path, what: str,
                        replaceable: Callable[[Path], bool]) -> Path:
    """Rename the folder `source` (complete) to `path`. A folder already there is replaced only when
    `replaceable(path)` says so (an earlier export, never a folder of the user's): it is renamed aside beside
    `source`, the new one renamed in, then the old one removed; if the second rename fails the old one is put back.
    A reader of `path` sees the old folder or the whole new one (a folder cannot be renamed over a folder, so for
    an instant between the two renames `path` does not exist)."""
    source, path = Path(source), Path(path)
    check_target(path, what, folder=True)
    try:
        if not os.path.lexists(path):
            os.rename(source, path)
            return path
        if not replaceable(path):
            raise UnwritableError(f"{what} {path} is a folder Thaw did not write; it is left as it is")
        aside = source.with_name(f".{source.name}.replaced")
        os.rename(path, aside)
        try:
            os.rename(source, path)
        except OSError:
            os.rename(aside, path)
            raise
    except OSError as exc:
        raise UnwritableError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    if aside.is_symlink():
        aside.unlink()  # a link to the earlier folder: the link is replaced, what it pointed at is not removed
    else:
        shutil.rmtree(aside, ignore_errors=True)
    return path


def _open_temp(path: Path, what: str) -> tuple[int, str]:
    check_target(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UnwritableError(f"{what} {path} cannot be written: {exc.strerror or exc}") from None


def write_text_atomic(path: str | Path, text: str, what: str = "output file", newline: str | None = None) -> Path:
    """Temp file, fsync, rename: a reader sees the old or the new content, never a part; a failed write (disk
    full, a name the filesystem refuses) leaves the old file and no temp file, and raises UnwritableError."""
    path = Path(path)
    fd, tmp = _open_temp(path, what)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # the temp file was owner-only; the result is an ordinary file
            os.fsync(f.fileno())
        replace_into(tmp, path, what)
    except OSError as exc:
        raise UnwritableError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def write_json_atomic(path: Path, data: Any, what: str = "output file") -> None:
    """`data` as indented JSON, written atomically (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n", what)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove the `.NAME.<pid>.XXXX.partial` folders beside `path` whose process is gone (a killed export), and
    older pid-less ones (`.NAME.XXXX.partial`, from a Thaw before pids were named) after a day."""
    path = Path(path)
    removed = []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:(\d+)\.)?[^/]*{re.escape(PARTIAL_SUFFIX)}$")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        found = pattern.match(entry.name)
        if not found or entry.is_symlink() or not entry.is_dir():
            continue
        pid = found.group(1)
        if pid is not None and pid.isdigit() and int(pid) != os.getpid():
            stale = not _pid_alive(int(pid))
        else:
            try:
                stale = pid is None and time.time() - entry.stat().st_mtime > STALE_LEGACY_SECONDS
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def temp_dir_beside(path: str | Path, what: str = "output file", folder: bool = False) -> Path:
    """An owner-only (0700) hidden folder beside `path` for the files of one write; the caller removes it.
    Checks `path` first (`folder`: as check_target's) and clears the stale folders of killed processes."""
    path = Path(path)
    check_target(path, what, folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(path)
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=PARTIAL_SUFFIX, dir=path.parent))
    except OSError as exc:
        raise UnwritableError(f"{what} {path} cannot be written: {exc.strerror or exc}") from None
