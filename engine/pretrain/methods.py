"""The self-supervised methods, as a registry: one record per method (what it is, its optimizer defaults, the
families it cannot train, its augmentations) and one objective module per method built from lightly's parts —
its losses (`NTXentLoss`, `NegativeCosineSimilarity`, `DINOLoss`), heads (`SimCLRProjectionHead`, `BYOL*Head`,
`MoCoProjectionHead`, `DINOProjectionHead`), momentum updates (`update_momentum`, `cosine_schedule`) and view
transforms (`SimCLRTransform`, `BYOLTransform`, `MoCoV2Transform`, `DINOTransform`), wired as lightly's own
examples wire them. lightly is imported only when a method is built (an optional extra).

An objective holds the backbone it trains (`backbone`: the recipe's model with its classifier replaced by an
identity, so its output is the feature vector the classifier would see) and everything the method adds; the
weights file is `backbone`'s state dict alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from engine.data.preprocessing import Preprocessing
from engine.errors import BadInputError
from engine.pretrain.lightly_import import lightly_module

# Families no method can train: the objective projects the feature vector the classifier receives, and
# SqueezeNet's classifier is a convolution over a feature map, with no such vector.
_NO_FEATURE_VECTOR = {"squeezenet": "its classifier is a 1×1 convolution over a feature map, so there is no "
                                    "feature vector to project"}


class Objective(nn.Module):
    """A method's training objective around a backbone. `loss(views, epoch, epochs)` for one batch of views;
    `before_step` / `after_step` around the optimizer step (gradient surgery, momentum updates)."""

    backbone: nn.Module

    def loss(self, views: list[torch.Tensor], epoch: int, epochs: int) -> torch.Tensor:
        raise NotImplementedError

    def before_step(self, epoch: int) -> None:
        """Between backward and the optimizer step."""

    def after_step(self, epoch: int, epochs: int) -> None:
        """After the optimizer step."""

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def full_state(self) -> dict[str, torch.Tensor]:
        """Every tensor of the objective, buffers that are not part of a state dict included (lightly's memory
        bank keeps its queue in non-persistent buffers: a resume without them would not be exact)."""
        state = dict(self.state_dict())
        state.update({f"buffer:{name}": b for name, b in self.named_buffers()})
        return {k: v.detach().clone() for k, v in state.items()}

    def load_full_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith("buffer:")})
        buffers = dict(self.named_buffers())
        for key, value in state.items():
            if key.startswith("buffer:"):
                name = key.removeprefix("buffer:")
                owner_path, _, attr = name.rpartition(".")
                owner = self.get_submodule(owner_path) if owner_path else self
                setattr(owner, attr, value.to(buffers[name].device).clone())


def _frozen_copy(module: nn.Module) -> nn.Module:
    copied = copy.deepcopy(module)
    lightly_module("models.utils").deactivate_requires_grad(copied)
    return copied


def _momentum(epoch: int, epochs: int) -> float:
    """The teacher's momentum, 0.996 → 1 on a cosine over the run (BYOL, MoCo, DINO as lightly's examples)."""
    return lightly_module("utils.scheduler").cosine_schedule(epoch, max(epochs, 1), 0.996, 1.0)


class SimCLR(Objective):
    """Two views of an image are pulled together, every other image of the batch pushed away (NT-Xent)."""

    def __init__(self, backbone: nn.Module, features: int, images: int):
        super().__init__()
        heads, losses = lightly_module("models.modules.heads"), lightly_module("loss")
        self.backbone = backbone
        self.projection = heads.SimCLRProjectionHead(features, features, 128)
        self.criterion = losses.NTXentLoss(temperature=0.5)

    def loss(self, views, epoch, epochs):
        z0, z1 = (self.projection(self.backbone(v)) for v in views[:2])
        return self.criterion(z0, z1)


class BYOL(Objective):
    """A student predicts a slowly moving teacher's projection of the other view; no negatives."""

    def __init__(self, backbone: nn.Module, features: int, images: int):
        super().__init__()
        heads, losses = lightly_module("models.modules.heads"), lightly_module("loss")
        self.backbone = backbone
        self.projection = heads.BYOLProjectionHead(features, 1024, 256)
        self.prediction = heads.BYOLPredictionHead(256, 1024, 256)
        self.backbone_momentum = _frozen_copy(backbone)
        self.projection_momentum = _frozen_copy(self.projection)
        self.criterion = losses.NegativeCosineSimilarity()

    def loss(self, views, epoch, epochs):
        x0, x1 = views[:2]
        p0 = self.prediction(self.projection(self.backbone(x0)))
        p1 = self.prediction(self.projection(self.backbone(x1)))
        with torch.no_grad():
            z0 = self.projection_momentum(self.backbone_momentum(x0))
            z1 = self.projection_momentum(self.backbone_momentum(x1))
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    def after_step(self, epoch, epochs):
        utils, m = lightly_module("models.utils"), _momentum(epoch, epochs)
        utils.update_momentum(self.backbone, self.backbone_momentum, m)
        utils.update_momentum(self.projection, self.projection_momentum, m)


