"""What a run will cost, before Start: measured on a few real batches as a job (engine/train/estimate.py), shown
on the Training tab and handed to its progress line, which then weighs each epoch by its phase's cost."""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from gui.document import RecipeDocument
from gui.jobs.progress_view import JobProgress
from gui.jobs.runner import JobRunner
from gui.workers.training import TrainingController


class CostEstimate(QWidget):
    """What the run will cost, before Start: *Estimate cost* measures it as a job (engine/train/estimate.py; it
    waits for the device, shows its progress and can be cancelled) and the label shows it, or why the run would
    not start; a change of the recipe makes it stale."""

    def __init__(self, document: RecipeDocument, controller: TrainingController, parent: QWidget | None = None):
        super().__init__(parent)
        self._document = document
        self._controller = controller
        self.estimate = None
        self._cancel_reason = ""
        self.runner = JobRunner("estimate", "Estimate", self, uses_device=True)
        self.estimateButton = QPushButton("Estimate cost")
        self.estimateButton.setObjectName("estimateButton")
        self.estimateButton.setToolTip("Measure on a few real batches what this run will cost before Start: time per "
                                       "epoch and in all, peak memory, disk (nothing is trained or saved)")
        self.estimateLabel = QLabel("What the run will cost: press Estimate cost (measured on a few real batches).")
        self.estimateLabel.setObjectName("estimateLabel")
        self.estimateLabel.setWordWrap(True)
        self.estimateLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = JobProgress(self.runner, unit="phase")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.estimateLabel, 1)
        row.addWidget(self.estimateButton, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        self.estimateButton.clicked.connect(self.start)
        self.runner.job_succeeded.connect(self._on_estimated)
        self.runner.job_failed.connect(self._on_failed)
        self.runner.job_cancelled.connect(self._on_cancelled)
        self.runner.job_finished.connect(self._update_button)
        document.recipe_changed.connect(self._on_recipe_changed)
        controller.running_changed.connect(self._update_button)

    @Slot()
    def start(self) -> None:
        if self.runner.is_busy:
            return
        from engine.train.estimate import estimate_run

        recipe = self._document.recipe.copy()
        self._cancel_reason = ""
        self.estimateLabel.setStyleSheet("")
        self.estimateLabel.setText(f"Measuring what '{recipe.name}' will cost on a few real batches …")
        self.runner.start(lambda task: estimate_run(recipe, should_stop=task.should_stop, progress=task.progress),
                          f"Estimating '{recipe.name}'")
        self._update_button()

    def cancel(self, reason: str = "") -> None:
        """Stop the estimate; `reason` is what the label says then (the user's Cancel says nothing more)."""
        if self.runner.is_busy:
            self._cancel_reason = reason
            self.runner.cancel()

    def _on_estimated(self, estimate) -> None:
        self.estimate = estimate
        self.estimateLabel.setText("\n".join(estimate.lines()))

    def _on_failed(self, message: str) -> None:
        self.estimate = None
        self.estimateLabel.setText(f"⚠ The run would not start: {message}")
        self.estimateLabel.setStyleSheet("color: #b00020;")

    def _on_cancelled(self) -> None:
        self.estimate = None
        self.estimateLabel.setText(f"Estimate cancelled{': ' + self._cancel_reason if self._cancel_reason else ''}.")

    def _update_button(self, *_running) -> None:
        # During a run the estimate waits in the device queue until the run ends (gui/jobs/board.py).
        self.estimateButton.setEnabled(not self.runner.is_busy)

    def _on_recipe_changed(self) -> None:
        if self.estimate is not None:  # it was measured for the recipe as it was
            self.estimate = None
            self.estimateLabel.setText("The recipe changed since the last estimate: press Estimate cost again.")
