"""A run's commands — Start, Pause/Continue, Stop, Resume last run — as QActions made once: the Training tab's buttons
and the main window's Run menu show the same actions, and whether each can be used is decided here alone, from
the controller's state and the two facts kept here (a start waiting for the device, the stopped run to resume),
so that the buttons and the menu can never disagree."""

from __future__ import annotations

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction, QKeySequence

from gui.workers.training import TrainingController


def _with_keys(tip: str, action: QAction) -> str:
    keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
    return f"{tip} ({keys})" if keys else tip


class RunActions(QObject):
    """`start`, `pause` (which reads Continue while the run is paused), `stop` and `resume`; their owner connects
    their `triggered` to its commands and tells them when a start waits and which run can be resumed."""

    def __init__(self, controller: TrainingController, parent: QObject | None = None):
        super().__init__(parent)
        self._controller = controller
        self.waiting_to_start = False  # a start waits in the device queue (gui/jobs/board.py)
        self.resumable_run = ""  # the run folder Resume continues; "" when there is none
        self.start = self._action("startRunAction", "&Start", "Ctrl+Return", "Train the current recipe")
        self.pause = self._action("pauseRunAction", "&Pause", "Ctrl+P",
                                  "Hold the run between two batches, or let it continue")
        self.stop = self._action("stopRunAction", "S&top", "Ctrl+.",
                                 "Stop after the current batch; a checkpoint is saved")
        self.resume = self._action("resumeRunAction", "&Resume last run", "Ctrl+Shift+Return",
                                   "Continue the last stopped run")
        controller.running_changed.connect(self._on_running_changed)
        controller.paused_changed.connect(self.update)
        self.update()

    def set_waiting_to_start(self, waiting: bool) -> None:
        self.waiting_to_start = waiting
        self.update()

    def set_resumable_run(self, run_dir: str) -> None:
        self.resumable_run = run_dir
        self.update()

    @Slot(bool)
    def _on_running_changed(self, running: bool) -> None:
        if running:
            self.waiting_to_start = False  # the start that waited is the run now
        self.update()

    def _action(self, name: str, text: str, shortcut: str, tip: str) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.setToolTip(_with_keys(tip, action))
        return action

    def actions(self) -> list[QAction]:
        return [self.start, self.pause, self.stop, self.resume]

    @Slot()
    def update(self, *_changed) -> None:
        """The one place that decides what can be used now."""
        running, paused = self._controller.is_running, self._controller.is_paused
        idle = not running and not self.waiting_to_start
        resumable = self.resumable_run
        self.start.setEnabled(idle)
        self.pause.setEnabled(running)
        self.stop.setEnabled(running)
        self.resume.setEnabled(idle and bool(resumable))
        self.pause.setText("&Continue" if paused else "&Pause")
        self.pause.setToolTip(_with_keys("Continue training" if paused else "Pause after the current batch",
                                         self.pause))
        self.resume.setToolTip(f"Continue {resumable} from its last checkpoint" if resumable
                               else "No stopped run to resume")
