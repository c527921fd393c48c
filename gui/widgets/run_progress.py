"""The progress of a run: a bar over the whole run and one line of what it is doing now (the engine's words,
engine/train/narrate.py), with images/s and an ETA that weigh each epoch by what it costs."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from engine.train import events as ev
from engine.train.narrate import batch_progress, head_fit_progress, starting_progress
from gui.widgets.coalescer import Coalescer

PROGRESS_STEPS = 1000  # the progress bar counts per-mille of the whole run
PROGRESS_REDRAW_MS = 250  # the line redraws at most this often, however fast batches arrive
PAUSED_PREFIX = "Paused — "


def epoch_costs(estimate, phase_start_epochs: list[int], total_epochs: int) -> list[float] | None:
    """Seconds per epoch of the run, from a cost estimate made for this recipe (engine/train/estimate.py: each
    phase's epoch, its feature pass on its first epoch), so that the progress and the ETA weigh an epoch of a phase
    that trains everything more than one that trains the head; None without an estimate, or one whose phases do not
    count the run's epochs."""
    if estimate is None:
        return None
    ends = [*phase_start_epochs[1:], total_epochs]
    epochs = [end - start for start, end in zip(phase_start_epochs, ends)]
    if [p.epochs for p in estimate.phases] != epochs:
        return None
    costs = []
    for phase in estimate.phases:
        per_epoch = [phase.epoch_seconds] * phase.epochs
        if per_epoch:
            per_epoch[0] += phase.features_seconds
        costs.extend(per_epoch)
    return costs if costs and all(c > 0 for c in costs) else None


class RunProgress(QWidget):
    """The progress bar over the whole run and a line with epoch, batch, images/s and ETA. Progress is the share
    of the run's cost done: every epoch costs the same unless `start` gets each epoch's seconds from an estimate."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.trainProgress = QProgressBar()
        self.trainProgress.setObjectName("trainProgress")
        self.trainProgress.setRange(0, PROGRESS_STEPS)
        self.trainProgress.setValue(0)
        self.progressLabel = QLabel("No run yet")
        self.progressLabel.setObjectName("progressLabel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.trainProgress)
        layout.addWidget(self.progressLabel)
        self._total_epochs = 1
        self._start_fraction = 0.0
        self._started = 0.0
        self._paused_since: float | None = None
        self._latest: ev.BatchFinished | None = None
        self._resumed_at = (0, 0)  # (epoch, batch) this session started at
        self._costs = [1.0]  # each epoch's share of the run's cost (seconds from an estimate, or equal)
        self._rate: float | None = None  # images/s: the last rate measured over more than one batch
        self._redraw = Coalescer(self, PROGRESS_REDRAW_MS, self._draw_latest)

    def start(self, total_epochs: int, start_epoch: int, start_batch: int = 0,
              costs: list[float] | None = None) -> None:
        self._total_epochs = max(1, total_epochs)
        self._costs = list(costs) if costs and len(costs) == self._total_epochs else [1.0] * self._total_epochs
        self._start_fraction = self._fraction(start_epoch)
        self._started = time.monotonic()
        self._paused_since = None
        self._resumed_at = (start_epoch, start_batch)
        self._rate = None
        self.trainProgress.setValue(round(self._start_fraction * PROGRESS_STEPS))
        self.progressLabel.setText(starting_progress(start_epoch, total_epochs))

    def show_batch(self, b: ev.BatchFinished) -> None:
        self._latest = b
        self._redraw.request()

    def _draw_latest(self) -> None:
        b = self._latest
        fraction = self._fraction(b.epoch, (b.batch + 1) / max(1, b.batches))
        self.trainProgress.setValue(round(fraction * PROGRESS_STEPS))
        # An epoch's (or a resumed session's) first batch pays for start-up (loader workers, warm-up): its rate
        # alone reads far too low, so the last rate measured over several batches stays until a second one.
        if b.batch != 0 and (b.epoch, b.batch) != self._resumed_at:
            self._rate = b.images_per_s
        # Batches finished before the pause took hold still arrive: they must not wipe out "Paused" (issue 28).
        paused = PAUSED_PREFIX if self._paused_since is not None else ""
        self.progressLabel.setText(paused + batch_progress(b, self._total_epochs, self._rate, self._eta(fraction)))

    def show_fit(self, e: ev.HeadFitProgressed) -> None:
        """A head being fitted: the epoch advances with the fits done (cross-validation, then the final fit)."""
        self._redraw.cancel()
        fraction = self._fraction(e.epoch, e.done / max(1, e.total))
        self.trainProgress.setValue(round(fraction * PROGRESS_STEPS))
        self.progressLabel.setText(head_fit_progress(e, self._total_epochs, self._eta(fraction)))

    def set_paused(self, paused: bool) -> None:
        """Paused time is not training time: the ETA's clock stops while paused. The line says "Paused — " for
        as long as the run is."""
        now = time.monotonic()
        text = self.progressLabel.text().removeprefix(PAUSED_PREFIX)
        if paused and self._paused_since is None:
            self._paused_since = now
        elif not paused and self._paused_since is not None:
            self._started += now - self._paused_since
            self._paused_since = None
        self.progressLabel.setText((PAUSED_PREFIX if paused else "") + text)

    def _fraction(self, epoch: int, of_epoch: float = 0.0) -> float:
        """The share of the run's cost done after `epoch` whole epochs and `of_epoch` of the next."""
        costs = self._costs
        done = sum(costs[:epoch]) + (costs[epoch] * of_epoch if epoch < len(costs) else 0.0)
        return min(1.0, done / sum(costs))

    def _eta(self, fraction: float) -> float | None:
        """Seconds left, from the rate of this session's progress; None before it progressed."""
        progressed = fraction - self._start_fraction
        if progressed <= 0:
            return None
        elapsed = (self._paused_since or time.monotonic()) - self._started
        return elapsed * (1 - fraction) / progressed

    def finish(self, text: str) -> None:
        self._redraw.cancel()
        self.trainProgress.setValue(self.trainProgress.maximum())
        self.progressLabel.setText(text)

    def halt(self, text: str) -> None:
        self._redraw.cancel()
        self.progressLabel.setText(text)
