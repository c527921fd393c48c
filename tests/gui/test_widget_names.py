"""Every interactive widget of the studio — the main window's, every tab's — has a stable, unique objectName and a
tooltip; long tooltips wrap instead of running off the screen; Tab leaves a table instead of walking its cells."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6 import QtGui
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QHeaderView,
    QLineEdit,
    QMenuBar,
    QTabBar,
    QTabWidget,
    QToolTip,
    QWidget,
)

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
            if isinstance(parent, (QComboBox, QAbstractSpinBox, pg.PlotWidget, QAbstractItemView, QTabBar, QLineEdit,
                                   QMenuBar)):
                inside = True
            parent = parent.parentWidget()
        if not inside and widget.objectName() != "qt_scrollarea_viewport":
            found.append(widget)
    return found


def explained(widget: QWidget) -> bool:
    """A tooltip on the widget — or, for tab widgets, on every tab (a QTabWidget's own tooltip would show over
    every page's unexplained parts)."""
    if isinstance(widget, QTabWidget) and not widget.toolTip():
        return widget.count() > 0 and all(widget.tabToolTip(i) for i in range(widget.count()))
    return bool(widget.toolTip())


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
    silent = [w.objectName() for w in widgets if not explained(w)]
    assert silent == [], f"widgets without a tooltip: {silent}"
    names = [w.objectName() for w in widgets]
    assert len(names) == len(set(names)), "objectNames must be unique"
    panel.shutdown()


# A sample of every tab's widgets (the finder must find them) — the checks then hold for all it finds.
STUDIO = {"mainTabs", "datasetCombo", "dataFolderEdit", "horizontalFlipCheck", "thumbnailsView", "classesTable",
          "modelCombo", "weightsCombo", "layerTree", "runNameEdit", "lrPresetCombo", "scheduleCombo", "lrPreviewPlot",
          "groupsTable", "phasesTable", "addPhaseButton", "startButton", "lossPlot", "lrPlot", "runsTable",
          "deleteRunButton", "renameRunButton", "runsComparePlot", "evaluationRunCombo", "confusionTable",
          "checkpointCombo", "topkSpin", "predictionsTable"} | EVALUATE | INFERENCE


def test_every_named_interactive_widget_of_the_studio_has_a_tooltip(qtbot, runs_dir, monkeypatch):
    from gui.main_window import MainWindow

    monkeypatch.setenv("THAW_RUNS_DIR", str(runs_dir))
    window = MainWindow()
    qtbot.addWidget(window)
    widgets = interactive_widgets(window)
    names = [w.objectName() for w in widgets]
    assert STUDIO <= set(names), STUDIO - set(names)
    assert [type(w).__name__ for w in widgets if not w.objectName()] == []
    assert [w.objectName() for w in widgets if not explained(w)] == []
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
    assert len(widgets) > 90


def test_the_layer_tree_says_what_a_tick_means_where_the_tree_is(qtbot):
    from gui.document import RecipeDocument
    from gui.panels.model_panel import ModelPanel

    panel = ModelPanel(RecipeDocument())
    qtbot.addWidget(panel)
    legend = panel.findChild(QWidget, "treeLegendLabel")
    tree = panel.findChild(QWidget, "layerTree")
    assert "ticked = frozen" in legend.text() and "unticked = trains" in legend.text()
    layout = panel.layout()
    assert layout.indexOf(legend) == layout.indexOf(tree) - 1  # right above the tree, not in a header tooltip


def test_a_long_tooltip_wraps_and_a_short_one_is_left_alone(qtbot):
    from gui.widgets.tooltips import install_wrapping_tooltips

    install_wrapping_tooltips()
    long_tip = "Mirror each training image left-right at random, " * 6 + "<not a tag>"
    widget, short = QLineEdit(), QLineEdit()
    for w, tip in ((widget, long_tip), (short, "Short")):
        w.setToolTip(tip)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        QApplication.sendEvent(w, QHelpEvent(QHelpEvent.Type.ToolTip, QPoint(2, 2), w.mapToGlobal(QPoint(2, 2))))
        shown = QToolTip.text()
        if w is widget:
            assert QtGui.Qt.mightBeRichText(shown) and "&lt;not a tag&gt;" in shown  # rich, escaped: Qt wraps it
        else:
            assert shown == "Short"
    QToolTip.hideText()


def test_tab_leaves_a_table_instead_of_walking_its_cells(qtbot, runs_dir, monkeypatch):
    from gui.main_window import MainWindow

    monkeypatch.setenv("THAW_RUNS_DIR", str(runs_dir))
    window = MainWindow()
    qtbot.addWidget(window)
    views = window.findChildren(QAbstractItemView)
    assert len(views) > 10 and [v.objectName() for v in views if v.tabKeyNavigation()] == []
    window.show()
    window.activateWindow()
    qtbot.waitActive(window)
    window.tabs.setCurrentWidget(window.phases_panel)
    table = window.findChild(QAbstractItemView, "phasesTable")
    table.setFocus()
    qtbot.waitUntil(table.hasFocus)
    qtbot.keyClick(table, Qt.Key.Key_Tab)
    assert not table.hasFocus()
