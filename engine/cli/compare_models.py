"""`compare-models`: architectures measured on the recipe's own data (engine/advise/compare.py). Every model with
local weights gets the fitted head's cross-validated accuracy on its cached features, the feature pass's time,
batch-1 latency, parameters, file size and peak memory; a model without local weights is listed, never
downloaded. The results are kept (a JSON under the runs folder, or --out). Exit 0 done, 2 bad input, 3 stopped
with Ctrl-C (the models measured so far are kept)."""

from __future__ import annotations

import json
import sys

from engine.cli.exit_codes import EXIT_OK, EXIT_STOPPED
from engine.cli.job import StageBar, stop_on_ctrl_c

DEFAULT_MODELS = "resnet18,resnet50,mobilenet_v3_large,efficientnet_b0,convnext_tiny,vit_b_16"


def register(sub) -> None:
    help_ = "compare architectures on a recipe's data: accuracy of a fitted head on frozen features, latency, size"
    p = sub.add_parser("compare-models", help=help_, description=help_ + ". Only models whose pretrained weights "
                       "are on this machine are measured; the others are listed, never downloaded.")
    p.add_argument("recipe", help="recipe JSON file (its data; its model is replaced by each of --models)")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated architectures (default "
                                                           f"{DEFAULT_MODELS})")
    p.add_argument("--data", help="override data.root")
    p.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--onnx", action="store_true", help="also export each model to ONNX and time it on "
                                                       "onnxruntime (seconds to minutes a model)")
    p.add_argument("--latency-runs", type=int, default=30, help="timed batch-1 calls per model (default 30)")
    p.add_argument("--out", help="where to keep the results (default: the runs folder's comparisons/)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=cmd_compare_models)


def cmd_compare_models(args) -> int:
    from engine.advise.compare import (
        CompareSettings,
        compare_models,
        default_results_path,
        parse_models,
        save_comparison,
    )
    from engine.errors import BadInputError
    from engine.recipe import Recipe

    recipe = Recipe.load(args.recipe)
    if args.data:
        recipe.data.root = args.data
    if args.device:
        recipe.device = args.device
    recipe.validate()
    if args.latency_runs < 5:
        raise BadInputError("--latency-runs: at least 5 (a median of fewer is noise)")
    archs = parse_models(args.models)
    settings = CompareSettings(latency_runs=args.latency_runs, onnx=args.onnx)
    bar = StageBar(quiet=args.json)
    try:
        with stop_on_ctrl_c("the comparison after this step") as stop:
            comparison = compare_models(
                recipe, archs, settings,
                lambda p: bar(f"[{p.index + 1}/{p.models}] {p.arch}: {p.stage}", p.done, p.total), stop,
                recipe_path=str(args.recipe))
    finally:
        bar.close()
    path = save_comparison(comparison, args.out or default_results_path(recipe))
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        print("\n".join(table_lines(comparison)))
        print(f"kept: {path}")
    if comparison.stopped:
        print(f"stopped: the models measured before Ctrl-C are kept in {path}", file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_OK


def _f(value, fmt: str, empty: str = "—") -> str:
    return empty if value is None else format(value, fmt)


def table_lines(comparison) -> list[str]:
    rows = [("model", "CV acc", "val acc", "features s", "latency ms", "onnx ms", "params M", "file MB", "peak MB",
             "")]
    for r in comparison.rows:
        if r.status != "measured":
            rows.append((r.arch, "", "", "", "", "", "", "", "", f"{r.status}: {r.detail}" if r.detail else r.status))
            continue
        mark = "◆ Pareto" if r.arch in comparison.pareto else ""
        rows.append((r.arch, _f(r.cv_accuracy and 100 * r.cv_accuracy, ".1f"), _f(100 * r.val_accuracy, ".1f"),
                     _f(r.extraction_seconds, ".1f"), _f(r.latency_ms, ".2f"), _f(r.onnx_latency_ms, ".2f"),
                     _f(r.parameters / 1e6, ".2f"), _f(r.file_mb, ".1f"), _f(r.peak_memory_mb, ".0f"), mark))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + ("  " + row[-1] if row[-1] else "")
             for row in rows]
    lines.append(f"{comparison.classes} classes, {comparison.train_images} training / {comparison.val_images} "
                 f"validation images, on {comparison.device}; CV acc: a head fitted on the frozen features "
                 "(5-fold); latency: batch 1, median")
    return lines
