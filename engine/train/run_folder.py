"""The run folder as a subscriber of the run's events: recipe.json, metrics.csv, batches.csv, summary.json,
skipped_files.txt, and the best.pt link.

It is the one writer of those files, and a *critical* subscriber (engine/train/events.py): if it cannot write (a
full disk, a folder made read-only), the run fails with that reason instead of training on unsaved. Everything it
writes derives from the events, so a resumed run rebuilds it from the files it left: the rows of epochs (and
batches) after the checkpoint are dropped, and the summary's epoch figures are recomputed from the kept rows.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import torch
import torchvision

from engine.io_files import write_json_atomic, write_text_atomic
from engine.train import events as ev
from engine.train.checkpoints import link_checkpoint
from engine.train.metrics import BATCH_COLUMNS, EPOCH_COLUMNS, batch_row, epoch_row, lr_columns
from engine.train.narrate import folds_text, restored_line, setback_line
from engine.train.runs import (
    BATCHES_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    SKIPPED_FILE,
    SUMMARY_FILE,
    checkpoint_path,
    read_csv_rows,
)


class CsvLog:
    """A CSV file with a fixed header; floats written with repr so that they read back exactly."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(row.get(k, "")) for k in self.columns} for row in rows)
        write_text_atomic(self.path, text.getvalue(), "metrics file", newline="")

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writerows({k: _cell(row.get(k, "")) for k in self.columns} for row in rows)


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return repr(value) if isinstance(value, float) else value


