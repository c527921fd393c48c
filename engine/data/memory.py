"""Sizes that cannot be allocated are refused before anything runs, with the memory they would need.

A recipe's limits (docs/RECIPES.md) keep each number sane on its own; their product can still exceed any
machine: batch_size 4096 of 4096×4096 crops is 768 GiB of input tensors before the model's activations. The
check compares one batch of float32 input images (a floor of what training needs: activations are many
times more) with this machine's physical memory.
"""

from __future__ import annotations

from engine.data.ram_cache import machine_memory_bytes
from engine.errors import BadInputError

FLOAT32_BYTES = 4


def input_batch_bytes(batch_size: int, channels: int, crop_size: int) -> int:
    return batch_size * channels * crop_size * crop_size * FLOAT32_BYTES


def check_input_memory(batch_size: int, channels: int, crop_size: int, available: int | None = None) -> None:
    """BadInputError when one batch of input images alone cannot fit in `available` bytes (default: RAM)."""
    need = input_batch_bytes(batch_size, channels, crop_size)
    total = machine_memory_bytes() if available is None else available
    if need > total:
        raise BadInputError(
            f"batch_size {batch_size} × {channels} channels × {crop_size}×{crop_size} px (data.crop_size): one "
            f"batch of input images alone needs {format_bytes(need)} as float32, more than this machine's "
            f"{format_bytes(total)} of memory; lower batch_size or data.crop_size")


def format_bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2**10:.1f} KiB"
