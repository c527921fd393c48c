"""What a pre-training run says, as the training run's events do (engine/train/events.py): frozen, keyword-only
dataclasses of plain values, delivered by the same EventBus to the run folder, the console and the studio.
Epochs are 0-based; `batch` counts batches done where a position is meant (PretrainStopped)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.train.events import Event


@dataclass(frozen=True, kw_only=True)
class PretrainStarted(Event):
    run_dir: str
    method: str
    arch: str
    weights: str  # where the backbone started: torchvision's weights name, "file:<path>" or "none"
    images: int  # unlabeled images used
    skipped: list[tuple[str, str]]  # (path, reason) of files under the folder that cannot be used
    epochs: int
    batches: int  # per epoch
    batch_size: int
    lr: float
    device: str
    knn: str  # what the k-NN monitor measures on, or why it is off
    start_epoch: int  # > 0, or start_batch > 0, when resumed
    start_batch: int


@dataclass(frozen=True, kw_only=True)
class PretrainBatchFinished(Event):
    epoch: int
    batch: int  # 0-based index of this batch in the epoch
    batches: int
    global_step: int  # optimizer steps so far, this one included
    loss: float
    lr: float
    images_per_s: float


@dataclass(frozen=True, kw_only=True)
class KnnMeasured(Event):
    epochs_done: int  # 0: the backbone as it started
    knn_acc: float  # 0..1


@dataclass(frozen=True, kw_only=True)
class PretrainEpochFinished(Event):
    epoch: int
    epochs: int
    loss: float  # mean of the epoch's batches
    knn_acc: float | None  # None without labelled validation images
    seconds: float  # training time of the epoch (pauses and the k-NN pass excluded)
    elapsed_seconds: float


@dataclass(frozen=True, kw_only=True)
class PretrainCheckpointSaved(Event):
    path: str
    epoch: int  # epochs done
    batch: int  # batches done in the next epoch (0 at an epoch end)


@dataclass(frozen=True, kw_only=True)
class PretrainFinished(Event):
    run_dir: str
    weights_file: str  # the backbone's state dict, for model.weights_file
    epochs: int
    knn_start: float | None
    knn_end: float | None
    batchnorm_layers: int  # --epochs 0: layers whose statistics were re-estimated on the images (0 otherwise)
    elapsed_seconds: float


@dataclass(frozen=True, kw_only=True)
class PretrainStopped(Event):
    run_dir: str
    checkpoint: str
    epoch: int
    batch: int
    elapsed_seconds: float


@dataclass(frozen=True, kw_only=True)
class PretrainFailed(Event):
    run_dir: str
    error: str


SHOWN_SKIPPED = 5


def describe(event: Event) -> str | None:
    """The line a person reads for a pre-training event (the console and the studio's log); None for batches."""
    if isinstance(event, PretrainStarted):
        where = (f"resuming at epoch {event.start_epoch + 1}, batch {event.start_batch + 1}"
                 if event.start_epoch or event.start_batch else "starting")
        skipped = f"; {len(event.skipped)} file(s) skipped" if event.skipped else ""
        files = [f"  skipped {path}: {reason}" for path, reason in event.skipped[:SHOWN_SKIPPED]]
        if len(event.skipped) > SHOWN_SKIPPED:
            files.append(f"  … and {len(event.skipped) - SHOWN_SKIPPED} more (summary.json lists them all)")
        return "\n".join([
            f"Pre-training {event.arch} ({event.weights}) with {event.method} on {event.images} unlabeled images"
            f"{skipped}: {event.epochs} epochs × {event.batches} batches of {event.batch_size}, lr {event.lr:g}, "
            f"on {event.device}; {where}. k-NN monitor: {event.knn}. Run folder: {event.run_dir}", *files])
    if isinstance(event, KnnMeasured):
        return f"k-NN accuracy after {event.epochs_done} epoch(s): {event.knn_acc:.1%}"
    if isinstance(event, PretrainEpochFinished):
        knn = f", k-NN accuracy {event.knn_acc:.1%}" if event.knn_acc is not None else ""
        return f"epoch {event.epoch + 1}/{event.epochs}: loss {event.loss:.4f}{knn} ({event.seconds:.1f} s)"
    if isinstance(event, PretrainFinished):
        gain = ""
        if event.knn_start is not None and event.knn_end is not None:
            gain = f"; k-NN accuracy {event.knn_start:.1%} → {event.knn_end:.1%}"
        bn = (f"; BatchNorm statistics of {event.batchnorm_layers} layers re-estimated on the images"
              if event.batchnorm_layers else "")
        return (f"Pre-training finished in {event.elapsed_seconds:.0f} s{gain}{bn}. Weights: {event.weights_file} "
                f"(set model.weights_file to it, or train --weights-file {event.weights_file})")
    if isinstance(event, PretrainStopped):
        return (f"Stopped at epoch {event.epoch + 1}, batch {event.batch}; checkpoint {event.checkpoint}. "
                f"Continue with: python main.py resume {event.run_dir}")
    if isinstance(event, PretrainFailed):
        return f"Pre-training failed: {event.error}"
    return None
