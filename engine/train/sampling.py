"""The seeded randomness of a run: the global seeds, each epoch's sample order, and each process's share of it.

**Order.** An epoch's order is a permutation seeded by (seed, epoch), the same whatever the number of processes (W):
it is cut into global batches of `batch_size × W` images and rank r trains on the r-th equal share of each. So the
images a step trains on, and the order of the steps, do not depend on W — a 2-process run with batch 16 per process
steps through exactly the batches of a 1-process run with batch 32. Every rank gets the same number of equal shares,
so DDP's mean of the ranks' gradients is the global batch's mean gradient, and no rank waits at a step the others
skip. A last, partial global batch of m images gives each rank m // W of them (the m % W left over are not trained
on that epoch); when that is fewer than 2 (a BatchNorm batch needs two, as the one-process rule drops a last batch
of one), the partial batch is dropped.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 2_654_435_761 + epoch * 40_503 + 17) % 2**31


def epoch_order(n: int, batch_size: int, seed: int, epoch: int, max_batches: int) -> list[int]:
    """The shuffled sample order of one epoch; a final batch of one sample is dropped (BatchNorm needs two)."""
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(n, generator=g).tolist()
    if max_batches:
        order = order[: max_batches * batch_size]
    if len(order) % batch_size == 1 and len(order) > 1:
        order = order[:-1]
    return order


def rank_order(order: list[int], per_process_batch: int, rank: int, world: int) -> list[int]:
    """Rank `rank`'s part of the epoch's global `order` (already capped to whole global batches): the r-th equal
    share of every global batch, concatenated."""
    global_batch = per_process_batch * world
    out: list[int] = []
    for start in range(0, len(order), global_batch):
        chunk = order[start:start + global_batch]
        share = len(chunk) // world
        if share < per_process_batch and share < 2:
            break  # a last partial batch too small to share (see the module's docstring)
        out.extend(chunk[rank * share:(rank + 1) * share])
    return out


def global_batches(order: list[int], per_process_batch: int, world: int) -> list[list[int]]:
    """The global batches the ranks train on together (every rank's share of each, rank 0 first)."""
    shares = [rank_order(order, per_process_batch, r, world) for r in range(world)]
    steps = math.ceil(len(shares[0]) / per_process_batch) if shares[0] else 0
    return [[i for share in shares for i in share[s * per_process_batch:(s + 1) * per_process_batch]]
            for s in range(steps)]
