"""What native libraries print past Python: C++ code (torch's profiler, ExecuTorch's runtime) writes straight to
file descriptor 2, which `sys.stderr` redirection cannot catch; a CLI user would see its lines between Thaw's."""

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