class MoCo(Objective):
    """MoCo v2: a query matched to its momentum encoder's key among a queue of earlier keys (the negatives)."""

    def __init__(self, backbone: nn.Module, features: int, images: int):
        super().__init__()
        heads, losses = lightly_module("models.modules.heads"), lightly_module("loss")
        self.backbone = backbone
        self.projection = heads.MoCoProjectionHead(features, features, 128)
        self.backbone_momentum = _frozen_copy(backbone)
        self.projection_momentum = _frozen_copy(self.projection)
        # lightly's examples queue 4096 keys; a queue longer than the data set would hold stale copies of the
        # same images as negatives, so it is capped at the number of images.
        self.criterion = losses.NTXentLoss(temperature=0.1, memory_bank_size=(max(8, min(4096, images)), 128))

    def loss(self, views, epoch, epochs):
        x_query, x_key = views[:2]
        query = self.projection(self.backbone(x_query))
        with torch.no_grad():
            key = self.projection_momentum(self.backbone_momentum(x_key))
        return self.criterion(query, key)

    def after_step(self, epoch, epochs):
        utils, m = lightly_module("models.utils"), _momentum(epoch, epochs)
        utils.update_momentum(self.backbone, self.backbone_momentum, m)
        utils.update_momentum(self.projection, self.projection_momentum, m)


class DINO(Objective):
    """Self-distillation: the student matches a momentum teacher's sharpened, centred outputs across global and
    local crops."""

    OUTPUT_DIM = 2048  # lightly's example uses 2048 for small data (65 536 for ImageNet)

    def __init__(self, backbone: nn.Module, features: int, images: int):
        super().__init__()
        heads, losses = lightly_module("models.modules.heads"), lightly_module("loss")
        self.backbone = backbone
        self.head = heads.DINOProjectionHead(features, 512, 64, self.OUTPUT_DIM, freeze_last_layer=1)
        self.teacher_backbone = _frozen_copy(backbone)
        # A new head given the student's weights: a deep copy would fail on the weight-normalised last layer.
        self.teacher_head = heads.DINOProjectionHead(features, 512, 64, self.OUTPUT_DIM)
        self.teacher_head.load_state_dict(self.head.state_dict())
        lightly_module("models.utils").deactivate_requires_grad(self.teacher_head)
        self.criterion = losses.DINOLoss(output_dim=self.OUTPUT_DIM, warmup_teacher_temp_epochs=5)

    def loss(self, views, epoch, epochs):
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone(v)) for v in views[:2]]  # the two global crops
        student = [self.head(self.backbone(v)) for v in views]
        return self.criterion(teacher, student, epoch=epoch)

    def before_step(self, epoch):
        self.head.cancel_last_layer_gradients(current_epoch=epoch)

    def after_step(self, epoch, epochs):
        utils, m = lightly_module("models.utils"), _momentum(epoch, epochs)
        utils.update_momentum(self.backbone, self.teacher_backbone, m)
        utils.update_momentum(self.head, self.teacher_head, m)


