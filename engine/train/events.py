"""The closed set of events the engine emits, and the control object a caller uses to pause or stop a run.

Payloads are plain Python values (never tensors), so a GUI worker can forward them across threads and a CLI
can print them. Subscribers are plain callables `callback(event)`; an exception in one is logged, never
allowed to kill the run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    def to_dict(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class WeightsDownloadProgress(Event):
    weights: str
    file: str
    done_bytes: int
    total_bytes: int  # 0 when the server does not say


@dataclass(frozen=True)
class DataPrepared(Event):
    classes: list[str]
    train_size: int
    val_size: int
    skipped: list[tuple[str, str]]  # (path, reason) of files that cannot be used


@dataclass(frozen=True)
class RunStarted(Event):
    run_dir: str
    recipe_name: str
    strategy: str
    arch: str
    weights: str  # the exact weights name, e.g. "ResNet50_Weights.IMAGENET1K_V2", or "none" / a file path
    device: str
    precision: str
    total_epochs: int
    start_epoch: int  # > 0 when resuming
    phase_start_epochs: list[int]
    phase_names: list[str]
    class_names: list[str]
    resumed: bool
    device_warning: str = ""  # e.g. "no GPU found: training runs on the CPU"


@dataclass(frozen=True)
class PhaseStarted(Event):
    phase_index: int
    name: str
    epochs: int
    first_epoch: int
    trainable_params: int
    total_params: int
    trainable_modules: list[str]
    groups: dict[str, float]  # group name → initial lr


@dataclass(frozen=True)
class DecodedCacheEstimated(Event):
    """The RAM cache of decoded images: its estimated size, shown before anything is cached."""

    images: int
    bytes: int
    budget: int
    enabled: bool
    message: str


@dataclass(frozen=True)
class DecodedCacheFilled(Event):
    images: int  # cached
    bytes: int
    refused: int  # images left out because the budget was reached (decoded from disk each epoch)
    seconds: float


@dataclass(frozen=True)
class FeaturesProgressed(Event):
    """The frozen backbone is computing the features of a head-only phase (once; later runs reuse them)."""

    phase_index: int
    done: int  # images (× views) processed
    total: int


@dataclass(frozen=True)
class FeaturesCached(Event):
    """A head-only phase trains on cached backbone features."""

    phase_index: int
    key: str
    images: int
    views: int
    dim: int
    seconds: float  # time to compute them; 0 when they came from the cache
    from_disk: bool


@dataclass(frozen=True)
class EpochStarted(Event):
    epoch: int  # global, 0-based
    phase_index: int
    batches: int


@dataclass(frozen=True)
class BatchFinished(Event):
    epoch: int
    batch: int  # 0-based within the epoch
    batches: int
    global_step: int
    loss: float
    accuracy: float  # running accuracy of this epoch so far, 0..1
    lrs: dict[str, float]
    images_per_second: float


@dataclass(frozen=True)
class ValidationFinished(Event):
    epoch: int
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class EpochFinished(Event):
    epoch: int
    phase_index: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lrs: dict[str, float]
    seconds: float
    images_per_second: float
    is_best: bool
    data_wait_share: float = 0.0  # share of the training time spent waiting for batches (the data path)


@dataclass(frozen=True)
class CheckpointSaved(Event):
    path: str
    kind: str  # "last" or "best"
    epoch: int


@dataclass(frozen=True)
class FreezeVerified(Event):
    """After a phase: the frozen tensors were compared bit for bit with their values at the phase start."""

    phase_index: int
    checked_tensors: int
    moved: list[str]  # names of frozen parameters/buffers that changed (should be empty)


@dataclass(frozen=True)
class RunFinished(Event):
    run_dir: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class RunStopped(Event):
    run_dir: str
    checkpoint: str
    epoch: int
    batch: int


@dataclass(frozen=True)
class RunFailed(Event):
    run_dir: str
    error: str
    checkpoint: str  # the last checkpoint kept, "" when none was written yet


EventCallback = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers in order; a failing subscriber is logged, not fatal."""

    def __init__(self, callbacks: list[EventCallback] | None = None):
        self._callbacks: list[EventCallback] = list(callbacks or [])

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    def emit(self, event: Event) -> None:
        for callback in self._callbacks:
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a view must never kill a training run
                log.exception("event subscriber %r failed on %s", callback, type(event).__name__)


@dataclass
class RunControl:
    """Cooperative stop and pause, checked by the trainer between batches. Thread-safe."""

    _stop: threading.Event = field(default_factory=threading.Event)
    _running: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._running.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self) -> None:
        while not self._running.wait(timeout=0.2):
            if self._stop.is_set():
                return
