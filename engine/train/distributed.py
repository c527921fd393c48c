"""A run over several processes: PyTorch's torch.distributed and DistributedDataParallel, started by torchrun.

The facts of a distributed run live here; the trainer, the loop and the phase call into them at a few hooks, and a
one-process run (no torchrun, or WORLD_SIZE 1) goes through the same hooks unchanged (`SINGLE`).

- **The process group** comes from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): NCCL
  when the run trains on CUDA (process LOCAL_RANK on GPU LOCAL_RANK), gloo on the CPU. Its timeout stays at
  torch's 30 minutes: a pause does not hold any collective for long (every process meets rank 0 every
  `PAUSE_HEARTBEAT_S` while paused), so the timeout is left to find a process that really hangs.
- **Rank 0 is the only writer**: the event bus delivers events to subscribers (the run folder, the console,
  TensorBoard, the studio's stream, the evaluation) on rank 0 only; `Trainer._save` writes checkpoints on rank 0
  only; rank 0 creates the run folder and every rank learns its path (`shared`). Another rank's own failure is
  printed on its stderr ("[rank 1] …").
- **One decision for all**: pause and stop are agreed at every batch (`SyncedControl`: an all-reduce MAX of every
  rank's flags, so a stop asked of any process — the studio or a launcher talks to rank 0, Ctrl-C under torchrun
  reaches them all — stops every rank before the same batch); errors found on rank 0 alone reach every rank
  (`shared`, `on_main`).
- **Figures over all processes**: per-batch loss and accuracy are averaged over the ranks (equal shares of every
  global batch, engine/train/sampling.py), an epoch's running sums are summed, validation is sharded and
  reduced.

Data order: engine/train/sampling.py; sharded validation and cached features: engine/train/distributed_data.py.
DDP wrapping, SyncBatchNorm and learning-rate scaling: engine/train/distributed_model.py. Starting torchrun from
`train --processes N` and from the studio: engine/train/launch.py.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

from engine.errors import BadInputError, ThawError
from engine.recipe import Recipe, check_distributed_device
from engine.train import events as ev

log = logging.getLogger(__name__)

T = TypeVar("T")

PAUSE_HEARTBEAT_S = 0.5  # while paused, every rank meets rank 0 this often (no collective waits for long)
PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)  # torch's default: a rank that hangs this long fails the run
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class ReportedOnMain(ThawError):
    """An error rank 0 found and reports; the other ranks stop with it and say nothing (one message, not N)."""


class BadInputReportedOnMain(ReportedOnMain, BadInputError):
    pass


class ProcessTerminated(ThawError):
    """torchrun's agent (or a launcher) terminated this process, e.g. because another process of the run failed."""


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ranks:
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            rank, world, local = (int(env.get(k, "0")) for k in ENV_KEYS)
        except ValueError:
            raise BadInputError(f"torchrun's environment is not numbers: "
                                f"{', '.join(f'{k}={env.get(k)!r}' for k in ENV_KEYS)}") from None
        if world < 1 or not 0 <= rank < world or local < 0:
            raise BadInputError(f"torchrun's environment is inconsistent: RANK={rank}, WORLD_SIZE={world}, "
                                f"LOCAL_RANK={local}")
        return cls(rank, world, local)


