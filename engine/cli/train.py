"""`train` and `resume`: a run headless, printed as it goes; Ctrl-C stops cleanly with a checkpoint.

What is refused before anything trains (exit 2): a recipe or override that is invalid, a runs folder that
cannot be written, a batch that cannot fit in memory, a run folder another process is training (its lock),
a checkpoint that is not one or does not fit its recipe, a moved data folder with other classes.
One Ctrl-C stops after the batch and exits 3 (EXIT_STOPPED), so a script can tell "stopped" from "finished".
`train --dry-run` checks the recipe and the data and prints what the run would cost (engine/train/estimate.py),
training nothing: exit 0 when it would run, 2 with the reason when it would not.
"""

from __future__ import annotations

import signal
import sys

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
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files in <run folder>/tensorboard (pip install tensorboard)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the recipe and the data and estimate the run's time, memory and disk on a few real "
                        "batches, without training (exit 0: it would run; 2: it would not, and why)")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the estimate as JSON")
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
    _evaluate_at_the_end(trainer)

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


def _evaluate_at_the_end(trainer) -> None:
    """A finished run's best checkpoint is evaluated on the validation split (evaluation.json), said on the console."""
    from engine.infer.evaluation import RunEvaluator
    from engine.train.devices import pick_device

    reporter = next(c for c, _critical in trainer.bus.subscribers if isinstance(c, ConsoleReporter))
    trainer.bus.subscribe(RunEvaluator(pick_device(trainer.recipe.device)[0], emit=reporter))


def cmd_train(args) -> int:
    from engine.errors import BadInputError
    from engine.planning.presets import _scale_epochs
    from engine.recipe import Recipe
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
    if args.tensorboard:
        recipe.tensorboard = True
    if args.epochs is not None:
        if args.epochs < 1:
            raise BadInputError(f"--epochs must be at least 1, got {args.epochs}")
        _scale_epochs(recipe.phases, args.epochs)
    recipe.validate()
    if args.dry_run:
        return dry_run(recipe, args.json)
    trainer = Trainer(recipe, [ConsoleReporter(args.quiet)], runs_root=args.out)
    return _run_trainer(trainer, args.quiet)


def dry_run(recipe, as_json: bool) -> int:
    """The estimate on stdout (the data and weights lines on stderr, as a run prints them); bad input raises."""
    import json

    from engine.train.estimate import estimate_run
    from engine.train.events import EventBus

    estimate = estimate_run(recipe, bus=EventBus([ConsoleReporter(quiet=True)]))
    if as_json:
        print(json.dumps(estimate.to_dict(), indent=2))
    else:
        print("\n".join(["The recipe and the data are usable: the run would start.", *estimate.lines()]))
    return EXIT_OK


def cmd_resume(args) -> int:
    from engine.train.trainer import Trainer

    # The trainer takes the run's lock, cleans what an interrupted write left, and refuses a checkpoint that is not
    # one, does not fit its recipe, or a moved data folder with other classes.
    trainer = Trainer.from_run_dir(args.run_dir, [ConsoleReporter(args.quiet)], data_root=args.data or "")
    return _run_trainer(trainer, args.quiet)
