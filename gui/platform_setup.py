"""Process set-up that must happen before anything else runs: frozen (PyInstaller) builds and windowed starts.

`main.py` calls, in this order and before any other import of Thaw, torch or Qt:

    multiprocessing.freeze_support()       # a frozen DataLoader/multiprocessing child runs its task and exits here
    platform_setup.prepare_process()       # streams, frozen-build environment

What `prepare_process` does:
- **Streams.** A windowed build has no console: on Windows (`console=False`) and in a macOS .app, `sys.stdout`
  and `sys.stderr` are None, and tqdm, torch's download progress, `print` and `logging` crash or vanish. They are
  routed to a log file, `<user log dir>/thaw.log` (platformdirs.user_log_dir("Thaw"): `~/.local/state/Thaw/log`
  on Linux, `~/Library/Logs/Thaw` on macOS, `%LOCALAPPDATA%\\Thaw\\Logs` on Windows). On Windows a command
  started from a terminal (`Thaw.exe --self-test`, `Thaw.exe scan …`) first tries to attach to that terminal.
  Env THAW_LOG_TO_FILE=1 forces the log file also where streams exist (the Linux .desktop launcher sets it).
  The previous log is kept as thaw.log.1. faulthandler writes crashes to the same file.
- **Data loader workers.** In a frozen build, env THAW_MAX_WORKERS is set to 0 (unless the user set it), so the
  engine loads data in the main process: a worker of a frozen app is the bundle re-executed, which costs a full
  torch import per worker on spawn platforms (Windows, macOS) and fails if freeze_support was skipped.

This module imports only the standard library (platformdirs lazily) and engine/environment.py, so it is cheap and
safe to run first.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
from pathlib import Path

from engine.environment import MAX_WORKERS_ENV

APP_NAME = "Thaw"
LOG_FILE_NAME = "thaw.log"
LOG_TO_FILE_ENV = "THAW_LOG_TO_FILE"
FROZEN_ENV = "THAW_FROZEN"

_log_path: Path | None = None


def is_frozen() -> bool:
    """True inside a PyInstaller (or similar) bundle."""
    return bool(getattr(sys, "frozen", False))


def bundle_dir() -> Path | None:
    """The folder of the bundle's executable (dist/Thaw), or None when running from source."""
    return Path(sys.executable).resolve().parent if is_frozen() else None


def freeze_support() -> None:
    """multiprocessing.freeze_support(): in a frozen child process it runs the child's task and exits."""
    multiprocessing.freeze_support()


def log_dir() -> Path:
    """Where the windowed build writes thaw.log (the user's log folder for Thaw)."""
    try:
        import platformdirs

        return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
    except Exception:  # noqa: BLE001 - platformdirs missing or broken: a fixed, writable fallback
        return Path.home() / f".{APP_NAME.lower()}" / "logs"


def log_path() -> Path | None:
    """The log file the streams were routed to by prepare_process, or None if they were not."""
    return _log_path


def _stream_usable(stream) -> bool:
    if stream is None:
        return False
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        # pytest's capture and IDE consoles have no file descriptor but work; only None really breaks things
        return not getattr(stream, "closed", False)
    return True


def _attach_windows_console() -> bool:
    """Windows, windowed build started from a terminal: write to that terminal. False when there is none."""
    if sys.platform != "win32":
        return False
    try:
        import ctypes

        ATTACH_PARENT_PROCESS = -1  # noqa: N806 - the Win32 name
        if not ctypes.windll.kernel32.AttachConsole(ATTACH_PARENT_PROCESS):
            return False
        out = open("CONOUT$", "w", encoding="utf-8", errors="backslashreplace", buffering=1)  # noqa: SIM115
    except Exception:  # noqa: BLE001
        return False
    if sys.stdout is None:
        sys.stdout = out
    if sys.stderr is None:
        sys.stderr = out
    return True


def redirect_streams_to_log(force: bool = False, directory: Path | None = None) -> Path | None:
    """Route missing (None) stdout/stderr — or both, when `force` — to <log dir>/thaw.log. Returns its path,
    or None when nothing needed redirecting. Never raises: if no log file can be opened, the missing streams
    become a sink that discards, which is still better than None."""
    global _log_path
    missing = [name for name in ("stdout", "stderr") if not _stream_usable(getattr(sys, name))]
    if not missing and not force:
        return None
    if missing and not force and _attach_windows_console():
        missing = [name for name in ("stdout", "stderr") if not _stream_usable(getattr(sys, name))]
        if not missing:
            return None
    targets = ("stdout", "stderr") if force else tuple(missing)
    folder = directory or log_dir()
    path = folder / LOG_FILE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > 0:
            os.replace(path, path.with_name(LOG_FILE_NAME + ".1"))
        stream = open(path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)  # noqa: SIM115
    except OSError:
        stream, path = open(os.devnull, "w", encoding="utf-8"), None  # noqa: SIM115
    for name in targets:
        setattr(sys, name, stream)
        if getattr(sys, f"__{name}__") is None:
            setattr(sys, f"__{name}__", stream)  # tqdm and some libraries fall back to sys.__stderr__
    if path is not None:
        _log_path = path
        try:
            import faulthandler

            faulthandler.enable(stream)
        except (RuntimeError, ValueError, OSError):
            pass
        import datetime

        print(f"--- {APP_NAME} started {datetime.datetime.now().isoformat(timespec='seconds')} "
              f"(pid {os.getpid()}, {'frozen' if is_frozen() else 'source'}, argv {sys.argv[1:]!r}) ---",
              file=stream, flush=True)
    return path


def configure_frozen_environment() -> None:
    """Environment a frozen build needs before torch/Qt load. Does nothing from source."""
    if not is_frozen():
        return
    os.environ.setdefault(FROZEN_ENV, "1")
    os.environ.setdefault(MAX_WORKERS_ENV, "0")  # data loading in the main process; see the module docstring
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")


def prepare_process() -> None:
    """Everything main.py needs before it imports the rest of Thaw. Safe to call more than once."""
    force = os.environ.get(LOG_TO_FILE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    redirect_streams_to_log(force=force and _log_path is None)
    configure_frozen_environment()
