"""How the studio writes numbers: durations, seconds, percentages, learning rates, sizes — one place for all
panels. Durations and seconds are the engine's own wording (engine/train/narrate.py), so the log, the Runs tab
and the CLI agree."""

from __future__ import annotations

from engine.train.narrate import duration_text, percent, seconds_text, size_text

__all__ = ["drift_text", "duration_text", "percent", "scientific", "seconds_text", "size_text"]


def scientific(value: float) -> str:
    """A learning rate or weight decay: 1e-05 → "1e-05", 0.00025 → "2.5e-04" (no trailing zeros)."""
    mantissa, exponent = f"{value:.4e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


def drift_text(value: float | None, missing: str = "") -> str:
    """A weight drift (relative L2): "0" only for exactly 0 — bit-identical weights, a frozen layer — else three
    significant digits (a trained layer's drift can be 1e-5 and must not read as 0)."""
    if value is None:
        return missing
    return "0" if value == 0.0 else f"{value:.3g}"
