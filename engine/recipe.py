"""A Recipe describes one whole training run as data.

The GUI edits Recipes, the CLI reads them from JSON, checkpoints carry the Recipe they came from. A strategy
(feature extraction, gradual unfreezing, ...) is a Recipe preset (engine/planning/presets.py), not a code path.

Every config is a dataclass validated by `validate()`; an invalid field raises RecipeError naming the dotted
field path and the allowed values. `Recipe.from_dict` rejects unknown keys for the same reason: a typo in a
JSON file must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RecipeError

AUGMENTATIONS = ("lesson", "trivialaugment", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "onecycle", "plateau")
LR_PRESETS = ("single", "discriminative", "layerwise")
BN_MODES = ("train", "frozen_stats", "frozen")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BUILTIN_DATASETS = ("folder", "CIFAR10", "CIFAR100", "MNIST", "FashionMNIST", "SVHN", "STL10")
METRICS = ("val_acc", "val_loss")
HEAD_FITS = ("converge", "epochs")


@dataclass
class DataConfig:
    """Where the images are and how they are prepared."""

    root: str = ""
    dataset: str = "folder"  # "folder" (class folders or train/ + val/) or a torchvision dataset on disk
    val_fraction: float = 0.2  # used only when there is no explicit val/ folder
    split_seed: int = 0
    augmentation: str = "lesson"  # the lesson's Resize → RandomCrop → flip; TrivialAugment; none
    resize_size: int = 0  # 0: from the weights' preset (e.g. 256)
    crop_size: int = 0  # 0: from the weights' preset (e.g. 224)
    num_workers: int = -1  # -1: automatic
    max_train_batches: int = 0  # 0: all; a cap for quick experiments and tests
    max_val_batches: int = 0
    # Cached features: when a phase trains only the head, compute the frozen backbone once per image (per view)
    # and train the head on the stored features. "auto": whenever possible; "off": always run the backbone.
    cache_features: str = "auto"
    feature_views: int = 1  # views per training image in the cache: 1 = the un-augmented image; K > 1 = K augmented views
    feature_cache_mb: int = 2048  # on-disk budget of the feature cache; 0 keeps features in memory only
    # Decoded images kept in RAM as uint8 at the training resolution: from the second epoch no file is decoded.
    # "auto": when the estimate fits the budget; "on": up to the budget; "off": never.
    ram_cache: str = "auto"
    ram_cache_mb: int = 0  # 0: a quarter of the machine's memory
    # Mean/std for input channels beyond RGB (e.g. IR, depth). Empty: 0.5 / 0.25 each.
    extra_channel_mean: list[float] = field(default_factory=list)
    extra_channel_std: list[float] = field(default_factory=list)

    def validate(self, prefix: str = "data") -> None:
        if self.dataset not in BUILTIN_DATASETS:
            raise RecipeError(f"{prefix}.dataset", f"'{self.dataset}' is not one of {', '.join(BUILTIN_DATASETS)}")
        if not (0.0 < self.val_fraction < 1.0):
            raise RecipeError(f"{prefix}.val_fraction", f"must be between 0 and 1 (exclusive), got {self.val_fraction}")
        if self.augmentation not in AUGMENTATIONS:
            raise RecipeError(f"{prefix}.augmentation", f"'{self.augmentation}' is not one of {', '.join(AUGMENTATIONS)}")
        for name in ("resize_size", "crop_size", "max_train_batches", "max_val_batches"):
            if getattr(self, name) < 0:
                raise RecipeError(f"{prefix}.{name}", f"must be >= 0, got {getattr(self, name)}")
        if self.resize_size and self.crop_size and self.crop_size > self.resize_size:
            raise RecipeError(f"{prefix}.crop_size", f"{self.crop_size} is larger than resize_size {self.resize_size}")
        if self.cache_features not in ("auto", "off"):
            raise RecipeError(f"{prefix}.cache_features", f"'{self.cache_features}' is not one of auto, off")
        if self.ram_cache not in ("auto", "on", "off"):
            raise RecipeError(f"{prefix}.ram_cache", f"'{self.ram_cache}' is not one of auto, on, off")
        if self.ram_cache_mb < 0:
            raise RecipeError(f"{prefix}.ram_cache_mb", "must be >= 0")
        if self.feature_views < 1:
            raise RecipeError(f"{prefix}.feature_views", f"must be >= 1, got {self.feature_views}")
        if self.feature_cache_mb < 0:
            raise RecipeError(f"{prefix}.feature_cache_mb", "must be >= 0")
        if self.num_workers < -1:
            raise RecipeError(f"{prefix}.num_workers", "must be -1 (automatic) or >= 0")
        if any(s <= 0 for s in self.extra_channel_std):
            raise RecipeError(f"{prefix}.extra_channel_std", "every std must be > 0")


@dataclass
class HeadConfig:
    """The new classifier that replaces the pretrained one."""

    dropout: float = 0.0
    hidden: int = 0  # 0: a single Linear; >0: Linear → ReLU → Dropout → Linear

    def validate(self, prefix: str = "model.head") -> None:
        if not (0.0 <= self.dropout < 1.0):
            raise RecipeError(f"{prefix}.dropout", f"must be in [0, 1), got {self.dropout}")
        if self.hidden < 0:
            raise RecipeError(f"{prefix}.hidden", f"must be >= 0, got {self.hidden}")


@dataclass
class ModelConfig:
    arch: str = "resnet18"  # a torchvision classification model name
    weights: str = "DEFAULT"  # "DEFAULT", a weights name ("IMAGENET1K_V2" or "ResNet50_Weights.IMAGENET1K_V2"), or "none"
    weights_file: str = ""  # a local state dict (.pth/.pt); overrides `weights`
    in_channels: int = 3
    head: HeadConfig = field(default_factory=HeadConfig)

    def validate(self, prefix: str = "model") -> None:
        if not self.arch:
            raise RecipeError(f"{prefix}.arch", "is empty; see `python main.py models` for the names")
        if self.in_channels < 1:
            raise RecipeError(f"{prefix}.in_channels", f"must be >= 1, got {self.in_channels}")
        self.head.validate(f"{prefix}.head")


@dataclass
class GroupSpec:
    """A parameter group as data: which modules, at what learning rate and weight decay."""

    name: str
    modules: list[str]  # module paths or stage names ("layer4", "head", "stem", "all")
    lr: float
    weight_decay: float | None = None  # None: the optimizer's weight decay

    def validate(self, prefix: str) -> None:
        if not self.name:
            raise RecipeError(f"{prefix}.name", "is empty")
        if not self.modules:
            raise RecipeError(f"{prefix}.modules", "lists no module")
        if not self.lr > 0:
            raise RecipeError(f"{prefix}.lr", f"must be > 0, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise RecipeError(f"{prefix}.weight_decay", f"must be >= 0, got {self.weight_decay}")


@dataclass
class OptimizerConfig:
    name: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam/AdamW
    no_decay_norm_bias: bool = False  # no weight decay on norm layers and biases (timm's rule)

    def validate(self, prefix: str) -> None:
        if self.name not in OPTIMIZERS:
            raise RecipeError(f"{prefix}.name", f"'{self.name}' is not one of {', '.join(OPTIMIZERS)}")
        if self.weight_decay < 0:
            raise RecipeError(f"{prefix}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        if not (0.0 <= self.momentum < 1.0):
            raise RecipeError(f"{prefix}.momentum", f"must be in [0, 1), got {self.momentum}")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise RecipeError(f"{prefix}.nesterov", "needs optimizer 'sgd' with momentum > 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise RecipeError(f"{prefix}.betas", f"must be two numbers in [0, 1), got {self.betas}")


@dataclass
class ScheduleConfig:
    name: str = "none"
    step_size: int = 7  # step: epochs between decays (the lesson uses 7)
    gamma: float = 0.1  # step: decay factor
    warmup_epochs: float = 0.0  # cosine: linear warm-up length, in epochs (fractions allowed)
    min_lr_ratio: float = 0.0  # cosine: final lr as a fraction of the peak
    pct_start: float = 0.3  # onecycle: share of steps spent rising
    div_factor: float = 25.0  # onecycle: initial lr = max lr / div_factor
    patience: int = 2  # plateau: epochs without improvement before decay
    factor: float = 0.1  # plateau: decay factor

    def validate(self, prefix: str) -> None:
        if self.name not in SCHEDULES:
            raise RecipeError(f"{prefix}.name", f"'{self.name}' is not one of {', '.join(SCHEDULES)}")
        if self.step_size < 1:
            raise RecipeError(f"{prefix}.step_size", f"must be >= 1, got {self.step_size}")
        for name in ("gamma", "factor"):
            if not (0.0 < getattr(self, name) <= 1.0):
                raise RecipeError(f"{prefix}.{name}", f"must be in (0, 1], got {getattr(self, name)}")
        if self.warmup_epochs < 0:
            raise RecipeError(f"{prefix}.warmup_epochs", "must be >= 0")
        if not (0.0 <= self.min_lr_ratio < 1.0):
            raise RecipeError(f"{prefix}.min_lr_ratio", "must be in [0, 1)")
        if not (0.0 < self.pct_start < 1.0):
            raise RecipeError(f"{prefix}.pct_start", "must be in (0, 1)")
        if self.div_factor < 1.0:
            raise RecipeError(f"{prefix}.div_factor", "must be >= 1")
        if self.patience < 0:
            raise RecipeError(f"{prefix}.patience", "must be >= 0")


@dataclass
class PhaseConfig:
    """One phase of a run: what trains, in which groups, at which rates, for how many epochs.

    `trainable` lists module paths or stage names whose whole subtree trains in this phase ("all" for the
    whole model); `frozen` then freezes subtrees inside them. Everything else is frozen. The freeze state of a
    phase is complete in itself, so a phase can be resumed without knowing the phases before it.
    """

    name: str = "train"
    epochs: int = 1
    trainable: list[str] = field(default_factory=lambda: ["all"])
    frozen: list[str] = field(default_factory=list)
    # Groups: explicit ones, or generated by `lr_preset` from `lr` (the head's rate) and `layer_decay`.
    groups: list[GroupSpec] = field(default_factory=list)
    lr_preset: str = "single"
    lr: float = 1e-3
    layer_decay: float = 0.5  # layerwise preset: lr × decay^depth, depth counted in stages from the head
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # BatchNorm mode per module path (applies to every BN layer under it). Unlisted BN layers: "train" when
    # trainable, "frozen" (eval mode, statistics do not move) when their subtree is frozen.
    bn_modes: dict[str, str] = field(default_factory=dict)
    # Keep Adam/SGD state of parameters that were already training in the previous phase.
    carry_optimizer_state: bool = True
    # A phase that trains only the head on cached features: "converge" fits the head to convergence (L-BFGS, L2
    # chosen by cross-validation; engine/train/head_fit.py) as one step of the run; "epochs" trains it for
    # `epochs` with the optimizer and schedule. Phases that train more than the head always train epochs.
    head_fit: str = "converge"

    def validate(self, prefix: str) -> None:
        if not self.name:
            raise RecipeError(f"{prefix}.name", "is empty")
        if self.epochs < 1:
            raise RecipeError(f"{prefix}.epochs", f"must be >= 1, got {self.epochs}")
        if not self.trainable:
            raise RecipeError(f"{prefix}.trainable", "lists nothing to train; use [\"head\"] for feature extraction")
        if self.lr_preset not in LR_PRESETS:
            raise RecipeError(f"{prefix}.lr_preset", f"'{self.lr_preset}' is not one of {', '.join(LR_PRESETS)}")
        if not self.lr > 0:
            raise RecipeError(f"{prefix}.lr", f"must be > 0, got {self.lr}")
        if not (0.0 < self.layer_decay <= 1.0):
            raise RecipeError(f"{prefix}.layer_decay", f"must be in (0, 1], got {self.layer_decay}")
        names = set()
        for i, group in enumerate(self.groups):
            group.validate(f"{prefix}.groups[{i}]")
            if group.name in names:
                raise RecipeError(f"{prefix}.groups[{i}].name", f"'{group.name}' is used twice")
            names.add(group.name)
        self.optimizer.validate(f"{prefix}.optimizer")
        self.schedule.validate(f"{prefix}.schedule")
        if self.head_fit not in HEAD_FITS:
            raise RecipeError(f"{prefix}.head_fit", f"'{self.head_fit}' is not one of {', '.join(HEAD_FITS)}")
        for path, mode in self.bn_modes.items():
            if mode not in BN_MODES:
                raise RecipeError(f"{prefix}.bn_modes[{path}]", f"'{mode}' is not one of {', '.join(BN_MODES)}")


@dataclass
class EarlyStoppingConfig:
    metric: str = "val_acc"
    patience: int = 0  # 0: off; otherwise epochs without improvement before the run stops
    min_delta: float = 0.0

    def validate(self, prefix: str = "early_stopping") -> None:
        if self.metric not in METRICS:
            raise RecipeError(f"{prefix}.metric", f"'{self.metric}' is not one of {', '.join(METRICS)}")
        if self.patience < 0:
            raise RecipeError(f"{prefix}.patience", "must be >= 0")
        if self.min_delta < 0:
            raise RecipeError(f"{prefix}.min_delta", "must be >= 0")


@dataclass
class Recipe:
    name: str = "run"
    strategy: str = "custom"  # a label for comparing runs: feature_extraction, fine_tune_all, ...
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig()])
    batch_size: int = 64
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps
    precision: str = "auto"  # auto: bf16 (or fp16 with a scaler) on CUDA, fp32 elsewhere
    channels_last: str = "auto"  # auto: on for CUDA and the CPU (engine/train/devices.py); "on" / "off"
    seed: int = 0
    label_smoothing: float = 0.0
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    output_dir: str = ""  # the runs folder; empty: the user data folder
    tensorboard: bool = False  # also write TensorBoard event files in <run folder>/tensorboard (pip install tensorboard)

    def validate(self) -> "Recipe":
        if not self.name:
            raise RecipeError("name", "is empty")
        self.data.validate("data")
        self.model.validate("model")
        if not self.phases:
            raise RecipeError("phases", "a run needs at least one phase")
        names = set()
        for i, phase in enumerate(self.phases):
            phase.validate(f"phases[{i}]")
            if phase.name in names:
                raise RecipeError(f"phases[{i}].name", f"'{phase.name}' is used twice")
            names.add(phase.name)
        if self.batch_size < 1:
            raise RecipeError("batch_size", f"must be >= 1, got {self.batch_size}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise RecipeError("device", f"'{self.device}' is not one of auto, cpu, cuda, cuda:N, mps")
        if self.precision not in PRECISIONS:
            raise RecipeError("precision", f"'{self.precision}' is not one of {', '.join(PRECISIONS)}")
        if self.channels_last not in ("auto", "on", "off"):
            raise RecipeError("channels_last", f"'{self.channels_last}' is not one of auto, on, off")
        if not (0.0 <= self.label_smoothing < 1.0):
            raise RecipeError("label_smoothing", "must be in [0, 1)")
        self.early_stopping.validate("early_stopping")
        n_extra = max(0, self.model.in_channels - 3)
        for name in ("extra_channel_mean", "extra_channel_std"):
            values = getattr(self.data, name)
            if values and len(values) != n_extra:
                raise RecipeError(f"data.{name}", f"has {len(values)} values for {n_extra} extra input channels")
        return self

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def phase_start_epochs(self) -> list[int]:
        """The global epoch index at which each phase starts."""
        starts, total = [], 0
        for phase in self.phases:
            starts.append(total)
            total += phase.epochs
        return starts

    # --- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        return _build(cls, data, "").validate()

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecipeError("(file)", f"is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise RecipeError("(file)", f"{path} does not exist")
        return cls.from_json(path.read_text(encoding="utf-8"))

    def copy(self) -> "Recipe":
        return Recipe.from_dict(self.to_dict())


# --- a strict, field-naming dict → dataclass builder --------------------------------------------------------

def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise RecipeError(prefix or "(root)", f"must be an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(_join(prefix, unknown[0]), f"is not a known field; known fields: {', '.join(sorted(known))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], _join(prefix, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(_join(prefix, f.name), "is required")
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(where, f"must be a list, got {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(where, f"must be an object, got {type(value).__name__}")
        return {str(k): _convert(args[1], v, f"{where}[{k}]") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(where, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(where, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(where, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(where, f"must be a string, got {value!r}")
        return value
    return value
