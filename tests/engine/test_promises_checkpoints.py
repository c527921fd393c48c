"""Checkpoint promises checked where they can break: `best.pt` (a hard link to the `last.pt` of its epoch) keeps
the best epoch while later epochs rewrite `last.pt`, and a save that fails half-way leaves the previous
checkpoints readable and no temporary file."""

from __future__ import annotations

import errno
import io
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import BadInputError, CheckpointWriteError
from engine.train import events as ev
from engine.train.checkpoints import (
    FORMAT_VERSION,
    link_checkpoint,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from engine.train.runs import checkpoint_path
from engine.train.trainer import Trainer
from tests.helpers import tiny_recipe

REAL_SAVE = torch.save


def writer_failing_half_way(fail_on_call: int = 1, message: str = "No space left on device"):
    """A torch.save that, on its `fail_on_call`-th call, writes half of the real bytes and then raises — a full
    disk or a killed process in the middle of a write."""
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] != fail_on_call:
            return REAL_SAVE(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        REAL_SAVE(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        if hasattr(f, "write"):  # the checkpoint writer hands torch.save an open file
            f.write(data[: len(data) // 2])
        else:
            with open(f, "wb") as out:
                out.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, message)

    return save, calls


# --- 5a. best.pt keeps the best epoch ---------------------------------------------------------------------------
def test_best_checkpoint_keeps_the_best_epoch_after_later_worse_epochs(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=3, out=runs_dir)
    recipe.data.cache_features = "off"
    recipe.early_stopping.min_delta = 10.0  # no later epoch counts as better than the first; all keep training
    best_at_save: dict[str, dict] = {}

    def snapshot(event):  # what best.pt held when it was linked (the run folder links it before views hear of it)
        if isinstance(event, ev.CheckpointSaved) and event.is_best:
            best_at_save[event.epoch] = load_checkpoint(Path(event.path).with_name("best.pt"))

    result = Trainer(recipe, [snapshot]).fit()
    assert result.status == "finished", result.error
    assert list(best_at_save) == [1] and result.summary["best_epoch"] == 1 and result.summary["epochs_done"] == 3
    best = load_checkpoint(checkpoint_path(result.run_dir, "best"))
    last = load_checkpoint(checkpoint_path(result.run_dir, "last"))
    assert best["epoch"] == 1 and last["epoch"] == 3
    for key, tensor in best_at_save[1]["model"].items():
        assert torch.equal(best["model"][key], tensor), key
    assert not torch.equal(best["model"]["fc.weight"], last["model"]["fc.weight"])  # later epochs did train
    assert best["epoch"] == result.summary["best_epoch"]


# --- 5b. a save that fails half-way -----------------------------------------------------------------------------
def test_a_save_failing_half_way_keeps_last_and_best_readable(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder / "last.pt", {"epoch": 1, "w": torch.arange(1000.0)})
    link_checkpoint(folder / "last.pt", folder / "best.pt")
    failing, calls = writer_failing_half_way()
    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(CheckpointWriteError, match="No space left"):  # the failure is reported, never swallowed
        save_checkpoint(folder / "last.pt", {"epoch": 2, "w": torch.zeros(1000)})
    assert calls["n"] == 1
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(folder / name)
        assert state["epoch"] == 1 and torch.equal(state["w"], torch.arange(1000.0)), name
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left


def test_a_run_whose_checkpoint_write_fails_keeps_the_previous_one(image_folder, runs_dir, monkeypatch):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=3, out=runs_dir)
    recipe.data.cache_features = "off"  # the feature store writes through torch.save too
    failing, calls = writer_failing_half_way(fail_on_call=2)  # epoch 2's last.pt
    monkeypatch.setattr(torch, "save", failing)
    events: list[ev.Event] = []
    result = Trainer(recipe, [events.append]).fit()
    assert result.status == "failed" and "No space left on device" in result.error
    failed = [e for e in events if isinstance(e, ev.RunFailed)]
    assert len(failed) == 1 and failed[0].checkpoint == str(checkpoint_path(result.run_dir, "last"))
    for kind in ("last", "best"):
        assert load_checkpoint(checkpoint_path(result.run_dir, kind))["epoch"] == 1, kind
    folder = checkpoint_path(result.run_dir, "last").parent
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]
    assert json.loads((Path(result.run_dir) / "summary.json").read_text())["status"] == "failed"


# --- unit level: the rest of checkpoints.py, fast enough for mutation testing ------------------------------------
def test_save_writes_format_version_and_returns_the_path(tmp_path):
    path = save_checkpoint(tmp_path / "new" / "deeper" / "x.pt", {"epoch": 3, "t": torch.ones(2)})
    assert path == tmp_path / "new" / "deeper" / "x.pt"
    state = load_checkpoint(path)
    assert state["format_version"] == FORMAT_VERSION and state["epoch"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.pt"]


def test_the_temporary_file_is_written_beside_the_checkpoint(tmp_path, monkeypatch):
    """Beside it: the rename is then atomic (one file system), and a temp file a power cut leaves behind is
    recognisable as this checkpoint's (last.pt….tmp)."""
    written: list[Path] = []
    real_replace = os.replace

    def recording_replace(source, target):  # the rename that publishes the checkpoint
        written.append(Path(source))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", recording_replace)
    save_checkpoint(tmp_path / "run" / "last.pt", {"epoch": 1})
    assert len(written) == 1 and written[0].parent == tmp_path / "run"
    assert written[0].name.startswith("last.pt") and written[0].name.endswith(".tmp")
    assert written[0].name != "last.pt" and not written[0].exists()


def test_a_new_last_checkpoint_does_not_change_the_linked_best(tmp_path):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_checkpoint(last, {"epoch": 1})
    assert link_checkpoint(last, best) == best
    assert os.path.samefile(last, best)  # a hard link: written once
    save_checkpoint(last, {"epoch": 2})
    assert load_checkpoint(best)["epoch"] == 1 and load_checkpoint(last)["epoch"] == 2
    link_checkpoint(last, best)  # a new best replaces the old link
    assert load_checkpoint(best)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_link_falls_back_to_a_copy_and_clears_a_stale_temp_file(tmp_path, monkeypatch):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_checkpoint(last, {"epoch": 1})
    (tmp_path / "best.pt.link.tmp").write_bytes(b"left over by a crash")

    def no_links(*_args):
        raise OSError(errno.EPERM, "links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    link_checkpoint(last, best)
    assert not os.path.samefile(last, best) and load_checkpoint(best)["epoch"] == 1
    save_checkpoint(last, {"epoch": 2})
    assert load_checkpoint(best)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_load_reports_bad_files_in_one_line(tmp_path):
    with pytest.raises(BadInputError, match="does not exist") as info:
        load_checkpoint(tmp_path / "missing.pt")
    assert str(tmp_path / "missing.pt") in str(info.value)
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(BadInputError, match="is a folder, not a file"):
        load_checkpoint(tmp_path / "folder.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(BadInputError, match="is not a PyTorch file") as info:
        load_checkpoint(garbage)
    assert "\n" not in str(info.value) and str(garbage) in str(info.value)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="is empty or truncated"):
        load_checkpoint(empty)
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    with pytest.raises(BadInputError, match="is not a Thaw checkpoint"):
        load_checkpoint(listed)


class Foreign:
    pass


def test_load_refuses_arbitrary_pickled_objects(tmp_path, monkeypatch):
    path = tmp_path / "pickle.pt"
    torch.save({"model": Foreign()}, path)
    # weights_only=True, explicitly: loading never runs foreign code, even where the environment relaxes torch's
    # default (this variable makes torch.load default to full unpickling).
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(BadInputError, match="holds a pickled Python object .*Foreign"):
        load_checkpoint(path)


@pytest.mark.parametrize("error, shown", [(RuntimeError("first line\nsecond line"),
                                           "cannot be read as a PyTorch file (first line)"),
                                          (RuntimeError("  \n  "), "cannot be read as a PyTorch file (RuntimeError)"),
                                          (EOFError(), "is empty or truncated")])
def test_load_errors_show_the_first_line_of_the_cause(tmp_path, monkeypatch, error, shown):
    path = save_checkpoint(tmp_path / "x.pt", {"epoch": 1})

    def failing_load(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(torch, "load", failing_load)
    with pytest.raises(BadInputError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"checkpoint {path} {shown}"  # one line; never torch's advice


def test_load_maps_tensors_to_the_requested_device(tmp_path):
    path = save_checkpoint(tmp_path / "x.pt", {"t": torch.ones(1)})
    assert load_checkpoint(path, map_location="meta")["t"].device.type == "meta"
    assert load_checkpoint(path)["t"].device.type == "cpu"


class FakeCuda:
    """torch.cuda's RNG functions on a machine that has (or has not) a GPU."""

    def __init__(self, available: bool):
        self.available = available
        self.state = [torch.tensor([1, 2, 3], dtype=torch.uint8)]
        self.restored: list = []

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: self.available)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: self.state)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.restored.append)


def test_cuda_rng_states_are_saved_and_restored_where_there_is_a_gpu(monkeypatch):
    gpu = FakeCuda(available=True)
    gpu.install(monkeypatch)
    states = rng_states()
    assert states["cuda"] is gpu.state
    restore_rng_states(states)
    assert gpu.restored == [gpu.state]
    cpu_made = {k: v for k, v in states.items() if k != "cuda"}  # a checkpoint from a CPU machine
    restore_rng_states(cpu_made)
    assert gpu.restored == [gpu.state]  # nothing to restore on the GPU; no error


def test_gpu_made_rng_states_resume_on_a_machine_without_gpu(monkeypatch):
    gpu = FakeCuda(available=True)
    gpu.install(monkeypatch)
    states = rng_states()
    cpu = FakeCuda(available=False)
    cpu.install(monkeypatch)
    assert "cuda" not in rng_states()
    restore_rng_states(states)  # the CUDA states are skipped, the others restored
    assert cpu.restored == []


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # numpy caches a second gaussian: its state has has_gauss = 1
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_states()})
    expected = (random.random(), np.random.standard_normal(), np.random.random(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_states(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (random.random(), np.random.standard_normal(), np.random.random(), torch.rand(3))
    assert again[:3] == expected[:3] and torch.equal(again[3], expected[3])
