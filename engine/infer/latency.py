"""Batch-1 CPU latency of a model: what one image costs once the model is loaded and warm."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class Latency:
    median_ms: float
    p90_ms: float
    runs: int
    threads: int  # CPU threads of the framework that ran it (torch's count; onnxruntime is set to the same)

    def to_dict(self) -> dict:
        return asdict(self)


def measure_latency(run: Callable[[torch.Tensor], Any], example: torch.Tensor, runs: int = 30, warmup: int = 5,
                    budget_s: float = 10.0) -> Latency:
    """Median and 90th percentile of `run(example)` over `runs` calls after `warmup` calls; a slow model stops
    after `budget_s` seconds (with at least 5 timed calls) so that a large network does not stall an export."""
    with torch.no_grad():
        for _ in range(warmup):
            run(example)
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < runs:
            tick = time.perf_counter()
            run(example)
            times.append(time.perf_counter() - tick)
            if len(times) >= 5 and time.perf_counter() - started > budget_s:
                break
    times.sort()
    return Latency(median_ms=1000 * statistics.median(times), p90_ms=1000 * times[int(0.9 * (len(times) - 1))],
                   runs=len(times), threads=torch.get_num_threads())
