"""The model zoo: torchvision's own registry of classification models and their weights.

Nothing here is a hand-kept list: families, parameter counts, input sizes, preprocessing, categories and
ImageNet accuracy all come from `torchvision.models` (`list_models`, `get_model_weights`, `weights.meta`).
Pretrained weights go through torchvision's loader into the torch hub cache (TORCH_HOME is respected); when
the file is missing Thaw downloads it itself first, only to report progress as engine events.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.request
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch
import torchvision
from torchvision import models as tvm

from engine.errors import BadInputError, RecipeError, WeightsUnavailableError
from engine.data.preprocessing import Preprocessing

OFFLINE_ENV = "THAW_OFFLINE"  # set to 1 to never try a download
NO_WEIGHTS = ("none", "", "random", "scratch")


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
    family: str  # torchvision module the builder lives in: resnet, vgg, mobilenetv3, efficientnet, vision_transformer...
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


def list_model_names() -> list[str]:
    return sorted(tvm.list_models(module=tvm))


def family_of(arch: str) -> str:
    return tvm.get_model_builder(arch).__module__.rsplit(".", 1)[-1]


def checkpoint_dir() -> Path:
    """Where torchvision's loader looks for downloaded weights (TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_file_name(weights: Any) -> str:
    return os.path.basename(urlparse(weights.url).path)


def cached_weights_path(weights: Any) -> Path:
    return checkpoint_dir() / weights_file_name(weights)


@lru_cache(maxsize=None)
def _meta_param_count(arch: str) -> int:
    with torch.device("meta"):
        model = tvm.get_model(arch)
    return sum(p.numel() for p in model.parameters())


def model_info(arch: str) -> ModelInfo:
    _check_arch(arch, "model.arch")
    enum = tvm.get_model_weights(arch)
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
    if arch not in tvm.list_models(module=tvm):
        close = [n for n in list_model_names() if arch.lower().replace("-", "_") in n][:8]
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `python main.py models`."
        raise RecipeError(field_name, f"'{arch}' is not a torchvision classification model.{hint}")


def resolve_weights(arch: str, spec: str) -> Any | None:
    """'DEFAULT' / 'IMAGENET1K_V2' / 'ResNet50_Weights.IMAGENET1K_V2' → the weights enum member; 'none' → None."""
    _check_arch(arch, "model.arch")
    if spec.strip().lower() in NO_WEIGHTS:
        return None
    enum = tvm.get_model_weights(arch)
    key = spec.split(".", 1)[1] if spec.startswith(enum.__name__ + ".") else spec
    try:
        return enum[key]
    except KeyError:
        choices = ", ".join(["DEFAULT", "none"] + [str(w) for w in enum])
        raise RecipeError("model.weights", f"'{spec}' is not a weights entry of {arch}; choose one of {choices}") from None


def default_preprocessing(arch: str, weights: Any | None) -> Preprocessing:
    """The weights' preset, or the architecture's default weights' preset when training from scratch."""
    return Preprocessing.from_weights(weights or tvm.get_model_weights(arch).DEFAULT)


ProgressCallback = Callable[[int, int], None]


def ensure_weights_cached(weights: Any, progress: ProgressCallback | None = None) -> Path:
    """Make sure the weights file is in the hub cache; download it (with progress) when allowed.

    Offline and not cached: WeightsUnavailableError naming the exact file, the folder it belongs in, and the
    alternative (a local weights file).
    """
    target = cached_weights_path(weights)
    if target.is_file():
        return target
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise WeightsUnavailableError(_unavailable_message(weights, target, f"{OFFLINE_ENV} is set"))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(weights.url, target, progress)
    except (OSError, ValueError) as exc:
        raise WeightsUnavailableError(_unavailable_message(weights, target, f"the download failed: {exc}")) from exc
    return target


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
    """What loading a local weights file did: keys the model lacked, keys it did not know, shapes that differ."""

    file: str
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    def text(self) -> str:
        parts = [f"loaded {self.file}"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("shape mismatch (skipped)", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:6]) + (f" … (+{len(keys) - 6})" if len(keys) > 6 else "")
                parts.append(f"{len(keys)} {name}: {shown}")
        return "; ".join(parts)


def build_backbone(arch: str, weights: Any | None, progress: ProgressCallback | None = None,
                   **kwargs: Any) -> torch.nn.Module:
    """The torchvision model with its original head, with pretrained weights loaded by torchvision itself."""
    _check_arch(arch, "model.arch")
    if weights is not None:
        ensure_weights_cached(weights, progress)
        return tvm.get_model(arch, weights=weights)
    return tvm.get_model(arch, weights=None, **kwargs)


def architecture_kwargs(arch: str, weights: Any | None, crop_size: int) -> dict[str, Any]:
    """Constructor settings that torchvision's builders apply only when they load weights, found from the
    model class's constructor parameters (not its name): a ViT's `image_size` (the weights' size, or the crop
    size when training from scratch) and Inception/GoogLeNet's `transform_input`. Used to rebuild a checkpoint's
    architecture without its pretrained file, and to size a from-scratch ViT to its input."""
    import inspect

    builder = tvm.get_model_builder(arch)
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


def load_weights_file(model: torch.nn.Module, path: str | Path) -> LoadReport:
    """Load a user's state dict (weights_only). Keys whose shapes differ (typically the head) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise BadInputError(f"weights file {path} cannot be read as a PyTorch state dict: {exc}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a Thaw checkpoint or a common training-script layout
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"weights file {path} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel/DDP
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    usable = {k: v for k, v in state.items() if k not in mismatched}
    result = model.load_state_dict(usable, strict=False)
    return LoadReport(str(path), sorted(result.missing_keys), sorted(result.unexpected_keys), sorted(mismatched))


def torchvision_version() -> str:
    return torchvision.__version__