class DistContext:
    """This process's part in a run: rank facts and the collectives the trainer needs. `SINGLE` is the one-process
    run, where every collective is the identity and nothing is wrapped."""

    def __init__(self, ranks: Ranks = Ranks(), backend: str = "", device: torch.device | None = None):
        self.ranks = ranks
        self.backend = backend  # "" (one process), "gloo" or "nccl"
        self.device = device or torch.device("cpu")  # where collectives' tensors live (NCCL: this rank's GPU)
        self.control: SyncedControl | None = None
        self.wrapped: tuple[Any, torch.nn.Module] | None = None  # engine/train/distributed_model.py
        self._told_terminated = False

    # --- facts ------------------------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.ranks.rank

    @property
    def world_size(self) -> int:
        return self.ranks.world_size

    @property
    def local_rank(self) -> int:
        return self.ranks.local_rank

    @property
    def active(self) -> bool:
        return self.ranks.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.ranks.rank == 0

    def training_device(self, requested: str) -> str:
        """The recipe's device for this process: one GPU per process on CUDA (LOCAL_RANK), else as asked."""
        if not self.active:
            return requested
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"

    # --- collectives (identities in a one-process run) --------------------------------------------------------
    def _not_terminated(self) -> None:
        if _terminated and not self._told_terminated:
            self._told_terminated = True
            raise ProcessTerminated("this process was ended (SIGTERM) by torchrun or its launcher — another process "
                                    "of the run failed, or the run was aborted; the last checkpoint is kept")

    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        if not self.active:
            return list(values)
        self._not_terminated()
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX if op == "max" else torch_dist.ReduceOp.SUM)
        return tensor.tolist()

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (picklable)."""
        if not self.active:
            return obj
        self._not_terminated()
        box = [obj if self.is_main else None]
        torch_dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def all_gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        self._not_terminated()
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def all_gather_tensor(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's tensor of the same shape, in rank order, on the CPU."""
        if not self.active:
            return [tensor]
        self._not_terminated()
        local = tensor.to(self.device).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        torch_dist.all_gather(parts, local)
        return [p.cpu() for p in parts]

    def shared(self, fn: Callable[[], T]) -> T:
        """fn() on rank 0; its result, or its error, reaches every rank (the result must be picklable)."""
        return self._on_main(fn, share_result=True)

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """fn() on rank 0 only (None elsewhere); an error it raises stops every rank."""
        return self._on_main(fn, share_result=False)

    def _on_main(self, fn: Callable[[], T], share_result: bool) -> T | None:
        if not self.active:
            return fn()
        result, error, outcome = None, None, ("ok", None)
        if self.is_main:
            try:
                result = fn()
                outcome = ("ok", result if share_result else None)
            except Exception as exc:  # noqa: BLE001 - every rank must learn that rank 0 failed, then it is raised
                error = exc
                text = str(exc) if isinstance(exc, ThawError) else f"{type(exc).__name__}: {exc}"
                outcome = ("bad_input" if isinstance(exc, BadInputError) else "error", text)
        outcome = self.broadcast_object(outcome)
        if error is not None:
            raise error
        if outcome[0] == "bad_input":
            raise BadInputReportedOnMain(outcome[1])
        if outcome[0] == "error":
            raise ReportedOnMain(outcome[1])
        return result if self.is_main else outcome[1] if share_result else None

    # --- what the trainer gets --------------------------------------------------------------------------------
    def event_bus(self, callbacks: list[ev.EventCallback] | None = None) -> ev.EventBus:
        return RankBus(callbacks, self) if self.active else ev.EventBus(callbacks)

    def synced_control(self, local: ev.RunControl) -> ev.RunControl:
        """The control the trainer obeys: `local` itself in one process; every rank's flags agreed otherwise."""
        if not self.active:
            return local
        self.control = SyncedControl(local, self)
        return self.control  # type: ignore[return-value]

    def poll_stop(self) -> bool:
        """Agree now on whether to stop (a collective: every rank calls it at the same point)."""
        return self.control.poll() if self.control is not None else False

    def failure_message(self, exc: BaseException) -> str:
        """A failure whose cause is another process (a lost connection, a termination), said as such."""
        if not self.active:
            return ""
        if isinstance(exc, ProcessTerminated):
            return (f"a process of this {self.world_size}-process run failed, or the run was aborted: torchrun ended "
                    f"rank {self.rank} (SIGTERM); the last checkpoint is kept")
        text = str(exc)
        lost = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL", "ProcessGroup",
                "gloo")
        if isinstance(exc, RuntimeError) and any(word in text for word in lost):
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            return (f"a process of this {self.world_size}-process run stopped answering (it failed or was killed), "
                    f"so rank {self.rank} stopped too ({first[:200]}); the last checkpoint is kept")
        return ""

    def reduce_running(self, sums) -> None:
        """An epoch's running sums (engine/train/state.py RunningSums) over all ranks, in place, on every rank.
        Time is the slowest rank's (the ranks wait for each other at every step)."""
        if not self.active:
            return
        total = self.all_reduce([sums.loss_sum, sums.correct, sums.seen, sums.data_wait])
        slowest = self.all_reduce([sums.seconds], op="max")[0]
        sums.loss_sum, sums.data_wait = total[0], total[3] / self.world_size
        sums.correct, sums.seen, sums.seconds = round(total[1]), round(total[2]), slowest

    def share_running(self, sums) -> None:
        """Resuming: the saved running sums are the whole run's; each rank carries an equal share, so per-batch
        averages over ranks and the epoch's sum stay exact."""
        if not self.active:
            return
        for name in ("loss_sum", "correct", "seen"):
            setattr(sums, name, getattr(sums, name) / self.world_size)

    def rng_states_of_all(self, own: dict[str, Any]) -> dict[str, Any]:
        """At a stop: rank 0's RNG states, with every other rank's under "ranks" (an exact resume restores each
        process's own stream: dropout masks differ per rank)."""
        if not self.active:
            return own
        states = self.all_gather_objects(own)
        return {**own, "ranks": states}

    def own_rng_states(self, saved: dict[str, Any] | None) -> dict[str, Any] | None:
        if saved is None or not self.active:
            return saved
        ranks = saved.get("ranks")
        if isinstance(ranks, list) and len(ranks) == self.world_size:
            return ranks[self.rank]
        return None

    def global_batch(self, per_process: int) -> int:
        return per_process * self.world_size

    def batch_event(self, event: ev.BatchFinished) -> ev.BatchFinished:
        """A batch's figures over the global batch: every rank trains an equal share, so the loss and the running
        accuracy are the ranks' means, and the rate is W times one rank's (the ranks step together)."""
        loss, acc = self.all_reduce([event.train_loss, event.train_acc])
        w = self.world_size
        return ev.BatchFinished(epoch=event.epoch, batch=event.batch, batches=event.batches,
                                global_step=event.global_step, train_loss=loss / w, train_acc=acc / w, lrs=event.lrs,
                                images_per_s=event.images_per_s * w)


