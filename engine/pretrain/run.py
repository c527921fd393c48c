"""A pre-training run: the recipe's backbone continued with a self-supervised objective on unlabeled images.

It is a run like a training run: a run folder (pretrain.json, metrics.csv, batches.csv, summary.json,
checkpoints/last.pt, backbone.pth), events on an EventBus, cooperative pause and stop (RunControl) between two
batches, and an exact resume: an epoch's order comes from (seed, epoch) (engine/train/sampling.py), every view from
(seed, epoch, index) (engine/pretrain/views.py), the global generators are reseeded at each epoch start and saved
at a stop, the learning rate is a function of the step, and the checkpoint holds every tensor of the objective
(momentum networks and lightly's memory bank included) and the optimizer — so a stopped and resumed run steps
through the same losses, bit for bit, as one that never stopped.

One process: none of the methods runs under torchrun here (SimCLR and MoCo would need their negatives gathered
from every process, BYOL and DINO their teacher kept identical on every process; not written yet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine.data.datasets import ImageFiles, prepare_data
from engine.data.scan import scan_unlabeled
from engine.data.transforms import eval_transform
from engine.errors import BadInputError
from engine.io_files import check_target, replace_into, write_json_atomic
from engine.model import zoo
from engine.model.build import build_model
from engine.model.surgery import set_submodule
from engine.pretrain.batchnorm import recalibrate_batchnorm
from engine.pretrain.config import PretrainConfig
from engine.pretrain.events import (
    KnnMeasured,
    PretrainBatchFinished,
    PretrainCheckpointSaved,
    PretrainEpochFinished,
    PretrainFailed,
    PretrainFinished,
    PretrainStarted,
    PretrainStopped,
)
from engine.pretrain.knn import knn_accuracy
from engine.pretrain.lightly_import import lightly_module
from engine.pretrain.methods import MethodInfo, Objective, get_method
from engine.pretrain.record import PretrainFolder
from engine.pretrain.views import UnlabeledViews
from engine.recipe import HeadConfig, Recipe
from engine.train.checkpoints import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from engine.train.devices import pick_device
from engine.train.events import EventBus, EventCallback, RunControl
from engine.train.run_lock import RunLock
from engine.train.runs import new_run_dir, runs_root_for
from engine.train.sampling import epoch_order, epoch_seed, seed_everything
from engine.train.state import RunClock

CONFIG_FILE = "pretrain.json"
CHECKPOINT = "checkpoints/last.pt"
BACKBONE_FILE = "backbone.pth"
MAX_KNN_BANK = 5000  # labelled training images the k-NN monitor keeps as its memory bank


def is_pretrain_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CONFIG_FILE).is_file()


def _under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


@dataclasses.dataclass
class _Prepared:
    """What the checks built: the data, the backbone and the method, before any folder exists."""

    method: MethodInfo
    images: list[str]
    skipped: list[tuple[str, str]]
    backbone: nn.Module
    features: int
    weights_name: str
    views: Any
    preprocessing: Any
    knn_sets: tuple | None  # (bank, queries, classes) or None
    knn_note: str


def _prepare(recipe: Recipe, config: PretrainConfig) -> _Prepared:
    """Every check that can refuse the input (BadInputError: exit 2), cheapest first; nothing is written."""
    config.validate()
    method = get_method(config.method)
    if _under_torchrun():
        raise BadInputError("pre-training runs in one process: no method supports several processes yet "
                            "(SimCLR and MoCo need the negatives of every process, BYOL and DINO one teacher)")
    method.check_family(recipe.model.arch, zoo.family_of(recipe.model.arch))
    lightly_module("loss")  # a missing lightly is said before the images are scanned or the model built
    if config.out:
        check_target(Path(config.out).expanduser(), "weights file")
    if recipe.model.in_channels != 3:
        raise BadInputError(f"pre-training needs RGB images (model.in_channels 3, not {recipe.model.in_channels}): "
                            f"its augmentations change colours")
    scan = scan_unlabeled(config.unlabeled)
    skipped = [(p.path, p.reason) for p in scan.problems]
    if len(scan.images) < 2:
        shown = "; ".join(f"{os.path.basename(p)}: {r}" for p, r in skipped[:3])
        raise BadInputError(f"{scan.root}: {len(scan.images)} usable image(s), at least 2 are needed"
                            + (f" ({len(skipped)} unusable: {shown}{' …' if len(skipped) > 3 else ''})" if skipped
                               else ""))
    # The model as a run builds it (its weights, or its weights_file checked as every weights file is), with a
    # plain Linear head whose input width is the feature vector; the head is then removed.
    model_config = dataclasses.replace(recipe.model, head=HeadConfig())
    built = build_model(model_config, 2, recipe.data)
    head = built.model.get_submodule(built.head_path)
    if not isinstance(head, nn.Linear):
        raise BadInputError(f"{recipe.model.arch}: its classifier is not a Linear layer; no method can pre-train it")
    features = head.in_features
    set_submodule(built.model, built.head_path, nn.Identity())
    views = method.views(built.preprocessing, recipe.data.horizontal_flip)
    knn_sets, note = _knn_sets(recipe, built.preprocessing)
    return _Prepared(method, scan.images, skipped, built.model, features, built.weights_name, views,
                     built.preprocessing, knn_sets, note)


def _knn_sets(recipe: Recipe, preprocessing) -> tuple[tuple | None, str]:
    """The labelled images of the recipe's data, seen as evaluation sees them, for the k-NN monitor."""
    if not recipe.data.root and recipe.data.dataset == "folder":
        return None, "off (the recipe names no labelled images)"
    transform = eval_transform(preprocessing)
    try:
        data = prepare_data(recipe.data, transform, transform, 3, recipe.seed)
    except BadInputError as exc:
        return None, f"off (the recipe's labelled images cannot be used: {exc})"
    bank = data.train
    if len(bank) > MAX_KNN_BANK:
        bank = torch.utils.data.Subset(bank, list(range(0, len(bank), math.ceil(len(bank) / MAX_KNN_BANK))))
    return ((bank, data.val, len(data.classes)),
            f"{len(bank)} labelled training images vote for {len(data.val)} validation images")


