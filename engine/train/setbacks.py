"""A phase that makes the model worse is said, not hidden (issue 20).

The trainer tells `PhaseWatch` every epoch's figures. Two things are watched, both against where the phase began
(the last epoch of the phase before it):
  - the phase's first epoch: did it lose much of the training or validation accuracy the previous phase had
    reached? (The failure of fine-tuning after a fitted head: the new rates and re-estimated BatchNorm statistics
    move the features faster than the head can follow, the loss explodes, and its gradients damage the features.)
  - the phase's end: is the best validation accuracy the phase reached below where it began?
Either is a `PhaseSetBack` event with the figures and the likely causes read off the phase's own settings, so the
CLI, the studio's log and summary.json say the same words (engine/train/narrate.py).

"Much": training accuracy down by at least TRAIN_DROP (TRAIN_DROP_AFTER_FIT after a fitted head), or validation
accuracy down by at least VAL_DROP and by more than two validation images (one image is noise on a small split).
A phase's end is "below" when its best validation accuracy is more than one validation image under its start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.train import events as ev

TRAIN_DROP = 0.15
# After a fitted head the previous training accuracy was measured on clean cached features with the final head;
# the first image epoch's is on augmented images while the weights move, lower by itself (bench task b,
# extract-then-fine-tune: 100.0 -> 78.5 % while validation rose 77.1 -> 77.9 %). The collapses issue 20 reported lost
# 46 and 80 points.
TRAIN_DROP_AFTER_FIT = 0.35
VAL_DROP = 0.05
SMALL_BATCH = 32  # BatchNorm statistics re-estimated on fewer images a batch are noisy
HIGH_BODY_LR = 1e-4  # Adam steps of this size move pretrained convolution weights ~1 % a step


@dataclass
class EpochFigures:
    phase_index: int
    epoch: int  # global, 0-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float


@dataclass(frozen=True, kw_only=True)
class PhaseContext:
    """What the causes are read from: the phase's settings as they ran."""

    phase_name: str
    previous_name: str
    previous_fitted_head: bool  # the previous phase fitted its head to convergence (L-BFGS)
    group_lrs: dict[str, float]  # group → initial rate
    head_group: str  # the group that holds the head ("" when none is named so)
    warmup: bool  # the phase's schedule starts its rates low (a warm-up or one-cycle)
    bn_layers_training: int  # BatchNorm layers whose statistics move in this phase
    batch_size: int  # images per BatchNorm batch (one process's)


class PhaseWatch:
    """Fed with every finished epoch; returns a PhaseSetBack when a phase set the model back. Its state goes into
    the checkpoint, so a resumed run compares against the same start."""

    def __init__(self, val_size: int):
        self.val_size = max(1, val_size)
        self.previous: EpochFigures | None = None  # the latest finished epoch
        self.start: EpochFigures | None = None  # the epoch before the current phase's first one
        self.phase_best_val: float | None = None

    def images(self, accuracy_drop: float) -> int:
        """A drop of validation accuracy in validation images (counts, not floats: 0.925 − 0.875 < 0.05)."""
        return round(accuracy_drop * self.val_size)

    def epoch_finished(self, figures: EpochFigures, context: PhaseContext, last_of_phase: bool
                       ) -> list[ev.PhaseSetBack]:
        out: list[ev.PhaseSetBack] = []
        if self.previous is None or self.previous.phase_index != figures.phase_index:  # a phase's first epoch
            self.start = self.previous  # None in the run's first epoch
            self.phase_best_val = None
            if self.start is not None:
                train_drop = self.start.train_acc - figures.train_acc
                val_drop = self.images(self.start.val_acc - figures.val_acc)
                much = TRAIN_DROP_AFTER_FIT if context.previous_fitted_head else TRAIN_DROP
                if train_drop >= much - 1e-9 or (val_drop > 2 and val_drop >= VAL_DROP * self.val_size - 1e-9):
                    out.append(self._event("first_epoch", figures, context, figures.val_acc))
        self.phase_best_val = figures.val_acc if self.phase_best_val is None else max(self.phase_best_val,
                                                                                       figures.val_acc)
        if last_of_phase and self.start is not None and self.images(self.start.val_acc - self.phase_best_val) > 1:
            out.append(self._event("whole_phase", figures, context, self.phase_best_val))
        self.previous = figures
        return out

    def restored(self, best: EpochFigures) -> None:
        """The model took the best epoch's weights (restore_best): the next phase begins where that epoch left it."""
        self.previous = best

    def _event(self, kind: str, now: EpochFigures, context: PhaseContext, val_after: float) -> ev.PhaseSetBack:
        start = self.start
        return ev.PhaseSetBack(
            kind=kind, phase_index=now.phase_index, phase_name=context.phase_name, epoch=now.epoch,
            previous_name=context.previous_name, train_acc_before=start.train_acc, train_acc_after=now.train_acc,
            train_loss_before=start.train_loss, train_loss_after=now.train_loss, val_acc_before=start.val_acc,
            val_acc_after=val_after, causes=likely_causes(context, start, now))

    def state_dict(self) -> dict[str, Any]:
        return {"previous": asdict(self.previous) if self.previous else None,
                "start": asdict(self.start) if self.start else None, "phase_best_val": self.phase_best_val}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous = EpochFigures(**state["previous"]) if state.get("previous") else None
        self.start = EpochFigures(**state["start"]) if state.get("start") else None
        self.phase_best_val = state.get("phase_best_val")


def likely_causes(context: PhaseContext, start: EpochFigures, now: EpochFigures) -> list[str]:
    """The settings of the phase that explain such a setback, most likely first, each with what to change."""
    causes = []
    body = {g: lr for g, lr in context.group_lrs.items() if g != context.head_group}
    fast = {g: lr for g, lr in body.items() if lr >= HIGH_BODY_LR}
    if fast and not context.warmup:
        rates = ", ".join(f"{g} {lr:.2g}" for g, lr in fast.items())
        causes.append(f"the newly trained layers start at full rate without a warm-up ({rates}): lower them or "
                      f"use a schedule that warms up (cosine with warmup_epochs, or onecycle)")
    elif fast:
        rates = ", ".join(f"{g} {lr:.2g}" for g, lr in fast.items())
        causes.append(f"high rates for pretrained layers ({rates}): try a tenth of them")
    if context.bn_layers_training and context.batch_size < SMALL_BATCH:
        causes.append(f"{context.bn_layers_training} BatchNorm layers re-estimate their statistics on batches of "
                      f"{context.batch_size} images: set their bn_modes to frozen_stats (or a larger batch)")
    head_lr = context.group_lrs.get(context.head_group)
    if context.previous_fitted_head and head_lr is not None and head_lr >= 1e-3 and not context.warmup:
        causes.append(f"the head, already fitted to convergence in '{context.previous_name}', trains at {head_lr:.2g}"
                      f" from the first step: a lower head rate or a warm-up keeps it")
    if now.train_loss > 10 * max(start.train_loss, 1e-3):
        causes.append(f"the training loss jumped from {start.train_loss:.3g} to {now.train_loss:.3g}: the "
                      f"gradients of that loss are what moved the pretrained features")
    if not causes:
        causes.append("overfitting: the phase trains more parameters than its images support; fewer epochs, "
                      "stronger augmentation or the previous phase's model (best.pt keeps the best epoch)")
    return causes
