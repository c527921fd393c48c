"""Classify images with an ONNX file exported by Thaw, using only onnxruntime, numpy and Pillow.

    pip install onnxruntime numpy pillow
    python predict_onnx.py model.onnx photo.jpg folder/ [--topk 5] [--json]

Everything the model needs travels inside the file: the metadata property "thaw" (JSON) gives the input size,
the resize / centre crop, mean/std, the channel count and order, and the class names. The output is the same as
`python main.py predict model.onnx …`: one line per image, "path: class 97.3%, other 2.1%", or with --json one
object per image {"path", "top": [{"class", "probability"}], "error"}. Unreadable images are reported on stderr
and skipped; the exit status is 2 when the model cannot be used or no image could be.

Thaw's own `predict` also checks the weights' checksum recorded in the metadata (it needs the `onnx` package to
read the weights); this script relies on onnxruntime refusing a damaged file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
                    ".npy"}
RESAMPLING = {"nearest": Image.Resampling.NEAREST, "nearest-exact": Image.Resampling.NEAREST,
              "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING,
              "lanczos": Image.Resampling.LANCZOS}


class ModelError(Exception):
    """The ONNX file cannot be used."""


class ImageError(Exception):
    """One image cannot be used."""


def load_model(path: Path) -> tuple[ort.InferenceSession, dict]:
    if not path.is_file():
        raise ModelError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise ModelError(f"{path} is empty")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for files it cannot parse
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is corrupted or truncated, or not an ONNX model: {first}") from None
    properties = session.get_modelmeta().custom_metadata_map
    if "thaw" not in properties:
        raise ModelError(f"{path} has no Thaw metadata (ONNX metadata property 'thaw'): it was not exported by "
                         f"Thaw, so its preprocessing and class names are unknown")
    try:
        metadata = json.loads(properties["thaw"])
        prep = metadata["preprocessing"]
        for key in ("resize_size", "crop_size", "mean", "std", "interpolation"):
            prep[key]
        metadata["class_names"][0]
        metadata["input"]["channels"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"{path}: its Thaw metadata is malformed ({type(exc).__name__}: {exc})") from None
    return session, metadata


def expand(inputs: list[str]) -> list[Path]:
    """Files as given; folders → their image files (recursively, sorted), as `predict` does."""
    out: list[Path] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                              and not p.name.startswith(".")))
        else:
            out.append(path)
    return out


def read_image(path: Path, channels: int) -> np.ndarray:
    """An (H, W, channels) uint8 array: EXIF-rotated, transparency composited on white (as Thaw reads images)."""
    if path.suffix.lower() == ".npy":
        return read_array(path, channels)
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8))
    if channels in (1, 3):
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
            image = background
        image = image.convert("RGB" if channels == 3 else "L")
    elif channels == 4:
        image = image.convert("RGBA")
    else:
        raise ImageError(f"a {channels}-channel model reads .npy arrays, not image files")
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def read_array(path: Path, channels: int) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a one-line error
        raise ImageError(f"not a valid .npy array ({type(exc).__name__}: {exc})") from None
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ImageError(f"array of shape {array.shape}; expected (H, W, C) or (C, H, W)")
    if array.shape[-1] != channels and array.shape[0] == channels:
        array = np.moveaxis(array, 0, -1)
    if array.shape[-1] != channels:
        raise ImageError(f"array of shape {array.shape} does not have {channels} channels")
    if array.dtype == np.uint16:
        array = np.rint(array.astype(np.float64) * 255 / 65535)
    elif np.issubdtype(array.dtype, np.floating):
        array = np.nan_to_num(array.astype(np.float64))
        array = np.rint(array * 255 if array.size and array.max() <= 1.0 else array)
    return np.clip(array, 0, 255).astype(np.uint8)


def preprocess(array: np.ndarray, prep: dict) -> np.ndarray:
    """Resize the shorter side, centre crop, scale to [0, 1], normalise: (C, crop, crop) float32."""
    height, width = array.shape[:2]
    size, crop = int(prep["resize_size"]), int(prep["crop_size"])
    if height <= width:
        new_h, new_w = size, int(size * width / height)
    else:
        new_h, new_w = int(size * height / width), size
    resample = RESAMPLING[prep["interpolation"]]
    planes = [array] if array.shape[2] in (3, 4) else [array[:, :, c] for c in range(array.shape[2])]
    resized = [np.asarray(Image.fromarray(np.ascontiguousarray(p.squeeze())).resize((new_w, new_h), resample))
               for p in planes]
    array = resized[0] if len(resized) == 1 and resized[0].ndim == 3 else np.stack(resized, axis=-1)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    array = array[top:top + crop, left:left + crop].astype(np.float32) / 255.0
    mean = np.asarray(prep["mean"], dtype=np.float32)
    std = np.asarray(prep["std"], dtype=np.float32)
    return ((array - mean) / std).transpose(2, 0, 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify images with an ONNX file exported by Thaw.")
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        session, metadata = load_model(Path(args.model))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prep, names = metadata["preprocessing"], metadata["class_names"]
    channels = int(metadata["input"]["channels"])
    input_name = session.get_inputs()[0].name
    topk = max(1, min(args.topk, len(names)))
    paths = expand(args.inputs)
    if not paths:
        print(f"error: no image files found in {', '.join(args.inputs)}", file=sys.stderr)
        return 2
    failures = 0
    for start in range(0, len(paths), args.batch_size):
        batch_paths = paths[start:start + args.batch_size]
        tensors, errors = {}, {}
        for path in batch_paths:
            try:
                tensors[path] = preprocess(read_image(path, channels), prep)
            except (ImageError, OSError, ValueError) as exc:
                errors[path] = str(exc)
        if tensors:
            logits = session.run(None, {input_name: np.stack(list(tensors.values())).astype(np.float32)})[0]
            probabilities = dict(zip(tensors, softmax(logits)))
        for path in batch_paths:
            if path in errors:
                failures += 1
                if args.json:
                    print(json.dumps({"path": str(path), "top": [], "error": errors[path]}))
                else:
                    print(f"{path}: cannot be used: {errors[path]}", file=sys.stderr)
                continue
            probs = probabilities[path]
            best = np.argsort(-probs, kind="stable")[:topk]
            top = [(names[i], float(probs[i])) for i in best]
            if args.json:
                print(json.dumps({"path": str(path), "top": [{"class": c, "probability": p} for c, p in top],
                                  "error": ""}))
            else:
                print(f"{path}: " + ", ".join(f"{c} {100 * p:.1f}%" for c, p in top))
    return 2 if failures == len(paths) else 0


if __name__ == "__main__":
    sys.exit(main())
