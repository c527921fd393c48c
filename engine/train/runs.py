"""Run folders: where a run's recipe, metrics, summary and checkpoints live, and how runs are listed.

    <runs root>/<YYYYmmdd-HHMMSS>-<name>/
        recipe.json        the resolved recipe (exact weights name)
        metrics.csv        one row per epoch: phase, losses, accuracies, per-group lr, seconds, images/s
        batches.csv        one row per optimizer step: loss, running accuracy, per-group lr (the live curves)
        summary.json       best/final accuracy, wall time, images/s, trainable parameters per phase, device …
        skipped_files.txt  files that could not be used, with the reason
        checkpoints/last.pt, checkpoints/best.pt
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECIPE_FILE = "recipe.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
BATCHES_FILE = "batches.csv"
SKIPPED_FILE = "skipped_files.txt"
CHECKPOINT_DIR = "checkpoints"
RUNS_ENV = "THAW_RUNS_DIR"


def default_runs_root() -> Path:
    """THAW_RUNS_DIR, else the platform's user data folder (never the current directory)."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("Thaw", appauthor=False)) / "runs"


def runs_root_for(output_dir: str = "") -> Path:
    """Where a recipe's runs go: its output_dir, else the default runs folder."""
    return Path(output_dir).expanduser() if output_dir else default_runs_root()


def new_run_dir(root: str | Path, name: str) -> Path:
    root = Path(root).expanduser()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{safe}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = root / f"{stamp}-{safe}-{suffix}"
    (path / CHECKPOINT_DIR).mkdir(parents=True)
    return path


def checkpoint_path(run_dir: str | Path, kind: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{kind}.pt"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """metrics.csv's rows (one per epoch), values parsed back to numbers (the names: engine/train/metrics.py)."""
    return read_csv_rows(Path(run_dir) / METRICS_FILE)


def read_batches(run_dir: str | Path) -> list[dict[str, Any]]:
    """batches.csv's rows (one per optimizer step): loss, running accuracy and every group's learning rate."""
    return read_csv_rows(Path(run_dir) / BATCHES_FILE)


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: _parse(v) for k, v in row.items()})
    return rows


def _parse(value: str) -> Any:
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


@dataclass
class RunRecord:
    """One run as the runs table shows it."""

    path: str
    name: str
    strategy: str
    arch: str
    status: str
    best_val_acc: float | None
    final_val_acc: float | None
    wall_seconds: float | None
    trainable_params: int | None
    device: str
    started: str
    epochs_done: int

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunRecord | None":
        run_dir = Path(run_dir)
        recipe_file = run_dir / RECIPE_FILE
        if not recipe_file.is_file():
            return None
        try:
            recipe = json.loads(recipe_file.read_text(encoding="utf-8"))
            summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8")) if (run_dir / SUMMARY_FILE).is_file() else {}
        except (OSError, json.JSONDecodeError):
            return None
        phases = summary.get("phases", [])
        return cls(
            path=str(run_dir), name=recipe.get("name", run_dir.name), strategy=recipe.get("strategy", "custom"),
            arch=recipe.get("model", {}).get("arch", "?"), status=summary.get("status", "incomplete"),
            best_val_acc=summary.get("best_val_acc"), final_val_acc=summary.get("final_val_acc"),
            wall_seconds=summary.get("wall_seconds"),
            trainable_params=max((p.get("trainable_params", 0) for p in phases), default=None),
            device=summary.get("device", ""), started=summary.get("started", run_dir.name[:15]),
            epochs_done=len(read_metrics(run_dir)),
        )


def list_runs(root: str | Path | None = None) -> list[RunRecord]:
    root = Path(root) if root else default_runs_root()
    if not root.is_dir():
        return []
    records = [RunRecord.load(p) for p in sorted(root.iterdir()) if p.is_dir()]
    return [r for r in records if r is not None]
