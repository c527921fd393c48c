"""What a run will cost, before it starts: time per epoch and for the whole run, peak memory, disk — measured on a
few real batches of the recipe's own data and model, on the device the run would use.

The run is assembled as the trainer assembles it (engine/train/setup.py: the same data scan, model and freeze
plans, so input the run would refuse is refused here with the same BadInputError), except that nothing is decoded
ahead: the RAM cache of decoded images and the cached features are accounted for, not built.

Per phase, what a run spends is measured where it is spent:

* a phase on images: a warm-up batch, then `batches` training steps (forward, backward, optimizer step) through the
  run's own loader and augmentation, timed; when the run would keep decoded images in RAM, the measured batches
  come from such a cache (filled for those images only), and the fill of the whole cache is extrapolated from
  the time it took to decode them; validation from evaluation batches the same way;
* a phase on cached features: the frozen backbone's pass over a few batches, extrapolated to every training view
  and validation image — or nothing when the features are already in the feature cache (engine/train/
  feature_cache.py) or an earlier head-only phase of the run computes them; then the head's epochs on features,
  or its fit to convergence (engine/train/head_fit.py): L-BFGS iterations timed on features of the real shape,
  times the iterations a fit typically takes (FIT_ITERATIONS_*);
* a checkpoint, written once to a temporary file (its size is the checkpoint's disk cost), every epoch.

Memory: the process's resident set size (psutil) sampled after each measured forward pass, plus what the run
would hold and the estimate did not build (the RAM cache, the cached features); on CUDA also the peak of
`torch.cuda.max_memory_allocated`. Disk: last.pt (best.pt is a hard link to one of its versions: at most one
more file of the same size) plus the features the feature cache would store.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from engine.data.ram_cache import DecodedImageCache
from engine.errors import BadInputError, ThawError
from engine.recipe import Recipe
from engine.train import events as ev
from engine.train.checkpoints import save_checkpoint
from engine.train.eval_step import in_eval_mode, logits_of, to_device
from engine.train.feature_cache import FeatureStore, cache_key
from engine.train.head_fit import FitSettings, iteration_seconds
from engine.train.narrate import duration_text, seconds_text, size_text
from engine.train.phase import ActivePhase, phase_epochs
from engine.train.setup import RunSetup, assemble, ram_cache_plan

# L-BFGS iterations a fit to convergence typically takes: per grid point and fold (warm-started along the path)
# and for the final fit. Counted (HeadFit.cv_iterations / iterations) with the grid 100 … 1e-5 and two repeats:
# 13.7 per fit and 16–351 on the hard transfer task of bench/head_fit.py, ~5 on the separable task of
# bench/estimate_accuracy.py (where 12 overestimated the fit 2.4×); 8 sits between (the strong end converges fast).
FIT_ITERATIONS_PER_CV_FIT = 8
FIT_ITERATIONS_FINAL = 80


class EstimateCancelled(ThawError):
    """The estimate was asked to stop (the run it was for started, or the studio closed)."""


@dataclass
class PhaseCost:
    index: int
    name: str
    kind: str  # "images", "cached features" or "fitted head"
    epochs: int  # as the run counts them (a fitted head is one)
    steps_per_epoch: int  # optimizer steps (0 for a fitted head)
    train_seconds: float  # one epoch's training (or the fit)
    val_seconds: float  # one epoch's validation
    checkpoint_seconds: float  # one epoch's checkpoint
    features_seconds: float  # the backbone's feature pass at the phase's start (0: cached, or images)
    measured_batches: int

    @property
    def epoch_seconds(self) -> float:
        return self.train_seconds + self.val_seconds + self.checkpoint_seconds

    @property
    def seconds(self) -> float:
        return self.features_seconds + self.epochs * self.epoch_seconds


@dataclass
class RunEstimate:
    name: str
    device: str
    classes: int
    train_images: int
    val_images: int
    setup_seconds: float  # data scan and model, as measured here
    ram_cache_seconds: float  # filling the RAM cache of decoded images (0 when the run would not)
    ram_cache_bytes: int
    phases: list[PhaseCost] = field(default_factory=list)
    peak_memory_bytes: int = 0  # process RSS (the CPU's memory)
    gpu_peak_bytes: int = 0  # torch.cuda.max_memory_allocated (0 off CUDA)
    checkpoint_bytes: int = 0  # one last.pt (the largest phase's)
    feature_cache_bytes: int = 0  # what the feature cache would write to disk
    measured_seconds: float = 0.0  # how long this estimate took
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return self.setup_seconds + self.ram_cache_seconds + sum(p.seconds for p in self.phases)

    @property
    def disk_bytes(self) -> int:
        return self.checkpoint_bytes + self.feature_cache_bytes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_seconds"] = self.total_seconds
        data["disk_bytes"] = self.disk_bytes
        for phase, cost in zip(data["phases"], self.phases):
            phase["epoch_seconds"], phase["seconds"] = cost.epoch_seconds, cost.seconds
        return data

    def lines(self) -> list[str]:
        """The estimate in words, for the CLI's --dry-run and the studio's Training tab."""
        out = [f"Estimate for '{self.name}' on {self.device}: {self.classes} classes, {self.train_images} training "
               f"/ {self.val_images} validation images (measured in {seconds_text(self.measured_seconds)})",
               f"  whole run ≈ {duration_text(self.total_seconds)}: set-up {seconds_text(self.setup_seconds)}"
               + (f", decoding {size_text(self.ram_cache_bytes)} of images into RAM "
                  f"{seconds_text(self.ram_cache_seconds)}" if self.ram_cache_seconds else "")]
        for p in self.phases:
            features = f"backbone features {seconds_text(p.features_seconds)}, then " if p.features_seconds else ""
            if p.kind == "fitted head":
                what = f"{features}the head fitted to convergence ≈ {seconds_text(p.epoch_seconds)}"
            else:
                what = (f"{features}{p.epochs} epoch{'s' if p.epochs != 1 else ''} × "
                        f"{seconds_text(p.epoch_seconds)} ({p.steps_per_epoch} steps on {p.kind})")
            out.append(f"  phase {p.index + 1} '{p.name}': {what} = {duration_text(p.seconds)}")
        memory = f"  peak memory ≈ {size_text(self.peak_memory_bytes)} (process RSS)"
        if self.gpu_peak_bytes:
            memory += f", GPU {size_text(self.gpu_peak_bytes)} (max_memory_allocated)"
        out.append(memory)
        out.append(f"  disk ≈ {size_text(self.disk_bytes)}: checkpoint last.pt {size_text(self.checkpoint_bytes)} "
                   f"(best.pt is a hard link to one of its versions)"
                   + (f", feature cache {size_text(self.feature_cache_bytes)}" if self.feature_cache_bytes else ""))
        out += [f"  note: {note}" for note in self.notes]
        return out


class _Memory:
    """The process's peak resident set size over the samples taken, and the GPU's peak allocation."""

    def __init__(self, device: torch.device):
        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.device = device

    def sample(self) -> None:
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def gpu_peak(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.device)) if self.cuda else 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_batches(batches, run: Callable[[torch.Tensor, torch.Tensor], None], count: int,
                   device: torch.device) -> tuple[float, int]:
    """(seconds per batch, batches timed) of `run` over `batches`, data loading included: the median after a warm-up
    batch (a neighbour's burst on a shared machine is an outlier, not the run's pace)."""
    times: list[float] = []
    tick = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        run(x, y)
        _sync(device)
        now = time.perf_counter()
        times.append(now - tick)
        tick = now
        if i >= count:
            break
    timed = times[1:] or times  # the first batch pays for start-up (workers, first kernels)
    return (statistics.median(timed) if timed else 0.0), len(timed)


def _emulate_ram_cache(setup: RunSetup, plan, indices: dict[int, list[int]]) -> float:
    """Give the data sets the RAM cache the run would have, filled for `indices` (data set position → sample
    indices) only; returns the seconds per decoded image."""
    prep = setup.built.preprocessing
    cache = DecodedImageCache(prep.resize_size, prep.interpolation, plan.budget)
    decoded, started, offset = 0, time.perf_counter(), 0
    for position, ds in enumerate(plan.datasets):
        ds.cache = cache.view(offset)
        for i in indices.get(position, []):
            ds.cache.put(i, ds.decode(i))
            decoded += 1
        offset += len(ds)
    return (time.perf_counter() - started) / max(1, decoded)


def estimate_run(recipe: Recipe, batches: int = 6, bus: ev.EventBus | None = None,
                 should_stop: Callable[[], bool] = lambda: False,
                 progress: Callable[[int, int], None] | None = None) -> RunEstimate:
    """Measure what `recipe` would cost. Bad input raises BadInputError (what the run itself would refuse);
    `should_stop` is asked before each phase is measured (EstimateCancelled), `progress(phases measured, phases)`
    told after each."""
    started = time.perf_counter()
    bus = bus or ev.EventBus()
    recipe = recipe.copy()
    setup = assemble(recipe, bus, fill_ram_cache=False)
    setup_seconds = time.perf_counter() - started
    data = setup.data
    empty = getattr(data.report, "empty_classes", None) if data.report is not None else None
    if empty:
        # The trainer would train them as classes no image teaches; a dry run says so before anything is spent.
        raise BadInputError(f"{recipe.data.root}: class folder{'s' if len(empty) > 1 else ''} "
                            f"{', '.join(repr(c) for c in empty)} {'have' if len(empty) > 1 else 'has'} no usable "
                            f"training images: add images or remove the folder")
    device = setup.device.device
    memory = _Memory(device)
    plan = ram_cache_plan(setup)
    estimate = RunEstimate(recipe.name, setup.device.describe(), len(data.classes), len(data.train), len(data.val),
                           setup_seconds, 0.0, 0)
    bs = recipe.batch_size
    if plan is not None and plan.enabled:
        measured = {0: list(range(min(len(plan.datasets[0]), bs * (batches + 1))))}
        if len(plan.datasets) > 1:
            measured[1] = list(range(min(len(plan.datasets[1]), bs * 3)))
        per_image = _emulate_ram_cache(setup, plan, measured)
        estimate.ram_cache_seconds = per_image * plan.guess.images / min(plan.workers, os.cpu_count() or 1)
        estimate.ram_cache_bytes = plan.guess.bytes
    features_bytes = 0
    epochs = phase_epochs(setup)
    features_ready = False  # computed by an earlier head-only phase, with the backbone as it then stays
    for index in range(len(recipe.phases)):
        if should_stop():
            raise EstimateCancelled("the estimate was cancelled")
        phase = ActivePhase.begin(setup, index, "max")
        if phase.caches_features:
            cost, ready_now, size = _feature_phase(phase, epochs[index], batches, memory, features_ready)
            features_ready, features_bytes = ready_now, max(features_bytes, size)
        else:
            cost = _image_phase(phase, epochs[index], batches, memory)
            features_ready = False  # the backbone trains: a later head-only phase computes features again
        cost.checkpoint_seconds, size = _checkpoint(phase)
        estimate.checkpoint_bytes = max(estimate.checkpoint_bytes, size)
        estimate.phases.append(cost)
        if progress is not None:
            progress(index + 1, len(recipe.phases))
    if features_bytes and recipe.data.feature_cache_mb and features_bytes <= recipe.data.feature_cache_mb * 2**20:
        estimate.feature_cache_bytes = features_bytes
    estimate.peak_memory_bytes = memory.peak + estimate.ram_cache_bytes + features_bytes
    estimate.gpu_peak_bytes = memory.gpu_peak
    if recipe.early_stopping.patience:
        estimate.notes.append(f"early stopping (patience {recipe.early_stopping.patience}) may end it sooner")
    estimate.notes.append("not counted: the evaluation of the best checkpoint after a finished run")
    estimate.measured_seconds = time.perf_counter() - started
    return estimate


def _image_phase(phase: ActivePhase, epochs: int, batches: int, memory: _Memory) -> PhaseCost:
    """Training and validation steps on real images, through the run's loaders."""
    setup, r = phase.setup, phase.setup.recipe
    device = setup.device
    order = list(range(min(len(setup.data.train), r.batch_size * (batches + 1))))
    phase.set_train_mode()

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = to_device(x, y, device)
        with device.autocast():
            loss = setup.criterion(logits_of(phase.forward(x)).float(), y)
        memory.sample()  # activations are alive here: the step's peak
        phase.optimizer.zero_grad(set_to_none=True)
        phase.scaler.scale(loss).backward()
        phase.scaler.step(phase.optimizer)
        phase.scaler.update()

    train, timed = _timed_batches(setup.loader(setup.data.train, order), train_step, batches, device.device)
    val_batches = setup.loader(setup.data.val, list(range(min(len(setup.data.val), 3 * r.batch_size))))
    val = _validation_seconds(phase, setup.model, val_batches, memory)
    return PhaseCost(phase.index, phase.config.name, "images", epochs, setup.steps_per_epoch,
                     train * setup.steps_per_epoch, val, 0.0, 0.0, timed)