SINGLE = DistContext()


class RankBus(ev.EventBus):
    """The event bus of a distributed run: subscribers hear rank 0's events only (rank 0 is the one writer); every
    rank takes part in the per-batch reduction, and a rank other than 0 says its own failure on stderr."""

    def __init__(self, callbacks: list[ev.EventCallback] | None, dist: DistContext):
        super().__init__(callbacks)
        self._dist = dist

    def emit(self, event: ev.Event) -> None:
        if isinstance(event, ev.BatchFinished):
            event = self._dist.batch_event(event)  # a collective: every rank emits every batch
        if self._dist.is_main:
            super().emit(event)
        elif isinstance(event, ev.RunFailed):
            print(f"[rank {self._dist.rank}] the run failed: {event.error}", file=sys.stderr, flush=True)


class SyncedControl:
    """Pause and stop as every rank of the run agrees on them, before every batch.

    The flags of every rank are all-reduced with MAX, so any process's request counts: the studio or `train
    --processes` asks rank 0 (engine/train/launch.py), Ctrl-C under a bare torchrun reaches every rank. While paused,
    the ranks meet every PAUSE_HEARTBEAT_S, so no collective waits long enough to time out."""

    def __init__(self, local: ev.RunControl, dist: DistContext):
        self.local = local
        self._dist = dist
        self._stop = False
        self._holding = threading.Event()

    # what callers ask of this process (forwarded to its own control)
    def request_stop(self) -> None:
        self.local.request_stop()

    def pause(self) -> None:
        self.local.pause()

    def unpause(self) -> None:
        self.local.unpause()

    @property
    def paused(self) -> bool:
        return self.local.paused

    @property
    def holding(self) -> bool:
        return self._holding.is_set()

    @property
    def stop_requested(self) -> bool:
        """The stop every rank agreed on at the last batch (not a collective: it is read between batches)."""
        return self._stop

    def _agree(self) -> tuple[bool, bool]:
        stop, paused = self._dist.all_reduce([float(self.local.stop_requested), float(self.local.paused)], op="max")
        self._stop = self._stop or stop > 0
        return self._stop, paused > 0

    def poll(self) -> bool:
        return self._agree()[0]

    def wait_while_paused(self) -> float:
        stop, paused = self._agree()
        if stop or not paused:
            return 0.0
        started = time.perf_counter()
        self._holding.set()
        try:
            while paused and not stop:
                deadline = time.perf_counter() + PAUSE_HEARTBEAT_S
                while self.local.paused and not self.local.stop_requested and time.perf_counter() < deadline:
                    time.sleep(0.02)
                stop, paused = self._agree()
        finally:
            self._holding.clear()
        return time.perf_counter() - started


