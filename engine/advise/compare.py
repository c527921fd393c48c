"""compare-models: the lesson's model guide ("ResNet-18: fast, small, good … EfficientNet-B0: best accuracy/size")
measured on the user's own images and machine, in minutes instead of one training run per model.

For each architecture with pretrained weights on this machine: the probe (probe.py: cached frozen features, the
fitted head's cross-validated accuracy, its validation accuracy), the feature pass's time, and the model's costs
(model_costs.py). An architecture whose weights file is not in the local cache is listed as such and never
downloaded: a comparison of ten models must not fetch gigabytes behind the user's back.

The Pareto front: the models no other model beats on both accuracy (higher) and latency (lower).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.advise.model_costs import measure_costs
from engine.advise.probe import ProbeProgress, ProbeSettings, build_probe_model, probe_data, run_probe
from engine.errors import BadInputError
from engine.io_files import write_json_atomic
from engine.model import zoo
from engine.recipe import Recipe
from engine.train.devices import setup_device
from engine.train.runs import default_runs_root

MEASURED, NO_WEIGHTS, FAILED, STOPPED = "measured", "no local weights", "failed", "stopped"
COMPARISONS_DIR = "comparisons"  # under the runs folder


@dataclass(frozen=True)
class CompareSettings:
    # the shift is the advisor's, not a ranking's; the feature pass always runs: its time is a result
    probe: ProbeSettings = ProbeSettings(measure_shift=False, reuse_features=False)
    latency_runs: int = 30
    onnx: bool = False  # an ONNX export per model: seconds to minutes each, so asked for


@dataclass
class CompareProgress:
    index: int  # 0-based model
    models: int
    arch: str
    stage: str  # "features", "fit", "latency", "done", "skipped"
    done: int = 0
    total: int = 0


@dataclass
class ModelRow:
    arch: str
    status: str  # MEASURED, NO_WEIGHTS, FAILED or STOPPED
    weights: str = ""
    weights_file: str = ""
    detail: str = ""  # why not measured
    cv_accuracy: float | None = None
    val_accuracy: float | None = None
    extraction_seconds: float | None = None
    images_per_second: float | None = None
    fit_seconds: float | None = None
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    onnx_latency_ms: float | None = None
    onnx_note: str = ""
    parameters: int | None = None
    file_mb: float | None = None
    peak_memory_mb: float | None = None
    feature_dim: int | None = None
    crop_size: int | None = None
    seconds: float = 0.0  # this model's whole measurement


@dataclass
class Comparison:
    recipe: str
    device: str
    classes: int
    train_images: int
    val_images: int
    rows: list[ModelRow]
    pareto: list[str]
    stopped: bool
    seconds: float
    created: str = ""
    path: str = ""  # where the results were kept
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def local_weights(arch: str, spec: str = "DEFAULT") -> tuple[object, Path]:
    """The weights entry `spec` of `arch` and where its file belongs in the local cache."""
    weights = zoo.resolve_weights(arch, spec)
    if weights is None:
        raise BadInputError(f"{arch}: compare-models needs pretrained weights ('{spec}' names none)")
    return weights, zoo.cached_weights_path(weights)


def pareto_front(rows: list[ModelRow]) -> list[str]:
    """Measured models no other beats on accuracy (cross-validated; higher) and latency (lower), fastest first."""
    measured = [r for r in rows if r.status == MEASURED and r.cv_accuracy is not None]
    front = []
    for r in measured:
        beaten = any(o is not r and o.cv_accuracy >= r.cv_accuracy and o.latency_ms <= r.latency_ms
                     and (o.cv_accuracy > r.cv_accuracy or o.latency_ms < r.latency_ms) for o in measured)
        if not beaten:
            front.append(r)
    return [r.arch for r in sorted(front, key=lambda r: r.latency_ms)]


def parse_models(text: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise BadInputError("--models: name at least one architecture (e.g. resnet18,mobilenet_v3_large)")
    known = set(zoo.list_model_names())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadInputError(f"--models: {', '.join(unknown)} not a torchvision classification model "
                            "(see `python main.py models`)")
    return names


def compare_models(recipe: Recipe, archs: list[str], settings: CompareSettings = CompareSettings(),
                   progress: Callable[[CompareProgress], None] | None = None,
                   should_stop: Callable[[], bool] = lambda: False, recipe_path: str = "") -> Comparison:
    """Measure each of `archs` on the recipe's data. A stop keeps the rows measured so far (the rest: STOPPED)."""
    started = time.perf_counter()
    device = setup_device(recipe.device, "fp32", "off").device
    rows: list[ModelRow] = []
    data_of: dict[tuple, object] = {}  # prepared once per preprocessing (most models share 232/224 or 256/224)
    counts = (0, 0, 0)
    stopped = False

    def tell(i: int, arch: str, stage: str, done: int = 0, total: int = 0) -> None:
        if progress is not None:
            progress(CompareProgress(i, len(archs), arch, stage, done, total))

    for i, arch in enumerate(archs):
        if stopped or should_stop():
            stopped = True
            rows.append(ModelRow(arch, STOPPED))
            continue
        weights, path = local_weights(arch)
        if not path.is_file():
            rows.append(ModelRow(arch, NO_WEIGHTS, str(weights), str(path),
                                 f"{path.name} is not in {path.parent} (not downloaded: train a recipe with "
                                 f"{arch} once, or put the file there)"))
            tell(i, arch, "skipped")
            continue
        row = ModelRow(arch, MEASURED, str(weights), str(path))
        tick = time.perf_counter()
        r = copy.deepcopy(recipe)
        r.model.arch, r.model.weights, r.model.weights_file = arch, str(weights), ""
        try:
            probe, built = _measure(r, data_of, settings, row, lambda p, i=i, a=arch: tell(i, a, p.stage, p.done,
                                                                                            p.total), should_stop)
        except BadInputError:
            raise  # the recipe's data cannot be read: the same for every model, the command's error
        except Exception as exc:  # noqa: BLE001 - one model that cannot be measured does not end the comparison
            text = str(exc).strip().splitlines()
            row.status, row.detail = FAILED, (text[0][:300] if text else type(exc).__name__)
            rows.append(row)
            continue
        if probe is None:
            stopped = True
            rows.append(ModelRow(arch, STOPPED, str(weights), str(path)))
            continue
        counts = (len(probe.classes), sum(probe.train_counts), probe.val_images)
        tell(i, arch, "latency")
        costs = measure_costs(built, arch, probe.classes, device, settings.latency_runs, settings.onnx)
        row.latency_ms, row.latency_p90_ms = costs.latency_ms, costs.latency_p90_ms
        row.onnx_latency_ms, row.onnx_note = costs.onnx_latency_ms, costs.onnx_note
        row.parameters, row.peak_memory_mb = costs.parameters, round(costs.peak_memory_mb, 1)
        row.file_mb = round(path.stat().st_size / 2**20, 2)
        row.seconds = time.perf_counter() - tick
        rows.append(row)
        tell(i, arch, "done")
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return Comparison(recipe_path, str(device), *counts, rows, pareto_front(rows), stopped,
                      time.perf_counter() - started, created)


