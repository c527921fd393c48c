"""The Trainer: runs a Recipe's phases in order and tells what happens as events.

    Trainer(recipe, callbacks).fit()       → a new run folder, phases in order, a checkpoint every epoch
    Trainer.from_run_dir(run_dir).fit()    → resumes from checkpoints/last.pt, mid-epoch or across a phase boundary

The parts, one job each: engine/train/setup.py builds what a run needs once; engine/train/phase.py applies a
phase (freeze plan, groups, optimizer, schedule, cached features); engine/train/loop.py trains an epoch;
engine/train/eval_step.py validates; engine/train/sampling.py seeds and orders the samples;
engine/train/stopping.py decides the best epoch and early stopping; engine/train/state.py is where the run is (what
a checkpoint holds); engine/train/run_folder.py writes the run's files from the events. This module only puts them
in order and writes the checkpoints.

Exactness of a resume: the sample order of an epoch comes from a generator seeded by (seed, epoch), augmentation
is seeded per sample (engine/data/datasets.py), global RNGs are reseeded at every epoch start and saved at a stop,
and a checkpoint stores the optimizer/scheduler of the phase it was taken in, so the resumed run rebuilds the same
phase, loads the same state and crosses the next phase boundary exactly as the uninterrupted run did.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.data.datasets import check_same_classes
from engine.errors import BadInputError, ThawError
from engine.model.groups import current_lrs
from engine.model.pruned_structure import is_pruned
from engine.recipe import Recipe
from engine.train import distributed_resume
from engine.train import events as ev
from engine.train.checkpoints import (
    check_checkpoint_fits,
    load_checkpoint,
    remove_stale_temp_files,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    validate_checkpoint,
)
from engine.train.distributed import context_for
from engine.train.distributed_data import validate_sharded
from engine.train.eval_step import evaluate
from engine.train.loop import TrainingError, fit_head_epoch, train_one_epoch
from engine.train.phase import ActivePhase, head_fit_plan, phase_epochs, start_epochs
from engine.train.run_folder import RunFolder
from engine.train.run_lock import RunLock
from engine.train.runs import (
    METRICS_FILE,
    check_run_identity,
    checkpoint_path,
    new_run_dir,
    prepare_runs_root,
    previous_run_id,
    runs_root_for,
)
from engine.train.setbacks import EpochFigures, PhaseWatch
from engine.train.setup import RunSetup, assemble
from engine.train.state import RunClock, TrainingState
from engine.train.stopping import EarlyStopping
from engine.train.tensorboard_log import TensorBoardLog, require_tensorboard

__all__ = ["RunResult", "Trainer", "TrainingError", "fit", "resume"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    status: str  # finished, early_stopped, stopped, failed
    run_dir: str
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class Trainer:
    def __init__(self, recipe: Recipe, callbacks: list[ev.EventCallback] | None = None,
                 control: ev.RunControl | None = None, runs_root: str | Path | None = None):
        self.recipe = recipe.copy().validate()
        self.dist = context_for(self.recipe)  # one process, or this process's rank under torchrun
        self.bus = self.dist.event_bus(callbacks)  # subscribers hear rank 0 only
        self.control = self.dist.synced_control(control or ev.RunControl())  # pause/stop agreed by every rank
        self.runs_root = Path(runs_root) if runs_root else runs_root_for(self.recipe.output_dir)
        self.run_dir: Path | None = None
        self.checkpoint: dict[str, Any] | None = None  # what a resumed run continues from
        self._last_checkpoint = ""  # the newest checkpoint written or resumed from: what a failure keeps
        self.setup: RunSetup | None = None  # built by fit()

    @property
    def model(self) -> torch.nn.Module | None:
        """The model being trained (on its device), once fit() has built it; subscribers may inspect it."""
        return self.setup.model if self.setup is not None else None

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, callbacks: list[ev.EventCallback] | None = None,
                     control: ev.RunControl | None = None, data_root: str = "") -> Trainer:
        """Resume a run from its last checkpoint; `data_root`: the run's data folder if it moved (the classes must
        be the same). A checkpoint that is not one, or does not fit its own recipe, is refused before anything."""
        run_dir = Path(run_dir).expanduser()
        if not run_dir.is_dir():
            raise BadInputError(f"run folder {run_dir} does not exist" if not run_dir.exists()
                                else f"{run_dir} is not a run folder (it is a file)")
        last = checkpoint_path(run_dir, "last")
        if not last.is_file():
            raise BadInputError(f"{run_dir} has no checkpoint to resume from ({last} is missing)")
        checkpoint = load_checkpoint(last)
        if is_pruned(checkpoint):
            # Its channels are not the recipe's architecture and it kept no optimizer state: there is nothing to
            # continue. A further fine-tune is `prune` again, or a recipe trained from its weights.
            raise BadInputError(f"{run_dir} holds a pruned model (python main.py prune): it cannot be resumed; "
                                f"prune the original run again with more --epochs instead")
        validate_checkpoint(checkpoint, last, "resume")
        check_run_identity(checkpoint, last)  # another run's last.pt copied here is refused, naming both runs
        done = checkpoint["epoch"]
        if done > 0 and not (run_dir / METRICS_FILE).is_file():
            # Resuming would restart the run's history at epoch done+1 as if the first epochs never happened.
            raise BadInputError(f"{run_dir / METRICS_FILE} is missing: the record of the {done} epoch(s) already "
                                f"trained is gone and resuming would silently restart it; put the file back, or "
                                f"train the recipe again as a new run")
        check_checkpoint_fits(checkpoint, last)
        saved = dict(checkpoint["recipe"])
        # A run saved before phases had `head_fit` trained every phase in epochs: it continues as it began.
        saved["phases"] = [{"head_fit": "epochs", **phase} for phase in saved["phases"]]
        recipe = Recipe.from_dict(saved)
        if data_root:
            recipe.data.root = str(Path(data_root).expanduser())
        trainer = cls(recipe, callbacks, control, runs_root=run_dir.parent)
        trainer.run_dir = run_dir
        trainer.checkpoint = checkpoint
        return trainer

    def fit(self) -> RunResult:
        """Train (or resume) the run. Bad input raises before a run folder exists (or, resuming, before the folder
        is touched); a failure during the run is a RunResult with status "failed", the last checkpoint kept."""
        resumed = self.checkpoint is not None
        if self.recipe.tensorboard:
            require_tensorboard()
        # One process per run folder (a kill -9 frees it); new runs take it as soon as their folder exists.
        # Under torchrun rank 0 does what touches the folder (dist.on_main / dist.shared); its errors reach all.
        main = self.dist.on_main
        lock = main(RunLock(self.run_dir).acquire) if resumed else None
        try:
            if resumed:
                removed = main(lambda: remove_stale_temp_files(self.run_dir))  # an interrupted write's leftovers
                if removed:
                    self.bus.emit(ev.TempFilesRemoved(run_dir=str(self.run_dir), files=[str(p) for p in removed]))
            else:
                main(lambda: prepare_runs_root(self.runs_root))  # refused before the data scan and the model build
            self.setup = setup = assemble(self.recipe, self.bus, self.checkpoint, dist=self.dist)
            # The run's identity: kept when resuming (a checkpoint of an older Thaw has none: the folder's, or new).
            # Decided on rank 0 and shared, so every rank takes part in the one collective call whatever it sees.
            setup.run_id = self.dist.shared(lambda: (str(self.checkpoint.get("run_id") or "")
                                                     or previous_run_id(self.run_dir) if resumed else "")
                                            or uuid.uuid4().hex)
            if resumed:
                check_same_classes(list(self.checkpoint["class_names"]), list(setup.data.classes),
                                   setup.recipe.data.root)
            else:
                self.run_dir = self.dist.shared(lambda: new_run_dir(self.runs_root, self.recipe.name))
                lock = main(RunLock(self.run_dir).acquire)
            return self._fit(setup, resumed)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, setup: RunSetup, resumed: bool) -> RunResult:
        setup.recipe = self.recipe = _with_exact_weights(self.recipe, setup.built.weights_name)
        folder = RunFolder(self.run_dir, [(p.path, p.reason) for p in setup.data.skipped])
        self.bus.subscribe(folder, critical=True, first=True)
        if self.recipe.tensorboard:
            self.bus.subscribe(TensorBoardLog())
        state = TrainingState.from_checkpoint(self.checkpoint) if resumed else TrainingState()
        self._resume_note = distributed_resume.adapt_state(state, self.checkpoint, self.dist) if resumed else ""
        if resumed:
            self._last_checkpoint = str(checkpoint_path(self.run_dir, "last"))
        try:
            status = self._train(setup, state)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, and the last checkpoint kept
            return self._fail(exc, folder)
        return RunResult(status, str(self.run_dir), folder.summary)

    # --- the run ----------------------------------------------------------------------------------------------
    def _train(self, setup: RunSetup, state: TrainingState) -> str:
        r = setup.recipe
        clock = RunClock(state.elapsed)
        stopping = EarlyStopping(r.early_stopping)
        stopping.load_state_dict(state.stopping)
        watch = PhaseWatch(len(setup.data.val))  # a phase that sets the model back is said
        watch.load_state_dict(state.watch)
        epochs = phase_epochs(setup)  # a head fitted to convergence is one epoch
        starts = start_epochs(epochs)
        self.bus.emit(ev.RunStarted(run_dir=str(self.run_dir), recipe=r.to_dict(), name=r.name, strategy=r.strategy,
                                    arch=r.model.arch, weights=setup.built.weights_name, device=setup.device.describe(),
                                    device_type=setup.device.device.type, precision=setup.device.precision,
                                    total_epochs=sum(epochs), phase_start_epochs=starts,
                                    phase_names=[p.name for p in r.phases], lr_groups=trained_groups(setup),
                                    class_names=list(setup.data.classes), train_size=len(setup.data.train),
                                    val_size=len(setup.data.val), preprocessing=setup.built.preprocessing.to_dict(),
                                    resumed=self.checkpoint is not None, start_epoch=state.epoch,
                                    start_batch=state.batch, start_global_step=state.global_step,
                                    elapsed_seconds=state.elapsed, device_warning=setup.device.fallback_warning,
                                    run_id=setup.run_id))
        if self.dist.active or self._resume_note:
            self.bus.emit(distributed_resume.started_event(setup, self._resume_note))
        resuming, previous = self.checkpoint, None
        for index in range(state.phase, len(r.phases)):
            state.phase = index
            phase = ActivePhase.begin(setup, index, stopping.mode, previous, resuming)
            if resuming is not None:  # taken by another number of processes: rates and schedule adapted
                distributed_resume.adapt_phase(phase, resuming, state.epoch - starts[index])
            self.bus.emit(phase.started_event())
            cached = phase.cache_features(self.bus, lambda: self.control.stop_requested)
            if cached is not None:
                self.bus.emit(cached)
            run_epoch = fit_head_epoch if phase.fits_head else train_one_epoch
            while state.epoch < starts[index] + epochs[index]:
                if state.mid_epoch and state.rng is not None:
                    restore_rng_states(state.rng)  # continue the interrupted epoch's random stream exactly
                if not run_epoch(phase, state, self.control, self.bus, clock):
                    return self._stop(phase, state, clock)
                self._end_epoch(phase, state, stopping, watch, clock)
                if stopping.should_stop:
                    self._tell_freeze(phase)
                    return self._complete("early_stopped", state, stopping, clock)
            self._tell_freeze(phase)
            resuming, previous = None, phase.optimizer
        return self._complete("finished", state, stopping, clock)

    def _end_epoch(self, phase: ActivePhase, state: TrainingState, stopping: EarlyStopping, watch: PhaseWatch,
                   clock: RunClock) -> None:
        setup, fitted = phase.setup, phase.fitted
        # The rates the epoch's last batch trained with (before an epoch-wise step); a fitted head used none.
        lrs = {} if fitted else (phase.last_lrs or current_lrs(phase.optimizer))
        self.dist.reduce_running(state.running)  # the epoch's sums over every process
        if self.dist.active:
            val_loss, val_acc = validate_sharded(phase, self.dist)
        else:
            val_loss, val_acc = evaluate(phase.forward, phase.val_batches(), setup.device, setup.criterion,
                                         setup.recipe.data.max_val_batches)
        for name, value in (("training loss", state.running.loss), ("validation loss", val_loss)):
            if not math.isfinite(value):  # a diverged epoch is neither recorded nor a best; the last checkpoint stays
                raise TrainingError(f"the {name} became {value} in epoch {state.epoch + 1} (phase "
                                    f"'{phase.config.name}'); lower the learning rate. The last good checkpoint is "
                                    f"kept.")
        self.bus.emit(ev.ValidationFinished(epoch=state.epoch, val_loss=val_loss, val_acc=val_acc))
        if not fitted:
            phase.schedule.step_epoch(stopping.monitored(val_loss, val_acc))
        is_best = stopping.update(state.epoch, val_loss, val_acc)
        sums = state.running
        self.bus.emit(ev.EpochFinished(epoch=state.epoch, phase_index=phase.index, phase_name=phase.config.name,
                                       train_loss=sums.loss, train_acc=sums.accuracy, val_loss=val_loss,
                                       val_acc=val_acc, lrs=lrs, seconds=sums.seconds, images_per_s=sums.images_per_s,
                                       data_wait_share=sums.data_wait_share, train_images=sums.seen, is_best=is_best,
                                       elapsed_seconds=clock.elapsed(), fit="lbfgs" if fitted else "batches",
                                       l2=fitted.l2 if fitted else None))
        figures = EpochFigures(phase.index, state.epoch, sums.loss, sums.accuracy, val_loss, val_acc)
        last_of_phase = state.epoch + 1 >= phase.end_epoch or stopping.should_stop
        for setback in watch.epoch_finished(figures, phase.setback_context, last_of_phase):
            self.bus.emit(setback)
        if last_of_phase and phase.config.restore_best and stopping.last_is_worse():
            self._restore_best(phase, state, stopping, watch, figures)
        state.next_epoch()
        state.stopping = stopping.state_dict()
        state.watch = watch.state_dict()
        self._save(phase, state, clock, is_best)

    def _tell_freeze(self, phase: ActivePhase) -> None:
        """The phase's freeze verification, said once (a restore says it before it loads other weights)."""
        if not phase.freeze_told:
            phase.freeze_told = True
            self.bus.emit(phase.verify_freeze())

    def _restore_best(self, phase: ActivePhase, state: TrainingState, stopping: EarlyStopping, watch: PhaseWatch,
                      last: EpochFigures) -> None:
        """`restore_best`: the phase ended worse than the run's best epoch, so the model goes on from best.pt's
        weights. Done before the epoch's checkpoint is written, so last.pt holds the weights the run goes on with
        and a resume at this boundary continues exactly. Every process reads best.pt (rank 0 wrote it at an earlier
        epoch's end, before that epoch's collective calls); the optimizer's moments belong to the weights set aside
        and are dropped, so the next phase carries none of them."""
        self._tell_freeze(phase)  # the freeze held over what the phase trained, before other weights come in
        path = checkpoint_path(self.run_dir, "best")
        try:
            best = load_checkpoint(path)
            figures = EpochFigures(**best["watch"]["previous"])
            phase.setup.model.load_state_dict(best["model"])
        except (BadInputError, KeyError, TypeError, RuntimeError) as exc:
            raise TrainingError(f"phase '{phase.config.name}' ended worse than epoch {stopping.best_epoch} and has "
                                f"restore_best, but {path} cannot be restored ({exc}); the last good checkpoint is "
                                f"kept") from exc
        phase.optimizer.state.clear()
        stopping.restored(figures.val_acc)
        watch.restored(figures)
        self.bus.emit(ev.BestRestored(phase_index=phase.index, phase_name=phase.config.name, epoch=state.epoch,
                                      best_epoch=figures.epoch + 1, metric=stopping.config.metric,
                                      val_acc_last=last.val_acc, val_loss_last=last.val_loss,
                                      val_acc_best=figures.val_acc, val_loss_best=figures.val_loss,
                                      train_acc_best=figures.train_acc))

    # --- checkpoints and endings ------------------------------------------------------------------------------
    def _save(self, phase: ActivePhase, state: TrainingState, clock: RunClock, is_best: bool) -> None:
        state.elapsed = clock.elapsed()
        if self.dist.is_main:  # the one writer of a run over several processes
            payload = {**state.to_checkpoint(), "model": phase.setup.model.state_dict(), **phase.state_dict(),
                       **phase.setup.checkpoint_identity()}
            path = checkpoint_path(self.run_dir, "last")
            self._last_checkpoint = str(save_checkpoint(path, payload))
        self.bus.emit(ev.CheckpointSaved(path=self._last_checkpoint, kind="last", epoch=state.epoch, batch=state.batch,
                                         is_best=is_best))

    def _stop(self, phase: ActivePhase, state: TrainingState, clock: RunClock) -> str:
        state.rng = self.dist.rng_states_of_all(rng_states())
        self.dist.reduce_running(state.running)  # the checkpoint holds the sums over every process
        self._save(phase, state, clock, is_best=False)
        self.bus.emit(phase.verify_freeze())
        self.bus.emit(ev.RunStopped(run_dir=str(self.run_dir), checkpoint=self._last_checkpoint, epoch=state.epoch,
                                    batch=state.batch, elapsed_seconds=clock.elapsed()))
        return "stopped"

    def _complete(self, status: str, state: TrainingState, stopping: EarlyStopping, clock: RunClock) -> str:
        self.bus.emit(ev.RunFinished(run_dir=str(self.run_dir), status=status, epochs_done=state.epoch,
                                     best_epoch=stopping.best_epoch, best_val_acc=stopping.best_val_acc,
                                     final_val_acc=stopping.last_val_acc, elapsed_seconds=clock.elapsed(),
                                     restored_epoch=stopping.restored_epoch))
        return status

    def _fail(self, exc: Exception, folder: RunFolder) -> RunResult:
        message = self.dist.failure_message(exc) or (str(exc) if isinstance(exc, ThawError)
                                                     else f"{type(exc).__name__}: {exc}")
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            message = f"out of GPU memory ({exc}); lower the batch size or use a smaller model"
        log.error("run failed: %s", message)
        log.info("where it failed:", exc_info=exc)  # the traceback, for --verbose
        try:
            self.bus.emit(ev.RunFailed(run_dir=str(self.run_dir), error=message, checkpoint=self._last_checkpoint))
        except Exception:  # noqa: BLE001 - the run folder may be what failed (a full disk): the reason still stands
            log.info("the failure could not be recorded in the run folder", exc_info=True)
        return RunResult("failed", str(self.run_dir), folder.summary, message)


def trained_groups(setup: RunSetup) -> list[str]:
    """The groups that train with a rate, in order (metrics.csv's lr columns): a fitted head's phase has none."""
    return list(dict.fromkeys(g.name for i, specs in enumerate(setup.phase_groups) if not head_fit_plan(setup, i)[0]
                              for g in specs))


def _with_exact_weights(recipe: Recipe, weights_name: str) -> Recipe:
    """The recipe as it ran: "DEFAULT" weights replaced by their exact name (recipe.json and checkpoints say it)."""
    resolved = recipe.to_dict()
    if "_Weights." in weights_name:
        resolved["model"]["weights"] = weights_name
    return Recipe.from_dict(resolved)


def fit(recipe: Recipe, callbacks: list[ev.EventCallback] | None = None, control: ev.RunControl | None = None,
        runs_root: str | Path | None = None) -> RunResult:
    return Trainer(recipe, callbacks, control, runs_root).fit()


def resume(run_dir: str | Path, callbacks: list[ev.EventCallback] | None = None,
           control: ev.RunControl | None = None) -> RunResult:
    return Trainer.from_run_dir(run_dir, callbacks, control).fit()
