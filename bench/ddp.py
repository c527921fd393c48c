"""Issue 14: training images/s with 1 and with N processes (torchrun + DistributedDataParallel) and the scaling
efficiency, headless, as `python main.py train RECIPE --processes N` runs them.

The same recipe (ResNet-18, `fine_tune_all` — every layer trains, so every step all-reduces 11 M gradients —
cached features off, BatchNorm in train mode) is trained with 1 process and with N, interleaved 1 N 1 N …, each in
fresh processes (the CLI's launcher: torchrun for N > 1). Weak scaling, as DDP is judged: the batch per process is
the same, so N processes train N× more images per step; images/s are those of epochs 2+ (metrics.csv: a run's start
— torchrun, the process group, the model — overlaps epoch 1). speed-up = images/s(N) / images/s(1); efficiency =
speed-up / N. `--strong` keeps the global batch instead (the batch per process divided by N).

On the CPU the processes use gloo and share the machine's cores (each gets cores / N OpenMP threads, as the
launcher sets), so this measures DDP's overhead more than a gain; on a machine with N GPUs (`--device cuda`) each
process has its GPU and NCCL: the issue's goal is ≥ 1.8× with 2 GPUs and ≥ 3.5× with 4.

    .venv/bin/python bench/ddp.py [--processes 2] [--repeats 3] [--epochs 3] [--batches 8] [--batch-size 16]
                                  [--crop 64] [--device cpu|cuda] [--strong]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, bench_dirs, make_jpeg_dataset, seeded_torch_home


def bench_recipe(data: Path, runs: Path, args, processes: int, batch_size: int):
    from engine.planning.presets import make_recipe

    recipe = make_recipe("fine_tune_all", "resnet18", str(data), epochs=args.epochs, name=f"ddp-{processes}")
    recipe.data.resize_size, recipe.data.crop_size = round(args.crop * 256 / 224), args.crop
    recipe.data.cache_features = "off"
    recipe.data.num_workers = 0
    recipe.data.max_train_batches = args.batches  # global batches per epoch: the same work per step count
    recipe.data.max_val_batches = 1
    recipe.batch_size = batch_size
    recipe.device = args.device
    recipe.output_dir = str(runs)
    recipe.distributed.processes = processes
    return recipe.validate()


def timed_run(recipe, folder: Path, timeout_s: float, threads: int = 0) -> dict:
    from engine.train.runs import read_metrics

    path = folder / f"{recipe.name}-{time.monotonic_ns()}.json"
    recipe.save(path)
    before = set(Path(recipe.output_dir).iterdir())
    started = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "train", str(path), "--quiet"], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout_s,
                         env={**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})})
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    (run_dir,) = [d for d in set(Path(recipe.output_dir).iterdir()) - before if (d / "metrics.csv").is_file()]
    rows = read_metrics(run_dir)
    later = rows[1:] or rows
    steady = sum(r["train_images"] for r in later) / sum(r["seconds"] for r in later)
    return {"steady": steady, "first": rows[0]["images_per_s"], "seconds": seconds,
            "images": rows[0]["train_images"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="1-process / N-process pairs, interleaved")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8, help="steps per epoch (max_train_batches)")
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    parser.add_argument("--strong", action="store_true", help="keep the global batch: batch per process / N")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--thread-share", action="store_true",
                        help="a third arm: 1 process limited to one process's share of the cores (cores / N threads), "
                             "to tell DDP's own cost from the cost of OpenMP threads competing for busy cores")
    args = parser.parse_args()

    seeded_torch_home()
    base, runs = bench_dirs()
    data = make_jpeg_dataset(base / "jpegs-10x32", 10, 32, 8)
    n = args.processes
    one = bench_recipe(data, runs, args, 1, args.batch_size)
    many = bench_recipe(data, runs, args, n, args.batch_size // n if args.strong else args.batch_size)
    folder = base / "ddp-recipes"
    folder.mkdir(exist_ok=True)
    print(f"ResNet-18 fine_tune_all, {args.crop} px crops, {args.epochs} epochs × {args.batches} steps, device "
          f"{args.device}; 1 process with batch {one.batch_size} vs {n} processes with batch {many.batch_size} each "
          f"(global {many.batch_size * n}; {'strong' if args.strong else 'weak'} scaling); {os.cpu_count()} CPU "
          f"cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    timed_run(bench_recipe(data, runs, argparse.Namespace(**{**vars(args), "epochs": 1, "batches": 1}), 1,
                           args.batch_size), folder, args.timeout)  # warm-up: file caches, first imports
    singles, groups, shares = [], [], []
    share = max(1, (os.cpu_count() or 1) // n)
    for i in range(args.repeats):
        a = timed_run(one, folder, args.timeout)
        singles.append(a)
        print(f"pair {i + 1}: 1 process  {a['steady']:7.1f} images/s (epochs 2+; {a['seconds']:.1f} s in all)",
              flush=True)
        if args.thread_share:
            c = timed_run(one, folder, args.timeout, threads=share)
            shares.append(c)
            print(f"pair {i + 1}: 1 process with {share} thread(s) {c['steady']:7.1f} images/s (epochs 2+)", flush=True)
        b = timed_run(many, folder, args.timeout)
        groups.append(b)
        print(f"pair {i + 1}: {n} processes {b['steady']:7.1f} images/s (epochs 2+; {b['seconds']:.1f} s in all, "
              f"{b['images']} images per epoch)", flush=True)
    s = statistics.mean(r["steady"] for r in singles)
    m = statistics.mean(r["steady"] for r in groups)
    speedup = m / s
    pairs = [b["steady"] / a["steady"] for a, b in zip(singles, groups)]
    listed = [", ".join(f"{r['steady']:.1f}" for r in runs_) for runs_ in (singles, groups)]
    print(f"images/s   : 1 process {s:.1f} ({listed[0]}); {n} processes {m:.1f} ({listed[1]})")
    print(f"speed-up   : {speedup:.3f}× (per pair {', '.join(f'{p:.2f}' for p in pairs)}); scaling efficiency "
          f"{speedup / n:.3f}")
    if shares:
        c = statistics.mean(r["steady"] for r in shares)
        print(f"per process: {m / n:.1f} images/s in the group vs {c:.1f} for 1 process with the same {share} "
              f"thread(s) = {m / n / c:.3f} (DDP's own cost: gradient all-reduce, the per-step agreement)")
    if args.device.startswith("cuda"):
        goal = {2: 1.8, 4: 3.5}.get(n)
        if goal:
            print(f"goal       : ≥ {goal}× with {n} GPUs: {'met' if speedup >= goal else 'NOT met'}")


if __name__ == "__main__":
    main()