def images_digest(paths: list[str]) -> str:
    """Which images, in which order: a resume needs the very list the run started with."""
    return hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest()


def _save_weights(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """A plain state dict, written atomically (temp file beside it, fsync, rename)."""
    path = check_target(Path(path).expanduser(), "weights file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BadInputError(f"weights file {path} cannot be written: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        replace_into(tmp, path, "weights file")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class PretrainRun:
    """`PretrainRun(recipe, config, callbacks, control).run()` → "finished" or "stopped" (a failure raises after
    `PretrainFailed`); `PretrainRun.from_run_dir(folder, …)` continues a stopped one."""

    def __init__(self, recipe: Recipe, config: PretrainConfig, callbacks: list[EventCallback] | None = None,
                 control: RunControl | None = None, runs_root: str | Path | None = None,
                 run_dir: str | Path | None = None):
        recipe.validate()
        self.recipe, self.config = recipe, config
        self.control = control or RunControl()
        self.bus = EventBus(list(callbacks or []))
        prepared = _prepare(recipe, config)
        self.method = prepared.method
        self.device, _ = pick_device(config.device or recipe.device)
        self.batch_size = min(config.batch_size or recipe.batch_size, len(prepared.images))
        self.lr = config.lr or self.method.lr_for(self.batch_size)
        self.seed = recipe.seed
        # The recipe's loader workers when it names a number; "automatic" (-1) makes the views in this process.
        self.workers = max(0, recipe.data.num_workers)
        self.dataset = UnlabeledViews(prepared.images, prepared.views, self.seed)
        self.prepared = prepared
        seed_everything(self.seed)  # the heads' initial weights
        self.objective: Objective = self.method.objective(prepared.backbone, prepared.features,
                                                          len(prepared.images)).to(self.device)
        self.optimizer = self._optimizer()
        self.epoch, self.batch, self.step = 0, 0, 0
        self.elapsed_before = 0.0
        self.run_id = uuid.uuid4().hex
        self.rng: dict | None = None  # the generators' states at a mid-epoch stop
        self.knn_start: float | None = None
        self.folder_rows: dict = {"epochs": [], "batches": []}
        if run_dir is None:
            name = f"pretrain-{config.method}-{recipe.model.arch}"
            self.run_dir = new_run_dir(runs_root or runs_root_for(recipe.output_dir), name)
            write_json_atomic(self.run_dir / CONFIG_FILE, {"pretrain": config.to_dict(), "recipe": recipe.to_dict(),
                                                           "run_id": self.run_id}, "pre-training settings")
        else:
            self.run_dir = Path(run_dir)
        self.lock = RunLock(self.run_dir)

    # --- resume ---------------------------------------------------------------------------------------------

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, callbacks: list[EventCallback] | None = None,
                     control: RunControl | None = None) -> PretrainRun:
        run_dir = Path(run_dir)
        try:
            saved = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
            recipe = Recipe.from_dict(saved["recipe"])
            config = PretrainConfig.from_dict(saved["pretrain"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInputError(f"{run_dir} is not a pre-training run folder ({CONFIG_FILE}: {exc})") from None
        checkpoint = run_dir / CHECKPOINT
        if not checkpoint.is_file():
            raise BadInputError(f"{run_dir} has no checkpoint to resume from ({CHECKPOINT})")
        run = cls(recipe, config, callbacks, control, run_dir=run_dir)
        state = load_checkpoint(checkpoint)
        if state.get("run_id") != saved.get("run_id"):
            raise BadInputError(f"{checkpoint} belongs to another run (id {state.get('run_id')}, the folder's "
                                f"{saved.get('run_id')})")
        run.run_id = state["run_id"]
        before, now = state.get("images"), images_digest(run.dataset.paths)
        if before is not None and before != now:
            raise BadInputError(f"the images under {config.unlabeled} changed since the run started (now "
                                f"{len(run.dataset)}): an exact resume needs the same images; start a new run")
        run.objective.load_full_state(state["objective"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.epoch, run.batch, run.step = state["epoch"], state["batch"], state["step"]
        run.elapsed_before = float(state["elapsed_seconds"])
        run.knn_start = state["knn_start"]
        run.rng = state.get("rng")
        run.folder_rows = {"epochs": list(state["epoch_rows"]), "batches": list(state["batch_rows"])}
        return run

    # --- the run --------------------------------------------------------------------------------------------

    def _optimizer(self) -> torch.optim.Optimizer:
        params = self.objective.trainable()
        if self.method.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.method.weight_decay)
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.method.weight_decay)

    def _batches(self, epoch: int) -> list[list[int]]:
        order = epoch_order(len(self.dataset), self.batch_size, self.seed, epoch, self.config.max_batches)
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _lr_at(self, step: int, total: int) -> float:
        """Cosine from the rate to 0 over the run's steps (a function of the step: nothing to restore)."""
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))

    def _knn(self, stoppable: bool) -> float | None:
        """The k-NN accuracy now. Only the start's measurement gives way to a stop (it is taken again on resume);
        an epoch's is part of its record, so a stop asked for during it waits for it."""
        if self.prepared.knn_sets is None:
            return None
        bank, queries, classes = self.prepared.knn_sets
        return knn_accuracy(self.objective.backbone, bank, queries, classes, self.device, self.config.knn_k,
                            self.control if stoppable else None)

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.objective.backbone.state_dict().items()}

    def _save(self, epoch: int, batch: int, clock: RunClock, mid_epoch: bool) -> Path:
        payload = {
            "kind": "pretrain", "run_id": self.run_id, "images": images_digest(self.dataset.paths),
            "model": self.backbone_state(),
            "objective": {k: v.cpu() for k, v in self.objective.full_state().items()},
            "optimizer": self.optimizer.state_dict(), "epoch": epoch, "batch": batch, "step": self.step,
            "elapsed_seconds": clock.elapsed(), "knn_start": self.knn_start,
            "epoch_rows": self.folder.epochs, "batch_rows": self.folder.batches,
            **({"rng": rng_states()} if mid_epoch else {}),
        }
        path = save_checkpoint(self.run_dir / CHECKPOINT, payload)
        self.bus.emit(PretrainCheckpointSaved(path=str(path), epoch=epoch, batch=batch))
        return path

    def run(self) -> str:
        with self.lock:
            self.folder = PretrainFolder(self.run_dir, self.folder_rows, self.config, self.recipe, self.run_id)
            self.folder.summary["knn_start"] = self.knn_start
            self.bus.subscribe(self.folder, critical=True, first=True)
            try:
                return self._run()
            except BaseException as exc:
                if not isinstance(exc, KeyboardInterrupt):
                    self.bus.emit(PretrainFailed(run_dir=str(self.run_dir), error=str(exc) or type(exc).__name__))
                raise

    def _run(self) -> str:
        epochs = self.config.epochs
        per_epoch = len(self._batches(0))
        total_steps = sum(len(self._batches(e)) for e in range(epochs))
        clock = RunClock(self.elapsed_before)
        self.bus.emit(PretrainStarted(
            run_dir=str(self.run_dir), method=self.method.name, arch=self.recipe.model.arch,
            weights=self.prepared.weights_name, images=len(self.dataset), skipped=self.prepared.skipped,
            epochs=epochs, batches=per_epoch, batch_size=self.batch_size, lr=self.lr, device=str(self.device),
            knn=self.prepared.knn_note, start_epoch=self.epoch, start_batch=self.batch))
        if self.epoch == 0 and self.batch == 0 and self.knn_start is None:
            self.knn_start = self._knn(stoppable=True)
            if self.knn_start is not None:
                self.bus.emit(KnnMeasured(epochs_done=0, knn_acc=self.knn_start))
        self.objective.train()
        for epoch in range(self.epoch, epochs):
            start = self.batch if epoch == self.epoch else 0
            if self.control.stop_requested:
                return self._stop(epoch, start, clock)
            if start == 0:
                seed_everything(epoch_seed(self.seed, epoch))
            elif self.rng is not None:
                restore_rng_states(self.rng)
            self.dataset.set_epoch(epoch)
            batches = self._batches(epoch)
            # The loader's own seed comes from this generator, not the global one (which it would advance).
            loader = DataLoader(self.dataset, batch_sampler=batches[start:], num_workers=self.workers,
                                generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch)))
            seconds = 0.0  # this session's training time of the epoch (a resumed epoch: its remaining part)
            for index, views in enumerate(loader, start=start):
                clock.add_pause(self.control.wait_while_paused())
                if self.control.stop_requested:
                    return self._stop(epoch, index, clock)
                tick = time.perf_counter()
                views = [v.to(self.device, non_blocking=True) for v in views]
                lr = self._lr_at(self.step, total_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss = self.objective.loss(views, epoch, epochs)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise BadInputError(f"the {self.method.name} loss became {value} at epoch {epoch + 1}, "
                                        f"batch {index + 1}: lower the rate (--lr, now {lr:g})")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.objective.before_step(epoch)
                self.optimizer.step()
                self.objective.after_step(epoch, epochs)
                self.step += 1
                took = time.perf_counter() - tick
                seconds += took
                self.bus.emit(PretrainBatchFinished(
                    epoch=epoch, batch=index, batches=len(batches), global_step=self.step, loss=value,
                    lr=lr, images_per_s=len(views[0]) / took if took > 0 else 0.0))
            self.batch = 0
            losses = [row["loss"] for row in self.folder.batches if row["epoch"] == epoch]
            knn = self._knn(stoppable=False)
            if knn is not None:
                self.bus.emit(KnnMeasured(epochs_done=epoch + 1, knn_acc=knn))
            self.bus.emit(PretrainEpochFinished(
                epoch=epoch, epochs=epochs, loss=sum(losses) / max(len(losses), 1), knn_acc=knn,
                seconds=seconds, elapsed_seconds=clock.elapsed()))
            self._save(epoch + 1, 0, clock, mid_epoch=False)
        return self._finish(clock)

    def _stop(self, epoch: int, batch: int, clock: RunClock) -> str:
        path = self._save(epoch, batch, clock, mid_epoch=batch > 0)
        self.bus.emit(PretrainStopped(run_dir=str(self.run_dir), checkpoint=str(path), epoch=epoch, batch=batch,
                                      elapsed_seconds=clock.elapsed()))
        return "stopped"

    def _finish(self, clock: RunClock) -> str:
        layers, knn_end = 0, None
        if self.config.epochs == 0:
            # AdaBN (engine/pretrain/batchnorm.py): the statistics of the images as evaluation sees them. Only
            # without training: after the objective trained, its weights fit the statistics of the augmented views
            # it trained on, and re-estimating them on clean images lost points in both runs measured
            # (bench/README.md "Issue 24").
            clean = ImageFiles([(path, 0) for path in self.dataset.paths],
                               eval_transform(self.prepared.preprocessing))
            layers = recalibrate_batchnorm(self.objective.backbone, clean, self.device, control=self.control)
            if self.control.stop_requested:
                return self._stop(self.config.epochs, 0, clock)
            knn_end = self._knn(stoppable=False)
        else:
            ends = [row["knn_acc"] for row in self.folder.epochs if row.get("knn_acc") is not None]
            knn_end = ends[-1] if ends else None
        state = self.backbone_state()
        written = _save_weights(state, self.run_dir / BACKBONE_FILE)
        if self.config.out:
            written = _save_weights(state, self.config.out)
        self.bus.emit(PretrainFinished(run_dir=str(self.run_dir), weights_file=str(written),
                                       epochs=self.config.epochs, knn_start=self.knn_start, knn_end=knn_end,
                                       batchnorm_layers=layers, elapsed_seconds=clock.elapsed()))
        return "finished"
