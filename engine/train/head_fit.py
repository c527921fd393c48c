"""A head fitted to convergence on cached features: what Create ML and a linear probe do with frozen features.

When a phase trains only the head on cached backbone features, a gradient step of the head costs microseconds,
so there is no reason to stop after the lesson's ~30 Adam steps: the head is fitted to convergence instead.

    objective(W) = the run's loss (cross-entropy, with the recipe's label smoothing) + l2 / 2 · Σ ‖W‖²

over the head's weight matrices (biases are not penalised), minimised with full-batch L-BFGS
(torch.optim.LBFGS with a strong-Wolfe line search). The features are standardised first (mean 0, variance 1 per
feature, as scikit-learn's StandardScaler + LogisticRegression would) and the standardisation is folded into the
head's first Linear afterwards, so the model is unchanged in form and predicts from raw features as before.

The L2 strength is chosen by stratified k-fold cross-validation on the *training* features only (the validation
split never takes part), on the metric the recipe monitors (`early_stopping.metric`): the best held-out accuracy
or the lowest held-out loss, pooled over the folds. A tie goes to the stronger regularisation, as scikit-learn's
LogisticRegressionCV decides: on separable data every strength may reach 100 % and the held-out loss keeps
falling as the penalty weakens, so preferring the lower loss would pick the weakest penalty and an overconfident
head (huge logits: a poor start for a later fine-tuning phase, and a poor calibration). Along the grid, each
fold's fits are warm-started from the previous, stronger one (the regularisation path). The final fit starts from
the head's initial weights, on all training features.

Everything is deterministic for a seed: the folds come from a generator seeded by the caller, L-BFGS is
deterministic on the CPU, and the head's initial weights come from the run's seed. A stop request is honoured
between L-BFGS chunks; the head is written only when the fit has finished, so a stopped fit leaves it as it was.
Dropout in the head is off during the fit (the L2 penalty is the regulariser).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

FITTABLE_LAYERS = (nn.Linear, nn.Dropout, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Identity)
CROSS_VALIDATION, FINAL_FIT = "cross-validation", "final fit"
# Up to this many feature values (rows × dim) a CPU fit runs torch with one thread: its ops are small, and OpenMP's
# barriers cost more than they share. Measured on 2 cores with other processes running (load 4.7), per L-BFGS
# iteration, 1 thread / 2 threads: 240 × 48 0.9 / 1.7 ms, 2 000 × 512 6.6 / 13.4 ms, 8 000 × 512 13 / 68 ms.
ONE_THREAD_ELEMENTS = 8 * 2**20


@dataclass(frozen=True)
class FitSettings:
    """How hard the fit works; the defaults suit heads on up to a few hundred thousand cached features."""

    folds: int = 5
    # Cross-validation repeated with other shuffles, pooled: which strength one 5-fold split prefers depends on how
    # its folds fall (on bench/head_fit.py's task, 5 seeds of one repeat chose l2 from 3e-4 to 100, validation
    # 80-85 %); a second repeat halves the variance of the held-out scores for twice the cross-validation time.
    repeats: int = 2
    # L2 strengths tried, strongest first (the path's warm starts run this way): 100 … 1e-5 in half-decades. The
    # strong end matters with few images: on bench/head_fit.py's task (160 training images) the 5-fold probe's
    # LogisticRegressionCV chose C = 7.7e-4, i.e. l2 = 1 / (C · n) ≈ 8 in this objective (a mean, not a sum).
    grid: tuple[float, ...] = tuple(10.0 ** (-k / 2) for k in range(-4, 11))
    # A cross-validation fit only ranks the strengths, so it stops sooner than the final fit: on the transfer task
    # of bench/head_fit.py (5 classes, 160 or 400 images, 512 features, 4 seeds) a tolerance of 1e-3 and 50
    # iterations chose strengths as good on validation as 1e-6 and 100 (80 % / 66 % against 79 % / 66 %) with a
    # fifth of the iterations (0.8 s against 4.9 s for the whole fit, on 2 busy cores).
    cv_max_iter: int = 50  # per grid point and fold (warm-started along the path)
    cv_tolerance_grad: float = 1e-3  # the largest gradient component
    final_max_iter: int = 500
    tolerance_grad: float = 1e-6  # the final fit's
    chunk: int = 5  # L-BFGS iterations between two stop checks and two progress reports
    tolerance_change: float = 1e-10
    default_l2: float = 1e-2  # when no class has two training images to cross-validate on
    # Temperature calibration of the fitted head (Guo et al. 2017): its output layer is divided by the temperature
    # that minimises the held-out loss of the cross-validation at the chosen strength. Predictions (the argmax) are
    # unchanged; the probabilities become honest. Why: the strength that wins on accuracy is often the weakest of a
    # tie (separable data), whose logits are huge; a fine-tuning phase that starts from such a head sees a loss
    # that explodes on the first augmented batches, and its gradients distort the pretrained features (issue 20).
    # It only cools (T >= 1): when every held-out image is right, the held-out loss falls without bound as the
    # logits sharpen, and a sharpened head is the very hazard above. Measured on the three tasks of
    # bench/fine_tuning.py (4 seeds, validation images): cooling kept the accuracy (78.3 / 78.2 / 84.6 % against
    # 78.1 / 78.2 / 84.4 %) and lowered the validation loss (0.60 -> 0.52, 0.59 -> 0.59, 0.48 -> 0.33).
    calibrate: bool = True
    temperatures: tuple[float, ...] = tuple(10.0 ** (k / 20) for k in range(0, 35))  # 1 … 50, log-spaced


@dataclass
class Progress:
    """Where a fit is: `done` of `total` fits (folds × grid points, then the final one)."""

    stage: str
    done: int
    total: int
    fold: int  # 1-based; 0 in the final fit
    l2: float
    iteration: int  # of the final fit so far
    objective: float  # the final fit's objective at that iteration; nan during cross-validation


@dataclass
class HeadFit:
    """A finished fit: the head's new parameters (raw-feature space) and how they were found."""

    parameters: dict[str, torch.Tensor]
    l2: float
    grid: list[float]
    cv_loss: list[float]  # mean held-out loss per grid point (pooled over folds); empty without CV
    cv_acc: list[float]
    folds: int  # 0: no cross-validation (too few images per class)
    iterations: int  # L-BFGS iterations of the final fit
    converged: bool  # the final fit met its tolerance before final_max_iter
    cv_iterations: int  # L-BFGS iterations of every cross-validation fit together
    curve: list[tuple[int, float]] = field(default_factory=list)  # (iteration, objective) of the final fit
    train_loss: float = math.nan  # the run's loss on the training features (without the penalty)
    train_acc: float = 0.0
    rows: int = 0  # training rows fitted (images × views)
    seconds: float = 0.0
    repeats: int = 0  # shuffles of the k-fold cross-validation (0: none)
    temperature: float = 1.0  # the output layer was divided by this (1.0: not calibrated)
    calibrated_cv_loss: float = math.nan  # the held-out loss at the chosen strength after that division


