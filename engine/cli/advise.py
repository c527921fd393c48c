"""`advise`: which strategy the user's data calls for (engine/advise/advisor.py), from a quick measured probe of
the frozen features, with its reasons and numbers. Exit 0 with advice, 2 for bad input, 3 stopped (Ctrl-C)."""

from __future__ import annotations

import json
import sys

from engine.cli.exit_codes import EXIT_OK, EXIT_STOPPED
from engine.cli.job import StageBar, stop_on_ctrl_c


def register(sub) -> None:
    help_ = "recommend a strategy for a recipe's data, measured: images a class, frozen features, domain shift"
    p = sub.add_parser("advise", help=help_, description=help_ + ". The probe computes the backbone's features "
                       "once (kept in the feature cache, so a feature-extraction run reuses them), fits a head by "
                       "cross-validation and compares your images' statistics with the backbone's pretraining ones.")
    p.add_argument("recipe", help="recipe JSON file")
    p.add_argument("--data", help="override data.root")
    p.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--save", metavar="FILE", help="also write the recipe with the recommended preset applied")
    p.add_argument("--json", action="store_true", help='print {"strategy", "reasons", "measurements", …}')
    p.set_defaults(run=cmd_advise)


def cmd_advise(args) -> int:
    from engine.advise.advisor import advise
    from engine.advise.probe import run_probe
    from engine.recipe import Recipe

    recipe = Recipe.load(args.recipe)
    if args.data:
        recipe.data.root = args.data
    if args.device:
        recipe.device = args.device
    recipe.validate()
    bar = StageBar(quiet=args.json)
    try:
        with stop_on_ctrl_c("the probe") as stop:
            probe = run_probe(recipe, progress=lambda p: bar(f"probe: {p.stage}", p.done, p.total),
                              should_stop=stop)
    finally:
        bar.close()
    if probe is None:
        print("stopped: nothing was advised (features computed so far are not kept)", file=sys.stderr)
        return EXIT_STOPPED
    advice = advise(probe)
    if args.save:
        _save(recipe, advice.preset, args.save)
    if args.json:
        print(json.dumps(advice.to_dict(), indent=2))
        return EXIT_OK
    print(f"Recommended: {advice.title}" + (f" (applies the '{advice.preset}' preset)"
                                             if advice.preset != advice.strategy else ""))
    for reason in advice.reasons:
        print(f"  - {reason}")
    for note in advice.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.save:
        print(f"written: {args.save} (the '{advice.preset}' preset applied)")
    else:
        print(f"  apply it: python main.py advise {args.recipe} --save NEW.json, or the studio's Phases tab")
    return EXIT_OK


def _save(recipe, preset: str, path: str) -> None:
    import copy

    from engine.planning.presets import apply_strategy

    out = copy.deepcopy(recipe)
    apply_strategy(out, preset)
    out.validate().save(path)
