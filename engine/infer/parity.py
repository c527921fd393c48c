"""The parity check: the same validation images through the checkpoint in torch and through the exported file,
compared logit by logit. An export is good only when they agree within tolerance; the report (max |Δlogit|,
top-1 agreement, accuracies) is stored beside the file.

Batches start with a batch of one, then full batches and a remainder, so the dynamic batch dimension is exercised
at several sizes, not only at the size the exporter traced.

A check has three verdicts: passed, failed, and not checked — for a file whose runtime does not exist on this
system (a Core ML package off macOS). A file that was not checked is never reported as passed: its report says
why it was not compared, and its numbers are absent, not zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch

# fp32 exports reorder floating-point sums (fused kernels, other algorithms): differences of ~1e-6 relative are
# normal; 1e-3 of the largest logit is far above that and far below anything that changes a prediction.
FP32_RELATIVE_TOLERANCE = 1e-3
# int8 changes logits by design; what must hold is the decision. Below this agreement the file is refused.
INT8_MIN_TOP1_AGREEMENT = 0.9
# fp16 keeps about three significant digits per operation, and the rounding adds up over a network's layers: 5 % of
# the largest logit is above what that gives a classifier and below a real error (a changed bias, a wrong op).
FP16_RELATIVE_TOLERANCE = 5e-2
PASSED, FAILED, NOT_CHECKED = "passed", "failed", "not checked"


@dataclass
class ParityCriteria:
    relative_tolerance: float | None = FP32_RELATIVE_TOLERANCE  # max |Δlogit| ≤ this × max(1, max |logit|)
    min_top1_agreement: float = 0.0

    @classmethod
    def fp32(cls, relative_tolerance: float = FP32_RELATIVE_TOLERANCE) -> ParityCriteria:
        return cls(relative_tolerance, 0.0)

    @classmethod
    def int8(cls, min_top1_agreement: float = INT8_MIN_TOP1_AGREEMENT) -> ParityCriteria:
        return cls(None, min_top1_agreement)

    @classmethod
    def fp16(cls) -> ParityCriteria:
        return cls(FP16_RELATIVE_TOLERANCE, 0.0)


@dataclass
class ParityReport:
    label: str  # what was compared with the checkpoint: "onnx", "onnx int8", "pt2" …
    images: int
    max_abs_logit_diff: float | None  # None: not checked
    mean_abs_logit_diff: float | None
    top1_agreement: float | None
    max_abs_reference_logit: float | None
    tolerance: float | None  # the absolute max |Δlogit| allowed; None: not a criterion (int8)
    min_top1_agreement: float
    passed: bool  # False when it failed and when it was not checked
    failure: str = ""  # why it did not pass
    not_checked: str = ""  # why it was not compared (its runtime does not exist here); then passed is False
    worst_image: str = ""  # where |Δlogit| was largest
    batch_sizes: list[int] = field(default_factory=list)
    reference_accuracy: float | None = None  # on the same images, when their labels are the model's classes
    exported_accuracy: float | None = None

    @classmethod
    def unchecked(cls, label: str, reason: str) -> ParityReport:
        """The report of a file that could not be run here: no numbers, `passed` False, the reason kept."""
        return cls(label=label, images=0, max_abs_logit_diff=None, mean_abs_logit_diff=None, top1_agreement=None,
                   max_abs_reference_logit=None, tolerance=None, min_top1_agreement=0.0, passed=False,
                   not_checked=reason)

    @property
    def verdict(self) -> str:
        return NOT_CHECKED if self.not_checked else PASSED if self.passed else FAILED

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    def summary(self) -> str:
        if self.not_checked:
            return (f"parity {self.label} vs checkpoint: NOT CHECKED on this OS — {self.not_checked}; the file was "
                    f"written but never compared with the checkpoint")
        verdict = "passed" if self.passed else f"FAILED: {self.failure}"
        bound = f" (tolerance {self.tolerance:.2g})" if self.tolerance is not None else ""
        return (f"parity {self.label} vs checkpoint on {self.images} validation images: max |Δlogit| "
                f"{self.max_abs_logit_diff:.3g}{bound}, top-1 agreement {100 * self.top1_agreement:.1f} % — "
                f"{verdict}")


def batch_plan(count: int, batch_size: int = 16) -> list[int]:
    """Batch sizes covering `count` images: one image first, then full batches, then the remainder."""
    if count <= 0:
        return []
    sizes = [1]
    left = count - 1
    while left > 0:
        sizes.append(min(batch_size, left))
        left -= sizes[-1]
    return sizes


def collect_logits(models: dict[str, Callable[[torch.Tensor], torch.Tensor]], batches: Iterable[torch.Tensor],
                   should_stop: Callable[[], bool] = lambda: False,
                   progress: Callable[[int], None] = lambda done: None) -> dict[str, torch.Tensor]:
    """Every model's float32 CPU logits for the same batches (each batch is prepared once)."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    done = 0
    with torch.no_grad():
        for batch in batches:
            if should_stop():
                raise InterruptedError("stopped")
            for name, run in models.items():
                out[name].append(run(batch).float().cpu())
            done += len(batch)
            progress(done)
    return {name: torch.cat(parts) if parts else torch.empty(0) for name, parts in out.items()}