def _measure(recipe: Recipe, data_of: dict, settings: CompareSettings, row: ModelRow,
             progress: Callable[[ProbeProgress], None], should_stop: Callable[[], bool]):
    from engine.model.build import resolve_preprocessing

    prep = resolve_preprocessing(recipe.model, recipe.data)
    key = (prep.resize_size, prep.crop_size, tuple(prep.mean), tuple(prep.std), prep.interpolation)
    if key not in data_of:
        data_of[key] = probe_data(recipe)
    data = data_of[key]
    probe = run_probe(recipe, data, settings.probe, progress, should_stop)
    if probe is None:
        return None, None
    row.cv_accuracy, row.val_accuracy = probe.cv_accuracy, probe.val_accuracy
    row.extraction_seconds, row.fit_seconds = round(probe.extraction_seconds, 3), round(probe.fit_seconds, 3)
    row.images_per_second = round((sum(probe.train_counts) + probe.val_images) / max(1e-9, probe.extraction_seconds),
                                  1)
    row.feature_dim, row.crop_size = probe.feature_dim, prep.crop_size
    built = build_probe_model(recipe, len(probe.classes))  # fresh: the probe's model may sit on another device
    return probe, built


def default_results_path(recipe: Recipe) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in (recipe.name or "recipe"))[:80]
    return default_runs_root() / COMPARISONS_DIR / f"{name}-{stamp}.json"


def save_comparison(comparison: Comparison, path: str | Path) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    comparison.path = str(path)
    write_json_atomic(path, comparison.to_dict(), "comparison file")
    return path


def load_comparison(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())

