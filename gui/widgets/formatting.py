"""How the studio writes numbers: durations, seconds, percentages, learning rates, sizes — one place for all
panels. Durations and seconds are the engine's own wording (engine/train/narrate.py), so the log, the Runs tab
and the CLI agree."""

from __future__ import annotations

from engine.train.narrate import duration_text, percent, seconds_text, size_text

__all__ = ["duration_text", "percent", "scientific", "seconds_text", "size_text"]


def scientific(value: float) -> str:
    """A learning rate or weight decay: 1e-05 → "1e-05", 0.00025 → "2.5e-04" (no trailing zeros)."""
    mantissa, exponent = f"{value:.4e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"

