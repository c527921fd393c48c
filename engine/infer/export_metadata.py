"""What an exported model carries so that it can be used without Thaw: its input (size, channels, their order),
the exact preprocessing (resize, centre crop, mean/std), the class names, and where it came from.

The same JSON document is stored in every format: the ONNX model's metadata property ``thaw``, the extra file
``thaw.json`` of a torch.export archive (.pt2) or a TorchScript archive, the runtime information ``thaw`` of an
OpenVINO IR model (in its .xml). docs/EXPORT.md describes every field;
examples/predict_onnx.py reads it with nothing but onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from engine.data.preprocessing import Preprocessing
from engine.errors import BadInputError
from engine.infer.export_formats import FORMATS as _REGISTRY

METADATA_KEY = "thaw"  # the ONNX metadata property
EXTRA_FILE = "thaw.json"  # the extra file in .pt2 and TorchScript archives
METADATA_VERSION = 1
FORMATS = tuple(_REGISTRY)  # the format names, in the registry's order (engine/infer/export_formats.py)
SUFFIXES = {name: f.suffix for name, f in _REGISTRY.items()}  # the suffix each format is written with
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PREPROCESSING_STEPS = ("decode as uint8 with `channel_order` (EXIF-rotated, transparency composited on white)",
                       "resize the shorter side to resize_size (antialiased, `interpolation`), the longer side "
                       "int(resize_size × long / short)",
                       "centre crop crop_size × crop_size (top = round((height − crop) / 2), same for left)",
                       "scale to [0, 1] (÷ 255), then (x − mean) / std per channel",
                       "stack as float32 NCHW; the output is logits (softmax gives probabilities)")


class ExportFileError(BadInputError):
    """An export file that cannot be used: corrupted, truncated, or not exported by Thaw."""


def channel_order(channels: int) -> str:
    """How engine.data.images.load_image orders the channels of an input with `channels` channels."""
    return {1: "L", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels} channels as stored in .npy arrays (H, W, C)")


@dataclass
class ExportMetadata:
    format: str
    class_names: list[str]
    preprocessing: Preprocessing
    arch: str
    weights: str = ""  # the pretrained weights the run started from
    source: dict[str, Any] = field(default_factory=dict)  # run folder, checkpoint file/kind/sha256, epoch, val acc
    exporter: dict[str, Any] = field(default_factory=dict)  # which exporter, opset, why a fallback was needed
    quantization: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    integrity: dict[str, str] = field(default_factory=dict)  # weights_sha256: a flipped byte is caught on load
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""

    @property
    def channels(self) -> int:
        return self.preprocessing.channels

    @property
    def crop_size(self) -> int:
        return self.preprocessing.crop_size

    def to_dict(self) -> dict[str, Any]:
        prep = self.preprocessing
        record = _REGISTRY.get(self.format)
        batch = 1 if record is not None and record.one_image else "batch"
        return {
            "thaw_export_version": METADATA_VERSION,
            "format": self.format,
            "input": {"name": INPUT_NAME, "shape": [batch, self.channels, prep.crop_size, prep.crop_size],
                      "dtype": "float32", "layout": "NCHW", "channels": self.channels,
                      "channel_order": channel_order(self.channels)},
            "output": {"name": OUTPUT_NAME, "shape": [batch, len(self.class_names)], "kind": "logits"},
            "preprocessing": {**prep.to_dict(), "pixel_scale": 255, "steps": list(PREPROCESSING_STEPS)},
            "class_names": list(self.class_names),
            "model": {"arch": self.arch, "weights": self.weights, "in_channels": self.channels},
            "source": dict(self.source),
            "exporter": dict(self.exporter),
            "quantization": dict(self.quantization),
            "integrity": dict(self.integrity),
            "versions": dict(self.versions),
            "created": self.created,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def metadata_digest(self) -> str:
        """SHA-256 of everything but `integrity` (class names, preprocessing, the model, the source …): kept in
        `integrity` so that metadata edited after the export (class names reversed, an absurd mean) is refused."""
        data = {k: v for k, v in self.to_dict().items() if k != "integrity"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()

    def seal(self, weights_sha256: str) -> None:
        """Record the weights' checksum and the metadata's own (call last, once everything else is set)."""
        self.integrity = {"weights_sha256": weights_sha256, "metadata_sha256": self.metadata_digest()}

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> ExportMetadata:
        """Parse and check the document; anything missing or malformed is an ExportFileError naming it."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ExportFileError(f"{where}: its Thaw metadata is not valid JSON ({exc})") from exc
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ExportMetadata:
        def need(container: Any, key: str, kind: type | tuple[type, ...], path: str) -> Any:
            if not isinstance(container, dict) or key not in container:
                raise ExportFileError(f"{where}: its Thaw metadata lacks '{path}'")
            value = container[key]
            if not isinstance(value, kind):
                raise ExportFileError(f"{where}: its Thaw metadata field '{path}' is malformed: {value!r}")
            return value

        version = need(data, "thaw_export_version", int, "thaw_export_version")
        if version > METADATA_VERSION:
            raise ExportFileError(f"{where} was exported by a newer Thaw (metadata version {version}; this Thaw "
                                  f"reads up to {METADATA_VERSION})")
        prep = need(data, "preprocessing", dict, "preprocessing")
        numbers = (int, float)
        mean = need(prep, "mean", list, "preprocessing.mean")
        std = need(prep, "std", list, "preprocessing.std")
        if not mean or len(mean) != len(std) or not all(isinstance(v, numbers) for v in mean + std) \
                or any(v <= 0 for v in std):
            raise ExportFileError(f"{where}: its Thaw metadata has malformed mean/std: {mean!r} / {std!r}")
        preprocessing = Preprocessing(
            resize_size=need(prep, "resize_size", int, "preprocessing.resize_size"),
            crop_size=need(prep, "crop_size", int, "preprocessing.crop_size"),
            mean=[float(v) for v in mean], std=[float(v) for v in std],
            interpolation=need(prep, "interpolation", str, "preprocessing.interpolation"))
        names = need(data, "class_names", list, "class_names")
        if not names or not all(isinstance(n, str) for n in names):
            raise ExportFileError(f"{where}: its Thaw metadata has no class names")
        model = need(data, "model", dict, "model")
        return cls(format=need(data, "format", str, "format"), class_names=list(names), preprocessing=preprocessing,
                   arch=need(model, "arch", str, "model.arch"), weights=str(model.get("weights", "")),
                   source=dict(data.get("source") or {}), exporter=dict(data.get("exporter") or {}),
                   quantization=dict(data.get("quantization") or {"method": "none"}),
                   integrity=dict(data.get("integrity") or {}),
                   versions=dict(data.get("versions") or {}), created=str(data.get("created", "")))
