"""lightly, the field's library of self-supervised objectives, is an optional extra: one place says how to get it."""

from __future__ import annotations

import importlib
from types import ModuleType

from engine.errors import BadInputError

INSTALL_HINT = "pip install 'thaw[pretrain]' (or: pip install lightly)"


class LightlyMissingError(BadInputError):
    """lightly is not installed: pre-training cannot run, and says how to install it."""


def lightly_module(name: str) -> ModuleType:
    """Import `lightly.<name>`; LightlyMissingError (exit 2 on the CLI) with the pip command when it is absent."""
    try:
        return importlib.import_module(f"lightly.{name}")
    except ImportError as exc:  # lightly, or one of its own dependencies, is missing
        missing = getattr(exc, "name", None) or "lightly"
        raise LightlyMissingError(f"domain pre-training needs the lightly package ({missing} is not installed): "
                                  f"{INSTALL_HINT}") from None
