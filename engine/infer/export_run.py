"""Export a run's checkpoint, check the file against it, and keep it only when they agree.

    checkpoint ─► model in torch ─► write_export (temp folder beside --out) ─► [int8: quantize_int8]
         │                                         │
         └── validation images of the run ──► parity check (every file vs the checkpoint)
                                                   ─► costs (size, batch-1 latency, accuracy)
                                                   ─► FILE + FILE.report.json, or FILE.failed.json and exit 1

A file appears at --out only after its parity check passed (it is renamed there from the temporary folder); when
a check fails, the file is deleted and only FILE.failed.json tells what went wrong. Progress goes to subscribers
as ExportProgress events, like the trainer's events (the CLI prints them, the studio's dialog shows them).

A format that cannot run on this system (Core ML off macOS) is written, read back (its metadata and checksum) and
kept with FILE.report.json whose verdict is "not checked" and says why: the user asked for a file and has it, but
nothing claims it agrees with the checkpoint. A folder export (an .mlpackage) replaces an earlier one at --out only
once it is complete, and never a folder that is not an export of its format.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision

import engine
from engine.data.datasets import PreparedData, prepare_data
from engine.data.transforms import eval_transform
from engine.errors import BadInputError, ThawError
from engine.infer.export import save_onnx, stamp_onnx, write_export
from engine.infer.export_formats import FORMATS
from engine.infer.export_metadata import INPUT_NAME, SUFFIXES, ExportMetadata
from engine.infer.exported import open_export, sniff
from engine.infer.inference import Predictor
from engine.infer.latency import measure_latency
from engine.infer.parity import (
    FAILED,
    FP32_RELATIVE_TOLERANCE,
    INT8_MIN_TOP1_AGREEMENT,
    NOT_CHECKED,
    PASSED,
    ParityCriteria,
    ParityReport,
    batch_plan,
    batches_of,
    collect_logits,
    compare,
)
from engine.infer.quantize import CALIBRATION_METHODS, Int8Settings, quantize_int8
from engine.io_files import check_target, replace_folder_into, replace_into, temp_dir_beside, write_json_atomic
from engine.train.checkpoints import load_checkpoint
from engine.train.runs import CHECKPOINT_DIR, check_run_identity, checkpoint_path

REPORT_SUFFIX = ".report.json"
FAILED_SUFFIX = ".failed.json"
CHECKPOINT_KINDS = ("best", "last")
QUANTIZE_CHOICES = ("none", "int8", "fp16")


@dataclass
class ExportRequest:
    run: str  # a run folder, or a checkpoint file
    format: str = "onnx"
    out: str = ""  # empty: <run>/exports/<checkpoint>[-int8].<suffix>
    checkpoint: str = "best"  # best | last (a run folder only)
    quantize: str = "none"  # none | int8 (ONNX only) | fp16 (formats with half precision: Core ML)
    data_root: str = ""  # images for the check and the calibration instead of the run's data.root
    max_images: int = 256  # validation images through every model
    calibration_images: int = 128
    calibration_method: str = "minmax"
    tolerance: float = FP32_RELATIVE_TOLERANCE  # max |Δlogit| ≤ tolerance × max(1, max |logit|)
    int8_min_agreement: float = INT8_MIN_TOP1_AGREEMENT
    opset: int = 0  # 0: the exporter's default
    latency_runs: int = 30  # 0: no latency measurement
    keep_fp32: bool = False  # with int8: keep the fp32 model too (fp32_out), checked and reported like it

    def validate(self) -> ExportRequest:
        if self.format not in FORMATS:
            raise BadInputError(f"--format '{self.format}' is not one of {', '.join(FORMATS)}")
        if self.checkpoint not in CHECKPOINT_KINDS:
            raise BadInputError(f"--checkpoint '{self.checkpoint}' is not one of {', '.join(CHECKPOINT_KINDS)}")
        if self.quantize not in QUANTIZE_CHOICES:
            raise BadInputError(f"--quantize '{self.quantize}' is not one of {', '.join(QUANTIZE_CHOICES)}")
        if self.quantize == "int8" and not FORMATS[self.format].quantizable:
            raise BadInputError(f"--quantize int8 needs --format onnx (onnxruntime quantizes ONNX models), "
                                f"not {self.format}")
        if self.quantize == "fp16" and not FORMATS[self.format].fp16:
            raise BadInputError(f"--quantize fp16 needs --format "
                                f"{' or '.join(f.name for f in FORMATS.values() if f.fp16)}, not {self.format}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise BadInputError(f"--calibration-method '{self.calibration_method}' is not one of "
                                f"{', '.join(CALIBRATION_METHODS)}")
        for name, value, low in (("--max-images", self.max_images, 1), ("--calibration-images",
                                 self.calibration_images, 1), ("--latency-runs", self.latency_runs, 0)):
            if value < low:
                raise BadInputError(f"{name} must be >= {low}, got {value}")
        if self.opset:
            low, high = supported_opsets()
            if self.format != "onnx":
                raise BadInputError(f"--opset is an ONNX setting; --format {self.format} has none")
            if not low <= self.opset <= high:
                raise BadInputError(f"--opset {self.opset} is not supported: Thaw exports ONNX opsets {low} to {high}")
        if not self.tolerance > 0:
            raise BadInputError(f"--tolerance must be > 0, got {self.tolerance}")
        if not 0.0 <= self.int8_min_agreement <= 1.0:
            raise BadInputError(f"--int8-min-agreement must be in [0, 1], got {self.int8_min_agreement}")
        return self


def supported_opsets() -> tuple[int, int]:
    """The ONNX opsets an export can be asked for: from 18 (the dynamo exporter's own; it converts below that
    unreliably) to the highest both torch's exporter and the installed onnx know."""
    import onnx
    from torch.onnx import _constants

    return 18, min(int(getattr(_constants, "ONNX_MAX_OPSET", 18)), int(onnx.defs.onnx_opset_version()))


