"""Issue 23, item 3: does compare-models rank architectures as training each one would, and in how much less time?

    .venv/bin/python bench/compare_models.py [--tasks a,b] [--models resnet18,mobilenet_v3_small,shufflenet_v2_x1_0]
                                             [--pretrain-epochs 6]

No ImageNet weights on this machine and no network: every architecture is pretrained here on the 24 texture classes
of bench/transfer_task.py (ResNet-18: the backbone of bench/tasks.py, 14 epochs; the others `--pretrain-epochs`
from scratch, once, kept under $TMPDIR/thaw-bench/torch-home-compare), installed as torchvision's default weights
in one TORCH_HOME. Backbones of unequal quality are what a ranking must tell apart.

For each task: `compare_models` on all of them (one call, timed), then a full feature-extraction run of each model
(the `feature_extraction` preset, trained by the trainer, timed; the feature cache emptied before each so every run
and the comparison compute their features). Reported: each model's cross-validated accuracy (compare-models), its
fitted head's validation accuracy (compare-models) and the full run's validation accuracy, the Spearman rank
correlation between compare-models' CV accuracy and the runs', and the wall times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from tasks import TASKS, prepare_task
from transfer_task import PRETRAIN_CLASSES, bench_base, pretrained_torch_home, write_classes


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def compare_home(archs: list[str], epochs: int) -> Path:
    """A TORCH_HOME with each architecture's default weights pretrained on the texture classes."""
    import torch

    from engine.model import zoo

    texture_home = pretrained_torch_home()  # ResNet-18, as bench/tasks.py uses it
    home = bench_base() / "torch-home-compare"
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCH_HOME"] = str(home)
    for arch in archs:
        target = folder / zoo.weights_file_name(zoo.weights_enum(arch).DEFAULT)
        if target.exists():
            continue
        if arch == "resnet18":
            shutil.copy(texture_home / "hub" / "checkpoints" / target.name, target)
            continue
        from engine.planning.presets import make_recipe
        from engine.train.checkpoints import load_checkpoint
        from engine.train.runs import checkpoint_path
        from engine.train.trainer import fit

        data = write_classes(bench_base() / "transfer2-pretrain-100", PRETRAIN_CLASSES, 80, 20, seed=5)
        recipe = make_recipe("from_scratch", arch, str(data), epochs=epochs)
        recipe.data.resize_size, recipe.data.crop_size, recipe.batch_size = 73, 64, 64
        recipe.data.augmentation = "lesson"
        recipe.output_dir = str(bench_base() / "runs-pretrain-compare")
        started = time.perf_counter()
        result = fit(recipe)
        print(f"pretrained {arch}: {epochs} epochs from scratch, best val acc "
              f"{100 * result.summary['best_val_acc']:.1f} % in {time.perf_counter() - started:.0f} s", flush=True)
        trained = load_checkpoint(checkpoint_path(result.run_dir, "best"))["model"]
        model = zoo.get_model(arch)  # torchvision's layout, 1000 classes: every key but the head's fits
        state = model.state_dict()
        state.update({k: v for k, v in trained.items() if k in state and v.shape == state[k].shape})
        torch.save(state, target)
    return home


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="a,b")
    parser.add_argument("--models", default="resnet18,mobilenet_v3_small,shufflenet_v2_x1_0")
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    archs = args.models.split(",")
    print(f"load average at start: {os.getloadavg()}", flush=True)
    compare_home(archs, args.pretrain_epochs)
    from engine.advise.compare import CompareSettings, compare_models
    from engine.planning.presets import make_recipe
    from engine.train.feature_cache import FeatureStore
    from engine.train.trainer import fit

    for name in args.tasks.split(","):
        data, spec = prepare_task(name), TASKS[name]
        os.environ["TORCH_HOME"] = str(bench_base() / "torch-home-compare")  # prepare_task set the texture one

        def recipe_for(arch: str, strategy: str = "feature_extraction", data=data, spec=spec):
            r = make_recipe(strategy, arch, str(data))
            r.data.resize_size, r.data.crop_size = spec.resize, spec.crop
            r.batch_size, r.data.num_workers, r.data.feature_cache_mb = 32, 0, 0
            r.output_dir = str(bench_base() / "runs-compare")
            return r

        FeatureStore.forget_memory()
        started = time.perf_counter()
        comparison = compare_models(recipe_for(archs[0]), archs, CompareSettings(latency_runs=10))
        compare_s = time.perf_counter() - started
        runs = {}
        for arch in archs:
            FeatureStore.forget_memory()
            tick = time.perf_counter()
            result = fit(recipe_for(arch))
            runs[arch] = (result.summary["final_val_acc"], time.perf_counter() - tick)
        rows = [r for r in comparison.rows if r.status == "measured"]
        print(f"\ntask {name}: {spec.description}")
        print("| model | CV acc (compare) | fitted head val acc (compare) | FE run val acc | latency ms | "
              "compare s | FE run s |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r.arch} | {100 * r.cv_accuracy:.1f} | {100 * r.val_accuracy:.1f} | "
                  f"{100 * runs[r.arch][0]:.1f} | {r.latency_ms:.1f} | {r.seconds:.1f} | {runs[r.arch][1]:.1f} |")
        rho_cv = spearman([r.cv_accuracy for r in rows], [runs[r.arch][0] for r in rows])
        rho_val = spearman([r.val_accuracy for r in rows], [runs[r.arch][0] for r in rows])
        train_s = sum(s for _, s in runs.values())
        print(f"Spearman ρ (CV acc vs FE runs' val acc) = {rho_cv:.2f}; (compare's val acc vs runs') = "
              f"{rho_val:.2f}; compare-models {compare_s:.0f} s for {len(rows)} models against {train_s:.0f} s "
              f"training them one by one; Pareto front: {', '.join(comparison.pareto)}", flush=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
