"""One vocabulary for a run's numbers: events, metrics.csv, batches.csv, summary.json and the studio share it.

The names are the recipe's own (`early_stopping.metric` is "val_acc" or "val_loss"): `train_loss`, `train_acc`,
`val_loss`, `val_acc`, `seconds`, `images_per_s`, `data_wait_share`, `train_images`, and `lr_<group>` per group;
`fit` says how an epoch trained ("batches", or "lbfgs": a head fitted to convergence) and `l2` the strength that
fitted head won with.
The only translation is the epoch's numbering — 0-based in events, 1-based ("epochs done") in the files — and it
happens here, in both directions, so that a resumed run's history is replayed as the very events it came from.
"""

from __future__ import annotations

from typing import Any

from engine.train.events import BatchFinished, EpochFinished

EPOCH_COLUMNS = ("epoch", "phase", "phase_name", "train_loss", "train_acc", "val_loss", "val_acc", "seconds",
                 "images_per_s", "data_wait_share", "train_images", "fit", "l2")
BATCH_COLUMNS = ("global_step", "epoch", "batch", "batches", "train_loss", "train_acc", "images_per_s")
LR_PREFIX = "lr_"


def lr_columns(groups: list[str]) -> list[str]:
    return [LR_PREFIX + g for g in groups]


def epoch_row(event: EpochFinished) -> dict[str, Any]:
    """metrics.csv's row of an epoch."""
    return {"epoch": event.epoch + 1, "phase": event.phase_index, "phase_name": event.phase_name,
            "train_loss": event.train_loss, "train_acc": event.train_acc, "val_loss": event.val_loss,
            "val_acc": event.val_acc, "seconds": event.seconds, "images_per_s": event.images_per_s,
            "data_wait_share": event.data_wait_share, "train_images": event.train_images, "fit": event.fit,
            "l2": event.l2, **{LR_PREFIX + g: lr for g, lr in event.lrs.items()}}


def epoch_event(row: dict[str, Any], is_best: bool = False, elapsed_seconds: float = 0.0) -> EpochFinished:
    """The EpochFinished a metrics.csv row was written from (lr columns of groups that did not train are empty)."""
    lrs = {k[len(LR_PREFIX):]: float(v) for k, v in row.items() if k.startswith(LR_PREFIX) and v not in (None, "")}
    return EpochFinished(epoch=int(row["epoch"]) - 1, phase_index=int(row["phase"]), phase_name=str(row["phase_name"]),
                         train_loss=float(row["train_loss"]), train_acc=float(row["train_acc"]),
                         val_loss=float(row["val_loss"]), val_acc=float(row["val_acc"]), lrs=lrs,
                         seconds=float(row["seconds"]), images_per_s=float(row["images_per_s"]),
                         data_wait_share=float(row.get("data_wait_share") or 0.0),
                         train_images=int(row.get("train_images") or 0), is_best=is_best,
                         elapsed_seconds=elapsed_seconds, fit=str(row.get("fit") or "batches"),
                         l2=None if row.get("l2") in (None, "") else float(row["l2"]))


def batch_row(event: BatchFinished) -> dict[str, Any]:
    return {"global_step": event.global_step, "epoch": event.epoch, "batch": event.batch, "batches": event.batches,
            "train_loss": event.train_loss, "train_acc": event.train_acc, "images_per_s": event.images_per_s,
            **{LR_PREFIX + g: lr for g, lr in event.lrs.items()}}


def batch_event(row: dict[str, Any]) -> BatchFinished:
    lrs = {k[len(LR_PREFIX):]: float(v) for k, v in row.items() if k.startswith(LR_PREFIX) and v not in (None, "")}
    return BatchFinished(epoch=int(row["epoch"]), batch=int(row["batch"]), batches=int(row["batches"]),
                         global_step=int(row["global_step"]), train_loss=float(row["train_loss"]),
                         train_acc=float(row["train_acc"]), lrs=lrs, images_per_s=float(row["images_per_s"]))
