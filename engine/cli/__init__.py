"""The headless command line: `python main.py <command> …`. Exit codes: 0 success, 2 bad input, 1 a failed run."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

COMMANDS = {
    "train": "train a recipe (JSON) headless",
    "resume": "continue a stopped or failed run from its last checkpoint",
    "predict": "top-k predictions of a checkpoint for images or folders",
    "models": "list torchvision's classification models with their weights",
    "scan": "check an image folder: classes, counts, imbalance, unusable files",
    "layers": "show a model's layer tree, stages and what a recipe's phases train",
    "recipe": "write a recipe for one of the lesson's strategies",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thaw", description="Thaw: transfer learning and fine-tuning of image classifiers. "
                                 "Without a command the studio window opens.")
    parser.add_argument("--verbose", "-v", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help=COMMANDS["train"], description=COMMANDS["train"])
    p.add_argument("recipe", help="recipe JSON file (see examples/)")
    p.add_argument("--out", help="runs folder (default: the recipe's output_dir or the user data folder)")
    p.add_argument("--data", help="override data.root: your image folder")
    p.add_argument("--epochs", type=int, help="scale the phases to this many epochs in total")
    p.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--weights-file", help="override model.weights_file: a local .pth state dict")
    p.add_argument("--batch-size", type=int, help="override batch_size")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only epoch lines")

    p = sub.add_parser("resume", help=COMMANDS["resume"], description=COMMANDS["resume"])
    p.add_argument("run_dir", help="a run folder (holds checkpoints/last.pt)")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("predict", help=COMMANDS["predict"], description=COMMANDS["predict"])
    p.add_argument("checkpoint", help="a checkpoint (.pt) or a run folder (uses its best.pt)")
    p.add_argument("inputs", nargs="+", help="image files and/or folders")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)

    p = sub.add_parser("models", help=COMMANDS["models"], description=COMMANDS["models"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--family", help="only this family (resnet, vgg, mobilenetv3, efficientnet, vision_transformer …)")

    p = sub.add_parser("scan", help=COMMANDS["scan"], description=COMMANDS["scan"])
    p.add_argument("folder")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("layers", help=COMMANDS["layers"], description=COMMANDS["layers"])
    p.add_argument("target", help="a model name (resnet18) or a recipe JSON file")
    p.add_argument("--depth", type=int, default=1, help="tree depth to print")
    p.add_argument("--classes", type=int, default=10, help="number of classes for the new head")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("recipe", help=COMMANDS["recipe"], description=COMMANDS["recipe"])
    p.add_argument("strategy", help="feature_extraction, fine_tune_all, gradual_unfreezing, extract_then_finetune, from_scratch")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--data", default="", help="image folder")
    p.add_argument("--epochs", type=int, help="total epochs (default: the lesson's)")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    from engine.errors import BadInputError, ThawError

    handler = globals()[f"cmd_{args.command}"]
    try:
        return handler(args)
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ThawError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


# --- train / resume ---------------------------------------------------------------------------------------------

class ConsoleReporter:
    """Prints a progress bar (on a terminal) and one line per epoch."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.bar = not quiet and self.stream.isatty()
        self.total_epochs = 0
        self.last_draw = 0.0

    def __call__(self, event) -> None:
        from engine.train import events as ev

        if isinstance(event, ev.DataPrepared):
            self._line(f"data: {len(event.classes)} classes, {event.train_size} training / {event.val_size} "
                       f"validation images" + (f", {len(event.skipped)} unusable files skipped" if event.skipped else ""))
            for path, reason in event.skipped[:20]:
                self._line(f"  skipped {path}: {reason}")
            if len(event.skipped) > 20:
                self._line(f"  … and {len(event.skipped) - 20} more (see skipped_files.txt in the run folder)")
        elif isinstance(event, ev.WeightsDownloadProgress):
            if self.bar:
                total = f"/{event.total_bytes / 1e6:.0f}" if event.total_bytes else ""
                self._draw(f"downloading {event.weights}: {event.done_bytes / 1e6:.0f}{total} MB")
        elif isinstance(event, ev.RunStarted):
            self.total_epochs = event.total_epochs
            verb = "resuming" if event.resumed else "run"
            self._line(f"{verb} {event.run_dir}\n  model {event.arch} ({event.weights}) on {event.device}")
            if event.device_warning:
                self._line(f"  warning: {event.device_warning}")
        elif isinstance(event, ev.PhaseStarted):
            pct = 100 * event.trainable_params / max(1, event.total_params)
            groups = ", ".join(f"{k} {v:g}" for k, v in event.groups.items())
            self._line(f"phase {event.phase_index + 1} '{event.name}': {event.epochs} epochs, trainable "
                       f"{event.trainable_params:,} of {event.total_params:,} ({pct:.2f} %), lr {groups}")
        elif isinstance(event, ev.BatchFinished):
            if self.bar and (time.monotonic() - self.last_draw > 0.1 or event.batch + 1 == event.batches):
                done = int(30 * (event.batch + 1) / event.batches)
                self._draw(f"epoch {event.epoch + 1}/{self.total_epochs} [{'#' * done}{'.' * (30 - done)}] "
                           f"{event.batch + 1}/{event.batches} loss {event.loss:.4f} acc {event.accuracy:.3f} "
                           f"{event.images_per_second:.0f} img/s")
        elif isinstance(event, ev.EpochFinished):
            lrs = " ".join(f"{k}={v:.2g}" for k, v in event.lrs.items())
            self._line(f"epoch {event.epoch + 1}/{self.total_epochs}  train loss {event.train_loss:.4f} acc "
                       f"{100 * event.train_accuracy:.2f}%  val loss {event.val_loss:.4f} acc "
                       f"{100 * event.val_accuracy:.2f}%{' *' if event.is_best else ''}  {event.seconds:.1f}s "
                       f"{event.images_per_second:.0f} img/s (data wait {100 * event.data_wait_share:.0f} %)  lr {lrs}")
        elif isinstance(event, ev.FreezeVerified):
            if event.moved:
                self._line(f"WARNING: frozen tensors changed in phase {event.phase_index + 1}: {', '.join(event.moved[:5])}")
            elif event.checked_tensors:
                self._line(f"  freeze verified: {event.checked_tensors} frozen tensors unchanged")
        elif isinstance(event, ev.RunStopped):
            self._line(f"stopped at epoch {event.epoch + 1}, batch {event.batch}; checkpoint {event.checkpoint}\n"
                       f"  continue with: python main.py resume {event.run_dir}")
        elif isinstance(event, ev.RunFailed):
            kept = f"; last checkpoint kept: {event.checkpoint}" if event.checkpoint else ""
            self._line(f"run failed: {event.error}{kept}")
        elif isinstance(event, ev.RunFinished):
            s = event.summary
            best = s.get("best_val_acc")
            self._line(f"done ({s.get('status')}): best val acc "
                       f"{100 * best:.2f}% at epoch {s.get('best_epoch')}, {s.get('wall_seconds', 0):.1f}s"
                       if best is not None else f"done ({s.get('status')})")
            self._line(f"  run folder: {event.run_dir}")

    def _draw(self, text: str) -> None:
        self.last_draw = time.monotonic()
        self.stream.write("\r" + text[:150].ljust(150))
        self.stream.flush()

    def _line(self, text: str) -> None:
        if self.bar:
            self.stream.write("\r" + " " * 150 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


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
    return EXIT_OK


def cmd_train(args) -> int:
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
    if args.batch_size:
        recipe.batch_size = args.batch_size
    if args.epochs:
        _scale_epochs(recipe.phases, args.epochs)
    recipe.validate()
    trainer = Trainer(recipe, [ConsoleReporter(args.quiet)], runs_root=args.out)
    return _run_trainer(trainer, args.quiet)


def cmd_resume(args) -> int:
    from engine.train.trainer import Trainer

    trainer = Trainer.from_run_dir(args.run_dir, [ConsoleReporter(args.quiet)])
    return _run_trainer(trainer, args.quiet)


# --- predict ------------------------------------------------------------------------------------------------------

def cmd_predict(args) -> int:
    from engine.errors import BadInputError
    from engine.infer.inference import Predictor, expand_inputs
    from engine.train.runs import checkpoint_path

    checkpoint = Path(args.checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint_path(checkpoint, "best")
    paths = expand_inputs(args.inputs)
    if not paths:
        raise BadInputError(f"no image files found in {', '.join(args.inputs)}")
    predictor = Predictor.from_checkpoint(checkpoint, args.device)
    failures = 0
    for result in predictor.predict(paths, args.topk, args.batch_size):
        failures += not result.ok
        if args.json:
            print(json.dumps(result.to_dict()))
        elif result.ok:
            top = ", ".join(f"{name} {100 * p:.1f}%" for name, p in result.top)
            print(f"{result.path}: {top}")
        else:
            print(f"{result.path}: cannot be used: {result.error}", file=sys.stderr)
    return EXIT_BAD_INPUT if failures == len(paths) else EXIT_OK


# --- models / scan / layers / recipe --------------------------------------------------------------------------------

def cmd_models(args) -> int:
    from engine.model.zoo import all_models, family_of, list_model_names, model_info

    names = [n for n in list_model_names() if not args.family or family_of(n) == args.family]
    infos = [model_info(n) for n in names] if args.family else all_models()
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return EXIT_OK
    print(f"{'model':<22} {'family':<20} {'params':>10} {'input':>6} {'acc@1':>7}  weights (* = cached)")
    for info in infos:
        weights = ", ".join(f"{w.name.split('.', 1)[1]}{'*' if w.cached else ''}" for w in info.weights)
        acc = f"{info.acc1:.2f}" if info.acc1 is not None else "-"
        print(f"{info.name:<22} {info.family:<20} {info.num_params / 1e6:>9.1f}M {info.input_size:>6} {acc:>7}  {weights}")
    return EXIT_OK


def cmd_scan(args) -> int:
    from engine.errors import BadInputError
    from engine.data.scan import DatasetError, scan_folder

    try:
        report = scan_folder(args.folder, channels=args.channels)
    except DatasetError as exc:
        raise BadInputError(str(exc)) from exc
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_text())
    return EXIT_OK


def cmd_layers(args) -> int:
    from engine.model.layer_tree import format_tree
    from engine.planning.plan import plan_run
    from engine.planning.presets import make_recipe
    from engine.recipe import Recipe

    if args.target.endswith(".json") or Path(args.target).is_file():
        recipe = Recipe.load(args.target)
    else:
        recipe = make_recipe("fine_tune_all", args.target)
    plan = plan_run(recipe, args.classes)
    if args.json:
        print(json.dumps({"stages": [s.to_dict() for s in plan.stages.stages], "head": plan.head_path,
                          "phases": [{"name": p.name, "trainable_params": p.trainable_params,
                                      "total_params": p.total_params, "groups": p.groups, "error": p.error,
                                      "tree": p.tree.to_dict()} for p in plan.phases]}, indent=1))
        return EXIT_OK
    print(f"{recipe.model.arch}: new head at '{plan.head_path}'")
    print("stages: " + ", ".join(f"{s.name} ({s.params:,})" for s in plan.stages.stages))
    for phase in plan.phases:
        print(f"\nphase {phase.index + 1} '{phase.name}'" + (f"  ERROR: {phase.error}" if phase.error else ""))
        print(format_tree(phase.tree, args.depth))
        if phase.groups:
            print("groups: " + ", ".join(f"{k} lr={v:g}" for k, v in phase.groups.items()))
    return EXIT_OK


def cmd_recipe(args) -> int:
    from engine.planning.presets import STRATEGIES, make_recipe

    if args.strategy not in STRATEGIES:
        from engine.errors import BadInputError

        raise BadInputError(f"unknown strategy '{args.strategy}'; choose one of {', '.join(STRATEGIES)}")
    recipe = make_recipe(args.strategy, args.model, args.data, args.epochs)
    if args.output:
        recipe.save(args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(recipe.to_json())
    return EXIT_OK
