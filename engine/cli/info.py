"""`models`, `scan`, `layers`, `recipe`: what is available, what a folder holds, what a recipe will train."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.cli.exit_codes import EXIT_OK
from engine.errors import BadInputError


def register(sub) -> None:
    help_ = "list torchvision's classification models with their weights"
    p = sub.add_parser("models", help=help_, description=help_)
    p.add_argument("--json", action="store_true")
    p.add_argument("--family", help="only this family (resnet, vgg, mobilenetv3, efficientnet, vision_transformer …)")
    p.set_defaults(run=cmd_models)

    help_ = "check an image folder: classes, counts, imbalance, unusable files"
    p = sub.add_parser("scan", help=help_, description=help_)
    p.add_argument("folder")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_scan)

    help_ = "show a model's layer tree, stages and what a recipe's phases train"
    p = sub.add_parser("layers", help=help_, description=help_)
    p.add_argument("target", help="a model name (resnet18) or a recipe JSON file")
    p.add_argument("--depth", type=int, default=1, help="tree depth to print")
    p.add_argument("--classes", type=int, default=10, help="number of classes for the new head")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_layers)

    help_ = "write a recipe for one of the lesson's strategies"
    p = sub.add_parser("recipe", help=help_, description=help_)
    p.add_argument("strategy", help="feature_extraction, lesson_feature_extraction, fine_tune_all, "
                                    "gradual_unfreezing, extract_then_finetune, from_scratch")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--data", default="", help="image folder")
    p.add_argument("--epochs", type=int, help="total epochs (default: the lesson's)")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.set_defaults(run=cmd_recipe)


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
        print(f"{info.name:<22} {info.family:<20} {info.num_params / 1e6:>9.1f}M {info.input_size:>6} "
              f"{acc:>7}  {weights}")
    return EXIT_OK


def cmd_scan(args) -> int:
    from engine.data.scan import DatasetError, scan_folder

    if args.channels < 1:
        raise BadInputError(f"--channels must be at least 1, got {args.channels}")
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

    if args.classes < 2:
        raise BadInputError(f"--classes must be at least 2, got {args.classes}")
    if args.depth < 0:
        raise BadInputError(f"--depth must be at least 0, got {args.depth}")
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
        raise BadInputError(f"unknown strategy '{args.strategy}'; choose one of {', '.join(STRATEGIES)}")
    recipe = make_recipe(args.strategy, args.model, args.data, args.epochs)
    if args.output:
        recipe.save(args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(recipe.to_json())
    return EXIT_OK
