"""A run in child processes, seen from the studio as if it trained here: several processes (a torchrun process group,
one GPU each), or one child process when the studio is set to train in a separate process.

    ProcessTrainingWorker.run() (its WorkerThread)          children (engine/train/launch.py)
      ProcessRun(["train", recipe.json, --out …]).start() ─▶ torchrun → N × `main.py train`; rank 0 streams events
      for event in run.events(): forwarded as in-process ◀── events.jsonl (JSON lines, Event.to_dict)
      control.pause() / unpause() / request_stop()      ──▶ the control file, polled by rank 0, agreed by all ranks

The panels get the same event objects, in the same order, through the same signals as from an in-process run, so
curves, pause, stop, resume and closing mid-run behave the same. A child that crashes or is killed cannot take the
studio down: the worker reports a RunFailed with the first error the processes logged, or how they ended.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.recipe import Recipe
from engine.train import events as ev
from engine.train.launch import ProcessRun, first_errors
from gui.workers.event_forwarder import BATCH_EMIT_INTERVAL_S, EventForwarder

log = logging.getLogger(__name__)


class ProcessControl:
    """The RunControl commands of a run in child processes, written to rank 0's control file (any thread)."""

    def __init__(self, run: ProcessRun | None):
        self._run = run
        self._paused = False
        self._stop = False

    def pause(self) -> None:
        self._paused = True
        self._send("pause")

    def unpause(self) -> None:
        self._paused = False
        self._send("run")

    def request_stop(self) -> None:
        self._stop = True
        self._paused = False
        self._send("stop")

    def _send(self, command: str) -> None:
        if self._run is not None:  # None: the processes could not even be prepared (said when the run starts)
            self._run.send(command)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stop_requested(self) -> bool:
        return self._stop


class ProcessTrainingWorker(EventForwarder):
    """Runs one training run (new, or resumed from a run folder) in `processes` child processes."""

    def __init__(self, processes: int, recipe: Recipe | None = None, run_dir: str | Path | None = None,
                 runs_root: str | Path | None = None, batch_interval_s: float = BATCH_EMIT_INTERVAL_S):
        super().__init__(recipe, run_dir, runs_root, batch_interval_s)
        self.processes = processes
        self.process_run: ProcessRun | None = None
        self._error = ""
        try:
            self.process_run = ProcessRun([], processes)
        except Exception as exc:  # noqa: BLE001 - e.g. a packaged studio cannot start processes: said at run()
            self._error = str(exc)
        self.control = ProcessControl(self.process_run)

    def run(self) -> None:
        run_dir, checkpoint, failed = "", "", None
        try:
            if self.process_run is None:
                self._on_event(ev.RunFailed(run_dir="", error=self._error, checkpoint=""))
                return
            run = self.process_run
            run.argv = self._command(run.channel)
            run.start()
            for event in run.events():
                if isinstance(event, ev.RunStarted):
                    run_dir = event.run_dir
                elif isinstance(event, ev.CheckpointSaved):
                    checkpoint = event.path
                if isinstance(event, ev.RunFailed):
                    failed = event  # said once every process has ended, with what the other ranks logged
                    continue
                self._on_event(event)
            run.wait()
            self._report_end(run, failed, run_dir, checkpoint)
        except Exception as exc:  # noqa: BLE001 - whatever happens, the studio stays up and says why
            log.exception("the training processes could not be run")
            self._on_event(ev.RunFailed(run_dir=run_dir, error=f"{type(exc).__name__}: {exc}", checkpoint=checkpoint))
        finally:
            self._return_home()

    def terminate(self) -> None:
        if self.process_run is not None:
            self.process_run.terminate()

    def _command(self, channel: Path) -> list[str]:
        if self._recipe is not None:
            path = channel / "recipe.json"
            self._recipe.save(path)
            return ["train", str(path), *(["--out", str(self._runs_root)] if self._runs_root else [])]
        return ["resume", str(self._run_dir)]

    def _report_end(self, run: ProcessRun, failed: ev.RunFailed | None, run_dir: str, checkpoint: str) -> None:
        if failed is not None:
            said = failed.error
            others = [line for line in first_errors(run.channel / "logs")
                      if not line.startswith("[rank 0]") and said not in line]
            error = f"{said} (first error elsewhere: {others[0]})" if others else said
            self._on_event(ev.RunFailed(run_dir=failed.run_dir, error=error, checkpoint=failed.checkpoint))
        elif run.exit is None:  # rank 0 ended without a result: killed, or crashed outside the trainer
            self._on_event(ev.RunFailed(run_dir=run_dir, error=run.failure_text(), checkpoint=checkpoint))
        elif run.exit.error:  # refused before the run (bad input), as an in-process start reports it
            self._on_event(ev.RunFailed(run_dir="", error=run.exit.error, checkpoint=""))
        if failed is None and run.exit is not None and not run.exit.error:
            run.cleanup()
        else:
            log.warning("the training processes' logs are kept in %s", run.channel / "logs")
