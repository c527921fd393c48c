"""Goal 3 of the speed issue: the data path. Full fine-tuning with the RAM cache of decoded images off, then on,
on the same generated JPEG folder in one invocation: images/s and the share of step time spent waiting for data
(Thaw measures it per epoch: metrics.csv `data_wait_share`). With the cache, no JPEG is decoded after the
cache is filled, so from the second epoch the loader only crops and flips.

    .venv/bin/python bench/data_path.py [--epochs 3] [--crop 112] [--workers 0]
"""

from __future__ import annotations

import argparse

from common import bench_dirs, make_jpeg_dataset, seeded_torch_home


def run(data, runs, epochs: int, crop: int, workers: int, ram_cache: str) -> list[dict]:
    from engine.planning.presets import make_recipe
    from engine.train.runs import read_metrics
    from engine.train.trainer import fit

    recipe = make_recipe("fine_tune_all", "resnet18", str(data), epochs=epochs, name=f"data-path-{ram_cache}")
    recipe.data.crop_size, recipe.data.resize_size = crop, round(crop * 256 / 224)
    recipe.data.num_workers, recipe.data.ram_cache, recipe.data.cache_features = workers, ram_cache, "off"
    recipe.batch_size, recipe.device, recipe.output_dir = 64, "cpu", str(runs)
    result = fit(recipe)
    assert result.status == "finished", result.error
    return read_metrics(result.run_dir)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--workers", type=int, default=0, help="loader workers (0: decode in the training thread)")
    args = parser.parse_args()
    seeded_torch_home()
    base, runs = bench_dirs()
    data = make_jpeg_dataset(base / "jpegs-10x32", 10, 32, 8)
    print(f"data: 320 training JPEGs (256 px) → Resize {round(args.crop * 256 / 224)} → RandomCrop {args.crop}; "
          f"ResNet-18 fine_tune_all, batch 64, {args.epochs} epochs, {args.workers} loader workers, CPU")
    rows = {mode: run(data, runs, args.epochs, args.crop, args.workers, mode) for mode in ("off", "on")}
    for mode, metrics in rows.items():
        per_epoch = ", ".join(f"{r['images_per_s']:.0f} img/s wait {100 * r['data_wait_share']:.0f} %" for r in metrics)
        print(f"RAM cache {mode:>3}: {per_epoch}")
    later = {mode: metrics[1:] or metrics for mode, metrics in rows.items()}  # steady state: from epoch 2
    ips = {mode: sum(r["images_per_s"] for r in m) / len(m) for mode, m in later.items()}
    wait = {mode: sum(r["data_wait_share"] for r in m) / len(m) for mode, m in later.items()}
    print(f"from epoch 2: data wait {100 * wait['off']:.1f} % → {100 * wait['on']:.1f} %, "
          f"images/s {ips['off']:.1f} → {ips['on']:.1f} ({ips['on'] / ips['off']:.2f}x)")


if __name__ == "__main__":
    main()