class RunFolder:
    """Writes a run's files from its events. `summary` is the summary.json it keeps up to date."""

    def __init__(self, run_dir: str | Path, skipped: list[tuple[str, str]] | None = None):
        """`skipped`: (path, reason) of the data's unusable files (DataPrepared came before the folder existed)."""
        self.run_dir = Path(run_dir)
        self.summary: dict[str, Any] = {}
        self._skipped = list(skipped or [])
        self._metrics: CsvLog | None = None
        self._batches: CsvLog | None = None
        self._pending_batches: list[dict[str, Any]] = []
        self._handlers = {
            ev.RunStarted: self._on_run_started, ev.DistributedStarted: self._on_distributed_started,
            ev.PhaseStarted: self._on_phase_started, ev.FeaturesCached: self._on_features_cached,
            ev.HeadFitted: self._on_head_fitted,
            ev.BatchFinished: self._on_batch, ev.EpochFinished: self._on_epoch_finished,
            ev.CheckpointSaved: self._on_checkpoint_saved, ev.FreezeVerified: self._on_freeze_verified,
            ev.PhaseSetBack: self._on_phase_set_back, ev.BestRestored: self._on_best_restored,
            ev.RunStopped: self._on_run_stopped, ev.RunFinished: self._on_run_finished,
            ev.RunFailed: self._on_run_failed,
        }

    def __call__(self, event: ev.Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    # --- the start --------------------------------------------------------------------------------------------
    def _on_run_started(self, e: ev.RunStarted) -> None:
        write_json_atomic(self.run_dir / RECIPE_FILE, e.recipe)
        if self._skipped:
            write_text_atomic(self.run_dir / SKIPPED_FILE, "".join(f"{p}\t{why}\n" for p, why in self._skipped),
                              "run file")
        previous = self._read_summary() if e.resumed else {}
        self._metrics = CsvLog(self.run_dir / METRICS_FILE, [*EPOCH_COLUMNS, "is_best", *lr_columns(e.lr_groups)])
        self._batches = CsvLog(self.run_dir / BATCHES_FILE, [*BATCH_COLUMNS, *lr_columns(e.lr_groups)])
        rows = read_csv_rows(self._metrics.path)[: e.start_epoch] if e.resumed else []
        self._metrics.rewrite(rows)
        batches = read_csv_rows(self._batches.path) if e.resumed else []
        self._batches.rewrite([b for b in batches if int(b["global_step"]) <= e.start_global_step])
        self.summary = {
            "run_id": e.run_id, "name": e.name, "strategy": e.strategy, "arch": e.arch, "weights": e.weights,
            "status": "running",
            "device": e.device, "device_type": e.device_type, "precision": e.precision,
            "num_classes": len(e.class_names), "classes": list(e.class_names), "train_size": e.train_size,
            "val_size": e.val_size, "skipped_files": len(self._skipped),
            "started": previous.get("started", time.strftime("%Y-%m-%d %H:%M:%S")),
            "phases": [p for p in previous.get("phases", []) if p.get("index", 0) <= _phase_of(e, e.start_epoch)],
            "preprocessing": e.preprocessing, "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "device_warning": e.device_warning, "error": "",
            "wall_seconds": e.elapsed_seconds,
        }
        if "distributed" in previous:  # how earlier sessions of the run were laid out (DistributedStarted adds one)
            self.summary["distributed"] = previous["distributed"]
        self._summarise_epochs(rows)
        self._save()

    def _read_summary(self) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a summary lost to a crash is rebuilt from metrics.csv and the events

    def _summarise_epochs(self, rows: list[dict[str, Any]]) -> None:
        """The summary's epoch figures, from metrics.csv's rows (the same rule on a fresh run and on resume)."""
        s = self.summary
        s["epochs_done"] = len(rows)
        last = rows[-1] if rows else {}
        s["final_val_acc"], s["final_train_acc"] = last.get("val_acc"), last.get("train_acc")
        best = [r for r in rows if r.get("is_best")]
        s["best_val_acc"], s["best_epoch"] = (best[-1]["val_acc"], best[-1]["epoch"]) if best else (None, None)
        s["phase_results"] = phase_results(rows, s.get("phases", []))
        ended = next((p["restored"] for p in s.get("phases", [])
                      if rows and p.get("restored", {}).get("after_epoch") == len(rows)), None)
        if ended is not None:  # the run ends with the best epoch's weights, not the last epoch's
            s["final_val_acc"], s["final_train_acc"] = ended["val_acc"], ended["train_acc"]
            s["last_epoch_val_acc"] = last.get("val_acc")
            s["restored_epoch"] = ended["epoch"]
        else:
            s.pop("last_epoch_val_acc", None)
            s.pop("restored_epoch", None)
        images = sum(r.get("train_images") or 0 for r in rows)
        seconds = sum(r.get("seconds") or 0.0 for r in rows)
        s["train_images_per_s"] = images / seconds if images and seconds > 0 else None

    def _on_distributed_started(self, e: ev.DistributedStarted) -> None:
        sessions = list(self.summary.get("distributed", {}).get("sessions", []))
        self.summary["distributed"] = {"world_size": e.world_size, "backend": e.backend,
                                       "per_process_batch": e.per_process_batch, "global_batch": e.global_batch,
                                       "lr_scaling": e.lr_scaling, "lr_factor": e.lr_factor,
                                       "sync_batchnorm": e.sync_batchnorm,
                                       "sessions": [*sessions, {"world_size": e.world_size, "note": e.note}]}
        if e.world_size > 1:  # what the runs table shows
            self.summary["device"] = f"{e.world_size} processes ({e.backend}) × {self.summary.get('device', '')}"
        self._save()

    # --- during the run ---------------------------------------------------------------------------------------
    def _on_phase_started(self, e: ev.PhaseStarted) -> None:
        phases = self.summary["phases"]
        head_fit = {"method": "lbfgs" if e.head_fit == "converge" else "epochs"}
        if e.head_fit_note:
            head_fit["note"] = e.head_fit_note
        entry = {"index": e.phase_index, "name": e.name, "epochs": e.epochs, "trainable_params": e.trainable_params,
                 "total_params": e.total_params, "groups": dict(e.groups), "head_fit": head_fit,
                 "freeze_verified": None, "moved": []}
        for i, old in enumerate(phases):
            if old.get("index") == e.phase_index:  # resumed inside this phase: its verification so far stands
                phases[i] = {**entry, "freeze_verified": old.get("freeze_verified"), "moved": old.get("moved", [])}
                if "l2" in old.get("head_fit", {}):  # resumed after its head was fitted: the fit stands too
                    phases[i]["head_fit"] = old["head_fit"]
                break
        else:
            phases.append(entry)
        self._save()

    def _phase_entry(self, index: int) -> dict[str, Any]:
        return next(p for p in self.summary["phases"] if p.get("index") == index)

    def _on_features_cached(self, e: ev.FeaturesCached) -> None:
        self._phase_entry(e.phase_index)["cached_features"] = {"images": e.images, "views": e.views,
                                                               "seconds": e.seconds, "from_disk": e.from_disk}

    def _on_head_fitted(self, e: ev.HeadFitted) -> None:
        """How the head was fitted and which regularisation won, in the phase's entry: the event's own fields (so a
        resumed run replays it), plus the method and the rule in words."""
        chosen_by = (f"{folds_text(e)} cross-validation on the training features ({e.metric})" if e.folds
                     else "the default strength (a class has fewer than two training images: no cross-validation)")
        self._phase_entry(e.phase_index)["head_fit"] = {
            "method": "lbfgs", "objective": "loss + l2/2 * sum of squared weights, on standardised features",
            "chosen_by": chosen_by, **{k: v for k, v in e.to_dict().items() if k != "event"}}
        self._save()

    def _on_batch(self, e: ev.BatchFinished) -> None:
        self._pending_batches.append(batch_row(e))

    def _flush_batches(self) -> None:
        if self._batches is not None:
            self._batches.append(self._pending_batches)
        self._pending_batches = []

    def _on_epoch_finished(self, e: ev.EpochFinished) -> None:
        self._flush_batches()
        self._metrics.append([{**epoch_row(e), "is_best": e.is_best}])
        self._summarise_epochs(read_csv_rows(self._metrics.path))
        self.summary["wall_seconds"] = e.elapsed_seconds
        self._save()

    def _on_checkpoint_saved(self, e: ev.CheckpointSaved) -> None:
        if e.is_best:
            link_checkpoint(e.path, checkpoint_path(self.run_dir, "best"))

    def _on_phase_set_back(self, e: ev.PhaseSetBack) -> None:
        entry = self._phase_entry(e.phase_index)
        said = [s for s in entry.get("setbacks", []) if s.get("kind") != e.kind]  # a resumed run says it again
        entry["setbacks"] = [*said, {"line": setback_line(e), **{k: v for k, v in e.to_dict().items()
                                                                  if k != "event"}}]
        self._save()

    def _on_best_restored(self, e: ev.BestRestored) -> None:
        self._phase_entry(e.phase_index)["restored"] = {
            "line": restored_line(e), "after_epoch": e.epoch + 1, "epoch": e.best_epoch, "metric": e.metric,
            "val_acc": e.val_acc_best, "val_loss": e.val_loss_best, "train_acc": e.train_acc_best,
            "val_acc_last": e.val_acc_last, "val_loss_last": e.val_loss_last}
        self._summarise_epochs(read_csv_rows(self._metrics.path))
        self._save()

    def _on_freeze_verified(self, e: ev.FreezeVerified) -> None:
        entry = self._phase_entry(e.phase_index)
        held_before = entry.get("freeze_verified") in (None, True)  # a phase resumed after a breach stays breached
        entry["freeze_verified"] = held_before and not e.moved
        entry["moved"] = sorted(set(entry.get("moved", [])) | set(e.moved))
        self._save()

    # --- the end ----------------------------------------------------------------------------------------------
    def _on_run_stopped(self, e: ev.RunStopped) -> None:
        self._flush_batches()
        self.summary.update(status="stopped", wall_seconds=e.elapsed_seconds)
        self._save()

    def _on_run_finished(self, e: ev.RunFinished) -> None:
        self._flush_batches()
        self.summary.update(status=e.status, wall_seconds=e.elapsed_seconds,
                            finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        self._save()

    def _on_run_failed(self, e: ev.RunFailed) -> None:
        if not self.summary:
            return  # failed before the run started: there is no run folder to write to
        self._pending_batches = []  # the failing epoch's batches are not part of the saved history
        self.summary.update(status="failed", error=e.error)
        self._save()

    def _save(self) -> None:
        write_json_atomic(self.run_dir / SUMMARY_FILE, self.summary)


def phase_results(rows: list[dict[str, Any]], phases: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Where each phase left the model, from metrics.csv's rows: its last epoch's training and validation accuracy
    and its best validation epoch — the lesson's "feature extraction vs fine-tuning" read off one table. A phase that
    ended by restoring the best epoch's weights (summary.json's `phases[].restored`) left the model at that epoch:
    `kept_epoch` and `kept_val_acc` say so beside its last epoch's figures."""
    restored = {int(p.get("index", -1)): p["restored"] for p in phases or [] if p.get("restored")}
    by_phase: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_phase.setdefault(int(row.get("phase") or 0), []).append(row)
    out = []
    for index, phase_rows in sorted(by_phase.items()):
        last = phase_rows[-1]
        best = max(phase_rows, key=lambda r: (r.get("val_acc") if r.get("val_acc") is not None else -1.0,
                                               -int(r.get("epoch") or 0)))
        out.append({"index": index, "name": last.get("phase_name"), "epochs": len(phase_rows),
                    "last_epoch": last.get("epoch"), "final_train_acc": last.get("train_acc"),
                    "final_val_acc": last.get("val_acc"), "final_val_loss": last.get("val_loss"),
                    "best_val_acc": best.get("val_acc"), "best_epoch": best.get("epoch")})
        kept = restored.get(index)
        if kept is not None and kept.get("after_epoch") == last.get("epoch"):
            out[-1].update(kept_epoch=kept["epoch"], kept_val_acc=kept["val_acc"])
    return out


def _phase_of(e: ev.RunStarted, epoch: int) -> int:
    """The phase that global epoch `epoch` belongs to."""
    return max((i for i, start in enumerate(e.phase_start_epochs) if start <= epoch), default=0)
