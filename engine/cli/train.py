"""`train` and `resume`: a run headless, printed as it goes; Ctrl-C stops cleanly with a checkpoint.

What is refused before anything trains (exit 2): a recipe or override that is invalid, a runs folder that
cannot be written, a batch that cannot fit in memory, a run folder another process is training (its lock),
a checkpoint that is not one or does not fit its recipe, a moved data folder with other classes.
One Ctrl-C stops after the batch and exits 3 (EXIT_STOPPED), so a script can tell "stopped" from "finished".
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from engine.cli.console import ConsoleReporter
from engine.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_STOPPED


def register(sub) -> None:
    p = sub.add_parser("train", help="train a recipe (JSON) headless", description="train a recipe (JSON) headless")
    p.add_argument("recipe", help="recipe JSON file (see examples/)")
    p.add_argument("--out", help="runs folder (default: the recipe's output_dir or the user data folder)")
    p.add_argument("--data", help="override data.root: your image folder")
    p.add_argument("--epochs", type=int, help="scale the phases to this many epochs in total")
    p.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--weights-file", help="override model.weights_file: a local .pth state dict")
    p.add_argument("--batch-size", type=int, help="override batch_size")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only epoch lines")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("resume", help="continue a stopped or failed run from its last checkpoint",
                       description="continue a stopped or failed run from its last checkpoint")
    p.add_argument("run_dir", help="a run folder (holds checkpoints/last.pt)")
    p.add_argument("--data", help="the run's data folder, if it moved (same classes)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=cmd_resume)


def _run_trainer(trainer, quiet: bool) -> int:
    from engine.train.events import RunControl

    control = trainer.control
    assert isinstance(control, RunControl)

    def on_interrupt(signum, frame):  # first Ctrl-C: stop cleanly with a checkpoint; second: abort
        if control.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this batch (Ctrl-C again to abort) …", file=sys.stderr)
        control.request_stop()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = trainer.fit()
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.status == "failed":
        return EXIT_FAILED
    if result.status == "stopped":
        return EXIT_STOPPED
    return EXIT_OK


class RunFolderGuard:
    """An event subscriber for `train`: locks the run folder as soon as it exists (RunStarted), so a second
    process cannot resume it while it trains and a killed run reads as dead, not "running" (until the trainer
    takes the lock itself; the lock is re-entrant), and prints the weights file's load report."""

    def __init__(self, trainer, stream=None):
        self.trainer = trainer
        self.stream = stream or sys.stderr
        self.lock = None

    def __call__(self, event) -> None:
        from engine.train import events as ev
        from engine.train.run_lock import RunLock

        if isinstance(event, ev.RunStarted) and self.lock is None:
            self.lock = RunLock(event.run_dir).acquire()
            print_load_report(self.trainer, self.stream)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def print_load_report(trainer, stream) -> None:
    """What a local weights file matched, always (the refusal of a file that does not fit is an error)."""
    report = getattr(getattr(trainer, "built", None), "load_report", None)
    if report is not None:
        print(f"  weights: {report.text()}", file=stream, flush=True)


def cmd_train(args) -> int:
    from engine.data.memory import check_input_memory
    from engine.errors import BadInputError
    from engine.model.build import resolve_preprocessing
    from engine.planning.presets import _scale_epochs
    from engine.recipe import Recipe
    from engine.train.runs import prepare_runs_root, runs_root_for
    from engine.train.trainer import Trainer

    recipe = Recipe.load(args.recipe)
    if args.data:
        recipe.data.root = args.data
    if args.device:
        recipe.device = args.device
    if args.weights_file:
        recipe.model.weights_file = args.weights_file
    if args.batch_size is not None:
        recipe.batch_size = args.batch_size
    if args.epochs is not None:
        if args.epochs < 1:
            raise BadInputError(f"--epochs must be at least 1, got {args.epochs}")
        _scale_epochs(recipe.phases, args.epochs)
    recipe.validate()
    prepare_runs_root(args.out or runs_root_for(recipe.output_dir))  # before the data scan and the model
    prep = resolve_preprocessing(recipe.model, recipe.data)
    check_input_memory(recipe.batch_size, recipe.model.in_channels, prep.crop_size)
    trainer = Trainer(recipe, [ConsoleReporter(args.quiet)], runs_root=args.out)
    guard = RunFolderGuard(trainer)
    trainer.bus.subscribe(guard)
    try:
        return _run_trainer(trainer, args.quiet)
    finally:
        guard.release()


def cmd_resume(args) -> int:
    from engine.data.datasets import check_same_classes
    from engine.data.scan import DatasetError, scan_folder
    from engine.errors import BadInputError
    from engine.train.checkpoints import (check_checkpoint_fits, load_checkpoint, remove_stale_temp_files,
                                          validate_checkpoint)
    from engine.train.run_lock import RunLock
    from engine.train.runs import checkpoint_path
    from engine.train.trainer import Trainer

    run_dir = Path(args.run_dir).expanduser()
    if not run_dir.is_dir():
        raise BadInputError(f"run folder {run_dir} does not exist" if not run_dir.exists()
                            else f"{run_dir} is not a run folder (it is a file)")
    last = checkpoint_path(run_dir, "last")
    if not last.is_file():
        raise BadInputError(f"{run_dir} has no checkpoint to resume from ({last} is missing)")
    with RunLock(run_dir):
        removed = remove_stale_temp_files(run_dir)
        if removed:
            print(f"removed {len(removed)} temporary file(s) an interrupted write left in {run_dir}",
                  file=sys.stderr)
        state = load_checkpoint(last)
        validate_checkpoint(state, last, "resume")
        check_checkpoint_fits(state, last)
        data_root = str(Path(args.data).expanduser()) if args.data else None
        if data_root and state["recipe"].get("data", {}).get("dataset", "folder") == "folder":
            try:
                found = scan_folder(data_root, verify=False).classes
            except DatasetError as exc:
                raise BadInputError(str(exc)) from None
            check_same_classes(list(state["class_names"]), found, data_root)
        del state  # the trainer reads it again; do not hold two copies of a large model's state
        trainer = Trainer.from_run_dir(run_dir, [ConsoleReporter(args.quiet)])
        if data_root:
            trainer.recipe.data.root = data_root
        return _run_trainer(trainer, args.quiet)
