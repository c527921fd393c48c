"""Fetch one file over HTTP(S), resumably: bytes go to FILE.part, and a later call asks the server for the rest
(an HTTP Range request). A server that ignores Range sends the whole file again, which is written from the start.
Only when every byte has arrived is FILE.part renamed to FILE, so FILE is never a partial download.

`THAW_OFFLINE=1`, or a network that cannot reach the server, raises OfflineError: one line naming the URL and the
path where an archive downloaded elsewhere is picked up.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engine.errors import BadInputError, ThawError

CHUNK = 1 << 16
TIMEOUT_S = 30
ProgressFn = Callable[[int, int], None]  # (bytes done, bytes in all; 0 when the server does not say)
StopFn = Callable[[], bool]


class OfflineError(BadInputError):
    """The file cannot be fetched from here (offline, or no route to its server)."""


class DownloadError(ThawError):
    """The server answered, but not with the file (an HTTP error, a connection dropped mid-file)."""


class DownloadStopped(ThawError):
    """Stopped on request; the bytes fetched so far are kept in FILE.part for the next try."""


class ChecksumError(BadInputError):
    """A file's MD5 is not the published one."""


def offline() -> bool:
    return os.environ.get("THAW_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def bring_it_yourself(url: str, target: Path) -> str:
    """The second half of every can't-fetch message (the first names `url`): where a copy from elsewhere goes."""
    return f"download it elsewhere and put it at {target}, then run the same command again"


def fetch(url: str, target: Path, progress: ProgressFn | None = None, should_stop: StopFn | None = None,
          timeout: float = TIMEOUT_S) -> None:
    target = Path(target)
    if offline():
        raise OfflineError(f"offline (THAW_OFFLINE is set): cannot fetch {url}; {bring_it_yourself(url, target)}")
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "Thaw (torchvision dataset download)"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have and _complete(exc.headers.get("Content-Range", ""), have):
            os.replace(part, target)  # every byte was already there
            return
        if exc.code == 416 and have:
            part.unlink(missing_ok=True)  # the part is longer than the file: start over (without a Range, once)
            return fetch(url, target, progress, should_stop, timeout)
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}; "
                            f"{bring_it_yourself(url, target)}") from exc
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OfflineError(f"no network: cannot reach {url} ({reason}); {bring_it_yourself(url, target)}") from exc
    with response:
        resumed = have and response.status == 206 and _range_start(response.headers.get("Content-Range", "")) == have
        if not resumed:
            have = 0  # the server sends the whole file (it ignored Range, or there was nothing to resume)
        length = int(response.headers.get("Content-Length") or 0)
        total = have + length if length else 0
        _copy(response, part, have, total, url, target, progress, should_stop)
    got = part.stat().st_size
    if total and got != total:
        raise DownloadError(f"{url}: the connection ended after {got} of {total} bytes; run the same command again "
                            f"to fetch the rest")
    os.replace(part, target)


def _copy(response, part: Path, have: int, total: int, url: str, target: Path, progress: ProgressFn | None,
          should_stop: StopFn | None) -> None:
    done = have
    try:
        with open(part, "ab" if have else "wb") as out:
            if progress:
                progress(done, total)
            while True:
                if should_stop and should_stop():
                    raise DownloadStopped(f"stopped after {done} bytes of {url}; {part.name} is kept: run the same "
                                          f"command again to resume")
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (TimeoutError, ConnectionError, urllib.error.URLError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: the connection dropped after {done} bytes ({exc}); {part.name} is kept: run "
                            f"the same command again to resume") from exc


def _range_start(content_range: str) -> int:
    match = re.match(r"bytes (\d+)-", content_range.strip())
    return int(match.group(1)) if match else -1


def _complete(content_range: str, have: int) -> bool:
    match = re.match(r"bytes \*/(\d+)", content_range.strip())
    return bool(match) and int(match.group(1)) == have


def md5_of(path: Path, progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    total, done = path.stat().st_size, 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            if should_stop and should_stop():
                raise DownloadStopped(f"stopped while checking {path.name}; run the same command again")
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def verify_md5(path: Path, md5: str, progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> None:
    got = md5_of(path, progress, should_stop)
    if got != md5.lower():
        raise ChecksumError(f"{path.name} is damaged or not the published file: its MD5 is {got}, expected {md5} "
                            f"(at {path})")
