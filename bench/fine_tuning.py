"""Issue 20: does fine-tuning improve on the fitted head? Every strategy of the lesson on the transfer tasks of
bench/tasks.py, with fastai's `fine_tune` beside them, accuracy and wall time side by side, in one invocation.

For each task (a: small data, similar domain; b: a different domain; c: more images a class), on the same data,
split and backbone (a ResNet-18 trained here on 24 texture classes):
  feature_extraction      the head fitted to convergence on cached features (L-BFGS, L2 by cross-validation)
  gradual_unfreezing      fitted head → + layer4 → all
  extract_then_finetune   fitted head → all layers
  fine_tune_all           every layer from the start, discriminative rates
  fastai fine_tune        vision_learner(resnet18) + fine_tune(E - 1, freeze_epochs=1) (the body frozen one epoch,
                          then everything with one-cycle and graded rates), fastai installed for the bench only
Each Thaw strategy gets the same total of `--epochs` (a fitted head counts as one epoch), 64 px crops, batch 32.
The goals (issue 20): on every task gradual unfreezing and extract-then-fine-tune end at or above their own head
phase (within one validation image); on b and c at least one fine-tuning strategy beats feature extraction;
Thaw's best strategy beats fastai's fine_tune in accuracy, and in time at equal accuracy.

    .venv/bin/python bench/fine_tuning.py [--tasks a,b,c] [--epochs 10] [--seeds 1] [--no-fastai]

fastai: `pip install --no-deps fastai fastcore fasttransform fastdownload "fastprogress<1.1"` then
`pip install matplotlib requests "plum-dispatch<2.10" pyyaml pandas` (nothing that touches torch or torchvision).
"""

from __future__ import annotations

import argparse
import os
import time

from common import bench_dirs
from tasks import TASKS, prepare_task

STRATEGIES = ("feature_extraction", "gradual_unfreezing", "extract_then_finetune", "fine_tune_all")
BATCH = 32


def thaw_run(task: str, strategy: str, epochs: int, seed: int, runs) -> dict:
    from engine.planning.presets import make_recipe
    from engine.train import events as ev
    from engine.train.trainer import fit

    data = prepare_task(task)
    spec = TASKS[task]
    recipe = make_recipe(strategy, "resnet18", str(data), epochs=epochs)
    recipe.data.resize_size, recipe.data.crop_size = spec.resize, spec.crop
    recipe.batch_size, recipe.data.num_workers, recipe.output_dir = BATCH, 2, str(runs)
    recipe.data.feature_cache_mb = 0  # memory only: each run computes its features
    recipe.seed = seed
    setbacks: list = []
    started = time.perf_counter()
    result = fit(recipe, [lambda e: setbacks.append(e) if isinstance(e, ev.PhaseSetBack) else None])
    seconds = time.perf_counter() - started
    assert result.status == "finished", result.error
    s = result.summary
    return {"seconds": seconds, "best": s["best_val_acc"], "final": s["final_val_acc"],
            "phases": s.get("phase_results", []), "setbacks": setbacks, "val_size": s["val_size"]}


def fastai_fine_tune(task: str, epochs: int, seed: int) -> dict:
    import torch
    from fastai.vision.all import ImageDataLoaders, RandomCrop, Resize, accuracy, resnet18, set_seed, vision_learner

    data = prepare_task(task)
    spec = TASKS[task]
    set_seed(seed, reproducible=True)
    started = time.perf_counter()
    dls = ImageDataLoaders.from_folder(data, train="train", valid="val",
                                       item_tfms=[Resize(spec.resize), RandomCrop(spec.crop)], bs=BATCH,
                                       num_workers=2, device=torch.device("cpu"))
    learn = vision_learner(dls, resnet18, metrics=accuracy, pretrained=True)
    accs: list[float] = []
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs - 1, freeze_epochs=1)
    seconds = time.perf_counter() - started
    accs = [float(v[2]) for v in learn.recorder.values]  # (train loss, valid loss, accuracy) per epoch
    return {"seconds": seconds, "best": max(accs), "final": accs[-1], "phases": [], "setbacks": []}