def unfittable_reason(head: nn.Module) -> str:
    """"" when the head can be fitted here: a Linear, or a stack of Linear layers, activations and dropout whose
    first layer with parameters is a Linear (the heads engine/model/surgery.py makes). Else why not."""
    layers = list(head) if isinstance(head, nn.Sequential) else [head]
    if not all(isinstance(m, FITTABLE_LAYERS) for m in layers):
        names = sorted({type(m).__name__ for m in layers if not isinstance(m, FITTABLE_LAYERS)})
        return f"the head holds {', '.join(names)} (a fitted head is a stack of Linear layers)"
    if not any(isinstance(m, nn.Linear) for m in layers):
        return "the head has no Linear layer"
    return ""


def stratified_folds(labels: torch.Tensor, folds: int, generator: torch.Generator) -> torch.Tensor:
    """A fold number (0 … folds-1) per sample: each class's samples, shuffled, dealt round-robin."""
    assignment = torch.empty(len(labels), dtype=torch.long)
    offset = 0
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        assignment[members] = (torch.arange(len(members)) + offset) % folds
        offset += len(members)  # the next class's first sample goes to the next fold: balanced fold sizes
    return assignment


class _Problem:
    """The objective on one set of rows: standardised features, labels, a working copy of the head."""

    def __init__(self, head: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module,
                 settings: FitSettings):
        self.mean = x.mean(0)
        std = x.std(0, unbiased=False)
        self.std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant features: centred, not scaled
        self.x = (x - self.mean) / self.std
        self.y = y
        self.head = head
        self.criterion = criterion
        self.settings = settings
        self.weights = [m.weight for m in head.modules() if isinstance(m, nn.Linear)]

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def objective(self, l2: float) -> torch.Tensor:
        loss = self.criterion(self.head(self.x), self.y)
        return loss + 0.5 * l2 * sum((w * w).sum() for w in self.weights)

    def minimise(self, l2: float, max_iter: int, should_stop: Callable[[], bool],
                 report: Callable[[int, float], None] | None = None,
                 tolerance_grad: float | None = None) -> tuple[int, bool] | None:
        """L-BFGS from the head's current weights; (iterations, converged), or None when stopped."""
        s = self.settings
        params = [p for p in self.head.parameters()]
        tolerance = s.tolerance_grad if tolerance_grad is None else tolerance_grad
        optimizer = torch.optim.LBFGS(params, lr=1, max_iter=s.chunk, max_eval=s.chunk * 10,
                                      tolerance_grad=tolerance, tolerance_change=s.tolerance_change,
                                      history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=False)
            value = self.objective(l2)
            value.backward()
            return value

        iterations = 0
        while iterations < max_iter:
            if should_stop():
                return None
            optimizer.step(closure)
            done = optimizer.state[params[0]]["n_iter"]
            moved, iterations = done - iterations, done
            if report is not None:
                with torch.no_grad():
                    report(iterations, float(self.objective(l2)))
            if moved < s.chunk:
                return iterations, True  # L-BFGS met a tolerance inside the chunk
        return iterations, False

    @torch.no_grad()
    def held_out(self, x: torch.Tensor) -> torch.Tensor:
        """The head's logits for other rows (standardised with this problem's statistics)."""
        return self.head(self.standardise(x))

    def folded_parameters(self, temperature: float = 1.0) -> dict[str, torch.Tensor]:
        """The head's parameters for raw features: the standardisation folded into its first Linear, the
        temperature into its last (logits / temperature: the same argmax, calibrated probabilities)."""
        state = {k: v.detach().clone() for k, v in self.head.named_parameters()}
        linears = [name for name, m in self.head.named_modules() if isinstance(m, nn.Linear)]
        prefix = f"{linears[0]}." if linears[0] else ""
        weight = state[prefix + "weight"] / self.std
        state[prefix + "weight"] = weight
        if prefix + "bias" in state:
            state[prefix + "bias"] = state[prefix + "bias"] - weight @ self.mean
        last = f"{linears[-1]}." if linears[-1] else ""
        for name in (last + "weight", last + "bias"):
            if name in state:
                state[name] = state[name] / temperature
        return state


