"""Training off the GUI thread: a worker that forwards the engine's own event objects to the GUI thread, and the
controller that owns its thread.

    TrainingController.start(recipe)          TrainingWorker (in its WorkerThread)
        └─ thread started ───────────────────▶ run(): fit_and_evaluate(Trainer(...)); each engine event →
                                               event_emitted(event)  or  batches_finished([BatchFinished, …])
        running_changed(False) ◀── thread finished (after wait(): the thread has really ended)

The events are the engine's frozen dataclasses (engine/train/events.py), declared once: views dispatch on their
type. Per-batch events are coalesced to at most 4 emissions a second, every batch kept (the smoothed-loss curve
needs them all); any other event first flushes the pending batches, so the GUI sees the events in engine order.
Progress reports (weights download, feature computation, a head's fit) are thinned to the same rate, keeping the
last one.
A run that cannot start (bad input) ends with a RunFailed event like any other failure.
Stop and pause go through the engine's thread-safe RunControl: the engine stops between batches and writes a
checkpoint. The controller never terminates a thread; it waits for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from engine.errors import ThawError
from engine.infer.fit_and_evaluate import fit_and_evaluate
from engine.recipe import Recipe
from engine.train import events as ev
from engine.train.launch import recorded_processes
from engine.train.trainer import Trainer
from gui.start_checks import studio_error_text
from gui.workers.event_forwarder import BATCH_EMIT_INTERVAL_S, EventForwarder
from gui.workers.threads import WorkerThread
from gui.workers.torch_threads import training_threads, use_torch_threads
from gui.workers.training_process import ProcessTrainingWorker

log = logging.getLogger(__name__)

TERMINATE_WAIT_MS = 40_000  # torchrun gives its workers 30 s to end after SIGTERM before it kills them


class TrainingWorker(EventForwarder):
    """Runs one training run (new, or resumed from a run folder) in this process when `run()` is called; lives in
    a QThread."""

    def __init__(self, recipe: Recipe | None = None, run_dir: str | Path | None = None,
                 runs_root: str | Path | None = None, batch_interval_s: float = BATCH_EMIT_INTERVAL_S):
        super().__init__(recipe, run_dir, runs_root, batch_interval_s)
        self.control = ev.RunControl()

    @Slot()
    def run(self) -> None:
        use_torch_threads(training_threads())  # the one studio thread that runs torch with several
        try:
            if self._run_dir is not None:
                self.trainer = trainer = Trainer.from_run_dir(self._run_dir, [self._on_event], self.control)
            else:
                self.trainer = trainer = Trainer(self._recipe, [self._on_event], self.control, self._runs_root)
            # A finished run's best checkpoint is evaluated (evaluation.json) before the thread ends, as the CLI
            # does; failures during the run arrive as a RunFailed event.
            fit_and_evaluate(trainer)
        except ThawError as exc:  # bad input, found before the run started: said in the studio's words
            recipe = self.trainer.recipe if self.trainer is not None else self._recipe
            self._on_event(ev.RunFailed(run_dir="", error=studio_error_text(exc, recipe.model.arch if recipe else ""),
                                        checkpoint=""))
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user, not kill the thread silently
            log.exception("training could not start")
            self._on_event(ev.RunFailed(run_dir="", error=f"{type(exc).__name__}: {exc}", checkpoint=""))
        finally:
            self._return_home()


class TrainingController(QObject):
    """Owns the training thread's lifecycle: one run at a time; start, continue a stopped run, pause, unpause, stop,
    stop-and-wait. Re-emits the worker's two signals, so views connect once, not per run."""

    worker_created = Signal(object)  # the new worker (TrainingWorker or ProcessTrainingWorker), before it starts
    running_changed = Signal(bool)  # True when a run's thread starts; False once it has ended
    paused_changed = Signal(bool)
    event_emitted = Signal(object)  # an engine event
    batches_finished = Signal(object)  # list[ev.BatchFinished]

    def __init__(self, parent: QObject | None = None, runs_root: str | Path | None = None):
        super().__init__(parent)
        self._runs_root = runs_root
        self._thread: WorkerThread | None = None
        self._worker: EventForwarder | None = None
        self._control: ev.RunControl | None = None  # outlives the worker, which is deleted when its run ends
        self._paused = False
        # One-device runs in a child process too (the studio's setting); several processes always are.
        self.separate_process = False

    # --- state -------------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """A run's thread is alive (training, or saving its last checkpoint after a stop)."""
        return self._thread is not None and self._thread.is_running

    @property
    def is_paused(self) -> bool:
        return self.is_running and self._paused

    @property
    def worker(self) -> EventForwarder | None:
        """The current run's worker (None between runs)."""
        return self._worker

    # --- starting ------------------------------------------------------------------------------------------------
    def start(self, recipe: Recipe) -> bool:
        """Train `recipe` (a copy is taken). False when a run is already going. A recipe for several processes
        runs as a torchrun process group (gui/workers/training_process.py), a one-process one in this process's
        training thread unless `separate_process`."""
        if self.is_running:
            return False
        processes = recipe.distributed.processes
        if processes > 1 or self.separate_process:
            return self._launch(ProcessTrainingWorker(processes, recipe=recipe, runs_root=self._runs_root))
        return self._launch(TrainingWorker(recipe=recipe, runs_root=self._runs_root))

    def continue_run(self, run_dir: str | Path) -> bool:
        """Resume a stopped run from its last checkpoint, with as many processes as it last used. False when a
        run is already going."""
        if self.is_running:
            return False
        processes = recorded_processes(run_dir)
        if processes > 1 or self.separate_process:
            return self._launch(ProcessTrainingWorker(processes, run_dir=run_dir))
        return self._launch(TrainingWorker(run_dir=run_dir))

    def _launch(self, worker: EventForwarder) -> bool:
        if self.is_running:
            return False
        if self._thread is not None:
            self._release()  # ended, but its `finished` has not been delivered yet
        worker.event_emitted.connect(self.event_emitted)
        worker.batches_finished.connect(self.batches_finished)
        self._worker, self._control = worker, worker.control
        self._thread = thread = WorkerThread("trainingThread", [worker], job=worker.run, done=worker.finished)
        thread.qthread.finished.connect(self._on_thread_finished)
        self._set_paused(False)
        self.worker_created.emit(worker)
        thread.start()
        self.running_changed.emit(True)
        return True

    # --- control (any thread: RunControl is thread-safe, and Qt signals may be emitted from any thread) ---------
    def pause(self) -> None:
        if self.is_running:
            self._control.pause()
            self._set_paused(True)

    def unpause(self) -> None:
        if self._control is not None:
            self._control.unpause()
        self._set_paused(False)

    def request_stop(self) -> None:
        """Stop cooperatively: the engine finishes the current batch and writes checkpoints/last.pt."""
        if self.is_running:
            self._control.request_stop()
            self._set_paused(False)

    def stop_and_wait(self, timeout_ms: int = 60_000) -> bool:
        """Stop the run and block until its thread has ended (for closing the app). True when no thread runs."""
        if not self.is_running:
            return True
        self.request_stop()
        ended = self._thread.wait(timeout_ms)
        if not ended and self._worker is not None:
            log.error("the training run did not stop within %d ms: terminating its processes", timeout_ms)
            self._worker.terminate()
            ended = self._thread.wait(TERMINATE_WAIT_MS)
        if not ended:
            log.error("the training thread did not stop within %d ms", timeout_ms)
        return ended

    def _set_paused(self, paused: bool) -> None:
        if paused != self._paused:
            self._paused = paused
            self.paused_changed.emit(paused)

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._thread is None or self._thread.is_running:
            return  # an earlier run's late notice, already released
        self._release()
        self._set_paused(False)
        self.running_changed.emit(False)

    def _release(self) -> None:
        self._thread.wait()  # `finished` is emitted just before the thread ends
        self._worker = None  # the last reference: the worker is deleted now, here on the GUI thread
        self._thread = None

