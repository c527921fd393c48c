"""Every interactive widget of the Evaluate and Inference tabs has a stable objectName and a tooltip."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QHeaderView, QLineEdit,
                               QTabBar, QTabWidget, QWidget)

from gui.document import RecipeDocument
from gui.panels.evaluate_panel import EvaluatePanel
from gui.panels.inference_panel import InferencePanel

INTERACTIVE = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QAbstractItemView, QTabWidget, pg.PlotWidget)


def interactive_widgets(root: QWidget) -> list[QWidget]:
    """The widgets a person uses, not the parts Qt builds inside them (headers, a combo's list, scroll bars)."""
    found = []
    for widget in root.findChildren(QWidget):
        if not isinstance(widget, INTERACTIVE) or isinstance(widget, QHeaderView):
            continue
        parent = widget.parentWidget()
        inside = False
        while parent is not None and parent is not root:
            if isinstance(parent, (QComboBox, QAbstractSpinBox, pg.PlotWidget, QAbstractItemView, QTabBar)):
                inside = True
            parent = parent.parentWidget()
        if not inside and widget.objectName() != "qt_scrollarea_viewport":
            found.append(widget)
    return found


EVALUATE = {"evaluationRunCombo", "refreshEvaluationRunsButton", "evaluateRunButton", "evaluateFolderButton",
            "evaluateTabs", "confusionTable", "normalizeConfusionCheck", "perClassTable", "gallerySortCombo",
            "showMisclassifiedButton", "galleryHeatmapToggle", "exportMisclassifiedButton", "evaluationGallery",
            "findLabelIssuesButton", "labelIssuesBackboneCombo", "suspectsTable", "duplicatesFilterCombo",
            "duplicatesTable", "filtersSameScaleCheck", "featureStageCombo", "featureMapCountSpin",
            "chooseFeatureImageButton", "driftByLayerCheck", "driftPlot"}
INFERENCE = {"checkpointCombo", "refreshCheckpointsButton", "openImagesButton", "topkSpin", "predictionsTable",
             "heatmapToggle"}


@pytest.mark.parametrize(("panel_type", "expected"), [(EvaluatePanel, EVALUATE), (InferencePanel, INFERENCE)])
def test_every_interactive_widget_has_a_name_and_a_tooltip(qtbot, panel_type, expected, runs_dir, monkeypatch):
    monkeypatch.setenv("THAW_RUNS_DIR", str(runs_dir))
    panel = panel_type(RecipeDocument())
    qtbot.addWidget(panel)
    widgets = interactive_widgets(panel)
    assert expected <= {w.objectName() for w in widgets}  # the finder finds them: the checks below are not vacuous
    unnamed = [type(w).__name__ for w in widgets if not w.objectName()]
    assert unnamed == [], f"widgets without an objectName: {unnamed}"
    silent = [w.objectName() for w in widgets if not w.toolTip()]
    assert silent == [], f"widgets without a tooltip: {silent}"
    names = [w.objectName() for w in widgets]
    assert len(names) == len(set(names)), "objectNames must be unique"
    panel.shutdown()
