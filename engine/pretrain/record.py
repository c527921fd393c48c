"""The pre-training run's folder as a critical subscriber (the training run's RunFolder, for this run's events):
metrics.csv (one row per epoch), batches.csv (the loss curve), summary.json. A resumed run starts from the rows its
checkpoint carried, so rows written after that checkpoint (by the run that then stopped or died) are dropped."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from engine.io_files import write_json_atomic, write_text_atomic
from engine.pretrain.events import (
    KnnMeasured,
    PretrainBatchFinished,
    PretrainEpochFinished,
    PretrainFailed,
    PretrainFinished,
    PretrainStarted,
    PretrainStopped,
)
from engine.train.events import Event

EPOCH_COLUMNS = ["epoch", "loss", "knn_acc", "seconds", "elapsed_seconds"]
BATCH_COLUMNS = ["epoch", "batch", "global_step", "loss", "lr", "images_per_s"]


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


class PretrainFolder:
    def __init__(self, run_dir: Path, rows: dict[str, list], config, recipe, run_id: str):
        self.run_dir = Path(run_dir)
        self.epochs: list[dict[str, Any]] = list(rows.get("epochs", []))
        self.batches: list[dict[str, Any]] = list(rows.get("batches", []))
        self.summary: dict[str, Any] = {"kind": "pretrain", "run_id": run_id, "method": config.method,
                                        "arch": recipe.model.arch, "unlabeled": config.unlabeled,
                                        "epochs": config.epochs, "status": "running"}

    def __call__(self, event: Event) -> None:
        if isinstance(event, PretrainStarted):
            self.summary.update(images=event.images, skipped=len(event.skipped),
                                skipped_files=[{"path": p, "reason": r} for p, r in event.skipped],
                                weights=event.weights, batch_size=event.batch_size, lr=event.lr, device=event.device,
                                knn=event.knn)
            self._write(files=True)
        elif isinstance(event, PretrainBatchFinished):
            self.batches.append({"epoch": event.epoch, "batch": event.batch, "global_step": event.global_step,
                                 "loss": event.loss, "lr": event.lr, "images_per_s": round(event.images_per_s, 2)})
        elif isinstance(event, KnnMeasured) and event.epochs_done == 0:
            self.summary["knn_start"] = event.knn_acc
        elif isinstance(event, PretrainEpochFinished):
            self.epochs.append({"epoch": event.epoch + 1, "loss": event.loss, "knn_acc": event.knn_acc,
                                "seconds": round(event.seconds, 3), "elapsed_seconds": round(event.elapsed_seconds, 3)})
            self.summary.update(epochs_done=event.epoch + 1, knn_end=event.knn_acc,
                                elapsed_seconds=event.elapsed_seconds)
            self._write(files=True)
        elif isinstance(event, PretrainStopped):
            self.summary.update(status="stopped", elapsed_seconds=event.elapsed_seconds)
            self._write(files=True)
        elif isinstance(event, PretrainFinished):
            self.summary.update(status="finished", weights_file=event.weights_file, knn_end=event.knn_end,
                                batchnorm_layers=event.batchnorm_layers, elapsed_seconds=event.elapsed_seconds)
            self._write(files=False)
        elif isinstance(event, PretrainFailed):
            self.summary.update(status="failed", error=event.error)
            self._write(files=True)

    def _write(self, files: bool) -> None:
        if files:
            write_text_atomic(self.run_dir / "metrics.csv", _csv(EPOCH_COLUMNS, self.epochs), "metrics file")
            write_text_atomic(self.run_dir / "batches.csv", _csv(BATCH_COLUMNS, self.batches), "batch metrics file")
        write_json_atomic(self.run_dir / "summary.json", self.summary, "run summary")
