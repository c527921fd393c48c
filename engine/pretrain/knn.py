"""The k-NN monitor: how well the backbone's features already separate the labelled images, without training a
classifier — the labelled training images are the memory bank, each validation image takes the weighted vote of
its k most similar (cosine) neighbours. The vote is lightly's `knn_predict` (Wu et al. 2018: weights
exp(similarity / 0.1)); it is written out here because lightly's benchmarking package imports PyTorch Lightning.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from engine.train.events import RunControl

DEFAULT_K = 20
TEMPERATURE = 0.1


@torch.no_grad()
def features_of(backbone: nn.Module, images: Dataset, device: torch.device, batch_size: int = 64,
                control: RunControl | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """L2-normalised features and labels of every image (eval mode); None when a stop was asked for."""
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    try:
        for x, y in DataLoader(images, batch_size=batch_size, num_workers=0):
            if control is not None and control.stop_requested:
                return None
            feats.append(nn.functional.normalize(backbone(x.to(device)).flatten(1).float(), dim=1).cpu())
            labels.append(torch.as_tensor(y))
    finally:
        backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def knn_predict(query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, classes: int, k: int,
                temperature: float = TEMPERATURE) -> torch.Tensor:
    """The predicted class of each query row (features L2-normalised)."""
    k = min(k, bank.shape[0])
    similarity = query @ bank.T
    weight, index = similarity.topk(k, dim=1)
    votes = torch.zeros(query.shape[0], classes).scatter_add_(1, bank_labels[index], (weight / temperature).exp())
    return votes.argmax(dim=1)


def knn_accuracy(backbone: nn.Module, bank: Dataset, queries: Dataset, classes: int, device: torch.device,
                 k: int = DEFAULT_K, control: RunControl | None = None) -> float | None:
    """The share of `queries` whose k-NN vote is their label (0..1); None when stopped on the way."""
    bank_features = features_of(backbone, bank, device, control=control)
    query_features = features_of(backbone, queries, device, control=control) if bank_features else None
    if bank_features is None or query_features is None:
        return None
    predicted = knn_predict(query_features[0], bank_features[0], bank_features[1], classes, k)
    return float((predicted == query_features[1]).float().mean())
