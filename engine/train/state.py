"""Where a run is, as a checkpoint holds it: the position (phase, epoch, batch, step), an epoch's running sums,
early stopping, the training time so far and — at a stop mid-epoch — the RNG states.

A checkpoint is this state, flattened, plus the model, the current phase's optimizer / scheduler / scaler / freeze
state (engine/train/phase.py) and what a prediction needs (the recipe, class names, preprocessing). Everything is a
tensor or a plain value, so it loads with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunningSums:
    """An epoch's totals so far (kept in a mid-epoch checkpoint, so the resumed epoch reports the same figures)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # training time of the epoch (pauses excluded)
    data_wait: float = 0.0  # of which waiting for batches

    def add(self, loss: float, correct: int, n: int) -> None:
        self.loss_sum += loss * n
        self.correct += correct
        self.seen += n

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.seen)

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.seen)

    @property
    def images_per_s(self) -> float:
        return self.seen / self.seconds if self.seconds > 0 else 0.0

    @property
    def data_wait_share(self) -> float:
        return self.data_wait / self.seconds if self.seconds > 0 else 0.0


@dataclass
class TrainingState:
    phase: int = 0
    epoch: int = 0  # the epoch being trained or next to train (0-based)
    batch: int = 0  # batches done in `epoch`
    global_step: int = 0
    elapsed: float = 0.0  # training time of earlier sessions of this run, pauses excluded
    running: RunningSums = field(default_factory=RunningSums)
    stopping: dict[str, Any] = field(default_factory=dict)  # EarlyStopping.state_dict()
    rng: dict[str, Any] | None = None  # RNG states at a stop mid-epoch; None at an epoch boundary
    watch: dict[str, Any] = field(default_factory=dict)  # PhaseWatch.state_dict(): where the phase began

    @property
    def mid_epoch(self) -> bool:
        return self.batch > 0

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.running = RunningSums()
        self.rng = None

    def to_checkpoint(self) -> dict[str, Any]:
        return {"phase": self.phase, "epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
                "elapsed": self.elapsed, "running": asdict(self.running), "stopping": dict(self.stopping),
                "watch": dict(self.watch), **({"rng": self.rng} if self.rng is not None else {})}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> TrainingState:
        stopping = checkpoint.get("stopping")
        if stopping is None and "best_metric" in checkpoint:  # format 1 kept early stopping's fields flat
            stopping = {"best_score": checkpoint["best_metric"], "bad_epochs": checkpoint.get("bad_epochs", 0)}
        return cls(phase=int(checkpoint.get("phase", 0)), epoch=int(checkpoint.get("epoch", 0)),
                   batch=int(checkpoint.get("batch", 0)), global_step=int(checkpoint.get("global_step", 0)),
                   elapsed=float(checkpoint.get("elapsed", 0.0)),
                   running=RunningSums(**checkpoint.get("running") or {}),
                   stopping=dict(stopping or {}), rng=checkpoint.get("rng"), watch=dict(checkpoint.get("watch") or {}))


class RunClock:
    """Training time: wall-clock time since this session started, minus the time spent paused, plus earlier
    sessions' time. Paused time is not training time anywhere (summary, metrics, ETA)."""

    def __init__(self, before: float = 0.0):
        self._before = before
        self._started = time.perf_counter()
        self._paused = 0.0

    def add_pause(self, seconds: float) -> None:
        self._paused += seconds

    def elapsed(self) -> float:
        return self._before + time.perf_counter() - self._started - self._paused
