"""Cached features: when a phase trains only the head, the frozen backbone is run once per image (per view)
and the head trains on the stored features — feature extraction in seconds instead of minutes.

The features are the head's input, captured by a forward hook with the model in eval mode (so dropout layers
before the head are off, and frozen BatchNorm layers use their running statistics, as they do during training).
A cache entry is keyed by everything that determines the features: the backbone's exact tensors, the
architecture, the preprocessing and augmentation, the number of views and the seed, and every image's path,
size and modification time. It lives in memory and, within a size budget, on disk (least recently used
entries are evicted first).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from engine.model.freezing import BN_TRAIN, _digest
from engine.model.fusion import fold_batch_norms
from engine.model.stages import covers
from engine.train.checkpoints import save_checkpoint

CACHE_ENV = "THAW_CACHE_DIR"


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(platformdirs.user_cache_dir("Thaw", appauthor=False)) / "features"


def head_only(model: nn.Module, head_path: str, bn_modes: dict[str, str]) -> bool:
    """Can this phase train on cached features? Only the head trains, and nothing before it changes with
    training: no BatchNorm outside the head updates its statistics."""
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not trainable or not all(covers(head_path, n) for n in trainable):
        return False
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and not covers(head_path, name) and bn_modes.get(name) == BN_TRAIN:
            return False
    return True


@dataclass
class FeatureSet:
    train: torch.Tensor  # (views, N, D) float32
    train_labels: torch.Tensor  # (N,)
    val: torch.Tensor  # (M, D)
    val_labels: torch.Tensor  # (M,)
    key: str
    seconds: float  # time spent computing (0 when loaded)
    from_disk: bool

    def to(self, device: torch.device) -> FeatureSet:
        return FeatureSet(self.train.to(device), self.train_labels.to(device), self.val.to(device),
                          self.val_labels.to(device), self.key, self.seconds, self.from_disk)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.train, self.train_labels, self.val, self.val_labels))

    def train_batches(self, order: list[int], view: int,
                      batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        index = torch.tensor(order, dtype=torch.long, device=self.train.device)
        for start in range(0, len(order), batch_size):
            idx = index[start:start + batch_size]
            yield self.train[view].index_select(0, idx), self.train_labels.index_select(0, idx)

    def val_batches(self, batch_size: int, max_batches: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, start in enumerate(range(0, len(self.val), batch_size)):
            if max_batches and i >= max_batches:
                return
            yield self.val[start:start + batch_size], self.val_labels[start:start + batch_size]


def dataset_identity(dataset) -> list:
    """What the features of a dataset depend on, apart from the model: its files (path, size, mtime) or, for
    torchvision data sets, their class and length."""
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return [type(getattr(dataset, "base", dataset)).__name__, len(dataset)]
    out = []
    for path, label in samples:
        try:
            st = os.stat(path)
            out.append([path, label, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([path, label, None, None])
    return out


def cache_key(model: nn.Module, head_path: str, describe: dict, train_set, val_set) -> str:
    """A digest of everything the cached features depend on."""
    backbone = hashlib.sha256()
    for name, tensor in list(model.state_dict().items()):
        if not covers(head_path, name):
            backbone.update(name.encode())
            backbone.update(_digest(tensor).encode())
    payload = json.dumps({"backbone": backbone.hexdigest(), **describe,
                          "train": dataset_identity(train_set), "val": dataset_identity(val_set)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@torch.no_grad()
def compute_features(model: nn.Module, head_path: str, loader: DataLoader, device: torch.device, autocast,
                     channels_last: bool, progress: Callable[[int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Run the (eval-mode: see build_feature_set) model over the loader and capture the head's input. None when
    stopped."""
    captured: list[torch.Tensor] = []

    def capture(_module, inputs) -> None:
        if not captured:  # the first module of the head to run receives the head's input
            captured.append(torch.flatten(inputs[0], 1).float())

    # Pre-hooks on the head and every module inside it: a head that is a container (Dropout → Linear, or a hidden
    # layer) is inlined by the torch.fx trace of fold_batch_norms, so only its children are called there.
    head = model.get_submodule(head_path)
    hooks = [m.register_forward_pre_hook(capture) for m in head.modules()]
    feats, labels = [], []
    try:
        for images, y in loader:
            if should_stop and should_stop():
                return None
            images = images.to(device, non_blocking=device.type == "cuda")
            if channels_last and images.ndim == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            captured.clear()
            with autocast():
                model(images)
            feats.append(captured[0].cpu())
            labels.append(y.cpu())
            if progress:
                progress(len(y))
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(feats), torch.cat(labels).long()


