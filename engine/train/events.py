"""The closed set of events a run emits, the bus that delivers them, and the control a caller pauses or stops with.

Every event is declared once, here, as a frozen, keyword-only dataclass of plain Python values (never tensors): it
is built with its fields named, so a field added or moved never shifts another's value at a call site. The same
objects reach every subscriber: the run folder (engine/train/run_folder.py), the CLI's console, TensorBoard, and
the studio, whose worker forwards them over one Qt signal. Metric fields are named as in metrics.csv and
summary.json (engine/train/metrics.py): `train_loss`, `train_acc`, `val_loss`, `val_acc`, `images_per_s`.
Epochs are 0-based in events; `batch` counts batches *done* in the epoch where a position is meant (RunStopped).

Human text for an event is engine/train/narrate.py's job, for the CLI and the studio alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Event:
    def to_dict(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class WeightsDownloadProgress(Event):
    weights: str
    file: str
    done_bytes: int
    total_bytes: int  # 0 when the server does not say


@dataclass(frozen=True, kw_only=True)
class DataPrepared(Event):
    classes: list[str]
    train_size: int
    val_size: int
    skipped: list[tuple[str, str]]  # (path, reason) of files that cannot be used


@dataclass(frozen=True, kw_only=True)
class TempFilesRemoved(Event):
    """Resuming: temporary files an interrupted write (a kill, a full disk) left in the run folder were removed."""

    run_dir: str
    files: list[str]


@dataclass(frozen=True, kw_only=True)
class WeightsLoaded(Event):
    """Which pretrained tensors the model received (a local weights file, or torchvision's), said every time."""

    source: str  # the exact weights name or the file
    report: str  # matched / adapted / left new, in words


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    run_dir: str
    recipe: dict[str, Any]  # the resolved recipe (exact weights name), as recipe.json holds it
    name: str
    strategy: str
    arch: str
    weights: str  # the exact weights name, e.g. "ResNet50_Weights.IMAGENET1K_V2", or "none" / a file path
    device: str  # a description, e.g. "cuda:0 (NVIDIA H200), bf16, channels_last"
    device_type: str  # "cpu", "cuda" or "mps": what a view decides on, never parsed from `device`
    precision: str
    total_epochs: int
    phase_start_epochs: list[int]
    phase_names: list[str]
    lr_groups: list[str]  # every parameter group of every phase, in order (metrics.csv has an lr column each)
    class_names: list[str]
    train_size: int
    val_size: int
    preprocessing: dict[str, Any]
    resumed: bool
    start_epoch: int  # > 0 when resuming
    start_batch: int  # batches already done in start_epoch (resuming mid-epoch)
    start_global_step: int
    elapsed_seconds: float  # training time before this session (paused time never counts)
    device_warning: str = ""  # e.g. "no GPU found: training runs on the CPU"
    run_id: str = ""  # the run's identity (summary.json and every checkpoint hold it)


@dataclass(frozen=True, kw_only=True)
class DistributedStarted(Event):
    """A run over several processes (torchrun, DistributedDataParallel): how it is laid out. Right after RunStarted;
    also for a one-process resume of a checkpoint that several processes wrote (`note` says what changed)."""

    world_size: int  # processes
    backend: str  # "nccl", "gloo" ("" in one process)
    per_process_batch: int  # the recipe's batch_size
    global_batch: int  # images per optimizer step: per_process_batch × world_size
    steps_per_epoch: int
    lr_scaling: str  # the recipe's rule: none, linear, sqrt
    lr_factor: float  # what it multiplied every rate by
    sync_batchnorm: bool
    note: str = ""  # a resume by another number of processes: where the run continues, in words


@dataclass(frozen=True, kw_only=True)
class PhaseStarted(Event):
    phase_index: int
    name: str
    epochs: int
    first_epoch: int
    trainable_params: int
    total_params: int
    trainable_modules: list[str]
    groups: dict[str, float]  # group name → initial lr
    head_fit: str = "epochs"  # "converge": the head is fitted to convergence on cached features, as one epoch
    head_fit_note: str = ""  # why a head-only phase that asked for "converge" trains epochs instead


@dataclass(frozen=True, kw_only=True)
class DecodedCacheEstimated(Event):
    """The RAM cache of decoded images: its estimated size, shown before anything is cached."""

    images: int
    bytes: int
    budget: int
    enabled: bool
    message: str


@dataclass(frozen=True, kw_only=True)
class DecodedCacheFilled(Event):
    images: int  # cached
    bytes: int
    refused: int  # images left out because the budget was reached (decoded from disk each epoch)
    seconds: float


@dataclass(frozen=True, kw_only=True)
class FeaturesProgressed(Event):
    """The frozen backbone is computing the features of a head-only phase (once; later runs reuse them)."""

    phase_index: int
    done: int  # images (× views) processed
    total: int


@dataclass(frozen=True, kw_only=True)
class FeaturesCached(Event):
    """A head-only phase trains on cached backbone features."""

    phase_index: int
    key: str
    images: int
    views: int
    dim: int
    seconds: float  # time to compute them; 0 when they came from the cache
    from_disk: bool


@dataclass(frozen=True, kw_only=True)
class HeadFitProgressed(Event):
    """A head is being fitted to convergence on cached features (engine/train/head_fit.py): the L2 strength is
    cross-validated on the training features, then the head is fitted on all of them. Progress, thinned by views."""

    phase_index: int
    epoch: int
    stage: str  # "cross-validation" or "final fit"
    done: int  # fits finished: folds × L2 strengths, then the final fit
    total: int
    fold: int  # 1-based during cross-validation; 0 in the final fit
    l2: float  # the strength being fitted
    iteration: int  # L-BFGS iterations of the final fit so far
    objective: float  # the final fit's loss + penalty at `iteration`; nan during cross-validation


@dataclass(frozen=True, kw_only=True)
class HeadFitted(Event):
    """A head fitted to convergence: which regularisation won, by how much, and the final fit's path."""

    phase_index: int
    epoch: int
    l2: float  # the L2 strength that won (and was fitted on all training features)
    grid: list[float]  # the strengths tried, strongest first
    cv_loss: list[float]  # mean held-out loss per strength (empty when there was no cross-validation)
    cv_acc: list[float]  # held-out accuracy per strength, 0..1
    folds: int  # 0: too few images per class to cross-validate; the default strength was used
    metric: str  # what chose the strength: "val_acc" or "val_loss" (the recipe's early_stopping.metric)
    iterations: int  # L-BFGS iterations of the final fit
    converged: bool  # the final fit met its tolerance (False: it stopped at its iteration cap)
    cv_iterations: int  # L-BFGS iterations of all the cross-validation fits together
    curve_iterations: list[int]  # the final fit's path: objective (loss + penalty) after these iterations
    curve_objective: list[float]
    train_loss: float  # the run's loss on the training features, without the penalty
    train_acc: float
    rows: int  # training features fitted (images × views)
    seconds: float  # the whole fit, cross-validation included (pauses excluded)
    repeats: int = 1  # the k-fold cross-validation was repeated with this many shuffles (pooled)
    temperature: float = 1.0  # the head's output was divided by this: its held-out loss at the chosen strength was
    # lowest there (calibrated probabilities, the same predictions); 1.0 when not calibrated
    calibrated_cv_loss: float | None = None  # that held-out loss after the division


@dataclass(frozen=True, kw_only=True)
class EpochStarted(Event):
    epoch: int  # global, 0-based
    phase_index: int
    batches: int


@dataclass(frozen=True, kw_only=True)
class BatchFinished(Event):
    epoch: int
    batch: int  # 0-based index of this batch within the epoch
    batches: int
    global_step: int  # optimizer steps so far in the run, this one included
    train_loss: float  # this batch's loss
    train_acc: float  # running accuracy of this epoch so far, 0..1
    lrs: dict[str, float]  # the rates this batch trained with
    images_per_s: float  # over the last few batches


@dataclass(frozen=True, kw_only=True)
class ValidationFinished(Event):
    epoch: int
    val_loss: float
    val_acc: float


@dataclass(frozen=True, kw_only=True)
class EpochFinished(Event):
    epoch: int
    phase_index: int
    phase_name: str
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lrs: dict[str, float]  # the rates the epoch's last batch trained with (before an epoch-wise schedule step)
    seconds: float  # training time of the epoch (validation and pauses excluded)
    images_per_s: float
    data_wait_share: float  # share of the training time spent waiting for batches (the data path)
    train_images: int
    is_best: bool
    elapsed_seconds: float  # training time of the whole run so far (pauses excluded)
    fit: str = "batches"  # how the epoch trained: "batches" (optimizer steps) or "lbfgs" (a head fitted to convergence)
    l2: float | None = None  # the L2 strength a fitted head won with; None for batches


@dataclass(frozen=True, kw_only=True)
class PhaseSetBack(Event):
    """A phase made the model worse than the phase before it left it (engine/train/setbacks.py): its first epoch
    lost much of the accuracy it started from ("first_epoch"), or its best validation accuracy ended below its
    start ("whole_phase"). Accuracies 0..1; "before" is the previous phase's last epoch."""

    kind: str  # "first_epoch" or "whole_phase"
    phase_index: int
    phase_name: str
    epoch: int  # global, 0-based: the epoch that showed it
    previous_name: str
    train_acc_before: float
    train_acc_after: float
    train_loss_before: float
    train_loss_after: float
    val_acc_before: float
    val_acc_after: float  # that epoch's ("first_epoch") or the phase's best ("whole_phase")
    causes: list[str]  # the likely causes read off the phase's settings, each with what to change


@dataclass(frozen=True, kw_only=True)
class BestRestored(Event):
    """A phase with `restore_best` ended worse than the run's best epoch (by the monitored metric): the model goes on
    from that epoch's weights (checkpoints/best.pt), not its last epoch's. Accuracies 0..1."""

    phase_index: int
    phase_name: str
    epoch: int  # global, 0-based: the phase's last epoch, the one set aside
    best_epoch: int  # 1-based, as metrics.csv counts: the epoch whose weights the model takes
    metric: str  # "val_acc" or "val_loss": what "worse" was judged by
    val_acc_last: float
    val_loss_last: float
    val_acc_best: float
    val_loss_best: float
    train_acc_best: float


@dataclass(frozen=True, kw_only=True)
class CheckpointSaved(Event):
    path: str
    kind: str  # "last" (every epoch end and at a stop); best.pt is a link the run folder makes when is_best
    epoch: int  # epochs done
    batch: int  # batches done in the next epoch (0 at an epoch end)
    is_best: bool


@dataclass(frozen=True, kw_only=True)
class FreezeVerified(Event):
    """After a phase: the frozen tensors were compared bit for bit with their values at the phase start."""

    phase_index: int
    checked_tensors: int
    moved: list[str]  # names of frozen parameters/buffers that changed (should be empty)


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    run_dir: str
    status: str  # "finished" or "early_stopped"
    epochs_done: int
    best_epoch: int | None  # 1-based, as metrics.csv counts
    best_val_acc: float | None
    final_val_acc: float | None  # of the weights the run ends with
    elapsed_seconds: float
    restored_epoch: int | None = None  # the run ends with this (best) epoch's weights, not its last's (restore_best)


@dataclass(frozen=True, kw_only=True)
class EvaluationWritten(Event):
    """After a finished run: the best checkpoint evaluated on the validation split (engine/infer/evaluation.py)."""

    run_dir: str
    path: str  # evaluation.json
    count: int  # images evaluated
    accuracy: float
    top_k: int
    top_k_accuracy: float
    flagged: int  # images the out-of-distribution check found unlike the training data
    seconds: float


@dataclass(frozen=True, kw_only=True)
class RunStopped(Event):
    run_dir: str
    checkpoint: str
    epoch: int  # the epoch the run stopped in (0-based)
    batch: int  # batches done in that epoch: the run continues with batch index `batch`
    elapsed_seconds: float


@dataclass(frozen=True, kw_only=True)
class RunFailed(Event):
    run_dir: str  # "" when the run failed before its folder existed (bad input)
    error: str  # one line a user can act on
    checkpoint: str  # the last checkpoint kept, "" when none was written yet


EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in Event.__subclasses__()}