ViewTransform = Callable  # PIL image → list of normalised view tensors


def _normalize(prep: Preprocessing) -> dict[str, list[float]]:
    return {"mean": list(prep.mean), "std": list(prep.std)}


def _simclr_views(prep: Preprocessing, flip: bool) -> ViewTransform:
    return lightly_module("transforms").SimCLRTransform(input_size=prep.crop_size, hf_prob=0.5 if flip else 0.0,
                                                        normalize=_normalize(prep))


def _moco_views(prep: Preprocessing, flip: bool) -> ViewTransform:
    return lightly_module("transforms").MoCoV2Transform(input_size=prep.crop_size, hf_prob=0.5 if flip else 0.0,
                                                        normalize=_normalize(prep))


def _byol_views(prep: Preprocessing, flip: bool) -> ViewTransform:
    t = lightly_module("transforms")
    hf = 0.5 if flip else 0.0
    return t.BYOLTransform(
        view_1_transform=t.BYOLView1Transform(input_size=prep.crop_size, hf_prob=hf, normalize=_normalize(prep)),
        view_2_transform=t.BYOLView2Transform(input_size=prep.crop_size, hf_prob=hf, normalize=_normalize(prep)))


def _dino_views(prep: Preprocessing, flip: bool) -> ViewTransform:
    # Two global crops at the model's size and, to keep it affordable on a CPU, two local crops (lightly: six)
    # at 96/224 of it, as DINO's ratio.
    local = max(8, round(prep.crop_size * 96 / 224))
    return lightly_module("transforms").DINOTransform(
        global_crop_size=prep.crop_size, local_crop_size=local, n_local_views=2, hf_prob=0.5 if flip else 0.0,
        normalize=_normalize(prep))


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str
    summary: str  # when to pick it, in one line (the CLI's help, the studio's list, docs/RECIPES.md)
    objective: Callable[[nn.Module, int, int], Objective]  # (backbone, feature width, images) → objective
    views: Callable[[Preprocessing, bool], ViewTransform]  # (preprocessing, horizontal flips allowed)
    optimizer: str  # "sgd" (momentum 0.9) or "adamw"
    lr: float  # for a batch of 256, scaled linearly with the batch (as lightly's examples and the papers)
    weight_decay: float
    refused_families: dict[str, str] = field(default_factory=lambda: dict(_NO_FEATURE_VECTOR))

    def check_family(self, arch: str, family: str) -> None:
        reason = self.refused_families.get(family)
        if reason:
            raise BadInputError(f"{self.name} cannot pre-train {arch} (family {family}): {reason}; pick a model of "
                                f"another family")

    def lr_for(self, batch_size: int) -> float:
        return self.lr * batch_size / 256


METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("simclr", "SimCLR", "contrastive, the batch's other images as negatives: the simplest; wants "
               "batches of 64+", SimCLR, _simclr_views, "sgd", 0.06, 5e-4),
    MethodInfo("moco", "MoCo v2", "contrastive with a queue of earlier keys as negatives: small batches are "
               "fine", MoCo, _moco_views, "sgd", 0.06, 5e-4),
    MethodInfo("byol", "BYOL", "no negatives, a momentum teacher: robust to batch size and augmentations", BYOL,
               _byol_views, "sgd", 0.06, 5e-4),
    MethodInfo("dino", "DINO", "self-distillation over global and local crops: the strongest on ViTs, the "
               "costliest (4 views)", DINO, _dino_views, "adamw", 0.001 * 256 / 64, 0.04),
)}


def get_method(name: str) -> MethodInfo:
    method = METHODS.get(name)
    if method is None:
        raise BadInputError(f"unknown pre-training method '{name}'; the methods are {', '.join(METHODS)}")
    return method
