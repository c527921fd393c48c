"""How many CPU threads torch may use in each of the studio's threads, and why only one thread gets several.

torch's CPU kernels run on OpenMP (libgomp). libgomp keeps a pool of worker threads for every thread that ever
ran a parallel region, for as long as that thread lives, and once the pools together hold more threads than
there are cores it throttles them all: a worker spins ~100 times instead of ~300 000 before it sleeps, so every
one of the thousands of small parallel regions in a training step pays a futex wake-up. Measured on 2 cores
(ResNet-18, 64 px, batch 32): a live, idle thread that had once run a single matmul made training in another
thread 20 % slower (171 → 137 images/s). In the studio that thread was the GUI thread (layer tree, previews) or
the inference panel's worker (which loads the finished run's model). So the training thread runs torch with
`training_threads()`, and every other thread of the studio runs it with one and never starts a pool.

The headless CLI trains on its main thread and keeps torch's default.
"""

from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QThread

_training_threads: int | None = None
_this_thread = threading.local()  # .limited: use_torch_threads(1) was applied to this thread


def training_threads() -> int:
    """torch's thread count as the process started (cores, or OMP_NUM_THREADS / torch.set_num_threads set before
    the studio limited its own thread)."""
    global _training_threads
    if _training_threads is None:
        import torch

        _training_threads = torch.get_num_threads()
    return _training_threads


def use_torch_threads(count: int) -> None:
    """torch's thread count for the calling thread only (libgomp's setting is per thread).

    torch applies its process-wide count to a thread lazily, at the thread's first get_num_threads or parallel
    op, and that would undo a count set before: torch.get_num_threads() first makes that happen now."""
    import torch

    training_threads()  # remember the process's count before any thread lowers it
    torch.get_num_threads()
    torch.set_num_threads(count)


def torch_loaded() -> bool:
    """torch is imported, not just being imported (the studio imports it in a thread as it starts)."""
    torch = sys.modules.get("torch")
    return torch is not None and not getattr(getattr(torch, "__spec__", None), "_initializing", False)


def one_torch_thread_here() -> None:
    """use_torch_threads(1) for the calling thread, once: what a worker calls before its first torch work when it
    was started before torch was loaded (OneTorchThreadQThread)."""
    if not getattr(_this_thread, "limited", False):
        use_torch_threads(1)
        _this_thread.limited = True


class OneTorchThreadQThread(QThread):
    """A worker QThread whose event loop runs torch with one thread (see the module's note). One started before
    torch is loaded (the Data tab's scan, as the studio starts) does not wait for it: its workers call
    one_torch_thread_here() before they use torch."""

    def run(self) -> None:
        if torch_loaded():
            one_torch_thread_here()
        self.exec()
