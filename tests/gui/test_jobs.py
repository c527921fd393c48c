"""The studio's one job lifecycle (gui/workers/jobs.py) and its device queue (gui/workers/job_board.py): progress,
partial results, result or failure, cancel, the queue's order, shutdown."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from engine.errors import BadInputError
from gui.jobs.board import job_board
from gui.jobs.progress_view import JobProgress
from gui.jobs.runner import IDLE, QUEUED, RUNNING, JobRunner

TIMEOUT_MS = 10_000


@pytest.fixture
def owner(qtbot) -> QWidget:
    widget = QWidget()
    qtbot.addWidget(widget)
    yield widget
    job_board().shutdown([r for r in widget.findChildren(JobRunner)])
    job_board().set_training(False)


def blocking_work(release: threading.Event, steps: list[int] | None = None):
    """Work that counts steps until it is cancelled or `release` is set (waits on an Event: no busy loop)."""

    def work(task):
        done = 0
        while not release.is_set():
            task.check()
            done += 1
            task.progress(done, 1000)
            if steps is not None:
                steps.append(done)
            release.wait(0.005)
        return done

    return work


def test_a_job_reports_progress_partial_results_and_its_result_then_is_idle(qtbot, owner):
    runner = JobRunner("count", "Count", owner)

    def work(task):
        for i in range(3):
            task.progress(i + 1, 3)
            task.progress(i + 1, 3)  # a repeat is not sent again
            task.partial(i)
        return "done"

    progressed, partial, results = [], [], []
    runner.progressed.connect(lambda done, total: progressed.append((done, total)))
    runner.partial_result_produced.connect(partial.append)
    runner.job_succeeded.connect(results.append)
    with qtbot.waitSignals([runner.job_succeeded, runner.job_finished], order="strict", timeout=TIMEOUT_MS):
        assert runner.start(work, "counting")
        assert runner.state == RUNNING and runner.is_busy
    assert results == ["done"]
    assert progressed == [(1, 3), (2, 3), (3, 3)] and partial == [0, 1, 2]
    assert runner.state == IDLE and not runner.is_busy  # a panel told of the end may start again at once
    assert runner.start(work)
    qtbot.waitSignal(runner.job_finished, timeout=TIMEOUT_MS).wait()


@pytest.mark.parametrize("error, message", [(BadInputError("no images in /x"), "no images in /x"),
                                            (ZeroDivisionError("division by zero"),
                                             "ZeroDivisionError: division by zero")])
def test_a_failing_job_reports_one_line(qtbot, owner, error, message):
    runner = JobRunner("failing", "Failing", owner)

    def work(task):
        raise error

    with qtbot.waitSignal(runner.job_failed, timeout=TIMEOUT_MS) as blocker:
        runner.start(work)
    assert blocker.args == [message]
    qtbot.waitUntil(lambda: not runner.is_busy)


def test_cancel_stops_a_running_job_at_its_next_step(qtbot, owner):
    runner = JobRunner("endless", "Endless", owner)
    release = threading.Event()
    succeeded = []
    runner.job_succeeded.connect(succeeded.append)
    with qtbot.waitSignal(runner.progressed, timeout=TIMEOUT_MS):
        runner.start(blocking_work(release))
    with qtbot.waitSignals([runner.job_cancelled, runner.job_finished], order="strict", timeout=TIMEOUT_MS):
        runner.cancel()
        assert runner.cancel_requested
    assert succeeded == [] and runner.state == IDLE and not release.is_set()


def test_device_jobs_wait_in_a_queue_that_can_be_reordered_and_cancelled(qtbot, owner):
    first, second, third = (JobRunner(name, name.capitalize(), owner, uses_device=True)
                            for name in ("first", "second", "third"))
    free = JobRunner("free", "Free", owner)  # competes for nothing: never waits
    progress = JobProgress(second)
    release = threading.Event()
    started: list[str] = []
    for runner in (first, second, third):
        runner.state_changed.connect(lambda state, r=runner: state == RUNNING and started.append(r.objectName()))

    with qtbot.waitSignal(first.progressed, timeout=TIMEOUT_MS):
        first.start(blocking_work(release), "first job")
    second.start(blocking_work(release), "second job")
    third.start(blocking_work(release), "third job")
    assert (first.state, second.state, third.state) == (RUNNING, QUEUED, QUEUED)
    assert job_board().queued() == [second, third]
    assert not progress.isHidden() and "waiting for the first to end (place 1 in the queue)" in progress.label.text()

    job_board().move(third, 1)  # the user moves the third job up
    assert job_board().queued() == [third, second]
    assert "place 2" in progress.label.text()
    with qtbot.waitSignal(free.job_finished, timeout=TIMEOUT_MS):
        free.start(lambda task: None)  # runs beside the device's holder

    with qtbot.waitSignal(second.job_cancelled, timeout=TIMEOUT_MS):
        qtbot.mouseClick(progress.cancelButton, Qt.MouseButton.LeftButton)  # a queued job leaves the queue
    assert second.state == IDLE and job_board().queued() == [third] and progress.isHidden()

    with qtbot.waitSignal(third.state_changed, check_params_cb=lambda state: state == RUNNING, timeout=TIMEOUT_MS):
        first.cancel()
    assert started == ["first", "third"]
    with qtbot.waitSignal(third.job_finished, timeout=TIMEOUT_MS):
        release.set()
    assert not job_board().device_busy


def test_a_training_run_holds_the_device(qtbot, owner):
    runner = JobRunner("estimateLike", "Estimate", owner, uses_device=True)
    progress = JobProgress(runner)
    job_board().set_training(True)
    runner.start(lambda task: "measured", "Estimating")
    assert runner.state == QUEUED and "waiting for the training run to end" in progress.label.text()
    with qtbot.waitSignal(runner.job_succeeded, timeout=TIMEOUT_MS) as blocker:
        job_board().set_training(False)
    assert blocker.args == ["measured"]


def test_shutdown_cancels_waits_and_refuses_new_jobs(qtbot, owner, no_thread_left_running):
    running = JobRunner("running", "Running", owner, uses_device=True)
    queued = JobRunner("queued", "Queued", owner, uses_device=True)
    release = threading.Event()
    steps: list[int] = []
    with qtbot.waitSignal(running.progressed, timeout=TIMEOUT_MS):
        running.start(blocking_work(release, steps))
    queued.start(blocking_work(release))

    job_board().shutdown([running, queued])

    assert running.state == IDLE and queued.state == IDLE and not job_board().queued()
    assert not any(t.isRunning() for t in no_thread_left_running)
    count = len(steps)
    assert not running.start(blocking_work(release, steps)) and len(steps) == count


def test_the_progress_line_says_how_long_a_step_takes_and_what_is_left(qtbot, owner, monkeypatch):
    """Issue 28: the LR finder gave no idea of its length (~15 s a step, up to 100 steps)."""
    import gui.jobs.progress_view as progress_view

    clock = iter([100.0, 115.0, 130.0])  # the GUI thread reads it once per count: 15 s a step
    monkeypatch.setattr(progress_view.time, "monotonic", lambda: next(clock))
    runner = JobRunner("sweepLike", "LR finder", owner)
    progress = JobProgress(runner, unit="step", total_is_bound=True)
    texts: list[str] = []
    bars: list[tuple[int, int]] = []
    runner.progressed.connect(lambda *_: texts.append(progress.label.text()))
    runner.progressed.connect(lambda *_: bars.append((progress.bar.value(), progress.bar.maximum())))

    def work(task):
        for done in (1, 2, 3):
            task.progress(done, 100)

    with qtbot.waitSignal(runner.job_finished, timeout=TIMEOUT_MS):
        runner.start(work, "Sweeping")
    assert texts == ["Sweeping: step 1 of 100", "Sweeping: step 2 of 100 · 15 s a step · at most 24:30 left",
                     "Sweeping: step 3 of 100 · 15 s a step · at most 24:15 left"]
    assert bars == [(1, 100), (2, 100), (3, 100)]
