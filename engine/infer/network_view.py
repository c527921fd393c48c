"""What the network sees: the first convolution's filters as an image grid, and the feature maps a stage
produces for one image. Both for any model, so the studio can show the pretrained and the fine-tuned network
side by side (NetworkViews builds the two from a checkpoint, once).

Arrays only (uint8 images, float maps): the studio turns them into pixmaps; the engine never imports Qt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.data.images import load_image
from engine.data.transforms import eval_transform
from engine.errors import BadInputError
from engine.infer.run_checkpoint import RunCheckpoint, start_model, trained_model
from engine.model.build import BuiltModel
from engine.model.stages import StageMap
from engine.model.surgery import find_input_conv

BACKGROUND = 255  # the grid's separator colour: white


@dataclass
class FilterGrid:
    image: np.ndarray  # uint8 (H, W, 3): the filters as tiles, row-major, separated by `padding` pixels
    layer: str  # the convolution's module path
    filters: int
    rows: int
    cols: int
    tile: int  # a tile's side in pixels (kernel size × scale)


@dataclass
class FeatureMaps:
    stage: str
    layer: str  # the module whose output these are
    maps: np.ndarray  # float32 (C, h, w)
    order: list[int] = field(default_factory=list)  # channels by mean activation, strongest first

    def grid(self, count: int = 16, scale: int = 4, padding: int = 1, order: list[int] | None = None) -> np.ndarray:
        """The `count` strongest channels as a greyscale grid (uint8 (H, W)), each stretched to its own range.
        `order` picks the channels instead (another model's: the pretrained and the fine-tuned model's channel c
        are the same filter before and after training, so side by side they show the same channels)."""
        chosen = [self.maps[c] for c in (self.order if order is None else order)[:max(1, count)]]
        tiles = [_stretch(m) for m in chosen]
        return _tile(tiles, scale, padding)


def first_conv_filters(model: nn.Module, scale: int = 4, padding: int = 1, limit: float | None = None) -> FilterGrid:
    """The filters of the model's first convolution (the input layer). Each filter is shown as an RGB tile
    (the first three input channels; the mean of them for 1- or 2-channel inputs). Without `limit` each tile
    is stretched to its own range (the patterns show); with it, weights are mapped symmetrically from −limit
    (black) to +limit (white) with 0 grey, so two models drawn with the same limit compare in magnitude."""
    path = find_input_conv(model)
    weight = model.get_submodule(path).weight.detach().to("cpu", torch.float32)  # (out, in, kh, kw)
    if weight.shape[1] >= 3:
        rgb = weight[:, :3]
    else:
        rgb = weight.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    tiles = []
    for kernel in rgb.numpy():
        kernel = kernel.transpose(1, 2, 0)  # (kh, kw, 3)
        if limit is None:
            tiles.append(_stretch(kernel))
        else:
            tiles.append(np.clip(np.rint(127.5 + 127.5 * kernel / max(limit, 1e-12)), 0, 255).astype(np.uint8))
    image = _tile(tiles, scale, padding)
    cols = math.ceil(math.sqrt(len(tiles)))
    return FilterGrid(image, path, len(tiles), math.ceil(len(tiles) / cols), cols, rgb.shape[-1] * scale)


def filter_limit(*models: nn.Module) -> float:
    """The largest |weight| of the models' first convolutions: one scale for a side-by-side comparison."""
    return max(float(m.get_submodule(find_input_conv(m)).weight.detach().abs().max()) for m in models)


