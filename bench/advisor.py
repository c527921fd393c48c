"""Issue 23, item 4: the strategy advisor on the transfer tasks of bench/tasks.py, its pick beside the best measured
strategy. Goal: on every task the pick is the best measured strategy or within one validation image of it.

    .venv/bin/python bench/advisor.py [--tasks a,b,c]

The advisor runs for real here (`engine.advise`: the probe's feature pass, the fitted head's cross-validation, the
BatchNorm domain shift; then the rules). The strategies' accuracies are NOT trained again by this script: training
every strategy of the three tasks took ~50 minutes of the 2 shared cores (bench/fine_tuning.py, bench/README.md
"Issue 20", the "after" column, seed 0), so the figures of that invocation are cited below (MEASURED). Run
`bench/fine_tuning.py --tasks a,b,c` for fresh ones.
"""

from __future__ import annotations

import argparse
import os
import time

from tasks import TASKS, prepare_task

# bench/README.md, "Issue 20 (fine-tuning after a fitted head)", "after" column: final validation accuracy (%) of
# each strategy, seed 0, 10 epochs, 64 px; (c)'s fine_tune_all is the "before" figure (not rerun, unchanged code)
MEASURED = {
    "a": {"feature_extraction": 78.5, "gradual_unfreezing": 78.5, "extract_then_finetune": 79.0, "fine_tune_all": 77.5},
    "b": {"feature_extraction": 77.1, "gradual_unfreezing": 88.3, "extract_then_finetune": 77.5, "fine_tune_all": 85.0},
    "c": {"feature_extraction": 83.6, "gradual_unfreezing": 85.2, "extract_then_finetune": 82.4, "fine_tune_all": 78.4},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="a,b,c")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on 2 busy cores)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from engine.advise.advisor import advise
    from engine.advise.probe import run_probe
    from engine.planning.presets import make_recipe

    print(f"load average at start: {os.getloadavg()}")
    rows, hits = [], 0
    for name in args.tasks.split(","):
        data = prepare_task(name)
        spec = TASKS[name]
        recipe = make_recipe("feature_extraction", "resnet18", str(data))
        recipe.data.resize_size, recipe.data.crop_size = spec.resize, spec.crop
        recipe.batch_size, recipe.data.num_workers = 32, 0
        recipe.data.feature_cache_mb = 0  # memory only: every invocation measures the feature pass
        started = time.perf_counter()
        probe = run_probe(recipe)
        advice = advise(probe)
        seconds = time.perf_counter() - started
        measured = MEASURED[name]
        best = max(measured, key=measured.get)
        image = 100 / probe.val_images  # one validation image, in points
        picked = measured[advice.preset]
        ok = measured[best] - picked <= image + 1e-9
        hits += ok
        pick = f"{advice.strategy} ({advice.rule})"
        rows.append((name, pick, picked, best, measured[best], image, ok, probe, seconds))
        print(f"\ntask {name}: {spec.description}")
        for reason in advice.reasons:
            print(f"  - {reason}")
    print("\n| task | smallest class | CV acc | domain shift | advisor's pick (rule) | its measured acc | "
          "best measured | 1 val image | within | advisor s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, strategy, picked, best, best_acc, image, ok, probe, seconds in rows:
        print(f"| {name} | {probe.smallest_class} | {100 * probe.cv_accuracy:.1f} | {probe.shift.score:.3f} | "
              f"{strategy} | {picked:.1f} | {best} {best_acc:.1f} | {image:.2f} | {'yes' if ok else 'NO'} | "
              f"{seconds:.1f} |")
    print(f"\nthe pick is the best or within one validation image of it on {hits} of {len(rows)} tasks; "
          f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
