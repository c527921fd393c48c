"""The training loop: runs a Recipe's phases, emits events, writes the run folder, resumes exactly.

    fit(recipe)      → a new run folder, phases in order, checkpoints every epoch
    resume(run_dir)  → continues from checkpoints/last.pt, mid-epoch or across a phase boundary

Exactness: the sample order of an epoch comes from a generator seeded by (seed, epoch), augmentation is seeded
per sample (engine/data/datasets.py), global RNGs are reseeded at every epoch start and saved at a stop, and a
checkpoint stores the optimizer/scheduler of the phase it was taken in, so the resumed run rebuilds the same
phase, loads the same state and crosses the next phase boundary exactly as the uninterrupted run did.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from engine.train import events as ev
from engine.train.checkpoints import link_checkpoint, load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from engine.data.datasets import ImageFiles, PreparedData, prepare_data
from engine.data.ram_cache import DecodedImageCache, default_budget_bytes, estimate, fill
from engine.train.feature_cache import FeatureSet, FeatureStore, build_feature_set, head_only
from engine.train.devices import DeviceSetup, setup_device
from engine.errors import BadInputError, ThawError
from engine.model.freezing import (FreezeState, Fingerprint, apply_freeze_plan, count_params, restore_freeze_state,
                       set_train_mode)
from engine.model.groups import current_lrs, phase_groups, torch_param_groups
from engine.model.build import BuiltModel, build_model, resolve_preprocessing
from engine.train.optim import Schedule, build_optimizer, build_schedule
from engine.recipe import PhaseConfig, Recipe
from engine.train.runs import (RECIPE_FILE, SKIPPED_FILE, SUMMARY_FILE, MetricsWriter, checkpoint_path, new_run_dir,
                   runs_root_for, write_json_atomic)
from engine.data.transforms import eval_transform, train_transform

log = logging.getLogger(__name__)


class TrainingError(ThawError):
    """The run itself failed (NaN loss, out of memory …); the last checkpoint is kept."""


@dataclass
class RunResult:
    status: str  # finished, early_stopped, stopped, failed
    run_dir: str
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 2_654_435_761 + epoch * 40_503 + 17) % 2**31


def auto_workers(dataset_size: int) -> int:
    import os

    if dataset_size < 512:
        return 0  # spawning workers costs more than decoding a few hundred small images
    return max(0, min(8, (os.cpu_count() or 2) - 1))


def worker_cap(workers: int) -> int:
    """THAW_MAX_WORKERS caps loader workers (0 in a packaged build, where worker processes cannot spawn)."""
    cap = os.environ.get("THAW_MAX_WORKERS", "").strip()
    return min(workers, int(cap)) if cap.isdigit() else workers


def epoch_order(n: int, batch_size: int, seed: int, epoch: int, max_batches: int) -> list[int]:
    """The shuffled sample order of one epoch; a final batch of one sample is dropped (BatchNorm needs two)."""
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(n, generator=g).tolist()
    if max_batches:
        order = order[: max_batches * batch_size]
    if len(order) % batch_size == 1 and len(order) > 1:
        order = order[:-1]
    return order


def batches_in(n_samples: int, batch_size: int) -> int:
    return math.ceil(n_samples / batch_size)


def evaluate(model: nn.Module, loader, device: DeviceSetup, criterion: nn.Module, max_batches: int = 0
             ) -> tuple[float, float]:
    """(mean loss, accuracy 0..1) over the loader, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for i, (images, labels) in enumerate(loader):
            if max_batches and i >= max_batches:
                break
            images, labels = _to_device(images, labels, device)
            with device.autocast():
                logits = _logits(model(images))
            loss_sum += float(criterion(logits.float(), labels)) * labels.numel()
            correct += int((logits.argmax(1) == labels).sum())
            seen += labels.numel()
    model.train(was_training)
    return (loss_sum / seen if seen else float("nan")), (correct / seen if seen else 0.0)


