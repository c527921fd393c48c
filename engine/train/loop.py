"""One epoch of training and one pass of validation, as functions (as torchvision's reference scripts have them).

`train_one_epoch` trains from the state's position to the epoch's end, or until a stop is requested between two
batches, keeping the position and the running sums in the state so that a checkpoint can continue exactly there.
`fit_head_epoch` is the epoch of a phase whose head is fitted to convergence on cached features
(engine/train/head_fit.py): one fit instead of batches. A stop during the fit discards it — the head is written
only when the fit is done — so the checkpoint is the phase's start, and a resumed run fits again from there, to
the same head (the fit is deterministic for the seed).
Time spent paused is excluded from the epoch's seconds and from images/s.
"""

from __future__ import annotations

import math
import time
from collections import deque

import torch

from engine.errors import ThawError
from engine.model.groups import current_lrs
from engine.train import events as ev
from engine.train.eval_step import logits_of, to_device
from engine.train.head_fit import Progress, fit_head, write_parameters
from engine.train.phase import ActivePhase
from engine.train.sampling import epoch_order, epoch_seed, seed_everything
from engine.train.state import RunClock, TrainingState

RATE_WINDOW = 20  # batches in the running images/s


class TrainingError(ThawError):
    """The run itself failed (a non-finite loss, out of memory …); the last checkpoint is kept."""


def train_one_epoch(phase: ActivePhase, state: TrainingState, control: ev.RunControl, bus: ev.EventBus,
                    clock: RunClock) -> bool:
    """Train `state.epoch` from batch `state.batch`. True when the epoch ended, False when a stop was requested
    (the state then holds the position of the next batch)."""
    setup, r = phase.setup, phase.setup.recipe
    order = setup.epoch_order(state.epoch)  # this process's share of the epoch (all of it in a one-process run)
    n_batches = math.ceil(len(order) / r.batch_size)
    setup.data.train.set_epoch(state.epoch)
    if not state.mid_epoch:
        seed_everything(epoch_seed(r.seed, state.epoch) + setup.dist.rank)  # each process its own dropout masks
    bus.emit(ev.EpochStarted(epoch=state.epoch, phase_index=phase.index, batches=n_batches))
    phase.set_train_mode()
    forward, optimizer, scaler, sums = phase.forward, phase.optimizer, phase.scaler, state.running
    # The first batch of an epoch pays for start-up (loader workers, first kernels, a resume's warm-up): once there
    # are others, it is left out of the running rate, which would otherwise read far too low for a while.
    first: tuple[float, int] | None = None
    recent: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW)
    tick = time.perf_counter()
    for batch, (images, labels) in enumerate(phase.train_batches(state.epoch, order[state.batch * r.batch_size:]),
                                             start=state.batch):
        waited = time.perf_counter() - tick  # the step waited this long for its batch
        paused = control.wait_while_paused()
        clock.add_pause(paused)
        if control.stop_requested:
            sums.seconds += time.perf_counter() - tick - paused
            sums.data_wait += waited
            return False
        images, labels = to_device(images, labels, setup.device)
        with setup.device.autocast():
            logits = logits_of(forward(images))
            loss = setup.criterion(logits.float(), labels)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrainingError(f"the loss became {loss_value} at epoch {state.epoch + 1}, batch {batch + 1} "
                                f"(phase '{phase.config.name}'); lower the learning rate. The last good checkpoint "
                                f"is kept.")
        lrs = phase.last_lrs = current_lrs(optimizer)  # the rates this batch trains with (the schedule moves them
        # after the step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if not scaler.is_enabled():  # with fp16, the scaler itself skips steps whose gradients overflowed
            _check_gradients(phase, state.epoch, batch)
        scaler.step(optimizer)
        scaler.update()
        phase.schedule.step_batch()
        state.global_step += 1
        state.batch = batch + 1
        n = labels.numel()
        sums.add(loss_value, int((logits.argmax(1) == labels).sum()), n)
        now = time.perf_counter()
        step_seconds = now - tick - paused
        sums.seconds += step_seconds
        sums.data_wait += waited
        tick = now
        if first is None:
            first = (step_seconds, n)
        else:
            recent.append((step_seconds, n))
        window = recent or [first]
        rate = sum(k for _, k in window) / max(1e-9, sum(t for t, _ in window))
        bus.emit(ev.BatchFinished(epoch=state.epoch, batch=batch, batches=n_batches, global_step=state.global_step,
                                  train_loss=loss_value, train_acc=sums.accuracy, lrs=lrs, images_per_s=rate))
    return True


