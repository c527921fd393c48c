"""Reading .pt/.pth files: `torch.load(weights_only=True)` only, with errors a user can act on.

torch's own messages for a refused or broken file are paragraphs that end by suggesting `weights_only=False`,
which would run whatever code the file carries. Thaw never does that and never suggests it: every failure
becomes one sentence saying what the file is (truncated, not a PyTorch file, a pickled Python object).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from engine.errors import BadInputError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_plain(path: str | Path, what: str = "file") -> Any:
    """The file's content, read with weights_only=True on the CPU; BadInputError naming `what` and the path."""
    path = Path(path)
    try:  # a name the file system refuses (too long, a loop of links) is the user's input too
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:
        raise BadInputError(f"{what} {str(path)[:200]} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not exists:
        raise BadInputError(f"{what} {path} does not exist")
    if is_dir:
        raise BadInputError(f"{what} {path} is a folder, not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure here is about the file, i.e. the user's input
        raise BadInputError(f"{what} {path} {describe_load_failure(exc)}") from None


def describe_load_failure(exc: BaseException) -> str:
    """What a torch.load failure means, as the end of a sentence; never repeats torch's advice."""
    text = str(exc)
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if isinstance(exc, EOFError) or "unexpected EOF" in text:
        return "is empty or truncated"
    if "failed finding central directory" in text or "failed reading zip archive" in text:
        return "is truncated or corrupt (its zip index is missing)"
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        found = _GLOBAL.search(text)
        if found:
            return (f"holds a pickled Python object ({found.group(1)}), not plain tensors and values; Thaw loads "
                    f"only plain files and never runs code from one")
        return "is not a PyTorch file of tensors and plain values"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "weights_only" in first:
        return "cannot be read as a PyTorch file"
    return f"cannot be read as a PyTorch file ({first[:200]})"
