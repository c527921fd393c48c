"""Issue 24: does domain pre-training on the user's unlabeled images help when the domain is far from the backbone's?

The task, made here (bench/tasks.py): a ResNet-18 pretrained here on 24 texture classes (the bench's "ImageNet"),
a target of 6 classes of line drawings — edges and shapes, not textures — with few labels (`--labels` training
images a class, 40 validation images a class) and `--unlabeled` more drawings without labels, 64 px crops.

In one invocation:
  1. `pretrain` (engine/pretrain/, `--method`) continues the texture backbone on the unlabeled drawings (the
     labelled training images are the k-NN monitor's bank, the validation images its queries), timed;
  2. feature extraction (the fitted head) and gradual unfreezing, each from the original weights and from the
     domain-pretrained weights (`model.weights_file`), for every seed: validation accuracy and wall time.
The goal (issue 24): ≥ 5 points for feature extraction. `--epochs 0` pre-trains nothing: the run only re-estimates
the backbone's BatchNorm statistics on the unlabeled images (AdaBN), which every run also does at its end.

    .venv/bin/python bench/domain_pretraining.py [--unlabeled 1200] [--labels 10] [--epochs 15] [--method simclr]
                                                  [--seeds 0,1,2] [--ft-epochs 10]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from common import bench_dirs
from PIL import Image
from tasks import SHAPES, drawings_data, line_drawing
from transfer_task import bench_base, pretrained_torch_home

STRATEGIES = ("feature_extraction", "gradual_unfreezing")
CROP, RESIZE, VAL_PER_CLASS = 64, 73, 40


def labelled_data(labels: int) -> Path:
    """train/ (labels a class) and val/ (40 a class) folders of drawings, seeded apart from the unlabeled ones."""
    return drawings_data(labels, VAL_PER_CLASS, seed=241, name=f"drawings-few-{labels}+{VAL_PER_CLASS}")


def unlabeled_data(count: int) -> Path:
    """`count` drawings of the same 6 shapes in one folder, no labels."""
    root = bench_base() / f"drawings-unlabeled-{count}"
    if (root / ".done").exists():  # hidden: the scan skips it (a visible file would be listed as "not an image")
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(242)
    for i in range(count):
        Image.fromarray(line_drawing(SHAPES[i % len(SHAPES)], rng)).save(root / f"{i:05d}.jpg", quality=92)
    (root / ".done").write_text("ok")
    return root


def base_recipe(strategy: str, data: Path, runs: Path, seed: int, epochs: int):
    from engine.planning.presets import make_recipe

    recipe = make_recipe(strategy, "resnet18", str(data), epochs=epochs)
    recipe.data.resize_size, recipe.data.crop_size = RESIZE, CROP
    recipe.data.horizontal_flip = True
    recipe.batch_size, recipe.data.num_workers, recipe.output_dir = 32, 0, str(runs)
    recipe.data.feature_cache_mb = 0
    recipe.seed = seed
    return recipe.validate()


def pretrain(args, data: Path, unlabeled: Path, runs: Path) -> tuple[Path, dict]:
    from engine.pretrain.config import PretrainConfig
    from engine.pretrain.events import PretrainEpochFinished, describe
    from engine.pretrain.run import PretrainRun

    recipe = base_recipe("feature_extraction", data, runs, 0, 1)
    recipe.batch_size = args.batch
    out = runs / f"domain-{args.method}.pth"
    config = PretrainConfig(method=args.method, unlabeled=str(unlabeled), epochs=args.epochs, out=str(out),
                            lr=args.lr)

    def show(event) -> None:
        line = describe(event)
        if line and isinstance(event, PretrainEpochFinished) or line and "Pre-training" in line:
            print(f"  {line.splitlines()[0]}  (load {os.getloadavg()[0]:.2f})", flush=True)

    started = time.perf_counter()
    run = PretrainRun(recipe, config, [show])
    assert run.run() == "finished"
    seconds = time.perf_counter() - started
    return out, {"seconds": seconds, "images": len(run.dataset), "knn_start": run.knn_start,
                 "knn_end": run.folder.summary.get("knn_end")}  # after the BatchNorm statistics were re-estimated


def evaluate(strategy: str, data: Path, runs: Path, seed: int, epochs: int, weights_file: str) -> dict:
    from engine.train.trainer import fit

    recipe = base_recipe(strategy, data, runs, seed, epochs)
    recipe.model.weights_file = weights_file
    started = time.perf_counter()
    result = fit(recipe)
    assert result.status in ("finished", "early_stopped"), result.error
    return {"seconds": time.perf_counter() - started, "final": result.summary["final_val_acc"],
            "best": result.summary["best_val_acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unlabeled", type=int, default=1200)
    parser.add_argument("--labels", type=int, default=10, help="labelled training images a class")
    parser.add_argument("--epochs", type=int, default=15,
                        help="pre-training epochs (0: only the BatchNorm statistics re-estimated on the images)")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.0, help="0: the method's rate for the batch")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ft-epochs", type=int, default=10, help="epochs of each evaluation recipe")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--weights", default="", help="evaluate these domain-pretrained weights (a backbone file, or a "
                                                      "pre-training run's checkpoints/last.pt) instead of pre-training")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    pretrained_torch_home()  # the texture ResNet-18 as torchvision's default weights (trained once, reused)
    _, runs = bench_dirs()
    data, unlabeled = labelled_data(args.labels), unlabeled_data(args.unlabeled)
    print(f"task: 6 classes of line drawings, {args.labels} labelled training + {VAL_PER_CLASS} validation images a "
          f"class, {args.unlabeled} unlabeled; backbone: ResNet-18 pretrained here on 24 texture classes; "
          f"{CROP} px. Load average at start {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", flush=True)
    if args.weights:  # pre-trained before (e.g. a run stopped after some epochs): only the comparison
        weights, pre = Path(args.weights), {"seconds": 0.0}
        print(f"domain weights: {weights} (not pre-trained in this invocation)", flush=True)
    else:
        weights, pre = pretrain(args, data, unlabeled, runs)
        per_image = pre["seconds"] / (max(args.epochs, 1) * pre["images"])
        knn = (f"k-NN accuracy {100 * pre['knn_start']:.1f} % → {100 * pre['knn_end']:.1f} %"
               if pre["knn_start"] is not None else "")
        print(f"pre-training ({args.method}): {args.epochs} epochs × {pre['images']} images in {pre['seconds']:.0f} s "
              f"({per_image * 1000:.1f} ms per image-epoch, k-NN passes included); {knn}; load "
              f"{os.getloadavg()[0]:.2f}", flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    for seed in seeds:
        for strategy in args.strategies.split(","):
            for name, file in (("original", ""), ("domain", str(weights))):
                r = evaluate(strategy, data, runs, seed, args.ft_epochs, file)
                results.setdefault((strategy, name), []).append(r)
                print(f"  seed {seed} {strategy:20s} {name:8s} final {100 * r['final']:5.1f} %  best "
                      f"{100 * r['best']:5.1f} %  {r['seconds']:5.0f} s  (load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"\n| strategy | backbone | final val acc (mean of {len(seeds)} seeds) | per seed | wall time (mean) |")
    print("|---|---|---|---|---|")
    for (strategy, name), rows in results.items():
        finals = [100 * r["final"] for r in rows]
        print(f"| {strategy} | {name} | {np.mean(finals):.1f} % | {' / '.join(f'{f:.1f}' for f in finals)} | "
              f"{np.mean([r['seconds'] for r in rows]):.0f} s |")
    for strategy in args.strategies.split(","):
        gain = (np.mean([r["final"] for r in results[(strategy, "domain")]])
                - np.mean([r["final"] for r in results[(strategy, "original")]])) * 100
        goal = " (goal ≥ 5: met)" if strategy == "feature_extraction" and gain >= 5 else (
            " (goal ≥ 5: NOT met)" if strategy == "feature_extraction" else "")
        print(f"gain of domain pre-training, {strategy}: {gain:+.1f} points{goal}")
    print(f"pre-training cost: {pre['seconds']:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