# --- the process group ---------------------------------------------------------------------------------------

_context: DistContext | None = None


def context_for(recipe: Recipe) -> DistContext:
    """This process's context: SINGLE outside torchrun (or with WORLD_SIZE 1); otherwise the process group is
    joined once per process, on the backend the recipe's device needs."""
    global _context
    ranks = Ranks.from_env()
    if ranks.world_size <= 1:
        return SINGLE
    if _context is not None:
        return _context
    check_distributed_device(recipe.device, recipe.distributed, ranks.world_size)
    _context = _join(ranks, recipe.device)
    return _context


def _join(ranks: Ranks, requested: str) -> DistContext:
    if not torch_dist.is_available():
        raise BadInputError("this PyTorch build has no torch.distributed; train with one process")
    use_cuda = requested in ("auto", "cuda") and torch.cuda.is_available()
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadInputError("device 'cuda' was asked for but CUDA is not available here; use 'auto' or 'cpu'")
    if use_cuda:
        if ranks.local_rank >= torch.cuda.device_count():
            raise BadInputError(f"process LOCAL_RANK={ranks.local_rank} has no GPU: this machine has "
                                f"{torch.cuda.device_count()}; start at most that many processes per machine")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
        torch_dist.init_process_group("nccl", timeout=PROCESS_GROUP_TIMEOUT, device_id=device)
    else:
        device = torch.device("cpu")
        torch_dist.init_process_group("gloo", timeout=PROCESS_GROUP_TIMEOUT)
    _terminate_is_noted()
    log.info("joined the process group: rank %d of %d (%s)", ranks.rank, ranks.world_size, torch_dist.get_backend())
    return DistContext(ranks, torch_dist.get_backend(), device)


def leave(together: bool = False) -> None:
    """Leave the process group at the end of a rank's command. `together` (the run ended as planned): first wait
    for every rank — rank 0 may still be writing its last checkpoint or evaluating — so that no rank exits while
    another works (torchrun ends the others as soon as one exits with an error, and a rank that left early can
    abort in the group's teardown). After a failure nobody waits: a peer may be gone."""
    global _context
    if _context is not None and torch_dist.is_initialized():
        _context.wrapped = None  # DistributedDataParallel's reducer lets go of the group first
        gc.collect()
        if together:
            try:
                torch_dist.barrier()
            except Exception:  # noqa: BLE001 - a peer that is gone cannot be waited for; leave anyway
                log.info("a process of the run left before the others", exc_info=True)
        torch_dist.destroy_process_group()
    _context = None


_terminated: list[int] = []  # SIGTERM received (torchrun's agent, or a launcher aborting the run)


def _terminate_is_noted() -> None:
    """torchrun's agent ends the other ranks with SIGTERM when one fails, and a launcher aborts a run with it. The
    signal is noted, not raised where it lands (it could cut a checkpoint write short): the next collective raises
    ProcessTerminated instead, so the run fails through its usual path — the reason written, the last checkpoint
    whole — before torchrun's 30 s grace ends."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_terminate(signum, frame):
        _terminated.append(signum)

    signal.signal(signal.SIGTERM, on_terminate)
