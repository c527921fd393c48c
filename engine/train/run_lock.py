"""One run, one process: a run folder is locked while a process trains it.

The lock is the operating system's (`fcntl.flock` on POSIX, `msvcrt.locking` on Windows) on `run.lock` in
the run folder, which also holds the holder's pid for the message a second process gets ("already running
(pid 1234)"). The kernel releases it when the holder exits, however it exits (kill -9, power loss), so a
summary left saying "running" with no lock held is a dead run: `run_is_live` tells the two apart.

Why not the `filelock` package: it opens the lock file with O_TRUNC on every attempt, so a second process
would erase the holder's pid before failing to lock. The lock file is never deleted (deleting it would let a
process that opened the old file and a newer one both "hold" the lock).

Re-entrant within a process: the CLI locks a run it resumes and the trainer locks the run it opens; the
second acquisition in the same process only counts.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BadInputError, RunLockedError

LOCK_FILE = "run.lock"
_WINDOWS_LOCK_OFFSET = 1 << 30  # msvcrt locks are mandatory byte ranges: lock one far past the pid text


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[str, _Held] = {}  # real path of the run folder → this process's lock on it
_registry = threading.Lock()


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def _try_lock(fd: int, shared: bool = False) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class RunLock:
    """`with RunLock(run_dir):` — held until the block ends; RunLockedError when another process holds it."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._acquired = False

    def acquire(self) -> RunLock:
        if self._acquired:
            return self
        key = _key(self.run_dir)
        with _registry:
            held = _held.get(key)
            if held is not None:
                held.count += 1
                self._acquired = True
                return self
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise BadInputError(f"cannot lock run folder {self.run_dir}: {exc.strerror or exc} "
                                    f"(a run folder must be writable)") from None
            if not _try_lock(fd):
                pid = _read_pid(fd)
                os.close(fd)
                raise RunLockedError(str(self.run_dir), pid)
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            except OSError:
                pass  # the lock holds without the pid; a second process then says "another process"
            _held[key] = _Held(fd, 1)
            self._acquired = True
        return self

    def release(self) -> None:
        if not self._acquired:
            return
        self._acquired = False
        key = _key(self.run_dir)
        with _registry:
            held = _held.get(key)
            if held is None:
                return
            held.count -= 1
            if held.count:
                return
            del _held[key]
            try:
                os.ftruncate(held.fd, 0)
            except OSError:
                pass
            try:
                _unlock(held.fd)
            finally:
                os.close(held.fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_is_live(run_dir: str | Path) -> bool:
    """True while some process (this one included) holds the run folder's lock."""
    run_dir = Path(run_dir)
    with _registry:
        if _key(run_dir) in _held:
            return True
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR if sys.platform == "win32" else os.O_RDONLY)
    except OSError:
        return False  # no lock file: never locked (or not readable, which no live run allows)
    try:
        if _try_lock(fd, shared=True):
            _unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


def lock_holder(run_dir: str | Path) -> int | None:
    """The pid of the process training the run, or None when it is not live."""
    run_dir = Path(run_dir)
    if not run_is_live(run_dir):
        return None
    with _registry:
        if _key(run_dir) in _held:
            return os.getpid()
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)