@dataclass
class ExportProgress:
    """One step of an export, for subscribers: stage is load, data, export, quantize, check, latency or done."""

    stage: str
    message: str
    done: int = 0
    total: int = 0


@dataclass
class ModelCost:
    """What one model costs and gives, side by side with the others of the same export."""

    label: str  # "checkpoint (torch)", "onnx", "onnx int8" …
    size_bytes: int  # the file (for the checkpoint: its model weights)
    latency_ms: float | None  # batch-1 median on the CPU
    latency_threads: int
    val_accuracy: float | None  # on the checked images, when their classes are the model's
    top1_agreement: float | None  # with the checkpoint
    max_abs_logit_diff: float | None


@dataclass
class ExportResult:
    passed: bool  # every file was checked and agrees (False when one was not checked)
    path: str  # the export (when it passed or was not checked)
    report_path: str  # FILE.report.json, or FILE.failed.json
    format: str
    exporter: str
    notes: list[str]
    parity: list[ParityReport]
    costs: list[ModelCost]
    metadata: dict
    images: int
    labels_match: bool  # whether accuracies could be computed (the images' classes are the model's)
    seconds: float
    failure: str = ""
    fp32_path: str = ""  # the fp32 model kept beside an int8 export (keep_fp32, when passed)

    @property
    def verdict(self) -> str:
        """passed, failed (one check failed), or not checked (no check failed, one file could not run here)."""
        verdicts = {p.verdict for p in self.parity}
        return FAILED if FAILED in verdicts or not verdicts else NOT_CHECKED if NOT_CHECKED in verdicts else PASSED

    @property
    def not_checked(self) -> str:
        """Why a file was not checked ("" when every one was)."""
        return "; ".join(f"{p.label}: {p.not_checked}" for p in self.parity if p.not_checked)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["parity"] = [p.to_dict() for p in self.parity]
        data["verdict"] = self.verdict
        return data

    def summary_lines(self) -> list[str]:
        lines = [p.summary() for p in self.parity]
        if self.costs:
            lines.append(cost_table(self.costs))
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


class ExportFailedError(ThawError):
    """The export was written but disagrees with the checkpoint, or could not be written (exit 1). The file is
    gone; `result` (when the check ran) is what FILE.failed.json holds."""

    def __init__(self, message: str, result: ExportResult | None = None):
        super().__init__(message)
        self.result = result


