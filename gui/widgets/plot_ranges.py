"""A live plot's y range that changes rarely: nice bounds instead of pyqtgraph's exact auto-range.

With auto-range every redraw of a live curve moves the y range a little (the loss keeps falling), and a new range
repaints the axis: the costliest part of a pyqtgraph redraw (text through a QPicture, ~5-10 ms). Bounds rounded to
1-2-2.5-5 steps (or to whole decades on a log axis) only change when the data leave them, so most redraws leave
the axes alone, and the view does not jitter while a user reads it.

The user stays in charge: after a zoom or pan (mouse) the range is theirs until the plot's "A" button or "View
All" gives auto-range back, which this class then takes over again with nice bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg

NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


def nice_ceil(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k that is ≥ value (value > 0)."""
    exponent = math.floor(math.log10(value))
    for step in NICE_STEPS:
        bound = step * 10.0 ** exponent
        if bound >= value * (1 - 1e-12):
            return bound
    return 10.0 ** (exponent + 1)


def nice_bounds(low: float, high: float) -> tuple[float, float]:
    """Linear bounds that hold [low, high]: from 0 when the data are all ≥ 0 (losses), else symmetric nice steps."""
    top = nice_ceil(high) if high > 0 else 0.0
    bottom = 0.0 if low >= 0 else -nice_ceil(-low)
    if top == bottom:
        top = bottom + 1.0
    return bottom, top


def decade_bounds(low: float, high: float) -> tuple[float, float]:
    """log10 bounds on whole decades that hold [low, high] (both > 0), at least one decade wide."""
    bottom, top = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return float(bottom), float(max(top, bottom + 1))


class SteadyYRange:
    """Owns one plot's y range while the user has not zoomed: `fit(values)` at each redraw."""

    def __init__(self, plot: pg.PlotWidget, log: bool = False, fixed: tuple[float, float] | None = None):
        self._view = plot.getPlotItem().getViewBox()
        self._log = log
        self._fixed = fixed
        self._applied: tuple[float, float] | None = None
        self._user_range = False
        self._view.sigRangeChangedManually.connect(self._on_user_range)
        self.reset()

    def _on_user_range(self, *_args) -> None:
        self._user_range = True

    def reset(self) -> None:
        """A new run: the range is ours again."""
        self._user_range = False
        self._applied = None
        self._view.enableAutoRange(axis=pg.ViewBox.YAxis, enable=False)
        if self._fixed is not None:
            self._apply(self._fixed)

    def fit(self, values: list[np.ndarray]) -> None:
        if self._view.autoRangeEnabled()[1]:  # "A" or View All: auto-range is back, in our hands
            self._view.enableAutoRange(axis=pg.ViewBox.YAxis, enable=False)
            self._user_range, self._applied = False, None
        if self._user_range:
            return
        if self._fixed is not None:
            if self._applied != self._fixed:
                self._apply(self._fixed)
            return
        data = [v[np.isfinite(v)] for v in values if len(v)]
        data = [v[v > 0] if self._log else v for v in data]
        data = [v for v in data if v.size]
        if not data:
            return
        low, high = min(float(v.min()) for v in data), max(float(v.max()) for v in data)
        bounds = decade_bounds(low, high) if self._log else nice_bounds(low, high)
        if bounds != self._applied:
            self._apply(bounds)

    def _apply(self, bounds: tuple[float, float]) -> None:
        self._applied = bounds
        # A rate often sits exactly on a decade: more room on a log axis keeps its line and label off the frame.
        self._view.setYRange(*bounds, padding=0.08 if self._log else 0.02)

    @property
    def bounds(self) -> tuple[float, float] | None:
        """What was last applied (log10 units on a log axis); None while nothing was."""
        return self._applied
