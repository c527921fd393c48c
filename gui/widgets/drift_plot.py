"""Weight drift as bars: how far each stage (or each layer) moved from where the run started, as the relative L2
distance ‖w − w₀‖ / ‖w₀‖ (engine/infer/drift.py). A frozen stage's bar is exactly 0 and says so.

Horizontal bars, first stage on top, as the Runs tab draws training times: names fit on the vertical axis however
many layers a model has."""

from __future__ import annotations

import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it
from PySide6.QtWidgets import QWidget

from engine.infer.drift import WeightDrift
from gui.widgets.formatting import drift_text
from gui.widgets.plot_style import new_plot, series_color

BAR_HEIGHT = 0.7
LABELLED_BARS = 40  # with more bars, values are not written next to them (they would overlap)
FROZEN_COLOUR = (160, 160, 160)


class DriftPlot:
    """Owns a PlotWidget (`widget`) in the studio's style; `show(drift, by_layer)` draws it."""

    def __init__(self, object_name: str = "driftPlot", parent: QWidget | None = None):
        self.widget = new_plot(object_name, "Weight drift from the run's start", "relative L2 distance ‖w − w₀‖ / ‖w₀‖",
                               tooltip="How far each stage (or layer) moved during the run; frozen ones are exactly "
                                       "0: the freeze, proved once more")
        if parent is not None:
            self.widget.setParent(parent)
        self.widget.invertY(True)
        self._bars = pg.BarGraphItem(x0=0, y=[], width=[], height=BAR_HEIGHT, pen=None)
        self.widget.addItem(self._bars)
        self._labels: list[pg.TextItem] = []
        self._names: list[str] = []
        self._values: list[float | None] = []

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def values(self) -> list[float | None]:
        """The drift of each bar (None where it is undefined: a layer that started at all zeros and moved)."""
        return list(self._values)

    def bar_lengths(self) -> list[float]:
        return [float(w) for w in self._bars.opts["width"]]

    def show(self, drift: WeightDrift | None, by_layer: bool = False) -> None:
        if drift is None:
            entries: list[tuple[str, float | None, str | None]] = []
        elif by_layer:
            entries = [(layer.path, layer.relative, layer.stage) for layer in drift.layers]
        else:
            entries = [(stage.name, stage.relative, stage.name) for stage in drift.stages]
        stages = list(dict.fromkeys(stage for _, _, stage in entries))  # each stage its colour, in model order
        self._names = [name for name, _, _ in entries]
        self._values = [value for _, value, _ in entries]
        widths = [value or 0.0 for value in self._values]
        brushes = [FROZEN_COLOUR if value == 0.0 else series_color(stages.index(stage))
                   for _, value, stage in entries]
        self._bars.setOpts(x0=0, y=list(range(len(entries))), width=widths, height=BAR_HEIGHT, brushes=brushes)
        self.widget.getAxis("left").setTicks([[(i, name) for i, name in enumerate(self._names)]])
        for label in self._labels:
            self.widget.removeItem(label)
        self._labels = []
        if len(entries) <= LABELLED_BARS:
            for i, value in enumerate(self._values):
                text = drift_text(value, "n/a") + (" (frozen)" if value == 0.0 else "")
                label = pg.TextItem(text, color=(60, 60, 60), anchor=(0, 0.5))
                label.setPos(widths[i], i)
                self.widget.addItem(label)
                self._labels.append(label)
        self.widget.setLabel("left", "layer" if by_layer else "stage")
        largest = max(widths, default=0.0)
        self.widget.setXRange(0, largest * 1.3 if largest > 0 else 1.0, padding=0)
        self.widget.setYRange(-0.5, max(0, len(entries) - 0.5), padding=0.02)
