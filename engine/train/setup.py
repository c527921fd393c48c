"""What is built once for a run, before anything trains: the device, the data, the model, the loss, and every
phase's freeze plan and groups checked — so a bad phase 3 fails before phase 1 trains, and bad input fails before
a run folder exists.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine.data.datasets import ImageFiles, PreparedData, prepare_data
from engine.data.memory import check_input_memory
from engine.data.ram_cache import CacheEstimate, DecodedImageCache, default_budget_bytes, estimate, fill
from engine.data.transforms import eval_transform, train_transform
from engine.environment import max_workers_override
from engine.errors import BadInputError
from engine.model.build import BuiltModel, build_model, resolve_preprocessing
from engine.model.phase_checks import validate_phase
from engine.recipe import GroupSpec, Recipe, lr_factor
from engine.train import events as ev
from engine.train.checkpoints import load_model_state
from engine.train.devices import DeviceSetup, setup_device
from engine.train.distributed import SINGLE, DistContext
from engine.train.distributed_data import build_feature_set_sharded
from engine.train.distributed_model import scaled_groups, with_sync_batchnorm, wrap_for_training
from engine.train.feature_cache import build_feature_set, head_only
from engine.train.sampling import epoch_order, rank_order, seed_everything

log = logging.getLogger(__name__)


def auto_workers(dataset_size: int) -> int:
    if dataset_size < 512:
        return 0  # spawning workers costs more than decoding a few hundred small images
    return max(0, min(8, (os.cpu_count() or 2) - 1))


def worker_cap(workers: int) -> int:
    """THAW_MAX_WORKERS caps loader workers (0 in a packaged build, where worker processes cannot spawn)."""
    cap = max_workers_override()
    return workers if cap is None else min(workers, cap)


@dataclass
class RunSetup:
    recipe: Recipe
    device: DeviceSetup
    data: PreparedData
    built: BuiltModel
    model: nn.Module  # on the device
    criterion: nn.Module
    phase_groups: list[list[GroupSpec]]  # per phase, resolved from its preset or its explicit groups
    phase_head_only: list[bool]  # per phase: does it train only the head (features can be cached)?
    dist: DistContext = SINGLE  # this process's part in a run over several (engine/train/distributed.py)
    run_id: str = ""  # the run's identity, in summary.json and every checkpoint (set by the trainer)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.epoch_order(0)) / self.recipe.batch_size)

    @property
    def global_batch(self) -> int:
        """Images per optimizer step: the recipe's batch_size on each of the run's processes."""
        return self.recipe.batch_size * self.dist.world_size

    def epoch_order(self, epoch: int) -> list[int]:
        """This process's samples of `epoch`, in order: the epoch's seeded order of global batches, this rank's
        share of each (engine/train/sampling.py); the whole order in a one-process run."""
        r, dist = self.recipe, self.dist
        order = epoch_order(len(self.data.train), self.global_batch, r.seed, epoch, r.data.max_train_batches)
        return rank_order(order, r.batch_size, dist.rank, dist.world_size) if dist.active else order

    def train_module(self, module: nn.Module) -> nn.Module:
        """What a training batch goes through: `module`, in DistributedDataParallel when the run has several
        processes (built again when its trainable parameters change)."""
        return wrap_for_training(module, self.dist)

    @property
    def feature_builder(self):
        """feature_cache.build_feature_set, or its sharded form over the run's processes."""
        if not self.dist.active:
            return build_feature_set
        return functools.partial(build_feature_set_sharded, self.dist)

    @property
    def lr_groups(self) -> list[str]:
        return list(dict.fromkeys(g.name for specs in self.phase_groups for g in specs))

    def loader(self, dataset, indices: list[int]) -> DataLoader:
        r = self.recipe
        workers = worker_cap(r.data.num_workers if r.data.num_workers >= 0 else auto_workers(len(dataset)))
        # Its own generator: creating the iterator draws a base seed, which from the global RNG would shift every
        # dropout mask of a run resumed mid-epoch by one draw (the global RNG is restored before the loader is made).
        return DataLoader(dataset, batch_size=r.batch_size, sampler=indices, num_workers=workers,
                          pin_memory=self.device.device.type == "cuda", persistent_workers=False,
                          generator=torch.Generator().manual_seed(r.seed))

    def checkpoint_identity(self) -> dict[str, Any]:
        """What a checkpoint needs besides the training state to rebuild and use the model on its own."""
        return {"recipe": self.recipe.to_dict(), "class_names": list(self.data.classes),
                "preprocessing": self.built.preprocessing.to_dict(), "head_path": self.built.head_path,
                "weights_name": self.built.weights_name, "world_size": self.dist.world_size,
                "global_batch": self.global_batch, "run_id": self.run_id}


