"""Issue 25 item 3: what pruning costs and saves on a real transfer task. One invocation trains the unpruned run
(ResNet-18, the bench's texture backbone of bench/tasks.py, extract-then-fine-tune) and prunes it at 30 % and 50 %
of each layer's channels with `prune` (torch-pruning, L2 magnitude, head kept; then the recovery fine-tune), and
prints parameters, weights file size, batch-1 CPU latency and validation accuracy of the unpruned, the pruned and
the fine-tuned model side by side, with the machine's load.

    .venv/bin/python bench/pruning.py [--task a|b] [--epochs 8] [--recovery-epochs 10] [--amounts 0.3,0.5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

from common import bench_dirs
from tasks import TASKS, prepare_task

BATCH = 32


def train_baseline(task: str, epochs: int, runs) -> str:
    from engine.planning.presets import make_recipe
    from engine.train.trainer import fit

    data = prepare_task(task)
    spec = TASKS[task]
    recipe = make_recipe("extract_then_finetune", "resnet18", str(data), epochs=epochs)
    recipe.data.resize_size, recipe.data.crop_size = spec.resize, spec.crop
    recipe.batch_size, recipe.data.num_workers, recipe.output_dir = BATCH, 2, str(runs)
    recipe.data.feature_cache_mb = 0
    recipe.device = "cpu"
    result = fit(recipe, [])
    assert result.status == "finished", result.error
    return str(result.run_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="a", choices=("a", "b"))
    parser.add_argument("--epochs", type=int, default=8, help="the unpruned run's epochs")
    parser.add_argument("--recovery-epochs", type=int, default=10)
    parser.add_argument("--amounts", default="0.3,0.5")
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's CPU threads for everything (1: on a shared 2-core machine two OpenMP threads "
                             "wait on each other and a latency measures that, see 'Export' below)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from engine.infer.prune_run import PruneRequest, prune_run

    _base, runs = bench_dirs()
    print(f"task {args.task}: {TASKS[args.task].description}; resnet18 (the bench's texture backbone), "
          f"{TASKS[args.task].crop} px crops, batch {BATCH}; CPU threads {torch.get_num_threads()}, torch "
          f"{torch.__version__}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    started = time.perf_counter()
    run = train_baseline(args.task, args.epochs, runs)
    print(f"unpruned run: {args.epochs} epochs (extract_then_finetune) in {time.perf_counter() - started:.0f} s; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for amount in (float(a) for a in args.amounts.split(",")):
        tick = time.perf_counter()
        result = prune_run(PruneRequest(run, amount=amount, epochs=args.recovery_epochs, max_drop=100.0,
                                        device="cpu", out=str(runs), latency_runs=args.latency_runs))
        seconds = time.perf_counter() - tick
        print(f"\n--amount {amount}: {seconds:.0f} s (pruning, {args.recovery_epochs} recovery epochs, measurements); "
              f"load average {os.getloadavg()[0]:.2f}")
        print("\n".join(result.summary_lines()), flush=True)
        rows.append((amount, result))
    first = rows[0][1].costs[0]
    print(f"\nsummary (task {args.task}, CPU, {rows[0][1].latency_threads} thread(s), load average now "
          f"{os.getloadavg()[0]:.2f}):")
    print(f"{'model':<34} {'parameters':>12} {'size MB':>8} {'latency ms':>11} {'val acc':>8}")
    print(f"{'unpruned':<34} {first.parameters:>12,} {first.size_bytes / 1e6:>8.2f} {first.latency_ms:>11.2f} "
          f"{100 * first.val_accuracy:>7.1f}%")
    for amount, result in rows:
        for cost in result.costs[1:]:
            label = f"{100 * amount:.0f} %: {cost.label}"
            print(f"{label:<34} {cost.parameters:>12,} {cost.size_bytes / 1e6:>8.2f} {cost.latency_ms:>11.2f} "
                  f"{100 * cost.val_accuracy:>7.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
