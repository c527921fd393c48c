"""Suspect labels, near-duplicates and train/validation leaks of a run's data set, from backbone features.

Suspect labels: confident learning (Northcutt et al., 2021) as the `cleanlab` library implements it. Every image
gets out-of-fold predicted probabilities from a head trained k-fold on the cached features (a logistic
regression, i.e. a linear head: seconds on a CPU); `cleanlab.filter.find_label_issues` finds the images whose
given label the confident joint says is wrong, ranked by self-confidence (the out-of-fold probability of the
given label, lowest first), and the suggested label is the head's prediction.

The features are by default those of the backbone the run started from (the pretrained weights), not the
fine-tuned one: a fine-tuned backbone has seen the given labels and may have memorised the wrong ones, which
hides them. `backbone="trained"` uses the checkpoint's backbone instead.

Near-duplicates: cleanlab Datalab's documented rule (`near_duplicate` issue type): two images are near-duplicates
when the cosine distance of their features is below 0.13 × the median distance of an image to its nearest
neighbour; byte-identical files are exact duplicates whatever the distance. Datalab itself is not used because it
needs the `datasets` package and rebuilds a k-NN graph; the rule is a few lines on the features we already have.
A pair with one image in training and one in validation is a leak: the validation score overstates the model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.errors import BadInputError
from engine.infer.run_checkpoint import open_checkpoint, run_split, start_model, trained_model
from engine.infer.run_features import split_features
from engine.io_files import check_target, write_json_atomic

LABEL_ISSUES_FILE = "label_issues.json"
BACKBONES = ("start", "trained")
DEFAULT_FOLDS = 5
NEAR_DUPLICATE_THRESHOLD = 0.13  # cleanlab Datalab's default for the near_duplicate issue type
MAX_PAIRS = 1000  # pairs kept in a report (the count of all of them is kept too)
_BLOCK = 1024  # rows of the similarity matrix computed at once: bounded memory for large data sets
_EPSILON = 1e-6  # as cleanlab: a radius never collapses to 0 when most images have an exact twin


@dataclass
class Suspect:
    path: str
    split: str  # "train" or "val"
    given: str  # the label in the data set
    suggested: str  # the out-of-fold head's prediction
    quality: float  # out-of-fold probability of the given label (cleanlab's self-confidence): lower is worse
    suggested_probability: float


@dataclass
class DuplicatePair:
    a: str
    b: str
    split_a: str
    split_b: str
    similarity: float  # cosine similarity of the features
    exact: bool  # byte-identical files

    @property
    def crosses_split(self) -> bool:
        return self.split_a != self.split_b


@dataclass
class LabelIssueReport:
    checkpoint: str
    backbone: str  # "start" or "trained"
    folds: int
    classes: list[str]
    images: int
    suspects: list[Suspect] = field(default_factory=list)
    near_duplicates: list[DuplicatePair] = field(default_factory=list)  # exact and near, most similar first
    near_duplicate_total: int = 0  # pairs found (near_duplicates keeps the first MAX_PAIRS)
    leaks: list[DuplicatePair] = field(default_factory=list)  # pairs across the train/validation split
    radius: float = 0.0  # the cosine distance below which two images are near-duplicates
    out_of_fold_accuracy: float = 0.0  # how well the k-fold head predicts the given labels
    feature_seconds: float = 0.0
    analysis_seconds: float = 0.0
    created: str = ""
    # class → its most typical image: the highest out-of-fold probability of its own label among the images not
    # suspected; what the studio shows next to a suspect as "an example of" its given and its suggested class.
    examples: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("near_duplicates", "leaks"):
            for pair, entry in zip(getattr(self, key), data[key]):
                entry["crosses_split"] = pair.crosses_split
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LabelIssueReport:
        def pairs(key: str) -> list[DuplicatePair]:
            return [DuplicatePair(**{k: v for k, v in p.items() if k != "crosses_split"}) for p in data.get(key, [])]

        values = {k: v for k, v in data.items() if k not in ("suspects", "near_duplicates", "leaks")}
        return cls(**values, suspects=[Suspect(**s) for s in data.get("suspects", [])],
                   near_duplicates=pairs("near_duplicates"), leaks=pairs("leaks"))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> LabelIssueReport:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInputError(f"{path} is not a label-issues file: {exc}") from exc

    def format_text(self, listed: int = 30) -> str:
        backbone = "the pretrained backbone the run started from" if self.backbone == "start" else \
            "the checkpoint's fine-tuned backbone"
        lines = [f"label issues of {self.images} images ({', '.join(self.classes)}), features of {backbone}; "
                 f"{self.folds}-fold linear head, out-of-fold accuracy {100 * self.out_of_fold_accuracy:.1f} %",
                 f"\nsuspect labels ({len(self.suspects)}), most suspect first:"]
        for s in self.suspects[:listed]:
            lines.append(f"  {s.path} [{s.split}]: labelled {s.given} (p {s.quality:.2f}), looks like {s.suggested} "
                         f"(p {s.suggested_probability:.2f})")
        if len(self.suspects) > listed:
            lines.append(f"  … and {len(self.suspects) - listed} more (--json lists all)")
        lines.append(f"\nnear-duplicates ({self.near_duplicate_total} pairs; cosine distance below {self.radius:.3g}, "
                     f"{NEAR_DUPLICATE_THRESHOLD} × the median nearest-neighbour distance, or identical files):")
        for p in self.near_duplicates[:listed]:
            lines.append(f"  {p.a} ~ {p.b}: similarity {p.similarity:.4f}{' (identical files)' if p.exact else ''}")
        if len(self.near_duplicates) > listed:
            lines.append(f"  … and {self.near_duplicate_total - listed} more")
        lines.append(f"\ntrain/validation leaks ({len(self.leaks)}): the same or nearly the same image on both sides")
        for p in self.leaks[:listed]:
            lines.append(f"  {p.a} [{p.split_a}] ~ {p.b} [{p.split_b}]: "
                         f"{'identical files' if p.exact else f'similarity {p.similarity:.4f}'}")
        if len(self.leaks) > listed:
            lines.append(f"  … and {len(self.leaks) - listed} more")
        return "\n".join(lines)


# --- the analyses, on arrays -----------------------------------------------------------------------------------


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int = DEFAULT_FOLDS,
                              seed: int = 0) -> tuple[np.ndarray, int]:
    """(N, C) probabilities, each row from a head that never saw that image, and the folds used (fewer than
    asked when the smallest class has fewer images)."""
    from cleanlab.count import estimate_cv_predicted_probabilities
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    folds = min(folds, smallest)
    if folds < 2:
        raise BadInputError("finding label issues needs at least two images in every class")
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    # One BLAS thread: the fit is thousands of small matrix products, where OpenBLAS's threads only contend with
    # torch's and each other (measured: 0.3 s instead of 10 s per fold for 800 × 512 features on 2 busy cores).
    with threadpool_limits(limits=1):
        probabilities = estimate_cv_predicted_probabilities(_normalised(features).astype(np.float32), labels,
                                                            clf=head, cv_n_folds=folds, seed=seed)
    return probabilities, folds


def rank_label_issues(labels: np.ndarray, probabilities: np.ndarray) -> list[int]:
    """Indices of the images whose label is likely wrong, most suspect first (cleanlab's confident learning)."""
    from cleanlab.filter import find_label_issues

    # n_jobs=1: cleanlab would otherwise start a process pool, which costs more than it saves at these sizes
    # and must not be forked from the studio's worker thread.
    return [int(i) for i in find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence",
                                              n_jobs=1)]


