"""One plot style for the studio: the new plots take the Training tab's look from gui/widgets/plot_style.py."""

from __future__ import annotations

import math

import pyqtgraph as pg
import pytest
from PySide6.QtGui import QColor, QPainter, QPicture
from PySide6.QtWidgets import QApplication

from engine.infer.drift import LayerDrift, StageDrift, WeightDrift
from gui.widgets.drift_plot import DriftPlot
from gui.widgets.head_fit_plots import HeadFitPlots
from gui.widgets.live_curves import TrainingCurves
from gui.widgets.log_axis import LogAwareAxis
from gui.widgets.plot_style import PALETTE, heat_color, new_plot, series_color, text_color_on


def drawn_labels(plot: pg.PlotWidget, side: str) -> list[tuple[object, str]]:
    """(rectangle, text) of each tick label pyqtgraph paints on the `side` axis of a shown plot: the ticks and
    strings it asks of the axis (tickValues, tickStrings) less those it leaves out (off the axis, crowded)."""
    plot.grab()  # a first paint sizes the axis to its labels; the layout then gives it that size
    QApplication.processEvents()
    axis = plot.getAxis(side)
    picture = QPicture()
    painter = QPainter(picture)
    try:
        _, _, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(rect, text) for rect, _, text in texts]


def assert_readable(labels: list[tuple[object, str]]) -> list[str]:
    """At least three labels, none overlapping another; returns their texts."""
    texts = [text for _, text in labels if text]
    assert len(texts) >= 3, texts
    rects = [rect for rect, text in labels if text]
    assert not any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1:]), texts
    return texts


@pytest.fixture
def log_plot(qtbot):
    plot = new_plot("logPlot", "", "learning rate", "loss")
    qtbot.addWidget(plot)
    plot.setLogMode(x=True, y=True)
    plot.plot([1e-7, 1.0], [1e-7, 1.0])  # data over every range the tests show (an empty plot labels nothing)
    plot.resize(500, 300)
    plot.show()
    qtbot.waitExposed(plot)
    return plot


def show_range(plot: pg.PlotWidget, low: float, high: float, padding: float = 0.05) -> None:
    """Both axes over [low, high] (values, not exponents), with a plot's usual margin."""
    plot.setXRange(math.log10(low), math.log10(high), padding=padding)
    plot.setYRange(math.log10(low), math.log10(high), padding=padding)


@pytest.mark.parametrize("side", ["left", "bottom"])
def test_a_log_axis_over_many_decades_labels_every_decade(log_plot, side):
    """Issue 28: log axes carried almost no labels (and pyqtgraph's own mix 0.0001 with 10⁻⁵)."""
    show_range(log_plot, 1e-6, 1e-1)
    texts = assert_readable(drawn_labels(log_plot, side))
    assert texts == ["10⁻⁶", "10⁻⁵", "10⁻⁴", "10⁻³", "10⁻²", "10⁻¹"]


@pytest.mark.parametrize("side", ["left", "bottom"])
def test_a_log_axis_over_two_decades_labels_the_2x_and_5x_ticks_too(log_plot, side):
    show_range(log_plot, 1e-5, 1e-3, padding=0.08)  # the Training tab's lr plot around 1e-5 … 1e-3
    texts = assert_readable(drawn_labels(log_plot, side))
    assert {"10⁻⁵", "10⁻⁴", "10⁻³", "2·10⁻⁵", "5·10⁻⁵", "2·10⁻⁴", "5·10⁻⁴"} <= set(texts)


@pytest.mark.parametrize("side", ["left", "bottom"])
@pytest.mark.parametrize("low, high, some_labels", [(1e-4, 5e-4, {"10⁻⁴", "2·10⁻⁴"}),
                                                    (1e-4, 1.2e-4, {"1.1·10⁻⁴"})])
def test_a_log_axis_over_a_fraction_of_a_decade_still_labels_three_ticks(log_plot, side, low, high, some_labels):
    show_range(log_plot, low, high)
    texts = assert_readable(drawn_labels(log_plot, side))
    assert some_labels <= set(texts)


