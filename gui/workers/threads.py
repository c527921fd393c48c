"""The worker thread of a panel: started on first use, stopped on shutdown or when the panel is deleted."""

from __future__ import annotations

import functools

import shiboken6
from PySide6.QtCore import QObject, QThread  # noqa: F401 - QThread is the returned type

from gui.workers.torch_threads import OneTorchThreadQThread


def start_worker_thread(owner: QObject, name: str, cancellable: QObject, *workers: QObject) -> QThread:
    """Move the workers to a new running thread. If `owner` is deleted without stopping it, the thread is still
    stopped: Qt aborts on a running QThread's destruction. The partial holds the thread, not the owner, so it can
    run after the owner is gone."""
    thread = OneTorchThreadQThread()
    thread.setObjectName(name)
    for worker in workers:
        worker.moveToThread(thread)
    thread.start()
    owner.destroyed.connect(functools.partial(stop_worker_thread, thread, cancellable))
    return thread


def stop_worker_thread(thread: QThread, worker: QObject, *_args) -> None:
    """Cancel the worker's current job (it stops at its next progress report or batch), then end the thread."""
    if not shiboken6.isValid(thread):
        return  # already stopped and deleted (at interpreter exit, after shutdown())
    worker.cancel()
    thread.quit()
    thread.wait()
