"""Training in child processes: `train --processes N` and the studio start torchrun (torch.distributed.run) with N
workers — or, for the studio's "separate process" setting, one plain child — and talk to rank 0 through a folder.

    launcher (CLI or studio)                         rank 0 (engine/cli/train.py, THAW_CHANNEL set)
      control  ── "run" / "pause" / "stop" ──▶        ControlWatcher → RunControl (agreed by all ranks)
      events.jsonl ◀── one JSON line per event ──     EventStream (a view subscriber), then {"exit_code": …}
      logs/…/attempt_0/<rank>/stderr.log ◀──          every rank's stdout and stderr (torchrun --redirects 3)

Why files and not a pipe: torchrun starts every worker with the same stdout and closes other descriptors, so a pipe
to rank 0 alone does not exist; a file rank 0 appends to (and flushes per event) is read by the launcher as it
grows, works on every platform, and cannot be interleaved by another rank's output. The control file is polled by
a thread in rank 0 every CONTROL_POLL_S; the same thread stops the run (with a checkpoint) if the launcher dies, so
no run outlives its studio unseen.

The children run in a session of their own: a Ctrl-C in the terminal reaches the launcher only, which asks rank 0 to
stop after the batch (a second Ctrl-C terminates torchrun, which terminates the workers). The launcher's exit code
is rank 0's (`{"exit_code": …}`); when rank 0 ends without one (killed, crashed), the run failed and the first
rank's error found in the logs says why.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from engine.train import events as ev

log = logging.getLogger(__name__)

CHANNEL_ENV = "THAW_CHANNEL"  # the folder a launcher and rank 0 talk through
LAUNCHER_PID_ENV = "THAW_LAUNCHER_PID"
EVENTS_FILE = "events.jsonl"
CONTROL_FILE = "control"
LOGS_DIR = "logs"
CONTROL_POLL_S = 0.1
READ_POLL_S = 0.05
COMMANDS = ("run", "pause", "stop")


def launched_channel() -> Path | None:
    """The channel folder when this process was started by a launcher (CLI `--processes` or the studio)."""
    value = os.environ.get(CHANNEL_ENV)
    return Path(value) if value else None


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def entry_command() -> list[str]:
    """How a child starts Thaw's CLI: main.py from a checkout, the `engine.cli` module from an installed package."""
    main = Path(__file__).resolve().parents[2] / "main.py"
    return [str(main)] if main.is_file() else ["-m", "engine.cli"]


TORCHRUN_FLAG = "--torchrun"  # `Thaw --torchrun ARGS…` is torchrun inside a packaged app (main.py)


def frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def child_command(argv: list[str]) -> list[str]:
    """How a child process runs Thaw with `argv`: the bundle's executable itself in a packaged app (it has no
    `python`), else this Python with main.py or the engine.cli module."""
    return [sys.executable, *argv] if frozen() else [sys.executable, "-u", *entry_command(), *argv]


def torchrun_command(processes: int, torchrun_args: list[str], argv: list[str]) -> list[str]:
    """torchrun (torch.distributed.run) with `processes` workers, each running Thaw with `argv`. A packaged app has
    no `python -m`: it runs torchrun itself (`Thaw --torchrun`, main.py) and has torchrun start the executable as
    each worker (`--no-python`)."""
    options = ["--standalone", f"--nproc-per-node={processes}", *torchrun_args]
    if frozen():
        return [sys.executable, TORCHRUN_FLAG, *options, "--no-python", sys.executable, *argv]
    return [sys.executable, "-m", "torch.distributed.run", *options, *entry_command(), *argv]