def assemble(recipe: Recipe, bus: ev.EventBus, checkpoint: dict[str, Any] | None = None,
             fill_ram_cache: bool = True, *, dist: DistContext = SINGLE) -> RunSetup:
    """Build everything a run needs; `checkpoint` (resuming) restores the model's weights instead of loading the
    pretrained ones. `dist`: this process's part in a run over several (its GPU, its share of the data). Raises
    BadInputError / RecipeError for input that cannot be used. `fill_ram_cache` False: decode nothing ahead (a cost
    estimate asks `ram_cache_plan` what the run would cache instead)."""
    r = recipe
    r.distributed.processes = dist.world_size  # recipe.json and the checkpoints say how the run ran
    device = setup_device(dist.training_device(r.device), r.precision, r.channels_last)
    prep = resolve_preprocessing(r.model, r.data)
    check_input_memory(r.batch_size, r.model.in_channels, prep.crop_size)  # before the data scan and the model
    seed_everything(r.seed)
    augment = train_transform(prep, r.data.augmentation, r.data.horizontal_flip)
    data = prepare_data(r.data, augment, eval_transform(prep), r.model.in_channels, seed=r.seed)
    bus.emit(ev.DataPrepared(classes=list(data.classes), train_size=len(data.train), val_size=len(data.val),
                             skipped=[(p.path, p.reason) for p in data.skipped]))
    weights_label = r.model.weights_file or r.model.weights

    def download_progress(done: int, total: int) -> None:
        bus.emit(ev.WeightsDownloadProgress(weights=weights_label, file=r.model.arch, done_bytes=done,
                                            total_bytes=total))

    seed_everything(r.seed)  # the new head's initialisation depends on the seed only
    built = build_model(r.model, len(data.classes), r.data, download_progress, pretrained=checkpoint is None)
    if built.load_report is not None:
        bus.emit(ev.WeightsLoaded(source=built.weights_name, report=built.load_report.text()))
    built.model = with_sync_batchnorm(built.model, r, dist)
    model = built.model.to(device.device)
    if device.channels_last:
        model = model.to(memory_format=torch.channels_last)
    groups, head_only_phases = [], []
    for i, phase in enumerate(r.phases):  # a bad phase 3 fails before phase 1 trains
        checked = validate_phase(model, built.stages, phase, i)
        head_only_phases.append(head_only(model, built.head_path, checked.freeze.bn_modes))
        groups.append(scaled_groups(checked.groups, lr_factor(r.distributed.lr_scaling, dist.world_size)))
    if checkpoint is not None:
        load_model_state(model, checkpoint["model"], "the checkpoint being resumed", built.head_path)
    setup = RunSetup(r, device, data, built, model, nn.CrossEntropyLoss(label_smoothing=r.label_smoothing), groups,
                     head_only_phases, dist)
    check_enough_data(setup)
    if fill_ram_cache:
        _enable_ram_cache(setup, bus)
    return setup


def check_enough_data(setup: RunSetup) -> None:
    """Every process needs a share of at least one step."""
    if setup.dist.active and not setup.epoch_order(0):
        raise BadInputError(f"the training set has {len(setup.data.train)} images: too few for "
                            f"{setup.dist.world_size} processes with batch_size {setup.recipe.batch_size} (each needs "
                            f"at least 2 per step); use fewer processes")


@dataclass
class RamCachePlan:
    """What the RAM cache of decoded images would hold for a run, decided before anything is decoded."""

    datasets: list[ImageFiles]  # the data sets it caches (validation only under TrivialAugment)
    guess: CacheEstimate
    budget: int
    enabled: bool

    @property
    def workers(self) -> int:
        """Threads that decode while the cache fills."""
        return max(1, min(8, (os.cpu_count() or 2)))


def ram_cache_plan(setup: RunSetup) -> RamCachePlan | None:
    """Keep decoded images in RAM when they fit — unless every phase trains on cached features anyway. None when
    the cache is not considered at all."""
    r, data = setup.recipe, setup.data
    if r.data.ram_cache == "off" or not isinstance(data.train, ImageFiles):
        return None
    if r.data.cache_features == "auto" and all(setup.phase_head_only):
        return None
    prep = setup.built.preprocessing
    budget = r.data.ram_cache_mb * 2**20 or default_budget_bytes()
    # TrivialAugment crops the full-resolution image first; caching its training images would change them.
    datasets = [data.val] if r.data.augmentation == "trivialaugment" else [data.train, data.val]
    paths = [path for ds in datasets for path, _ in ds.samples]
    guess = estimate(paths, prep.resize_size, r.model.in_channels, budget)
    return RamCachePlan(datasets, guess, budget, guess.fits or r.data.ram_cache == "on")


def _enable_ram_cache(setup: RunSetup, bus: ev.EventBus) -> None:
    plan = ram_cache_plan(setup)
    if plan is None:
        return
    guess = plan.guess
    bus.emit(ev.DecodedCacheEstimated(images=guess.images, bytes=guess.bytes, budget=plan.budget, enabled=plan.enabled,
                                      message=guess.text()))
    if not plan.enabled:
        return
    prep = setup.built.preprocessing
    started = time.perf_counter()
    cache = DecodedImageCache(prep.resize_size, prep.interpolation, plan.budget)  # one budget for both sets
    offset = 0
    for ds in plan.datasets:
        ds.cache = cache.view(offset)
        fill(ds.cache, len(ds), ds.decode, plan.workers)
        offset += len(ds)
    bus.emit(ev.DecodedCacheFilled(images=len(cache.images), bytes=cache.bytes, refused=cache.refused,
                                   seconds=time.perf_counter() - started))