def stage_feature_maps(model: nn.Module, stages: StageMap, image_tensor: torch.Tensor, stage: str) -> FeatureMaps:
    """The output of `stage` (its last module to finish) for one normalised image (C, H, W). A transformer's
    token sequence is shown as its patch grid."""
    found = stages.get(stage)
    if found is None:
        raise BadInputError(f"'{stage}' is not a stage of this model ({', '.join(stages.names())})")
    modules = dict(model.named_modules())
    targets = [modules[p] for p in found.modules if p in modules]
    recorded: list[tuple[str, torch.Tensor]] = []
    names = {id(m): p for p, m in modules.items()}

    def record(module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            recorded.append((names[id(module)], output.detach()))

    handles = [m.register_forward_hook(record) for m in targets]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(image_tensor.detach().to(device, torch.float32).unsqueeze(0))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    for layer, output in reversed(recorded):  # the last output with a spatial layout is the stage's
        maps = _spatial(output[0])
        if maps is not None:
            maps = maps.float().cpu().numpy()
            order = np.argsort(-maps.mean(axis=(1, 2)), kind="stable").tolist()
            return FeatureMaps(stage, layer, maps.astype(np.float32), order)
    raise BadInputError(f"stage '{stage}' gives no spatial feature maps (choose a stage before the head: "
                        f"{', '.join(s.name for s in stages.body)})")


class NetworkViews:
    """The pretrained (start) and the fine-tuned model of a checkpoint, built once, viewed side by side."""

    def __init__(self, checkpoint: RunCheckpoint):
        if checkpoint.pruning:  # channel i of a pruned layer is not channel i of the pretrained one
            raise BadInputError(f"{checkpoint.path} holds a pruned model: its layers lost channels the pretrained "
                                f"model has, so its filters and feature maps cannot be set beside the start's "
                                f"channel by channel; open the run it was pruned from")
        self.checkpoint = checkpoint
        self.transform = eval_transform(checkpoint.preprocessing)

    @cached_property
    def trained(self) -> BuiltModel:
        return trained_model(self.checkpoint)

    @cached_property
    def start(self) -> BuiltModel:
        return start_model(self.checkpoint)

    def stage_names(self) -> list[str]:
        return [s.name for s in self.trained.stages.body]

    def filters(self, scale: int = 4, same_scale: bool = False) -> tuple[FilterGrid, FilterGrid]:
        """(start, fine-tuned). `same_scale`: one symmetric scale for both, so magnitudes compare."""
        limit = filter_limit(self.start.model, self.trained.model) if same_scale else None
        return (first_conv_filters(self.start.model, scale, limit=limit),
                first_conv_filters(self.trained.model, scale, limit=limit))

    def feature_maps(self, image: str | Path, stage: str) -> tuple[FeatureMaps, FeatureMaps]:
        """(start, fine-tuned) feature maps of `stage` for the image file, prepared as inference prepares it."""
        tensor = self.transform(load_image(image, self.checkpoint.channels))
        return (stage_feature_maps(self.start.model, self.start.stages, tensor, stage),
                stage_feature_maps(self.trained.model, self.trained.stages, tensor, stage))


def _spatial(output: torch.Tensor) -> torch.Tensor | None:
    """(C, h, w) from one sample's output: a conv map as is (1 × 1 at a small input: one value per channel), a
    token sequence (tokens, D) as its patch grid."""
    if output.dim() == 3:
        return output
    if output.dim() == 2:
        tokens, dim = output.shape
        for extra in (0, 1):  # with or without a class token in front
            side = math.isqrt(tokens - extra)
            if side > 1 and side * side == tokens - extra:
                return output[extra:].T.reshape(dim, side, side)
    return None


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low <= 0:
        return np.full(values.shape, 128, dtype=np.uint8)
    return np.clip(np.rint(255.0 * (values - low) / (high - low)), 0, 255).astype(np.uint8)


def _tile(tiles: list[np.ndarray], scale: int, padding: int) -> np.ndarray:
    """Lay equal-size tiles (h, w) or (h, w, 3) on a near-square grid, each enlarged `scale` times."""
    scale = max(1, int(scale))
    tiles = [np.kron(t, np.ones((scale, scale) + (1,) * (t.ndim - 2), dtype=np.uint8)) for t in tiles]
    h, w = tiles[0].shape[:2]
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    shape = (rows * h + (rows + 1) * padding, cols * w + (cols + 1) * padding) + tiles[0].shape[2:]
    grid = np.full(shape, BACKGROUND, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y:y + h, x:x + w] = tile
    return grid
