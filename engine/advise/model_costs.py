"""What one model costs to run, measured on this machine: batch-1 latency (eager, and ONNX on onnxruntime when the
model exports), parameters, the weights file's size and the peak memory of one batch-1 forward pass."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.infer.export import write_export
from engine.infer.export_metadata import ExportMetadata
from engine.infer.exported import open_export
from engine.infer.latency import measure_latency
from engine.model.build import BuiltModel
from engine.native_output import native_stderr_to_log

log = logging.getLogger(__name__)


@dataclass
class ModelCosts:
    parameters: int
    latency_ms: float  # batch-1 median, eager torch, on the probe's device
    latency_p90_ms: float
    latency_threads: int
    peak_memory_mb: float  # weights + the largest live activations of a batch-1 forward
    onnx_latency_ms: float | None = None  # batch-1 median on onnxruntime's CPU provider
    onnx_note: str = ""  # why there is no ONNX figure (not asked, or the export's one-line failure)


def _synchronised(model: nn.Module, device: torch.device):
    if device.type != "cuda":
        return model
    def run(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        torch.cuda.synchronize(device)  # the kernels' time, not their launch's
        return out
    return run


@torch.no_grad()
def peak_memory_mb(model: nn.Module, example: torch.Tensor, device: torch.device) -> float:
    """On a GPU the allocator's peak during the forward pass. On the CPU torch's profiler records every tensor
    allocation and free in order; the peak of their running sum is the activations' peak (the weights, allocated
    before, are added)."""
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        model(example)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    from torch.autograd.profiler import profile

    # The profiler's C++ side prints start/stop lines (and a GPU probe's error on a machine without one).
    with native_stderr_to_log(log, "the profiler", logging.DEBUG), \
            profile(profile_memory=True, use_kineto=False) as prof:
        model(example)
    live = peak = 0
    for event in sorted(prof.function_events, key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return (weights + peak) / 2**20


def measure_costs(built: BuiltModel, arch: str, class_names: list[str], device: torch.device,
                  latency_runs: int = 30, onnx: bool = False) -> ModelCosts:
    model = built.model.to(device).eval()
    prep = built.preprocessing
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, prep.channels, prep.crop_size, prep.crop_size, generator=generator)
    on_device = example.to(device)
    latency = measure_latency(_synchronised(model, device), on_device, runs=latency_runs)
    peak = peak_memory_mb(model, on_device, device)
    costs = ModelCosts(sum(p.numel() for p in model.parameters()), latency.median_ms, latency.p90_ms,
                       latency.threads, peak, onnx_note="" if onnx else "not measured (--onnx)")
    if onnx:
        costs.onnx_latency_ms, costs.onnx_note = _onnx_latency(built, arch, class_names, example, latency_runs)
    return costs


def _onnx_latency(built: BuiltModel, arch: str, class_names: list[str], example: torch.Tensor,
                  runs: int) -> tuple[float | None, str]:
    """Export with Thaw's own ONNX writer (engine/infer/export.py), read back, time it on the CPU."""
    metadata = ExportMetadata("onnx", list(class_names), built.preprocessing, arch)
    with tempfile.TemporaryDirectory(prefix="thaw-compare-") as folder:
        path = Path(folder) / "model.onnx"
        try:
            write_export(built.model.cpu().eval(), example, "onnx", path, metadata)
            exported = open_export(path, "cpu")
        except Exception as exc:  # noqa: BLE001 - a model that does not export is a result, not a failure
            text = str(exc).strip().splitlines()
            return None, f"does not export to ONNX: {text[0][:200] if text else type(exc).__name__}"
        latency = measure_latency(exported.logits, example, runs=runs)
    return latency.median_ms, ""