def _validation_seconds(phase: ActivePhase, model: torch.nn.Module, batches, memory: _Memory) -> float:
    """An epoch's validation: eval-mode forward passes of `model` over `batches`, timed, for every batch."""
    setup, r = phase.setup, phase.setup.recipe
    steps = math.ceil(len(setup.data.val) / r.batch_size)
    if r.data.max_val_batches:
        steps = min(steps, r.data.max_val_batches)
    with in_eval_mode(model):
        per_batch, _ = _timed_batches(batches, _eval_forward(setup, model, memory), 2, setup.device.device)
    return per_batch * steps


def _eval_forward(setup: RunSetup, model: torch.nn.Module, memory: _Memory
                  ) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """A timed step of a forward pass without gradients (validation, the backbone's feature pass)."""
    def forward(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad(), setup.device.autocast():
            x, y = to_device(x, y, setup.device)
            model(x)
        memory.sample()

    return forward


def _feature_phase(phase: ActivePhase, epochs: int, batches: int, memory: _Memory, features_ready: bool
                   ) -> tuple[PhaseCost, bool, int]:
    """(cost, features ready for a later head-only phase, their bytes) of a phase on cached features."""
    setup, r = phase.setup, phase.setup.recipe
    train_set, describe = phase.feature_source()
    views = r.data.feature_views
    head = setup.model.get_submodule(setup.built.head_path)
    dim = _feature_dim(phase, train_set)
    images = views * len(train_set) + len(setup.data.val)
    size = images * (dim * 4 + 8)
    store = FeatureStore(budget_mb=r.data.feature_cache_mb)
    key = cache_key(setup.model, setup.built.head_path, {**describe, "views": views}, train_set, setup.data.val)
    stored = key in FeatureStore._memory or (store.budget and (store.folder / f"{key}.pt").is_file())  # noqa: SLF001
    features_seconds, timed = 0.0, 0
    if not (stored or features_ready):
        per_batch, timed = _backbone_seconds(phase, train_set, batches, memory)
        features_seconds = per_batch * math.ceil(images / r.batch_size)
    device = setup.device.device
    x = torch.randn(min(len(train_set), r.batch_size), dim, device=device)
    y = torch.randint(0, len(setup.data.classes), (len(x),), device=device)
    val = _validation_seconds(phase, head, [(x, y)] * 3, memory)
    if phase.fits_head:
        train = _fit_seconds(phase, views * len(train_set), dim)
        steps = 0
    else:
        steps = setup.steps_per_epoch
        train = _head_step_seconds(phase, x, y) * steps
    kind = "fitted head" if phase.fits_head else "cached features"
    cost = PhaseCost(phase.index, phase.config.name, kind, epochs, steps, train, val, 0.0, features_seconds, timed)
    return cost, True, size


def _feature_dim(phase: ActivePhase, train_set) -> int:
    """The length of one image's cached feature vector (the head's input, flattened), from one real forward pass."""
    setup = phase.setup
    head = setup.model.get_submodule(setup.built.head_path)
    sizes: list[int] = []
    hook = head.register_forward_hook(lambda module, inputs, output: sizes.append(inputs[0][0].numel()))
    model = setup.model
    try:
        image, label = train_set[0]
        with in_eval_mode(model), torch.no_grad():
            model(to_device(image[None], torch.tensor([label]), setup.device)[0])
    finally:
        hook.remove()
    return sizes[0]


def _backbone_seconds(phase: ActivePhase, train_set, batches: int, memory: _Memory) -> tuple[float, int]:
    """Seconds per batch of the frozen backbone's feature pass (eval mode, no gradients), data loading included."""
    setup, r = phase.setup, phase.setup.recipe
    order = list(range(min(len(train_set), r.batch_size * (batches + 1))))
    model = setup.model
    with in_eval_mode(model):
        return _timed_batches(setup.loader(train_set, order), _eval_forward(setup, model, memory), batches,
                              setup.device.device)


def _head_step_seconds(phase: ActivePhase, x: torch.Tensor, y: torch.Tensor, repeats: int = 20) -> float:
    """A training step of the head alone on a batch of features (the optimizer's update included)."""
    setup = phase.setup
    head = setup.model.get_submodule(setup.built.head_path)
    saved = {k: v.detach().clone() for k, v in head.state_dict().items()}
    optimizer = phase.optimizer
    started = time.perf_counter()
    for _ in range(repeats):
        loss = setup.criterion(head(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(x.device)
    seconds = (time.perf_counter() - started) / repeats
    head.load_state_dict(saved)
    return seconds


def _fit_seconds(phase: ActivePhase, rows: int, dim: int) -> float:
    """A fit to convergence: L-BFGS iterations timed on features of the real shape, times the iterations a fit
    typically takes (cross-validation fits on (k-1)/k of the rows)."""
    setup = phase.setup
    head = setup.model.get_submodule(setup.built.head_path)
    classes = len(setup.data.classes)
    settings = FitSettings()
    counts = torch.bincount(torch.tensor(setup.data.train.targets))
    folds = min(settings.folds, int(counts[counts > 0].min()))
    final = iteration_seconds(head, rows, dim, classes, setup.criterion, setup.device.device)
    if folds < 2:
        return final * FIT_ITERATIONS_FINAL
    cv = iteration_seconds(head, rows * (folds - 1) // folds, dim, classes, setup.criterion, setup.device.device)
    return cv * settings.repeats * folds * len(settings.grid) * FIT_ITERATIONS_PER_CV_FIT + final * FIT_ITERATIONS_FINAL


def _checkpoint(phase: ActivePhase) -> tuple[float, int]:
    """(seconds, bytes) of one checkpoint of this phase (model, optimizer, scheduler), written to a temporary
    file as the trainer writes it."""
    payload = {"model": phase.setup.model.state_dict(), **phase.state_dict(), **phase.setup.checkpoint_identity()}
    with tempfile.TemporaryDirectory(prefix="thaw-estimate-") as folder:
        started = time.perf_counter()
        path = save_checkpoint(Path(folder) / "last.pt", payload)
        seconds = time.perf_counter() - started
        return seconds, path.stat().st_size
