"""`lr-find`: the learning-rate range test of a recipe's phase (engine/train/lr_finder.py), printed as a suggestion,
a few rows of the curve, or JSON. Exit 0 with a suggestion, 1 when the curve is too short to read one, 2 for bad
input (the recipe, the data, a phase or group that does not exist)."""

from __future__ import annotations

import json

from engine.cli.console import ConsoleReporter
from engine.cli.exit_codes import EXIT_FAILED, EXIT_OK
from engine.train.events import EventBus

CURVE_ROWS = 12  # rows of the curve printed in text mode
BAR_WIDTH = 30


def register(sub) -> None:
    p = sub.add_parser("lr-find", help="learning-rate range test: a suggested rate for a recipe's phase",
                       description="Train a few batches while the rate grows exponentially, and suggest a rate "
                                   "(steepest descent of the smoothed loss; fastai's valley and minimum/10 are "
                                   "printed too). The model, optimizer and RNGs are left as they were.")
    p.add_argument("recipe", help="recipe JSON file")
    p.add_argument("--phase", type=int, default=1, help="the phase to test, counted from 1 (default: 1)")
    p.add_argument("--group", help="sweep only this parameter group's rate (default: every group together, "
                                   "keeping the ratios between them)")
    p.add_argument("--data", help="override data.root")
    p.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--weights-file", help="override model.weights_file")
    p.add_argument("--batch-size", type=int, help="override batch_size")
    p.add_argument("--start", type=float, default=1e-7, help="first rate of the sweep (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last rate of the sweep (default 10)")
    p.add_argument("--iterations", type=int, default=100, help="steps of the sweep (default 100)")
    p.add_argument("--json", action="store_true", help="print the sweep and the suggestions as JSON")
    p.set_defaults(run=cmd_lr_find)


def cmd_lr_find(args) -> int:
    from engine.recipe import Recipe
    from engine.train.lr_finder import SweepSettings, find_lr

    recipe = Recipe.load(args.recipe)
    if args.data:
        recipe.data.root = args.data
    if args.weights_file:
        recipe.model.weights_file = args.weights_file
    if args.device:
        recipe.device = args.device
    if args.batch_size:
        recipe.batch_size = args.batch_size
    recipe.validate()
    settings = SweepSettings(args.start, args.end, args.iterations)
    sweep = find_lr(recipe, args.phase - 1, args.group, settings, EventBus([ConsoleReporter(quiet=True)]))
    if args.json:
        data = sweep.to_dict()
        data["suggested_lrs"] = {group: sweep.suggestion_for(group) for group in sweep.swept}
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(sweep_lines(sweep)))
    return EXIT_OK if sweep.suggestion is not None else EXIT_FAILED


def sweep_lines(sweep) -> list[str]:
    where = "cached features" if sweep.on_features else "images"
    ending = {"diverged": f"the loss exploded at {sweep.lrs[-1]:.2g}" if sweep.lrs else "the loss exploded at once",
              "end": "it reached the last rate", "stopped": "it was stopped"}[sweep.ended]
    scope = (f"group '{sweep.group}'" if len(sweep.swept) == 1
             else f"all {len(sweep.swept)} groups together, rates shown for '{sweep.group}'")
    lines = [f"LR range test, phase {sweep.phase_index + 1} '{sweep.phase_name}' ({scope}; on {where}): "
             f"{len(sweep.lrs)} steps in {sweep.seconds:.2f} s; {ending}"]
    if sweep.suggestion is None:
        lines.append("No suggestion: too few steps before the loss exploded; lower --start.")
        return lines
    lines.append(f"Suggested lr: {sweep.suggestion:.2e} (steepest descent of the smoothed loss)")
    if len(sweep.swept) > 1:
        lines.append("  per group: " + ", ".join(f"{g} {sweep.suggestion_for(g):.2e}" for g in sweep.swept))
    lines.append(f"  also: valley (fastai's rule) {sweep.valley:.2e}, minimum / 10 {sweep.minimum_tenth:.2e}")
    low, high = min(sweep.smoothed), max(sweep.smoothed)
    step = max(1, len(sweep.lrs) // CURVE_ROWS)
    lines.append("  lr          smoothed loss")
    for lr, loss in list(zip(sweep.lrs, sweep.smoothed))[::step]:
        bar = "█" * max(1, round(BAR_WIDTH * (loss - low) / max(1e-12, high - low)))
        lines.append(f"  {lr:9.2e}  {loss:9.4f} {bar}")
    return lines
