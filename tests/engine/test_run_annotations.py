"""Runs are renamed and annotated without touching what they recorded, and deleted to the system trash (the real
send2trash, its freedesktop trash redirected to a temporary folder), permanently only when asked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import send2trash

from engine.errors import BadInputError, RunLockedError
from engine.train.run_lock import RunLock
from engine.train.runs import (
    ANNOTATIONS_FILE,
    RECIPE_FILE,
    TrashUnavailableError,
    annotate_run,
    delete_run,
    list_runs,
    read_annotations,
    rename_run,
)
from tests.helpers import redirect_trash


def make_run(root: Path, name: str = "20240101-120000-resnet18-feature_extraction") -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / RECIPE_FILE).write_text(json.dumps({"name": "resnet18-feature_extraction", "strategy": "feature_extraction",
                                               "model": {"arch": "resnet18"}}))
    (run / "checkpoints" / "last.pt").write_bytes(b"weights")
    return run


@pytest.fixture
def trash(tmp_path, monkeypatch) -> Path:
    return redirect_trash(monkeypatch, tmp_path / "xdg-data")


def test_rename_shows_the_new_name_and_keeps_what_the_run_recorded(tmp_path):
    run = make_run(tmp_path)
    recipe = (run / RECIPE_FILE).read_text()

    assert rename_run(run, "  baseline,   frozen backbone ") == "baseline, frozen backbone"

    (record,) = list_runs(tmp_path)
    assert record.name == "baseline, frozen backbone" and record.recipe_name == "resnet18-feature_extraction"
    assert record.path == str(run) and (run / RECIPE_FILE).read_text() == recipe  # folder and recipe untouched
    assert rename_run(run, "") == "resnet18-feature_extraction"  # empty: the recipe's name again
    assert list_runs(tmp_path)[0].name == "resnet18-feature_extraction"


@pytest.mark.parametrize(("name", "message"), [("two\nlines", r"character '\\n'"), ("x" * 101, "101 characters")])
def test_a_name_that_would_break_a_table_row_is_refused(tmp_path, name, message):
    run = make_run(tmp_path)
    with pytest.raises(BadInputError, match=message):
        rename_run(run, name)
    assert not (run / ANNOTATIONS_FILE).exists()


def test_notes_keep_their_lines_and_an_empty_note_removes_it(tmp_path):
    run = make_run(tmp_path)
    rename_run(run, "kept")
    annotate_run(run, "lr 1e-3 overfits after epoch 4\nnext: freeze layer3 too\n")
    assert list_runs(tmp_path)[0].note == "lr 1e-3 overfits after epoch 4\nnext: freeze layer3 too"
    annotate_run(run, "   ")
    assert read_annotations(run) == {"name": "kept"}  # the name stays
    with pytest.raises(BadInputError, match=r"character '\\x07'"):
        annotate_run(run, "bell \a")


def test_a_folder_that_is_no_run_is_neither_annotated_nor_deleted(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    with pytest.raises(BadInputError, match="not a run folder"):
        rename_run(folder, "x")
    with pytest.raises(BadInputError, match="not a run folder"):
        delete_run(folder)
    assert folder.is_dir()


def test_delete_moves_the_run_to_the_trash(tmp_path, trash):
    root = tmp_path / "runs"
    run = make_run(root)
    kept = make_run(root, "20240102-120000-other")

    delete_run(run)

    assert not run.exists() and kept.is_dir()
    assert (trash / "files" / run.name / "checkpoints" / "last.pt").read_bytes() == b"weights"  # restorable
    info = (trash / "info" / f"{run.name}.trashinfo").read_text()
    assert "Path=" in info and run.name in info
    assert [r.path for r in list_runs(root)] == [str(kept)]


def test_a_run_being_trained_is_not_deleted(tmp_path, trash):
    run = make_run(tmp_path)
    with RunLock(run):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            delete_run(run)
        with pytest.raises(RunLockedError):
            delete_run(run, permanently=True)
    assert run.is_dir() and not (trash / "files").exists()


def test_without_a_usable_trash_nothing_is_deleted_unless_permanently(tmp_path, monkeypatch):
    run = make_run(tmp_path)

    def refused(path):
        raise send2trash.TrashPermissionError(path)

    monkeypatch.setattr(send2trash, "send2trash", refused)
    with pytest.raises(TrashUnavailableError) as info:
        delete_run(run)
    assert info.value.run_dir == str(run) and run.is_dir()

    delete_run(run, permanently=True)
    assert not run.exists()
