"""Checkpoints: plain dicts of tensors and Python values, written atomically and read with weights_only=True.

A checkpoint holds everything needed to resume exactly (model, optimizer, scheduler, scaler, epoch, batch,
phase, freeze state, RNG states, running metrics, recipe) and to predict (class names, preprocessing).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 2  # 2: early stopping as one dict ("stopping"), training time excluding pauses


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write to a temp file in the same folder, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"format_version": FORMAT_VERSION, **payload}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def link_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Make `target` the same checkpoint as `source` without writing it twice (a hard link, atomically
    replaced; a copy where links are not supported). A later write of `source` replaces its file, so the link
    keeps the old content."""
    source, target = Path(source), Path(target)
    tmp = target.with_name(target.name + ".link.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        import shutil

        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    from engine.errors import BadInputError

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or foreign files are the user's input
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{path} cannot be read as a checkpoint: {first_line}") from exc
    if not isinstance(state, dict):
        raise BadInputError(f"{path} is not a Thaw checkpoint")
    version = state.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BadInputError(f"{path} was written by a newer Thaw (checkpoint format {version}); this version reads "
                            f"formats up to {FORMAT_VERSION}: update Thaw to use it")
    return state


def rng_states() -> dict[str, Any]:
    """Every RNG the run uses, as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
