"""Run as a script by tests/gui/test_quitting.py: the studio on a tiny recipe starts long jobs, and the user quits
while they run. The process must exit 0 (Qt aborts with SIGABRT when a running QThread is destroyed).

    python -m tests.gui.quit_while_busy DATA_FOLDER RUNS_FOLDER JOB...

JOB: lr_finder (on a phase that trains the backbone), estimate. Each engine step is slowed (in the job's thread,
never Qt's) so that the quit lands mid-job.
"""

from __future__ import annotations

import os
import sys
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

STEP_SECONDS = 0.5


def slow_down_steps() -> None:
    """Every training step of the LR finder and of the estimate's timing takes STEP_SECONDS longer."""
    import engine.train.lr_finder as lr_finder

    original = lr_finder.optimizer_step
    pause = threading.Event()  # never set: wait() is a sleep that does not hold the GIL

    def slow_optimizer_step(*args, **kwargs):
        step = original(*args, **kwargs)

        def slow(rates):
            pause.wait(STEP_SECONDS)
            return step(rates)

        return slow

    lr_finder.optimizer_step = slow_optimizer_step


def main(data: str, runs: str, jobs: list[str]) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QComboBox

    import tests.tiny_arch  # noqa: F401 - registers tiny_resnet in this process
    from gui.app import create_app
    from gui.document import RecipeDocument
    from gui.main_window import MainWindow
    from tests.helpers import tiny_recipe

    slow_down_steps()
    app = create_app([sys.argv[0]])
    recipe = tiny_recipe(data, "gradual_unfreezing", epochs=3, out=runs)
    window = MainWindow(RecipeDocument(recipe))
    window._confirm_close = lambda: True
    window.show()
    started = []

    def quit_once(*_args) -> None:
        if not started:
            started.append(True)
            print("job running: quitting", flush=True)
            window.close()  # the last window: the event loop ends

    for job in jobs:
        if job == "lr_finder":
            optimizer = window.optimizer_panel
            optimizer.findChild(QComboBox, "optimizerPhaseCombo").setCurrentIndex(1)  # head + layer4 train
            optimizer.lr_finder.find()
        elif job == "estimate":
            window.training_panel.costEstimate.start()
    # The quit comes once the LR finder has trained its first step (its status counts steps), or at once.
    watch = QTimer()
    watch.setInterval(20)
    watch.timeout.connect(lambda: ("lr_finder" not in jobs or " step " in window.optimizer_panel.lr_finder
                                   .status.text()) and quit_once())
    watch.start()
    code = app.exec()
    print(f"event loop ended: {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
