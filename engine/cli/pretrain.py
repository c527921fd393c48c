"""`pretrain`: domain pre-training — the recipe's backbone continued with a self-supervised objective (SimCLR, MoCo,
BYOL, DINO; engine/pretrain/) on a folder of unlabeled images, written as a weights file for `model.weights_file`.

A run like `train`'s: a run folder, the loss printed as it goes, a k-NN accuracy on the recipe's labelled images,
one Ctrl-C stops after the batch with a checkpoint (exit 3) and `resume RUN_DIR` continues it exactly; `--dry-run`
checks everything and measures the cost without training. Refused with exit 2 in one line: an empty or unreadable
folder, an unknown method, a model family no method can train, several processes, lightly not installed.
"""

from __future__ import annotations

import signal
import sys

from engine.cli.exit_codes import EXIT_OK, EXIT_STOPPED
from engine.cli.job import StageBar
from engine.errors import BadInputError

METHOD_NAMES = ("simclr", "moco", "byol", "dino")  # engine/pretrain/methods.py, listed without importing torch


def register(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="domain pre-training: continue a recipe's backbone self-supervised on unlabeled images",
        description="Continue the recipe's model (its torchvision weights or its model.weights_file) with a "
                    "self-supervised objective on every image under DIR (class folders ignored) and write the "
                    "backbone as a weights file for model.weights_file. Needs lightly (pip install 'thaw[pretrain]'). "
                    "One process (no method runs under torchrun yet).")
    p.add_argument("recipe", help="recipe JSON file: its model, data (k-NN monitor), batch_size, seed, device")
    p.add_argument("--unlabeled", required=True, metavar="DIR", help="folder of unlabeled images (subfolders read)")
    p.add_argument("--method", default="simclr",
                   help=f"one of {', '.join(METHOD_NAMES)} (default simclr; see docs/RECIPES.md for which to pick)")
    p.add_argument("--epochs", type=int, default=10,
                   help="epochs over the unlabeled images (default 10); 0: only re-estimate the BatchNorm statistics "
                        "on them (AdaBN: one forward pass, no training)")
    p.add_argument("--out", required=True, metavar="WEIGHTS.pth", help="the backbone's weights file to write")
    p.add_argument("--batch-size", type=int, default=0, help="images per step (default: the recipe's batch_size)")
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate (default: the method's, for the batch)")
    p.add_argument("--device", default="", help="override the recipe's device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--runs", metavar="DIR", help="runs folder (default: the recipe's output_dir or the user data "
                                                 "folder)")
    p.add_argument("--processes", type=int, default=1, metavar="N", help="1 (several processes: not supported)")
    p.add_argument("--max-batches", type=int, default=0, help="batches per epoch at most (0: all; quick trials)")
    p.add_argument("--dry-run", action="store_true", help="check everything and estimate the time, training nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only epoch lines")
    p.set_defaults(run=cmd_pretrain)


def _config(args):
    from engine.pretrain.config import PretrainConfig

    return PretrainConfig(method=args.method, unlabeled=args.unlabeled, epochs=args.epochs, out=args.out,
                          batch_size=args.batch_size, lr=args.lr, device=args.device,
                          max_batches=args.max_batches).validate()


def cmd_pretrain(args) -> int:
    if args.processes != 1:
        raise BadInputError(f"--processes {args.processes}: pre-training runs in one process; no method supports "
                            f"several yet (SimCLR and MoCo need every process's negatives, BYOL and DINO one teacher)")
    from engine.recipe import Recipe

    config = _config(args)  # an unknown method is refused before the recipe or torch is even read
    recipe = Recipe.load(args.recipe)
    if args.dry_run:
        from engine.pretrain.estimate import estimate_pretrain

        estimate = estimate_pretrain(recipe, config)
        print("\n".join(["The recipe, the model and the images are usable: pre-training would start.",
                         *estimate.lines()]))
        return EXIT_OK
    from engine.pretrain.run import PretrainRun

    return run_pretraining(lambda callbacks, control: PretrainRun(recipe, config, callbacks, control,
                                                                  runs_root=args.runs), args.quiet)


def cmd_resume(run_dir: str, quiet: bool) -> int:
    """`resume RUN_DIR` on a pre-training run's folder (engine/cli/train.py hands it over)."""
    from engine.pretrain.run import PretrainRun

    return run_pretraining(lambda callbacks, control: PretrainRun.from_run_dir(run_dir, callbacks, control), quiet)


class PretrainConsole:
    """Prints a pre-training run's events: a bar per epoch on a terminal, the narrated lines always."""

    def __init__(self, quiet: bool, stream=None):
        self.stream = stream or sys.stderr
        self.bar = StageBar(self.stream, quiet=quiet)

    def __call__(self, event) -> None:
        from engine.pretrain.events import PretrainBatchFinished, describe

        if isinstance(event, PretrainBatchFinished):
            if self.bar.tty:
                self.bar(f"epoch {event.epoch + 1}: loss {event.loss:.4f}", event.batch + 1, event.batches)
            return
        line = describe(event)
        if line:
            self.bar.close()
            self.stream.write(line + "\n")
            self.stream.flush()


def run_pretraining(make, quiet: bool) -> int:
    from engine.train.events import RunControl

    control = RunControl()
    run = make([PretrainConsole(quiet)], control)

    def on_interrupt(signum, frame):  # first Ctrl-C: stop cleanly with a checkpoint; second: abort
        if control.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this batch (Ctrl-C again to abort) …", file=sys.stderr)
        control.request_stop()

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread (a test calling main() from a worker): Ctrl-C aborts
        previous = None
    try:
        status = run.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return EXIT_STOPPED if status == "stopped" else EXIT_OK
