"""How far the user's images lie from what the backbone was trained on, read from the backbone itself.

A pretrained BatchNorm layer stores the mean and variance of its input over the pretraining images (its running
statistics). Passing the user's images through the frozen backbone (eval mode: nothing is updated) gives the same
statistics for *their* images; the distance between the two, channel by channel, is the covariate shift of each
layer (the quantity BN adaptation methods correct, Li et al. 2016 "Revisiting Batch Normalization For Practical
Domain Adaptation"). Why this and not the OOD score of engine/infer/ood.py: that score measures a distance to
*labelled training features* of the user's classes; a backbone's pretraining images (ImageNet) are not on the
user's machine, while its BatchNorm statistics are, in every torchvision ResNet, MobileNet, EfficientNet …

The score is the KL divergence KL(user ‖ pretraining) of the two per-channel Gaussians, averaged over the channels
of a layer, then over the backbone's BatchNorm layers (nats). A model without BatchNorm (ViT, Swin) gives None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from engine.model.stages import covers


@dataclass
class DomainShift:
    score: float  # mean over layers of the channel-mean KL(user ‖ pretraining), nats
    layers: int  # BatchNorm layers measured
    images: int  # user images passed through the backbone
    per_layer: list[float] = field(default_factory=list)  # in the order of the network

    def to_dict(self) -> dict:
        return {"score": round(self.score, 4), "layers": self.layers, "images": self.images,
                "first_layer": round(self.per_layer[0], 4) if self.per_layer else None,
                "last_layer": round(self.per_layer[-1], 4) if self.per_layer else None}


def gaussian_kl(mean_p: torch.Tensor, var_p: torch.Tensor, mean_q: torch.Tensor, var_q: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_p, var_p) ‖ N(mean_q, var_q)) per channel."""
    return 0.5 * (torch.log(var_q / var_p) + (var_p + (mean_p - mean_q) ** 2) / var_q - 1.0)


class _Moments:
    """Running per-channel sums of a layer's input over the batches seen."""

    def __init__(self) -> None:
        self.n = 0
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        dims = [d for d in range(x.ndim) if d != 1]  # every axis but the channels (N, C, H, W) or (N, C)
        count = x.numel() // x.shape[1]
        s, q = x.sum(dims).cpu(), (x * x).sum(dims).cpu()
        self.total = s if self.total is None else self.total + s
        self.squares = q if self.squares is None else self.squares + q
        self.n += count

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.n
        return mean, (self.squares / self.n - mean * mean).clamp_min(0.0)


@torch.no_grad()
def measure_domain_shift(model: nn.Module, head_path: str, batches, device: torch.device,
                         should_stop: Callable[[], bool] = lambda: False) -> DomainShift | None:
    """The shift of `batches` (an iterable of (images, labels)) against the running statistics of every
    BatchNorm layer of `model` outside its head; None when there is no such layer (or when stopped)."""
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None
              and not covers(head_path, name)]
    if not layers:
        return None
    moments = {name: _Moments() for name, _ in layers}
    hooks = [m.register_forward_pre_hook(lambda _m, inputs, name=name: moments[name].add(inputs[0]))
             for name, m in layers]
    was_training = model.training
    model.eval()  # running statistics are read, never updated
    images = 0
    try:
        for x, _y in batches:
            if should_stop():
                return None
            model(x.to(device))
            images += len(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if images == 0:
        return None
    per_layer = []
    for name, m in layers:
        mean, var = moments[name].mean_var()
        eps = float(m.eps)
        kl = gaussian_kl(mean, var + eps, m.running_mean.detach().double().cpu(),
                         m.running_var.detach().double().cpu() + eps)
        per_layer.append(float(kl.mean()))
    return DomainShift(sum(per_layer) / len(per_layer), len(per_layer), images, per_layer)
