"""Robust image decoding: every file the engine reads goes through here.

Real datasets hold greyscale scans, palette GIFs, transparent PNGs, CMYK JPEGs from print workflows, 16-bit
microscopy TIFFs, phone photos that are only upright after EXIF rotation, and the odd truncated download. A
naive ``Image.open(p).convert("RGB")`` gets several of these silently wrong (16-bit saturates to white,
transparency turns black, truncated files decode half grey). This module converts each case deliberately
and turns every decode failure into one exception type, `UnreadableImageError`, carrying a reason a user can
act on.

`.npy` arrays are accepted for inputs PIL cannot represent, e.g. 5-channel RGB+IR+depth stacks.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.data.image_types import IMAGE_EXTENSIONS  # noqa: F401 - re-exported (its users import it from here)
from engine.errors import BadInputError

if TYPE_CHECKING:
    import torch

# The reason an image file cannot feed a model with another channel count (engine/data/datasets.py looks for it).
CHANNELS_REASON = "image files have 1, 3 or 4 channels"

_WHITE = (255, 255, 255)
# Modes holding one channel wider than 8 bits; PIL's own convert() clips these at 255 instead of scaling.
_WIDE_GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
# Modes whose alpha must be composited rather than dropped (dropping it exposes arbitrary "hidden" colours).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class UnreadableImageError(BadInputError):
    """A file cannot be used as an image. `reason` is short and human-readable, e.g. "truncated image file"."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Keep the two-argument constructor picklable (errors cross process boundaries in DataLoader workers).
        return (type(self), (self.path, self.reason))


def load_image(path: str | os.PathLike, channels: int = 3) -> torch.Tensor:
    """Decode `path` fully into a contiguous uint8 tensor of shape (channels, H, W).

    channels=1 gives luminance, 3 gives RGB composited on white, 4 gives RGBA; any other count needs a `.npy`
    file. Raises UnreadableImageError for anything that cannot be decoded.
    """
    import torch  # here, not above: a scan decodes without torch (the studio's Data tab, before torch is loaded)

    return torch.from_numpy(decode_image(path, channels))


def decode_image(path: str | os.PathLike, channels: int = 3) -> np.ndarray:
    """load_image's decoding without torch: a contiguous uint8 (channels, H, W) array, the same rules and errors."""
    path = str(path)
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    _check_file(path)
    if _is_npy(path):
        return _npy_to_chw(_read_npy(path), channels, path)
    if channels not in (1, 3, 4):
        raise UnreadableImageError(path, f"{CHANNELS_REASON}; needs .npy arrays for {channels}-channel input")
    img = _open_decoded(path)
    try:
        converted = {1: _to_l, 3: _to_rgb, 4: _to_rgba}[channels](img)
        array = np.array(converted, dtype=np.uint8)  # a copy: writable, so torch.from_numpy does not warn
    except Exception as exc:  # noqa: BLE001 - conversion of a malformed-but-opened file, see _open_decoded
        raise UnreadableImageError(path, _reason_for(exc)) from exc
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def load_pil_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode `path` into an RGB PIL image (for thumbnails and heat-map overlays), same rules as load_image.

    For `.npy` files the first three channels are shown (RGB of an RGB+IR+depth stack); 1- and 2-channel
    arrays are shown as greyscale of their first channel.
    """
    path = str(path)
    _check_file(path)
    if _is_npy(path):
        return Image.fromarray(_npy_preview_rgb(_read_npy(path), path), mode="RGB")
    img = _open_decoded(path)
    try:
        return _to_rgb(img)
    except Exception as exc:  # noqa: BLE001 - see _open_decoded
        raise UnreadableImageError(path, _reason_for(exc)) from exc


# --- opening and failure reasons ---------------------------------------------------------------------------


def _check_file(path: str) -> None:
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise UnreadableImageError(path, _reason_for(exc)) from exc
    if os.path.isdir(path):
        raise UnreadableImageError(path, "is a folder, not a file")
    if size == 0:
        raise UnreadableImageError(path, "empty file")


def _is_npy(path: str) -> bool:
    return os.path.splitext(path)[1].lower() == ".npy"


def _open_decoded(path: str) -> Image.Image:
    """Open, fully decode and EXIF-rotate. Multi-frame files (GIF, TIFF) yield their first frame."""
    try:
        with warnings.catch_warnings():
            # Between PIL's limit and twice it, PIL only warns (its raw warning, file:line) and decodes the whole
            # image: Thaw treats it as it treats the larger ones, as an unreadable file with its own reason.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            # Image.open is lazy: only load() reads the pixel data, so only it notices a truncated file.
            img.load()
            return _upright_copy(img)
    except Exception as exc:  # noqa: BLE001
        # PIL's format plugins raise whatever their parser hits on malformed input (struct.error, IndexError,
        # ZeroDivisionError, ...), not only OSError. A dataset scan must report such a file, never crash on it.
        raise UnreadableImageError(path, _reason_for(exc)) from exc


def _upright_copy(img: Image.Image) -> Image.Image:
    """A copy detached from the open file, rotated as its EXIF orientation says."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001
        # A mangled EXIF block should not cost a decodable photo; it is used as stored.
        return img.copy()


def _reason_for(exc: BaseException) -> str:
    message = str(exc)
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image too large (refused as a possible decompression bomb: {message})"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (cannot identify image file)"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    lowered = message.lower()
    if "truncated" in lowered or "broken data stream" in lowered or "premature end" in lowered:
        return "truncated image file"
    detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"corrupt or unsupported image ({detail})"


