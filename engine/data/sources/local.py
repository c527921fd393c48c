"""The user's own images: a folder of class folders (or train/ + val/), and a labels CSV (`path,label`, as
Kaggle-style sets ship: one row per image, the path relative to the CSV's folder).

A CSV may carry a third column `split` (train / val) for an explicit split; without it the run splits the rows
stratified and seeded, as it does a folder. Rows whose file is missing or does not decode are listed as problems
(the scan's reasons), never a crash in epoch 7.

The scan's modules import torch; they are imported inside the functions, so that listing the sources
(`python main.py datasets`, `--help`) does not pay for it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from engine.data.sources.base import Loaded
from engine.errors import BadInputError
from engine.recipe import DataConfig

PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "id", "image_id")
LABEL_COLUMNS = ("label", "class", "category", "target", "species")
MAX_CSV_ROWS = 10_000_000


def open_folder(config: DataConfig, channels: int, report=None) -> Loaded:
    from engine.data.scan import LAYOUT_TRAIN_VAL, DatasetError, scan_folder
    from engine.data.usable import check_usable

    if not config.root:
        raise BadInputError("recipe field 'data.root' is empty: point it at a folder of class folders")
    try:
        report = report or scan_folder(config.root, channels=channels)
    except DatasetError as exc:
        raise BadInputError(str(exc)) from exc
    check_usable(report, config.root, channels)
    if report.layout == LAYOUT_TRAIN_VAL:
        train = [(p, c) for p, c, split in report.samples if split == "train"]
        val = [(p, c) for p, c, split in report.samples if split == "val"]
        return Loaded(list(report.classes), train, val, list(report.problems), report)
    return Loaded(list(report.classes), [(p, c) for p, c, _ in report.samples], None, list(report.problems), report)


def open_csv(config: DataConfig, channels: int, report=None) -> Loaded:
    from engine.data.scan import LAYOUT_TRAIN_VAL
    from engine.data.usable import check_usable

    report = scan_csv(config.root, channels)
    check_usable(report, config.root, channels)
    if report.layout == LAYOUT_TRAIN_VAL:
        train = [(p, c) for p, c, split in report.samples if split == "train"]
        val = [(p, c) for p, c, split in report.samples if split == "val"]
        return Loaded(list(report.classes), train, val, list(report.problems), report)
    return Loaded(list(report.classes), [(p, c) for p, c, _ in report.samples], None, list(report.problems), report)


def scan_csv(path: str, channels: int = 3):
    """A labels CSV read into the report a folder scan gives (classes sorted by name, every file decoded)."""
    from engine.data.scan import LAYOUT_TRAIN_VAL, Problem, ScanReport, verify_files

    if not path:
        raise BadInputError("recipe field 'data.root' is empty: point it at the labels CSV (path,label)")
    csv_path = Path(path).expanduser().absolute()
    if not csv_path.is_file():
        raise BadInputError(f"labels file not found: {csv_path} (data.dataset 'csv' reads a CSV of path,label rows)")
    rows, problems = _read_rows(csv_path)
    has_split = any(split for _, _, split in rows)
    classes = sorted({label for _, label, _ in rows})
    index = {name: i for i, name in enumerate(classes)}
    reasons = verify_files([p for p, _, _ in rows], channels)
    samples, counts = [], {name: 0 for name in classes}
    split_counts = {s: {name: 0 for name in classes} for s in ("train", "val")} if has_split else {}
    for (file, label, split), reason in zip(rows, reasons):
        if reason is not None:
            problems.append(Problem(file, reason))
            continue
        samples.append((file, index[label], split))
        counts[label] += 1
        if has_split:
            split_counts[split][label] += 1
    training = split_counts["train"] if has_split else counts
    samples.sort(key=lambda s: (s[2], s[1], s[0]))
    return ScanReport(str(csv_path), LAYOUT_TRAIN_VAL if has_split else "folder", classes, samples, counts,
                      split_counts, sorted(problems, key=lambda p: (p.path, p.reason)),
                      [name for name in classes if training[name] == 0])


def _read_rows(csv_path: Path) -> tuple[list[tuple[str, str, str]], list]:
    """(absolute file, label, split '' | train | val) per usable row, and the rows that cannot be used."""
    from engine.data.scan import VAL_FOLDER_NAMES, Problem

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            table = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{csv_path}: cannot be read as a CSV file ({exc})") from exc
    if len(table) < 2:
        raise BadInputError(f"{csv_path}: needs a header row (path,label) and one row per image")
    if len(table) > MAX_CSV_ROWS:
        raise BadInputError(f"{csv_path}: {len(table)} rows, more than the {MAX_CSV_ROWS} a labels file may hold")
    header = [h.strip().lower() for h in table[0]]
    path_col = next((header.index(n) for n in PATH_COLUMNS if n in header), 0)
    label_col = next((header.index(n) for n in LABEL_COLUMNS if n in header), 1)
    split_col = header.index("split") if "split" in header else None
    if path_col == label_col or len(header) < 2:
        raise BadInputError(f"{csv_path}: the header {','.join(table[0])} names no path and label columns "
                            f"(expected e.g. path,label)")
    base = csv_path.parent
    rows, problems = [], []
    for number, row in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{csv_path}:{number}"
        if len(row) <= max(path_col, label_col, split_col or 0):
            problems.append(Problem(where, "row has fewer columns than the header"))
            continue
        label = row[label_col].strip()
        if not label:
            problems.append(Problem(where, "row has no label"))
            continue
        split = row[split_col].strip().lower() if split_col is not None else ""
        if split in VAL_FOLDER_NAMES:
            split = "val"
        if split not in ("", "train", "val"):
            problems.append(Problem(where, f"split '{split}' is not train or val"))
            continue
        file = _resolve(base, row[path_col].strip())
        if file is None:
            problems.append(Problem(where, f"image file not found: {row[path_col].strip()}"))
            continue
        rows.append((file, label, split))
    if split_col is not None and any(not split for _, _, split in rows):
        raise BadInputError(f"{csv_path}: the split column is empty on some rows; give every row train or val, "
                            f"or drop the column for a seeded stratified split")
    return rows, problems


def _resolve(base: Path, name: str) -> str | None:
    """The row's file: relative to the CSV's folder (or absolute); Kaggle's bare ids get an image extension."""
    from engine.data.images import IMAGE_EXTENSIONS

    if not name:
        return None
    path = Path(name) if os.path.isabs(name) else base / name
    if path.is_file():
        return str(path)
    if not path.suffix:
        for extension in sorted(IMAGE_EXTENSIONS):
            candidate = path.with_name(path.name + extension)
            if candidate.is_file():
                return str(candidate)
    return None
