"""Goal 1 of the speed issue: 10 epochs of feature extraction, Thaw (cached features) vs the lesson's loop, on
the same generated JPEG folder, model (ResNet-18, seeded weights), settings and machine, in one invocation.

    .venv/bin/python bench/feature_extraction.py [--epochs 10] [--per-class 32]
"""

from __future__ import annotations

import argparse
import time

from common import bench_dirs, make_jpeg_dataset, seeded_torch_home
from lesson_loop import run_lesson_loop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    seeded_torch_home()
    base, runs = bench_dirs()
    data = make_jpeg_dataset(base / f"jpegs-{args.classes}x{args.per_class}", args.classes, args.per_class,
                             max(2, args.per_class // 4))

    from engine.presets import make_recipe
    from engine.trainer import fit

    lesson = run_lesson_loop(data, epochs=args.epochs)
    recipe = make_recipe("feature_extraction", "resnet18", str(data), epochs=args.epochs)
    recipe.batch_size, recipe.data.num_workers, recipe.output_dir = 64, 2, str(runs)
    started = time.perf_counter()
    result = fit(recipe)
    thaw_seconds = time.perf_counter() - started
    cached = result.summary["phases"][0].get("cached_features", {})
    n = args.classes * args.per_class
    print(f"data: {n} training + {args.classes * max(2, args.per_class // 4)} validation JPEGs, 256 px, "
          f"Resize 256 → RandomCrop 224; ResNet-18, batch 64, {args.epochs} epochs, CPU threads "
          f"{__import__('torch').get_num_threads()}")
    print(f"lesson loop : {lesson['seconds']:8.1f} s   val acc {100 * lesson['val_acc']:.2f} %")
    print(f"thaw cached : {thaw_seconds:8.1f} s   val acc {100 * result.summary['best_val_acc']:.2f} % (final "
          f"{100 * result.summary['final_val_acc']:.2f} %), features {cached.get('seconds', 0):.1f} s")
    print(f"speed-up    : {lesson['seconds'] / thaw_seconds:.2f}x   accuracy difference "
          f"{100 * (result.summary['final_val_acc'] - lesson['val_acc']):+.2f} points")


if __name__ == "__main__":
    main()