def pct(value) -> str:
    return "     –" if value is None else f"{100 * value:5.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="a,b,c")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--no-fastai", action="store_true")
    args = parser.parse_args()
    _base, runs = bench_dirs()
    import torch

    print(f"fine-tuning after a fitted head (issue 20): {args.epochs} epochs, batch {BATCH}, 64 px, ResNet-18 "
          f"pretrained here on textures; CPU threads {torch.get_num_threads()}, load average at start "
          f"{os.getloadavg()[0]:.2f}")
    verdicts = []
    for task in args.tasks.split(","):
        print(f"\ntask {task}: {TASKS[task].description}")
        print(f"  {'strategy':34s} {'wall s':>7s} {'best':>6s} {'final':>6s}   by phase (final val acc)")
        results: dict[str, list[dict]] = {}
        for strategy in args.strategies.split(","):
            for seed in range(args.seeds):
                out = thaw_run(task, strategy, args.epochs, seed, runs)
                results.setdefault(strategy, []).append(out)
                phases = " → ".join(f"{p['name']} {pct(p['final_val_acc']).strip()}"
                                    + (f" (kept epoch {p['kept_epoch']}: {pct(p['kept_val_acc']).strip()})"
                                       if p.get("kept_epoch") else "") for p in out["phases"])
                warn = f"  ⚠ {len(out['setbacks'])} setback(s)" if out["setbacks"] else ""
                print(f"  {strategy + f' (seed {seed})':34s} {out['seconds']:7.1f} {pct(out['best'])} "
                      f"{pct(out['final'])}   {phases}{warn}", flush=True)
        if not args.no_fastai:
            for seed in range(args.seeds):
                out = fastai_fine_tune(task, args.epochs, seed)
                results.setdefault("fastai", []).append(out)
                print(f"  {f'fastai fine_tune({args.epochs - 1}) (seed {seed})':34s} {out['seconds']:7.1f} "
                      f"{pct(out['best'])} {pct(out['final'])}", flush=True)
        verdicts.append((task, judge(results)))
        print(f"  load average now {os.getloadavg()[0]:.2f}")
    print("\ngoals:")
    for task, lines in verdicts:
        for line in lines:
            print(f"  {task}: {line}")


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def judge(results: dict[str, list[dict]]) -> list[str]:
    lines = []
    val_size = next(r["val_size"] for rs in results.values() for r in rs if "val_size" in r)
    image = 1 / val_size
    for strategy in ("gradual_unfreezing", "extract_then_finetune"):
        if strategy not in results:
            continue
        head = mean([r["phases"][0]["final_val_acc"] for r in results[strategy]])
        final = mean([r["final"] for r in results[strategy]])
        ok = final >= head - image - 1e-9
        lines.append(f"{strategy} ends at {100 * final:.1f}% vs its head phase {100 * head:.1f}% "
                     f"({'met' if ok else 'NOT met'}: within one validation image = {100 * image:.1f} points)")
    fe = mean([r["final"] for r in results.get("feature_extraction", [])]) if "feature_extraction" in results \
        else None
    tuned = {s: mean([r["final"] for r in rs]) for s, rs in results.items()
             if s in ("gradual_unfreezing", "extract_then_finetune", "fine_tune_all")}
    if fe is not None and tuned:
        best_ft = max(tuned, key=tuned.get)
        lines.append(f"best fine-tuning {best_ft} {100 * tuned[best_ft]:.1f}% vs feature extraction {100 * fe:.1f}% "
                     f"({'beats it' if tuned[best_ft] > fe else 'does not beat it'})")
    if "fastai" in results:
        thaw = {s: rs for s, rs in results.items() if s != "fastai"}
        best = max(thaw, key=lambda s: mean([r["final"] for r in thaw[s]]))
        acc, secs = mean([r["final"] for r in thaw[best]]), mean([r["seconds"] for r in thaw[best]])
        f_acc, f_secs = mean([r["final"] for r in results["fastai"]]), mean([r["seconds"] for r in results["fastai"]])
        verdict = "met" if acc > f_acc or (abs(acc - f_acc) < 1e-9 and secs < f_secs) else "NOT met"
        lines.append(f"Thaw's best ({best}) {100 * acc:.1f}% in {secs:.0f} s vs fastai fine_tune {100 * f_acc:.1f}% "
                     f"in {f_secs:.0f} s ({verdict})")
    return lines


if __name__ == "__main__":
    main()
