"""Training off the GUI thread: a worker that turns engine events into Qt signals, and the controller that owns
its QThread.

    TrainingController.start(recipe)          TrainingWorker (in its QThread)
        └─ QThread.started ──────────────────▶ run(): Trainer(...).fit(), engine events → signals
                                               back to the GUI thread; finished ─(direct)─▶ QThread.quit
        running_changed(False) ◀── QThread.finished (after wait(): the thread has really ended)

Payloads are plain values: each event's `to_dict()` (a dict), lists of those for batches, or a message string.
Per-batch events are coalesced to at most 4 emissions per second, every batch kept (the smoothed-loss curve
needs them all); any other event first flushes the pending batches, so the GUI sees the events in engine order.
Progress reports (weights download, feature computation) are thinned to the same rate, keeping the last one.
Stop and pause go through the engine's thread-safe RunControl: the engine stops between batches and writes a
checkpoint. The controller never terminates a thread; it waits for it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from engine.train import events as ev
from engine.errors import ThawError
from engine.recipe import Recipe
from engine.train.runs import runs_root_for as engine_runs_root_for
from engine.train.trainer import Trainer
from gui.workers.torch_threads import training_threads, use_torch_threads

log = logging.getLogger(__name__)

# The progress line redraws at most 4 times a second (gui/panels/training_panel.py), so batches are handed over at
# that rate: every hand-over wakes the GUI thread, which then competes with training for the GIL and the cores.
BATCH_EMIT_INTERVAL_S = 0.25
PROGRESS_EVENTS = (ev.WeightsDownloadProgress, ev.FeaturesProgressed)


def runs_root_for(recipe: Recipe) -> Path:
    """Where the runs of `recipe` are written (the engine's rule)."""
    return engine_runs_root_for(recipe.output_dir)


class TrainingWorker(QObject):
    """Runs one training run (new or resumed) when `run()` is called; lives in a QThread."""

    data_prepared = Signal(object)  # DataPrepared.to_dict()
    download_progressed = Signal(object)  # WeightsDownloadProgress.to_dict() (throttled, the latest only)
    cache_estimated = Signal(object)  # DecodedCacheEstimated.to_dict()
    cache_filled = Signal(object)  # DecodedCacheFilled.to_dict()
    run_started = Signal(object)  # RunStarted.to_dict()
    phase_started = Signal(object)  # PhaseStarted.to_dict()
    features_progressed = Signal(object)  # FeaturesProgressed.to_dict() (throttled, the latest only)
    features_cached = Signal(object)  # FeaturesCached.to_dict()
    batches_finished = Signal(object)  # list of BatchFinished.to_dict(), oldest first
    epoch_finished = Signal(object)  # EpochFinished.to_dict()
    checkpoint_saved = Signal(object)  # CheckpointSaved.to_dict()
    freeze_verified = Signal(object)  # FreezeVerified.to_dict()
    run_finished = Signal(object)  # RunFinished.to_dict(): run_dir, summary (status finished / early_stopped)
    run_stopped = Signal(object)  # RunStopped.to_dict(): run_dir, checkpoint, epoch, batch
    run_failed = Signal(str)  # a message a user can act on
    finished = Signal()  # always the last signal, whatever happened

    def __init__(self, recipe: Recipe | None = None, run_dir: str | Path | None = None,
                 runs_root: str | Path | None = None, batch_interval_s: float = BATCH_EMIT_INTERVAL_S):
        super().__init__()
        if (recipe is None) == (run_dir is None):
            raise ValueError("give either a recipe (a new run) or a run folder (to resume)")
        self._recipe = recipe.copy() if recipe is not None else None
        self._run_dir = Path(run_dir) if run_dir is not None else None
        self._runs_root = runs_root
        self._control = ev.RunControl()
        self._batch_interval_s = batch_interval_s
        self._pending_batches: list[dict] = []
        self._last_batch_emit = float("-inf")  # the first batch goes out at once
        self._last_progress_emit: dict[type, float] = {}
        self._trainer: Trainer | None = None
        self._home_thread = self.thread()  # where it was made (the GUI thread); it returns there after the run
        self._signals = {
            ev.DataPrepared: self.data_prepared, ev.WeightsDownloadProgress: self.download_progressed,
            ev.DecodedCacheEstimated: self.cache_estimated, ev.DecodedCacheFilled: self.cache_filled,
            ev.RunStarted: self.run_started, ev.PhaseStarted: self.phase_started,
            ev.FeaturesProgressed: self.features_progressed, ev.FeaturesCached: self.features_cached,
            ev.EpochFinished: self.epoch_finished, ev.CheckpointSaved: self.checkpoint_saved,
            ev.FreezeVerified: self.freeze_verified, ev.RunFinished: self.run_finished,
            ev.RunStopped: self.run_stopped,
        }

    # --- control (any thread) --------------------------------------------------------------------------------
    @property
    def control(self) -> ev.RunControl:
        return self._control

    def request_stop(self) -> None:
        self._control.request_stop()

    def pause(self) -> None:
        self._control.pause()

    def resume(self) -> None:
        self._control.resume()

    # --- the run (worker thread) -----------------------------------------------------------------------------
    @Slot()
    def run(self) -> None:
        use_torch_threads(training_threads())  # the one studio thread that runs torch with several
        try:
            if self._run_dir is not None:
                self._trainer = Trainer.from_run_dir(self._run_dir, [self._on_event], self._control)
            else:
                self._trainer = Trainer(self._recipe, [self._on_event], self._control, self._runs_root)
            self._trainer.fit()  # failures during the run arrive as a RunFailed event
        except ThawError as exc:  # bad input, found before the run started
            self._flush_batches()
            self.run_failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user, not kill the thread silently
            log.exception("training could not start")
            self._flush_batches()
            self.run_failed.emit(f"{type(exc).__name__}: {exc}")
        finally:
            self._flush_batches()
            self._trainer = None
            # Back to the GUI thread, so that the worker is deleted there, by Python, once released: a
            # deleteLater() flushed by the ending thread would race with that (a cross-thread double free).
            self.moveToThread(self._home_thread)
            self.finished.emit()

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.BatchFinished):
            self._pending_batches.append(event.to_dict())
            if time.monotonic() - self._last_batch_emit >= self._batch_interval_s:
                self._flush_batches()
            return
        if isinstance(event, PROGRESS_EVENTS) and not self._progress_due(event):
            return
        self._flush_batches()
        if isinstance(event, ev.RunFailed):
            self.run_failed.emit(event.error)
            return
        signal = self._signals.get(type(event))
        if signal is None:
            return  # EpochStarted / ValidationFinished: their facts arrive with EpochFinished
        signal.emit(event.to_dict())

    def _progress_due(self, event: ev.WeightsDownloadProgress | ev.FeaturesProgressed) -> bool:
        """Progress reports only need the latest value: at most one per interval, and always the last one."""
        done, total = ((event.done_bytes, event.total_bytes) if isinstance(event, ev.WeightsDownloadProgress)
                       else (event.done, event.total))
        now = time.monotonic()
        if done < total and now - self._last_progress_emit.get(type(event), float("-inf")) < self._batch_interval_s:
            return False
        self._last_progress_emit[type(event)] = now
        return True

    def _flush_batches(self) -> None:
        if self._pending_batches:
            batches, self._pending_batches = self._pending_batches, []
            self._last_batch_emit = time.monotonic()
            self.batches_finished.emit(batches)