# --- PIL mode conversions ------------------------------------------------------------------------------------


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_GREY_MODES:
        return _wide_grey_to_l(img).convert("RGB")
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    # 1, L, P (opaque), CMYK, YCbCr, LAB, HSV, RGBX: PIL's converters are correct for these.
    return img.convert("RGB")


def _to_l(img: Image.Image) -> Image.Image:
    if img.mode == "L":
        return img
    if img.mode in _WIDE_GREY_MODES:
        return _wide_grey_to_l(img)
    if img.mode == "1":
        return img.convert("L")
    return _to_rgb(img).convert("L")  # via RGB so that transparency is composited on white first


def _to_rgba(img: Image.Image) -> Image.Image:
    if img.mode == "RGBA":
        return img
    if img.mode in _WIDE_GREY_MODES:
        return _wide_grey_to_l(img).convert("RGBA")
    if _has_alpha(img):
        if img.mode == "La":  # premultiplied; PIL has no La -> RGBA converter
            img = img.convert("LA")
        return img.convert("RGBA")
    return _to_rgb(img).convert("RGBA")  # alpha = 255


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def _wide_grey_to_l(img: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float greyscale image to 8 bits by its real value range."""
    values = np.asarray(img)
    if img.mode == "F":
        scaled = _float_to_uint8(values)
    elif img.mode == "I":
        # Mode "I" is 32-bit, but in practice it holds 16-bit data (older Pillow opened 16-bit PNGs as "I").
        # Only values beyond 16 bits imply a wider range.
        full_scale = 65535.0 if values.size == 0 or values.max() <= 65535 else float(2**32 - 1)
        scaled = _scale_to_uint8(values, full_scale)
    else:
        scaled = _scale_to_uint8(values, 65535.0)
    return Image.fromarray(scaled, mode="L")


def _scale_to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    scaled = np.rint(values.astype(np.float64) * (255.0 / full_scale))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if values.size and values.max() <= 1.0:
        values = values * 255.0  # [0, 1] data, the usual convention for float images
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# --- .npy arrays ---------------------------------------------------------------------------------------------


def _read_npy(path: str) -> np.ndarray:
    try:
        # allow_pickle=False: a .npy file from a downloaded dataset must not be able to run code.
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - ValueError, OSError, EOFError, ... all mean "bad file"
        reason = _reason_for(exc)
        if "pickle" in str(exc).lower():
            reason = "not a plain numeric array (object arrays need pickle, which is refused)"
        elif reason.startswith("corrupt"):
            reason = f"not a valid .npy array ({type(exc).__name__}: {exc})"
        raise UnreadableImageError(path, reason) from exc
    if not isinstance(array, np.ndarray) or array.size == 0:
        raise UnreadableImageError(path, "not a valid .npy array (empty)")
    return array


def _npy_to_chw(array: np.ndarray, channels: int, path: str) -> np.ndarray:
    if array.ndim == 2:
        if channels != 1:
            raise UnreadableImageError(
                path, f"2-D array has 1 channel; expected {channels} channels for {channels}-channel input"
            )
        chw = array[None, :, :]
    elif array.ndim == 3:
        # Prefer HWC when both ends match (e.g. a 3x3x3 array): it is numpy's and PIL's natural layout.
        if array.shape[-1] == channels:
            chw = np.moveaxis(array, -1, 0)
        elif array.shape[0] == channels:
            chw = array
        else:
            found = min(array.shape[0], array.shape[-1])  # the short axis is the channel axis
            raise UnreadableImageError(
                path,
                f"unsupported channel count {found} for {channels}-channel input "
                f"(expected {channels} channels, found {found}; array shape {tuple(array.shape)})",
            )
    else:
        raise UnreadableImageError(
            path, f"array has {array.ndim} dimensions (shape {tuple(array.shape)}); expected (H,W), (H,W,C) or (C,H,W)"
        )
    return np.ascontiguousarray(_array_to_uint8(chw, path))


def _npy_preview_rgb(array: np.ndarray, path: str) -> np.ndarray:
    """An HWC uint8 RGB array for display, whatever the array's channel count."""
    if array.ndim == 2:
        hwc = array[:, :, None]
    elif array.ndim == 3:
        hwc = array if array.shape[-1] <= array.shape[0] else np.moveaxis(array, 0, -1)
    else:
        raise UnreadableImageError(path, f"array has {array.ndim} dimensions; expected (H,W), (H,W,C) or (C,H,W)")
    hwc = hwc[:, :, :3] if hwc.shape[-1] >= 3 else np.repeat(hwc[:, :, :1], 3, axis=-1)
    return np.ascontiguousarray(_array_to_uint8(hwc, path))


def _array_to_uint8(array: np.ndarray, path: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255  # masks
    if array.dtype == np.uint16:
        return _scale_to_uint8(array, 65535.0)
    if np.issubdtype(array.dtype, np.floating):
        return _float_to_uint8(array)
    if np.issubdtype(array.dtype, np.integer):
        # Wider integer types usually hold 8-bit values (numpy's default int64); clip rather than guess a range.
        return np.clip(array, 0, 255).astype(np.uint8)
    raise UnreadableImageError(path, f"unsupported array dtype {array.dtype}")
