"""Run folders: where a run's recipe, metrics, summary and checkpoints live, and how runs are listed.

    <runs root>/<YYYYmmdd-HHMMSS>-<name>/
        recipe.json        the resolved recipe (exact weights name)
        metrics.csv        one row per epoch: phase, losses, accuracies, per-group lr, seconds, images/s
        batches.csv        one row per optimizer step: loss, running accuracy, per-group lr (the live curves)
        summary.json       best/final accuracy, wall time, images/s, trainable parameters per phase, device …
        skipped_files.txt  files that could not be used, with the reason
        run.lock           held (and holding the pid) while a process trains the run (engine/train/run_lock.py)
        annotations.json   what the user said about the run: a name shown instead of the recipe's, a note
        checkpoints/last.pt, checkpoints/best.pt

A run is renamed and annotated without touching what it recorded (the folder, recipe.json, checkpoints keep their
names), and deleted to the system trash (send2trash), permanently only when asked to.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.errors import BadInputError, RunLockedError, ThawError
from engine.io_files import write_json_atomic
from engine.train.events import HeadFitted
from engine.train.run_lock import LOCK_FILE, lock_holder, run_is_live

RECIPE_FILE = "recipe.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
BATCHES_FILE = "batches.csv"
SKIPPED_FILE = "skipped_files.txt"
ANNOTATIONS_FILE = "annotations.json"
MAX_RUN_NAME_CHARS = 100  # as a recipe's name
MAX_NOTE_CHARS = 2000
CHECKPOINT_DIR = "checkpoints"
RUNS_ENV = "THAW_RUNS_DIR"
INTERRUPTED = "interrupted"  # status of a run whose summary says "running" but whose process is gone


def default_runs_root() -> Path:
    """THAW_RUNS_DIR, else the platform's user data folder (never the current directory)."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).expanduser()
    import platformdirs  # not at the top: the studio imports this module before its window shows

    return Path(platformdirs.user_data_dir("Thaw", appauthor=False)) / "runs"


def runs_root_for(output_dir: str = "") -> Path:
    """Where a recipe's runs go: its output_dir, else the default runs folder."""
    return Path(output_dir).expanduser() if output_dir else default_runs_root()


# Kernel file systems: a folder there is never a place for runs, whatever mkdir says.
_VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")
MAX_FOLDER_NAME_CHARS = 80  # of the recipe's name in the folder name; file systems allow 255 bytes in all


def prepare_runs_root(root: str | Path) -> Path:
    """Create the runs folder if needed and prove it is writable; BadInputError (before anything trains) for
    a folder under /proc, /sys or /dev, a path that is a file, a read-only or unreachable place."""
    root = Path(root).expanduser()
    resolved = Path(os.path.realpath(root))
    virtual = next((v for v in _VIRTUAL_ROOTS if resolved == Path(v) or Path(v) in resolved.parents), None)
    if os.name == "posix" and virtual:
        raise BadInputError(f"runs folder {root} is inside {virtual}, a kernel file system, not a place for runs; "
                            f"set output_dir (or --out) elsewhere")
    if root.exists() and not root.is_dir():
        raise BadInputError(f"runs folder {root} is a file, not a folder; set output_dir (or --out) to a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root, prefix=".thaw-write-test-", delete=True)
        probe.close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BadInputError(f"runs folder {root} cannot be written ({reason}); set output_dir (or --out) to a "
                            f"writable folder") from None
    return root


def new_run_dir(root: str | Path, name: str) -> Path:
    root = prepare_runs_root(root)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:MAX_FOLDER_NAME_CHARS].strip("-.") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{safe}"
    suffix = 1
    while True:
        try:
            path.mkdir()  # exclusive: two processes starting the same second never share a folder
            break
        except FileExistsError:
            suffix += 1
            path = root / f"{stamp}-{safe}-{suffix}"
        except OSError as exc:
            raise BadInputError(f"cannot create a run folder in {root}: {exc.strerror or exc}") from None
    (path / CHECKPOINT_DIR).mkdir()
    return path


