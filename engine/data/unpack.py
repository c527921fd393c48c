"""Unpack a downloaded archive without ever writing outside its folder.

Every member is checked before anything is written: an absolute name, a `..` component, a link whose target
leaves the folder, a hard link to anything outside, or a device/FIFO refuses the whole archive (nothing is
extracted). Extraction then goes into a fresh staging folder beside the destination, with Python's own "data"
filter as a second guard, every extracted path is resolved once more, and only then are the entries moved into
place. So an interrupted extraction never leaves a half-written set where a reader would take it for a whole one,
and running again starts the extraction over.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from engine.data.fetch import DownloadStopped
from engine.errors import BadInputError

_STAGING_PREFIX = ".thaw-unpack-"
_CHUNK = 1 << 20


class UnsafeArchiveError(BadInputError):
    """An archive would write outside its folder (or holds a device file); nothing of it was extracted."""


class DamagedArchiveError(BadInputError):
    """An archive cannot be read (truncated, or not the format its name says)."""


def unpack(archive: str | Path, dest: str | Path, kind: str, should_stop: Callable[[], bool] | None = None) -> None:
    """Unpack `archive` ("tar", "zip", "gunzip") into the folder `dest`; "none" leaves the file as it is.
    `should_stop` is asked between members: a stop leaves nothing extracted (and the archive for the next try)."""
    archive, dest = Path(archive), Path(dest)
    if kind == "none":
        return
    if kind == "gunzip":
        _gunzip(archive, dest / archive.name.removesuffix(".gz"))
        return
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f"{_STAGING_PREFIX}{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted extraction left
    staging.mkdir()
    try:
        if kind == "tar":
            _extract_tar(archive, staging, should_stop)
        elif kind == "zip":
            _extract_zip(archive, staging, should_stop)
        else:
            raise ValueError(f"unknown archive kind {kind!r}")
        _check_inside(staging, archive)
        _merge(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpack_inner_archives(folder: Path, dest: Path, suffix: str) -> None:
    """Unpack the archives ending in `suffix` that an archive held (Caltech-101's zip of .tar.gz), then drop
    `folder`."""
    if not folder.is_dir():
        return
    for inner in sorted(folder.iterdir()):
        if inner.name.endswith(suffix) and inner.is_file() and not inner.is_symlink():
            unpack(inner, dest, "tar")
    shutil.rmtree(folder)


# --- checks -------------------------------------------------------------------------------------------------------

def member_problem(name: str, link: str | None = None, hard: bool = False) -> str | None:
    """Why a member of this name (and link target) may not be written under the folder, or None."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "a '..' component"
    if link is None:
        return None
    if link.startswith(("/", "\\")) or (len(link) > 1 and link[1] == ":"):
        return f"a link to the absolute path {link}"
    # A hard link names a member from the archive's top; a symbolic link is relative to its own folder.
    base = "" if hard else posixpath.dirname(name.replace("\\", "/"))
    target = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
    if target == ".." or target.startswith("../"):
        return f"a link to {link}, outside the folder"
    return None


def _refuse(archive: Path, name: str, why: str) -> None:
    raise UnsafeArchiveError(f"archive {archive.name}: member '{name}' is {why}; it would write outside the "
                             f"folder, so nothing of the archive was extracted (is it the archive the set ships?)")


def _stop_point(should_stop: Callable[[], bool] | None, archive: Path) -> None:
    if should_stop is not None and should_stop():
        raise DownloadStopped(f"stopped while unpacking {archive.name}; it is kept: run the same command again")


def _asking(members: list, should_stop: Callable[[], bool] | None, archive: Path):
    for member in members:
        _stop_point(should_stop, archive)
        yield member


def _extract_tar(archive: Path, staging: Path, should_stop: Callable[[], bool] | None = None) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                if m.isdev():
                    _refuse(archive, m.name, "a device or FIFO")
                why = member_problem(m.name, m.linkname if (m.issym() or m.islnk()) else None, m.islnk())
                if why:
                    _refuse(archive, m.name, why)
            # extractall, not extract one by one: it sets folders' modes last (a read-only folder still fills)
            tar.extractall(staging, members=_asking(members, should_stop, archive), filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, tarfile.FilterError):
            _refuse(archive, getattr(exc, "tarinfo", None).name if getattr(exc, "tarinfo", None) else "?", str(exc))
        raise DamagedArchiveError(f"archive {archive.name} is damaged or not a tar archive ({exc}); delete it and "
                                  f"download again") from exc


def _extract_zip(archive: Path, staging: Path, should_stop: Callable[[], bool] | None = None) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                why = member_problem(name)
                if why:
                    _refuse(archive, name, why)
            for name in names:  # zipfile writes links as plain files: no link can point out
                _stop_point(should_stop, archive)
                zf.extract(name, staging)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise DamagedArchiveError(f"archive {archive.name} is damaged or not a zip archive ({exc}); delete it and "
                                  f"download again") from exc


def _check_inside(staging: Path, archive: Path) -> None:
    """Belt and braces: every extracted path, links resolved, is still under the staging folder."""
    top = os.path.realpath(staging)
    for folder, dirs, files in os.walk(staging):
        for name in dirs + files:
            real = os.path.realpath(os.path.join(folder, name))
            if real != top and not real.startswith(top + os.sep):
                _refuse(archive, os.path.relpath(os.path.join(folder, name), staging), f"resolved to {real}")


def _merge(src: Path, dest: Path) -> None:
    """Move src's entries into dest; folders that exist on both sides merge (Pets' images/ and annotations/)."""
    for entry in sorted(src.iterdir()):
        target = dest / entry.name
        if target.is_dir() and not target.is_symlink() and entry.is_dir() and not entry.is_symlink():
            _merge(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def _gunzip(archive: Path, target: Path) -> None:
    temporary = target.with_name(target.name + ".part")
    try:
        with gzip.open(archive, "rb") as source, open(temporary, "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
    except (OSError, EOFError, zlib.error) as exc:
        temporary.unlink(missing_ok=True)
        raise DamagedArchiveError(f"archive {archive.name} is damaged or not gzip-compressed ({exc}); delete it "
                                  f"and download again") from exc
    os.replace(temporary, target)
