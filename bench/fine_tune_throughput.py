"""Goal 2 of the speed issue, on the CPU: steady-state images/s of full fine-tuning, Thaw vs the lesson's loop at
the same settings (ResNet-18, every layer training, Resize → RandomCrop → flip, batch 64, 2 loader workers, fp32,
Adam 1e-3, StepLR(7, 0.1)), on the same generated JPEG folder, interleaved lesson, Thaw, lesson, Thaw … in one
invocation. Steady state: the epochs after the first (loader start-up, allocator and kernel warm-up, and Thaw's
RAM cache filling happen in the first). Thaw runs with its defaults for this machine: channels_last on the CPU,
the RAM cache of decoded images (auto), the same 2 loader workers. Goal: ≥ 1.0x.

    .venv/bin/python bench/fine_tune_throughput.py [--epochs 2] [--repeats 2] [--crop 224]
"""

from __future__ import annotations

import argparse
import statistics

from common import bench_dirs, make_jpeg_dataset, seeded_torch_home
from lesson_loop import run_lesson_loop

GOAL = 1.0


def thaw_run(data, runs, epochs: int, crop: int, resize: int) -> list[dict]:
    from engine.planning.presets import make_recipe
    from engine.train.runs import read_metrics
    from engine.train.trainer import fit

    recipe = make_recipe("fine_tune_all", "resnet18", str(data), epochs=epochs, name="fine-tune-throughput")
    recipe.data.resize_size, recipe.data.crop_size = resize, crop
    recipe.data.num_workers, recipe.data.cache_features = 2, "off"
    recipe.batch_size, recipe.device, recipe.precision, recipe.output_dir = 64, "cpu", "fp32", str(runs)
    phase = recipe.phases[0]
    phase.lr_preset, phase.lr, phase.optimizer.name = "single", 1e-3, "adam"
    phase.schedule.name, phase.schedule.step_size, phase.schedule.gamma = "step", 7, 0.1
    result = fit(recipe.validate())
    assert result.status == "finished", result.error
    return read_metrics(result.run_dir)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--crop", type=int, default=224)
    args = parser.parse_args()
    resize = round(args.crop * 256 / 224)
    seeded_torch_home()
    base, runs = bench_dirs()
    data = make_jpeg_dataset(base / "jpegs-10x32", 10, 32, 8)
    import torch

    print(f"data: 320 training JPEGs (256 px) → Resize {resize} → RandomCrop {args.crop} → flip; ResNet-18 (seeded "
          f"weights) fine-tuning, every layer, batch 64, 2 loader workers, fp32, Adam; {args.epochs} epochs per run; "
          f"CPU, {torch.get_num_threads()} threads")
    lesson, thaw = [], []
    for i in range(args.repeats):
        a = run_lesson_loop(data, epochs=args.epochs, batch_size=64, workers=2, resize=resize, crop=args.crop,
                            fine_tune=True, device="cpu")["epoch_images_per_s"]
        lesson.append(statistics.mean(a[1:] or a))
        print(f"run {2 * i + 1} lesson : per epoch {', '.join(f'{v:.1f}' for v in a)} images/s", flush=True)
        b = [row["images_per_s"] for row in thaw_run(data, runs, args.epochs, args.crop, resize)]
        thaw.append(statistics.mean(b[1:] or b))
        print(f"run {2 * i + 2} Thaw   : per epoch {', '.join(f'{v:.1f}' for v in b)} images/s", flush=True)
    ratio = statistics.mean(thaw) / statistics.mean(lesson)
    print(f"steady state (epochs 2+): lesson {statistics.mean(lesson):.1f} images/s, Thaw {statistics.mean(thaw):.1f} "
          f"images/s")
    print(f"ratio       : Thaw / lesson = {ratio:.2f}x   goal ≥ {GOAL:.1f}x: {'met' if ratio >= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