def typical_examples(labels: np.ndarray, probabilities: np.ndarray, excluded: list[int] | None = None
                     ) -> dict[int, int]:
    """class index → the index of the image whose (out-of-fold) probability of its own label is highest, among
    the images not in `excluded` (the suspects); a class all of whose images are excluded has no example."""
    labels = np.asarray(labels)
    usable = np.ones(len(labels), dtype=bool)
    usable[list(excluded or [])] = False
    own = probabilities[np.arange(len(labels)), labels]
    examples: dict[int, int] = {}
    for c in np.unique(labels[usable]):
        candidates = np.flatnonzero(usable & (labels == c))
        examples[int(c)] = int(candidates[np.argmax(own[candidates])])  # ties: the first image
    return examples


def duplicate_pairs(features: np.ndarray, threshold: float = NEAR_DUPLICATE_THRESHOLD,
                    same_file: list[tuple[int, int]] | None = None) -> tuple[list[tuple[int, int, float, bool]], float]:
    """(i, j, cosine similarity, exact) for i < j, most similar first, and the radius used. `same_file` adds
    pairs known to be byte-identical whatever their distance."""
    x = torch.from_numpy(_normalised(features)).double()
    n = len(x)
    if n < 2:
        return [], 0.0
    nearest = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, _BLOCK):
        sims = x[start:start + _BLOCK] @ x.T
        sims[torch.arange(len(sims)), torch.arange(start, start + len(sims))] = -2.0  # not oneself
        nearest[start:start + _BLOCK] = 1.0 - sims.max(dim=1).values
    radius = threshold * max(float(nearest.clamp(min=0).median()), _EPSILON)
    found: dict[tuple[int, int], tuple[float, bool]] = {}
    for start in range(0, n, _BLOCK):
        sims = x[start:start + _BLOCK] @ x.T
        rows, cols = torch.nonzero(1.0 - sims < radius, as_tuple=True)
        for r, c in zip((rows + start).tolist(), cols.tolist()):
            if r < c:
                found[(r, c)] = (float(sims[r - start, c]), False)
    for i, j in same_file or []:
        i, j = min(i, j), max(i, j)
        found[(i, j)] = (float(x[i] @ x[j]), True)
    pairs = [(i, j, sim, exact) for (i, j), (sim, exact) in found.items()]
    pairs.sort(key=lambda p: (not p[3], -p[2], p[0], p[1]))
    return pairs, radius


