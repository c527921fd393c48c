"""How unlike the training data an input is: the Mahalanobis distance of its features to the nearest class
(Lee et al., 2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples"), calibrated on the
validation split.

The features are the head's input. Class means come from the training images; one covariance shared by the
classes is estimated from the within-class residuals with Ledoit-Wolf shrinkage (scikit-learn), which stays
well-conditioned with fewer images than feature dimensions. The threshold is the 95th percentile of the held-out
validation images' distances, so about 5 % of in-distribution inputs are flagged. Scores are reported in units of
that threshold: above 1.0 an input is flagged as unlike the training data.

Why this score and not the energy score (logsumexp of the logits): on Thaw's benchmark task (bench/ood.py) the
feature distance separates foreign inputs far better, because a classifier's logits can be confidently large
on inputs nothing like its classes, while their features sit far from every class.

The calibration belongs to one checkpoint: it is stored next to it (checkpoints/best.ood.pt for best.pt) with a
digest of the checkpoint's head, and a Predictor ignores a calibration whose head digest does not match (a
resumed run that replaced best.pt).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.model.stages import covers
from engine.torch_files import describe_load_failure
from engine.train.checkpoints import save_checkpoint

log = logging.getLogger(__name__)

METHOD = "mahalanobis"
DEFAULT_QUANTILE = 0.95
CALIBRATION_SUFFIX = ".ood.pt"


@dataclass
class OODCalibration:
    whitening: torch.Tensor  # (D, D) float64: x @ whitening has identity covariance within a class
    whitened_means: torch.Tensor  # (C', D) float64, the means of the classes that had training images
    threshold: float  # squared distance at `quantile` of the validation images
    quantile: float
    val_count: int
    head_digest: str
    method: str = METHOD

    @property
    def dim(self) -> int:
        return int(self.whitening.shape[0])

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each feature row (B, D) to the nearest class mean."""
        z = features.detach().to("cpu", torch.float64).flatten(1) @ self.whitening
        return torch.cdist(z, self.whitened_means).pow(2).min(dim=1).values

    def scores(self, features: torch.Tensor) -> np.ndarray:
        """Distances in units of the threshold: above 1.0 is flagged."""
        return (self.distances(features) / self.threshold).numpy()

    def summary(self) -> dict:
        return {"method": self.method, "threshold": self.threshold, "quantile": self.quantile,
                "validation_images": self.val_count, "classes": int(self.whitened_means.shape[0]), "dim": self.dim}

    def to_state(self) -> dict:
        return {"whitening": self.whitening, "whitened_means": self.whitened_means, "threshold": self.threshold,
                "quantile": self.quantile, "val_count": self.val_count, "head_digest": self.head_digest,
                "method": self.method}

    @classmethod
    def from_state(cls, state: dict) -> OODCalibration:
        return cls(state["whitening"], state["whitened_means"], float(state["threshold"]), float(state["quantile"]),
                   int(state["val_count"]), str(state["head_digest"]), str(state.get("method", METHOD)))


def fit_ood(train_features: torch.Tensor, train_labels: torch.Tensor, val_features: torch.Tensor,
            head_digest: str, quantile: float = DEFAULT_QUANTILE) -> OODCalibration:
    """Class means and shared covariance from the training features, the threshold from the validation ones."""
    from sklearn.covariance import LedoitWolf
    from threadpoolctl import threadpool_limits

    x = train_features.detach().to("cpu", torch.float64).flatten(1).numpy()
    y = train_labels.detach().cpu().numpy()
    if len(x) < 2 or len(val_features) < 1:
        raise ValueError(f"the OOD calibration needs training and validation images ({len(x)} and "
                         f"{len(val_features)} given)")
    means = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)])
    residuals = x - means[np.searchsorted(np.unique(y), y)]
    with threadpool_limits(limits=1):  # see engine/infer/label_issues.py: BLAS threads contend with torch's
        covariance = LedoitWolf(assume_centered=True).fit(residuals).covariance_
        values, vectors = np.linalg.eigh(covariance)
    values = np.maximum(values, values.max() * 1e-12)  # shrinkage keeps them positive; guard rounding anyway
    whitening = torch.from_numpy(vectors / np.sqrt(values))
    calibration = OODCalibration(whitening, torch.from_numpy(means) @ whitening, 1.0, quantile, len(val_features),
                                 head_digest)
    val_distances = calibration.distances(val_features).numpy()
    calibration.threshold = max(float(np.quantile(val_distances, quantile)), 1e-12)
    return calibration


def calibration_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + CALIBRATION_SUFFIX)


def save_calibration(calibration: OODCalibration, checkpoint: str | Path) -> Path:
    return save_checkpoint(calibration_path(checkpoint), calibration.to_state())


def load_calibration(checkpoint: str | Path, head_digest_now: str) -> OODCalibration | None:
    """The calibration stored next to `checkpoint`, or None when there is none or it belongs to other weights."""
    path = calibration_path(checkpoint)
    if not path.is_file():
        return None
    try:
        calibration = OODCalibration.from_state(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - a damaged calibration is reported and ignored, never fatal
        # One Thaw line: torch's own message is a paragraph recommending weights_only=False.
        log.warning("ignoring the out-of-distribution calibration %s: it %s", path, describe_load_failure(exc))
        return None
    if calibration.head_digest != head_digest_now:
        log.warning("ignoring %s: it was calibrated for other weights (evaluate the run again to recalibrate)", path)
        return None
    return calibration


def head_digest(model_state: dict[str, torch.Tensor], head_path: str) -> str:
    """A digest of the head's tensors: which weights a calibration belongs to."""
    digest = hashlib.sha256()
    for name in sorted(model_state):
        if covers(head_path, name):
            tensor = model_state[name].detach().to("cpu").contiguous()
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
                tensor = tensor.float()
            digest.update(name.encode())
            digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:32]


@contextmanager
def captured_head_input(model: nn.Module, head_path: str) -> Iterator[list[torch.Tensor]]:
    """Record the head's input (flattened, as the feature cache stores it) on every forward pass."""
    captured: list[torch.Tensor] = []
    hook = model.get_submodule(head_path).register_forward_hook(
        lambda _module, inputs, _output: captured.append(torch.flatten(inputs[0], 1).float()))
    try:
        yield captured
    finally:
        hook.remove()
