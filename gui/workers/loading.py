"""The studio's heavy imports, done off the GUI thread so that the window shows at once and stays responsive.

torch and torchvision take ~2.3 s to import here (torchvision.ops pulls in torch._dynamo and sympy), longer than
the whole start-up goal. They are plain Python (no Qt objects are made), so a thread imports them while the GUI
thread shows the window and imports pyqtgraph; the main window then builds its panels, which find everything
in sys.modules.
"""

from __future__ import annotations

import importlib
import traceback

from PySide6.QtCore import QObject, Signal, Slot

from gui.workers.threads import WorkerThread

# Everything the panels import that needs torch; the order puts torch first so a failure names it.
BACKGROUND_IMPORTS = ("torch", "torchvision", "engine.planning.presets", "engine.model.zoo", "engine.planning.plan",
                      "engine.train.trainer", "engine.infer.inference", "engine.infer.explain",
                      "engine.train.feature_cache")


class Importer(QObject):
    """Imports BACKGROUND_IMPORTS in its thread; `finished` says it is done, `error` holds a traceback if an import
    failed."""

    finished = Signal()

    def __init__(self):
        super().__init__()
        self.error = ""
        self.closed_early = False  # set by the window when it is closed before the imports end

    @Slot()
    def run(self) -> None:
        try:
            for name in BACKGROUND_IMPORTS:
                importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - the GUI thread reports it and builds nothing that would crash
            self.error = traceback.format_exc()
        finally:
            self.finished.emit()


def start_imports(on_finished) -> tuple[Importer, WorkerThread]:
    """Start the imports; `on_finished` (a slot of an object in the GUI thread) runs once they end. It is connected
    before the thread starts: imports that are already in sys.modules can end before a later connect() would run,
    and the signal would be lost (the loading page would wait forever)."""
    importer = Importer()
    importer.finished.connect(on_finished)  # queued: the receiver lives in the GUI thread
    thread = WorkerThread("studioImportThread", [importer], job=importer.run, done=importer.finished)
    return importer, thread.start()
