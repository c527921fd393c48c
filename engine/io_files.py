"""Writing the engine's small text files so that a reader never sees half of one: `write_json_atomic`.

The lowest layer of the engine besides engine/errors.py: no torch, nothing of the engine imported, so the run
folder, evaluation, label issues and export reports all write their JSON the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """Temp file, fsync, rename: a reader sees the old or the new content, never a part; a failed write
    (disk full) leaves the old file and no temp file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
