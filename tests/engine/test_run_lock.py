"""One run, one process: the run folder's lock refuses a second process with the holder's pid, is released by
the kernel when the holder is killed (kill -9), and tells a dead "running" run from a live one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import BadInputError, RunLockedError
from engine.train.run_lock import LOCK_FILE, RunLock, lock_holder, run_is_live
from engine.train.runs import RunRecord

ROOT = Path(__file__).parents[2]

HOLDER = (
    "import sys; from engine.train.run_lock import RunLock; "
    "lock = RunLock(sys.argv[1]).acquire(); print('locked', flush=True); sys.stdin.read()"
)


def _run_folder(tmp_path: Path, status: str = "running") -> Path:
    run = tmp_path / "20260101-000000-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps({"name": "run", "model": {"arch": "resnet18"}}))
    (run / "summary.json").write_text(json.dumps({"status": status}))
    # A run with a checkpoint: a dead one is "interrupted" (resumable); without one it is marked failed (issue 22).
    (run / "checkpoints" / "last.pt").write_bytes(b"placeholder")
    return run


def test_lock_is_reentrant_in_one_process_and_released_at_the_end(tmp_path):
    run = _run_folder(tmp_path)
    assert not run_is_live(run) and lock_holder(run) is None
    with RunLock(run):
        with RunLock(run):  # the CLI and the trainer may both take it
            assert run_is_live(run) and lock_holder(run) == os.getpid()
        assert run_is_live(run)  # the outer holder still has it
        assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not run_is_live(run)
    assert RunRecord.load(run).status == "interrupted"  # "running", lock file, nobody holds it


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")
def test_a_second_process_is_refused_and_kill_9_frees_the_run(tmp_path):
    run = _run_folder(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        assert run_is_live(run) and lock_holder(run) == child.pid
        record = RunRecord.load(run)
        assert record.status == "running" and record.live
        with pytest.raises(RunLockedError, match=rf"is already running \(pid {child.pid}\); wait for it"):
            RunLock(run).acquire()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not run_is_live(run)
    record = RunRecord.load(run)
    assert record.status == "interrupted" and not record.live
    with RunLock(run):  # the kernel released it: the run can be resumed
        assert lock_holder(run) == os.getpid()


def test_a_run_without_a_lock_file_keeps_its_status(tmp_path):
    """Runs written before the lock existed (or by a trainer that does not take it) are not called dead."""
    run = _run_folder(tmp_path)
    assert RunRecord.load(run).status == "running"
    finished = _run_folder(tmp_path / "other", status="finished")
    with RunLock(finished):
        pass
    assert RunRecord.load(finished).status == "finished"


def test_a_folder_that_cannot_hold_a_lock_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="cannot lock run folder .*missing: No such file or directory"):
        RunLock(tmp_path / "missing").acquire()
