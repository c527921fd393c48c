"""Early stopping and the "best epoch" rule, in one place: the monitored metric, its direction, patience."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.recipe import EarlyStoppingConfig


@dataclass
class EarlyStopping:
    """Which epoch is the best so far, and whether patience has run out.

    The score is `val_acc` (higher is better) or `val_loss` (lower is better); an epoch is a new best when it beats
    the best score by more than `min_delta`. A non-finite metric is never a best (a diverged epoch is no record).
    `patience` 0 never stops the run.
    """

    config: EarlyStoppingConfig
    best_score: float | None = None
    bad_epochs: int = 0
    best_epoch: int | None = None  # 1-based, as metrics.csv counts epochs
    best_val_acc: float | None = None
    last_val_acc: float | None = None  # the latest epoch's, whatever it was (the restored one's after a restore)
    last_score: float | None = None  # the latest epoch's score (higher is better), for `last_is_worse`
    restored_epoch: int | None = None  # 1-based: the model took this best epoch's weights after the latest epoch

    @property
    def mode(self) -> str:
        """"max" or "min": how a plateau schedule reads `monitored`."""
        return "max" if self.config.metric == "val_acc" else "min"

    def monitored(self, val_loss: float, val_acc: float) -> float:
        return val_acc if self.config.metric == "val_acc" else val_loss

    def update(self, epoch: int, val_loss: float, val_acc: float) -> bool:
        """Record global epoch `epoch` (0-based); True when it is the best so far."""
        value = self.monitored(val_loss, val_acc)
        score = value if self.mode == "max" else -value
        self.last_val_acc, self.last_score, self.restored_epoch = val_acc, score, None
        is_best = math.isfinite(score) and (self.best_score is None or score > self.best_score + self.config.min_delta)
        if is_best:
            self.best_score, self.bad_epochs = score, 0
            self.best_epoch, self.best_val_acc = epoch + 1, val_acc
        else:
            self.bad_epochs += 1
        return is_best

    def last_is_worse(self) -> bool:
        """The latest epoch scored below the best (strictly, without min_delta: a tie keeps the later weights)."""
        return (self.best_score is not None and self.last_score is not None and math.isfinite(self.last_score)
                and self.last_score < self.best_score)

    def restored(self, val_acc: float) -> None:
        """The model took the best epoch's weights: its latest accuracy and score are that epoch's."""
        self.last_val_acc, self.last_score, self.restored_epoch = val_acc, self.best_score, self.best_epoch

    @property
    def should_stop(self) -> bool:
        return bool(self.config.patience) and self.bad_epochs >= self.config.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "bad_epochs": self.bad_epochs, "best_epoch": self.best_epoch,
                "best_val_acc": self.best_val_acc, "last_val_acc": self.last_val_acc, "last_score": self.last_score,
                "restored_epoch": self.restored_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state.get("best_score")
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.best_epoch = state.get("best_epoch")
        self.best_val_acc = state.get("best_val_acc")
        self.last_val_acc = state.get("last_val_acc")
        self.last_score = state.get("last_score")
        self.restored_epoch = state.get("restored_epoch")
