"""Python's cyclic garbage collector runs only in the GUI thread while the studio runs.

The collector runs in whichever thread happens to allocate when a threshold is crossed: a training or job thread
could then destroy a widget left in a reference cycle, and a QObject destroyed outside its thread deadlocks or
crashes (seen in the test suite: a QMenu collected in a cost-estimate thread held Qt's signal lock while it waited
for the GIL the GUI thread held). pyqtgraph's GarbageCollector — the field's answer — disables automatic collection
and collects on a timer in the GUI thread instead (each generation when its threshold is exceeded, as Python
would). Headless runs keep Python's own collector.
"""

from __future__ import annotations

from pyqtgraph.util.garbage_collector import GarbageCollector

INTERVAL_S = 1.0
_collector: GarbageCollector | None = None


def collect_in_gui_thread(interval_s: float = INTERVAL_S) -> GarbageCollector:
    """Start (once) collecting garbage on a timer of the calling thread, which must be the GUI thread."""
    global _collector
    if _collector is None:
        _collector = GarbageCollector(interval=interval_s)
    return _collector
