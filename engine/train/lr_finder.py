"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's `lr_find`, torch-lr-finder):
train for a few batches while the rate grows exponentially from `start_lr` to `end_lr`, record the loss, and
suggest a rate from the curve.

* The sweep stops when the loss is not finite or its running average (a debiased exponential moving average,
  β = 0.98, as fastai's Recorder keeps it) exceeds 4 × its minimum: fastai's rule for "the loss exploded".
* The suggestion's rule is **steepest descent**: the rate where the smoothed loss falls fastest against log lr,
  before its minimum (torch-lr-finder's rule), read on a *zero-lag* smoothing of the loss (a centred Gaussian,
  σ = 3 points): the causal running average trails the loss by ~49 points at β = 0.98 (four decades of a 100-point
  sweep over eight), and a centred window with short tails keeps the explosion at the end from leaking back.
  Measured on 60 seeded softmax regressions whose good rate is known by grid search (bench/lr_finder_rules.py:
  SGD, SGD with momentum and Adam, feature scales 0.3–10, 5 seeds), the suggestion lands within a decade of the
  best rate 60 times out of 60 (0.35 decades off on average, 0.89 at worst); fastai's default rule, **valley** (the
  longest descent of the causal curve, and the point halfway down it), 43 of 60 (worst 2.0 decades); the minimum
  ÷ 10, 55 of 60. Valley and minimum ÷ 10 are reported too. The rules skip the first 10 and the last 5 points, as
  those libraries do.

fastai is not a dependency of Thaw (it pins its own torch stack), so the rules are written here, after
fastai/callback/schedule.py (`valley`) and torch-lr-finder's `plot(suggest_lr=True)`.

The test runs on the phase as a run would start it: its freeze plan and BatchNorm modes, its parameter groups,
its optimizer (fresh: no carried state), its training batches (cached features for a head-only phase, which makes
the sweep take milliseconds). Rates: with `group`, only that group's rate sweeps and the others keep theirs; without,
every group sweeps together, keeping the ratios between them (discriminative rates stay discriminative). Afterwards
everything is as it was, bit for bit: the weights and buffers (BatchNorm statistics), the gradients, the phase's
optimizer, the modules' train/eval modes, the data set's epoch and every RNG (Python, NumPy, torch, CUDA).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from engine.errors import BadInputError
from engine.recipe import Recipe
from engine.train import events as ev
from engine.train.checkpoints import restore_rng_states, rng_states
from engine.train.devices import DeviceSetup
from engine.train.eval_step import logits_of, to_device
from engine.train.optim import build_optimizer
from engine.train.phase import ActivePhase
from engine.train.sampling import epoch_order
from engine.train.setup import assemble

VALLEY, STEEPEST = "valley", "steepest"


@dataclass(frozen=True)
class SweepSettings:
    start_lr: float = 1e-7
    end_lr: float = 10.0
    iterations: int = 100
    smoothing: float = 0.98  # the running average the explosion is judged on (causal)
    diverge_factor: float = 4.0  # stop once the running average exceeds this multiple of its minimum
    curve_smoothing: float = 3.0  # σ, in points, of the zero-lag curve the suggestion reads (and the studio draws)
    skip_start: int = 10  # points left out of the suggestions at each end (the noisy start, the explosion)
    skip_end: int = 5

    def check(self) -> None:
        if not 0 < self.start_lr < self.end_lr:
            raise BadInputError(f"the sweep needs 0 < start lr < end lr, got {self.start_lr:g} and {self.end_lr:g}")
        if self.iterations < 5:
            raise BadInputError(f"the sweep needs at least 5 iterations, got {self.iterations}")


@dataclass
class LrSweep:
    """A finished sweep: the rates tried (of the reference group), the losses, and the suggestions."""

    phase_index: int
    phase_name: str
    group: str  # the reference group: the rates below are its rates
    swept: list[str]  # the groups whose rate swept (the others kept theirs)
    ratios: dict[str, float]  # swept group → its rate / the reference group's rate
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # each batch's loss, at the rate of the same index
    smoothed: list[float] = field(default_factory=list)  # the zero-lag smoothing the suggestion reads
    suggestion: float | None = None  # by `rule`; None when the curve is too short to read
    rule: str = STEEPEST
    valley: float | None = None  # fastai's rule, on the causal running average
    minimum_tenth: float | None = None  # the rate at the smoothed loss's minimum ÷ 10
    ended: str = "end"  # "end" (reached end_lr), "diverged" (the loss exploded) or "stopped" (asked to)
    on_features: bool = False
    seconds: float = 0.0  # the sweep itself (not building the model or the features)

    def suggestion_for(self, group: str) -> float | None:
        """The suggested rate for a swept group (the reference's suggestion times the group's ratio)."""
        if self.suggestion is None or group not in self.ratios:
            return None
        return self.suggestion * self.ratios[group]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def valley_index(losses: list[float]) -> int:
    """fastai's valley rule (fastai/callback/schedule.py): the longest decreasing subsequence of the (smoothed)
    loss, from `start` to `end`, and the index start + ⌊n/3⌋ + ⌊n/6⌋ along it (n = end - start): halfway down."""
    n = len(losses)
    longest = [1] * n
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end = i
    start = end - longest[end]
    sections = (end - start) / 3
    return max(0, start + int(sections) + int(sections / 2))


