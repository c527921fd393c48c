"""int8 static quantization of an ONNX export with onnxruntime's own tools (onnxruntime.quantization), calibrated
on the run's training images prepared exactly as at inference (resize, centre crop, normalise; no augmentation).

QDQ format (QuantizeLinear/DequantizeLinear pairs around int8 kernels, what onnxruntime and TensorRT both read),
uint8 activations and int8 weights quantized per output channel. The model is pre-processed first
(`quant_pre_process`: shape inference and graph optimisation), as onnxruntime recommends.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ThawError

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class QuantizationError(ThawError):
    """onnxruntime could not quantize the model (exit 1)."""


@dataclass
class Int8Settings:
    calibration_images: int = 128
    method: str = "minmax"  # onnxruntime's CalibrationMethod: MinMax, Entropy or Percentile
    per_channel: bool = True

    def describe(self, used_images: int, preprocessed: bool) -> dict:
        return {"method": "int8-static", "format": "QDQ", "activations": "uint8", "weights": "int8" + (
            " per channel" if self.per_channel else " per tensor"), "calibration": self.method,
                "calibration_images": used_images, "calibration_source": "training images, evaluation transform",
                "tool": "onnxruntime.quantization.quantize_static", "pre_processed": preprocessed}


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: Iterable[np.ndarray],
                  input_name: str, settings: Int8Settings) -> dict:
    """Write the int8 model; `calibration` yields float32 NCHW batches. Returns the quantization's description
    (for the metadata)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    used = [0]

    class Reader(CalibrationDataReader):
        def __init__(self, batches: Iterator[np.ndarray]):
            self.batches = batches

        def get_next(self):
            batch = next(self.batches, None)
            if batch is None:
                return None
            used[0] += len(batch)
            return {input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[settings.method]
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".quantize-") as work:
        source = Path(work) / "preprocessed.onnx"
        preprocessed = True
        try:
            quant_pre_process(str(fp32_path), str(source))
        except Exception:  # noqa: BLE001 - optional: onnxruntime quantizes the plain model too, recorded below
            log.warning("onnxruntime's quantization pre-processing failed; quantizing the model as exported",
                        exc_info=True)
            source, preprocessed = fp32_path, False
        try:
            quantize_static(str(source), str(int8_path), Reader(iter(calibration)), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=settings.per_channel, calibrate_method=method,
                            calibration_providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QuantizationError(f"onnxruntime could not quantize the model to int8: {message}") from exc
    if used[0] == 0:
        raise QuantizationError("no calibration image was read")
    return settings.describe(used[0], preprocessed)
