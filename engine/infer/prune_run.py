"""Prune a run's model, let it recover, measure what it cost, and keep it as a new run only when it is good enough.

    run's checkpoint ─► model ─► prune channels (engine/infer/pruning.py, torch-pruning) ─► fine-tune every layer
          │                        │                                                      (engine/infer/recovery.py)
          └─ costs of each: parameters, weights file size, batch-1 latency on this device, validation accuracy
                               ─► drop ≤ --max-drop: a NEW run folder (checkpoints/best.pt, last.pt, prune.json …)
                               ─► drop > --max-drop: only <runs folder>/<name>.prune-failed.json, exit 1

The new run is written in a hidden temporary folder of the runs folder and renamed into place when complete, so a
stop (Ctrl-C), a refusal or a crash never leaves a run folder behind. Its checkpoint holds the pruned structure as
plain values (engine/model/pruned_structure.py): predict, evaluate, export and the studio rebuild it from there.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from engine.data.datasets import PreparedData, prepare_data
from engine.data.transforms import eval_transform, train_transform
from engine.errors import BadInputError, ThawError
from engine.infer.inference import inference_device
from engine.infer.latency import measure_latency
from engine.infer.pruning import check_amount, count_parameters, prune_channels, require_torch_pruning
from engine.infer.recovery import RecoverySettings, RecoveryStopped, evaluate, fine_tune
from engine.infer.run_checkpoint import RunCheckpoint, loader_workers, open_checkpoint, trained_model
from engine.io_files import write_json_atomic
from engine.model.build import build_model
from engine.model.pruned_structure import PRUNING_KEY
from engine.train.checkpoints import link_checkpoint, load_checkpoint, save_checkpoint
from engine.train.metrics import EPOCH_COLUMNS
from engine.train.run_folder import CsvLog
from engine.train.runs import (
    MAX_FOLDER_NAME_CHARS,
    MAX_RUN_NAME_CHARS,
    METRICS_FILE,
    RECIPE_FILE,
    SUMMARY_FILE,
    checkpoint_path,
    prepare_runs_root,
)

REPORT_FILE = "prune.json"  # in the new run folder
FAILED_SUFFIX = ".prune-failed.json"  # beside where the new run would have been
CHECKPOINT_KINDS = ("best", "last")
TEMP_PREFIX = ".thaw-prune-"
LATENCY_ROUNDS = 3


@dataclass
class PruneRequest:
    run: str  # a run folder, or a checkpoint file
    amount: float = 0.3  # share of each prunable layer's channels removed
    epochs: int = 10  # recovery fine-tune; 0: none (bench/README.md: 3 epochs recovered far less)
    max_drop: float = 2.0  # validation accuracy points the pruned model may lose against the original
    checkpoint: str = "best"
    out: str = ""  # runs folder for the new run; empty: the original run's
    lr: float = 1e-4
    device: str = "auto"
    latency_runs: int = 30  # 0: no latency measurement

    def validate(self) -> PruneRequest:
        self.amount = check_amount(self.amount)
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise BadInputError(f"--epochs must be a whole number >= 0 (0: no recovery fine-tune), got {self.epochs}")
        if not (isinstance(self.max_drop, (int, float)) and math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise BadInputError(f"--max-drop must be a number of accuracy points >= 0, got {self.max_drop}")
        if self.checkpoint not in CHECKPOINT_KINDS:
            raise BadInputError(f"--checkpoint '{self.checkpoint}' is not one of {', '.join(CHECKPOINT_KINDS)}")
        if not (math.isfinite(self.lr) and 0 < self.lr < 1):
            raise BadInputError(f"--lr must be between 0 and 1, got {self.lr}")
        if self.latency_runs < 0:
            raise BadInputError(f"--latency-runs must be >= 0, got {self.latency_runs}")
        return self


@dataclass
class PruneProgress:
    """One step of a pruning job, for subscribers: stage is load, data, measure, prune, fine-tune, write or done."""

    stage: str
    message: str
    done: int = 0
    total: int = 0
    step: str = ""  # what a count is within, where it starts again ("epoch 2/10"): a progress view's stage


@dataclass
class ModelCost:
    """One model of the comparison."""

    label: str
    parameters: int
    size_bytes: int  # its weights saved as a file (torch.save of the state dict)
    latency_ms: float | None  # batch-1 median on the job's device
    val_accuracy: float


@dataclass
class PruneResult:
    kept: bool
    run_dir: str  # the new run (only when kept)
    report_path: str  # RUN/prune.json, or <runs folder>/<name>.prune-failed.json
    source_run: str
    source_checkpoint: str
    amount: float
    epochs: int
    max_drop: float
    drop_points: float  # original accuracy − kept model's, in points (negative: it improved)
    device: str
    latency_threads: int
    optimizer: str
    costs: list[ModelCost]
    epochs_log: list[dict] = field(default_factory=list)
    layers_pruned: int = 0
    seconds: float = 0.0
    failure: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary_lines(self) -> list[str]:
        return [cost_table(self.costs, self.latency_threads, self.device),
                f"pruned {self.layers_pruned} layers ({100 * self.amount:g} % of each one's channels); "
                f"fine-tune: {self.epochs} epoch(s), {self.optimizer}",
                f"validation accuracy {accuracy_change(self.drop_points)} against the original "
                f"(limit --max-drop {self.max_drop:g})"]


def accuracy_change(drop_points: float) -> str:
    """"fell by 1.50 points", "rose by 0.50 points" or "did not change": a sign in words, never "fell by +50"."""
    if drop_points > 0:
        return f"fell by {drop_points:.2f} points"
    return f"rose by {-drop_points:.2f} points" if drop_points < 0 else "did not change"


class PruneRefusedError(ThawError):
    """The pruned model lost more accuracy than allowed (exit 1); only the failure report was written."""

    def __init__(self, message: str, result: PruneResult):
        super().__init__(message)
        self.result = result


class PruneCancelled(ThawError):
    """Stopped by the user; nothing was written."""


def cost_table(costs: list[ModelCost], threads: int, device: str) -> str:
    first = costs[0]
    rows = [("model", "parameters", "size", f"batch-1 latency ({device})", "val accuracy")]
    for c in costs:
        share = "" if c is first else f" ({100 * c.parameters / first.parameters:.0f} %)"
        latency = f"{c.latency_ms:.2f} ms" if c.latency_ms is not None else "—"
        if c.latency_ms is not None and first.latency_ms and c is not first:
            latency += f" (×{first.latency_ms / c.latency_ms:.2f})"
        rows.append((c.label, f"{c.parameters:,}{share}", f"{c.size_bytes / 1e6:.2f} MB", latency,
                     f"{100 * c.val_accuracy:.1f} %"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + (f"\n(latency: {threads} CPU thread(s))" if device == "cpu" else "")


def weights_file_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


class _Prune:
    """One pruning job from start to finish; `run()` is the whole story, each method one step of it."""

    def __init__(self, request: PruneRequest, subscribers: Iterable[Callable[[PruneProgress], None]],
                 should_stop: Callable[[], bool]):
        self.request = request.validate()
        self.subscribers = list(subscribers)
        self.should_stop = should_stop
        self.started = time.perf_counter()

    def emit(self, stage: str, message: str, done: int = 0, total: int = 0, step: str = "") -> None:
        event = PruneProgress(stage, message, done, total, step)
        for subscriber in self.subscribers:
            subscriber(event)

    def check_stop(self) -> None:
        if self.should_stop():
            raise PruneCancelled("pruning stopped; nothing was written")

    def run(self) -> PruneResult:
        r = self.request
        require_torch_pruning()
        self.emit("load", f"loading {r.run}")
        checkpoint = open_checkpoint(r.run, r.checkpoint)
        root = self.runs_root(checkpoint)
        device = inference_device(r.device)
        self.check_stop()
        data = self.prepare(checkpoint)
        self.check_stop()
        try:
            return self.prune_and_keep(checkpoint, data, device, root)
        except RecoveryStopped:
            raise PruneCancelled("pruning stopped; nothing was written") from None

    def runs_root(self, checkpoint: RunCheckpoint) -> Path:
        if self.request.out:
            return prepare_runs_root(self.request.out)
        if checkpoint.run_dir is None:
            raise BadInputError(f"{checkpoint.path} is not inside a run folder: say where the new run goes with "
                                f"--out RUNS_FOLDER")
        return prepare_runs_root(checkpoint.run_dir.parent)

    def prepare(self, checkpoint: RunCheckpoint) -> PreparedData:
        recipe, prep = checkpoint.recipe, checkpoint.preprocessing
        self.emit("data", f"reading the run's images ({recipe.data.root or recipe.data.dataset})")
        try:
            data = prepare_data(recipe.data, train_transform(prep, recipe.data.augmentation,
                                                             recipe.data.horizontal_flip),
                                eval_transform(prep), checkpoint.channels, seed=recipe.seed)
        except BadInputError as exc:
            raise BadInputError(f"the run's data cannot be read any more: {exc}") from exc
        if list(data.classes) != checkpoint.class_names:
            raise BadInputError(f"the run's data folder now holds the classes {', '.join(data.classes)}, not the "
                                f"run's {', '.join(checkpoint.class_names)}")
        return data

    def measure(self, label: str, model: nn.Module, data: PreparedData, device: torch.device) -> ModelCost:
        """Parameters, file size and validation accuracy now; the latency later, with the others' (latencies)."""
        self.emit("measure", f"{label}: validation accuracy")
        accuracy, _ = evaluate(model, data.val, device, max(1, self.recipe.batch_size), self.should_stop,
                               loader_workers(self.recipe, len(data.val)))
        return ModelCost(label, count_parameters(model), weights_file_bytes(model), None, accuracy)

    def latencies(self, rows: list[tuple[ModelCost, nn.Module]], one: torch.Tensor, device: torch.device) -> None:
        """Every model's batch-1 latency, measured in turns (LATENCY_ROUNDS rounds, a third of the runs each) and
        the best round's median kept: on a shared machine the load drifts over minutes, and models measured minutes
        apart would compare that drift, not the models."""
        runs = self.request.latency_runs
        if not runs:
            return
        self.emit("measure", f"batch-1 latency of {len(rows)} models, {LATENCY_ROUNDS} rounds")
        one = one.to(device)
        for _ in range(LATENCY_ROUNDS):
            for cost, model in rows:
                self.check_stop()
                model.to(device).eval()
                median = measure_latency(_synchronised(model, device), one,
                                         runs=max(5, math.ceil(runs / LATENCY_ROUNDS))).median_ms
                cost.latency_ms = median if cost.latency_ms is None else min(cost.latency_ms, median)

    def prune_and_keep(self, checkpoint: RunCheckpoint, data: PreparedData, device: torch.device,
                       root: Path) -> PruneResult:
        r = self.request
        self.recipe = recipe = checkpoint.recipe
        original = trained_model(checkpoint).model.to(device).eval()
        costs = [self.measure("original", original, data, device)]
        self.check_stop()

        self.emit("prune", f"pruning {100 * r.amount:g} % of each layer's channels (L2 magnitude)")
        model = copy.deepcopy(original).cpu()
        original.cpu()  # kept on the CPU until the latencies are measured
        reference = build_model(recipe.model, len(checkpoint.class_names), recipe.data, pretrained=False).model.eval()
        example = data.val[0][0].unsqueeze(0)
        outcome = prune_channels(model, reference, example, original_head(checkpoint), r.amount)
        del reference
        model.to(device)
        costs.append(self.measure("pruned", model, data, device))
        timed = [(costs[0], original), (costs[1], copy.deepcopy(model).cpu() if r.epochs else model)]
        self.check_stop()

        settings = RecoverySettings(epochs=r.epochs, lr=r.lr, batch_size=max(1, recipe.batch_size),
                                    label_smoothing=recipe.label_smoothing,
                                    workers=loader_workers(recipe, len(data.train)), seed=recipe.seed)
        if r.epochs:
            self.emit("fine-tune", f"recovery fine-tune: {settings.optimizer_text}")
        log = fine_tune(model, data.train, data.val, settings, device, self.should_stop,
                        lambda epoch, done, total, loss: self.emit("fine-tune", f"epoch {epoch + 1}/{r.epochs} "
                                                                   f"loss {loss:.4f}", done, total,
                                                                   f"fine-tune epoch {epoch + 1}/{r.epochs}"))
        for e in log:
            self.emit("epoch", f"epoch {e.epoch}/{r.epochs}: train loss {e.train_loss:.4f}, acc {e.train_acc:.3f}; "
                               f"val loss {e.val_loss:.4f}, acc {e.val_acc:.3f}")
        if r.epochs:
            costs.append(self.measure(f"pruned + fine-tuned ({r.epochs} ep)", model, data, device))
            timed.append((costs[2], model))
        self.check_stop()
        self.latencies(timed, example, device)
        del timed, original

        drop = 100 * (costs[0].val_accuracy - costs[-1].val_accuracy)
        name = f"{recipe.name}-pruned{round(100 * r.amount)}"[:MAX_RUN_NAME_CHARS]
        folder = f"{time.strftime('%Y%m%d-%H%M%S')}-{_safe(name)}"
        result = PruneResult(
            kept=drop <= r.max_drop, run_dir="", report_path="", source_run=str(checkpoint.run_dir or ""),
            source_checkpoint=str(checkpoint.path), amount=r.amount, epochs=r.epochs, max_drop=r.max_drop,
            drop_points=drop, device=str(device), latency_threads=torch.get_num_threads(),
            optimizer=settings.optimizer_text if r.epochs else "none", costs=costs,
            epochs_log=[asdict(e) for e in log], layers_pruned=outcome.layers_pruned)
        if not result.kept:
            result.failure = (f"validation accuracy fell by {drop:.2f} points ({100 * costs[0].val_accuracy:.1f} % → "
                              f"{100 * costs[-1].val_accuracy:.1f} %), more than --max-drop {r.max_drop:g}")
            report = root / (folder + FAILED_SUFFIX)
            result.report_path, result.seconds = str(report), time.perf_counter() - self.started
            write_json_atomic(report, result.to_dict())
            raise PruneRefusedError(f"the pruned model was not kept: {result.failure}; no run was written; details "
                                    f"in {report}", result)
        self.emit("write", "writing the new run")
        self.write_run(checkpoint, model, outcome.structure, result, name, folder, root, data, log)
        self.emit("done", f"saved {result.run_dir}")
        return result

    def write_run(self, checkpoint: RunCheckpoint, model: nn.Module, structure: dict, result: PruneResult,
                  name: str, folder: str, root: Path, data: PreparedData, log: list) -> None:
        """Everything in a hidden folder of the runs folder, renamed into place last (never half a run)."""
        r = self.request
        source_state = load_checkpoint(checkpoint.path)
        recipe = copy.deepcopy(checkpoint.recipe)
        recipe.name = name
        run_id = uuid.uuid4().hex
        pruning = {**structure, "amount": r.amount, "importance": "L2 magnitude (torch-pruning)",
                   "epochs": r.epochs, "optimizer": result.optimizer,
                   "source": {"run": Path(result.source_run).name, "run_id": str(source_state.get("run_id") or ""),
                              "checkpoint": checkpoint.kind}}
        state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "recipe": recipe.to_dict(),
                 "class_names": list(checkpoint.class_names), "preprocessing": checkpoint.preprocessing.to_dict(),
                 "head_path": checkpoint.head_path, "weights_name": checkpoint.weights_name, "run_id": run_id,
                 "epoch": r.epochs, PRUNING_KEY: pruning}
        work = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=root))
        try:
            last = save_checkpoint(checkpoint_path(work, "last"), state)
            link_checkpoint(last, checkpoint_path(work, "best"))
            final_acc = result.costs[-1].val_accuracy
            rows = [{"epoch": e.epoch, "phase": 0, "phase_name": "recovery", "train_loss": e.train_loss,
                     "train_acc": e.train_acc, "val_loss": e.val_loss, "val_acc": e.val_acc, "seconds": e.seconds,
                     "images_per_s": e.images / e.seconds if e.seconds > 0 else 0.0, "data_wait_share": 0.0,
                     "train_images": e.images, "fit": "batches", "is_best": e.epoch == len(log), "lr_all": e.lr}
                    for e in log]
            CsvLog(work / METRICS_FILE, [*EPOCH_COLUMNS, "is_best", "lr_all"]).rewrite(rows)
            params = count_parameters(model)
            summary = {
                "run_id": run_id, "name": name, "strategy": recipe.strategy, "arch": recipe.model.arch,
                "weights": checkpoint.weights_name, "status": "finished", "device": str(result.device),
                "num_classes": len(checkpoint.class_names), "classes": list(checkpoint.class_names),
                "train_size": len(data.train), "val_size": len(data.val),
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - result.seconds)),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "epochs_done": len(log),
                "best_val_acc": final_acc, "best_epoch": len(log) or None, "final_val_acc": final_acc,
                "phases": [{"index": 0, "name": "recovery", "epochs": r.epochs, "trainable_params": params,
                            "total_params": params}],
                "preprocessing": checkpoint.preprocessing.to_dict(), "torch": str(torch.__version__),
                "error": "", "wall_seconds": time.perf_counter() - self.started,
                "pruned_from": {"run": result.source_run, "checkpoint": checkpoint.kind, "amount": r.amount,
                                "drop_points": result.drop_points, "report": REPORT_FILE},
            }
            result.seconds = time.perf_counter() - self.started
            final = _free_name(root, folder)
            result.run_dir, result.report_path = str(final), str(final / REPORT_FILE)
            write_json_atomic(work / REPORT_FILE, result.to_dict())
            write_json_atomic(work / SUMMARY_FILE, summary)
            self.check_stop()
            write_json_atomic(work / RECIPE_FILE, recipe.to_dict())  # last: only now does it look like a run
            os.rename(work, final)
        except BaseException:
            result.run_dir = result.report_path = ""
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)


def original_head(checkpoint: RunCheckpoint) -> str:
    if not checkpoint.head_path:
        raise BadInputError(f"{checkpoint.path} does not name its head; Thaw cannot tell which layer to keep whole")
    return checkpoint.head_path


def _synchronised(model: nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A call that returns only when the device has finished (CUDA runs asynchronously)."""
    if device.type != "cuda":
        return model

    def run(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        torch.cuda.synchronize(device)
        return out

    return run


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:MAX_FOLDER_NAME_CHARS].strip("-.") or "run"


def _free_name(root: Path, folder: str) -> Path:
    path, suffix = root / folder, 1
    while path.exists():
        suffix += 1
        path = root / f"{folder}-{suffix}"
    return path


def prune_run(request: PruneRequest, subscribers: Iterable[Callable[[PruneProgress], None]] = (),
              should_stop: Callable[[], bool] = lambda: False) -> PruneResult:
    """Prune, fine-tune, measure, keep (see the module's note). Raises BadInputError for unusable input (exit 2),
    PruneRefusedError when the accuracy fell past --max-drop (exit 1), PruneCancelled when `should_stop()` turned
    true (nothing written)."""
    return _Prune(request, subscribers, should_stop).run()


def read_report(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
