"""Evaluation of a checkpoint on the run's validation split or on a folder of class folders: accuracy, top-k,
per-class precision / recall / F1 / support, the confusion matrix, and for every image its true class,
prediction, confidence, loss, top-k and out-of-distribution score.

    evaluate_checkpoint(run_dir)                the run's validation split (and its OOD calibration)
    evaluate_checkpoint(run_dir, image_dir)     a folder whose class folders are (some of) the run's classes
    write_run_evaluation(run_dir)               evaluation.json in the run folder: best checkpoint, validation
                                                split, OOD calibration and weight drift
    RunEvaluator(device)                        an event subscriber that does the above when a run finishes

A file that cannot be decoded (or is no image) is listed in `skipped` with its reason and the rest evaluated.
A folder holding a class the checkpoint does not know is bad input (BadInputError naming the classes): its
images cannot be scored. The per-image loss is the plain cross-entropy of the true class (without the recipe's label
smoothing, so it reads as −log p(true class)).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from engine.data.datasets import ImageFiles, SeededDataset
from engine.data.images import UnreadableImageError, load_image
from engine.data.scan import scan_folder
from engine.errors import BadInputError, ThawError
from engine.infer.drift import WeightDrift, weight_drift
from engine.infer.inference import Predictor, inference_device
from engine.infer.metrics import ClassificationMetrics, classification_metrics
from engine.infer.ood import calibration_path, fit_ood, head_digest, load_calibration, save_calibration
from engine.infer.run_checkpoint import (
    RunCheckpoint,
    loader_workers,
    open_checkpoint,
    run_split,
    sample_ids,
    start_model,
    trained_model,
)
from engine.infer.run_features import split_features
from engine.io_files import check_target, write_json_atomic, write_text_atomic
from engine.train.events import EvaluationWritten, Event, RunFinished

log = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"
VALIDATION_SPLIT = "validation split"
TOP_K = 5
FORMAT_VERSION = 1


@dataclass
class ImageResult:
    path: str
    true_class: str
    predicted: str
    confidence: float  # the predicted class's probability
    loss: float  # cross-entropy of the true class: −log p(true class)
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    ood_score: float | None = None  # in units of the calibrated threshold (engine/infer/ood.py); None: uncalibrated
    unfamiliar: bool | None = None  # ood_score above 1
    split: str = ""  # "train" / "val" for a folder with train/ and val/, else ""

    @property
    def correct(self) -> bool:
        return self.true_class == self.predicted

    def to_dict(self) -> dict:
        data = asdict(self)
        data["top"] = [{"class": c, "probability": p} for c, p in self.top]
        data["correct"] = self.correct
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ImageResult:
        values = {k: v for k, v in data.items() if k != "correct"}
        values["top"] = [(t["class"], float(t["probability"])) for t in data.get("top", [])]
        return cls(**values)


@dataclass
class Evaluation:
    checkpoint: str
    source: str  # VALIDATION_SPLIT or the evaluated folder
    classes: list[str]
    metrics: ClassificationMetrics
    images: list[ImageResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    ood: dict | None = None  # the calibration's summary and how many images it flagged; None: no calibration
    drift: WeightDrift | None = None
    notes: list[str] = field(default_factory=list)  # what could not be done, and why
    seconds: float = 0.0
    created: str = ""

    # --- views the CLI and the studio share --------------------------------------------------------------------
    def cell(self, true_class: str, predicted: str) -> list[ImageResult]:
        """The images behind one confusion-matrix cell, in evaluation order."""
        return [r for r in self.images if r.true_class == true_class and r.predicted == predicted]

    def misclassified(self) -> list[ImageResult]:
        return [r for r in self.images if not r.correct]

    def top_losses(self, count: int = 10) -> list[ImageResult]:
        return sorted(self.images, key=lambda r: -r.loss)[:count]

    def flagged(self) -> list[ImageResult]:
        return [r for r in self.images if r.unfamiliar]

    # --- files -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "checkpoint": self.checkpoint, "source": self.source,
                "classes": list(self.classes), "created": self.created, "seconds": self.seconds,
                "metrics": self.metrics.to_dict(), "ood": self.ood,
                "drift": self.drift.to_dict() if self.drift is not None else None, "notes": list(self.notes),
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "images": [r.to_dict() for r in self.images]}

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        return cls(data["checkpoint"], data["source"], list(data["classes"]),
                   ClassificationMetrics.from_dict(data["metrics"]),
                   [ImageResult.from_dict(r) for r in data.get("images", [])],
                   [(u["path"], u["reason"]) for u in data.get("skipped", [])], data.get("ood"),
                   WeightDrift.from_dict(data["drift"]) if data.get("drift") else None, list(data.get("notes", [])),
                   float(data.get("seconds", 0.0)), str(data.get("created", "")))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Evaluation:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise BadInputError(f"{path} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInputError(f"{path} is not an evaluation file: {exc}") from exc

    def write_csv(self, path: str | Path, images: list[ImageResult] | None = None) -> Path:
        """One row per image (then one per skipped file, with its error): for relabelling in a spreadsheet.
        With `images` (e.g. `misclassified()`), exactly those rows and no skipped files."""
        path = Path(path)
        rows = self.images if images is None else images
        skipped = self.skipped if images is None else []
        columns = ["path", "true_class", "predicted", "correct", "confidence", "loss", "ood_score", "unfamiliar",
                   "split", "top_k", "error"]
        check_target(path, "--csv")
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({"path": _text(r.path), "true_class": r.true_class, "predicted": r.predicted,
                             "correct": r.correct, "confidence": f"{r.confidence:.6f}", "loss": f"{r.loss:.6f}",
                             "ood_score": "" if r.ood_score is None else f"{r.ood_score:.4f}",
                             "unfamiliar": "" if r.unfamiliar is None else r.unfamiliar, "split": r.split,
                             "top_k": ";".join(f"{c}:{p:.4f}" for c, p in r.top), "error": ""})
        for p, reason in skipped:
            writer.writerow({"path": _text(p), "error": reason})
        # Built whole, then written atomically: a failure leaves no file that looks complete.
        write_text_atomic(path, text.getvalue(), "--csv", newline="")
        return path

    # --- text ----------------------------------------------------------------------------------------------------
    def format_text(self, listed: int = 10) -> str:
        m = self.metrics
        source = "the " + self.source if self.source == VALIDATION_SPLIT else self.source
        lines = [f"evaluation of {self.checkpoint} on {source}: {m.count} images",
                 f"accuracy {100 * m.accuracy:.2f} %   top-{m.top_k} {100 * m.top_k_accuracy:.2f} %   "
                 f"mean loss {m.mean_loss:.4f}   macro F1 {m.macro_f1:.3f}"]
        width = max([len("class")] + [len(c) for c in self.classes])
        lines.append(f"\n{'class':<{width}}  precision  recall      F1  support")
        for c in m.per_class:
            lines.append(f"{c.name:<{width}}  {c.precision:9.3f}  {c.recall:6.3f}  {c.f1:6.3f}  {c.support:7d}")
        lines.append("\nconfusion matrix (rows: true class, columns: predicted)")
        cell = max([len(str(n)) for row in m.confusion for n in row] + [min(len(c), 8) for c in self.classes])
        lines.append(" " * width + "  " + " ".join(f"{c[:8]:>{cell}}" for c in self.classes))
        for name, row in zip(self.classes, m.confusion):
            lines.append(f"{name:<{width}}  " + " ".join(f"{n:>{cell}}" for n in row))
        confused = m.most_confused(5)
        if confused:
            lines.append("most confused: " + ", ".join(f"{t} → {p} ({n})" for t, p, n in confused))
        wrong = sorted(self.misclassified(), key=lambda r: -r.loss)
        if wrong:
            lines.append(f"\nmisclassified ({len(wrong)}), highest loss first:")
            for r in wrong[:listed]:
                lines.append(f"  {_text(r.path)}: {r.true_class} predicted {r.predicted} ({100 * r.confidence:.1f} %), "
                             f"loss {r.loss:.3f}")
            if len(wrong) > listed:
                lines.append(f"  … and {len(wrong) - listed} more (--csv FILE lists every image)")
        if self.ood is not None:
            flagged = self.flagged()
            lines.append(f"\nunlike the training data (OOD score above the threshold): {len(flagged)} of {m.count}")
            for r in sorted(flagged, key=lambda r: -(r.ood_score or 0))[:listed]:
                lines.append(f"  {_text(r.path)}: score {r.ood_score:.2f}")
        if self.drift is not None and self.drift.stages:
            lines.append("\nweight drift from the run's start (relative L2) per stage: " + ", ".join(
                f"{s.name} {s.relative:.4f}" if s.relative is not None else f"{s.name} n/a" for s in self.drift.stages))
        if self.skipped:
            lines.append(f"\nfiles not evaluated ({len(self.skipped)}):")
            lines += [f"  {p}: {reason}" for p, reason in self.skipped]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


# --- running an evaluation ---------------------------------------------------------------------------------------


class _Files(Dataset):
    """Image files prepared as inference prepares them; a file that cannot be decoded yields its reason."""

    def __init__(self, paths: list[str], transform, channels: int):
        self.paths, self.transform, self.channels = paths, transform, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, self.transform(load_image(self.paths[index], self.channels)), ""
        except UnreadableImageError as exc:
            return index, None, exc.reason
        except (OSError, RuntimeError, ValueError) as exc:
            return index, None, f"cannot be prepared: {exc}"


class _Prepared(Dataset):
    """A data set whose transform already prepares images (a torchvision data set's validation split)."""

    def __init__(self, dataset: SeededDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset[index][0], ""


def _text(path) -> str:
    """A path as text that any UTF-8 writer accepts: bytes of a name that are not UTF-8 (Python keeps them as
    surrogates) are shown as \\xNN escapes instead of failing the write halfway."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def _as_list(batch):
    return batch


def score_images(predictor: Predictor, items: Dataset, ids: list[str], labels: list[int], splits: list[str],
                 batch_size: int = 32, workers: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> tuple[list[ImageResult], list[tuple[str, str]],
                                                                            np.ndarray, np.ndarray, np.ndarray]:
    """Predict every item; returns the per-image results, the skipped (path, reason) and, for the readable
    ones in order, the labels, the probabilities (N, C) and the losses (N,)."""
    names = predictor.class_names
    k = min(TOP_K, len(names))
    results: list[ImageResult] = []
    skipped: list[tuple[str, str]] = []
    kept_labels, all_probs, all_losses = [], [], []
    loader = DataLoader(items, batch_size=batch_size, num_workers=workers, collate_fn=_as_list)
    done = 0
    for batch in loader:
        ready = [(i, t) for i, t, error in batch if not error]
        skipped += [(ids[i], error) for i, _, error in batch if error]
        done += len(batch)
        if ready:
            logits, ood = predictor.logits_and_ood(torch.stack([t for _, t in ready]))
            target = torch.tensor([labels[i] for i, _ in ready])
            losses = F.cross_entropy(logits, target, reduction="none")
            probs = torch.softmax(logits, dim=1)
            values, indices = probs.topk(k, dim=1)
            for row, (i, _) in enumerate(ready):
                top = [(names[c], float(v)) for v, c in zip(values[row].tolist(), indices[row].tolist())]
                score = None if ood is None else float(ood[row])
                results.append(ImageResult(ids[i], names[labels[i]], top[0][0], top[0][1], float(losses[row]), top,
                                           score, None if score is None else score > 1.0, splits[i]))
            kept_labels += [labels[i] for i, _ in ready]
            all_probs.append(probs.numpy())
            all_losses.append(losses.numpy())
        if progress:
            progress(done, len(items))
    probabilities = np.concatenate(all_probs) if all_probs else np.zeros((0, len(names)))
    losses = np.concatenate(all_losses) if all_losses else np.zeros(0)
    return results, skipped, np.asarray(kept_labels, dtype=np.int64), probabilities, losses


def folder_samples(folder: str | Path, class_names: list[str], channels: int
                   ) -> tuple[list[str], list[int], list[str], list[tuple[str, str]]]:
    """(paths, checkpoint class indices, splits, files left out with the reason) of a folder of class folders.
    Raises BadInputError naming any class folder the checkpoint does not know."""
    report = scan_folder(folder, channels=channels, verify=False)  # undecodable files surface while predicting
    holding = sorted({report.classes[c] for _, c, _ in report.samples})  # an empty class folder is no class
    unknown = [c for c in holding if c not in class_names]
    if unknown:
        raise BadInputError(f"{report.root}: class folder{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(repr(c) for c in unknown)} {'are' if len(unknown) > 1 else 'is'} not "
                            f"among the checkpoint's classes ({', '.join(class_names)})")
    index = {i: class_names.index(c) for i, c in enumerate(report.classes) if c in holding}
    paths = [p for p, _, _ in report.samples]
    labels = [index[c] for _, c, _ in report.samples]
    splits = [s for _, _, s in report.samples]
    skipped = [(p.path, p.reason) for p in report.problems if not p.is_folder]
    return paths, labels, splits, skipped


def evaluate_checkpoint(target: str | Path, image_dir: str | Path | None = None, kind: str = "best",
                        device: str | torch.device = "cpu", batch_size: int = 0, calibrate: bool = True,
                        drift: bool = False, progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Evaluate a run folder's checkpoint (or a checkpoint file) on the run's validation split, or on
    `image_dir`. On the validation split `calibrate` fits the out-of-distribution score and stores it next to
    the checkpoint; elsewhere a stored calibration is used when there is one. `drift` adds the weight drift."""
    started = time.perf_counter()
    device = inference_device(device)  # a device this machine lacks: one line (exit 2), before any work
    checkpoint = open_checkpoint(target, kind)
    built = trained_model(checkpoint)
    predictor = Predictor(built.model, checkpoint.class_names, checkpoint.preprocessing, device, checkpoint.recipe,
                          built.head_path)
    batch_size = batch_size or max(1, checkpoint.recipe.batch_size)
    notes: list[str] = []
    if image_dir is None:
        data = run_split(checkpoint)
        if list(data.classes) != checkpoint.class_names:
            raise BadInputError(f"the run's data folder now holds the classes {', '.join(data.classes)}, the "
                                f"checkpoint was trained on {', '.join(checkpoint.class_names)}")
        if calibrate:
            predictor.ood = _calibrate(checkpoint, data, built, device, notes)
        else:
            predictor.ood = load_calibration(checkpoint.path, head_digest(checkpoint.model_state, built.head_path))
        source = VALIDATION_SPLIT
        ids = sample_ids(data.val, "val")
        labels = list(data.val.targets)
        splits = ["val"] * len(ids)
        items = _Files(ids, predictor.transform, checkpoint.channels) if isinstance(data.val, ImageFiles) \
            else _Prepared(data.val)
        left_out: list[tuple[str, str]] = []
    else:
        ids, labels, splits, left_out = folder_samples(image_dir, checkpoint.class_names, checkpoint.channels)
        source = str(Path(image_dir).expanduser().resolve())
        items = _Files(ids, predictor.transform, checkpoint.channels)
        predictor.ood = load_calibration(checkpoint.path, head_digest(checkpoint.model_state, built.head_path))
        if predictor.ood is None:
            notes.append(f"no out-of-distribution calibration for {checkpoint.path.name}: evaluate the run on its "
                         f"validation split once to calibrate it")
    results, undecodable, kept, probabilities, losses = score_images(
        predictor, items, ids, labels, splits, batch_size, loader_workers(checkpoint.recipe, len(ids)), progress)
    skipped = left_out + undecodable
    if not results:
        raise BadInputError(f"no image of {source} could be evaluated"
                            + (f" ({len(skipped)} skipped)" if skipped else ""))
    evaluation = Evaluation(str(checkpoint.path), source, list(checkpoint.class_names),
                            classification_metrics(kept, probabilities, checkpoint.class_names, losses, TOP_K),
                            results, skipped, notes=notes)
    if predictor.ood is not None:
        evaluation.ood = {**predictor.ood.summary(), "flagged": len(evaluation.flagged()),
                          "file": str(calibration_path(checkpoint.path))}
    if drift:
        evaluation.drift = _drift(checkpoint, built, notes)
    evaluation.seconds = time.perf_counter() - started
    evaluation.created = time.strftime("%Y-%m-%d %H:%M:%S")
    return evaluation


def _calibrate(checkpoint: RunCheckpoint, data, built, device, notes: list[str]):
    try:
        features = split_features(checkpoint, data, built, device)
        calibration = fit_ood(features.train, features.train_labels, features.val,
                              head_digest(checkpoint.model_state, built.head_path))
    except (ThawError, ValueError, RuntimeError) as exc:
        notes.append(f"out-of-distribution calibration failed: {exc}")
        return None
    save_calibration(calibration, checkpoint.path)
    return calibration


def _drift(checkpoint: RunCheckpoint, built, notes: list[str]) -> WeightDrift | None:
    if checkpoint.pruning:  # its layers have fewer channels than the pretrained ones: nothing to compare with
        notes.append("weight drift: not measured for a pruned model (its layers lost channels the start had)")
        return None
    try:
        start = start_model(checkpoint)
    except ThawError as exc:  # e.g. the pretrained weights are no longer in the cache, and offline
        notes.append(f"weight drift unavailable: {exc}")
        return None
    return weight_drift(built.model, dict(start.model.named_parameters()), built.stages)


def write_run_evaluation(run_dir: str | Path, device: str | torch.device = "cpu",
                         progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """evaluation.json in the run folder: the best checkpoint on the validation split, with the OOD calibration
    (stored as checkpoints/best.ood.pt) and the weight drift. `progress(done, total)` follows the images scored."""
    evaluation = evaluate_checkpoint(run_dir, None, "best", device, calibrate=True, drift=True, progress=progress)
    evaluation.save(Path(run_dir) / EVALUATION_FILE)
    return evaluation


class RunEvaluator:
    """Writes a finished run's evaluation.json (also when it stopped early), then tells `emit` with an
    EvaluationWritten event. `fit_and_evaluate` (engine/infer/fit_and_evaluate.py) uses it after a run, with the
    run's own bus as `emit`; it is also an event subscriber that evaluates on RunFinished.
    A run that is stopped or failed is not evaluated: its best checkpoint may be from an unfinished phase."""

    def __init__(self, device: str | torch.device = "cpu", emit: Callable[[Event], None] | None = None):
        self.device = device
        self.emit = emit
        self.written: list[Path] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            self.evaluate(event.run_dir)

    def evaluate(self, run_dir: str | Path) -> Path | None:
        """evaluation.json of the run in `run_dir`, said with EvaluationWritten; None (and a warning in the log) when
        the run cannot be evaluated (no best checkpoint, its data gone)."""
        try:
            evaluation = write_run_evaluation(run_dir, self.device)
        except ThawError as exc:
            log.warning("the run %s was not evaluated: %s", run_dir, exc)
            return None
        path = Path(run_dir) / EVALUATION_FILE
        self.written.append(path)
        if self.emit is not None:
            m = evaluation.metrics
            self.emit(EvaluationWritten(run_dir=str(run_dir), path=str(path), count=m.count, accuracy=m.accuracy,
                                        top_k=m.top_k, top_k_accuracy=m.top_k_accuracy,
                                        flagged=len(evaluation.flagged()), seconds=evaluation.seconds))
        return path
