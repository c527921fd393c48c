"""Classification metrics from labels and predicted probabilities: accuracy, top-k, per-class precision /
recall / F1 / support and the confusion matrix (rows: true class, columns: predicted class).

The confusion matrix and the per-class figures come from scikit-learn (the reference implementation every other
tool is compared with); top-k and the loss are computed here because sklearn's `top_k_accuracy_score` expects
a different score shape for two classes and the loss must be the training loss exactly (cross-entropy of the
logits, see engine/infer/evaluation.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class ClassMetrics:
    name: str
    precision: float  # of the images predicted as this class, the share that are (0 when none is predicted)
    recall: float  # of the images of this class, the share predicted as it (0 when the class has none)
    f1: float
    support: int  # images of this class
    predicted: int  # images predicted as this class


@dataclass
class ClassificationMetrics:
    count: int
    accuracy: float
    top_k: int  # the k of top_k_accuracy: min(5, number of classes)
    top_k_accuracy: float
    mean_loss: float
    # Macro averages run over the classes that occur (in the labels or the predictions), as scikit-learn's do
    # without an explicit label list: a class absent from a test folder does not count as a recall of 0.
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_f1: float  # F1 averaged with the classes' support as weights
    per_class: list[ClassMetrics] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # confusion[true][predicted]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClassificationMetrics:
        per_class = [ClassMetrics(**c) for c in data.get("per_class", [])]
        return cls(**{**data, "per_class": per_class})

    def most_confused(self, limit: int = 5) -> list[tuple[str, str, int]]:
        """The largest off-diagonal cells: (true class, predicted class, count), largest first."""
        names = [c.name for c in self.per_class]
        cells = [(names[t], names[p], n) for t, row in enumerate(self.confusion) for p, n in enumerate(row)
                 if t != p and n > 0]
        return sorted(cells, key=lambda cell: -cell[2])[:limit]


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str],
                           losses: np.ndarray | None = None, top_k: int = 5) -> ClassificationMetrics:
    """`labels` (N,) class indices, `probabilities` (N, C) rows summing to 1, `losses` (N,) per-image losses."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), classes):
        raise ValueError(f"probabilities of shape {probabilities.shape} do not fit {len(labels)} labels and "
                         f"{classes} classes")
    k = max(1, min(top_k, classes))
    everything = list(range(classes))
    if not len(labels):
        return ClassificationMetrics(0, 0.0, k, 0.0, float("nan"), 0.0, 0.0, 0.0, 0.0,
                                     [ClassMetrics(n, 0.0, 0.0, 0.0, 0, 0) for n in class_names],
                                     [[0] * classes for _ in range(classes)])
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, labels=everything)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=everything,
                                                                     zero_division=0)
    # argsort of the negated scores: ties keep the lower class index first, as torch.topk and argmax do.
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    top_hits = (top == labels[:, None]).any(axis=1)
    occurring = (support > 0) | (matrix.sum(axis=0) > 0)
    per_class = [ClassMetrics(name, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]),
                              int(matrix[:, i].sum())) for i, name in enumerate(class_names)]
    return ClassificationMetrics(
        count=int(len(labels)),
        accuracy=float((predictions == labels).mean()),
        top_k=k,
        top_k_accuracy=float(top_hits.mean()),
        mean_loss=float(np.mean(losses)) if losses is not None and len(losses) else float("nan"),
        macro_precision=float(np.mean(precision[occurring])),
        macro_recall=float(np.mean(recall[occurring])),
        macro_f1=float(np.mean(f1[occurring])),
        weighted_f1=float(f1_score(labels, predictions, labels=everything, average="weighted", zero_division=0)),
        per_class=per_class,
        confusion=matrix.astype(int).tolist(),
    )
