"""The short fine-tune that lets a pruned model recover, and the validation accuracy that measures it.

Every layer trains (pruning changed every layer's inputs, not only the head's). AdamW at 1e-4 by default, decayed
to zero by a cosine over the epochs, weight decay 0.01 on weights only (not on norms and biases, as the trainer's
groups): the surviving weights are already close to a good solution, and a small adaptive rate moves every layer
by about the same relative step whatever its scale — no rate to tune per architecture — without the large updates
that would wash out the pretrained features on a small data set. BatchNorm layers train too: after pruning the
statistics they hold describe inputs that no longer exist, and fresh batches re-estimate them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader


class RecoveryStopped(Exception):
    """`should_stop()` turned true between batches."""


@dataclass(frozen=True)
class RecoverySettings:
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 32
    label_smoothing: float = 0.0
    workers: int = 0
    seed: int = 0

    @property
    def optimizer_text(self) -> str:
        return (f"AdamW lr {self.lr:g} (cosine to 0 over {self.epochs} epoch(s)), weight decay {self.weight_decay:g} "
                f"on weights, all layers, batch {self.batch_size}")


@dataclass
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    images: int
    lr: float


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # norms and biases are 1-d
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model: nn.Module, dataset, device: torch.device, batch_size: int,
             should_stop: Callable[[], bool] = lambda: False, workers: int = 0) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on `dataset` (eval mode)."""
    model.eval()
    correct, total, loss = 0, 0, 0.0
    for images, labels in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        if should_stop():
            raise RecoveryStopped
        logits = model(images.to(device))
        labels = labels.to(device)
        loss += float(nn.functional.cross_entropy(logits.float(), labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        total += len(labels)
    return (correct / total if total else 0.0), (loss / total if total else 0.0)


def fine_tune(model: nn.Module, train_set, val_set, settings: RecoverySettings, device: torch.device,
              should_stop: Callable[[], bool] = lambda: False,
              on_batch: Callable[[int, int, int, float], None] = lambda epoch, done, total, loss: None,
              ) -> list[EpochResult]:
    """Train every layer of `model` (on `device`) for `settings.epochs` epochs on `train_set` (its training
    transform), validating after each; the model after the last epoch is the result (no epoch is chosen by its
    validation score: the same validation images decide whether the pruned model is kept)."""
    if settings.epochs <= 0:
        return []
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(_param_groups(model, settings.weight_decay), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    loader = DataLoader(train_set, batch_size=settings.batch_size, shuffle=True, generator=generator,
                        num_workers=settings.workers, drop_last=len(train_set) > settings.batch_size)
    steps = settings.epochs * len(loader)
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    results, step = [], 0
    for epoch in range(settings.epochs):
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)  # a new augmentation draw per epoch, as the trainer's
        model.train()
        started, seen, correct, total_loss = time.perf_counter(), 0, 0, 0.0
        lr = settings.lr
        for batch, (images, labels) in enumerate(loader):
            if should_stop():
                raise RecoveryStopped
            lr = settings.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss = criterion(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(labels)
            correct += int((logits.detach().argmax(1) == labels).sum())
            total_loss += float(loss.detach()) * len(labels)
            on_batch(epoch, batch + 1, len(loader), float(loss.detach()))
        train_seconds = time.perf_counter() - started
        val_acc, val_loss = evaluate(model, val_set, device, settings.batch_size, should_stop, settings.workers)
        results.append(EpochResult(epoch + 1, total_loss / max(1, seen), correct / max(1, seen), val_loss, val_acc,
                                   train_seconds, seen, lr))
    model.eval()
    return results
