"""Issue 12, suspect labels: flip 10 % of a seeded task's labels, train, and check how many of the flipped files
`label-issues` puts in the top 2 × (number flipped) of its suspect list (goal ≥ 80 %), and how long the analysis
takes for 1 000 images once the features are cached (the feature-extraction run cached them).

    .venv/bin/python bench/label_noise.py [--per-class 100] [--noise 0.1] [--crop 112] [--epochs 2]

The data: the generated JPEG task of bench/common.py (10 classes, 80 % train / 20 % validation per class), copied
under random file names (a name must not give the class away) with a seeded 10 % of the files, train and
validation alike, moved to another class's folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
from common import bench_dirs, make_jpeg_dataset, seeded_torch_home


def noisy_copy(data: Path, target: Path, noise: float, seed: int = 0) -> set[str]:
    """Copy train/ and val/ to `target` under random names, a share `noise` of the files in a wrong class.
    Returns the flipped files' paths."""
    rng = np.random.default_rng(seed)
    shutil.rmtree(target, ignore_errors=True)
    files = sorted(data.glob("*/class_*/*.jpg"))
    classes = sorted({f.parent.name for f in files})
    flipped_index = set(rng.choice(len(files), size=round(noise * len(files)), replace=False).tolist())
    names = rng.permutation(len(files))
    flipped: set[str] = set()
    for i, source in enumerate(files):
        split, label = source.parent.parent.name, source.parent.name
        if i in flipped_index:
            label = rng.choice([c for c in classes if c != label])
        destination = target / split / label / f"img_{names[i]:05d}.jpg"
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        if i in flipped_index:
            flipped.add(str(destination))
    return flipped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=100, help="images per class (80 %% train, 20 %% val)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed analyses on the cached features")
    args = parser.parse_args()
    seeded_torch_home()
    base, runs = bench_dirs()
    train_per_class = round(0.8 * args.per_class)
    data = make_jpeg_dataset(base / f"jpegs-{args.classes}x{train_per_class}", args.classes, train_per_class,
                             args.per_class - train_per_class)
    flipped = noisy_copy(data, runs / "noisy", args.noise)

    import torch

    from engine.infer.label_issues import find_run_label_issues
    from engine.planning.presets import make_recipe
    from engine.train.feature_cache import FeatureStore
    from engine.train.trainer import fit

    recipe = make_recipe("feature_extraction", "resnet18", str(runs / "noisy"), epochs=args.epochs)
    recipe.data.resize_size, recipe.data.crop_size = round(args.crop * 256 / 224), args.crop
    recipe.batch_size, recipe.data.num_workers, recipe.output_dir, recipe.device = 64, 0, str(runs), "cpu"
    started = time.perf_counter()
    result = fit(recipe)
    train_seconds = time.perf_counter() - started
    timings = []
    for _ in range(args.repeats):
        FeatureStore.forget_memory()  # the features come from the disk cache, as in a later session
        started = time.perf_counter()
        report = find_run_label_issues(result.run_dir)
        timings.append((time.perf_counter() - started, report.feature_seconds, report.analysis_seconds))
    top = [s.path for s in report.suspects[:2 * len(flipped)]]
    found = len(flipped & set(top))
    in_list = len(flipped & {s.path for s in report.suspects})
    false = len([p for p in top if p not in flipped])
    print(f"task: {report.images} images ({args.classes} classes, {args.crop} px), {len(flipped)} labels flipped "
          f"({100 * args.noise:.0f} %); feature extraction {args.epochs} epochs: best val acc "
          f"{100 * result.summary['best_val_acc']:.1f} % ({train_seconds:.1f} s); torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"suspect list: {len(report.suspects)} images; out-of-fold accuracy "
          f"{100 * report.out_of_fold_accuracy:.1f} %")
    print(f"flipped files in the top {len(top)} (2 × flipped): {found} of {len(flipped)} = "
          f"{100 * found / len(flipped):.1f} %   goal ≥ 80 %: {'met' if found >= 0.8 * len(flipped) else 'NOT met'}")
    print(f"flipped files anywhere in the list: {in_list}; unflipped files in the top {len(top)}: {false}")
    for i, (total, features, analysis) in enumerate(timings):
        print(f"run {i + 1}: {total:.2f} s for {report.images} images = features from the cache {features:.2f} s "
              f"+ out-of-fold head, confident learning, duplicates {analysis:.2f} s (+ model and data set-up)")


if __name__ == "__main__":
    main()