def event_from_dict(data: dict[str, Any]) -> Event:
    """The inverse of `Event.to_dict` (for events that crossed a process boundary as JSON)."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("event")]
    if cls is DataPrepared:
        data["skipped"] = [tuple(item) for item in data["skipped"]]
    return cls(**data)


EventCallback = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers in the order they subscribed.

    A *view* (console, TensorBoard, the studio) that fails is logged and skipped: it must never kill a training run.
    A *critical* subscriber (the run folder: without metrics.csv and summary.json the run is not saved) propagates
    its exception, and the run fails with that reason.
    """

    def __init__(self, callbacks: list[EventCallback] | None = None):
        self._subscribers: list[tuple[EventCallback, bool]] = [(c, False) for c in callbacks or []]

    @property
    def subscribers(self) -> list[tuple[EventCallback, bool]]:
        """(callback, critical) in delivery order."""
        return list(self._subscribers)

    def subscribe(self, callback: EventCallback, critical: bool = False, first: bool = False) -> None:
        entry = (callback, critical)
        if first:
            self._subscribers.insert(0, entry)
        else:
            self._subscribers.append(entry)

    def emit(self, event: Event) -> None:
        for callback, critical in self._subscribers:
            if critical:
                callback(event)
                continue
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a view must never kill a training run
                log.exception("event subscriber %r failed on %s", callback, type(event).__name__)


@dataclass
class RunControl:
    """Cooperative stop and pause, checked by the trainer between batches. Thread-safe.

    `pause` / `unpause` hold the run between two batches; continuing a *stopped* run from its checkpoint is
    another thing, called resuming (engine/train/trainer.py: `Trainer.from_run_dir`).
    """

    _stop: threading.Event = field(default_factory=threading.Event)
    _running: threading.Event = field(default_factory=threading.Event)
    _holding: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._running.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        self._running.clear()

    def unpause(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def holding(self) -> bool:
        """The run is held between two batches right now (paused, and the trainer has reached the pause)."""
        return self._holding.is_set()

    def wait_while_paused(self) -> float:
        """Block while paused; return the seconds spent paused (0.0 when not paused), which are not training time."""
        if self._running.is_set():
            return 0.0
        started = time.perf_counter()
        self._holding.set()
        try:
            while not self._running.wait(timeout=0.2):
                if self.stop_requested:  # the property: a subclass may add where a stop comes from
                    break
        finally:
            self._holding.clear()
        return time.perf_counter() - started
