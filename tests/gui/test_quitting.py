"""Quitting the studio while its long jobs run: every job is cancelled, the process exits 0 (issue 28, bug 1: Qt
aborted with SIGABRT, "QThread: Destroyed while thread 'lrFinderThread' is still running", when the studio quit
during a learning-rate sweep of a phase that trains the backbone). A real process: the abort happens at exit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


# Both jobs at once (the sweep of the bug, and the estimate beside it): one studio process, ~9 s of the suite, for
# what a process per job set would each show again.
@pytest.mark.parametrize("jobs", [["lr_finder", "estimate"]])
def test_quitting_during_long_jobs_cancels_them_and_exits_0(tmp_path, image_folder, isolated_settings, jobs):
    out = subprocess.run([sys.executable, "-m", "tests.gui.quit_while_busy", str(image_folder),
                          str(tmp_path / "runs"), *jobs], cwd=ROOT, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                         capture_output=True, text=True, timeout=300)
    assert "job running: quitting" in out.stdout, out.stdout + out.stderr  # the quit landed mid-job
    assert out.returncode == 0, out.stderr
    assert "QThread: Destroyed" not in out.stderr and "Traceback" not in out.stderr, out.stderr
