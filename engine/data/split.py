"""The seeded stratified split of a folder without train/ and val/: one function, without torch, so that the
studio's Data tab counts the split before torch is loaded."""

from __future__ import annotations

import random


def stratified_split(samples: list[tuple[str, int]], val_fraction: float, seed: int
                     ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Per class: shuffle with `seed`, put round(n × fraction) in validation (at least one when n ≥ 2)."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label])
        rng.shuffle(items)
        n_val = round(len(items) * val_fraction)
        if len(items) >= 2:
            n_val = min(max(1, n_val), len(items) - 1)
        else:
            n_val = 0
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val
