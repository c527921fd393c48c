"""The model zoo: torchvision's own registry of classification models and their weights.

Nothing here is a hand-kept list: families, parameter counts, input sizes, preprocessing, categories and
ImageNet accuracy all come from `torchvision.models` (`list_models`, `get_model_weights`, `weights.meta`).
Pretrained weights go through torchvision's loader into the torch hub cache (TORCH_HOME is respected); when
the file is missing Thaw downloads it itself first, only to report progress as engine events.

More architectures can join the registry (`register_architecture`): a builder written as torchvision's are (a
`weights` keyword annotated with its `WeightsEnum`, whose files load through torchvision's loader). Modules named in
`THAW_ARCH_MODULES` (comma-separated) are imported at the registry's first use so that they can register theirs in
every process of a run (a CLI, a torchrun rank, the studio's child); the test suite's tiny architecture
(tests/tiny_arch.py) comes in that way. Every lookup of an architecture goes through `model_builder`,
`weights_enum` and `get_model` here, never through torchvision's functions directly.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torchvision import models as tvm

from engine.data.preprocessing import Preprocessing
from engine.errors import BadInputError, RecipeError, WeightsUnavailableError
from engine.model.stages import covers
from engine.recipe import NO_WEIGHTS  # noqa: F401 - part of this module's interface (weights specs)
from engine.torch_files import load_plain

OFFLINE_ENV = "THAW_OFFLINE"  # set to 1 to never try a download
ARCH_MODULES_ENV = "THAW_ARCH_MODULES"  # modules that register more architectures (comma-separated)

_REGISTERED: dict[str, Callable[..., torch.nn.Module]] = {}  # architectures beyond torchvision's own


@dataclass
class WeightsInfo:
    name: str  # e.g. "ResNet50_Weights.IMAGENET1K_V2"
    acc1: float | None
    acc5: float | None
    num_params: int
    file_size_mb: float | None
    file_name: str
    cached: bool
    preprocessing: dict[str, Any]
    num_categories: int
    is_default: bool


@dataclass
class ModelInfo:
    name: str
    family: str  # torchvision module the builder lives in: resnet, vgg, mobilenetv3, efficientnet,
    # vision_transformer...
    num_params: int
    input_size: int
    resize_size: int
    weights: list[WeightsInfo] = field(default_factory=list)

    @property
    def default_weights(self) -> WeightsInfo | None:
        return next((w for w in self.weights if w.is_default), None)

    @property
    def acc1(self) -> float | None:
        default = self.default_weights
        return default.acc1 if default else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register_architecture(name: str, builder: Callable[..., torch.nn.Module]) -> None:
    """Add a classification builder written as torchvision's are: `builder(weights=None, progress=True, **kwargs)`,
    its `weights` parameter annotated with the architecture's `WeightsEnum`. Registering a name twice with the same
    builder is a no-op; a name torchvision or another builder holds is refused."""
    if _REGISTERED.get(name) is builder:
        return
    if name in _REGISTERED or name in tvm.list_models(module=tvm):
        raise ValueError(f"an architecture named {name!r} is already registered")
    tvm.get_model_weights(builder)  # the weights annotation must name a WeightsEnum (torchvision's own check)
    _REGISTERED[name] = builder


@cache
def _import_registering_modules() -> None:
    for module in filter(None, (m.strip() for m in os.environ.get(ARCH_MODULES_ENV, "").split(","))):
        importlib.import_module(module)


def _registered() -> dict[str, Callable[..., torch.nn.Module]]:
    _import_registering_modules()
    return _REGISTERED


def list_model_names() -> list[str]:
    return sorted([*tvm.list_models(module=tvm), *_registered()])


def model_builder(arch: str) -> Callable[..., torch.nn.Module]:
    """The builder of a registered architecture: torchvision's, or one added by `register_architecture`."""
    return _registered().get(arch) or tvm.get_model_builder(arch)


def weights_enum(arch: str) -> Any:
    """The architecture's `WeightsEnum` (its pretrained versions, DEFAULT among them)."""
    return tvm.get_model_weights(model_builder(arch))