def test_an_empty_log_plot_labels_no_values_it_has_not_got(qtbot):
    """An LR finder not yet run showed 2.5·10⁰ … 7.5·10⁰ (pyqtgraph's default range) as learning rates."""
    plot = new_plot("emptyLogPlot", "", "learning rate", "loss")
    qtbot.addWidget(plot)
    plot.setLogMode(x=True, y=False)
    curve = plot.plot([], [])
    plot.resize(500, 300)
    plot.show()
    qtbot.waitExposed(plot)
    assert [text for _, text in drawn_labels(plot, "bottom") if text] == []
    curve.setData([1e-5, 1e-1], [1.0, 2.0])  # the sweep's points arrive: the axis labels them
    plot.autoRange()
    assert {"10⁻⁵", "10⁻³", "10⁻¹"} <= set(assert_readable(drawn_labels(plot, "bottom")))


def test_linear_axes_are_pyqtgraphs_own(log_plot):
    log_plot.setLogMode(x=False, y=False)
    axis, own = log_plot.getAxis("left"), pg.AxisItem("left")
    levels = axis.tickValues(0.5, 2.5, 200)
    assert levels == own.tickValues(0.5, 2.5, 200)
    assert [axis.tickStrings(v, 1.0, s) for s, v in levels] == [own.tickStrings(v, 1.0, s) for s, v in levels]


def test_every_log_axis_of_the_studio_is_log_aware(qtbot, image_folder):
    from gui.document import RecipeDocument
    from gui.panels.optimizer_panel import OptimizerPanel
    from tests.helpers import tiny_recipe

    curves, fit = TrainingCurves(), HeadFitPlots()
    panel = OptimizerPanel(RecipeDocument(tiny_recipe(image_folder, "gradual_unfreezing", epochs=3)))
    for widget in (curves, fit, panel):
        qtbot.addWidget(widget)
    log_axes = [curves.lrPlot.getAxis("left"), fit.cvPlot.getAxis("bottom"),
                panel.findChild(pg.PlotWidget, "lrPreviewPlot").getAxis("left"),
                panel.findChild(pg.PlotWidget, "lrFindPlot").getAxis("bottom")]
    assert all(isinstance(axis, LogAwareAxis) and axis.logMode for axis in log_axes)


def test_the_training_tabs_plots_take_the_studios_style(qtbot):
    curves = TrainingCurves()
    qtbot.addWidget(curves)
    for plot in (curves.lossPlot, curves.accuracyPlot, curves.lrPlot):
        assert plot.backgroundBrush().color() == QColor("white") and plot.getAxis("left").grid
    assert curves.train_loss_curve.opts["pen"].color() == QColor(*series_color(0))
    assert curves.val_loss_curve.opts["pen"].color() == QColor(*series_color(1))


def test_new_plots_are_white_with_a_grid(qtbot):
    plot = new_plot("somePlot", "Title", "x", "y", tooltip="what it shows")
    qtbot.addWidget(plot)
    assert plot.objectName() == "somePlot" and plot.toolTip() == "what it shows"
    assert plot.backgroundBrush().color() == QColor("white")
    assert plot.getAxis("bottom").grid and plot.getAxis("left").grid
    assert not plot.getAxis("top").isVisible() and not plot.getAxis("right").isVisible()  # two axes, not four


def test_heat_colours_run_from_white_to_the_palettes_blue_or_red():
    assert heat_color(0.0) == QColor(255, 255, 255) == heat_color(0.0, wrong=True)
    assert heat_color(1.0) == QColor(*PALETTE[0]) and heat_color(1.0, wrong=True) == QColor(*PALETTE[3])
    assert heat_color(2.0) == heat_color(1.0) and heat_color(-1.0) == heat_color(0.0)
    assert text_color_on(heat_color(0.1)) == QColor(0, 0, 0) and text_color_on(heat_color(1.0)) == QColor(255, 255, 255)


def test_the_drift_plot_draws_frozen_stages_as_exactly_zero(qtbot):
    drift = WeightDrift([LayerDrift("a.0", 4, 0.0, 2.0, 0.0, "a"), LayerDrift("b.0", 4, 1.0, 4.0, 0.25, "b")],
                        [StageDrift("a", 4, 0.0), StageDrift("b", 4, 0.25)])
    plot = DriftPlot()
    qtbot.addWidget(plot.widget)
    assert plot.widget.backgroundBrush().color() == QColor("white")
    plot.show(drift)
    assert plot.names == ["a", "b"] and plot.bar_lengths() == [0.0, 0.25]
    plot.show(drift, by_layer=True)
    assert plot.names == ["a.0", "b.0"] and plot.values == [0.0, 0.25]
    plot.show(None)
    assert plot.names == [] and plot.bar_lengths() == []