def _check_gradients(phase: ActivePhase, epoch: int, batch: int) -> None:
    """A non-finite gradient stops the run before the step would write it into the weights."""
    grads = [p.grad for group in phase.optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads or math.isfinite(float(torch.stack(torch._foreach_norm(grads)).sum())):
        return
    bad = next(name for name, p in phase.setup.model.named_parameters()
               if p.grad is not None and not bool(torch.isfinite(p.grad).all()))
    raise TrainingError(f"the gradient of {bad} became non-finite at epoch {epoch + 1}, batch {batch + 1} (phase "
                        f"'{phase.config.name}'); lower the learning rate. The last good checkpoint is kept.")


def fit_head_epoch(phase: ActivePhase, state: TrainingState, control: ev.RunControl, bus: ev.EventBus,
                   clock: RunClock) -> bool:
    """Fit the phase's head to convergence on its cached features: epoch `state.epoch` of the run. True when the
    fit ended (the head holds it, `phase.fitted` says how it went), False when a stop was requested."""
    setup, r = phase.setup, phase.setup.recipe
    if control.stop_requested:  # e.g. during the feature pass, which then left no features
        return False
    features = phase.features
    if features is None:
        raise TrainingError(f"phase '{phase.config.name}' fits its head on cached features, but none were computed")
    seed_everything(epoch_seed(r.seed, state.epoch))
    train, labels = features.train, features.train_labels
    if r.data.max_train_batches:  # the recipe's cap on training images holds for a fit too
        order = epoch_order(train.shape[1], setup.global_batch, r.seed, state.epoch, r.data.max_train_batches)
        keep = torch.tensor(sorted(order), device=train.device)
        train, labels = train[:, keep], labels[keep]
    paused = [0.0]

    def should_stop() -> bool:
        waited = control.wait_while_paused()
        clock.add_pause(waited)
        paused[0] += waited
        return control.stop_requested

    def progress(p: Progress) -> None:
        bus.emit(ev.HeadFitProgressed(phase_index=phase.index, epoch=state.epoch, stage=p.stage, done=p.done,
                                      total=p.total, fold=p.fold, l2=p.l2, iteration=p.iteration,
                                      objective=p.objective))

    head = phase.forward
    generator = torch.Generator().manual_seed(epoch_seed(r.seed, state.epoch))
    fit = fit_head(head, train, labels, setup.criterion, r.early_stopping.metric, generator,
                   should_stop=should_stop, progress=progress)
    if fit is None:
        return False
    # Over several processes every rank fits the same head on the whole gathered feature set; rank 0's is the one
    # kept (a GPU's reductions need not be bit-identical to another's), and its sums count once in the epoch's.
    dist = setup.dist
    parameters = dist.broadcast_object(fit.parameters) if dist.active else fit.parameters
    write_parameters(head, parameters)
    seconds = max(0.0, fit.seconds - paused[0])
    if dist.is_main:
        state.running.add(fit.train_loss, round(fit.train_acc * fit.rows), fit.rows)
    state.running.seconds += seconds
    calibrated = fit.calibrated_cv_loss if math.isfinite(fit.calibrated_cv_loss) else None
    phase.fitted = ev.HeadFitted(phase_index=phase.index, epoch=state.epoch, l2=fit.l2, grid=list(fit.grid),
                                 cv_loss=list(fit.cv_loss), cv_acc=list(fit.cv_acc), folds=fit.folds,
                                 metric=r.early_stopping.metric, iterations=fit.iterations, converged=fit.converged,
                                 cv_iterations=fit.cv_iterations, curve_iterations=[i for i, _ in fit.curve],
                                 curve_objective=[v for _, v in fit.curve], train_loss=fit.train_loss,
                                 train_acc=fit.train_acc, rows=fit.rows, seconds=seconds, repeats=max(1, fit.repeats),
                                 temperature=fit.temperature, calibrated_cv_loss=calibrated)
    bus.emit(phase.fitted)
    return True
