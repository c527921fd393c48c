"""One look for every plot of the studio: white background, a light grid, matplotlib's tab10 palette, and the
colours of heat maps (the confusion matrix) taken from the same palette.

Every panel's plots take it from here (the Training tab's curves, the Runs tab's comparison, the Evaluate tab's
matrix and drift bars, the Optimizer tab's lr preview).
"""

from __future__ import annotations

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsItem

import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it

# A qualitative palette (matplotlib's tab10) that reads well on white; series i takes colour i.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
BACKGROUND = "w"
GRID_ALPHA = 0.3
# Heat maps: right answers in the palette's blue, errors in its red, from white (none) to full colour (all).
HEAT_RIGHT = PALETTE[0]
HEAT_WRONG = PALETTE[3]
# Above this luminance a cell's text is drawn black, below it white (WCAG's relative luminance, roughly).
DARK_TEXT_LUMINANCE = 0.45


def series_color(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def new_plot(object_name: str, title: str = "", x_label: str = "", y_label: str = "", legend: bool = False,
             tooltip: str = "") -> pg.PlotWidget:
    """A PlotWidget in the studio's style."""
    plot = pg.PlotWidget(title=title or None)
    plot.setObjectName(object_name)
    plot.setBackground(BACKGROUND)
    plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)
    if x_label:
        plot.setLabel("bottom", x_label)
    if y_label:
        plot.setLabel("left", y_label)
    if legend:
        plot.addLegend(offset=(-10, 10))
    if tooltip:
        plot.setToolTip(tooltip)
    for side in ("left", "bottom"):  # axes are the costliest part of a redraw; repaint them only when they change
        plot.getAxis(side).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    return plot


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
