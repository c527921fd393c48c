"""Help ▸ Lesson walkthrough: the transfer-learning lesson's path through the studio as a short guide in a dock
beside the tabs — Data, Model, Phases, Optimizer, Training, Runs, Evaluate, Inference — one step a tab, with Back,
Next and Skip. Each step shows its tab; nothing is highlighted or overlaid, so no layout
change of a panel can break it.

It opens by itself on the very first start of the studio (only a window made with `first_run_walkthrough=True`,
as `python main.py` makes it: tests and the self-test never see it unasked) and never again once finished or
skipped; the menu opens it at any time, from its first step.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractButton,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.settings import StudioSettings


@dataclass(frozen=True)
class WalkthroughStep:
    tab: str  # the objectName of the main window's tab page the step shows
    title: str
    text: str  # one or two sentences for a newcomer: what to do on that tab, and why


LESSON_STEPS: tuple[WalkthroughStep, ...] = (
    WalkthroughStep("dataPanel", "Data",
                    "Choose a folder with one subfolder of images per class (Browse…, or drop it on the tab), or "
                    "pick a ready-made one with “Get a dataset…”. The scan lists the classes, the train/validation "
                    "split and any file that cannot be used."),
    WalkthroughStep("modelPanel", "Model",
                    "Pick a pretrained network under Model: its learned features are what you transfer to your "
                    "classes. In the layer tree a ticked module (❄) stays frozen in the selected phase, an "
                    "unticked one trains."),
    WalkthroughStep("phasesPanel", "Phases",
                    "A strategy is a sequence of phases, each saying what trains and for how many epochs. Pick "
                    "feature extraction, fine-tuning or gradual unfreezing from the Strategy menu (or “Lesson's "
                    "gradual unfreezing” here), or let “Advise a strategy…” recommend one."),
    WalkthroughStep("optimizerPanel", "Optimizer",
                    "Each parameter group of a phase has its own learning rate: the discriminative preset gives the "
                    "early layers 1/100 and the middle ones 1/10 of the head's rate, as in the lesson. “Find "
                    "learning rate” tries rates on a few batches and suggests one."),
    WalkthroughStep("trainingPanel", "Training",
                    "Press “Estimate cost” to time a few real batches and see the run's time, memory and disk, "
                    "then Start. Loss, accuracy and each group's learning rate are drawn live; Stop saves a "
                    "checkpoint that “Resume last run” continues."),
    WalkthroughStep("runsPanel", "Runs",
                    "Every run is listed here. Select two or more, say feature extraction and fine-tuning, to "
                    "compare their validation accuracy and training time side by side."),
    WalkthroughStep("evaluatePanel", "Evaluate",
                    "Pick a run to see where its model errs: the confusion matrix leads to the misclassified "
                    "images (“Evaluate on validation split” computes it when the run has none yet)."),
    WalkthroughStep("inferencePanel", "Inference",
                    "Choose a checkpoint (or “Use for inference” on the Runs tab), then drop images or use “Open "
                    "images…” to read the model's top predictions; “Show where the model looked” adds a heat map."),
)

FINISHED = "finished"
SKIPPED = "skipped"


class LessonWalkthrough(QDockWidget):
    """The walkthrough's dock. It changes only which tab `tabs` shows; Skip or Finish remembers, in the studio's
    settings, that it is not to open by itself again. It has no close button: Skip is the way out, so that a
    dismissed walkthrough is always remembered as dismissed."""

    step_shown = Signal(int)  # the index in `steps` of the step now shown
    ended = Signal(str)  # FINISHED or SKIPPED

    def __init__(self, tabs: QTabWidget, settings: StudioSettings, parent: QWidget | None = None,
                 steps: tuple[WalkthroughStep, ...] = LESSON_STEPS):
        super().__init__("Lesson walkthrough", parent)
        self.setObjectName("walkthroughDock")
        self.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        float_button = self.findChild(QAbstractButton, "qt_dockwidget_floatbutton")
        if float_button is not None:
            float_button.setToolTip("Float the walkthrough in a window of its own, or dock it")
        self._tabs = tabs
        self._settings = settings
        self.steps = steps
        self.index = 0

        self.stepLabel = QLabel(objectName="walkthroughStepLabel")
        self.stepLabel.setStyleSheet("font-weight: bold;")
        self.textLabel = QLabel(objectName="walkthroughTextLabel")
        self.textLabel.setWordWrap(True)
        self.textLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        again = QLabel("Help ▸ Lesson walkthrough shows it again.", objectName="walkthroughAgainLabel")
        again.setStyleSheet("color: #666;")
        self.backButton = QPushButton("Back", objectName="walkthroughBackButton")
        self.backButton.setToolTip("The previous step, and its tab")
        self.nextButton = QPushButton(objectName="walkthroughNextButton")
        self.skipButton = QPushButton("Skip", objectName="walkthroughSkipButton")
        self.skipButton.setToolTip("Close the walkthrough; it will not open by itself again")
        self.backButton.clicked.connect(self.back)
        self.nextButton.clicked.connect(self.next)
        self.skipButton.clicked.connect(self.skip)

        buttons = QHBoxLayout()
        buttons.addWidget(self.skipButton)
        buttons.addStretch(1)
        buttons.addWidget(self.backButton)
        buttons.addWidget(self.nextButton)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.stepLabel)
        layout.addWidget(self.textLabel)
        layout.addStretch(1)
        layout.addWidget(again)
        layout.addLayout(buttons)
        self.setWidget(page)
        self._show_step(0)

    @property
    def step(self) -> WalkthroughStep:
        return self.steps[self.index]

    @Slot()
    def start(self) -> None:
        """Shown from its first step (Help ▸ Lesson walkthrough, and the first start)."""
        self._show_step(0)
        self.show()
        self.raise_()

    @Slot()
    def next(self) -> None:
        if self.index + 1 < len(self.steps):
            self._show_step(self.index + 1)
        else:
            self._end(FINISHED)

    @Slot()
    def back(self) -> None:
        if self.index > 0:
            self._show_step(self.index - 1)

    @Slot()
    def skip(self) -> None:
        self._end(SKIPPED)

    def _show_step(self, index: int) -> None:
        self.index = index
        step = self.step
        self.stepLabel.setText(f"Step {index + 1} of {len(self.steps)} · {step.title}")
        self.textLabel.setText(step.text)
        self.backButton.setEnabled(index > 0)
        last = index + 1 == len(self.steps)
        self.nextButton.setText("Finish" if last else "Next")
        self.nextButton.setToolTip("Close the walkthrough: the lesson's path is done" if last else
                                   f"The next step, on the {self.steps[index + 1].title} tab")
        page = self._tab_page(step.tab)
        if page is not None:  # a tab renamed or gone: the text still reads, the window stays where it is
            self._tabs.setCurrentWidget(page)
        self.step_shown.emit(index)

    def _tab_page(self, name: str) -> QWidget | None:
        for i in range(self._tabs.count()):
            if self._tabs.widget(i).objectName() == name:
                return self._tabs.widget(i)
        return None

    def _end(self, how: str) -> None:
        self._settings.walkthrough_done = True
        self._settings.sync()  # remembered even if the studio does not close cleanly
        self.hide()
        self.ended.emit(how)
