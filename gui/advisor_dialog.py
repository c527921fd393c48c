"""The Phases tab's "Advise a strategy…": the strategy advisor (engine/advise/advisor.py) on the current recipe's
data — a quick measured probe of the frozen features, run as a studio job that waits for the device
(gui/measure_dialog.py), then the recommendation with its reasons and numbers, and "Apply" that puts the recommended
preset into the recipe in one click."""

from __future__ import annotations

import copy
import html

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from gui.document import RecipeDocument
from gui.measure_dialog import MeasureDialog


def advise_recipe(recipe, should_stop, progress):
    """The engine call the job runs: the probe, then the rules; None when stopped."""
    from engine.advise.advisor import advise
    from engine.advise.probe import run_probe

    probe = run_probe(recipe, progress=lambda p: progress(p.stage, p.done, p.total),
                      should_stop=should_stop)
    return None if probe is None else advise(probe)


class AdvisorDialog(MeasureDialog):
    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__("advisor", "Advisor probe", parent)
        self.setObjectName("advisorDialog")
        self.setWindowTitle("Strategy advisor")
        self.document = document
        self.advice = None
        self.measure_button = QPushButton("Measure and advise")
        self.measure_button.setObjectName("advisorMeasureButton")
        self.measure_button.setToolTip("Compute the backbone's features of your images once (kept in the feature "
                                       "cache), fit a head by cross-validation, compare your images' statistics "
                                       "with the backbone's pretraining ones")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setObjectName("advisorApplyButton")
        self.apply_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("advisorCloseButton")
        self.text = QTextBrowser()
        self.text.setObjectName("advisorText")
        self.text.setPlainText("The advisor measures your data and the frozen backbone, then recommends feature "
                               "extraction, fine-tuning, gradual unfreezing or domain pre-training, with its reasons.")
        self.measure_button.clicked.connect(self.start)
        self.apply_button.clicked.connect(self.apply)
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addStretch(1)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(680, 420)

    @Slot()
    def start(self) -> None:
        recipe = copy.deepcopy(self.document.recipe)  # a snapshot: the user may edit while it measures
        self.advice = None
        self.apply_button.setEnabled(False)
        self.start_measure("Measuring for the advisor",
                           lambda stop, progress: advise_recipe(recipe, stop, progress))

    def running_changed(self, running: bool) -> None:
        self.measure_button.setEnabled(not running)

    def on_result(self, advice) -> None:
        self.advice = advice
        preset = advice.preset.replace("_", " ")
        self.apply_button.setText(f"Apply {preset}")
        self.apply_button.setEnabled(True)
        self.status.setText(f"Recommended: {advice.title}")
        items = "".join(f"<li>{html.escape(r)}</li>" for r in advice.reasons)
        notes = "".join(f"<p><i>{html.escape(n)}</i></p>" for n in advice.notes)
        self.text.setHtml(f"<h3>{html.escape(advice.title.capitalize())}</h3><ul>{items}</ul>{notes}")

    @Slot()
    def apply(self) -> None:
        """The recommended preset into the recipe: the same function as the Strategy menu's."""
        if self.advice is None:
            return
        from engine.planning.presets import apply_strategy

        preset = self.advice.preset
        self.document.edit(lambda recipe: apply_strategy(recipe, preset))
        self.status.setText(f"Applied: the '{preset}' preset is the recipe's strategy now.")
