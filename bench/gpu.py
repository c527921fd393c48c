"""Goal 7 of the speed issue (and goal 2 on a GPU): training throughput on one CUDA GPU.

For ResNet-18, ResNet-50, MobileNet V3 large, EfficientNet-B0 and ViT-B/16 at 224 px (random initialisation:
weights=None is enough for throughput), every layer training with Adam:

  synthetic fp32        random tensors already on the GPU, no autocast, contiguous (NCHW): the lesson's precision
  synthetic bf16+CL     the same under bf16 autocast with channels_last: what Thaw does on CUDA
  ... + loss.item()     the same, synchronising every step as Thaw's loop does (float(loss) per batch)
  real, Thaw            engine.train.trainer.fit on generated JPEGs: Thaw's own data path (decoded-image RAM cache,
                        DataLoader workers, per-sample seeded torchvision.transforms.v2 on the CPU), bf16+CL
  real, uint8→GPU       a DataLoader over engine.data.datasets.ImageFiles with the same RAM cache, but the CPU only
                        crops and flips uint8 images; float conversion and normalisation run on the GPU
  compiled              (--compile) synthetic bf16+CL through torch.compile

Steady state: synthetic figures are timed after warm-up iterations with torch.cuda.synchronize() around the
timed ones; real figures train one epoch over 10 240 generated JPEGs (40 batches of 256) and count its second
half, after CUDA warm-up, loader start-up and the batches the workers prefetched meanwhile (Thaw's own figure for
the epoch, from metrics.csv, which includes all that, is printed too).

Also the lesson's fp32 loop (bench/lesson_loop.py: ResNet-18 fine-tuning, batch 64, 2 PIL workers) against Thaw's
fit of the same recipe on the same JPEGs: goal 2, "mixed precision + channels_last ≥ 2× the lesson's fp32 loop".

Goals (H100 class): ResNet-50 ≥ 3 000 img/s, ResNet-18 ≥ 8 000 img/s, real data ≥ 85 % of synthetic.
Everything runs within a time budget (default 450 s; the whole script stays under 8 minutes): a measurement
that would not fit is skipped and said so. Without a CUDA device it prints "no CUDA device: skipped" and exits 0.

    .venv/bin/python bench/gpu.py [--quick] [--compile] [--budget 450] [--models resnet18,resnet50]
    .venv/bin/python bench/gpu.py --smoke-cpu      # the same code on the CPU at toy sizes: checks the script only
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common import bench_dirs, exit_now, make_jpeg_dataset, seeded_torch_home

STARTED = time.perf_counter()
MODELS = {  # arch: batch size
    "resnet18": 256, "resnet50": 256, "mobilenet_v3_large": 256, "efficientnet_b0": 256, "vit_b_16": 128,
}
PUBLISHED = {"resnet18": 8000.0, "resnet50": 3000.0}  # images/s, H100 class
REAL_SHARE_GOAL = 0.85
LESSON_GOAL = 2.0
HARD_MARGIN_S = 20  # an alarm at budget + this ends the script whatever happens (470 s < 8 min by default)


# --- time budget ----------------------------------------------------------------------------------------------
class Budget:
    def __init__(self, seconds: float):
        self.deadline = STARTED + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def allows(self, estimate_s: float, what: str) -> bool:
        if self.left() >= estimate_s:
            return True
        print(f"  skipped: {what} (needs ~{estimate_s:.0f} s, {max(0.0, self.left()):.0f} s of the budget left)",
              flush=True)
        return False


def elapsed() -> str:
    return f"[{time.perf_counter() - STARTED:5.0f} s]"


# --- data -----------------------------------------------------------------------------------------------------
def _shard(args: tuple) -> str:
    root, classes, train, val, seed = args
    make_jpeg_dataset(Path(root), classes, train, val, size=256, seed=seed)
    return root


def generate_data(root: Path, classes: int, per_class: int, val_per_class: int, workers: int) -> Path:
    """make_jpeg_dataset in parallel shards (different seeds), merged into one train/ + val/ folder."""
    if (root / "done").exists():
        return root
    shards = max(1, min(workers, per_class // 8))
    parts = [(str(root.parent / f"{root.name}-shard{k}"), classes, math.ceil(per_class / shards),
              math.ceil(val_per_class / shards), 1000 + k) for k in range(shards)]
    with ProcessPoolExecutor(max_workers=shards) as pool:
        done = list(pool.map(_shard, parts))
    for k, shard in enumerate(done):
        for path in Path(shard).rglob("*.jpg"):
            target = root / path.relative_to(shard).parent / f"s{k:02d}-{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
        shutil.rmtree(shard)
    (root / "done").write_text("ok")
    return root


# --- synthetic ------------------------------------------------------------------------------------------------
def build(arch: str, size: int):
    from engine.model.build import build_model
    from engine.recipe import DataConfig, ModelConfig

    data = DataConfig(resize_size=round(size * 256 / 224), crop_size=size)
    return build_model(ModelConfig(arch=arch, weights="none"), 10, data, pretrained=False)


def synthetic(arch: str, batch: int, size: int, device, precision: str, channels_last: bool, sync_each: bool,
              compiled: bool, warmup: int, iters: int) -> float:
    import torch
    from torch import nn

    from engine.train.devices import DeviceSetup

    setup = DeviceSetup(device, precision, channels_last)
    model = build(arch, size).model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with setup.autocast():
            out = forward(x)
            loss = criterion((out.logits if hasattr(out, "logits") else out).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sync_each:
            float(loss.detach())

    for _ in range(warmup):
        step()
    synchronize(device)
    tick = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    ips = batch * iters / (time.perf_counter() - tick)
    model = forward = optimizer = x = y = None  # drop the references (the closure `step` shares them)
    release(device)
    return ips


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --- real data: Thaw's trainer ----------------------------------------------------------------------------------
class BatchClock:
    """When each training batch ended and how many images it held; an engine event callback for Thaw's trainer
    (BatchFinished, DataPrepared, EpochFinished), or fed by hand (`add`)."""

    def __init__(self, batch_size: int, seed: int = 0, max_batches: int = 0):
        self.batch_size, self.seed, self.max_batches = batch_size, seed, max_batches
        self.marks: list[tuple[float, int, int]] = []  # (time, epoch, images in the batch)
        self.train_size = 0
        self.wait_share: dict[int, float] = {}

    def add(self, epoch: int, images: int) -> None:
        self.marks.append((time.perf_counter(), epoch, images))

    def __call__(self, event) -> None:
        name = type(event).__name__
        if name == "DataPrepared":
            self.train_size = event.train_size
        elif name == "BatchFinished":
            from engine.train.sampling import epoch_order

            total = len(epoch_order(self.train_size, self.batch_size, self.seed, event.epoch, self.max_batches))
            self.add(event.epoch, min(self.batch_size, total - event.batch * self.batch_size))
        elif name == "EpochFinished":
            self.wait_share[event.epoch] = getattr(event, "data_wait_share", float("nan"))

    def steady(self) -> float:
        """Images/s over the second half of the last epoch's batches: CUDA warm-up, loader start-up and the batches
        the workers prefetched meanwhile all fall in the first half."""
        if not self.marks:
            return float("nan")
        last = [m for m in self.marks if m[1] == self.marks[-1][1]]
        half = len(last) // 2
        if len(last) - half < 2:
            return float("nan")
        seconds = last[-1][0] - last[half][0]
        return sum(n for _, _, n in last[half + 1:]) / seconds if seconds > 0 else float("nan")


def thaw_recipe(arch: str, data: Path, runs: Path, batch: int, epochs: int, device: str, smoke: bool,
                weights: str = "none"):
    from engine.planning.presets import make_recipe

    recipe = make_recipe("fine_tune_all", arch, str(data), epochs=epochs, name=f"gpu-{arch}")
    recipe.model.weights = weights
    recipe.batch_size = batch
    recipe.device = device
    recipe.data.cache_features = "off"
    recipe.data.max_val_batches = 1  # validation is not what is measured
    recipe.output_dir = str(runs)
    if smoke:
        recipe.data.resize_size, recipe.data.crop_size = 73, 64
        recipe.data.num_workers = 1
        recipe.precision, recipe.channels_last = "bf16", "on"
    return recipe.validate()


def thaw_real(recipe) -> dict:
    from engine.train.runs import read_metrics
    from engine.train.trainer import fit

    clock = BatchClock(recipe.batch_size, recipe.seed, recipe.data.max_train_batches)
    tick = time.perf_counter()
    result = fit(recipe, callbacks=[clock])
    if result.status != "finished":
        raise RuntimeError(result.error)
    rows = read_metrics(result.run_dir)
    last_epoch = clock.marks[-1][1] if clock.marks else 0
    shutil.rmtree(result.run_dir, ignore_errors=True)  # checkpoints of big models: do not fill the disk
    return {"steady": clock.steady(), "last_epoch": rows[-1]["images_per_s"] if rows else float("nan"),
            "wait_share": clock.wait_share.get(last_epoch, float("nan")), "seconds": time.perf_counter() - tick,
            "device": result.summary.get("device", "")}


# --- real data: uint8 on the CPU, float and normalisation on the GPU --------------------------------------------
def uint8_gpu_real(arch: str, data: Path, batch: int, epochs: int, device, precision: str, size: int,
                   workers: int | None) -> dict:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision.transforms import v2

    from engine.data.datasets import ImageFiles, prepare_data
    from engine.data.ram_cache import DecodedImageCache, default_budget_bytes, fill
    from engine.recipe import DataConfig
    from engine.train.devices import DeviceSetup
    from engine.train.sampling import epoch_order
    from engine.train.setup import auto_workers

    built = build(arch, size)
    prep = built.preprocessing
    config = DataConfig(root=str(data), resize_size=prep.resize_size, crop_size=prep.crop_size)
    prepared = prepare_data(config, None, None, 3)
    train = ImageFiles(prepared.train.samples, v2.Compose([v2.RandomCrop(prep.crop_size), v2.RandomHorizontalFlip()]))
    train.cache = DecodedImageCache(prep.resize_size, prep.interpolation, default_budget_bytes())
    fill(train.cache, len(train), train.decode, max(1, min(8, os.cpu_count() or 2)))
    setup = DeviceSetup(device, precision, True)
    model = built.model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    mean = torch.tensor(prep.mean, device=device).view(1, -1, 1, 1) * 255
    std = torch.tensor(prep.std, device=device).view(1, -1, 1, 1) * 255
    workers = auto_workers(len(train)) if workers is None else workers
    clock = BatchClock(batch)
    for epoch in range(epochs):
        train.set_epoch(epoch)
        order = epoch_order(len(train), batch, 0, epoch, 0)
        loader = DataLoader(train, batch_size=batch, sampler=order, num_workers=workers,
                            pin_memory=device.type == "cuda")
        for _i, (images, labels) in enumerate(loader):
            images = images.to(device, non_blocking=True).float().sub_(mean).div_(std)
            images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with setup.autocast():
                loss = criterion(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            float(loss.detach())  # as Thaw's loop does
            clock.add(epoch, labels.numel())
    del model, optimizer
    release(device)
    return {"steady": clock.steady(), "workers": workers}


# --- the lesson's loop (goal 2) ---------------------------------------------------------------------------------
def lesson_vs_thaw(data: Path, runs: Path, device, smoke: bool, budget: Budget) -> dict | None:
    from lesson_loop import run_lesson_loop

    out: dict = {}
    if budget.allows(40, "the lesson's fp32 loop (ResNet-18, batch 64, 2 workers)"):
        kwargs = dict(resize=73, crop=64, max_batches=4) if smoke else {}
        lesson = run_lesson_loop(data, epochs=1, batch_size=64, workers=2, fine_tune=True, device=str(device), **kwargs)
        out["lesson"] = lesson["images_per_s"]
        out["lesson_wait"] = lesson["data_wait_share"]
        print(f"{elapsed()} lesson loop, fp32, ResNet-18 fine-tuning, batch 64, 2 PIL workers: "
              f"{lesson['images_per_s']:8.0f} images/s (data wait {100 * lesson['data_wait_share']:.0f} %)", flush=True)
    if "lesson" in out and budget.allows(40, "Thaw's fit of the lesson's recipe (batch 64)"):
        recipe = thaw_recipe("resnet18", data, runs, 64, 1, device.type, smoke, weights="DEFAULT")
        thaw = thaw_real(recipe)
        release(device)
        out["thaw"] = thaw["steady"]
        out["thaw_last_epoch"] = thaw["last_epoch"]
        print(f"{elapsed()} Thaw fit, same recipe ({thaw['device']}), batch 64: {thaw['steady']:8.0f} images/s steady "
              f"({thaw['last_epoch']:.0f} Thaw's own figure for the epoch), data wait "
              f"{100 * thaw['wait_share']:.0f} %", flush=True)
    return out


# --- the report -------------------------------------------------------------------------------------------------
def fmt(value, width: int = 8, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—".rjust(width)
    return f"{value:{width}.{digits}f}"


def print_table(results: dict, lesson: dict | None, compiled: bool) -> None:
    print()
    head = (f"{'model':20s} {'batch':>5s} {'fp32':>8s} {'bf16+CL':>8s} {'x fp32':>6s} {'+item':>8s} {'Thaw':>8s} "
            f"{'real %':>6s} {'wait %':>6s} {'u8→GPU':>8s} {'real %':>6s}" + (f" {'compiled':>8s}" if compiled else "")
            + "   goal")
    print("images/s (training, steady state; real % = real / synthetic bf16+CL; wait % = Thaw's data-wait share)")
    print(head)
    for arch, r in results.items():
        syn = r.get("bf16")
        ratio = syn / r["fp32"] if syn and r.get("fp32") else None
        real_share = r["thaw"]["steady"] / syn if syn and r.get("thaw") else None
        u8_share = r["u8"]["steady"] / syn if syn and r.get("u8") else None
        goal = ""
        if arch in PUBLISHED and syn:
            goal = f"synthetic {syn / PUBLISHED[arch]:.2f}x of {PUBLISHED[arch]:.0f}"
        if real_share is not None:
            goal += f"{'; ' if goal else ''}real {'met' if real_share >= REAL_SHARE_GOAL else 'NOT met'} (≥ 85 %)"
        print(f"{arch:20s} {r['batch']:5d} {fmt(r.get('fp32'))} {fmt(syn)} {fmt(ratio, 6, 2)} "
              f"{fmt(r.get('bf16_sync'))} "
              f"{fmt(r['thaw']['steady'] if r.get('thaw') else None)} {fmt(real_share and 100 * real_share, 6)} "
              f"{fmt(r['thaw']['wait_share'] * 100 if r.get('thaw') else None, 6)} "
              f"{fmt(r['u8']['steady'] if r.get('u8') else None)} {fmt(u8_share and 100 * u8_share, 6)}"
              + (f" {fmt(r.get('compiled'))}" if compiled else "") + f"   {goal}")
    if lesson and lesson.get("lesson") and lesson.get("thaw"):
        ratio = lesson["thaw"] / lesson["lesson"]
        print(f"goal 2 on this GPU: Thaw (bf16 + channels_last, RAM cache, workers) / the lesson's fp32 loop = "
              f"{ratio:.2f}x (goal ≥ {LESSON_GOAL:.0f}x: {'met' if ratio >= LESSON_GOAL else 'NOT met'})")
    for arch in ("resnet18", "resnet50"):
        r = results.get(arch, {})
        if r.get("fp32") and r.get("bf16"):
            print(f"  {arch}: bf16 + channels_last vs fp32 on the same synthetic loop = {r['bf16'] / r['fp32']:.2f}x")
    print(f"total {time.perf_counter() - STARTED:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 and ResNet-50 only, fewer images and steps")
    parser.add_argument("--compile", action="store_true", help="also time synthetic bf16+CL under torch.compile")
    parser.add_argument("--budget", type=float, default=450, help="seconds for the whole script (default 450)")
    parser.add_argument("--models", default="", help="comma-separated subset of " + ",".join(MODELS))
    parser.add_argument("--per-class", type=int, default=0, help="training JPEGs per class (10 classes)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True "
                                                                        "(Thaw does not set it)")
    parser.add_argument("--smoke-cpu", action="store_true", help="run on the CPU at toy sizes (checks the script)")
    args = parser.parse_args()

    import torch

    smoke = args.smoke_cpu
    if not torch.cuda.is_available() and not smoke:
        print("no CUDA device: skipped (bench/gpu.py measures training throughput on a CUDA GPU; "
              "`--smoke-cpu` runs its code on the CPU at toy sizes)")
        return
    hard_limit = int(args.budget + HARD_MARGIN_S)
    signal.signal(signal.SIGALRM, lambda *_: (print(f"\nhard time limit of {hard_limit} s reached: stopping; "
                                                      "the figures above are complete", flush=True), exit_now(0)))
    signal.alarm(max(1, int(hard_limit - (time.perf_counter() - STARTED))))
    budget = Budget(args.budget)
    device = torch.device("cpu" if smoke else "cuda")
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    archs = [a for a in (args.models.split(",") if args.models else MODELS) if a]
    if args.quick:
        archs = [a for a in archs if a in ("resnet18", "resnet50")] or archs[:1]
    if smoke:
        archs = archs[:1] if args.models else ["resnet18"]
    unknown = [a for a in archs if a not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    size = 64 if smoke else 224
    warmup, iters = (1, 2) if smoke else ((5, 15) if args.quick else (10, 30))
    per_class = args.per_class or (16 if smoke else (512 if args.quick else 1024))
    precision = "bf16"

    seeded_torch_home()
    base, runs = bench_dirs()
    tick = time.perf_counter()
    data = generate_data(base / f"jpegs-gpu-10x{per_class}", 10, per_class, max(4, per_class // 32),
                         workers=min(16, os.cpu_count() or 2))
    name = "CPU (smoke test: figures mean nothing)" if smoke else torch.cuda.get_device_name(device)
    print(f"device: {name}; torch {torch.__version__}; {os.cpu_count()} CPU cores; cudnn.benchmark "
          f"{torch.backends.cudnn.benchmark}; TF32 convs {torch.backends.cudnn.allow_tf32}, matmul "
          f"{torch.backends.cuda.matmul.allow_tf32}")
    print(f"data: 10 classes × {per_class} training JPEGs (256×256, quality 90) + {max(4, per_class // 32)} validation "
          f"per class, made in {time.perf_counter() - tick:.0f} s; input {size} px; Adam, every layer trains; "
          f"synthetic: {warmup} warm-up + {iters} timed steps; real: one epoch, its second half timed; budget "
          f"{args.budget:.0f} s", flush=True)

    results: dict[str, dict] = {}
    estimates = {"resnet18": 1.0, "resnet50": 2.0, "mobilenet_v3_large": 1.2, "efficientnet_b0": 1.8, "vit_b_16": 3.0}

    def measure(arch: str, what: str, estimate: float, fn):
        if not budget.allows(estimate * (0.3 if smoke else 1) * estimates[arch], f"{arch} {what}"):
            return None
        try:
            value = fn()
        except torch.cuda.OutOfMemoryError:
            print(f"  {arch} {what}: out of memory at batch {MODELS[arch]}", flush=True)
            release(device)
            return None
        return value

    def synthetic_rows(arch: str) -> None:
        batch = 8 if smoke else MODELS[arch]
        r = results.setdefault(arch, {"batch": batch})
        r["fp32"] = measure(arch, "synthetic fp32", 12, lambda: synthetic(
            arch, batch, size, device, "fp32", False, False, False, warmup, iters))
        r["bf16"] = measure(arch, "synthetic bf16+CL", 8, lambda: synthetic(
            arch, batch, size, device, precision, True, False, False, warmup, iters))
        r["bf16_sync"] = measure(arch, "synthetic bf16+CL with loss.item() per step", 8, lambda: synthetic(
            arch, batch, size, device, precision, True, True, False, warmup, iters))
        print(f"{elapsed()} {arch:20s} batch {batch}: synthetic fp32 {fmt(r['fp32'])}, bf16+CL {fmt(r['bf16'])}, "
              f"+loss.item() per step {fmt(r['bf16_sync'])} images/s", flush=True)

    def real_row(arch: str) -> None:
        r = results[arch]
        recipe = thaw_recipe(arch, data, runs, r["batch"], 1, device.type, smoke)
        r["thaw"] = measure(arch, "real data through Thaw's trainer", 30, lambda: thaw_real(recipe))
        release(device)  # the trainer's model, optimizer and RAM cache are garbage now
        if r["thaw"]:
            t = r["thaw"]
            print(f"{elapsed()} {arch:20s} real (Thaw fit, {t['device']}): {t['steady']:8.0f} images/s steady, "
                  f"{t['last_epoch']:.0f} Thaw's own figure for the epoch, data wait {100 * t['wait_share']:.0f} %",
                  flush=True)

    def u8_row(arch: str) -> None:
        r = results[arch]
        r["u8"] = measure(arch, "real data, uint8 loader + GPU normalisation", 25, lambda: uint8_gpu_real(
            arch, data, r["batch"], 1, device, precision, size, 1 if smoke else None))
        if r["u8"]:
            print(f"{elapsed()} {arch:20s} real (uint8 crops, GPU normalise, {r['u8']['workers']} workers): "
                  f"{r['u8']['steady']:8.0f} images/s steady", flush=True)

    # Most important first, so that a tight budget still answers the published goals.
    first = [a for a in archs if a in PUBLISHED]
    rest = [a for a in archs if a not in PUBLISHED]
    for arch in first:
        synthetic_rows(arch)
        real_row(arch)
    lesson = lesson_vs_thaw(data, runs, device, smoke, budget) if "resnet18" in archs else None
    for arch in rest:
        synthetic_rows(arch)
        real_row(arch)
    for arch in archs:
        u8_row(arch)
    if args.compile:
        for arch in archs:
            batch = results[arch]["batch"]
            results[arch]["compiled"] = measure(arch, "torch.compile (compile time included in the estimate)", 90,
                                                lambda arch=arch, batch=batch: synthetic(arch, batch, size, device,
                                                                                         precision, True, False, True,
                                                                                         max(3, warmup), iters))
            print(f"{elapsed()} {arch:20s} compiled bf16+CL {fmt(results[arch]['compiled'])} images/s", flush=True)
    signal.alarm(0)
    print_table(results, lesson, args.compile)


if __name__ == "__main__":
    main()
