"""Giving memory back to the system after a job (issue 28: the studio grew from 1.1 GB to 4.1 GB after one run, two
estimates and one evaluation, and stayed there).

A job's thread builds a model, data loaders and batches, and frees them when it ends; but glibc's malloc keeps the
freed pages of the arena the thread allocated from, so the resident size only grows. `malloc_trim(0)` hands the
free pages at the top of every arena back (bench/job_memory.py measures what it gives). The cyclic collector runs
first, in the GUI thread (gui/garbage.py: never in a job's thread), so that a model caught in a reference cycle is
freed before the trim.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

_trim = None


def give_back_memory() -> None:
    """Collect cycles, then return free heap pages to the system (glibc only; elsewhere nothing more is done)."""
    global _trim
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    if _trim is None:
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # musl and others have no malloc_trim
            _trim = False
    if _trim:
        _trim(0)
