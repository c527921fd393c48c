"""Download a data source into a data root: free space checked first, each archive fetched resumably (or taken
from where the user put it), its MD5 verified, unpacked without leaving the root, then deleted.

Each archive done is recorded in ROOT/.thaw-downloads/NAME/FILE.done, so a download stopped at any point (a
Ctrl-C, the studio's Cancel, a dropped connection) continues where it stopped: finished archives are skipped, a
partial one resumes from its .part file, an interrupted extraction starts over from the kept archive.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.fetch import (
    ChecksumError,
    DownloadStopped,
    OfflineError,
    StopFn,
    bring_it_yourself,
    fetch,
    offline,
    verify_md5,
)
from engine.data.sources.base import Archive, DataSource
from engine.data.unpack import unpack
from engine.errors import BadInputError, ThawError, UnwritableError

STATE_FOLDER = ".thaw-downloads"
SPACE_MARGIN = 1.05  # file systems round up; a set that barely fits fails half-way


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download is: archive `index` of `count`, in `stage` (fetch, verify, unpack), `done` of `total`
    bytes (0: unknown)."""

    source: str
    archive: str
    index: int
    count: int
    stage: str
    done: int = 0
    total: int = 0


@dataclass
class DownloadResult:
    source: str
    root: str
    already: bool = False  # it was on disk: nothing was fetched
    fetched: list[str] = field(default_factory=list)
    brought: list[str] = field(default_factory=list)  # archives the user put there, verified and used
    notes: list[str] = field(default_factory=list)


class NotEnoughSpaceError(BadInputError):
    pass


def download_source(source: DataSource, root: str | Path, progress: Callable[[DownloadProgress], None] | None = None,
                    should_stop: StopFn | None = None) -> DownloadResult:
    root = Path(root).expanduser().absolute()
    if source.archives is None:
        raise BadInputError(f"'{source.name}' is your own data: there is nothing to download")
    try:
        return _download(source, root, progress, should_stop)
    except ThawError:
        raise
    except OSError as exc:  # a root that cannot be written, a full disk: one line, never a traceback
        where = exc.filename or root
        raise UnwritableError(f"{source.name}: cannot write {where} ({exc.strerror or exc}); choose another --root "
                              f"or free some space, then run the same command again (what was fetched is kept)"
                              ) from exc


def _download(source: DataSource, root: Path, progress, should_stop: StopFn | None) -> DownloadResult:
    result = DownloadResult(source.name, str(root))
    if source.on_disk(root):
        result.already = True
        return result
    root.mkdir(parents=True, exist_ok=True)
    archives = source.archives()
    state = root / STATE_FOLDER / source.name
    pending = [a for a in archives if not (state / f"{a.filename}.done").exists()]
    check_free_space(source, root, archives, pending)
    for index, archive in enumerate(archives):
        if archive not in pending:
            continue
        _stop_point(should_stop, source.name)
        _one(source, root, archive, index, len(archives), result, progress, should_stop)
        state.mkdir(parents=True, exist_ok=True)
        (state / f"{archive.filename}.done").touch()
    if source.after_unpack is not None:
        source.after_unpack(root)
    if not source.on_disk(root):
        raise BadInputError(f"{source.name}: every archive was unpacked under {root} but {source.marker} is not "
                            f"there; the archives are not the ones the set ships")
    shutil.rmtree(state, ignore_errors=True)
    try:
        state.parent.rmdir()  # only when no other set's download is under way there
    except OSError:
        pass
    return result