def compare(label: str, reference: torch.Tensor, exported: torch.Tensor, criteria: ParityCriteria,
            names: list[str] | None = None, labels: list[int] | None = None,
            batch_sizes: list[int] | None = None) -> ParityReport:
    """Compare two (N, classes) logit tensors; `labels` (the images' classes, when they are the model's) adds
    both accuracies."""
    n = int(reference.shape[0])
    names = names or [f"image {i}" for i in range(n)]
    base = dict(label=label, images=n, min_top1_agreement=criteria.min_top1_agreement,
                batch_sizes=list(batch_sizes or []))
    if exported.shape != reference.shape:
        return ParityReport(**base, max_abs_logit_diff=math.inf, mean_abs_logit_diff=math.inf, top1_agreement=0.0,
                            max_abs_reference_logit=float(reference.abs().max()) if n else 0.0, tolerance=None,
                            passed=False, failure=f"the export gives logits of shape {tuple(exported.shape)}, the "
                                                  f"checkpoint {tuple(reference.shape)}")
    diff = (exported - reference).abs()
    finite = bool(torch.isfinite(exported).all())
    per_image = diff.amax(dim=1) if n else diff
    max_diff = float(diff.max()) if n else 0.0
    scale = max(1.0, float(reference.abs().max())) if n else 1.0
    tolerance = criteria.relative_tolerance * scale if criteria.relative_tolerance is not None else None
    agreeing = int((exported.argmax(1) == reference.argmax(1)).sum()) if n else 0
    agreement = agreeing / n if n else 0.0
    failure = ""
    if n == 0:
        failure = "no image was compared"
    elif not finite:
        failure = "the export gives NaN or infinite logits"
    elif tolerance is not None and not max_diff <= tolerance:
        failure = f"max |Δlogit| {max_diff:.3g} exceeds the tolerance {tolerance:.2g}"
    elif agreeing < Fraction(repr(criteria.min_top1_agreement)) * n:  # counts: 36/40 meets 0.9 exactly
        failure = (f"top-1 agreement {100 * agreement:.1f} % is below the required "
                   f"{100 * criteria.min_top1_agreement:.0f} %")
    report = ParityReport(**base, max_abs_logit_diff=max_diff if finite else math.inf,
                          mean_abs_logit_diff=float(diff.mean()) if n and finite else math.inf,
                          top1_agreement=agreement, max_abs_reference_logit=float(reference.abs().max()) if n else 0.0,
                          tolerance=tolerance,
                          passed=not failure, failure=failure,
                          worst_image=names[int(per_image.argmax())] if n and finite else "")
    if labels is not None and n:
        target = torch.tensor(labels[:n])
        report.reference_accuracy = float((reference.argmax(1) == target).float().mean())
        report.exported_accuracy = float((exported.argmax(1) == target).float().mean())
    return report


def batches_of(samples: Callable[[int], torch.Tensor], count: int, plan: list[int]) -> Iterator[torch.Tensor]:
    """Stack `samples(i)` for i in 0…count-1 into batches of the sizes in `plan`."""
    start = 0
    for size in plan:
        yield torch.stack([samples(i) for i in range(start, min(count, start + size))])
        start += size
