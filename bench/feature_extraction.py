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

    from engine.planning.presets import make_recipe
    from engine.train.trainer import fit

    def thaw(channels_last: str) -> tuple[float, dict]:
        recipe = make_recipe("feature_extraction", "resnet18", str(data), epochs=args.epochs)
        recipe.batch_size, recipe.data.num_workers, recipe.output_dir = 64, 2, str(runs)
        recipe.channels_last = channels_last
        recipe.data.feature_cache_mb = 0  # memory only: each run computes its features (no disk hit)
        started = time.perf_counter()
        result = fit(recipe)
        return time.perf_counter() - started, result.summary

    lesson = run_lesson_loop(data, epochs=args.epochs)
    thaw_seconds, summary = thaw("auto")  # Thaw's defaults: channels_last on the CPU, batch norms folded
    from engine.train.feature_cache import FeatureStore

    FeatureStore.forget_memory()
    plain_seconds, plain = thaw("off")  # the lesson's memory format: what caching alone gives
    cached = summary["phases"][0].get("cached_features", {})
    n = args.classes * args.per_class
    print(f"data: {n} training + {args.classes * max(2, args.per_class // 4)} validation JPEGs, 256 px, "
          f"Resize 256 → RandomCrop 224; ResNet-18 (seeded, batch-norm statistics calibrated: bench/common.py), "
          f"batch 64, {args.epochs} epochs, CPU threads {__import__('torch').get_num_threads()}")
    print(f"lesson loop : {lesson['seconds']:8.1f} s   val acc final {100 * lesson['val_acc']:.2f} % (set-up "
          f"{lesson['setup_seconds']:.1f} s included)")
    print(f"thaw cached : {thaw_seconds:8.1f} s   val acc final {100 * summary['final_val_acc']:.2f} % (best "
          f"{100 * summary['best_val_acc']:.2f} %); backbone pass {cached.get('seconds', 0):.1f} s (channels_last, "
          f"batch norms folded)")
    print(f"  … NCHW    : {plain_seconds:8.1f} s   val acc final {100 * plain['final_val_acc']:.2f} % (best "
          f"{100 * plain['best_val_acc']:.2f} %); backbone pass "
          f"{plain['phases'][0].get('cached_features', {}).get('seconds', 0):.1f} s (channels_last off)")
    print(f"speed-up    : {lesson['seconds'] / thaw_seconds:.2f}x (caching alone, NCHW: "
          f"{lesson['seconds'] / plain_seconds:.2f}x)   goal ≥ 8x: "
          f"{'met' if lesson['seconds'] / thaw_seconds >= 8 else 'NOT met'}")
    difference = 100 * (summary["final_val_acc"] - lesson["val_acc"])
    print(f"accuracy    : final val acc Thaw − lesson = {difference:+.2f} points   goal ≥ −1: "
          f"{'met' if difference >= -1 else 'NOT met'}")


if __name__ == "__main__":
    main()