def get_model(arch: str, **kwargs: Any) -> torch.nn.Module:
    """The architecture built by its builder (`weights=…` loads through torchvision's loader)."""
    return model_builder(arch)(**kwargs)


def family_of(arch: str) -> str:
    return model_builder(arch).__module__.rsplit(".", 1)[-1]


def checkpoint_dir() -> Path:
    """Where torchvision's loader looks for downloaded weights (TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_file_name(weights: Any) -> str:
    return os.path.basename(urlparse(weights.url).path)


def cached_weights_path(weights: Any) -> Path:
    return checkpoint_dir() / weights_file_name(weights)


@cache
def _meta_param_count(arch: str) -> int:
    with torch.device("meta"):
        model = get_model(arch)
    return sum(p.numel() for p in model.parameters())


def model_info(arch: str) -> ModelInfo:
    _check_arch(arch, "model.arch")
    enum = weights_enum(arch)
    infos = []
    for weights in enum:
        metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
        infos.append(WeightsInfo(
            name=str(weights),
            acc1=metrics.get("acc@1"),
            acc5=metrics.get("acc@5"),
            num_params=int(weights.meta.get("num_params", 0)),
            file_size_mb=weights.meta.get("_file_size"),
            file_name=weights_file_name(weights),
            cached=cached_weights_path(weights).is_file(),
            preprocessing=Preprocessing.from_weights(weights).to_dict(),
            num_categories=len(weights.meta.get("categories") or []),
            is_default=weights is enum.DEFAULT,
        ))
    default = enum.DEFAULT
    prep = Preprocessing.from_weights(default)
    num_params = int(default.meta.get("num_params", 0)) or _meta_param_count(arch)
    return ModelInfo(arch, family_of(arch), num_params, prep.crop_size, prep.resize_size, infos)


def all_models() -> list[ModelInfo]:
    return [model_info(name) for name in list_model_names()]


def _check_arch(arch: str, field_name: str) -> None:
    if arch not in list_model_names():
        close = [n for n in list_model_names() if arch.lower().replace("-", "_") in n][:8]
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `python main.py models`."
        raise RecipeError(field_name, f"'{arch}' is not a torchvision classification model.{hint}")


def resolve_weights(arch: str, spec: str) -> Any | None:
    """'DEFAULT' / 'IMAGENET1K_V2' / 'ResNet50_Weights.IMAGENET1K_V2' → the weights enum member; 'none' → None."""
    _check_arch(arch, "model.arch")
    if spec.strip().lower() in NO_WEIGHTS:
        return None
    enum = weights_enum(arch)
    key = spec.split(".", 1)[1] if spec.startswith(enum.__name__ + ".") else spec
    try:
        return enum[key]
    except KeyError:
        choices = ", ".join(["DEFAULT", "none"] + [str(w) for w in enum])
        raise RecipeError("model.weights",
                          f"'{spec}' is not a weights entry of {arch}; choose one of {choices}") from None


def default_preprocessing(arch: str, weights: Any | None) -> Preprocessing:
    """The weights' preset, or the architecture's default weights' preset when training from scratch."""
    return Preprocessing.from_weights(weights or weights_enum(arch).DEFAULT)


ProgressCallback = Callable[[int, int], None]


def ensure_weights_cached(weights: Any, progress: ProgressCallback | None = None) -> Path:
    """Make sure the weights file is in the hub cache; download it (with progress) when allowed.

    Offline and not cached: WeightsUnavailableError naming the exact file, the folder it belongs in, and the
    alternative (a local weights file).
    """
    target = cached_weights_path(weights)
    if target.is_file():
        return target
    if downloads_forbidden():
        raise _unavailable(weights, target, f"{OFFLINE_ENV} is set")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(weights.url, target, progress)
    except (OSError, ValueError) as exc:
        raise _unavailable(weights, target, f"the download failed: {exc}") from exc
    return target


