"""The plots of a head fitted to convergence (engine/train/head_fit.py): its cross-validation and its final fit,
on their own x axes — a fit has no batches and no epochs to draw against."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QWidget

from engine.train import events as ev
from engine.train.narrate import l2_text
from gui.widgets.plot_style import new_plot, series_color


class HeadFitPlots(QWidget):
    """The fits of heads fitted to convergence: held-out accuracy and loss against the L2 strength (the
    cross-validation that chose it, the winner marked), and the final fit's objective against its L-BFGS
    iterations. One curve per fitted phase."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("headFitBox")
        self.cvPlot = new_plot("headFitCvPlot", "Head fit: cross-validation", "L2 strength", "held-out accuracy (%)",
                               legend=True)
        self.cvPlot.setLogMode(x=True)
        self.pathPlot = new_plot("headFitPathPlot", "Head fit: final fit", "L-BFGS iteration", "loss + penalty",
                                 legend=True)
        self.cvPlot.setToolTip("Cross-validation on the training features: held-out accuracy for each L2 strength "
                               "tried; the marked strength won and was fitted on all training features")
        self.pathPlot.setToolTip("The final fit: the training loss plus the L2 penalty after each L-BFGS iteration "
                                 "(it flattens when the head has converged)")
        self._items: list[tuple[pg.PlotWidget, object]] = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.cvPlot)
        layout.addWidget(self.pathPlot)

    def show_fit(self, e: ev.HeadFitted) -> None:
        color = series_color(len(self._items) // 3)
        name = f"phase {e.phase_index + 1}"
        if e.cv_acc:
            self._add(self.cvPlot, self.cvPlot.plot(e.grid, [100 * a for a in e.cv_acc], name=name,
                                                    pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5,
                                                    symbolBrush=color, symbolPen=None))
        chosen = pg.InfiniteLine(pos=float(np.log10(e.l2)), angle=90, movable=False,
                                 pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine),
                                 label=f"L2 {l2_text(e.l2)}", labelOpts={"position": 0.1, "color": color})
        self.cvPlot.addItem(chosen)
        self._add(self.cvPlot, chosen)
        self._add(self.pathPlot, self.pathPlot.plot(e.curve_iterations, e.curve_objective, name=name,
                                                    pen=pg.mkPen(color, width=2)))

    def _add(self, plot: pg.PlotWidget, item) -> None:
        self._items.append((plot, item))

    def clear(self) -> None:
        for plot, item in self._items:
            plot.removeItem(item)
        self._items.clear()

    def curves(self) -> list[pg.PlotDataItem]:
        return [item for _, item in self._items if isinstance(item, pg.PlotDataItem)]
