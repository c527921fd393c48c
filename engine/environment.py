"""Environment variables that change how the engine works, read in one place (no torch import: the packaged app
sets them before anything heavy loads)."""

from __future__ import annotations

import os

MAX_WORKERS_ENV = "THAW_MAX_WORKERS"  # a cap on data loader workers (0 in a packaged build: no worker processes)


def max_workers_override() -> int | None:
    """The cap on data loader workers from THAW_MAX_WORKERS (0 = load in the main process), or None."""
    value = os.environ.get(MAX_WORKERS_ENV, "").strip()
    try:
        return max(0, int(value)) if value else None
    except ValueError:
        return None
