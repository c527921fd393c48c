"""One look for every plot of the studio: white background, a light grid, dark readable text, matplotlib's tab10
palette, legends under the axes (never over a curve), phase boundaries as dashed lines named on the top axis (never
over a curve either), log axes labelled on every decade and, over two decades or less, on the 2× and 5× between
them (gui/widgets/log_axis.py), and the colours of heat maps (the confusion matrix)
taken from the same palette.

Every panel's plots take it from here (the Training tab's curves, the Runs tab's comparison, the Evaluate tab's
matrix and drift bars, the Optimizer tab's lr preview).
"""

from __future__ import annotations

import math

import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsItem

from gui.widgets.log_axis import LogAwareAxis
from gui.widgets.plot_ranges import decade_bounds

# A qualitative palette (matplotlib's tab10) that reads well on white; series i takes colour i.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
BACKGROUND = "w"
GRID_ALPHA = 0.3
TEXT = (40, 40, 40)  # titles, axis labels and legends: dark on white
AXIS = (110, 110, 110)
PHASE_LINE = (120, 120, 120)
# A log range's margin: its end decades' labels lie whole inside the axis (pyqtgraph drops one that sticks out).
LOG_PADDING = 0.08
LEGEND_COLUMNS = 4
LEGEND_ROW = 4  # in a PlotItem's grid: title 0, top axis 1, view 2, bottom axis 3, legend 4
# Heat maps: right answers in the palette's blue, errors in its red, from white (none) to full colour (all).
HEAT_RIGHT = PALETTE[0]
HEAT_WRONG = PALETTE[3]
# Above this luminance a cell's text is drawn black, below it white (WCAG's relative luminance, roughly).
DARK_TEXT_LUMINANCE = 0.45


def series_color(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


class LegendBelow(pg.LegendItem):
    """A legend in the plot's own layout, under the x axis: curves are never hidden behind it, however they run.
    pyqtgraph's LegendItem floats over the view box and sizes itself by setting its geometry; here the layout
    places it, so it only says how tall its rows are."""

    def __init__(self):
        super().__init__(offset=None, colCount=LEGEND_COLUMNS, labelTextColor=TEXT)
        self.layout.setContentsMargins(0, 2, 0, 2)

    def updateSize(self) -> None:  # noqa: N802 - pyqtgraph's name
        """Tall enough for its rows, as wide as its widest row (so that entries sit together, left-aligned)."""
        _, top, _, bottom = self.layout.getContentsMargins()
        height, width = top + bottom, 0.0
        spacing = self.layout.horizontalSpacing()
        for row in range(self.layout.rowCount()):
            items = [item for col in range(self.layout.columnCount())
                     if (item := self.layout.itemAt(row, col)) is not None]
            height += max((item.preferredHeight() for item in items), default=0.0)
            width = max(width, sum(_natural_width(item) + spacing for item in items))
        self.setMinimumHeight(height)
        self.setMaximumHeight(height)
        self.setMaximumWidth(max(width, 1.0))
        self.updateGeometry()

    def mouseDragEvent(self, ev) -> None:  # noqa: N802 - it stays where the layout puts it
        ev.ignore()


def _natural_width(item) -> float:
    """A legend entry's own width (a label's text, not the cell the layout stretched it to)."""
    text = getattr(item, "item", None)  # pyqtgraph's LabelItem draws through a QGraphicsTextItem
    return text.boundingRect().width() if text is not None else item.preferredWidth()


def new_plot(object_name: str, title: str = "", x_label: str = "", y_label: str = "", legend: bool = False,
             tooltip: str = "") -> pg.PlotWidget:
    """A PlotWidget in the studio's style; `legend`: curves plotted with a name are listed under the x axis."""
    # Left and bottom only: pyqtgraph shows every axis it is given (the top one shows phase names, when asked).
    plot = pg.PlotWidget(axisItems={side: LogAwareAxis(side) for side in ("left", "bottom")})
    plot.setObjectName(object_name)
    plot.setBackground(BACKGROUND)
    plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)
    item = plot.getPlotItem()
    if title:
        item.setTitle(title, color=QColor(*TEXT))
    for side in ("left", "bottom", "top"):
        axis = plot.getAxis(side)
        axis.setTextPen(pg.mkPen(TEXT))
        axis.setPen(pg.mkPen(AXIS))
        axis.labelStyle = {"color": QColor(*TEXT).name()}  # kept by every later setLabel (the axis's own style)
    if x_label:
        plot.setLabel("bottom", x_label)
    if y_label:
        plot.setLabel("left", y_label)
    if legend:
        below = LegendBelow()
        item.layout.addItem(below, LEGEND_ROW, 1)
        item.layout.setAlignment(below, Qt.AlignmentFlag.AlignLeft)
        item.legend = below  # PlotItem.addItem lists named curves in `legend`
    if tooltip:
        plot.setToolTip(tooltip)
    for side in ("left", "bottom"):  # axes are the costliest part of a redraw; repaint them only when they change
        plot.getAxis(side).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # The numbers as they are: pyqtgraph's SI prefix wrote "loss (x0.001)" under a fitted head's tiny losses and
        # "lr (x0.001)" beside log axes (issue 28)
        plot.getAxis(side).enableAutoSIPrefix(False)
    return plot


def mark_phases(plot: pg.PlotWidget, starts: list[float], names: list[str]) -> list[pg.InfiniteLine]:
    """A dashed line at each phase start, the phase's name on the top axis above it (labels inside the view would
    sit on the curves). Replaces the names of an earlier call; returns the lines (to remove them later)."""
    lines = []
    for start in starts:
        line = pg.InfiniteLine(pos=start, angle=90, movable=False,
                               pen=pg.mkPen(PHASE_LINE, width=1, style=Qt.PenStyle.DashLine))
        plot.addItem(line)
        lines.append(line)
    marks = [(float(start), name) for start, name in zip(starts, names)]
    plot.showAxis("top")
    top = plot.getAxis("top")
    top.setTicks([marks, []])
    top.setStyle(tickLength=0)
    plot.phase_marks = marks
    return lines


def phase_names(plot: pg.PlotWidget) -> list[tuple[float, str]]:
    """(epoch, name) of the phases marked on `plot` (what its top axis shows)."""
    return list(getattr(plot, "phase_marks", []))


def fit_log_y(plot: pg.PlotWidget, values) -> None:
    """A log y axis on whole decades holding every positive value (the axis labels them, see LogAwareAxis)."""
    positive = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return
    bottom, top = decade_bounds(min(positive), max(positive))
    plot.setYRange(bottom, top, padding=LOG_PADDING)


def heat_color(fraction: float, wrong: bool = False) -> QColor:
    """White at 0, the palette's blue (or red for errors) at 1; fractions outside [0, 1] are clamped."""
    fraction = min(1.0, max(0.0, float(fraction)))
    r, g, b = HEAT_WRONG if wrong else HEAT_RIGHT
    return QColor(round(255 + (r - 255) * fraction), round(255 + (g - 255) * fraction),
                  round(255 + (b - 255) * fraction))


def text_color_on(background: QColor) -> QColor:
    """Black or white, whichever reads on `background`."""
    luminance = (0.2126 * background.redF() + 0.7152 * background.greenF() + 0.0722 * background.blueF())
    return QColor(0, 0, 0) if luminance > DARK_TEXT_LUMINANCE else QColor(255, 255, 255)
