"""What every training worker shares: the engine's events forwarded to the GUI thread in engine order, per-batch
events coalesced and progress reports thinned, and the way back to the GUI thread after the run.

Two workers derive from it: TrainingWorker (gui/workers/training.py) runs the Trainer in this process's training
thread; ProcessTrainingWorker (gui/workers/training_process.py) starts the run in child processes — a torchrun
process group for several processes — and forwards rank 0's events as they stream back.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from engine.recipe import Recipe
from engine.train import events as ev

if TYPE_CHECKING:
    from engine.train.trainer import Trainer

# The progress line redraws at most 4 times a second (gui/widgets/run_progress.py), so batches are handed over at
# that rate: every hand-over wakes the GUI thread, which then competes with training for the GIL and the cores.
BATCH_EMIT_INTERVAL_S = 0.25
PROGRESS_EVENTS = (ev.WeightsDownloadProgress, ev.FeaturesProgressed, ev.HeadFitProgressed)


class EventForwarder(QObject):
    """What every training worker shares: the engine's events forwarded to the GUI thread in engine order, batches
    and progress reports thinned (see the module's docstring), and the way back to the GUI thread after the run."""

    event_emitted = Signal(object)  # an engine event (engine/train/events.py), in engine order
    batches_finished = Signal(object)  # list[ev.BatchFinished], oldest first
    finished = Signal()  # always the last signal, whatever happened

    def __init__(self, recipe: Recipe | None = None, run_dir: str | Path | None = None,
                 runs_root: str | Path | None = None, batch_interval_s: float = BATCH_EMIT_INTERVAL_S):
        super().__init__()
        if (recipe is None) == (run_dir is None):
            raise ValueError("give either a recipe (a new run) or a run folder (to resume)")
        self._recipe = recipe.copy() if recipe is not None else None
        self._run_dir = Path(run_dir) if run_dir is not None else None
        self._runs_root = runs_root
        self._batch_interval_s = batch_interval_s
        self._pending_batches: list[ev.BatchFinished] = []
        self._last_batch_emit = float("-inf")  # the first batch goes out at once
        self._last_progress_emit: dict[type, float] = {}
        self._home_thread = self.thread()  # where it was made (the GUI thread); it returns there after the run
        self.trainer: Trainer | None = None  # in-process runs: during the run (views that inspect the model, tests)

    def run(self) -> None:
        raise NotImplementedError

    def terminate(self) -> None:
        """Abort a run that does not stop (closing the studio): only runs in child processes can be aborted."""

    def _return_home(self) -> None:
        self._flush_batches()
        self.trainer = None
        # Back to the GUI thread, so that the worker is deleted there, by Python, once released: a
        # deleteLater() flushed by the ending thread would race with that (a cross-thread double free).
        self.moveToThread(self._home_thread)
        self.finished.emit()

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.BatchFinished):
            self._pending_batches.append(event)
            if time.monotonic() - self._last_batch_emit >= self._batch_interval_s:
                self._flush_batches()
            return
        if isinstance(event, PROGRESS_EVENTS) and not self._progress_due(event):
            return
        self._flush_batches()
        self.event_emitted.emit(event)

    def _progress_due(self, event: ev.WeightsDownloadProgress | ev.FeaturesProgressed | ev.HeadFitProgressed) -> bool:
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
