"""Can this installation (or the packaged app) export? A small convolutional net through the real path —
torch.onnx's dynamo exporter, Thaw's metadata and reader, onnxruntime, the parity comparison, int8 quantization —
in a temporary folder, for `Thaw --self-test`: a bundle missing onnxscript's sources or onnxruntime's libraries
fails here, not in a user's export."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from engine.data.preprocessing import Preprocessing
from engine.infer.export import write_export
from engine.infer.export_metadata import INPUT_NAME, ExportMetadata
from engine.infer.exported import open_export
from engine.infer.parity import ParityCriteria, compare
from engine.infer.quantize import Int8Settings, quantize_int8


def check_export(workdir: str | Path | None = None) -> str:
    """Raises (AssertionError or the exporter's error) when exporting does not work; returns a one-line summary."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 2)).eval()
    images = torch.rand(6, 3, 16, 16, generator=generator)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        path = Path(folder) / "check.onnx"
        metadata = ExportMetadata("onnx", ["a", "b"], Preprocessing(16, 16), "self-check")
        written = write_export(model, images[:2], "onnx", path, metadata)
        exported = open_export(path, threads=1)
        with torch.no_grad():
            report = compare("onnx", model(images), exported.logits(images), ParityCriteria.fp32())
        if not report.passed:
            raise AssertionError(report.summary())
        int8 = Path(folder) / "check-int8.onnx"
        # Two calibration images, one at a time: the quantizer's whole path (pre-processing, calibration, QDQ).
        quantize_int8(path, int8, [images[:1].numpy(), images[1:2].numpy()], INPUT_NAME,
                      Int8Settings(calibration_images=2))
        if int8.stat().st_size == 0:
            raise AssertionError("the int8 model is empty")
    return (f"{written.exporter}: parity max |Δlogit| {report.max_abs_logit_diff:.1g}, int8 calibrated on 2 images "
            f"({time.perf_counter() - started:.1f} s)")
