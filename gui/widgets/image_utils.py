"""Conversions between the engine's images (tensors, numpy arrays, PIL) and Qt's.

QImage (not QPixmap) is the hand-over type: it may be built on a worker thread, and the GUI thread turns it
into a QPixmap. Every QImage returned here owns its pixels (a deep copy), so the numpy buffer it was made
from can go away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage

if TYPE_CHECKING:
    import torch


def chw_to_rgb(tensor: torch.Tensor) -> np.ndarray:
    """A (C, H, W) image, float in [0, 1] or uint8, → (H, W, 3) uint8 RGB for display.

    One channel is shown as grey, two as grey of the first, more than three as their first three (the RGB of an
    RGB+IR stack).
    """
    import torch  # a tensor exists, so torch is loaded: here rather than above, the Data tab is built before it is

    if tensor.dim() != 3:
        raise ValueError(f"expected a (C, H, W) tensor, got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.uint8:
        tensor = (tensor.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    channels = tensor.shape[0]
    rgb = tensor[:3] if channels >= 3 else tensor[:1].expand(3, -1, -1)
    return np.ascontiguousarray(rgb.permute(1, 2, 0).cpu().numpy())


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    rgb = np.ascontiguousarray(rgb)
    height, width, _ = rgb.shape
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def pil_to_qimage(image: Image.Image) -> QImage:
    return rgb_to_qimage(np.asarray(image.convert("RGB")))


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """(H, W, 3) uint8 copy of a QImage's pixels (for tests and comparisons)."""
    converted = image.convertToFormat(QImage.Format.Format_RGB888)
    height, width = converted.height(), converted.width()
    buffer = np.frombuffer(converted.constBits(), dtype=np.uint8, count=converted.sizeInBytes())
    rows = buffer.reshape(height, converted.bytesPerLine())
    return rows[:, : 3 * width].reshape(height, width, 3).copy()


def local_paths(urls: list[QUrl]) -> list[str]:
    """The local files and folders among dropped URLs (remote URLs are ignored)."""
    return [url.toLocalFile() for url in urls if url.isLocalFile() and url.toLocalFile()]