def run_folder_of(checkpoint: str | Path) -> Path | None:
    """The run folder holding `checkpoint` (RUN/checkpoints/FILE), or None for a checkpoint elsewhere."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else None


def previous_run_id(run_dir: str | Path | None) -> str:
    """The run id summary.json holds ("" when there is none: a run of an older Thaw, or no summary)."""
    summary = _read_json(Path(run_dir) / SUMMARY_FILE) if run_dir is not None else {}
    return str(summary.get("run_id") or "")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _who(run_id: str, name: str, classes: list, arch: str) -> str:
    parts = [f"'{name}'" if name else "", f"id {run_id[:12]}" if run_id else "",
             f"{len(classes)} classes" if classes else "", arch]
    return ", ".join(p for p in parts if p)


def checkpoint_owner(state: dict[str, Any]) -> str:
    """Whose checkpoint this is, in words: "'name', id 1a2b…, 3 classes, resnet18" (from what it carries)."""
    recipe = state.get("recipe") if isinstance(state.get("recipe"), dict) else {}
    model = recipe.get("model") if isinstance(recipe.get("model"), dict) else {}
    return _who(str(state.get("run_id") or ""), str(recipe.get("name", "")), list(state.get("class_names") or []),
                str(model.get("arch", "")))


def check_run_identity(state: dict[str, Any], checkpoint: str | Path) -> None:
    """A checkpoint inside a run folder must be that run's: its run id, class list and architecture are compared
    with the folder's summary.json (a checkpoint of an older Thaw has no run id: its classes and architecture are).
    BadInputError naming both runs when they differ. A checkpoint outside any run folder is not compared."""
    run_dir = run_folder_of(checkpoint)
    if run_dir is None:
        return
    summary = _read_json(run_dir / SUMMARY_FILE)
    if not summary:
        return
    recipe = state.get("recipe") if isinstance(state.get("recipe"), dict) else {}
    model = recipe.get("model") if isinstance(recipe.get("model"), dict) else {}
    own_id, own_classes, own_arch = str(state.get("run_id") or ""), list(state.get("class_names") or []), \
        str(model.get("arch", ""))
    folder_id, folder_classes, folder_arch = str(summary.get("run_id") or ""), list(summary.get("classes") or []), \
        str(summary.get("arch", ""))
    differs = []
    if own_id and folder_id and own_id != folder_id:
        differs.append("run id")
    if own_classes and folder_classes and own_classes != folder_classes:
        differs.append("classes")
    if own_arch and folder_arch and own_arch != folder_arch:
        differs.append("architecture")
    if differs:
        own = _who(own_id, str(recipe.get("name", "")), own_classes, own_arch)
        folder = _who(folder_id, str(summary.get("name", "")), folder_classes, folder_arch)
        raise BadInputError(f"checkpoint {checkpoint} belongs to another run ({own}) than the folder {run_dir} "
                            f"({folder}): its {' and '.join(differs)} differ; Thaw will not use it there")


def checkpoint_path(run_dir: str | Path, kind: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{kind}.pt"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """metrics.csv's rows (one per epoch), values parsed back to numbers (the names: engine/train/metrics.py)."""
    return read_csv_rows(Path(run_dir) / METRICS_FILE)


def read_batches(run_dir: str | Path) -> list[dict[str, Any]]:
    """batches.csv's rows (one per optimizer step): loss, running accuracy and every group's learning rate."""
    return read_csv_rows(Path(run_dir) / BATCHES_FILE)


