"""Issue 11, the learning-rate finder: which rule reads the range test best? On seeded softmax regressions whose
good rate is known by grid search, how far (in decades) is each rule's suggestion from it?

Problems: 600 samples, 16 features of scale 0.3, 1, 3 or 10 (SGD's good rate goes as 1 / scale²), labels from a
noisy linear teacher (not separable, so a good rate exists); optimizers SGD, SGD with momentum 0.9, Adam; 5 seeds:
60 problems. Known good rate: the half-decade from 1e-7 to 10 whose 3 epochs (batch 32) reach the lowest training
loss. Sweep: engine/train/lr_finder.py's `sweep_rates` (1e-7 → 10 in 100 steps, stop at 4 × the minimum of the
running average). Rules: steepest descent and minimum ÷ 10 on the zero-lag curve (Thaw's), fastai's valley and
steepest descent on the causal running average (β = 0.98, as fastai and torch-lr-finder read it).

    .venv/bin/python bench/lr_finder_rules.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import copy
import math

import numpy as np
from common import ROOT  # noqa: F401 - puts the project on sys.path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sigma", type=float, default=None, help="the zero-lag curve's σ (default: Thaw's)")
    args = parser.parse_args()
    import torch

    from engine.train.devices import DeviceSetup
    from engine.train.lr_finder import (
        SweepSettings,
        optimizer_step,
        running_average,
        suggest,
        sweep_rates,
        valley_index,
    )

    torch.set_num_threads(1)
    cpu = DeviceSetup(torch.device("cpu"), "fp32", False)
    settings = SweepSettings() if args.sigma is None else SweepSettings(curve_smoothing=args.sigma)
    optimizers = {"sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
                  "sgd+momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
                  "adam": lambda p, lr: torch.optim.Adam(p, lr=lr)}

    def problem(seed: int, scale: float):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(600, 16, generator=g)
        teacher = torch.randn(16, 3, generator=g)
        gumbel = -torch.log(-torch.log(torch.rand(600, 3, generator=g)))
        return x * scale, (x @ teacher + gumbel).argmax(1)

    def batches(x, y, seed: int):
        for epoch in range(10**6):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            for start in range(0, len(x) - 31, 32):
                yield x[order[start:start + 32]], y[order[start:start + 32]]

    def good_rate(head, make, x, y) -> float:
        losses = {}
        for k in range(-14, 3):
            lr = 10 ** (k / 2)
            model = copy.deepcopy(head)
            optimizer = make(model.parameters(), lr)
            stream = batches(x, y, 7)
            for _ in range(3 * len(x) // 32):
                xb, yb = next(stream)
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                value = float(torch.nn.functional.cross_entropy(model(x), y))
            losses[lr] = value if math.isfinite(value) else math.inf
        return min(losses, key=losses.get)

    distances: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        for scale in (0.3, 1.0, 3.0, 10.0):
            for _name, make in optimizers.items():
                x, y = problem(seed, scale)
                torch.manual_seed(seed)
                head = torch.nn.Linear(16, 3)
                model = copy.deepcopy(head)
                optimizer = make([{"params": model.parameters(), "name": "head"}], 1.0)
                step = optimizer_step(model, optimizer, batches(x, y, seed), torch.nn.CrossEntropyLoss(), cpu)
                trace = sweep_rates(step, {"head": 1.0}, settings)
                _, steepest, valley, tenth = suggest(trace.lrs, trace.losses, settings)
                causal = running_average(trace.losses, settings.smoothing)
                lo, hi = settings.skip_start, len(trace.lrs) - settings.skip_end
                causal_steepest = trace.lrs[lo:hi][int(np.argmin(np.gradient(np.asarray(causal[lo:hi]))))]
                assert valley == trace.lrs[lo:hi][valley_index(causal[lo:hi])]
                good = good_rate(head, make, x, y)
                for rule, value in (("steepest, zero-lag (Thaw)", steepest), ("minimum / 10, zero-lag", tenth),
                                    ("valley, causal β=0.98 (fastai)", valley),
                                    ("steepest, causal β=0.98", causal_steepest)):
                    distances.setdefault(rule, []).append(abs(math.log10(value / good)))
    n = len(next(iter(distances.values())))
    print(f"{n} problems (seeds × 4 feature scales × 3 optimizers), zero-lag σ = {settings.curve_smoothing} points; "
          f"distance from the known good rate in decades")
    print(f"{'rule':34s} {'within a decade':>16s} {'mean':>6s} {'worst':>6s}")
    for rule, values in distances.items():
        print(f"{rule:34s} {sum(v <= 1 for v in values):>9d} of {n:<4d} {np.mean(values):6.2f} {max(values):6.2f}")


if __name__ == "__main__":
    main()
