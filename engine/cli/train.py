"""`train` and `resume`: a run headless, printed as it goes; Ctrl-C stops cleanly with a checkpoint.

What is refused before anything trains (exit 2): a recipe or override that is invalid, a runs folder that
cannot be written, a batch that cannot fit in memory, a run folder another process is training (its lock),
a checkpoint that is not one or does not fit its recipe, a moved data folder with other classes.
One Ctrl-C stops after the batch and exits 3 (EXIT_STOPPED), so a script can tell "stopped" from "finished".
`train --dry-run` checks the recipe and the data and prints what the run would cost (engine/train/estimate.py),
training nothing: exit 0 when it would run, 2 with the reason when it would not.

Several processes (engine/train/distributed.py): `--processes N` (or the recipe's `distributed.processes`) starts
torchrun with N workers on this machine (engine/train/launch.py) and prints rank 0's events as they stream back,
with the same exit codes. `torchrun --nproc-per-node=N main.py train RECIPE` works as it is: rank 0 prints, every
rank exits with its own code (torchrun reports any that is not 0, a stop's 3 included, as a failure).
`resume` continues with as many processes as the run last used, unless `--processes` says otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from engine.cli.console import ConsoleReporter
from engine.cli.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED
from engine.errors import BadInputError, ThawError
from engine.train.events import EventBus, RunControl


def register(sub) -> None:
    p = sub.add_parser("train", help="train a recipe (JSON) headless", description="train a recipe (JSON) headless")
    p.add_argument("recipe", help="recipe JSON file (see examples/)")
    p.add_argument("--out", help="runs folder (default: the recipe's output_dir or the user data folder)")
    p.add_argument("--data", help="override data.root: your image folder")
    p.add_argument("--epochs", type=int, help="scale the phases to this many epochs in total")
    p.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--weights-file", help="override model.weights_file: a local .pth state dict")
    p.add_argument("--batch-size", type=int, help="override batch_size (per process)")
    p.add_argument("--processes", type=int, metavar="N",
                   help="train with N processes on this machine (torchrun + DistributedDataParallel, one GPU each "
                        "on CUDA); batch_size is per process. Overrides distributed.processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only epoch lines")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files in <run folder>/tensorboard (pip install tensorboard)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the recipe and the data and estimate the run's time, memory and disk on a few real "
                        "batches, without training (exit 0: it would run; 2: it would not, and why)")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the estimate as JSON")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("resume", help="continue a stopped or failed run from its last checkpoint",
                       description="continue a stopped or failed run (a training or a pre-training run) from its "
                                   "last checkpoint")
    p.add_argument("run_dir", help="a run folder (holds checkpoints/last.pt)")
    p.add_argument("--data", help="the run's data folder, if it moved (same classes)")
    p.add_argument("--processes", type=int, metavar="N",
                   help="processes to continue with (default: as many as the run used, which continues exactly; "
                        "another number continues at an epoch boundary)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=cmd_resume)


def cmd_train(args) -> int:
    from engine.planning.presets import _scale_epochs
    from engine.recipe import Recipe
    from engine.train.launch import under_torchrun

    recipe = Recipe.load(args.recipe)
    if args.data:
        recipe.data.root = args.data
    if args.device:
        recipe.device = args.device
    if args.weights_file:
        recipe.model.weights_file = args.weights_file
    if args.batch_size is not None:
        recipe.batch_size = args.batch_size
    if args.tensorboard:
        recipe.tensorboard = True
    if args.epochs is not None:
        if args.epochs < 1:
            raise BadInputError(f"--epochs must be at least 1, got {args.epochs}")
        _scale_epochs(recipe.phases, args.epochs)
    if args.processes is not None:
        recipe.distributed.processes = _processes(args.processes)
    recipe.validate()
    if args.dry_run:
        return dry_run(recipe, args.json)
    if recipe.distributed.processes > 1 and not under_torchrun():
        return _launch(lambda channel: ["train", _saved(recipe, channel), *(["--out", args.out] if args.out else [])],
                       recipe.distributed.processes, args.quiet)

    def make(callbacks, control):
        from engine.train.trainer import Trainer

        return Trainer(recipe, callbacks, control, runs_root=args.out)

    return _as_rank(make, args.quiet)


def dry_run(recipe, as_json: bool) -> int:
    """The estimate on stdout (the data and weights lines on stderr, as a run prints them); bad input raises."""
    from engine.train.estimate import estimate_run

    estimate = estimate_run(recipe, bus=EventBus([ConsoleReporter(quiet=True)]))
    if as_json:
        print(json.dumps(estimate.to_dict(), indent=2))
    else:
        print("\n".join(["The recipe and the data are usable: the run would start.", *estimate.lines()]))
    return EXIT_OK


def cmd_resume(args) -> int:
    from engine.pretrain.run import is_pretrain_run
    from engine.train.launch import recorded_processes, under_torchrun

    if is_pretrain_run(args.run_dir):  # a domain pre-training run (engine/cli/pretrain.py) resumes as its own kind
        from engine.cli.pretrain import cmd_resume as resume_pretraining

        if args.processes not in (None, 1):
            raise BadInputError(f"--processes {args.processes}: {args.run_dir} is a pre-training run, which runs in "
                                f"one process")
        if args.data:
            raise BadInputError(f"--data: {args.run_dir} is a pre-training run; its unlabeled folder cannot move")
        return resume_pretraining(args.run_dir, args.quiet)

    processes = _processes(args.processes) if args.processes is not None else None
    if not under_torchrun():
        processes = processes or recorded_processes(args.run_dir)
        if processes > 1:
            extra = ["--data", args.data] if args.data else []
            return _launch(lambda _channel: ["resume", str(args.run_dir), *extra], processes, args.quiet)

    def make(callbacks, control):
        from engine.train.trainer import Trainer

        # The trainer takes the run's lock, cleans what an interrupted write left, and refuses a checkpoint that is
        # not one, does not fit its recipe, or a moved data folder with other classes.
        return Trainer.from_run_dir(args.run_dir, callbacks, control, data_root=args.data or "")

    return _as_rank(make, args.quiet)


def _processes(value: int) -> int:
    from engine.recipe import MAX_PROCESSES

    if not 1 <= value <= MAX_PROCESSES:
        raise BadInputError(f"--processes must be in [1, {MAX_PROCESSES}], got {value}")
    return value


def _saved(recipe, channel: Path) -> str:
    path = channel / "recipe.json"
    recipe.save(path)
    return str(path)


# --- one process of a run (the only one, or a rank under torchrun) -----------------------------------------------

def _as_rank(make, quiet: bool) -> int:
    """Build the trainer and train. Printed by this process, or — started by a launcher — streamed to it
    (engine/train/launch.py): rank 0 writes every event and, last, its exit code; other ranks only take part."""
    from engine.train.distributed import Ranks, ReportedOnMain, leave
    from engine.train.launch import LAUNCHER_PID_ENV, ControlWatcher, EventStream, launched_channel

    channel = launched_channel()
    main = Ranks.from_env().rank == 0
    stream = EventStream(channel) if channel is not None and main else None
    callbacks = [stream] if stream is not None else [] if channel is not None else [ConsoleReporter(quiet)]
    control = RunControl()
    watcher = None
    code, error = EXIT_FAILED, ""
    try:
        trainer = make(callbacks, control)
        if stream is not None:
            pid = os.environ.get(LAUNCHER_PID_ENV, "")
            watcher = ControlWatcher(channel, control, int(pid) if pid.isdigit() else None).start()
        code = _run_trainer(trainer, control)
        # Started by a launcher, the outcome travels in the stream; a failure still exits non-zero, so that
        # torchrun ends the other ranks at once instead of leaving them waiting on this one.
        return code if channel is None else EXIT_FAILED if code == EXIT_FAILED else EXIT_OK
    except ReportedOnMain as exc:  # rank 0 says it; this rank only stops
        code = EXIT_BAD_INPUT if isinstance(exc, BadInputError) else EXIT_FAILED
        return EXIT_OK if channel is not None else code
    except BadInputError as exc:
        code, error = EXIT_BAD_INPUT, str(exc)
        raise
    except ThawError as exc:
        code, error = EXIT_FAILED, str(exc)
        raise
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        raise
    except Exception as exc:
        code, error = EXIT_FAILED, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if watcher is not None:
            watcher.close()
        if channel is not None:  # torchrun ends the others when one rank exits: rank 0's result must still be said
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stream is not None:
            stream.write_exit(code, error)
            stream.close()
        leave(together=code in (EXIT_OK, EXIT_STOPPED))


def _run_trainer(trainer, control) -> int:
    """Train, then evaluate a finished run (engine/infer/fit_and_evaluate.py: said on the console, or in the
    launcher's stream, as every event of the run is)."""
    from engine.infer.fit_and_evaluate import fit_and_evaluate

    def on_interrupt(signum, frame):  # first Ctrl-C: stop cleanly with a checkpoint; second: abort
        if control.stop_requested:
            raise KeyboardInterrupt
        if trainer.dist.is_main:  # under torchrun every rank hears Ctrl-C; one says so
            print("\nstopping after this batch (Ctrl-C again to abort) …", file=sys.stderr)
        control.request_stop()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = fit_and_evaluate(trainer)
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.status == "failed":
        return EXIT_FAILED
    if result.status == "stopped":
        return EXIT_STOPPED
    return EXIT_OK


# --- the launcher: this process starts torchrun and prints what rank 0 streams back ------------------------------

def _launch(argv_for, processes: int, quiet: bool) -> int:
    from engine.train.launch import ProcessRun, first_errors

    run = ProcessRun([], processes)
    run.argv = argv_for(run.channel)
    reporter = ConsoleReporter(quiet)
    interrupts = []

    def on_interrupt(signum, frame):
        interrupts.append(signum)
        if len(interrupts) == 1:
            print("\nstopping after this batch (Ctrl-C again to abort) …", file=sys.stderr)
            run.request_stop()
        else:
            run.terminate()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        run.start()
        print(f"Starting {processes} training processes (torchrun) …" if processes > 1 else
              "Starting the training process …", file=sys.stderr)
        for event in run.events():
            reporter(event)
        run.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if len(interrupts) > 1:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if run.exit is None:
        print(f"error: {run.failure_text()} (logs: {run.channel / 'logs'})", file=sys.stderr)
        return EXIT_FAILED
    if run.exit.error:
        print(f"error: {run.exit.error}", file=sys.stderr)
    if run.exit.code == EXIT_FAILED:
        said = run.exit.error
        others = [line for line in first_errors(run.channel / "logs")
                  if not line.startswith("[rank 0]") and not (said and said in line)]
        for line in others[:3]:
            print(f"  {line}", file=sys.stderr)
        print(f"  logs of every process: {run.channel / 'logs'}", file=sys.stderr)
    else:
        run.cleanup()
    return run.exit.code
