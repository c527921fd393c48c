"""`evaluate` and `label-issues`: where a run's model errs, and which of its data look wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.cli.exit_codes import EXIT_OK
from engine.errors import BadInputError


def register(sub) -> None:
    help_ = "accuracy, per-class metrics, confusion matrix and per-image results of a run's checkpoint"
    p = sub.add_parser("evaluate", help=help_, description=help_ + ". Without IMAGE_DIR: the run's validation "
                       "split (which also refreshes evaluation.json and the out-of-distribution calibration).")
    p.add_argument("run_dir", help="a run folder (or a checkpoint file)")
    p.add_argument("image_dir", nargs="?", help="a folder of class folders named like the run's classes")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of the run")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON on standard output")
    p.add_argument("--csv", metavar="FILE", help="write one row per image to FILE")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.set_defaults(run=cmd_evaluate)

    help_ = "suspect labels (confident learning), near-duplicate images and train/validation leaks of a run's data"
    p = sub.add_parser("label-issues", help=help_, description=help_ + "; also written as label_issues.json")
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--backbone", choices=("start", "trained"), default="start",
                   help="features of the pretrained backbone the run started from (default: it never saw the "
                        "labels) or of the checkpoint's fine-tuned one")
    p.add_argument("--folds", type=int, default=5, help="folds of the out-of-fold head (default 5)")
    p.add_argument("--limit", type=int, default=30, help="entries listed per section in the text output")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON on standard output")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=cmd_label_issues)


def cmd_evaluate(args) -> int:
    from engine.infer.evaluation import EVALUATION_FILE, evaluate_checkpoint
    from engine.infer.inference import inference_device

    inference_device(args.device)  # the same check on every command: one line, exit 2
    if args.batch_size is not None and args.batch_size < 1:  # 0 once meant the recipe's: leave it out for that
        raise BadInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.image_dir is not None and not Path(args.image_dir).expanduser().is_dir():
        raise BadInputError(f"image folder {args.image_dir} does not exist or is not a folder")
    if args.csv:
        from engine.io_files import check_target

        check_target(Path(args.csv), "--csv")  # before the evaluation, not after it
    on_split = args.image_dir is None
    run_dir = Path(args.run_dir)
    if on_split and args.checkpoint == "best" and run_dir.is_dir():
        from engine.io_files import check_target

        # What the evaluation writes into the run folder: refused in one line before the evaluation, not after it.
        check_target(run_dir / EVALUATION_FILE, "evaluation.json")
    evaluation = evaluate_checkpoint(args.run_dir, args.image_dir, args.checkpoint, args.device,
                                     args.batch_size or 0,
                                     calibrate=on_split, drift=on_split)
    if on_split and args.checkpoint == "best" and run_dir.is_dir():
        evaluation.save(run_dir / EVALUATION_FILE)
    if args.csv:
        evaluation.write_csv(args.csv)
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=1))
    else:
        print(evaluation.format_text())
        if args.csv:
            print(f"per-image results: {args.csv}")
    for path, reason in evaluation.skipped:  # on stderr too, so a script sees them whatever the format
        print(f"not evaluated: {path}: {reason}", file=sys.stderr)
    return EXIT_OK


def cmd_label_issues(args) -> int:
    from engine.infer.inference import inference_device
    from engine.infer.label_issues import find_run_label_issues

    inference_device(args.device)
    if args.folds < 2:
        raise BadInputError(f"--folds must be at least 2, got {args.folds}")
    report = find_run_label_issues(args.run_dir, args.checkpoint, args.backbone, args.folds, args.device)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.format_text(max(1, args.limit)))
    return EXIT_OK