def test_legends_sit_under_the_axes_and_never_cover_a_curve(qtbot):
    from engine.train import events as ev

    curves = TrainingCurves()
    qtbot.addWidget(curves)
    curves.resize(600, 900)
    curves.add_batches([ev.BatchFinished(epoch=0, batch=0, batches=4, global_step=1, train_loss=1.0, train_acc=0.5,
                                         lrs={"early": 1e-5, "middle": 1e-4, "head": 1e-3}, images_per_s=50.0)])
    curves.flush()
    curves.show()
    qtbot.waitExposed(curves)
    for plot in (curves.lossPlot, curves.accuracyPlot, curves.lrPlot):
        item = plot.getPlotItem()
        legend, view = item.legend, item.getViewBox()
        assert legend is not None and legend.items  # the named curves are listed
        assert legend.isVisible() and legend.sceneBoundingRect().height() > 0
        assert not legend.sceneBoundingRect().intersects(view.sceneBoundingRect())
        assert legend.sceneBoundingRect().top() >= plot.getAxis("bottom").sceneBoundingRect().top()


def test_phases_are_named_above_the_plot_not_over_its_curves(qtbot):
    from gui.widgets.plot_style import mark_phases, phase_names

    plot = new_plot("phasesPlot", "Loss", "epoch", "loss")
    qtbot.addWidget(plot)
    lines = mark_phases(plot, [0, 5, 10], ["head", "head+layer4", "all"])
    assert [line.value() for line in lines] == [0, 5, 10]
    assert all(getattr(line, "label", None) is None for line in lines)  # no text inside the view
    assert phase_names(plot) == [(0.0, "head"), (5.0, "head+layer4"), (10.0, "all")]
    assert plot.getAxis("top").isVisible()


def test_the_lr_preview_takes_the_studios_style_with_distinct_colours(qtbot, image_folder):
    from gui.document import RecipeDocument
    from gui.panels.optimizer_panel import OptimizerPanel
    from tests.helpers import tiny_recipe

    panel = OptimizerPanel(RecipeDocument(tiny_recipe(image_folder, "gradual_unfreezing", epochs=3)))
    qtbot.addWidget(panel)
    plot = panel.findChild(pg.PlotWidget, "lrPreviewPlot")
    assert plot.backgroundBrush().color() == QColor("white")
    items = plot.getPlotItem().listDataItems()
    colours = [item.opts["pen"].color().name() for item in items]
    assert len(items) >= 3 and len(set(colours)) == len(colours)  # no two groups alike
    assert plot.getPlotItem().legend.items and not plot.getPlotItem().legend.sceneBoundingRect().intersects(
        plot.getPlotItem().getViewBox().sceneBoundingRect())
    panel.resize(1000, 700)
    panel.show()
    qtbot.waitExposed(panel)
    assert "10⁻³" in assert_readable(drawn_labels(plot, "left"))  # the head's rate, on a labelled log axis


def test_small_values_are_labelled_as_they_are_not_with_an_si_factor(qtbot):
    """Issue 28: "loss (x0.001)" under a fitted head's tiny losses; the axes show 0.002, not 2 × 0.001."""
    curves = TrainingCurves()
    qtbot.addWidget(curves)
    curves.lossPlot.plot([0.0, 1.0, 2.0], [0.001, 0.002, 0.004])
    curves.lossPlot.getPlotItem().vb.autoRange()
    fit = HeadFitPlots()
    qtbot.addWidget(fit)
    for plot in (curves.lossPlot, curves.accuracyPlot, curves.lrPlot, fit.cvPlot, fit.pathPlot):
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            assert not axis.autoSIPrefix and "(x" not in axis.labelString(), (plot.objectName(), side)
    assert curves.lossPlot.getAxis("left").labelString().endswith(">loss </span>")
