"""The data side of a run over several processes: sharded validation and sharded cached features. Each rank's
slice of the one seeded order of an epoch is engine/train/sampling.py's `rank_order`.

**Validation** splits the validation images across the ranks (every W-th image) and reduces the loss and accuracy
sums, so the figures are over the whole validation set — exactly those of one process.

**Cached features** (a head-only phase): each rank runs the frozen backbone over every W-th image, the pieces are
gathered (all_gather) and every rank holds the whole set; rank 0 of each machine stores it in the feature cache.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch

from engine.model.fusion import fold_batch_norms
from engine.train.distributed import DistContext
from engine.train.eval_step import evaluate
from engine.train.feature_cache import FeatureSet, FeatureStore, cache_key, compute_features


def val_shard(n: int, per_process_batch: int, max_batches: int, rank: int, world: int) -> list[int]:
    """This rank's validation images: every W-th of the first `max_batches` global batches (all when 0)."""
    limit = min(n, max_batches * per_process_batch * world) if max_batches else n
    return list(range(rank, limit, world))


def validate_sharded(phase, dist: DistContext) -> tuple[float, float]:
    """(mean loss, accuracy) over the whole validation set: each rank evaluates its shard, the sums are reduced.
    The module evaluated is the one that trains, unwrapped (no collective inside: shards may differ by one)."""
    setup, r = phase.setup, phase.setup.recipe
    features = phase.features
    n = int(features.val.shape[0]) if features is not None else len(setup.data.val)
    indices = val_shard(n, r.batch_size, r.data.max_val_batches, dist.rank, dist.world_size)
    if features is not None:
        module = setup.model.get_submodule(setup.built.head_path)
        batches = _feature_batches(features.val, features.val_labels, indices, r.batch_size)
    else:
        module = setup.model
        batches = setup.loader(setup.data.val, indices) if indices else []
    loss, acc = evaluate(module, batches, setup.device, setup.criterion) if indices else (0.0, 0.0)
    seen = len(indices)
    loss_sum, correct, total = dist.all_reduce([loss * seen, acc * seen, float(seen)])
    if total == 0:
        return float("nan"), 0.0
    return loss_sum / total, correct / total


def _feature_batches(features: torch.Tensor, labels: torch.Tensor, indices: list[int], batch_size: int
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    index = torch.tensor(indices, dtype=torch.long, device=features.device)
    for start in range(0, len(indices), batch_size):
        idx = index[start:start + batch_size]
        yield features.index_select(0, idx), labels.index_select(0, idx)


def build_feature_set_sharded(dist: DistContext, model, head_path: str, make_loader: Callable, train_set, val_set,
                              views: int, device, autocast, channels_last: bool, describe: dict, store: FeatureStore,
                              progress: Callable[[int, int], None] | None = None,
                              should_stop: Callable[[], bool] | None = None) -> FeatureSet | None:
    """`feature_cache.build_feature_set` over the ranks: the same key and the same features (each rank computes
    every W-th image, then all gather), computed only when some rank lacks them in its cache. A stop is agreed
    at every batch (`dist.poll_stop`), so every rank returns None together."""
    key = cache_key(model, head_path, {**describe, "views": views}, train_set, val_set)
    cached = store.get(key)
    if dist.all_reduce([0.0 if cached is None else 1.0])[0] == dist.world_size:
        return cached
    started = time.perf_counter()
    total = views * len(train_set) + len(val_set)
    done = [0]

    def step(n: int) -> None:
        done[0] += n * dist.world_size  # rank 0 speaks for all: the ranks advance together
        if progress:
            progress(min(done[0], total), total)

    was_training = model.training
    model.eval()
    try:
        runner, _folded = fold_batch_norms(model)
        train_views, train_labels = [], None
        for view in range(views):
            train_set.set_epoch(view)
            result = _gathered(dist, runner, head_path, make_loader, train_set, device, autocast, channels_last,
                               step)
            if result is None:
                return None
            train_views.append(result[0])
            train_labels = result[1]
        val = _gathered(dist, runner, head_path, make_loader, val_set, device, autocast, channels_last, step)
        if val is None:
            return None
    finally:
        model.train(was_training)
    entry = FeatureSet(torch.stack(train_views), train_labels, val[0], val[1], key, time.perf_counter() - started,
                       False)
    if dist.local_rank == 0:  # one writer per machine (each machine has its own cache folder)
        store.put(entry)
    return entry


def _gathered(dist: DistContext, runner, head_path: str, make_loader: Callable, dataset, device, autocast,
              channels_last: bool, step: Callable[[int], None]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Features and labels of the whole `dataset` in index order: this rank computes indices r, r+W, … (padded to
    the same count on every rank, so the ranks run the same number of batches), then all ranks gather."""
    n, world = len(dataset), dist.world_size
    per_rank = math.ceil(n / world)
    indices = [min(dist.rank + world * j, n - 1) for j in range(per_rank)]
    result = compute_features(runner, head_path, make_loader(dataset, indices), device, autocast, channels_last,
                              step, dist.poll_stop)
    if result is None:
        return None
    feats, labels = result
    parts = torch.stack(dist.all_gather_tensor(feats))  # (W, per_rank, D): parts[r][j] is image r + W·j
    label_parts = torch.stack(dist.all_gather_tensor(labels))
    feats = parts.transpose(0, 1).reshape(per_rank * world, -1)[:n]
    labels = label_parts.transpose(0, 1).reshape(per_rank * world)[:n]
    return feats.contiguous(), labels.long()