def running_average(losses: list[float], beta: float) -> list[float]:
    """Debiased exponential moving average (fastai's smoothed loss)."""
    out, average = [], 0.0
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** i))
    return out


def zero_lag(losses: list[float], sigma: float) -> list[float]:
    """A centred Gaussian smoothing (σ in points, cut at 3σ, renormalised at the ends): smooth, not shifted to the
    right as a running average is, and with short tails, so that the explosion at the end does not leak far back."""
    if not losses or sigma <= 0:
        return list(losses)
    reach = int(3 * sigma)
    offsets = np.arange(-reach, reach + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    values = np.asarray(losses, dtype=float)
    weights = np.convolve(np.ones_like(values), kernel, mode="same")
    return (np.convolve(values, kernel, mode="same") / weights).tolist()


def suggest(lrs: list[float], losses: list[float], settings: SweepSettings
            ) -> tuple[list[float], float | None, float | None, float | None]:
    """(zero-lag curve, steepest descent, valley, minimum ÷ 10) on the trimmed curve; None where it has fewer
    than 3 points."""
    smoothed = zero_lag(losses, settings.curve_smoothing)
    lo, hi = settings.skip_start, len(lrs) - settings.skip_end
    if hi - lo < 3:  # a short sweep (it exploded early): read what there is
        lo, hi = 0, len(lrs)
    if hi - lo < 3:
        return smoothed, None, None, None
    x, y = lrs[lo:hi], smoothed[lo:hi]
    lowest = int(np.argmin(y))
    descent = y[: lowest + 1] if lowest >= 2 else y  # the fall towards the minimum, not the climb after it
    steepest = x[int(np.argmin(np.gradient(np.asarray(descent))))]  # evenly spaced in log lr
    valley = x[valley_index(running_average(losses, settings.smoothing)[lo:hi])]
    return smoothed, steepest, valley, x[lowest] / 10


class _Snapshot:
    """Everything a sweep may change, to put back exactly."""

    def __init__(self, phase):
        model = phase.setup.model
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()}
        self.modes = {m: m.training for m in model.modules()}
        self.optimizer = phase.optimizer
        self.optimizer_state = _clone(phase.optimizer.state_dict())
        self.dataset = phase.setup.data.train
        self.epoch = getattr(self.dataset, "epoch", None)
        self.rng = rng_states()

    def restore(self) -> None:
        self.model.load_state_dict(self.state)
        for p, grad in self.grads.items():
            p.grad = grad
        for module, training in self.modes.items():
            module.training = training
        self.optimizer.load_state_dict(self.optimizer_state)
        if self.epoch is not None:
            self.dataset.set_epoch(self.epoch)
        restore_rng_states(self.rng)


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


def _endless_batches(phase: ActivePhase) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The phase's training batches, epoch after epoch, in the order a run would see them."""
    setup, r = phase.setup, phase.setup.recipe
    for epoch in itertools.count():
        order = epoch_order(len(setup.data.train), r.batch_size, r.seed, epoch, r.data.max_train_batches)
        setup.data.train.set_epoch(epoch)
        yield from phase.train_batches(epoch, order)


def _head_group(optimizer: torch.optim.Optimizer, head: torch.nn.Module) -> str:
    head_params = {id(p) for p in head.parameters()}
    holding = [g["name"] for g in optimizer.param_groups if any(id(p) in head_params for p in g["params"])]
    return holding[-1] if holding else optimizer.param_groups[-1]["name"]


