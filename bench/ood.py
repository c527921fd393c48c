"""Issue 12, out-of-distribution warning: AUROC of Thaw's OOD score (Mahalanobis distance of the head's input to
the nearest class, calibrated on the validation split: engine/infer/ood.py) for in-distribution validation images
against images of other kinds, and the energy score (−logsumexp of the logits) on the same images as the
baseline. Goal: AUROC ≥ 0.9.

    .venv/bin/python bench/ood.py [--strategy feature_extraction] [--epochs 3] [--crop 112] [--per-class 40]

In-distribution: classes 0–4 of the generated JPEG task (bench/common.py). Out-of-distribution, generated here:
the validation images of classes 5–9 (other generated classes: same kind of image, other colours and stripes),
uniform noise, and smooth colour fields with stripes at random angles (bench/common.calibration_images).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from common import bench_dirs, calibration_images, make_jpeg_dataset, seeded_torch_home
from PIL import Image

IN_CLASSES = 5


def in_distribution_folder(data: Path, target: Path) -> Path:
    """train/ and val/ holding the first IN_CLASSES classes (symbolic links to the generated folders)."""
    for split in ("train", "val"):
        for c in range(IN_CLASSES):
            link = target / split / f"class_{c:02d}"
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(data / split / f"class_{c:02d}", target_is_directory=True)
    return target


def foreign_images(folder: Path, count: int, size: int = 256, seed: int = 7) -> dict[str, list[Path]]:
    """Uniform noise and smooth textures, written as PNG once."""
    rng = np.random.default_rng(seed)
    kinds: dict[str, list[Path]] = {"noise": [], "textures": []}
    (folder / "noise").mkdir(parents=True, exist_ok=True)
    (folder / "textures").mkdir(parents=True, exist_ok=True)
    textures = calibration_images(count, size, seed=seed)
    mean = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    for i in range(count):
        noise = folder / "noise" / f"{i:03d}.png"
        texture = folder / "textures" / f"{i:03d}.png"
        if not noise.exists():
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(noise)
        if not texture.exists():
            rgb = (textures[i].numpy() * std + mean).clip(0, 1).transpose(1, 2, 0)
            Image.fromarray((255 * rgb).round().astype(np.uint8)).save(texture)
        kinds["noise"].append(noise)
        kinds["textures"].append(texture)
    return kinds


def scores(predictor, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(Thaw's OOD score, energy score) per image; higher means more unlike the training data for both."""
    import torch

    ood, energy = [], []
    for start in range(0, len(paths), 32):
        batch = torch.stack([predictor.prepare(p) for p in paths[start:start + 32]])
        logits, scored = predictor.logits_and_ood(batch)
        ood.append(scored)
        energy.append((-torch.logsumexp(logits, dim=1)).numpy())
    return np.concatenate(ood), np.concatenate(energy)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="feature_extraction")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--per-class", type=int, default=40, help="training images per class (val: a quarter)")
    args = parser.parse_args()
    seeded_torch_home()
    base, runs = bench_dirs()
    val_per_class = max(2, args.per_class // 4)
    data = make_jpeg_dataset(base / f"jpegs-10x{args.per_class}", 10, args.per_class, val_per_class)
    indist = in_distribution_folder(data, base / f"ood-in-{args.per_class}")

    import torch
    from sklearn.metrics import roc_auc_score

    from engine.infer.evaluation import write_run_evaluation
    from engine.infer.inference import Predictor
    from engine.planning.presets import make_recipe
    from engine.train.runs import checkpoint_path
    from engine.train.trainer import fit

    recipe = make_recipe(args.strategy, "resnet18", str(indist), epochs=args.epochs)
    recipe.data.resize_size, recipe.data.crop_size = round(args.crop * 256 / 224), args.crop
    recipe.batch_size, recipe.data.num_workers, recipe.output_dir, recipe.device = 32, 0, str(runs), "cpu"
    started = time.perf_counter()
    result = fit(recipe)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    evaluation = write_run_evaluation(result.run_dir)
    evaluate_seconds = time.perf_counter() - started
    predictor = Predictor.from_checkpoint(checkpoint_path(result.run_dir, "best"))
    assert predictor.ood is not None, "the run's evaluation wrote no calibration"

    inside = [Path(r.path) for r in evaluation.images]
    others = sorted(p for c in range(IN_CLASSES, 10) for p in (data / "val" / f"class_{c:02d}").glob("*.jpg"))
    kinds = {"other generated classes": others, **foreign_images(base / "ood-foreign", len(others))}
    in_ood, in_energy = scores(predictor, inside)
    load = os.getloadavg()[0]
    print(f"task: {IN_CLASSES} generated classes, {IN_CLASSES * args.per_class} training + {len(inside)} validation "
          f"images, ResNet-18 (seeded, bench/common.py) '{args.strategy}' {args.epochs} epochs at {args.crop} px: "
          f"val acc {100 * evaluation.metrics.accuracy:.1f} %; train {train_seconds:.1f} s, evaluation + calibration "
          f"{evaluate_seconds:.1f} s; torch threads {torch.get_num_threads()}, load average {load:.2f}")
    print(f"threshold: the {100 * predictor.ood.quantile:.0f}th percentile of the validation images' distances; "
          f"in-distribution validation images flagged: {100 * np.mean(in_ood > 1):.1f} %")
    print(f"{'out-of-distribution kind':<26} {'images':>6}  {'AUROC Thaw':>10}  {'AUROC energy':>12}  {'flagged':>7}")
    pooled_ood, pooled_energy, per_kind = [], [], []
    for kind, paths in kinds.items():
        ood, energy = scores(predictor, paths)
        pooled_ood.append(ood)
        pooled_energy.append(energy)
        truth = [0] * len(inside) + [1] * len(paths)
        per_kind.append(roc_auc_score(truth, np.concatenate([in_ood, ood])))
        print(f"{kind:<26} {len(paths):>6}  {per_kind[-1]:>10.3f}  "
              f"{roc_auc_score(truth, np.concatenate([in_energy, energy])):>12.3f}  {100 * np.mean(ood > 1):>6.1f}%")
    ood, energy = np.concatenate(pooled_ood), np.concatenate(pooled_energy)
    truth = [0] * len(inside) + [1] * len(ood)
    auroc = roc_auc_score(truth, np.concatenate([in_ood, ood]))
    print(f"{'all kinds':<26} {len(ood):>6}  {auroc:>10.3f}  "
          f"{roc_auc_score(truth, np.concatenate([in_energy, energy])):>12.3f}  {100 * np.mean(ood > 1):>6.1f}%")
    print(f"goal AUROC ≥ 0.9 (all kinds and each kind): {'met' if min(per_kind + [auroc]) >= 0.9 else 'NOT met'}")


if __name__ == "__main__":
    main()
