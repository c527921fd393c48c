"""BatchNorm statistics of the user's domain (AdaBN, Li et al. 2016): every BatchNorm layer's running mean and variance
re-estimated on the unlabeled images as evaluation sees them (resize, centre crop, normalise), the weights untouched.

`pretrain --epochs 0` does only this: the cheapest domain adaptation there is — one forward pass over the images —
and on the bench's far domain (bench/README.md "Issue 24") it gained more for feature extraction (+7.2 points) than
the self-supervised objectives did on two busy CPU cores. A run that trained keeps the statistics it trained with:
its weights fit the augmented views' statistics, and re-estimating them on clean images lost points in both runs
measured.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from engine.train.events import RunControl


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: Dataset, device: torch.device, batch_size: int = 64,
                          control: RunControl | None = None) -> int:
    """Re-estimate the running statistics of every BatchNorm layer on `images` ((tensor, label) items): a cumulative
    average over all of them. Returns the number of layers (0: the model has none, nothing changed). A stop asked
    for on the way leaves the statistics as they were."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not layers:
        return 0
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative moving average: every image counts the same
    model.train()
    try:
        for x, _ in DataLoader(images, batch_size=batch_size, num_workers=0):
            if control is not None and control.stop_requested:
                for m, (_, mean, var, count) in zip(layers, saved):
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(count)
                return 0
            model(x.to(device))
    finally:
        for m, (momentum, *_rest) in zip(layers, saved):
            m.momentum = momentum
        model.train(was_training)
    return len(layers)
