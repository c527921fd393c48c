"""The storage behind a live curve: appending a point is cheap, and the curve is handed views, not copies."""

from __future__ import annotations

import numpy as np


class GrowingSeries:
    """x/y float arrays that grow by doubling, so appending is cheap and setData gets views, not copies."""

    def __init__(self, capacity: int = 256):
        self._x = np.empty(capacity)
        self._y = np.empty(capacity)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, x: float, y: float) -> None:
        if self._n == len(self._x):
            self._x = np.concatenate([self._x, np.empty(len(self._x))])
            self._y = np.concatenate([self._y, np.empty(len(self._y))])
        self._x[self._n], self._y[self._n] = x, y
        self._n += 1

    def extend_or_append(self, x: float, y: float, rel_tol: float) -> None:
        """Append, unless the last segment is flat within rel_tol and y continues it: then that segment is
        stretched to x. A learning rate that stays put for 100 000 batches is then 2 points, a step schedule 2
        per step, and the line drawn is the same."""
        n = self._n
        if n >= 2:
            last, before = self._y[n - 1], self._y[n - 2]
            if abs(last - before) <= rel_tol * abs(before) and abs(y - last) <= rel_tol * abs(last):
                self._x[n - 1] = x
                return
        self.append(x, y)

    def clear(self) -> None:
        self._n = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[: self._n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self._n]