@dataclass
class Trace:
    """What a sweep recorded: the reference rate and the loss of each step, and how it ended."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    ended: str = "end"


def sweep_rates(step: Callable[[dict[str, float]], float], ratios: dict[str, float], settings: SweepSettings,
                should_stop: Callable[[], bool] = lambda: False,
                progress: Callable[[int, int], None] | None = None,
                on_step: Callable[[float, float], None] | None = None) -> Trace:
    """The sweep itself, on any training step: `step(rates)` sets each swept group's rate (group → rate), trains
    one batch and returns its loss (computed before the update, as the libraries record it). `on_step(lr, loss)`
    sees each point as it is measured (a step that trains a backbone takes seconds: the studio draws as it goes);
    `should_stop` is asked before every step."""
    trace = Trace()
    growth = (settings.end_lr / settings.start_lr) ** (1 / (settings.iterations - 1))
    best, average = math.inf, 0.0
    for i in range(settings.iterations):
        if should_stop():
            trace.ended = "stopped"
            return trace
        lr = settings.start_lr * growth ** i
        value = step({name: lr * ratio for name, ratio in ratios.items()})
        if not math.isfinite(value):
            trace.ended = "diverged"
            return trace
        trace.lrs.append(lr)
        trace.losses.append(value)
        if on_step is not None:
            on_step(lr, value)
        average = settings.smoothing * average + (1 - settings.smoothing) * value
        smoothed = average / (1 - settings.smoothing ** len(trace.losses))
        best = min(best, smoothed)
        if progress is not None:
            progress(i + 1, settings.iterations)
        if i >= settings.skip_start and smoothed > settings.diverge_factor * best:
            trace.ended = "diverged"
            return trace
    return trace


def optimizer_step(forward: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator,
                   criterion: torch.nn.Module, device: DeviceSetup) -> Callable[[dict[str, float]], float]:
    """A `step` for sweep_rates: the training loop's forward, loss and update (engine/train/loop.py) at given
    rates. A non-finite loss is returned before any update."""
    scaler = torch.amp.GradScaler("cuda", enabled=device.needs_scaler)

    def step(rates: dict[str, float]) -> float:
        for g in optimizer.param_groups:
            if g["name"] in rates:
                g["lr"] = rates[g["name"]]
        images, labels = to_device(*next(batches), device)
        with device.autocast():
            loss = criterion(logits_of(forward(images)).float(), labels)
        value = float(loss.detach())
        if math.isfinite(value):
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return value

    return step


def read_trace(sweep: LrSweep, trace: Trace, settings: SweepSettings) -> LrSweep:
    sweep.lrs, sweep.losses, sweep.ended = trace.lrs, trace.losses, trace.ended
    sweep.smoothed, sweep.suggestion, sweep.valley, sweep.minimum_tenth = suggest(trace.lrs, trace.losses, settings)
    return sweep


def lr_range_test(phase: ActivePhase, group: str | None = None, settings: SweepSettings = SweepSettings(),
                  should_stop: Callable[[], bool] = lambda: False,
                  progress: Callable[[int, int], None] | None = None,
                  on_step: Callable[[float, float], None] | None = None) -> LrSweep:
    """Sweep the rate on `phase` (an ActivePhase, features cached when it trains only the head) and put
    everything back. `group`: sweep only this group; None: every group, keeping their ratios."""
    settings.check()
    setup = phase.setup
    names = [g["name"] for g in phase.optimizer.param_groups]
    if group is not None and group not in names:
        raise BadInputError(f"phase '{phase.config.name}' has no parameter group '{group}'; its groups: "
                            f"{', '.join(names)}")
    reference = group or _head_group(phase.optimizer, setup.model.get_submodule(setup.built.head_path))
    base = {g["name"]: float(g["lr"]) for g in phase.optimizer.param_groups}
    swept = [group] if group else names
    sweep = LrSweep(phase.index, phase.config.name, reference, swept,
                    {name: base[name] / base[reference] for name in swept}, on_features=phase.features is not None)
    snapshot = _Snapshot(phase)
    batches = _endless_batches(phase)
    started = time.perf_counter()
    try:
        # A fresh optimizer of the phase's kind over the phase's groups: the phase's own is never stepped.
        groups = [{k: v for k, v in g.items() if k not in ("params", "initial_lr")} | {"params": list(g["params"])}
                  for g in phase.optimizer.param_groups]
        optimizer = build_optimizer(groups, phase.config.optimizer)
        phase.set_train_mode()
        step = optimizer_step(phase.forward, optimizer, batches, setup.criterion, setup.device)
        trace = sweep_rates(step, sweep.ratios, settings, should_stop, progress, on_step)
    finally:
        sweep.seconds = time.perf_counter() - started
        batches.close()  # ends a loader's worker processes now
        snapshot.restore()
    return read_trace(sweep, trace, settings)


def find_lr(recipe: Recipe, phase_index: int = 0, group: str | None = None,
            settings: SweepSettings = SweepSettings(), bus: ev.EventBus | None = None,
            should_stop: Callable[[], bool] = lambda: False,
            progress: Callable[[int, int], None] | None = None,
            on_step: Callable[[float, float], None] | None = None) -> LrSweep:
    """The range test for phase `phase_index` of `recipe`, on the model as a run would build it (pretrained
    weights and a fresh head: earlier phases are not trained first). Bad input raises BadInputError; a stop
    request ends it between two steps (the sweep so far, `ended == "stopped"`)."""
    recipe = recipe.copy()
    if not 0 <= phase_index < len(recipe.phases):
        raise BadInputError(f"phase {phase_index + 1} does not exist: the recipe has {len(recipe.phases)} "
                            f"phase{'s' if len(recipe.phases) != 1 else ''}")
    settings.check()
    bus = bus or ev.EventBus()
    setup = assemble(recipe, bus)
    phase = ActivePhase.begin(setup, phase_index, "max")
    cached = phase.cache_features(bus, should_stop)
    if cached is not None:
        bus.emit(cached)
    return lr_range_test(phase, group, settings, should_stop, progress, on_step)
