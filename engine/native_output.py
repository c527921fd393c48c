"""What libraries print that is not a user's concern: C++ code (torch's profiler, ExecuTorch's runtime) writes
straight to file descriptor 2, which `sys.stderr` redirection cannot catch, and imports log warnings through their
loggers; a CLI user would see their lines between Thaw's."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_to_log(log: logging.Logger, what: str, level: int = logging.INFO) -> Iterator[None]:
    """Everything written to file descriptor 2 inside the block goes to `log` (--verbose shows it), as
    "`what` printed: …"; without a descriptor 2 to redirect (a windowed app) the block runs as it is."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", errors="replace").strip()
            if text:
                log.log(level, "%s printed:\n%s", what, text)


PYTREE_LOGGER = "torch.utils._pytree"  # warns of a deprecation when ExecuTorch (through torchao) is imported


@contextlib.contextmanager
def loggers_quieted(*names: str) -> Iterator[None]:
    """The loggers `names` drop everything below errors inside the block (a library's import-time warnings), and
    are put back as they were after it."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
