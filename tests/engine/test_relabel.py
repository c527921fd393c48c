"""Fixing labels in the data folder (engine/data/relabel.py, `python main.py relabel`): a move lands in the other
class and the scan and the feature cache follow, the journal records it, undo restores it byte for byte, nothing
is ever overwritten, and a read-only class folder is refused in words."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data import relabel
from engine.data.scan import scan_folder
from engine.train.feature_cache import dataset_identity
from tests.helpers import make_image_folder


@pytest.fixture
def data(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data", classes=3, per_class=3, size=16)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under the data folder but the journal's, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and relabel.STATE_FOLDER not in p.relative_to(root).parts}


def _labels(root: Path) -> dict[str, str]:
    report = scan_folder(root, verify=False)
    return {os.path.basename(path): report.classes[index] for path, index, _split in report.samples}


class _Samples:
    """What the feature cache keys on: a dataset's (path, label) samples."""

    def __init__(self, root: Path):
        report = scan_folder(root, verify=False)
        self.samples = [(path, index) for path, index, _split in report.samples]


def test_a_move_relabels_the_image_and_undo_restores_every_byte(data, cli):
    before = _tree(data)
    mtime = (data / "cat" / "cat_001.png").stat().st_mtime_ns
    identity_before = dataset_identity(_Samples(data))

    code, out, err = cli("relabel", data, data / "cat" / "cat_001.png", "--to", "dog")
    assert (code, err) == (0, "")
    assert "moved cat/cat_001.png → dog/cat_001.png" in out
    assert not (data / "cat" / "cat_001.png").exists()
    assert (data / "dog" / "cat_001.png").read_bytes() == before["cat/cat_001.png"]
    assert _labels(data)["cat_001.png"] == "dog"  # the scan follows
    # The feature cache's key follows: the entry for this image no longer carries its old label.
    identity_after = dataset_identity(_Samples(data))
    assert identity_after != identity_before
    assert not any(entry[0].endswith("cat_001.png") and entry[1] == 0 for entry in identity_after)

    lines = (data / ".thaw" / "relabel-journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["move"]
    assert json.loads(lines[0])["from"] == "cat/cat_001.png" and json.loads(lines[0])["to"] == "dog/cat_001.png"
    code, out, _ = cli("relabel", data, "--journal")
    assert code == 0 and "#1" in out and "cat/cat_001.png → dog/cat_001.png" in out

    code, out, err = cli("relabel", data, "--undo")
    assert (code, err) == (0, "")
    assert "undid #1" in out
    assert _tree(data) == before
    assert (data / "cat" / "cat_001.png").stat().st_mtime_ns == mtime
    assert dataset_identity(_Samples(data)) == identity_before  # the cached features of before apply again
    code, _, err = cli("relabel", data, "--undo")
    assert code == 2 and "nothing to undo" in err and err.count("\n") == 1


def test_trash_keeps_the_image_until_undo_brings_it_back(data, cli):
    before = _tree(data)
    code, out, _ = cli("relabel", data, "fox/fox_000.png", "--trash")  # relative to the data folder
    assert code == 0 and "trashed fox/fox_000.png" in out
    assert "fox_000.png" not in _labels(data)
    kept = list((data / ".thaw" / "trash").iterdir())
    assert [p.read_bytes() for p in kept] == [before["fox/fox_000.png"]]
    relabel.undo_last(data)
    assert _tree(data) == before
    assert not list((data / ".thaw" / "trash").iterdir())


def test_undo_reverts_changes_last_first(data):
    before = _tree(data)
    relabel.move_to_class(data, data / "cat" / "cat_000.png", "dog")
    relabel.trash(data, data / "dog" / "dog_002.png")
    relabel.move_to_class(data, data / "fox" / "fox_001.png", "cat")
    for _ in range(3):
        relabel.undo_last(data)
    assert _tree(data) == before
    actions = [c.action for c in relabel.read_journal(data)]
    assert actions == ["move", "trash", "move", "undo", "undo", "undo"]
    assert [c.undoes for c in relabel.read_journal(data)[3:]] == [3, 2, 1]


def test_a_name_taken_in_the_target_class_loses_nothing(data):
    (data / "dog" / "cat_000.png").write_bytes(b"a different file that happens to share the name")
    before = _tree(data)
    change = relabel.move_to_class(data, data / "cat" / "cat_000.png", "dog")
    assert change.target == "dog/cat_000 (2).png"
    assert (data / "dog" / "cat_000.png").read_bytes() == before["dog/cat_000.png"]
    assert (data / "dog" / "cat_000 (2).png").read_bytes() == before["cat/cat_000.png"]
    relabel.undo_last(data)
    assert _tree(data) == before


def test_a_read_only_class_folder_is_refused_in_words(data, cli):
    before = _tree(data)
    target = data / "dog"
    target.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        code, out, err = cli("relabel", data, data / "cat" / "cat_001.png", "--to", "dog")
        code_from, _, err_from = cli("relabel", data, data / "dog" / "dog_000.png", "--to", "cat")
    finally:
        target.chmod(0o755)
    assert (code, out) == (2, "")
    assert err.startswith("error: the class folder 'dog'") and "read-only" in err and err.count("\n") == 1
    assert code_from == 2 and "read-only" in err_from
    assert _tree(data) == before
    assert relabel.read_journal(data) == []


def test_undo_refuses_when_the_old_place_is_taken_or_the_bytes_changed(data, cli):
    relabel.move_to_class(data, data / "cat" / "cat_001.png", "dog")
    (data / "cat" / "cat_001.png").write_bytes(b"new file at the old name")
    code, _, err = cli("relabel", data, "--undo")
    assert code == 2 and "exists again" in err
    (data / "cat" / "cat_001.png").unlink()
    (data / "dog" / "cat_001.png").write_bytes(b"edited since")
    code, _, err = cli("relabel", data, "--undo")
    assert code == 2 and "changed since" in err
    assert (data / "dog" / "cat_001.png").read_bytes() == b"edited since"


@pytest.mark.parametrize("args, words", [
    (["{data}/cat/cat_000.png", "--to", "purple"], "'purple' is not a class"),
    (["{data}/cat/cat_000.png", "--to", "cat"], "already in class 'cat'"),
    (["{data}/cat/missing.png", "--trash"], "no such image file"),
    (["{data}/outside.png", "--trash"], "not in a class folder"),
    (["--to", "dog"], "needs the FILE"),
])
def test_bad_requests_are_one_line_and_exit_2(data, cli, args, words):
    (data / "outside.png").write_bytes((data / "cat" / "cat_000.png").read_bytes())
    before = _tree(data)
    code, out, err = cli("relabel", data, *[a.format(data=data) for a in args])
    assert code == 2 and words in err and err.count("\n") == 1 and "Traceback" not in err
    assert _tree(data) == before


def test_the_train_val_layout_moves_within_the_split(tmp_path):
    data = make_image_folder(tmp_path / "tv", classes=3, per_class=3, size=16, layout="train_val")
    assert relabel.move_to_class(data, data / "val" / "cat" / "cat_000.png", "dog").target == "val/dog/cat_000.png"
    assert relabel.move_to_class(data, data / "train" / "cat" / "cat_001.png", "dog").target == "train/dog/cat_001.png"
    assert relabel.locate(data, data / "val" / "dog" / "cat_000.png").split == "val"
    shutil.rmtree(data / "val" / "fox")  # a class without a validation folder gets one
    assert relabel.move_to_class(data, data / "val" / "dog" / "dog_000.png", "fox").target == "val/fox/dog_000.png"


def test_a_target_taken_at_the_last_moment_is_refused_and_both_files_kept(data, monkeypatch):
    """A file appearing under the chosen name between the choice and the move (another program) is never
    replaced: the move is atomic-or-refused."""
    (data / "dog" / "cat_000.png").write_bytes(b"written meanwhile")
    before = _tree(data)
    monkeypatch.setattr(relabel, "_free_name", lambda folder, name: folder / name)
    with pytest.raises(relabel.RelabelError, match="appeared meanwhile"):
        relabel.move_to_class(data, data / "cat" / "cat_000.png", "dog")
    assert _tree(data) == before and relabel.read_journal(data) == []


def test_a_relabel_does_not_wait_for_torch(data):
    """Moving a file needs the folder's layout, not a decoder: torch (seconds to import) stays unloaded."""
    code = ("import sys; from engine.cli import main; "
            f"assert main(['relabel', {str(data)!r}, 'cat/cat_000.png', '--to', 'dog']) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (data / "dog" / "cat_000.png").is_file()