def downloads_forbidden() -> bool:
    """THAW_OFFLINE is set: weights come from the cache or a local file, never from the network."""
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def preferred_weights(arch: str) -> str:
    """The weights a new choice of `arch` should name: "DEFAULT" — unless downloads are forbidden (THAW_OFFLINE)
    and the default weights' file is not cached while another pretrained version of the architecture is; then the
    exact name of the most accurate cached one. The recipe names what it will load, so nothing is swapped behind
    the user's back; an unknown architecture gets "DEFAULT" (its validation says what is wrong)."""
    if not downloads_forbidden():
        return "DEFAULT"
    try:
        enum = weights_enum(arch)
    except (KeyError, ValueError):
        return "DEFAULT"
    if cached_weights_path(enum.DEFAULT).is_file():
        return "DEFAULT"
    cached = [w for w in enum if cached_weights_path(w).is_file()]
    if not cached:
        return "DEFAULT"

    def accuracy(weights: Any) -> float:
        return float(weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1") or 0.0)

    return str(max(cached, key=accuracy))


def _unavailable(weights: Any, target: Path, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(_unavailable_message(weights, target, why), str(weights), target.name,
                                   str(target.parent), why)


def _unavailable_message(weights: Any, target: Path, why: str) -> str:
    return (
        f"The pretrained weights {weights} are not on this machine and cannot be downloaded ({why}).\n"
        f"  Needed file: {target.name}\n"
        f"  Put it here: {target.parent}\n"
        f"  (it comes from {weights.url}; TORCH_HOME changes the folder)\n"
        f"  Or use a local state dict instead: set model.weights_file to a .pth file "
        f"(--weights-file on the command line), or model.weights to \"none\" to train from scratch."
    )


_HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")


def _download(url: str, target: Path, progress: ProgressCallback | None) -> None:
    """Download to a temp file in the same folder, check the hash prefix in the name, then rename."""
    expected = _HASH_PREFIX.search(target.name)
    sha = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if expected and not sha.hexdigest().startswith(expected.group(1)):
            raise ValueError(f"hash mismatch for {target.name}: the download is corrupt")
        shutil.move(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class LoadReport:
    """What loading a local weights file did, tensor by tensor.

    The backbone is every tensor of the model but the new head (BatchNorm's `num_batches_tracked` counters
    aside). It must be covered: each of its tensors loaded from the file, or adapted from it by the documented
    first-conv rule (RGB filters copied, extra channels the RGB mean). The head is expected to differ.
    """

    file: str
    missing: list[str]  # backbone tensors the file does not have
    unexpected: list[str]  # file tensors the model has no place for (ignored)
    mismatched: list[str]  # file tensors whose shape differs from the model's (skipped; the head's expectedly)
    matched: int = 0  # backbone tensors loaded from the file
    required: int = 0  # backbone tensors
    adapted: list[str] = field(default_factory=list)  # input-conv tensors adapted to another channel count
    head: list[str] = field(default_factory=list)  # the new head's tensors
    head_loaded: bool = False  # the file had a head of exactly this shape (same number of classes)
    not_covered: list[str] = field(default_factory=list)  # backbone tensors neither loaded nor adapted
    shapes: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)  # mismatched: (file, model)

    @property
    def fits(self) -> bool:
        """True when the whole backbone came from the file."""
        return not self.not_covered

    def text(self) -> str:
        parts = [f"loaded {self.file}: {self.matched} of {self.required} backbone tensors"]
        if self.adapted:
            parts.append(f"input conv adapted to the recipe's channels ({', '.join(self.adapted)})")
        if self.head:
            parts.append("head loaded from the file" if self.head_loaded else f"new head ({len(self.head)} tensors)")
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                           ("shape mismatch (skipped)", self.mismatched)):
            if keys:
                parts.append(f"{len(keys)} {name}: {_shown(keys)}")
        return "; ".join(parts)

    def refusal(self, arch: str) -> str:
        """Why the file is refused: what matched, what did not."""
        lacking = [k for k in self.not_covered if k in self.missing]
        wrong = [k for k in self.not_covered if k in self.shapes]
        parts = [f"weights file {self.file} does not fit {arch}: {self.matched} of {self.required} backbone "
                 f"tensors match"]
        if lacking:
            parts.append(f"{len(lacking)} missing from the file ({_shown(lacking, 3)})")
        if wrong:
            shown = ", ".join(f"{k} {self.shapes[k][0]} in the file vs {self.shapes[k][1]}" for k in wrong[:2])
            parts.append(f"{len(wrong)} of another shape ({shown}{' …' if len(wrong) > 2 else ''})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} file tensors unknown to {arch}")
        hint = f"Is it a state dict of {arch}?"
        if len(wrong) == 1 and not lacking and len(self.shapes[wrong[0]][0]) == 4:
            file_in, model_in = self.shapes[wrong[0]][0][1], self.shapes[wrong[0]][1][1]
            if file_in != model_in:
                hint = f"The file's input layer takes {file_in} channels: set model.in_channels to {file_in}."
        return "; ".join(parts) + ". " + hint


def _shown(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f" … (+{len(keys) - limit})" if len(keys) > limit else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A user's state dict (read weights_only); Thaw checkpoints, {"state_dict": …} and DataParallel/DDP
    ("module." prefixes) layouts are unwrapped."""
    state = load_plain(path, "weights file")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a Thaw checkpoint or a common training-script layout
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"weights file {path} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def load_matching(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> set[str]:
    """Load every tensor of `state` whose name and shape the model has; returns their names."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    model.load_state_dict(usable, strict=False)
    return set(usable)


def assess_load(file: str, model: torch.nn.Module, state: dict[str, torch.Tensor], before_surgery: set[str],
                after_surgery: set[str], replaced: set[str], head_path: str, input_conv: str | None) -> LoadReport:
    """The report of a two-pass load: `before_surgery` were loaded into the torchvision model as built (then
    the input conv was adapted and the head replaced), `after_surgery` into the final model. `replaced` are
    the pre-surgery model's tensors that surgery removed (the old head, auxiliary classifiers)."""
    own = model.state_dict()
    head = sorted(k for k in own if covers(head_path, k))
    backbone = [k for k in own if k not in head and not k.endswith("num_batches_tracked")]
    adapted = sorted(k for k in backbone if input_conv and covers(input_conv, k) and k not in after_surgery
                     and k in before_surgery)
    covered = [k for k in backbone if k in after_surgery or k in before_surgery]
    loaded_anywhere = before_surgery | after_surgery
    mismatched = sorted(k for k in state if k in own and k not in loaded_anywhere)
    unexpected = sorted(k for k in state if k not in own and k not in loaded_anywhere and k not in replaced)
    return LoadReport(
        file=file,
        missing=sorted(k for k in backbone if k not in state),
        unexpected=unexpected,
        mismatched=mismatched,
        matched=len(covered) - len(adapted),
        required=len(backbone),
        adapted=adapted,
        head=head,
        head_loaded=bool(head) and all(k in after_surgery for k in head),
        not_covered=[k for k in backbone if k not in covered],
        shapes={k: (list(state[k].shape), list(own[k].shape)) for k in mismatched},
    )


def build_backbone(arch: str, weights: Any | None, progress: ProgressCallback | None = None,
                   **kwargs: Any) -> torch.nn.Module:
    """The torchvision model with its original head, with pretrained weights loaded by torchvision itself."""
    _check_arch(arch, "model.arch")
    if weights is not None:
        ensure_weights_cached(weights, progress)
        return get_model(arch, weights=weights)
    return get_model(arch, weights=None, **kwargs)


def architecture_kwargs(arch: str, weights: Any | None, crop_size: int) -> dict[str, Any]:
    """Constructor settings that torchvision's builders apply only when they load weights, found from the
    model class's constructor parameters (not its name): a ViT's `image_size` (the weights' size, or the crop
    size when training from scratch) and Inception/GoogLeNet's `transform_input`. Used to rebuild a checkpoint's
    architecture without its pretrained file, and to size a from-scratch ViT to its input."""
    builder = model_builder(arch)
    module = __import__(builder.__module__, fromlist=["_"])
    params: set[str] = set()
    for obj in vars(module).values():  # the model classes defined in the builder's module
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == module.__name__:
            params |= set(inspect.signature(obj.__init__).parameters)
    kwargs: dict[str, Any] = {}
    if "image_size" in params and "patch_size" in params:
        kwargs["image_size"] = int(weights.meta["min_size"][0]) if weights is not None else int(crop_size)
    if "transform_input" in params and weights is not None:
        kwargs["transform_input"] = True
    return kwargs


def torchvision_version() -> str:
    return torchvision.__version__
