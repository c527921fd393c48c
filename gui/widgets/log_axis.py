"""An axis whose log mode labels enough ticks to read a value off: every decade (10⁻⁵), and when the axis spans
about two decades or less the 2× and 5× between them (2·10⁻⁵, 5·10⁻⁵); narrower still every 1…9×, or nice linear
steps of the values themselves (1.1·10⁻⁴, 1.2·10⁻⁴) within a fraction of a decade. In linear mode it is pyqtgraph's
own axis.

pyqtgraph's log axis places its labels by the linear spacing of the exponents: over one decade that leaves two
labels, and over eight decades on a short axis it may step every second or fifth decade (issue 28).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds to it
from PySide6.QtGui import QFontMetricsF

# Up to this many decades ticks between decades are labelled too: two decades of data plus the margin a plot keeps.
LABELLED_MINOR_SPAN = 2.5
FEWEST_LABELS = 3
ALL_MANTISSAS = (2, 3, 4, 5, 6, 7, 8, 9)
# Which m × 10^k are labelled besides the decades, best first: 2× and 5×; every one on a fraction of a decade; on an
# axis too short for those, the decades alone or with 3× (1, 3, 10, 30: half decades).
MANTISSA_CHOICES = ((2, 5), ALL_MANTISSAS, (), (3,))
DECADE_STEPS = (1, 2, 5)  # × 10^k decades between labels, for an axis too short for one label a decade
LINEAR_STEPS = (5.0, 2.5, 2.0, 1.0)  # × 10^k, widest first
MOST_LINEAR_TICKS = 12
LABEL_GAP = 1.1  # the least distance between two labels' centres, in labels (half of each, and a margin)
TEXT_HEIGHT = 0.8  # pyqtgraph lays a label out on 80 % of its font's height ("boundingRect is usually too large")
SMALLEST_LABEL = 8  # pixels along the axis: no label is shorter
EPSILON = 1e-9  # log10 units: a tick on the axis' end still counts as on it
FLOAT_DECADES = 300  # values within 10^±300 are safely floats (linear steps compute them)
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class LogAwareAxis(pg.AxisItem):
    """pyqtgraph's AxisItem with readable log ticks: level 0 holds every labelled tick, chosen so that no two labels
    overlap (pyqtgraph draws level 0's text however crowded), level 1 the unlabelled ones."""

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802, N803 - pyqtgraph's names
        low, high = sorted((float(minVal), float(maxVal)))
        if not (math.isfinite(low) and math.isfinite(high)) or high - low <= 0 or size <= 0:
            return []
        if self._shows_no_data():  # an empty plot's range is pyqtgraph's default, 10⁰…10¹: no learning rate's
            return []
        pixels_per_decade = size / (high - low)
        decades = self._every_decade_that_fits(low, high, pixels_per_decade)
        if high - low > LABELLED_MINOR_SPAN:
            every_decade = len(decades) < 2 or decades[1] - decades[0] == 1
            return [(1.0, decades), (None, _mantissa_ticks(low, high, ALL_MANTISSAS) if every_decade else [])]
        best, best_readable = (decades, []), -1
        for labelled, unlabelled in _tick_choices(low, high, decades):
            drawn = self._readable(labelled, low, high, pixels_per_decade)
            if not _apart(drawn, pixels_per_decade):
                continue
            if len(drawn) >= FEWEST_LABELS:
                return [(1.0, labelled), (None, unlabelled)]
            if len(drawn) > best_readable:
                best, best_readable = (labelled, unlabelled), len(drawn)
        return [(1.0, best[0]), (None, best[1])]

    def _shows_no_data(self) -> bool:
        view = self.linkedView()
        if view is None:
            return False
        bounds = view.childrenBounds()
        return all(axis_bounds is None for axis_bounds in bounds)

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        """`spacing` is None on the unlabelled level (see logTickValues). The studio never scales an axis."""
        if spacing is None:
            return ["" for _ in values]
        return _distinct_labels(values)

    def _every_decade_that_fits(self, low: float, high: float, pixels_per_decade: float) -> list[float]:
        """Every decade when their labels fit the axis' length, else every 2nd, 5th, 10th, 20th … decade."""
        scale = 1
        while True:
            for step in (s * scale for s in DECADE_STEPS):
                if pixels_per_decade * step < SMALLEST_LABEL:  # far too many to try (a view zoomed far out)
                    continue
                first, last = math.ceil((low - EPSILON) / step), math.floor((high + EPSILON) / step)
                decades = [float(k * step) for k in range(first, last + 1)]
                if _apart(self._readable(decades, low, high, pixels_per_decade), pixels_per_decade):
                    return decades
            scale *= 10

    def _readable(self, ticks: list[float], low: float, high: float,
                  pixels_per_decade: float) -> list[tuple[float, float]]:
        """(tick, label extent) of the ticks whose labels lie whole on the axis: pyqtgraph drops a label that would
        stick out of an end (a tick on an end has half of it out)."""
        return [(tick, extent) for tick, extent in zip(ticks, self._label_extents(ticks))
                if min(tick - low, high - tick) * pixels_per_decade >= extent / 2]

    def _label_extents(self, ticks: list[float]) -> list[float]:
        """The ticks' labels' sizes along the axis, in pixels: their height on a vertical axis, width on a
        horizontal one."""
        metrics = QFontMetricsF(self.style["tickFont"] or self.font())
        if self.orientation in ("left", "right"):
            return [metrics.height() * TEXT_HEIGHT] * len(ticks)
        return [metrics.horizontalAdvance(label) for label in _distinct_labels(ticks)]


def _apart(drawn: list[tuple[float, float]], pixels_per_decade: float) -> bool:
    """Whether labels, (tick, extent) in order along the axis, leave room between each other."""
    return all((b - a) * pixels_per_decade >= (ea + eb) / 2 * LABEL_GAP for (a, ea), (b, eb) in zip(drawn, drawn[1:]))


def power_label(log_value: float, decimals: int = 3) -> str:
    """10⁻⁴ for a decade, 2·10⁻⁴ or 2.5·10⁻⁴ between them (the mantissa rounded to `decimals`)."""
    exponent = math.floor(log_value + EPSILON)
    mantissa = round(10 ** (log_value - exponent), decimals)
    if mantissa >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    power = "10" + str(exponent).translate(SUPERSCRIPT)
    if math.isclose(mantissa, 1.0):
        return power
    return f"{mantissa:.{decimals}f}".rstrip("0").rstrip(".") + "·" + power


def _distinct_labels(values) -> list[str]:
    """The ticks' labels with as many digits as it takes to tell those of a narrow axis apart."""
    for decimals in range(3, 10):
        labels = [power_label(value, decimals) for value in values]
        if len(set(labels)) == len(labels):
            break
    return labels


def _tick_choices(low: float, high: float, decades: list[float]) -> Iterator[tuple[list[float], list[float]]]:
    """(labelled, unlabelled) ticks on [low, high] (log10 values), best first: MANTISSA_CHOICES, then linear steps of
    the values, widest first (a fraction of a decade holds few mantissas)."""
    for mantissas in MANTISSA_CHOICES:
        labelled = sorted(decades + _mantissa_ticks(low, high, mantissas))
        yield labelled, _mantissa_ticks(low, high, [m for m in ALL_MANTISSAS if m not in mantissas])
    if not -FLOAT_DECADES < low < high < FLOAT_DECADES:
        return
    first, last = 10 ** low, 10 ** high
    for power in range(math.floor(math.log10(last - first)), -2 * FLOAT_DECADES, -1):
        for step in (s * 10.0 ** power for s in LINEAR_STEPS):
            start, stop = math.ceil(first / step * (1 - 1e-12)), math.floor(last / step * (1 + 1e-12))
            if stop - start + 1 > MOST_LINEAR_TICKS:
                return
            yield [math.log10(i * step) for i in range(start, stop + 1)], []


def _mantissa_ticks(low: float, high: float, mantissas) -> list[float]:
    """log10 of m × 10^k for each mantissa m, inside [low, high]."""
    ticks = [k + math.log10(m) for k in range(math.floor(low) - 1, math.ceil(high) + 1) for m in mantissas]
    return sorted(t for t in ticks if low - EPSILON <= t <= high + EPSILON)
