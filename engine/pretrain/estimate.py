"""`pretrain --dry-run`: every check a run makes, then the cost measured on a few real steps — nothing written."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch.utils.data import DataLoader, Subset

from engine.pretrain.config import PretrainConfig
from engine.pretrain.knn import features_of
from engine.pretrain.run import _prepare
from engine.pretrain.views import UnlabeledViews
from engine.recipe import Recipe
from engine.train.devices import pick_device
from engine.train.sampling import epoch_order, seed_everything

TIMED_STEPS = 2  # after one warm-up step


@dataclass
class PretrainEstimate:
    method: str
    images: int
    skipped: int
    batch_size: int
    batches_per_epoch: int
    epochs: int
    step_seconds: float  # one optimizer step, views prepared in the same process (num_workers 0, as the run)
    knn_seconds: float  # one k-NN pass (0 without labelled images)
    total_seconds: float
    device: str
    knn: str

    def lines(self) -> list[str]:
        per_image = self.step_seconds / self.batch_size
        adabn = "; --epochs 0: one pass over the images for their BatchNorm statistics" if self.epochs == 0 else ""
        return [f"method {self.method}: {self.images} unlabeled images ({self.skipped} skipped), batches of "
                f"{self.batch_size}, {self.batches_per_epoch} per epoch, {self.epochs} epochs, on {self.device}",
                f"measured: {self.step_seconds:.3f} s per step ({per_image * 1000:.1f} ms per image), "
                f"k-NN pass {self.knn_seconds:.1f} s ({self.knn})",
                f"estimated time: {self.total_seconds / 60:.1f} min "
                f"(= {self.epochs} epochs × {self.images} images × {per_image:.4f} s + the k-NN passes{adabn})"]

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_pretrain(recipe: Recipe, config: PretrainConfig) -> PretrainEstimate:
    recipe.validate()
    prepared = _prepare(recipe, config)
    device, _ = pick_device(config.device or recipe.device)
    batch = min(config.batch_size or recipe.batch_size, len(prepared.images))
    seed_everything(recipe.seed)
    objective = prepared.method.objective(prepared.backbone, prepared.features, len(prepared.images)).to(device)
    objective.train()
    optimizer = torch.optim.SGD(objective.trainable(), lr=1e-6)  # the cost of a step, not its effect
    data = UnlabeledViews(prepared.images, prepared.views, recipe.seed)
    indices = [i % len(data) for i in range((TIMED_STEPS + 1) * batch)]
    times = []
    loader = iter(DataLoader(Subset(data, indices), batch_size=batch, num_workers=0))
    for _ in range(TIMED_STEPS + 1):
        tick = time.perf_counter()
        views = next(loader)  # the views are made in the run's process too (num_workers 0): part of a step
        loss = objective.loss([v.to(device) for v in views], 0, config.epochs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        objective.after_step(0, config.epochs)
        times.append(time.perf_counter() - tick)
    step = sum(times[1:]) / max(len(times) - 1, 1)
    knn = 0.0
    if prepared.knn_sets is not None:
        bank, queries, _ = prepared.knn_sets
        tick = time.perf_counter()
        features_of(objective.backbone, queries, device)
        knn = (time.perf_counter() - tick) * (len(bank) + len(queries)) / max(len(queries), 1)
    order = epoch_order(len(prepared.images), batch, recipe.seed, 0, config.max_batches)
    per_epoch = math.ceil(len(order) / batch)
    # --epochs 0 is one forward pass over the images (their BatchNorm statistics): about a sixth of a step's time
    # per image (one view of two, no backward), then a last k-NN pass.
    recalibration = step / batch / 6 * len(prepared.images) if config.epochs == 0 else 0.0
    total = config.epochs * per_epoch * step + recalibration + (config.epochs + 1 + (config.epochs == 0)) * knn
    return PretrainEstimate(config.method, len(prepared.images), len(prepared.skipped), batch, per_epoch,
                            config.epochs, step, knn, total, str(device), prepared.knn_note)