def fit_head(head: nn.Module, train: torch.Tensor, labels: torch.Tensor, criterion: nn.Module,
             metric: str = "val_acc", generator: torch.Generator | None = None,
             settings: FitSettings = FitSettings(), should_stop: Callable[[], bool] = lambda: False,
             progress: Callable[[Progress], None] | None = None) -> HeadFit | None:
    """Fit `head` (left unchanged: the result holds the parameters) on `train` (views, N, D) with `labels` (N,).
    None when a stop was requested."""
    with _cpu_threads_for(train):
        return _fit(head, train, labels, criterion, metric, generator, settings, should_stop, progress)


@contextlib.contextmanager
def _cpu_threads_for(features: torch.Tensor) -> Iterator[None]:
    """One torch thread for a small fit on the CPU (see ONE_THREAD_ELEMENTS), the caller's count restored after."""
    if features.device.type != "cpu" or features.numel() > ONE_THREAD_ELEMENTS:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(head: nn.Module, train: torch.Tensor, labels: torch.Tensor, criterion: nn.Module, metric: str,
         generator: torch.Generator | None, settings: FitSettings, should_stop: Callable[[], bool],
         progress: Callable[[Progress], None] | None) -> HeadFit | None:
    started = time.perf_counter()
    views, n, _dim = train.shape
    rows, row_labels = train.reshape(views * n, -1), labels.repeat(views)
    initial = copy.deepcopy(head).eval().float()
    counts = torch.bincount(labels)
    folds = min(settings.folds, int(counts[counts > 0].min()))
    grid = list(settings.grid) if folds >= 2 else [settings.default_l2]
    repeats = settings.repeats if folds >= 2 else 0
    total = repeats * folds * len(grid) + 1
    done = 0

    def tell(stage: str, fold: int, l2: float, iteration: int = 0, objective: float = math.nan) -> None:
        if progress is not None:
            progress(Progress(stage, done, total, fold, l2, iteration, objective))

    cv_loss, cv_acc = [0.0] * len(grid), [0] * len(grid)
    temperatures = torch.tensor(settings.temperatures, dtype=torch.float32)
    cv_tempered = torch.zeros(len(grid), len(temperatures))  # held-out loss at each (strength, temperature)
    cv_iterations = 0
    if folds >= 2:
        generator = generator or torch.Generator().manual_seed(0)
        for fold in range(repeats * folds):
            if fold % folds == 0:  # a new shuffle for each repeat
                fold_of = stratified_folds(labels.cpu(), folds, generator)
                fold_of = fold_of.to(train.device).repeat(views)  # every view of an image in its image's fold
            inside = fold_of != fold % folds
            problem = _Problem(copy.deepcopy(initial), rows[inside], row_labels[inside], criterion, settings)
            for g, l2 in enumerate(grid):  # strongest first: each fit starts where the previous one ended
                outcome = problem.minimise(l2, settings.cv_max_iter, should_stop,
                                           tolerance_grad=settings.cv_tolerance_grad)
                if outcome is None:
                    return None
                cv_iterations += outcome[0]
                logits, held_labels = problem.held_out(rows[~inside]).float(), row_labels[~inside]
                cv_loss[g] += float(criterion(logits, held_labels)) * len(held_labels)
                cv_acc[g] += int((logits.argmax(1) == held_labels).sum())
                if settings.calibrate:
                    cv_tempered[g] += _tempered_losses(logits, held_labels, criterion, temperatures)
                done += 1
                tell(CROSS_VALIDATION, fold % folds + 1, l2)
        cv_loss = [v / (repeats * len(rows)) for v in cv_loss]
        cv_acc = [c / (repeats * len(rows)) for c in cv_acc]
        cv_tempered /= repeats * len(rows)
    best = _best(cv_loss, cv_acc, metric) if folds >= 2 else 0
    l2 = grid[best]
    temperature, calibrated = 1.0, math.nan
    if folds >= 2 and settings.calibrate:
        # the temperature with the lowest held-out loss; the grid holds 1.0, which wins when no other does better
        t = int(torch.argmin(cv_tempered[best]))
        temperature, calibrated = float(temperatures[t]), float(cv_tempered[best, t])
    final = _Problem(copy.deepcopy(initial), rows, row_labels, criterion, settings)
    curve: list[tuple[int, float]] = []
    with torch.no_grad():
        curve.append((0, float(final.objective(l2))))

    def report(iteration: int, objective: float) -> None:
        curve.append((iteration, objective))
        tell(FINAL_FIT, 0, l2, iteration, objective)

    outcome = final.minimise(l2, settings.final_max_iter, should_stop, report)
    if outcome is None:
        return None
    iterations, converged = outcome
    with torch.no_grad():
        logits = final.head(final.x) / temperature  # the head as it will be: calibrated
        train_loss = float(criterion(logits, row_labels))
        train_acc = float((logits.argmax(1) == row_labels).float().mean())
    return HeadFit(final.folded_parameters(temperature), l2, grid, cv_loss if folds >= 2 else [],
                   cv_acc if folds >= 2 else [], folds if folds >= 2 else 0, iterations, converged, cv_iterations,
                   curve, train_loss, train_acc, len(rows), time.perf_counter() - started, repeats, temperature,
                   calibrated)