class ExportCancelled(ThawError):
    """Stopped by the user; nothing was written."""


def cost_table(costs: list[ModelCost]) -> str:
    """A plain-text table: one row per model (checkpoint in torch, the export, its int8 version)."""
    rows = [("model", "size", "batch-1 latency", "val accuracy", "top-1 = checkpoint", "max |Δlogit|")]
    for c in costs:
        rows.append((c.label, f"{c.size_bytes / 1e6:.2f} MB",
                     f"{c.latency_ms:.2f} ms ({c.latency_threads} thr)" if c.latency_ms is not None else "—",
                     f"{100 * c.val_accuracy:.1f} %" if c.val_accuracy is not None else "—",
                     f"{100 * c.top1_agreement:.1f} %" if c.top1_agreement is not None else "—",
                     f"{c.max_abs_logit_diff:.3g}" if c.max_abs_logit_diff is not None else "—"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def default_out(run_dir: Path, checkpoint: str, fmt: str, quantize: str) -> Path:
    return run_dir / "exports" / f"{checkpoint}{'' if quantize == 'none' else '-' + quantize}{SUFFIXES[fmt]}"


def fp32_out(out: Path) -> Path:
    """Where an int8 export's fp32 model is kept: best-int8.onnx → best.onnx, model.onnx → model-fp32.onnx."""
    stem = out.name.removesuffix(out.suffix)
    fp32 = stem.removesuffix("-int8")
    return out.with_name(f"{fp32 if fp32 != stem else stem + '-fp32'}{out.suffix}")


def resolve_checkpoint(run: str, kind: str) -> tuple[Path, Path, str]:
    """(run folder, checkpoint file, kind) for a run folder or a checkpoint file."""
    path = Path(run).expanduser()
    if path.is_dir():
        checkpoint = checkpoint_path(path, kind)
        if not checkpoint.is_file():
            others = [k for k in CHECKPOINT_KINDS if checkpoint_path(path, k).is_file()]
            hint = f"; it has {', '.join(o + '.pt' for o in others)} (--checkpoint {others[0]})" if others else \
                "; is it a Thaw run folder?"
            raise BadInputError(f"{path} has no {CHECKPOINT_DIR}/{kind}.pt{hint}")
        return path, checkpoint, kind
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
        return run_dir, path, path.stem
    raise BadInputError(f"{path} is neither a run folder nor a checkpoint file")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def evenly_spaced(count: int, limit: int) -> list[int]:
    """Up to `limit` indices spread over 0…count-1 (a stratified split lists its images class by class)."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)}) if limit > 1 else [0]


def _versions() -> dict[str, str]:
    versions = {"thaw": engine.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "python": platform.python_version()}
    for name in ("onnx", "onnxruntime", "onnxscript", "openvino"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return versions


class _Export:
    """One export from start to finish; `run()` is the whole story, each method one step of it."""

    def __init__(self, request: ExportRequest, subscribers: Iterable[Callable[[ExportProgress], None]],
                 should_stop: Callable[[], bool]):
        self.request = request.validate()
        self.subscribers = list(subscribers)
        self.should_stop = should_stop
        self.started = time.perf_counter()

    def emit(self, stage: str, message: str, done: int = 0, total: int = 0) -> None:
        event = ExportProgress(stage, message, done, total)
        for subscriber in self.subscribers:
            subscriber(event)

    @property
    def keeps_fp32(self) -> bool:
        return self.request.quantize == "int8" and self.request.keep_fp32

    def check_stop(self) -> None:
        if self.should_stop():
            raise ExportCancelled("export stopped; nothing was written")

    def run(self) -> ExportResult:
        r = self.request
        run_dir, checkpoint, kind = resolve_checkpoint(r.run, r.checkpoint)
        out = Path(r.out).expanduser() if r.out else default_out(run_dir, kind, r.format, r.quantize)
        record = FORMATS[r.format]
        if out.is_dir() and not record.folder:
            raise BadInputError(f"--out {out} is a folder; give the file to write, e.g. "
                                f"{out / ('model' + SUFFIXES[r.format])}")
        if out.is_dir() and not self.replaceable(out):
            raise BadInputError(f"--out {out} is a folder that is not a {record.noun}; Thaw replaces only an "
                                f"earlier export there: give a new name, e.g. {out / ('model' + record.suffix)}")
        # Before any work: the export, its .data file and its reports go only where regular files may go (a
        # folder format's package where a folder may go).
        check_target(out, "--out", folder=record.folder)
        for companion in [*FORMATS[r.format].companion_paths(out),
                          *(out.with_name(out.name + suffix) for suffix in (REPORT_SUFFIX, FAILED_SUFFIX))]:
            check_target(companion, "--out's companion file")
        if self.keeps_fp32:
            check_target(fp32_out(out), "the fp32 model's file")
            for companion in [*FORMATS[r.format].companion_paths(fp32_out(out)),
                              fp32_out(out).with_name(fp32_out(out).name + REPORT_SUFFIX)]:
                check_target(companion, "the fp32 model's companion file")
        FORMATS[r.format].require()
        self.emit("load", f"loading {checkpoint}")
        state = load_checkpoint(checkpoint)
        check_run_identity(state, checkpoint)
        predictor = Predictor.from_state(state, checkpoint, "cpu")
        self.check_stop()
        data = self.prepare_images(predictor)
        self.check_stop()
        metadata = self.metadata(predictor, state, run_dir, checkpoint, kind)
        work = temp_dir_beside(out, "--out", folder=record.folder)
        try:
            return self.export_and_check(predictor, data, metadata, out, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def replaceable(self, path: Path) -> bool:
        """Whether the folder at `path` is an earlier export of this format (a user's folder never is)."""
        return sniff(path) == self.request.format

    # --- the images ---------------------------------------------------------------------------------------------
    def prepare_images(self, predictor: Predictor) -> PreparedData:
        r = self.request
        recipe = predictor.recipe
        config = recipe.data
        if r.data_root:
            config.root = r.data_root
        transform = eval_transform(predictor.preprocessing)
        self.emit("data", f"reading the validation images of {config.root or config.dataset}")
        try:
            data = prepare_data(config, transform, transform, predictor.channels, seed=recipe.seed)
        except BadInputError as exc:
            raise BadInputError(f"the parity check needs images of the run: {exc}. If they moved, pass "
                                f"--data FOLDER (class folders of the same kind of images)") from exc
        return data

    # --- the metadata -------------------------------------------------------------------------------------------
    def metadata(self, predictor: Predictor, state: dict, run_dir: Path, checkpoint: Path,
                 kind: str) -> ExportMetadata:
        recipe = predictor.recipe
        summary = state.get("summary") or {}
        return ExportMetadata(
            format=self.request.format, class_names=list(predictor.class_names),
            preprocessing=predictor.preprocessing, arch=recipe.model.arch,
            weights=str(state.get("weights_name", recipe.model.weights)),
            # No absolute path goes into the file (a shared model would reveal the user's folders); the folder's
            # name and the checkpoint's SHA-256 identify the source, the report beside the file has the paths.
            source={"run": run_dir.resolve().name, "run_name": recipe.name, "strategy": recipe.strategy,
                    "checkpoint": kind, "checkpoint_file": checkpoint.name,
                    "checkpoint_sha256": file_sha256(checkpoint), "epoch": state.get("epoch"),
                    "val_acc": summary.get("final_val_acc")},
            versions=_versions(), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    # --- export, quantize, check ------------------------------------------------------------------------------
    def export_and_check(self, predictor: Predictor, data: PreparedData, metadata: ExportMetadata, out: Path,
                         work: Path) -> ExportResult:
        r = self.request
        val = data.val
        val_indices = evenly_spaced(len(val), r.max_images)
        example = torch.stack([val[i][0] for i in val_indices[:2]])
        self.emit("export", f"exporting to {r.format}")
        # Named as it will be kept: an ONNX file refers to its .data companion by name.
        fp32_name = fp32_out(out).name if self.keeps_fp32 else f"fp32{SUFFIXES[r.format]}"
        fp32_path = work / (out.name if r.quantize != "int8" else fp32_name)
        if r.quantize == "fp16":  # the writer converts in half precision because the metadata says so
            metadata.quantization = {"method": "fp16", "weights": "float16", "compute": "float16"}
        # The exporter gets a copy: whatever tracing does to a module, the reference stays the checkpoint's.
        written = write_export(copy.deepcopy(predictor.model), example, r.format, fp32_path, metadata,
                               r.opset or None)
        notes = list(written.notes)
        files = {f"{r.format} fp16" if r.quantize == "fp16" else r.format: fp32_path}
        if r.quantize == "int8":
            self.check_stop()
            files["onnx int8"], quantization = self.quantize(data, metadata, fp32_path, work / out.name)
            if not quantization["pre_processed"]:
                notes.append("onnxruntime's quantization pre-processing failed (see --verbose); the model was "
                             "quantized as exported")
        self.check_stop()

        labels_match = list(data.classes) == list(predictor.class_names)
        names = [_sample_name(val, i) for i in val_indices]
        labels = [int(val.targets[i]) for i in val_indices] if labels_match else None
        # Read back and checked (metadata, checksum) even where it cannot run; what cannot run is not compared.
        exported = {label: open_export(path, require_runtime=False) for label, path in files.items()}
        plan = batch_plan(len(val_indices))
        models = {"checkpoint": predictor.logits,
                  **{label: e.logits for label, e in exported.items() if not e.not_runnable}}
        self.emit("check", "running the validation images through the checkpoint and the export", 0, len(names))
        try:
            logits = collect_logits(models, batches_of(lambda i: val[val_indices[i]][0], len(val_indices), plan),
                                    self.should_stop,
                                    lambda done: self.emit("check", "parity check", done, len(val_indices)))
        except InterruptedError as exc:
            raise ExportCancelled("export stopped; nothing was written") from exc
        reports = []
        for label in files:
            if exported[label].not_runnable:
                reports.append(ParityReport.unchecked(label, exported[label].not_runnable))
                continue
            criteria = ParityCriteria.int8(r.int8_min_agreement) if label.endswith("int8") else \
                ParityCriteria.fp16() if label.endswith("fp16") else ParityCriteria.fp32(r.tolerance)
            reports.append(compare(label, logits["checkpoint"], logits[label], criteria, names, labels, plan))

        costs = self.costs(predictor, exported, reports, example[:1], labels_match, logits, labels)
        passed = all(p.passed for p in reports)
        keep = all(p.passed or p.not_checked for p in reports)  # kept unless a check ran and failed
        final = exported[list(files)[-1]].metadata.to_dict()  # the int8 model's after the fp32 one
        # Release the loaded files before they are moved (Windows cannot rename a file that is open).
        models.clear()
        exported.clear()
        result = ExportResult(
            passed=passed, path=str(out) if keep else "",
            report_path=str(out.with_name(out.name + (REPORT_SUFFIX if keep else FAILED_SUFFIX))),
            format=r.format, exporter=written.exporter, notes=notes, parity=reports, costs=costs,
            metadata=final, images=len(val_indices), labels_match=labels_match,
            seconds=time.perf_counter() - self.started,
            failure="; ".join(f"{p.label}: {p.failure}" for p in reports if p.failure),
            fp32_path=str(fp32_out(out)) if keep and self.keeps_fp32 else "")
        self.finish(result, files, out)
        return result

    def quantize(self, data: PreparedData, metadata: ExportMetadata, fp32_path: Path,
                 int8_path: Path) -> tuple[Path, dict]:
        r = self.request
        train = data.train
        indices = evenly_spaced(len(train), r.calibration_images)
        self.emit("quantize", f"int8: calibrating on {len(indices)} training images", 0, len(indices))

        def batches():
            for start in range(0, len(indices), 16):
                self.check_stop()
                yield torch.stack([train[i][0] for i in indices[start:start + 16]]).numpy()
                self.emit("quantize", "int8 calibration", min(len(indices), start + 16), len(indices))

        description = quantize_int8(fp32_path, int8_path, batches(), INPUT_NAME,
                                     Int8Settings(r.calibration_images, r.calibration_method))
        import onnx

        proto = onnx.load(str(int8_path))
        int8_metadata = ExportMetadata(**{**metadata.__dict__, "quantization": description})
        stamp_onnx(proto, int8_metadata)
        save_onnx(proto, int8_path, external=False)
        return int8_path, description

    def costs(self, predictor: Predictor, exported: dict, reports: list[ParityReport], one: torch.Tensor,
              labels_match: bool, logits: dict[str, torch.Tensor], labels: list[int] | None) -> list[ModelCost]:
        r = self.request
        by_label = {p.label: p for p in reports}
        weights = sum(t.numel() * t.element_size() for t in predictor.model.state_dict().values())
        rows = [("checkpoint (torch)", weights, predictor.logits, None)]
        # A file that cannot run here has a size, and no latency or accuracy (never a made-up one).
        rows += [(label, e.size_bytes, None if e.not_runnable else e.logits, by_label[label])
                 for label, e in exported.items()]
        costs = []
        for label, size, run, report in rows:
            latency = None
            if r.latency_runs and run is not None:
                self.check_stop()
                self.emit("latency", f"batch-1 latency of {label}")
                latency = measure_latency(run, one, runs=r.latency_runs)
            accuracy = None
            if labels_match and labels is not None and len(logits["checkpoint"]):
                accuracy = report.exported_accuracy if report else \
                    float((logits["checkpoint"].argmax(1) == torch.tensor(labels)).float().mean())
            costs.append(ModelCost(label, size, latency.median_ms if latency else None,
                                   latency.threads if latency else torch.get_num_threads(), accuracy,
                                   report.top1_agreement if report else None,
                                   report.max_abs_logit_diff if report else None))
        return costs

    def finish(self, result: ExportResult, files: dict[str, Path], out: Path) -> None:
        """Passed: move the file into place and write its report. Failed: write FILE.failed.json only."""
        report = Path(result.report_path)
        if not result.path:  # a check failed
            write_json_atomic(report, result.to_dict())
            raise ExportFailedError(f"the export disagrees with the checkpoint ({result.failure}); nothing was "
                                    f"saved at {out}" + (" (the file already there is an earlier export, left "
                                                         "unchanged)" if out.exists() else "")
                                    + f"; details in {report}", result)
        final = list(files.values())[-1]  # the int8 model's after the fp32 one
        written_format = FORMATS["onnx" if "onnx int8" in files else result.format]
        for companion, target in zip(written_format.companion_paths(final), written_format.companion_paths(out)):
            if companion.is_file():
                replace_into(companion, target, "--out's companion file")
        if written_format.folder:  # an earlier package is replaced only by a complete one (io_files.py)
            replace_folder_into(final, out, "--out", self.replaceable)
        else:
            replace_into(final, out, "--out")
        write_json_atomic(report, result.to_dict())
        if result.fp32_path:  # "also quantize": the fp32 model is kept, checked as the report says
            fp32, kept = files[result.format], Path(result.fp32_path)
            fp32_format = FORMATS[result.format]
            for companion, target in zip(fp32_format.companion_paths(fp32), fp32_format.companion_paths(kept)):
                if companion.is_file():
                    replace_into(companion, target, "the fp32 model's companion file")
            replace_into(fp32, kept, "the fp32 model's file")
            write_json_atomic(kept.with_name(kept.name + REPORT_SUFFIX), result.to_dict())
        stale = out.with_name(out.name + FAILED_SUFFIX)
        if stale.exists():
            stale.unlink()
        self.emit("done", f"saved {out}" + (" (not checked on this OS)" if result.verdict == NOT_CHECKED else ""))


def _sample_name(dataset, index: int) -> str:
    samples = getattr(dataset, "samples", None)
    return str(samples[index][0]) if samples else f"{type(dataset).__name__}[{index}]"


def export_run(request: ExportRequest, subscribers: Iterable[Callable[[ExportProgress], None]] = (),
               should_stop: Callable[[], bool] = lambda: False) -> ExportResult:
    """Export, check and keep (see the module's note). Raises BadInputError for unusable input (exit 2),
    ExportFailedError when the export cannot be written or disagrees with the checkpoint (exit 1),
    ExportCancelled when `should_stop()` turned true."""
    return _Export(request, subscribers, should_stop).run()


def read_report(path: str | Path) -> dict:
    """A FILE.report.json (or .failed.json) as written by export_run."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
