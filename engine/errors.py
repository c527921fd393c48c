"""The engine's error types. Each says what is wrong in words a user can act on."""

from __future__ import annotations


class ThawError(Exception):
    """Base class of every error the engine raises on purpose."""


class BadInputError(ThawError):
    """The user's input (recipe, path, data) cannot be used. The CLI exits with code 2."""


class RecipeError(BadInputError):
    """A recipe field is invalid. `field` is its dotted path, e.g. ``phases[1].groups[0].lr``."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"recipe field '{field}': {message}")


class WeightsUnavailableError(ThawError):
    """Pretrained weights are neither cached nor downloadable. The message is the CLI's; `weights` (the exact
    name), `file_name`, `folder` (where the file belongs) and `reason` let the studio word it in its own terms."""

    def __init__(self, message: str, weights: str = "", file_name: str = "", folder: str = "", reason: str = ""):
        super().__init__(message)
        self.weights = weights
        self.file_name = file_name
        self.folder = folder
        self.reason = reason


class GroupAssignmentError(BadInputError):
    """Parameter groups do not cover every trainable parameter exactly once."""


class RunLockedError(BadInputError):
    """Another process is training this run folder (it holds the folder's lock). `pid` is that process."""

    def __init__(self, run_dir: str, pid: int | None):
        self.run_dir = run_dir
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{run_dir} is already running ({who}); wait for it to finish or stop it first")


class NonFiniteError(ThawError):
    """A model or optimizer state holds NaN or infinite values; it is never written as a checkpoint."""

    def __init__(self, what: str, names: list[str]):
        self.names = list(names)
        shown = ", ".join(names[:4]) + (f" … (+{len(names) - 4})" if len(names) > 4 else "")
        super().__init__(f"{what} holds non-finite values (NaN or infinity) in {len(names)} tensor(s): {shown}")


class CheckpointWriteError(ThawError):
    """A checkpoint could not be written (disk full, file size limit, permissions); the previous one is kept."""


class UnwritableError(BadInputError, OSError):
    """A file cannot be written where it was asked for (a device, a FIFO, a socket, /proc, a read-only folder …).
    Also an OSError, so code that handled a failed write as one keeps doing so."""
