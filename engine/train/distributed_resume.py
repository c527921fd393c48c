"""Resuming a run over several processes, and the event that says how a distributed run is laid out.

With the **same number of processes** a resume is exact: every rank continues its share of the same global batches
at the same step, with its own RNG stream (dropout) restored, and an equal share of the epoch's running sums.

With **another number** (W' processes instead of W), the global batch (batch_size × W') and the steps of an epoch
change, so a position inside an epoch has no equivalent: the run continues at an epoch boundary.
- A checkpoint taken at the end of an epoch continues with the next epoch: nothing is lost or repeated.
- A checkpoint taken inside epoch e (a stop, a failure) restarts epoch e from its first batch: the weights keep
  what the interrupted part of the epoch taught them, and that part's images are seen again in the new order of
  batches; its batch rows and running sums are dropped (metrics.csv records epoch e once, as retrained).
- A per-batch schedule (cosine, one-cycle) is rebuilt for the new steps per epoch and placed at the epoch's first
  step; epoch-wise schedules continue as they were. With `lr_scaling`, every rate is rescaled to W'.
The DistributedStarted event says which of these happened, in words.
"""

from __future__ import annotations

from typing import Any

from engine.recipe import lr_factor
from engine.train import events as ev
from engine.train.distributed import DistContext
from engine.train.distributed_model import adapt_resumed_phase
from engine.train.state import RunningSums, TrainingState


def saved_world_size(checkpoint: dict[str, Any] | None) -> int:
    return int((checkpoint or {}).get("world_size", 1))


def adapt_state(state: TrainingState, checkpoint: dict[str, Any], dist: DistContext) -> str:
    """Place a resumed state for this run's processes; returns what changed, in words ("" when exact)."""
    saved = saved_world_size(checkpoint)
    if saved == dist.world_size:
        if dist.active:
            state.rng = dist.own_rng_states(state.rng)
            dist.share_running(state.running)
        return ""
    what = f"the checkpoint was written by {_processes(saved)}, this run has {_processes(dist.world_size)}"
    if not state.mid_epoch:
        return f"{what}: it continues at epoch {state.epoch + 1} with the new global batch"
    done = state.batch
    state.global_step -= done
    state.batch = 0
    state.running = RunningSums()
    state.rng = None
    return (f"{what}: epoch {state.epoch + 1} was interrupted after {done} of its steps and restarts from its first "
            f"batch (an exact continuation needs {_processes(saved)})")


def adapt_phase(phase, checkpoint: dict[str, Any], epoch_in_phase: int) -> None:
    adapt_resumed_phase(phase, checkpoint, phase.setup.dist, epoch_in_phase)


def started_event(setup, note: str = "") -> ev.DistributedStarted:
    dist, r = setup.dist, setup.recipe
    return ev.DistributedStarted(world_size=dist.world_size, backend=dist.backend, per_process_batch=r.batch_size,
                                 global_batch=setup.global_batch, steps_per_epoch=setup.steps_per_epoch,
                                 lr_scaling=r.distributed.lr_scaling,
                                 lr_factor=lr_factor(r.distributed.lr_scaling, dist.world_size),
                                 sync_batchnorm=r.distributed.sync_batchnorm, note=note)


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"