class FeatureStore:
    """On-disk entries under a size budget (LRU by access time), plus the entry last used in this process."""

    _memory: dict[str, FeatureSet] = {}

    def __init__(self, folder: Path | None = None, budget_mb: int = 2048):
        self.folder = Path(folder) if folder else default_cache_dir()
        self.budget = budget_mb * 1024 * 1024

    def get(self, key: str) -> FeatureSet | None:
        if key in self._memory:
            return self._memory[key]
        path = self.folder / f"{key}.pt"
        if self.budget and path.is_file():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                os.utime(path)  # mark as recently used
                entry = FeatureSet(data["train"], data["train_labels"], data["val"], data["val_labels"], key, 0.0, True)
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never fatal
                path.unlink(missing_ok=True)
                return None
            self._remember(entry)
            return entry
        return None

    def put(self, entry: FeatureSet) -> None:
        self._remember(entry)
        if not self.budget or entry.nbytes > self.budget:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.folder / f"{entry.key}.pt", {"train": entry.train, "train_labels": entry.train_labels,
                                                          "val": entry.val, "val_labels": entry.val_labels})
        self._evict()

    def _remember(self, entry: FeatureSet) -> None:
        type(self)._memory = {entry.key: entry.to(torch.device("cpu"))}  # one entry: bounded memory

    def _evict(self) -> None:
        """Keep the most recently used entries that fit the budget together; delete the rest."""
        entries = []
        for path in self.folder.glob("*.pt"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # evicted meanwhile by another run sharing the cache
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, path))
        total = 0
        for _, size, path in sorted(entries, reverse=True):  # newest first (ties: by size, then name)
            total += size
            if total > self.budget:
                path.unlink(missing_ok=True)

    @classmethod
    def forget_memory(cls) -> None:
        cls._memory = {}


def build_feature_set(model: nn.Module, head_path: str, make_loader: Callable, train_set, val_set, views: int,
                      device, autocast, channels_last: bool, describe: dict, store: FeatureStore,
                      progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> FeatureSet | None:
    """Load the features from the store or compute them: `views` passes over the training set (view v uses the
    augmentation of epoch v) and one over the validation set."""
    key = cache_key(model, head_path, {**describe, "views": views}, train_set, val_set)
    cached = store.get(key)
    if cached is not None:
        return cached
    started = time.perf_counter()
    total = views * len(train_set) + len(val_set)
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], total)

    was_training = model.training
    model.eval()
    try:
        runner, _folded = fold_batch_norms(model)  # the same features, ~1.1x faster (engine/model/fusion.py)
        train_views = []
        for view in range(views):
            train_set.set_epoch(view)
            result = compute_features(runner, head_path, make_loader(train_set, list(range(len(train_set)))),
                                      device, autocast, channels_last, step, should_stop)
            if result is None:
                return None
            train_views.append(result[0])
            train_labels = result[1]
        val = compute_features(runner, head_path, make_loader(val_set, list(range(len(val_set)))), device,
                               autocast, channels_last, step, should_stop)
        if val is None:
            return None
    finally:
        model.train(was_training)
    entry = FeatureSet(torch.stack(train_views), train_labels, val[0], val[1], key,
                       time.perf_counter() - started, False)
    store.put(entry)
    return entry