class _RunThread(QObject):
    """One run's QThread and worker. Says `ended` once the thread has really finished (waited for).

    Lifetimes: the QThread is a Qt child of this object, which is a Qt child of the controller and is deleted
    with deleteLater() once ended; the worker is owned by Python and dropped on the GUI thread at release."""

    ended = Signal(object)  # self

    def __init__(self, worker: TrainingWorker, parent: QObject):
        super().__init__(parent)  # owned by Qt: deleted with deleteLater, never by Python's garbage collector
        self.worker = worker
        self.control = worker.control  # outlives the worker, which is deleted when its thread finishes
        self.qthread = QThread(self)
        self.qthread.setObjectName("trainingThread")
        worker.moveToThread(self.qthread)
        self.qthread.started.connect(worker.run)
        # Direct: quit() is thread-safe, and a queued call would wait for a GUI thread that may be blocked in
        # stop_and_wait().
        worker.finished.connect(self.qthread.quit, Qt.ConnectionType.DirectConnection)
        self.qthread.finished.connect(self._on_thread_finished)

    def start(self) -> None:
        self.qthread.start()

    @Slot()
    def _on_thread_finished(self) -> None:
        self.qthread.wait()  # `finished` is emitted just before the thread ends
        self.ended.emit(self)


class TrainingController(QObject):
    """Owns the training thread's lifecycle: one run at a time; start, resume, pause, stop, stop-and-wait.

    Re-emits the worker's signals (same names and payloads), so views connect once, not per run.
    """

    worker_created = Signal(object)  # the new TrainingWorker, before its thread starts
    running_changed = Signal(bool)  # True when a run's thread starts; False once it has ended
    paused_changed = Signal(bool)

    data_prepared = Signal(object)
    download_progressed = Signal(object)
    cache_estimated = Signal(object)
    cache_filled = Signal(object)
    run_started = Signal(object)
    phase_started = Signal(object)
    features_progressed = Signal(object)
    features_cached = Signal(object)
    batches_finished = Signal(object)
    epoch_finished = Signal(object)
    checkpoint_saved = Signal(object)
    freeze_verified = Signal(object)
    run_finished = Signal(object)
    run_stopped = Signal(object)
    run_failed = Signal(str)

    FORWARDED = ("data_prepared", "download_progressed", "cache_estimated", "cache_filled", "run_started",
                 "phase_started", "features_progressed", "features_cached", "batches_finished", "epoch_finished",
                 "checkpoint_saved", "freeze_verified", "run_finished", "run_stopped", "run_failed")

    def __init__(self, parent: QObject | None = None, runs_root: str | Path | None = None):
        super().__init__(parent)
        self._runs_root = runs_root
        self._run: _RunThread | None = None
        self._paused = False

    # --- state -------------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """A run's thread is alive (training, or saving its last checkpoint after a stop)."""
        return self._run is not None and self._run.qthread.isRunning()

    @property
    def is_paused(self) -> bool:
        return self.is_running and self._paused

    @property
    def worker(self) -> TrainingWorker | None:
        """The current run's worker (None between runs)."""
        return self._run.worker if self._run is not None else None

    # --- starting ------------------------------------------------------------------------------------------------
    def start(self, recipe: Recipe) -> bool:
        """Train `recipe` (a copy is taken). False when a run is already going."""
        return self._launch(TrainingWorker(recipe=recipe, runs_root=self._runs_root))

    def resume_run(self, run_dir: str | Path) -> bool:
        """Continue a stopped run from its last checkpoint. False when a run is already going."""
        return self._launch(TrainingWorker(run_dir=run_dir))

    def _launch(self, worker: TrainingWorker) -> bool:
        if self.is_running:
            return False
        if self._run is not None:
            self._release(self._run)  # ended, but its `ended` has not been delivered yet
        run = _RunThread(worker, self)
        for name in self.FORWARDED:
            getattr(worker, name).connect(getattr(self, name))
        run.ended.connect(self._on_run_ended)
        self._run = run
        self._set_paused(False)
        self.worker_created.emit(worker)
        run.start()
        self.running_changed.emit(True)
        return True

    # --- control (any thread: RunControl is thread-safe, and Qt signals may be emitted from any thread) ---------
    def pause(self) -> None:
        if self.is_running:
            self._run.control.pause()
            self._set_paused(True)

    def resume(self) -> None:
        if self._run is not None:
            self._run.control.resume()
        self._set_paused(False)

    def request_stop(self) -> None:
        """Stop cooperatively: the engine finishes the current batch and writes checkpoints/last.pt."""
        if self.is_running:
            self._run.control.request_stop()
            self._set_paused(False)

    def stop_and_wait(self, timeout_ms: int = 60_000) -> bool:
        """Stop the run and block until its thread has ended (for closing the app). True when no thread runs."""
        if not self.is_running:
            return True
        self.request_stop()
        ended = self._run.qthread.wait(timeout_ms)
        if not ended:
            log.error("the training thread did not stop within %d ms", timeout_ms)
        return ended

    def _set_paused(self, paused: bool) -> None:
        if paused != self._paused:
            self._paused = paused
            self.paused_changed.emit(paused)

    @Slot(object)
    def _on_run_ended(self, run: _RunThread) -> None:
        current = run is self._run
        self._release(run)
        if current:
            self._set_paused(False)
            self.running_changed.emit(False)

    def _release(self, run: _RunThread) -> None:
        run.qthread.wait()
        run.worker = None  # the last reference: the worker is deleted now, here on the GUI thread
        if run is self._run:
            self._run = None
        run.deleteLater()