def _one(source: DataSource, root: Path, archive: Archive, index: int, count: int, result: DownloadResult,
         progress, should_stop: StopFn | None) -> None:
    folder = root / archive.folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / archive.filename
    # An archive Thaw fetched on an earlier, stopped try is still Thaw's (deleted if damaged), not the user's.
    ours = root / STATE_FOLDER / source.name / f"{archive.filename}.fetched"

    def report(stage: str):
        return None if progress is None else (
            lambda done, total: progress(DownloadProgress(source.name, archive.filename, index, count, stage,
                                                          done, total)))

    brought = path.is_file() and not ours.exists()
    if not path.is_file():
        if archive.google_drive_id:
            _from_google_drive(archive, path)
        else:
            fetch(archive.url, path, report("fetch"), should_stop)
        ours.parent.mkdir(parents=True, exist_ok=True)
        ours.touch()
    (result.brought if brought else result.fetched).append(archive.filename)
    if archive.md5:
        try:
            verify_md5(path, archive.md5, report("verify"), should_stop)
        except ChecksumError as exc:
            if not brought:
                path.unlink(missing_ok=True)  # ours: the next try fetches it again
                ours.unlink(missing_ok=True)
                raise ChecksumError(f"{exc}; it was deleted: run the same command again to fetch it again") from exc
            raise ChecksumError(f"{exc}; that file was not written by Thaw, so it is kept: replace it with "
                                f"{archive.url}") from exc
    else:
        result.notes.append(f"torchvision publishes no checksum for {archive.filename}; only its length was checked")
    if progress:
        progress(DownloadProgress(source.name, archive.filename, index, count, "unpack"))
    unpack(path, folder, archive.unpack, should_stop)
    if archive.unpack != "none":
        path.unlink(missing_ok=True)  # unpacked: the archive would only double the space the set takes


def _from_google_drive(archive: Archive, path: Path) -> None:
    """torchvision's own Google Drive downloader (it needs gdown); no Range resume there."""
    if offline():
        raise OfflineError(f"offline (THAW_OFFLINE is set): cannot fetch {archive.url}; "
                           f"{bring_it_yourself(archive.url, path)}")
    import importlib.util

    if importlib.util.find_spec("gdown") is None:
        raise BadInputError(f"{archive.filename} is on Google Drive ({archive.url}), whose downloader needs gdown: "
                            f"pip install gdown, or {bring_it_yourself(archive.url, path)}")
    from torchvision.datasets.utils import download_file_from_google_drive

    try:
        download_file_from_google_drive(archive.google_drive_id, str(path.parent), filename=path.name)
    except Exception as exc:  # noqa: BLE001 - gdown raises its own types for quota and network failures
        raise OfflineError(f"cannot fetch {archive.url} ({exc}); {bring_it_yourself(archive.url, path)}") from exc


def check_free_space(source: DataSource, root: Path, archives: tuple[Archive, ...], pending: list[Archive]) -> None:
    """Refuse before fetching a byte when the archives still to fetch and the extracted set do not fit."""
    if not pending:
        return
    sizes = _sizes(source, archives)
    have = 0
    for archive in pending:
        path = root / archive.folder / archive.filename
        part = path.with_name(path.name + ".part")
        have += path.stat().st_size if path.is_file() else part.stat().st_size if part.is_file() else 0
    fetch_bytes = max(0, sum(sizes[a.filename] for a in pending) - have)
    share = sum(sizes[a.filename] for a in pending) / max(1, sum(sizes.values()))
    need = int((fetch_bytes + source.disk_bytes * share) * SPACE_MARGIN)
    free = shutil.disk_usage(root).free
    if need > free:
        raise NotEnoughSpaceError(f"{source.name} needs about {_gb(need)} free under {root} (download "
                                  f"{_gb(fetch_bytes)}, extracted {_gb(source.disk_bytes * share)}) but only "
                                  f"{_gb(free)} is free; free some space or choose another --root")


def _sizes(source: DataSource, archives: tuple[Archive, ...]) -> dict[str, int]:
    known = sum(a.size for a in archives)
    unknown = [a for a in archives if not a.size]
    rest = max(0, source.download_bytes - known) // max(1, len(unknown))
    return {a.filename: a.size or rest for a in archives}


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _stop_point(should_stop: StopFn | None, name: str) -> None:
    if should_stop and should_stop():
        raise DownloadStopped(f"{name}: stopped; run the same command again to continue")