def identical_files(paths: list[str]) -> list[tuple[int, int]]:
    """Index pairs of byte-identical files (ids that are not files are skipped)."""
    groups: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            continue
        groups.setdefault(digest, []).append(i)
    return [(a, b) for members in groups.values() for k, a in enumerate(members) for b in members[k + 1:]]


def _normalised(features: np.ndarray | torch.Tensor) -> np.ndarray:
    x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, float)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# --- a run ---------------------------------------------------------------------------------------------------


def find_run_label_issues(target: str | Path, kind: str = "best", backbone: str = "start", folds: int = DEFAULT_FOLDS,
                          device: str | torch.device = "cpu", write: bool = True,
                          progress: Callable[[int, int], None] | None = None) -> LabelIssueReport:
    """Suspect labels, near-duplicates and leaks of the run's training and validation images. With `write`, the
    report is also saved as label_issues.json in the run folder. `progress(done, total)` follows the feature
    pass (the long part; nothing is reported when the features come from the cache)."""
    if backbone not in BACKBONES:
        raise BadInputError(f"backbone '{backbone}' is not one of {', '.join(BACKBONES)}")
    checkpoint = open_checkpoint(target, kind)
    if write and checkpoint.run_dir is not None:  # a read-only run folder or /proc: one line before the work
        check_target(checkpoint.run_dir / LABEL_ISSUES_FILE, "label_issues.json")
    data = run_split(checkpoint)
    if list(data.classes) != checkpoint.class_names:
        raise BadInputError(f"the run's data folder now holds the classes {', '.join(data.classes)}, the checkpoint "
                            f"was trained on {', '.join(checkpoint.class_names)}")
    built = start_model(checkpoint) if backbone == "start" else trained_model(checkpoint)
    features = split_features(checkpoint, data, built, device, progress)
    started = time.perf_counter()
    x = torch.cat([features.train, features.val]).numpy()
    labels = torch.cat([features.train_labels, features.val_labels]).numpy().astype(np.int64)
    ids = features.train_ids + features.val_ids
    splits = ["train"] * len(features.train_ids) + ["val"] * len(features.val_ids)
    names = checkpoint.class_names
    probabilities, used_folds = out_of_fold_probabilities(x, labels, folds, checkpoint.recipe.seed)
    suggested = probabilities.argmax(axis=1)
    ranked = rank_label_issues(labels, probabilities)
    suspects = [Suspect(ids[i], splits[i], names[labels[i]], names[suggested[i]],
                        float(probabilities[i, labels[i]]), float(probabilities[i, suggested[i]])) for i in ranked]
    pairs, radius = duplicate_pairs(x, same_file=identical_files(ids))
    as_pairs = [DuplicatePair(ids[i], ids[j], splits[i], splits[j], sim, exact) for i, j, sim, exact in pairs]
    report = LabelIssueReport(
        str(checkpoint.path), backbone, used_folds, list(names), len(ids), suspects, as_pairs[:MAX_PAIRS], len(pairs),
        [p for p in as_pairs if p.crosses_split][:MAX_PAIRS], radius, float((suggested == labels).mean()),
        features.seconds, time.perf_counter() - started, time.strftime("%Y-%m-%d %H:%M:%S"),
        {names[c]: ids[i] for c, i in typical_examples(labels, probabilities, ranked).items()})
    if write and checkpoint.run_dir is not None:
        report.save(checkpoint.run_dir / LABEL_ISSUES_FILE)
    return report
