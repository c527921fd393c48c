"""The steps every pass over batches shares: a batch onto the device, the logits of a forward, eval mode borrowed
with every module's own mode restored, and validation's mean loss and accuracy.

Used by the training loop (engine/train/loop.py), the validation of a run over several processes
(engine/train/distributed_data.py), the cost estimate and the learning-rate finder — so each has one definition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from engine.train.devices import DeviceSetup


def evaluate(model: nn.Module, batches, device: DeviceSetup, criterion: nn.Module, max_batches: int = 0
             ) -> tuple[float, float]:
    """(mean loss, accuracy 0..1) in eval mode, without gradients; the model's modes are restored exactly after
    (BatchNorm layers with frozen statistics stay in eval mode)."""
    loss_sum, correct, seen = 0.0, 0, 0
    with in_eval_mode(model), torch.no_grad():
        for i, (images, labels) in enumerate(batches):
            if max_batches and i >= max_batches:
                break
            images, labels = to_device(images, labels, device)
            with device.autocast():
                logits = logits_of(model(images))
            loss_sum += float(criterion(logits.float(), labels)) * labels.numel()
            correct += int((logits.argmax(1) == labels).sum())
            seen += labels.numel()
    return (loss_sum / seen if seen else float("nan")), (correct / seen if seen else 0.0)


@contextlib.contextmanager
def in_eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block; every module's own mode restored exactly after (a BatchNorm layer
    with frozen statistics stays in eval mode, a training one goes back to training)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


def logits_of(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output  # GoogLeNet/Inception named tuples


def to_device(images: torch.Tensor, labels: torch.Tensor, device: DeviceSetup):
    non_blocking = device.device.type == "cuda"
    images = images.to(device.device, non_blocking=non_blocking)
    if device.channels_last and images.ndim == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device.device, non_blocking=non_blocking)