def _logits(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output  # GoogLeNet/Inception named tuples


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: DeviceSetup):
    non_blocking = device.device.type == "cuda"
    images = images.to(device.device, non_blocking=non_blocking)
    if device.channels_last and images.ndim == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device.device, non_blocking=non_blocking)


class Trainer:
    def __init__(self, recipe: Recipe, callbacks: list[ev.EventCallback] | None = None,
                 control: ev.RunControl | None = None, runs_root: str | Path | None = None):
        self.recipe = recipe.copy().validate()
        self.bus = ev.EventBus(callbacks)
        self.control = control or ev.RunControl()
        self.runs_root = Path(runs_root) if runs_root else runs_root_for(self.recipe.output_dir)
        self.run_dir: Path | None = None
        self.resume_state: dict[str, Any] | None = None
        # Built in _prepare():
        self.device: DeviceSetup | None = None
        self.data: PreparedData | None = None
        self.built: BuiltModel | None = None

    # --- public entry points ------------------------------------------------------------------------------
    @classmethod
    def from_run_dir(cls, run_dir: str | Path, callbacks: list[ev.EventCallback] | None = None,
                     control: ev.RunControl | None = None) -> "Trainer":
        run_dir = Path(run_dir)
        last = checkpoint_path(run_dir, "last")
        if not last.is_file():
            raise BadInputError(f"{run_dir} has no checkpoint to resume from ({last} is missing)")
        state = load_checkpoint(last)
        trainer = cls(Recipe.from_dict(state["recipe"]), callbacks, control, runs_root=run_dir.parent)
        trainer.run_dir = run_dir
        trainer.resume_state = state
        return trainer

    def fit(self) -> RunResult:
        self._prepare()  # bad input raises here, before a run folder exists
        resumed = self.resume_state is not None
        if not resumed:
            self.run_dir = new_run_dir(self.runs_root, self.recipe.name)
        self.summary = self._initial_summary()
        self._write_run_files()
        try:
            status = self._run()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, and the last checkpoint kept
            return self._fail(exc)
        return RunResult(status, str(self.run_dir), self.summary)

    # --- set-up ---------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        r = self.recipe
        self.device = setup_device(r.device, r.precision, r.channels_last)
        prep = resolve_preprocessing(r.model, r.data)
        seed_everything(r.seed)
        self.data = prepare_data(r.data, train_transform(prep, r.data.augmentation), eval_transform(prep),
                                 r.model.in_channels, seed=r.seed)
        self.bus.emit(ev.DataPrepared(list(self.data.classes), len(self.data.train), len(self.data.val),
                                      [(p.path, p.reason) for p in self.data.skipped]))
        weights_label = r.model.weights_file or r.model.weights

        def download_progress(done: int, total: int) -> None:
            self.bus.emit(ev.WeightsDownloadProgress(weights_label, r.model.arch, done, total))

        seed_everything(r.seed)  # the new head's initialisation depends on the seed only
        self.built = build_model(r.model, len(self.data.classes), r.data, download_progress,
                                 pretrained=self.resume_state is None)
        if self.built.load_report is not None:
            log.info(self.built.load_report.text())
        model = self.built.model.to(self.device.device)
        if self.device.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.criterion = nn.CrossEntropyLoss(label_smoothing=r.label_smoothing)
        # Validate every phase's freeze plan and groups now: a bad phase 3 must fail before phase 1 trains.
        self.phase_group_specs = []
        self.phase_head_only = []
        for i, phase in enumerate(r.phases):
            freeze = apply_freeze_plan(model, self.built.stages, phase.trainable, phase.frozen, phase.bn_modes,
                                       f"phases[{i}]")
            self.phase_head_only.append(head_only(model, self.built.head_path, freeze.bn_modes))
            specs = phase_groups(self.built.stages, phase)
            torch_param_groups(model, self.built.stages, specs, phase.optimizer, f"phases[{i}].groups")
            self.phase_group_specs.append(specs)
        if self.resume_state is not None:
            model.load_state_dict(self.resume_state["model"])
        self._enable_ram_cache()

    def _enable_ram_cache(self) -> None:
        """Keep decoded images in RAM when they fit — unless every phase trains on cached features anyway."""
        r, data = self.recipe, self.data
        if r.data.ram_cache == "off" or not isinstance(data.train, ImageFiles):
            return
        if r.data.cache_features == "auto" and all(self.phase_head_only):
            return
        prep = self.built.preprocessing
        budget = r.data.ram_cache_mb * 2**20 or default_budget_bytes()
        # TrivialAugment crops the full-resolution image first; caching its training images would change them.
        datasets = [data.val] if r.data.augmentation == "trivialaugment" else [data.train, data.val]
        paths = [path for ds in datasets for path, _ in ds.samples]
        guess = estimate(paths, prep.resize_size, r.model.in_channels, budget)
        enabled = guess.fits or r.data.ram_cache == "on"
        self.bus.emit(ev.DecodedCacheEstimated(guess.images, guess.bytes, budget, enabled, guess.text()))
        if not enabled:
            return
        started = time.perf_counter()
        cache = DecodedImageCache(prep.resize_size, prep.interpolation, budget)  # one budget for both sets
        workers = max(1, min(8, (os.cpu_count() or 2)))
        offset = 0
        for ds in datasets:
            ds.cache = cache.view(offset)
            fill(ds.cache, len(ds), ds.decode, workers)
            offset += len(ds)
        self.bus.emit(ev.DecodedCacheFilled(len(cache.images), cache.bytes, cache.refused,
                                            time.perf_counter() - started))

    def _initial_summary(self) -> dict[str, Any]:
        r = self.recipe
        previous = (self.resume_state or {}).get("summary", {})
        import torchvision

        return {
            "name": r.name, "strategy": r.strategy, "arch": r.model.arch, "weights": self.built.weights_name,
            "status": "running", "device": self.device.describe(), "precision": self.device.precision,
            "num_classes": len(self.data.classes), "classes": list(self.data.classes),
            "train_size": len(self.data.train), "val_size": len(self.data.val),
            "skipped_files": len(self.data.skipped), "started": previous.get("started", time.strftime("%Y-%m-%d %H:%M:%S")),
            "best_val_acc": previous.get("best_val_acc"), "best_epoch": previous.get("best_epoch"),
            "final_val_acc": previous.get("final_val_acc"), "epochs_done": previous.get("epochs_done", 0),
            "wall_seconds": previous.get("wall_seconds", 0.0), "train_images_per_s": previous.get("train_images_per_s"),
            "phases": previous.get("phases", []), "preprocessing": self.built.preprocessing.to_dict(),
            "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "device_warning": self.device.fallback_warning, "error": "",
        }

    def _write_run_files(self) -> None:
        resolved = self.recipe.to_dict()
        if "_Weights." in self.built.weights_name:
            resolved["model"]["weights"] = self.built.weights_name  # exact, never "DEFAULT"
        self.recipe = Recipe.from_dict(resolved)
        write_json_atomic(self.run_dir / RECIPE_FILE, resolved)
        if self.data.skipped:
            (self.run_dir / SKIPPED_FILE).write_text(
                "".join(f"{p.path}\t{p.reason}\n" for p in self.data.skipped), encoding="utf-8")
        self._save_summary()

    def _save_summary(self) -> None:
        write_json_atomic(self.run_dir / SUMMARY_FILE, self.summary)

    # --- the loop ---------------------------------------------------------------------------------------------
    def _run(self) -> str:
        r = self.recipe
        state = self.resume_state or {}
        start_epoch = int(state.get("epoch", 0))
        start_batch = int(state.get("batch", 0))
        start_phase = int(state.get("phase", 0))
        self.global_step = int(state.get("global_step", 0))
        self.best = state.get("best_metric")
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.throughput = list(state.get("throughput", [0, 0.0]))
        self.session_start = time.time()
        group_names = list(dict.fromkeys(g.name for specs in self.phase_group_specs for g in specs))
        self.metrics = MetricsWriter(self.run_dir, group_names)
        self.metrics.truncate_to(start_epoch)
        self.last_checkpoint = str(checkpoint_path(self.run_dir, "last")) if state else ""
        starts = r.phase_start_epochs()

        self.bus.emit(ev.RunStarted(str(self.run_dir), r.name, r.strategy, r.model.arch, self.built.weights_name,
                                    self.device.describe(), self.device.precision, r.total_epochs, start_epoch,
                                    starts, [p.name for p in r.phases], list(self.data.classes), bool(state),
                                    self.device.fallback_warning))
        self.optimizer = None
        for phase_index in range(start_phase, len(r.phases)):
            phase = r.phases[phase_index]
            phase_end = starts[phase_index] + phase.epochs
            resuming_here = bool(state) and phase_index == start_phase
            self._start_phase(phase_index, phase, state if resuming_here else None)
            first = start_epoch if resuming_here else starts[phase_index]
            for epoch in range(first, phase_end):
                batch0 = start_batch if (resuming_here and epoch == start_epoch) else 0
                outcome = self._run_epoch(epoch, phase_index, phase, batch0,
                                          state if (resuming_here and epoch == start_epoch) else None)
                if outcome != "continue":
                    self._finish_phase(phase_index)
                    if outcome == "stopped":
                        self.bus.emit(ev.RunStopped(str(self.run_dir), self.last_checkpoint, epoch, self.stopped_at))
                        return outcome
                    return self._complete(outcome)
            self._finish_phase(phase_index)
        return self._complete("finished")

    def _start_phase(self, index: int, phase: PhaseConfig, resume: dict[str, Any] | None) -> None:
        r = self.recipe
        model, stages = self.model, self.built.stages
        self.freeze = apply_freeze_plan(model, stages, phase.trainable, phase.frozen, phase.bn_modes, f"phases[{index}]")
        if resume is not None and "freeze" in resume:
            self.freeze = FreezeState(list(resume["freeze"]["trainable"]), dict(resume["freeze"]["bn_modes"]))
            restore_freeze_state(model, self.freeze)
        groups, infos = torch_param_groups(model, stages, self.phase_group_specs[index], phase.optimizer,
                                           f"phases[{index}].groups")
        old = self.optimizer
        self.optimizer = build_optimizer(groups, phase.optimizer)
        if old is not None and phase.carry_optimizer_state and resume is None:
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p in old.state:
                        self.optimizer.state[p] = old.state[p]
        self.steps_per_epoch = batches_in(len(epoch_order(len(self.data.train), r.batch_size, r.seed, 0,
                                                          r.data.max_train_batches)), r.batch_size)
        metric_mode = "max" if r.early_stopping.metric == "val_acc" else "min"
        self.schedule: Schedule = build_schedule(self.optimizer, phase.schedule, phase.epochs, self.steps_per_epoch,
                                                 metric_mode)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.needs_scaler)
        if resume is not None:
            self.schedule.load_state_dict(resume.get("scheduler", {}))
            self.optimizer.load_state_dict(resume["optimizer"])  # after the scheduler: restores the groups' lr
            if resume.get("scaler"):
                self.scaler.load_state_dict(resume["scaler"])
        self.fingerprint = Fingerprint(model, self.freeze.bn_modes)
        self.features = self._cached_features(index, phase)
        trainable, total = count_params(model)
        phases = self.summary["phases"]
        entry = {"index": index, "name": phase.name, "epochs": phase.epochs, "trainable_params": trainable,
                 "total_params": total, "groups": {g.name: g.lr for g in infos}, "freeze_verified": None, "moved": []}
        if self.features is not None:
            entry["cached_features"] = {"images": int(self.features.train.shape[1]),
                                        "views": int(self.features.train.shape[0]),
                                        "seconds": self.features.seconds, "from_disk": self.features.from_disk}
        if index < len(phases):
            phases[index] = {**entry, "freeze_verified": phases[index].get("freeze_verified"),
                             "moved": phases[index].get("moved", [])}
        else:
            phases.append(entry)
        self.bus.emit(ev.PhaseStarted(index, phase.name, phase.epochs, self.recipe.phase_start_epochs()[index],
                                      trainable, total, self._trainable_modules(), {g.name: g.lr for g in infos}))

    def _cached_features(self, index: int, phase: PhaseConfig) -> FeatureSet | None:
        """Features of the frozen backbone when this phase trains only the head (engine/train/feature_cache.py)."""
        r = self.recipe
        if r.data.cache_features == "off" or not head_only(self.model, self.built.head_path, self.freeze.bn_modes):
            return None
        views = r.data.feature_views
        train_set = self.data.train
        augmentation = r.data.augmentation
        if views == 1 and augmentation != "none":
            # One view: the un-augmented image (resize + centre crop, as validation sees it). A single random crop
            # reused for every epoch is a worse feature than the centre; K > 1 views give real augmentation.
            train_set = copy.copy(train_set)
            train_set.transform = eval_transform(self.built.preprocessing)
            augmentation = "none"
        describe = {"arch": r.model.arch, "weights": self.built.weights_name, "in_channels": r.model.in_channels,
                    "preprocessing": self.built.preprocessing.to_dict(), "augmentation": augmentation,
                    "seed": r.seed, "head": self.built.head_path}

        def progress(done: int, total: int) -> None:
            self.bus.emit(ev.FeaturesProgressed(index, done, total))

        features = build_feature_set(self.model, self.built.head_path, self._loader, train_set, self.data.val,
                                     views, self.device.device, self.device.autocast, self.device.channels_last,
                                     describe, FeatureStore(budget_mb=r.data.feature_cache_mb), progress,
                                     lambda: self.control.stop_requested)
        if features is None:
            return None
        self.bus.emit(ev.FeaturesCached(index, features.key, int(features.train.shape[1]), views,
                                        int(features.train.shape[2]), features.seconds, features.from_disk))
        return features.to(self.device.device)

    def _trainable_modules(self) -> list[str]:
        """The shallowest modules whose parameters all train (for the PhaseStarted event and the GUI)."""
        out: list[str] = []
        for name, module in self.model.named_modules():
            params = list(module.parameters())
            if name and params and all(p.requires_grad for p in params) and not any(name.startswith(o + ".") for o in out):
                out.append(name)
        return out

    def _finish_phase(self, index: int) -> None:
        moved = self.fingerprint.moved(self.model, self.freeze.bn_modes)
        entry = self.summary["phases"][index]
        entry["freeze_verified"] = not moved if entry.get("freeze_verified") in (None, True) else False
        entry["moved"] = sorted(set(entry.get("moved", [])) | set(moved))
        self._save_summary()
        self.bus.emit(ev.FreezeVerified(index, len(self.fingerprint.digests), moved))

    def _loader(self, dataset, indices: list[int]) -> DataLoader:
        r = self.recipe
        workers = worker_cap(r.data.num_workers if r.data.num_workers >= 0 else auto_workers(len(dataset)))
        return DataLoader(dataset, batch_size=r.batch_size, sampler=indices, num_workers=workers,
                          pin_memory=self.device.device.type == "cuda", persistent_workers=False)

    def _run_epoch(self, epoch: int, phase_index: int, phase: PhaseConfig, batch0: int,
                   resume: dict[str, Any] | None) -> str:
        r = self.recipe
        model = self.model
        order = epoch_order(len(self.data.train), r.batch_size, r.seed, epoch, r.data.max_train_batches)
        n_batches = batches_in(len(order), r.batch_size)
        self.data.train.set_epoch(epoch)
        if resume is not None and batch0 > 0:
            restore_rng_states(resume["rng"])
            sums = resume["running"]
            loss_sum, correct, seen, train_seconds = sums["loss_sum"], sums["correct"], sums["seen"], sums["seconds"]
            data_wait = sums.get("data_wait", 0.0)
        else:
            seed_everything(epoch_seed(r.seed, epoch))
            loss_sum, correct, seen, train_seconds, data_wait = 0.0, 0, 0, 0.0, 0.0
        self.bus.emit(ev.EpochStarted(epoch, phase_index, n_batches))
        set_train_mode(model, self.freeze.bn_modes, training=True)
        if self.features is not None:  # a head-only phase: the head trains on the cached backbone features
            forward = model.get_submodule(self.built.head_path)
            batches = self.features.train_batches(order[batch0 * r.batch_size:], epoch % self.features.train.shape[0],
                                                   r.batch_size)
        else:
            forward = model
            batches = self._loader(self.data.train, order[batch0 * r.batch_size:])
        recent: list[tuple[float, int]] = []
        tick = time.perf_counter()
        for batch, (images, labels) in enumerate(batches, start=batch0):
            data_wait += time.perf_counter() - tick  # the step waited this long for its batch
            self.control.wait_while_paused()
            if self.control.stop_requested:
                train_seconds += time.perf_counter() - tick
                self._stop(epoch, batch, phase_index, {"loss_sum": loss_sum, "correct": correct, "seen": seen,
                                                       "seconds": train_seconds, "data_wait": data_wait})
                self.stopped_at = batch
                return "stopped"
            images, labels = _to_device(images, labels, self.device)
            with self.device.autocast():
                logits = _logits(forward(images))
                loss = self.criterion(logits.float(), labels)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingError(f"the loss became {loss_value} at epoch {epoch + 1}, batch {batch + 1} "
                                    f"(phase '{phase.name}'); lower the learning rate. The last good checkpoint is kept.")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step_batch()
            self.global_step += 1
            n = labels.numel()
            loss_sum += loss_value * n
            correct += int((logits.argmax(1) == labels).sum())
            seen += n
            now = time.perf_counter()
            recent.append((now - tick, n))
            train_seconds += now - tick
            tick = now
            recent = recent[-20:]
            ips = sum(k for _, k in recent) / max(1e-9, sum(t for t, _ in recent))
            self.bus.emit(ev.BatchFinished(epoch, batch, n_batches, self.global_step, loss_value, correct / seen,
                                           current_lrs(self.optimizer), ips))
        lrs = current_lrs(self.optimizer)  # the rates this epoch trained with, before an epoch-wise step
        if self.features is not None:
            val_batches = self.features.val_batches(r.batch_size, r.data.max_val_batches)
        else:
            val_batches = self._loader(self.data.val, list(range(len(self.data.val))))
        val_loss, val_acc = evaluate(forward, val_batches, self.device, self.criterion, r.data.max_val_batches)
        self.bus.emit(ev.ValidationFinished(epoch, val_loss, val_acc))
        self.schedule.step_epoch(val_acc if r.early_stopping.metric == "val_acc" else val_loss)
        train_loss, train_acc = loss_sum / max(1, seen), correct / max(1, seen)
        metric = val_acc if r.early_stopping.metric == "val_acc" else -val_loss
        is_best = self.best is None or metric > self.best + r.early_stopping.min_delta
        if is_best:
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        ips = seen / train_seconds if train_seconds > 0 else 0.0
        self.throughput = [self.throughput[0] + seen, self.throughput[1] + train_seconds]
        self.metrics.append({"epoch": epoch + 1, "phase": phase_index, "phase_name": phase.name,
                             "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
                             "seconds": train_seconds, "images_per_s": ips,
                             "data_wait_share": data_wait / train_seconds if train_seconds > 0 else 0.0,
                             **{f"lr_{k}": v for k, v in lrs.items()}})
        s = self.summary
        s["epochs_done"] = epoch + 1
        s["final_val_acc"], s["final_train_acc"] = val_acc, train_acc
        if is_best:
            s["best_val_acc"], s["best_epoch"] = val_acc, epoch + 1
        s["train_images_per_s"] = self.throughput[0] / self.throughput[1] if self.throughput[1] else None
        s["wall_seconds"] = self.elapsed_before + time.time() - self.session_start
        payload = self._payload(epoch + 1, 0, phase_index)
        self.last_checkpoint = str(save_checkpoint(checkpoint_path(self.run_dir, "last"), payload))
        self.bus.emit(ev.CheckpointSaved(self.last_checkpoint, "last", epoch + 1))
        if is_best:
            best = link_checkpoint(self.last_checkpoint, checkpoint_path(self.run_dir, "best"))
            self.bus.emit(ev.CheckpointSaved(str(best), "best", epoch + 1))
        self._save_summary()
        self.bus.emit(ev.EpochFinished(epoch, phase_index, train_loss, train_acc, val_loss, val_acc, lrs,
                                       train_seconds, ips, is_best,
                                       data_wait / train_seconds if train_seconds > 0 else 0.0))
        if r.early_stopping.patience and self.bad_epochs >= r.early_stopping.patience:
            return "early_stopped"
        return "continue"

    # --- checkpoints and endings ------------------------------------------------------------------------------
    def _payload(self, epoch: int, batch: int, phase_index: int, running: dict | None = None) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch, "batch": batch, "phase": phase_index, "global_step": self.global_step,
            "freeze": self.freeze.to_dict(),
            "rng": rng_states(),
            "running": running or {},
            "best_metric": self.best, "bad_epochs": self.bad_epochs, "throughput": list(self.throughput),
            "elapsed": self.elapsed_before + time.time() - self.session_start,
            "recipe": self.recipe.to_dict(),
            "class_names": list(self.data.classes),
            "preprocessing": self.built.preprocessing.to_dict(),
            "head_path": self.built.head_path,
            "weights_name": self.built.weights_name,
            "summary": dict(self.summary),
        }

    def _stop(self, epoch: int, batch: int, phase_index: int, running: dict) -> None:
        self.summary["status"] = "stopped"
        self.summary["wall_seconds"] = self.elapsed_before + time.time() - self.session_start
        payload = self._payload(epoch, batch, phase_index, running)
        self.last_checkpoint = str(save_checkpoint(checkpoint_path(self.run_dir, "last"), payload))
        self.bus.emit(ev.CheckpointSaved(self.last_checkpoint, "last", epoch))
        self._save_summary()

    def _complete(self, status: str) -> str:
        self.summary["status"] = status
        self.summary["wall_seconds"] = self.elapsed_before + time.time() - self.session_start
        self.summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self._save_summary()
        self.bus.emit(ev.RunFinished(str(self.run_dir), dict(self.summary)))
        return status

    def _fail(self, exc: Exception) -> RunResult:
        message = str(exc) if isinstance(exc, ThawError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            message = f"out of GPU memory ({exc}); lower the batch size or use a smaller model"
        log.error("run failed: %s\n%s", message, traceback.format_exc())
        if hasattr(self, "summary"):
            self.summary["status"] = "failed"
            self.summary["error"] = message
            self._save_summary()
        checkpoint = getattr(self, "last_checkpoint", "")
        self.bus.emit(ev.RunFailed(str(self.run_dir), message, checkpoint))
        return RunResult("failed", str(self.run_dir), getattr(self, "summary", {}), message)


def fit(recipe: Recipe, callbacks: list[ev.EventCallback] | None = None, control: ev.RunControl | None = None,
        runs_root: str | Path | None = None) -> RunResult:
    return Trainer(recipe, callbacks, control, runs_root).fit()


def resume(run_dir: str | Path, callbacks: list[ev.EventCallback] | None = None,
           control: ev.RunControl | None = None) -> RunResult:
    return Trainer.from_run_dir(run_dir, callbacks, control).fit()
