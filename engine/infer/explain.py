"""Where a classifier looked: Grad-CAM for convolutional models, attention rollout for Vision Transformers.

Both work on one normalised image tensor (C, H, W) and return a float32 heat map (H, W) in [0, 1] at the
input's size, so it can be laid over the very crop the model saw. Neither changes the model: hooks are removed,
the train/eval mode and every parameter's `requires_grad` are as they were, and no parameter gets a `.grad`.

Grad-CAM's layer is found by structure, not by name: the last module (in execution order) whose output is a
4-D feature map with more than one spatial position. A container's forward hook fires after its children's,
so that is the outermost module of the last stage (ResNet's `layer4`, EfficientNet's `features`, Swin's
`permute`), and a global pooling layer (1×1 output) is never chosen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ThawError

GRAD_CAM = "grad-cam"
ATTENTION_ROLLOUT = "attention-rollout"
OVERLAY_ALPHA = 0.45


class ExplanationError(ThawError):
    """The model has no structure an explanation method understands."""


@dataclass
class Explanation:
    heatmap: np.ndarray  # float32 (H, W) in [0, 1], at the input tensor's size
    class_index: int  # the class the map explains (the predicted one unless another was asked for)
    method: str  # GRAD_CAM or ATTENTION_ROLLOUT


def is_vision_transformer(model: nn.Module) -> bool:
    return hasattr(model, "encoder") and hasattr(model, "class_token")


def explain(model: nn.Module, image_tensor: torch.Tensor, target_class: int | None = None) -> Explanation:
    """Grad-CAM, or attention rollout for a torchvision VisionTransformer (which has no spatial feature maps)."""
    if is_vision_transformer(model):
        heatmap, class_index = _attention_rollout(model, image_tensor)
        return Explanation(heatmap, class_index if target_class is None else target_class, ATTENTION_ROLLOUT)
    heatmap, class_index = grad_cam(model, image_tensor, target_class)
    return Explanation(heatmap, class_index, GRAD_CAM)


# --- Grad-CAM ----------------------------------------------------------------------------------------------------


def grad_cam(model: nn.Module, image_tensor: torch.Tensor, target_class: int | None = None,
             layer_path: str | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM (Selvaraju et al.): the feature maps of the last convolutional stage weighted by the spatial
    mean of the class score's gradient, ReLU'd. `layer_path` names the layer instead of finding it."""
    batch = _as_batch(model, image_tensor)
    with _eval_mode(model), torch.enable_grad():
        # The input requires grad so that every activation is in the graph even when all parameters are frozen.
        batch.requires_grad_(True)
        with _recorded_feature_maps(model, layer_path) as feature_maps:
            logits = _logits(model(batch))
        if not feature_maps:
            where = f"layer '{layer_path}'" if layer_path else "any layer"
            raise ExplanationError(f"Grad-CAM needs a spatial feature map; {where} gave none")
        activation = feature_maps[-1]
        class_index = int(logits[0].argmax()) if target_class is None else int(target_class)
        if not 0 <= class_index < logits.shape[1]:
            raise ExplanationError(f"class index {class_index} is outside 0..{logits.shape[1] - 1}")
        (gradient,) = torch.autograd.grad(logits[0, class_index], activation)
    weights = gradient[0].mean(dim=(1, 2), keepdim=True)
    cam = F.relu((weights * activation[0]).sum(dim=0)).detach()
    return _to_heatmap(cam, image_tensor.shape[-2:]), class_index


@contextmanager
def _recorded_feature_maps(model: nn.Module, layer_path: str | None) -> Iterator[list[torch.Tensor]]:
    """Collect, in completion order, the 4-D outputs with more than one spatial position (of one layer, or all)."""
    recorded: list[torch.Tensor] = []

    def record(_module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1:
            recorded.append(output)

    modules = [model.get_submodule(layer_path)] if layer_path else [m for _, m in model.named_modules()][1:]
    handles = [m.register_forward_hook(record) for m in modules]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


# --- attention rollout ---------------------------------------------------------------------------------------


def attention_rollout(vit_model: nn.Module, image_tensor: torch.Tensor) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) of a torchvision VisionTransformer: how much the class token
    draws, through every layer, from each image patch."""
    return _attention_rollout(vit_model, image_tensor)[0]


def _attention_rollout(model: nn.Module, image_tensor: torch.Tensor) -> tuple[np.ndarray, int]:
    if not is_vision_transformer(model):
        raise ExplanationError("attention rollout needs a torchvision VisionTransformer (encoder + class_token)")
    batch = _as_batch(model, image_tensor)
    with _eval_mode(model), torch.no_grad(), _recorded_attention(model) as attentions:
        logits = _logits(model(batch))
    if not attentions:
        raise ExplanationError("the transformer's encoder layers reported no attention weights")
    tokens = attentions[0].shape[-1]
    identity = torch.eye(tokens, device=attentions[0].device)
    rollout = identity
    for attention in attentions:  # (1, heads, tokens, tokens), input to output
        # Average the heads, add the residual path, renormalise rows, then compose with the layers below.
        mixed = attention[0].float().mean(dim=0) + identity
        rollout = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rollout
    patches = rollout[0, 1:]  # the class token's row, over the patch tokens
    side = int(round(patches.numel() ** 0.5))
    if side * side != patches.numel():
        raise ExplanationError(f"{patches.numel()} patch tokens do not form a square grid")
    return _to_heatmap(patches.reshape(side, side), image_tensor.shape[-2:]), int(logits[0].argmax())


@contextmanager
def _recorded_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Make every encoder block's attention return its per-head weights (the blocks ask for none) and record them.

    Hooks rather than patched forwards: removing a hook restores the module exactly, even after an exception.
    """
    recorded: list[torch.Tensor] = []

    def ask_for_weights(_module, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def record(_module, _inputs, output) -> None:
        recorded.append(output[1])

    handles = []
    for module in model.encoder.modules():
        if isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
            handles.append(module.register_forward_hook(record))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


# --- shared helpers ----------------------------------------------------------------------------------------------


def _as_batch(model: nn.Module, image_tensor: torch.Tensor) -> torch.Tensor:
    if image_tensor.dim() != 3:
        raise ExplanationError(f"expected one image (C, H, W), got shape {tuple(image_tensor.shape)}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return image_tensor.detach().to(device=device, dtype=torch.float32).unsqueeze(0).clone()


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


def _to_heatmap(grid: torch.Tensor, size: torch.Size | tuple[int, int]) -> np.ndarray:
    """A 2-D map → (H, W) float32 in [0, 1] at `size`, bilinearly upsampled."""
    upsampled = F.interpolate(grid[None, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    upsampled = upsampled.clamp(min=0)
    peak = float(upsampled.max())
    if peak > 0:
        upsampled = upsampled / peak
    return upsampled.cpu().numpy().astype(np.float32)


# --- display -----------------------------------------------------------------------------------------------------


def jet(values: np.ndarray) -> np.ndarray:
    """The classic 'jet' colour map (blue → cyan → yellow → red) of values in [0, 1], as float RGB in [0, 1]."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # where red, green and blue peak
    return np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)


def overlay(rgb: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend the jet-coloured heat map over an (H, W, 3) uint8 image; the heat map is resized to fit if needed."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {rgb.shape}")
    if heatmap.shape != rgb.shape[:2]:
        heatmap = _to_heatmap(torch.from_numpy(np.asarray(heatmap, dtype=np.float32)), rgb.shape[:2])
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * 255.0 * jet(heatmap)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
