"""A Recipe describes one whole training run as data.

The GUI edits Recipes, the CLI reads them from JSON, checkpoints carry the Recipe they came from. A strategy
(feature extraction, gradual unfreezing, ...) is a Recipe preset (engine/planning/presets.py), not a code path.

Every config is a dataclass validated by `validate()`; an invalid field raises RecipeError naming the dotted
field path and the allowed values. `Recipe.from_dict` rejects unknown keys for the same reason: a typo in a
JSON file must not be silently ignored.

Nothing a file can hold gets past the loader as anything but a RecipeError naming the field (or "(file)"):
every number has a declared range (`Limit`, in the field's metadata; docs/RECIPES.md lists them), every float
must be finite, every text is bounded and valid Unicode, and the file itself is bounded in size, encoding and
nesting. A property-based test (tests/engine/test_recipe_fuzz.py) holds the loader to that.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RecipeError
from engine.io_files import write_text_atomic

AUGMENTATIONS = ("lesson", "trivialaugment", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "onecycle", "plateau")
LR_PRESETS = ("single", "discriminative", "layerwise")
BN_MODES = ("train", "frozen_stats", "frozen")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The data sources' names (engine/data/sources/catalogue.py registers them; this layer cannot import that one, so
# a test holds the two lists equal): "folder", "csv" (a labels file), then torchvision's sets.
BUILTIN_DATASETS = ("folder", "csv", "Caltech101", "Caltech256", "Food101", "Flowers102", "OxfordIIITPet", "DTD",
                    "EuroSAT", "FGVCAircraft", "Imagenette", "Imagenette160", "CIFAR10", "CIFAR100", "STL10", "MNIST",
                    "FashionMNIST", "SVHN", "PCAM")
METRICS = ("val_acc", "val_loss")
HEAD_FITS = ("converge", "epochs")
LR_SCALINGS = ("none", "linear", "sqrt")
NO_WEIGHTS = ("none", "", "random", "scratch")  # model.weights values that mean no pretrained weights
MAX_PROCESSES = 1024  # torchrun's world size; more than any single job Thaw's users run

MAX_RECIPE_BYTES = 4 * 2**20  # a recipe is a few kB; a larger file is not one
MAX_NAME_CHARS = 100  # names become folder names and CSV columns
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_SEED = 2**32 - 1  # numpy's seed range, the narrowest of the generators a run seeds
_DEVICE = re.compile(r"(auto|cpu|cuda|mps|cuda:\d{1,3})")


# --- declared limits -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    """The allowed range of a number, in interval notation: [1, 65536], (0, 10], [0, 1)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def text(self) -> str:
        return f"{'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class TextRule:
    """A string field: bounded length, no control characters; `required` refuses the empty string."""

    max_chars: int = MAX_NAME_CHARS
    required: bool = False


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def number(default: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> Any:
    """A numeric field with its allowed range (`dataclasses.MISSING`: a required field)."""
    meta = {"limit": Limit(low, high, low_open, high_open)}
    return field(metadata=meta) if default is dataclasses.MISSING else field(default=default, metadata=meta)


def numbers(factory: Any, low: float, high: float, low_open: bool = False, high_open: bool = False,
            max_items: int = 1024) -> Any:
    return field(default_factory=factory, metadata={"limit": Limit(low, high, low_open, high_open),
                                                    "max_items": max_items})


def text(default: Any = "", max_chars: int = MAX_NAME_CHARS, required: bool = False) -> Any:
    rule = {"text": TextRule(max_chars, required)}
    return field(metadata=rule) if default is dataclasses.MISSING else field(default=default, metadata=rule)


def texts(factory: Any, max_items: int = 10_000, max_chars: int = 500, required: bool = True) -> Any:
    """A list of strings (module paths, stage names); each entry non-empty unless `required` is False."""
    return field(default_factory=factory, metadata={"text": TextRule(max_chars, required), "max_items": max_items})


def items(factory: Any, max_items: int) -> Any:
    """A list of nested configs (phases, groups), bounded in length."""
    return field(default_factory=factory, metadata={"max_items": max_items})


# --- the configs ---------------------------------------------------------------------------------------------

@dataclass
class DataConfig:
    """Where the images are and how they are prepared."""

    root: str = text("", MAX_PATH_CHARS)
    # "folder" (class folders or train/ + val/), "csv" (root: a path,label file) or a set `download` fetches
    dataset: str = "folder"
    val_fraction: float = number(0.2, 0, 1, True, True)  # used only when there is no explicit val/ folder
    split_seed: int = number(0, 0, MAX_SEED)
    augmentation: str = "lesson"  # the lesson's Resize → RandomCrop → flip; TrivialAugment; none
    # Mirror training images left-right at random (both presets). Off for digits, letters, text: a mirrored
    # character is another shape (or another class).
    horizontal_flip: bool = True
    resize_size: int = number(0, 0, 4096)  # 0: from the weights' preset (e.g. 256)
    crop_size: int = number(0, 0, 4096)  # 0: from the weights' preset (e.g. 224)
    num_workers: int = number(-1, -1, 256)  # -1: automatic
    max_train_batches: int = number(0, 0, 10**9)  # 0: all; a cap for quick experiments and tests
    max_val_batches: int = number(0, 0, 10**9)
    # Cached features: when a phase trains only the head, compute the frozen backbone once per image (per view)
    # and train the head on the stored features. "auto": whenever possible; "off": always run the backbone.
    cache_features: str = "auto"
    # views per training image in the cache: 1 = the un-augmented image; K > 1 = K augmented views
    feature_views: int = number(1, 1, 64)
    feature_cache_mb: int = number(2048, 0, 2**22)  # on-disk budget of the feature cache; 0: in memory only
    # Decoded images kept in RAM as uint8 at the training resolution: from the second epoch no file is decoded.
    # "auto": when the estimate fits the budget; "on": up to the budget; "off": never.
    ram_cache: str = "auto"
    ram_cache_mb: int = number(0, 0, 2**22)  # 0: a quarter of the machine's memory
    # Mean/std for input channels beyond RGB (e.g. IR, depth), on the 0–1 scale of the images. Empty: 0.5 / 0.25.
    extra_channel_mean: list[float] = numbers(list, -1000, 1000)
    extra_channel_std: list[float] = numbers(list, 0, 1000, low_open=True)

    def validate(self, prefix: str = "data") -> None:
        check_fields(self, prefix)
        if self.dataset not in BUILTIN_DATASETS:
            raise RecipeError(f"{prefix}.dataset", f"{_show(self.dataset)} is not one of {', '.join(BUILTIN_DATASETS)}")
        if self.augmentation not in AUGMENTATIONS:
            raise RecipeError(f"{prefix}.augmentation",
                              f"{_show(self.augmentation)} is not one of {', '.join(AUGMENTATIONS)}")
        if self.resize_size and self.crop_size and self.crop_size > self.resize_size:
            raise RecipeError(f"{prefix}.crop_size", f"{self.crop_size} is larger than resize_size {self.resize_size}")
        if self.cache_features not in ("auto", "off"):
            raise RecipeError(f"{prefix}.cache_features", f"{_show(self.cache_features)} is not one of auto, off")
        if self.ram_cache not in ("auto", "on", "off"):
            raise RecipeError(f"{prefix}.ram_cache", f"{_show(self.ram_cache)} is not one of auto, on, off")


@dataclass
class HeadConfig:
    """The new classifier that replaces the pretrained one."""

    dropout: float = number(0.0, 0, 1, high_open=True)
    hidden: int = number(0, 0, 65536)  # 0: a single Linear; >0: Linear → ReLU → Dropout → Linear

    def validate(self, prefix: str = "model.head") -> None:
        check_fields(self, prefix)


@dataclass
class ModelConfig:
    arch: str = text("resnet18", required=True)  # a torchvision classification model name
    # "DEFAULT", a weights name ("IMAGENET1K_V2" or "ResNet50_Weights.IMAGENET1K_V2"), or "none" (NO_WEIGHTS)
    weights: str = text("DEFAULT", 200)
    weights_file: str = text("", MAX_PATH_CHARS)  # a local state dict (.pth/.pt); overrides `weights`
    in_channels: int = number(3, 1, 1024)
    head: HeadConfig = field(default_factory=HeadConfig)

    def validate(self, prefix: str = "model") -> None:
        if not self.arch:
            raise RecipeError(f"{prefix}.arch", "is empty; see `python main.py models` for the names")
        check_fields(self, prefix)
        self.head.validate(f"{prefix}.head")


@dataclass
class GroupSpec:
    """A parameter group as data: which modules, at what learning rate and weight decay."""

    name: str = text(dataclasses.MISSING, required=True)
    modules: list[str] = field(metadata={"text": TextRule(500, True), "max_items": 10_000})  # paths or stage names
    lr: float = number(dataclasses.MISSING, 0, 10, low_open=True)
    weight_decay: float | None = number(None, 0, 1)  # None: the optimizer's weight decay

    def validate(self, prefix: str) -> None:
        if not self.name:
            raise RecipeError(f"{prefix}.name", "is empty")
        if not self.modules:
            raise RecipeError(f"{prefix}.modules", "lists no module")
        check_fields(self, prefix)


@dataclass
class OptimizerConfig:
    name: str = "adam"
    weight_decay: float = number(0.0, 0, 1)
    momentum: float = number(0.9, 0, 1, high_open=True)  # SGD only
    nesterov: bool = False  # SGD only
    betas: list[float] = numbers(lambda: [0.9, 0.999], 0, 1, high_open=True, max_items=2)  # Adam/AdamW
    no_decay_norm_bias: bool = False  # no weight decay on norm layers and biases (timm's rule)

    def validate(self, prefix: str) -> None:
        if self.name not in OPTIMIZERS:
            raise RecipeError(f"{prefix}.name", f"{_show(self.name)} is not one of {', '.join(OPTIMIZERS)}")
        if len(self.betas) != 2:
            raise RecipeError(f"{prefix}.betas", f"must be two numbers in [0, 1), got {_show(self.betas)}")
        check_fields(self, prefix)
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise RecipeError(f"{prefix}.nesterov", "needs optimizer 'sgd' with momentum > 0")


@dataclass
class ScheduleConfig:
    name: str = "none"
    step_size: int = number(7, 1, 10_000)  # step: epochs between decays (the lesson uses 7)
    gamma: float = number(0.1, 0, 1, low_open=True)  # step: decay factor
    warmup_epochs: float = number(0.0, 0, 10_000)  # cosine: linear warm-up length, in epochs (fractions allowed)
    min_lr_ratio: float = number(0.0, 0, 1, high_open=True)  # cosine: final lr as a fraction of the peak
    pct_start: float = number(0.3, 0, 1, True, True)  # onecycle: share of steps spent rising
    div_factor: float = number(25.0, 1, 1e6)  # onecycle: initial lr = max lr / div_factor
    patience: int = number(2, 0, 10_000)  # plateau: epochs without improvement before decay
    factor: float = number(0.1, 0, 1, low_open=True)  # plateau: decay factor

    def validate(self, prefix: str) -> None:
        if self.name not in SCHEDULES:
            raise RecipeError(f"{prefix}.name", f"{_show(self.name)} is not one of {', '.join(SCHEDULES)}")
        check_fields(self, prefix)


@dataclass
class PhaseConfig:
    """One phase of a run: what trains, in which groups, at which rates, for how many epochs.

    `trainable` lists module paths or stage names whose whole subtree trains in this phase ("all" for the
    whole model); `frozen` then freezes subtrees inside them. Everything else is frozen. The freeze state of a
    phase is complete in itself, so a phase can be resumed without knowing the phases before it.
    """

    name: str = text("train", required=True)
    epochs: int = number(1, 1, 10_000)
    trainable: list[str] = texts(lambda: ["all"])
    frozen: list[str] = texts(list)
    # Groups: explicit ones, or generated by `lr_preset` from `lr` (the head's rate) and `layer_decay`.
    groups: list[GroupSpec] = items(list, 1000)
    lr_preset: str = "single"
    lr: float = number(1e-3, 0, 10, low_open=True)
    layer_decay: float = number(0.5, 0, 1, low_open=True)  # layerwise preset: lr × decay^depth from the head
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # BatchNorm mode per module path (applies to every BN layer under it). Unlisted BN layers: "train" when
    # trainable, "frozen" (eval mode, statistics do not move) when their subtree is frozen.
    bn_modes: dict[str, str] = field(default_factory=dict, metadata={"max_items": 10_000})
    # Keep Adam/SGD state of parameters that were already training in the previous phase.
    carry_optimizer_state: bool = True
    # A phase that trains only the head on cached features: "converge" fits the head to convergence (L-BFGS, L2
    # chosen by cross-validation; engine/train/head_fit.py) as one step of the run; "epochs" trains it for
    # `epochs` with the optimizer and schedule. Phases that train more than the head always train epochs.
    head_fit: str = "converge"
    # When the phase's last epoch is worse than the run's best epoch (early_stopping.metric), the model goes on from
    # the best epoch's weights (checkpoints/best.pt), as Keras' restore_best_weights does for a whole run: a
    # fine-tuning phase that damages a fitted head hands on the head, said in the log (engine/train/trainer.py).
    restore_best: bool = False

    def validate(self, prefix: str) -> None:
        if not self.name:
            raise RecipeError(f"{prefix}.name", "is empty")
        if not self.trainable:
            raise RecipeError(f"{prefix}.trainable", "lists nothing to train; use [\"head\"] for feature extraction")
        check_fields(self, prefix)
        if self.lr_preset not in LR_PRESETS:
            raise RecipeError(f"{prefix}.lr_preset", f"{_show(self.lr_preset)} is not one of {', '.join(LR_PRESETS)}")
        names = set()
        for i, group in enumerate(self.groups):
            group.validate(f"{prefix}.groups[{i}]")
            if group.name in names:
                raise RecipeError(f"{prefix}.groups[{i}].name", f"{_show(group.name)} is used twice")
            names.add(group.name)
        self.optimizer.validate(f"{prefix}.optimizer")
        self.schedule.validate(f"{prefix}.schedule")
        if self.head_fit not in HEAD_FITS:
            raise RecipeError(f"{prefix}.head_fit", f"'{self.head_fit}' is not one of {', '.join(HEAD_FITS)}")
        for path, mode in self.bn_modes.items():
            where = f"{prefix}.bn_modes[{_show_key(path)}]"
            if not path:
                raise RecipeError(where, "names no module; use a module path or a stage name")
            _check_text(path, where, TextRule(500))
            if mode not in BN_MODES:
                raise RecipeError(where, f"{_show(mode)} is not one of {', '.join(BN_MODES)}")


@dataclass
class EarlyStoppingConfig:
    metric: str = "val_acc"
    patience: int = number(0, 0, 10_000)  # 0: off; otherwise epochs without improvement before the run stops
    min_delta: float = number(0.0, 0, 1000)

    def validate(self, prefix: str = "early_stopping") -> None:
        if self.metric not in METRICS:
            raise RecipeError(f"{prefix}.metric", f"{_show(self.metric)} is not one of {', '.join(METRICS)}")
        check_fields(self, prefix)


@dataclass
class DistributedConfig:
    """How a run spreads over processes: torchrun + DistributedDataParallel (engine/train/distributed.py).

    `batch_size` stays the batch of one process: a step trains on `batch_size × processes` images (the global
    batch). Under `torchrun` its world size decides and recipe.json records it here."""

    processes: int = number(1, 1, MAX_PROCESSES)  # > 1: `train` starts torchrun with this many (a GPU each)
    # The learning rates are tuned for one process's batch; with W processes the global batch is W× larger.
    # "linear": every lr × W (Goyal et al. 2017; pair it with warm-up), "sqrt": × √W, "none": as written.
    lr_scaling: str = "none"
    sync_batchnorm: bool = False  # BN layers that train use the global batch's statistics (CUDA/NCCL only)

    def validate(self, prefix: str = "distributed") -> None:
        check_fields(self, prefix)
        if self.lr_scaling not in LR_SCALINGS:
            raise RecipeError(f"{prefix}.lr_scaling",
                              f"{_show(self.lr_scaling)} is not one of {', '.join(LR_SCALINGS)}")


@dataclass
class Recipe:
    name: str = text("run", required=True)
    strategy: str = text("custom")  # a label for comparing runs: feature_extraction, fine_tune_all, ...
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    phases: list[PhaseConfig] = items(lambda: [PhaseConfig()], 100)
    batch_size: int = number(64, 1, 65536)
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps
    precision: str = "auto"  # auto: bf16 (or fp16 with a scaler) on CUDA, fp32 elsewhere
    channels_last: str = "auto"  # auto: on for CUDA and the CPU (engine/train/devices.py); "on" / "off"
    seed: int = number(0, 0, MAX_SEED)
    label_smoothing: float = number(0.0, 0, 1, high_open=True)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    output_dir: str = text("", MAX_PATH_CHARS)  # the runs folder; empty: the user data folder
    tensorboard: bool = False  # also write TensorBoard event files in <run folder>/tensorboard
    # (pip install tensorboard)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def validate(self) -> Recipe:
        if not self.name:
            raise RecipeError("name", "is empty")
        check_fields(self, "")
        self.data.validate("data")
        self.model.validate("model")
        if not self.phases:
            raise RecipeError("phases", "a run needs at least one phase")
        names = set()
        for i, phase in enumerate(self.phases):
            phase.validate(f"phases[{i}]")
            if phase.name in names:
                raise RecipeError(f"phases[{i}].name", f"{_show(phase.name)} is used twice")
            names.add(phase.name)
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise RecipeError("device", f"{_show(self.device)} is not one of auto, cpu, cuda, cuda:N, mps")
        if self.precision not in PRECISIONS:
            raise RecipeError("precision", f"{_show(self.precision)} is not one of {', '.join(PRECISIONS)}")
        if self.channels_last not in ("auto", "on", "off"):
            raise RecipeError("channels_last", f"{_show(self.channels_last)} is not one of auto, on, off")
        self.early_stopping.validate("early_stopping")
        self.distributed.validate("distributed")
        check_distributed_device(self.device, self.distributed, self.distributed.processes)
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
        write_text_atomic(Path(path), self.to_json() + "\n", "recipe file")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        return _build(cls, data, "").validate()

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        return cls.from_dict(parse_json(text))

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        path = Path(path)
        if path.is_dir():
            raise RecipeError("(file)", f"{path} is a folder, not a recipe file (a .json file)")
        if not path.exists():
            raise RecipeError("(file)", f"{path} does not exist")
        if not path.is_file():
            raise RecipeError("(file)", f"{path} is not a regular file")
        try:
            size = path.stat().st_size
            if size > MAX_RECIPE_BYTES:
                raise RecipeError("(file)", f"{path} is {size / 2**20:.1f} MB; a recipe is a small JSON file "
                                            f"(at most {MAX_RECIPE_BYTES // 2**20} MB)")
            data = path.read_bytes()
        except OSError as exc:
            raise RecipeError("(file)", f"{path} cannot be read ({exc.strerror or exc})") from None
        return cls.from_json(decode_text(data, str(path)))

    def copy(self) -> Recipe:
        return Recipe.from_dict(self.to_dict())


def lr_factor(scaling: str, processes: int) -> float:
    """`distributed.lr_scaling`'s factor for a run of `processes`: linear × W, sqrt × √W, none × 1."""
    if scaling == "linear":
        return float(processes)
    if scaling == "sqrt":
        return math.sqrt(processes)
    return 1.0


def check_distributed_device(device: str, config: DistributedConfig, processes: int) -> None:
    """A run over several processes puts one process on each GPU (its LOCAL_RANK) or all of them on the CPU."""
    if processes <= 1:
        return
    if device == "mps":
        raise RecipeError("device", f"'mps' cannot be shared by {processes} processes (PyTorch has no MPS process "
                                    f"group); use 'cpu' or one process")
    if device.startswith("cuda:"):
        raise RecipeError("device", f"'{device}' names one GPU, but each of the {processes} processes takes its own "
                                    f"(GPU = LOCAL_RANK); use 'cuda' or 'auto', and CUDA_VISIBLE_DEVICES to choose")
    if config.sync_batchnorm and device == "cpu":
        raise RecipeError("distributed.sync_batchnorm", "needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only); "
                                                        "turn it off to train on the CPU")


# --- reading a file ------------------------------------------------------------------------------------------

def decode_text(data: bytes, where: str = "the recipe") -> str:
    """UTF-8 (a UTF-8, UTF-16 or UTF-32 byte-order mark is honoured: PowerShell's `>` writes UTF-16)."""
    encoding = json.detect_encoding(data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        name = {"utf-8-sig": "UTF-8"}.get(encoding, encoding.upper())
        raise RecipeError("(file)", f"{where} is not valid {name} text (byte {exc.start}: 0x{data[exc.start]:02x}); "
                                    f"save it as UTF-8") from None


class _HugeInt:
    """An integer literal too long to be any field's value (Python refuses to convert > 4300 digits)."""

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(literal: str) -> int | _HugeInt:
    digits = len(literal.lstrip("-"))
    return _HugeInt(digits) if digits > 40 else int(literal)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise RecipeError("(file)", f"the key {_show(key)} appears twice in one object; only one can be meant")
        seen[key] = value
    return seen


def parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_int=_parse_int, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise RecipeError("(file)", "nests objects or lists too deeply to be a recipe") from None
    except json.JSONDecodeError as exc:
        raise RecipeError("(file)", f"is not valid JSON: {exc}") from None
    except ValueError as exc:  # e.g. a float literal Python cannot convert
        raise RecipeError("(file)", f"is not valid JSON: {str(exc)[:200]}") from None


# --- checking declared limits --------------------------------------------------------------------------------

class _ShortRepr(reprlib.Repr):
    """Bounded reprs for error messages: a 100 000-deep list or a 5 000-digit integer is named, not printed."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlist, self.maxdict = 3, 60, 60, 4, 4

    def repr_int(self, x: int, level: int) -> str:
        return _big_int(x) if x.bit_length() > 128 else super().repr_int(x, level)


_REPR = _ShortRepr()


def _big_int(x: int) -> str:
    return f"an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits"


def _show(value: Any) -> str:
    if isinstance(value, _HugeInt):
        return f"an integer of {value.digits} digits"
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a message must never fail to be written
        return f"a {type(value).__name__}"


def _show_key(key: str) -> str:
    return key if key and len(key) <= 60 and key.isprintable() else _show(key)


def check_fields(config: Any, prefix: str) -> None:
    """Every field's declared rule: numbers finite and within their `Limit`, texts bounded and printable,
    lists bounded in length. Raises RecipeError naming the field."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        where = f"{prefix}.{f.name}" if prefix else f.name
        max_items = f.metadata.get("max_items")
        if max_items is not None and isinstance(value, (list, dict)) and len(value) > max_items:
            raise RecipeError(where, f"has {len(value)} entries; at most {max_items} are allowed")
        limit, rule = f.metadata.get("limit"), f.metadata.get("text")
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_value(item, f"{where}[{i}]", limit, rule)
        else:
            _check_value(value, where, limit, rule)


def _check_value(value: Any, where: str, limit: Limit | None, rule: TextRule | None) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(where, f"must be a finite number, got {value}")
    if isinstance(value, (int, float)) and limit is not None and not limit.allows(value):
        shown = _big_int(value) if isinstance(value, int) and value.bit_length() > 64 else _num(value)
        raise RecipeError(where, f"must be in {limit.text()}, got {shown}")
    if isinstance(value, str) and rule is not None:
        _check_text(value, where, rule)


def _check_text(value: str, where: str, rule: TextRule) -> None:
    if rule.required and not value.strip():
        raise RecipeError(where, "is empty" if not value else "is only white space")
    if len(value) > rule.max_chars:
        raise RecipeError(where, f"is {len(value)} characters long; at most {rule.max_chars} are allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RecipeError(where, f"is not valid text (an unpaired surrogate at character {exc.start})") from None
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:  # a newline in a name breaks every one-line message and CSV column that shows it
        raise RecipeError(where, f"contains the unprintable character {bad!r}")


def recipe_limits() -> dict[str, str]:
    """Every bounded field as `path: allowed range` (lists as `phases[].lr`), for docs/RECIPES.md."""
    out: dict[str, str] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            path = f"{prefix}.{f.name}" if prefix else f.name
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, path)
            elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
                walk(typing.get_args(tp)[0], f"{path}[]")
            elif "limit" in f.metadata:
                out[path] = f.metadata["limit"].text()

    walk(Recipe, "")
    return out


# --- a strict, field-naming dict → dataclass builder --------------------------------------------------------

@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # evaluates every annotation string: slow enough to be worth caching


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise RecipeError(prefix or "(root)", f"must be an object, got {_kind(data)}")
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise RecipeError(_join(prefix, _show_key(unknown[0])),
                          f"is not a known field; known fields: {', '.join(sorted(known))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], _join(prefix, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(_join(prefix, f.name), "is required")
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _kind(value: Any) -> str:
    if isinstance(value, _HugeInt):
        return _show(value)
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), _show(value))


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
            raise RecipeError(where, f"must be a list, got {_kind(value)}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(where, f"must be an object, got {_kind(value)}")
        return {str(k): _convert(args[1], v, f"{where}[{_show_key(str(k))}]") for k, v in value.items()}
    if isinstance(value, _HugeInt):
        raise RecipeError(where, f"is {_show(value)}, far outside any allowed range")
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(where, f"must be true or false, got {_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(where, f"must be an integer, got {_kind(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(where, f"must be a number, got {_kind(value)}")
        try:
            return float(value)
        except OverflowError:
            raise RecipeError(where, f"is {_big_int(value)}, far outside any allowed range") from None
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(where, f"must be a string, got {_kind(value)}")
        return value
    return value