def read_fitted_heads(run_dir: str | Path) -> list[HeadFitted]:
    """The heads a run fitted to convergence, as the HeadFitted events they were written from: summary.json keeps
    each fitted phase's event fields in its `head_fit` entry (engine/train/run_folder.py), so that a resumed run
    can show its fits again. [] for a run without a summary or without a fitted head."""
    names = [f.name for f in fields(HeadFitted)]
    phases = _read_json(Path(run_dir) / SUMMARY_FILE).get("phases", [])
    return [HeadFitted(**{name: phase["head_fit"][name] for name in names if name in phase["head_fit"]})
            for phase in phases if "l2" in phase.get("head_fit", {})]


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


def read_annotations(run_dir: str | Path) -> dict[str, str]:
    """The run's user-given "name" and "note" (absent keys when never given; {} for an unreadable file)."""
    try:
        data = json.loads((Path(run_dir) / ANNOTATIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: data[key] for key in ("name", "note") if isinstance(data.get(key), str) and data[key]}


def rename_run(run_dir: str | Path, name: str) -> str:
    """Show the run as `name` (its folder and recipe.json keep theirs); an empty name brings the recipe's name back.
    Returns the name shown now. BadInputError for a name that is too long or holds a line break or control
    character."""
    name = " ".join(name.split()) if name.isprintable() else name.strip()
    _check_text(name, "a run name", MAX_RUN_NAME_CHARS, one_line=True)
    _annotate(run_dir, "name", name)
    return name or _recipe_name(run_dir)


def annotate_run(run_dir: str | Path, note: str) -> None:
    """A note on the run (what it tried, what it showed); empty removes it. Line breaks are kept."""
    note = note.strip()
    _check_text(note, "a run's note", MAX_NOTE_CHARS, one_line=False)
    _annotate(run_dir, "note", note)


def _check_text(text: str, what: str, max_chars: int, one_line: bool) -> None:
    if len(text) > max_chars:
        raise BadInputError(f"{what} is {len(text)} characters long; at most {max_chars} are allowed")
    allowed = "" if one_line else "\n\t"
    bad = next((c for c in text if not c.isprintable() and c not in allowed), None)
    if bad is not None:
        raise BadInputError(f"{what} cannot contain the character {bad!r}")


def _annotate(run_dir: str | Path, key: str, value: str) -> None:
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise BadInputError(f"{run_dir} is not a run folder (it has no {RECIPE_FILE})")
    data = read_annotations(run_dir)
    if value:
        data[key] = value
    else:
        data.pop(key, None)
    try:
        write_json_atomic(run_dir / ANNOTATIONS_FILE, data)
    except OSError as exc:
        raise BadInputError(f"cannot write {run_dir / ANNOTATIONS_FILE}: {exc.strerror or exc}") from None


def _recipe_name(run_dir: str | Path) -> str:
    try:
        return str(json.loads((Path(run_dir) / RECIPE_FILE).read_text(encoding="utf-8")).get("name") or "")
    except (OSError, ValueError, AttributeError):
        return Path(run_dir).name


class TrashUnavailableError(ThawError):
    """The system has no trash for this folder (or refused the move); `reason` says why. Nothing was deleted."""

    def __init__(self, run_dir: str | Path, reason: str):
        self.run_dir = str(run_dir)
        self.reason = reason
        super().__init__(f"{run_dir} cannot be moved to the trash: {reason}")


def delete_run(run_dir: str | Path, permanently: bool = False) -> None:
    """Move a run folder to the system trash (send2trash: the desktop's trash on Linux, macOS and Windows), or
    delete it for good when `permanently`. A folder that is not a run, or a run a process is training, is a
    BadInputError; a trash that cannot take it is a TrashUnavailableError (then nothing was deleted: the caller
    may ask about deleting permanently)."""
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise BadInputError(f"{run_dir} is not a run folder (it has no {RECIPE_FILE}); nothing was deleted")
    if run_is_live(run_dir):
        raise RunLockedError(str(run_dir), lock_holder(run_dir))
    if permanently:
        try:
            shutil.rmtree(run_dir)
        except OSError as exc:
            raise BadInputError(f"cannot delete {run_dir}: {exc.strerror or exc}") from None
        return
    import send2trash  # not at the top: the studio imports this module before its window shows

    try:
        send2trash.send2trash(str(run_dir))
    except (send2trash.TrashPermissionError, OSError) as exc:
        if run_dir.exists() and not (run_dir / RECIPE_FILE).exists():
            raise BadInputError(f"moving {run_dir} to the trash stopped half-way ({exc}); what is left is in "
                                f"the folder") from None
        raise TrashUnavailableError(run_dir, str(getattr(exc, "strerror", None) or exc)) from None


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
    live: bool = False  # a process holds the run's lock (engine/train/run_lock.py) and is training it
    note: str = ""  # the user's note (annotations.json)
    recipe_name: str = ""  # the name in recipe.json (`name` is the user's when they renamed the run)
    best_epoch: int | None = None  # 1-based: the epoch best.pt holds
    phase_results: list[dict] = field(default_factory=list)  # summary.json's: where each phase left the model
    setbacks: list[str] = field(default_factory=list)  # a phase that set the model back, in words

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord | None:
        run_dir = Path(run_dir)
        recipe_file = run_dir / RECIPE_FILE
        if not recipe_file.is_file():
            return None
        try:
            recipe = json.loads(recipe_file.read_text(encoding="utf-8"))
            summary = (json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
                       if (run_dir / SUMMARY_FILE).is_file() else {})
        except (OSError, json.JSONDecodeError):
            return None
        phases = summary.get("phases", [])
        live = run_is_live(run_dir)
        status = summary.get("status", "incomplete")
        # A run trained under the lock (it has a lock file) that says "running" while nobody holds the lock:
        # its process died (kill -9, a crash, power loss) without saying so.
        if status == "running" and not live and (run_dir / LOCK_FILE).exists():
            status = INTERRUPTED
            if not checkpoint_path(run_dir, "last").is_file():
                status = mark_failed_before_first_checkpoint(run_dir, summary)
        annotations = read_annotations(run_dir)
        recipe_name = str(recipe.get("name") or run_dir.name)
        return cls(
            path=str(run_dir), name=annotations.get("name", recipe_name), strategy=recipe.get("strategy", "custom"),
            arch=recipe.get("model", {}).get("arch", "?"), status=status,
            best_val_acc=summary.get("best_val_acc"), final_val_acc=summary.get("final_val_acc"),
            wall_seconds=summary.get("wall_seconds"),
            trainable_params=max((p.get("trainable_params", 0) for p in phases), default=None),
            device=summary.get("device", ""), started=summary.get("started", run_dir.name[:15]),
            epochs_done=len(read_metrics(run_dir)), live=live, note=annotations.get("note", ""),
            recipe_name=recipe_name, best_epoch=summary.get("best_epoch"),
            phase_results=list(summary.get("phase_results") or []),
            setbacks=[b["line"] for p in phases for b in p.get("setbacks", []) if b.get("line")],
        )


FAILED_BEFORE_CHECKPOINT = "failed before its first checkpoint (its process ended without a word)"


def mark_failed_before_first_checkpoint(run_dir: Path, summary: dict) -> str:
    """A run whose process died before it wrote any checkpoint (its lock is free, summary.json says "running",
    there is no last.pt) can never be resumed: summary.json is marked "failed" with that reason, so it stops
    looking alive. Returns the new status ("failed"; INTERRUPTED when the summary cannot be written)."""
    marked = {**summary, "status": "failed", "error": summary.get("error") or FAILED_BEFORE_CHECKPOINT}
    try:
        write_json_atomic(run_dir / SUMMARY_FILE, marked)
    except OSError:
        return INTERRUPTED
    return "failed"


def list_runs(root: str | Path | None = None) -> list[RunRecord]:
    root = Path(root) if root else default_runs_root()
    if not root.is_dir():
        return []
    records = [RunRecord.load(p) for p in sorted(root.iterdir()) if p.is_dir()]
    return [r for r in records if r is not None]
