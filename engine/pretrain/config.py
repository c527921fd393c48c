"""What a pre-training run is asked to do, beside the recipe whose model it continues (pretrain.json in its folder)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.errors import BadInputError

MAX_EPOCHS = 10_000


@dataclass
class PretrainConfig:
    method: str = "simclr"  # engine/pretrain/methods.py: simclr, moco, byol, dino
    unlabeled: str = ""  # the folder of images (every image below it; class folders are ignored)
    epochs: int = 10  # 0: only the BatchNorm statistics re-estimated on the images (AdaBN), no training
    out: str = ""  # the weights file written when the run finishes ("" : only the run folder's backbone.pth)
    batch_size: int = 0  # 0: the recipe's
    lr: float = 0.0  # 0: the method's rate, scaled to the batch
    device: str = ""  # "": the recipe's
    knn_k: int = 20  # neighbours in the k-NN monitor's vote
    max_batches: int = 0  # per epoch, 0 = all (quick trials)

    def validate(self) -> PretrainConfig:
        from engine.pretrain.methods import get_method

        get_method(self.method)
        if not self.unlabeled:
            raise BadInputError("the unlabeled image folder is missing (--unlabeled DIR)")
        checks = (("epochs", 0 <= self.epochs <= MAX_EPOCHS, f"in [0, {MAX_EPOCHS}] (0: BatchNorm statistics only)"),
                  ("batch_size", 0 <= self.batch_size <= 65536, "in [0, 65536] (0: the recipe's)"),
                  ("lr", math.isfinite(self.lr) and 0 <= self.lr <= 10, "in [0, 10] (0: the method's)"),
                  ("knn_k", 1 <= self.knn_k <= 1000, "in [1, 1000]"),
                  ("max_batches", 0 <= self.max_batches, "at least 0"))
        for name, ok, allowed in checks:
            if not ok:
                raise BadInputError(f"pre-training {name} must be {allowed}, got {getattr(self, name)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