def run_torchrun(args: list[str]) -> int:
    """`Thaw --torchrun ARGS…`: torch.distributed.run's own main; a failed worker is one line, never a traceback."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(args)
    except ChildFailedError as exc:
        print(f"error: a training process failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


def check_can_launch(processes: int) -> None:
    """Kept for the callers: every build can launch now (a packaged app runs torchrun itself, see torchrun_command)."""
    if processes < 1:
        raise BadInputError(f"cannot start {processes} training processes")


# --- rank 0's side -------------------------------------------------------------------------------------------

class EventStream:
    """A view subscriber writing every event as one JSON line (Event.to_dict) to the channel's events file."""

    def __init__(self, channel: Path):
        self.path = channel / EVENTS_FILE
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        self._write(event.to_dict())

    def write_exit(self, code: int, error: str = "") -> None:
        self._write({"exit_code": int(code), "error": error})

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class ControlWatcher:
    """Rank 0's thread applying the launcher's commands to the run's RunControl; a launcher that is gone stops the
    run (cooperatively: a checkpoint is written)."""

    def __init__(self, channel: Path, control: ev.RunControl, launcher_pid: int | None = None):
        self.path = channel / CONTROL_FILE
        self.control = control
        self.launcher_pid = launcher_pid
        self._seen: tuple[int, int] | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="thaw-control", daemon=True)

    def start(self) -> ControlWatcher:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=2)

    def _watch(self) -> None:
        while not self._done.wait(CONTROL_POLL_S):
            self.check()

    def check(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._seen:
                self._seen = stamp
                self.apply(self.path.read_text(encoding="utf-8").strip())
        except OSError:
            pass  # not written yet
        if self.launcher_pid and not _alive(self.launcher_pid):
            log.warning("the launcher (pid %d) is gone: stopping the run with a checkpoint", self.launcher_pid)
            self.control.request_stop()

    def apply(self, command: str) -> None:
        if command == "stop":
            self.control.request_stop()
        elif command == "pause":
            self.control.pause()
        elif command == "run":
            self.control.unpause()


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap check without psutil; the launcher's stop still arrives through the control file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the launcher's side -------------------------------------------------------------------------------------

@dataclass
class ExitRecord:
    """Rank 0's last line: its command's exit code and, for an error before the run, the message."""

    code: int
    error: str = ""


class ProcessRun:
    """One training command (`train RECIPE …` or `resume RUN …`) in child processes: torchrun with `processes`
    workers, or one plain child for processes == 1."""

    def __init__(self, argv: list[str], processes: int, channel: Path | None = None):
        check_can_launch(processes)
        self.argv = list(argv)
        self.processes = processes
        self.channel = Path(channel) if channel else Path(tempfile.mkdtemp(prefix="thaw-run-"))
        self.channel.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.exit: ExitRecord | None = None
        self._launcher_log = None

    @property
    def command(self) -> list[str]:
        if self.processes == 1:
            return child_command(self.argv)
        return torchrun_command(self.processes, ["--redirects=3", f"--log-dir={self.channel / LOGS_DIR}",
                                                 "--monitor-interval=0.2"], self.argv)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env[CHANNEL_ENV] = str(self.channel)
        env[LAUNCHER_PID_ENV] = str(os.getpid())
        # torchrun sets OMP_NUM_THREADS=1 when it is unset: a CPU run would use one core per process. Share them.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.processes)))
        env.setdefault("PYTHONIOENCODING", "utf-8")
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(key, None)  # a launcher inside a torchrun worker must not pass its own rank on
        return env

    def start(self) -> ProcessRun:
        if not (self.channel / CONTROL_FILE).exists():  # a command sent before the start stands
            (self.channel / CONTROL_FILE).write_text("run", encoding="utf-8")
        (self.channel / EVENTS_FILE).touch()
        logs = self.channel / LOGS_DIR
        if self.processes == 1:  # the same layout as torchrun's --redirects, so failures are read one way
            own = logs / "single" / "attempt_0" / "0"
            own.mkdir(parents=True, exist_ok=True)
            stdout, stderr = (own / "stdout.log").open("w"), (own / "stderr.log").open("w")
        else:
            logs.mkdir(parents=True, exist_ok=True)
            stdout = stderr = (logs / "launcher.log").open("w")
        kwargs: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        self.proc = subprocess.Popen(self.command, env=self.environment(), stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=stderr, **kwargs)
        stdout.close()
        if stderr is not stdout:
            stderr.close()
        return self

    # --- control -------------------------------------------------------------------------------------------------
    def send(self, command: str) -> None:
        if command not in COMMANDS:
            raise ValueError(command)
        path = self.channel / CONTROL_FILE
        tmp = path.with_name(f"{CONTROL_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")  # any thread may send
        tmp.write_text(command, encoding="utf-8")
        os.replace(tmp, path)

    def pause(self) -> None:
        self.send("pause")

    def unpause(self) -> None:
        self.send("run")

    def request_stop(self) -> None:
        self.send("stop")

    def terminate(self) -> None:
        """Abort: SIGTERM to torchrun (which terminates its workers) or to the single child."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        except ProcessLookupError:
            pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- what comes back ---------------------------------------------------------------------------------------
    def events(self, poll_s: float = READ_POLL_S) -> Iterator[ev.Event]:
        """Rank 0's events as they are written, until the children have ended and the file is read to its end.
        The exit record is kept in `self.exit`."""
        assert self.proc is not None, "start() first"
        with (self.channel / EVENTS_FILE).open("r", encoding="utf-8") as f:
            pending = ""
            while True:
                chunk = f.readline()
                if chunk:
                    pending += chunk
                    if not pending.endswith("\n"):
                        continue  # a line being written: wait for its end
                    line, pending = pending, ""
                    event = self._parse(line)
                    if event is not None:
                        yield event
                    continue
                if self.proc.poll() is not None:
                    rest = f.read()
                    for line in (pending + rest).splitlines():
                        event = self._parse(line)
                        if event is not None:
                            yield event
                    return
                try:
                    self.proc.wait(timeout=poll_s)
                except subprocess.TimeoutExpired:
                    pass

    def _parse(self, line: str) -> ev.Event | None:
        line = line.strip()
        if not line:
            return None
        try:
            record = json.loads(line)
            if "exit_code" in record:
                self.exit = ExitRecord(int(record["exit_code"]), str(record.get("error", "")))
                return None
            return ev.event_from_dict(record)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable event line from rank 0 (%s): %.200s", exc, line)
            return None

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def failure_text(self) -> str:
        """Why the children ended without rank 0's result: the first error line of the rank that failed first
        (its stderr log), or torchrun's / the child's exit status."""
        lines = first_errors(self.channel / LOGS_DIR)
        status = self.proc.returncode if self.proc is not None else None
        how = f"exit status {status}" if status is not None and status >= 0 else \
            f"killed by signal {-status}" if status is not None else "not started"
        if lines:
            return f"a training process ended without finishing the run ({how}): {lines[0]}"
        return f"the training processes ended without finishing the run ({how}); nothing was logged"

    def cleanup(self) -> None:
        shutil.rmtree(self.channel, ignore_errors=True)


ERROR_MARKERS = ("[rank ", "error:", "Error:", "Error", "Traceback")


def first_errors(logs: Path) -> list[str]:
    """The error lines every rank's stderr log holds, the earliest written log first (rank 0's fallout comes after
    the rank that failed): "[rank 1] the run failed: …", "error: …", or a traceback's last line."""
    files = sorted(logs.glob("*/attempt_*/*/stderr.log"), key=lambda p: (p.stat().st_mtime, p.parent.name))
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            continue
        rank = path.parent.name
        picked = _error_line(text)
        if picked:
            found.append(picked if picked.startswith("[rank ") else f"[rank {rank}] {picked}")
    return found


def _error_line(lines: list[str]) -> str:
    for line in lines:
        if line.startswith("[rank ") or line.startswith("error: "):
            return line
    if any(line.startswith("Traceback") for line in lines):
        last = next((line for line in reversed(lines) if line and not line.startswith(" ")), "")
        return last
    return ""


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def recorded_processes(run_dir: str | Path) -> int:
    """How many processes a run folder's last session used (its recipe.json records it); 1 when unknown."""
    recipe = read_json(Path(run_dir) / "recipe.json")
    try:
        return max(1, int(recipe.get("distributed", {}).get("processes", 1)))
    except (TypeError, ValueError, AttributeError):
        return 1