def _tempered_losses(logits: torch.Tensor, labels: torch.Tensor, criterion: nn.Module,
                     temperatures: torch.Tensor) -> torch.Tensor:
    """The summed loss of `logits / T` for every temperature T (one row per temperature, batched)."""
    scaled = logits.unsqueeze(0) / temperatures.to(logits.device).view(-1, 1, 1)  # (T, N, C)
    flat = scaled.reshape(-1, logits.shape[1])
    per_row = nn.functional.cross_entropy(flat, labels.repeat(len(temperatures)), reduction="none",
                                          label_smoothing=getattr(criterion, "label_smoothing", 0.0))
    return per_row.view(len(temperatures), -1).sum(1).cpu()


def iteration_seconds(head: nn.Module, rows: int, dim: int, classes: int, criterion: nn.Module,
                      device: torch.device, iterations: int = 10) -> float:
    """Seconds per L-BFGS iteration of a fit of `head` on `rows` features of `dim` (random ones: the cost of an
    iteration does not depend on the values), line search and Python overhead included."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, dim, generator=generator).to(device)
    with _cpu_threads_for(x):
        return _iteration_seconds(head, x, classes, criterion, device, iterations)


def _iteration_seconds(head: nn.Module, x: torch.Tensor, classes: int, criterion: nn.Module, device: torch.device,
                       iterations: int) -> float:
    rows = len(x)
    generator = torch.Generator().manual_seed(1)
    y = torch.randint(0, classes, (rows,), generator=generator).to(device)
    settings = FitSettings(tolerance_grad=0.0, tolerance_change=0.0)  # no early convergence: every iteration runs
    problem = _Problem(copy.deepcopy(head).eval().float(), x, y, criterion, settings)
    problem.minimise(1e-3, 1, lambda: False)  # warm-up: first kernels, autograd's start
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    done, _ = problem.minimise(1e-3, iterations, lambda: False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / max(1, done)


def _best(cv_loss: list[float], cv_acc: list[float], metric: str) -> int:
    """The grid point the monitored metric prefers; a tie goes to the stronger L2 (the earlier index)."""
    score = [-loss for loss in cv_loss] if metric == "val_loss" else cv_acc
    return max(range(len(score)), key=lambda i: (score[i], -i))


@torch.no_grad()
def write_parameters(head: nn.Module, parameters: dict[str, torch.Tensor]) -> None:
    """Copy a fit's parameters into the head in place (its tensors keep their identity, dtype and device)."""
    for name, param in head.named_parameters():
        param.copy_(parameters[name].to(param.device, param.dtype))
