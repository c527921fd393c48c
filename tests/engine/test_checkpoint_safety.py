"""Nothing lost, nothing wrong on disk: non-finite states are never written, a full disk (a file-size limit)
leaves the previous checkpoint loadable and no temp file, interrupted writes are cleaned up, and a tampered or
foreign checkpoint gets one sentence (never a traceback, never advice to load it with weights_only=False)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine.errors import BadInputError, CheckpointWriteError, NonFiniteError
from engine.infer.inference import Predictor
from engine.train.checkpoints import (
    FORMAT_VERSION,
    check_checkpoint_fits,
    load_checkpoint,
    nonfinite_tensors,
    remove_stale_temp_files,
    save_checkpoint,
    validate_checkpoint,
)
from engine.train.runs import checkpoint_path
from engine.train.trainer import fit
from tests.helpers import tiny_recipe

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def trained(image_folder, tmp_path_factory):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=tmp_path_factory.mktemp("ckpt_runs"))
    recipe.data.max_train_batches = 2
    result = fit(recipe)
    assert result.status == "finished", result.error
    return Path(result.run_dir)


def _tampered(trained: Path, tmp_path: Path, change) -> Path:
    state = load_checkpoint(checkpoint_path(trained, "last"))
    change(state)
    path = tmp_path / "tampered.pt"
    torch.save(state, path)
    return path


# --- finiteness ---------------------------------------------------------------------------------------------

def test_nonfinite_tensors_names_model_and_optimizer_entries():
    state = {"model": {"fc.weight": torch.ones(2, 2), "bn.running_var": torch.tensor([1.0, float("inf")])},
             "optimizer": {"state": {3: {"exp_avg": torch.tensor([float("nan")]), "step": torch.tensor(4)}}},
             "scheduler": {"best": float("inf")}, "rng": {"torch": torch.zeros(5, dtype=torch.uint8)}}
    assert nonfinite_tensors(state) == ["model.bn.running_var", "optimizer.state.3.exp_avg"]
    assert nonfinite_tensors({"model": {"w": torch.ones(3)}, "scheduler": {"best": float("-inf")}}) == []


def test_a_nonfinite_state_is_never_written_and_the_previous_file_stays(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1})
    before = path.read_bytes()
    with pytest.raises(NonFiniteError, match=r"last.pt holds non-finite values .* in 1 tensor\(s\): model.w"):
        save_checkpoint(path, {"model": {"w": torch.tensor([1.0, float("nan"), 2.0])}, "epoch": 2})
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    save_checkpoint(path, {"model": {"w": torch.tensor([float("nan")])}}, allow_nonfinite=True)  # on purpose only
    assert torch.isnan(load_checkpoint(path)["model"]["w"]).all()


FULL_DISK_CHILD = textwrap.dedent("""
    import json, resource, sys, torch
    from engine.train.checkpoints import load_checkpoint, save_checkpoint
    path = sys.argv[1]
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}, "epoch": 1})
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))  # a disk that fills up
    try:
        save_checkpoint(path, {"model": {"w": torch.ones(200_000)}, "epoch": 2})
        outcome = "written"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"outcome": outcome, "epoch": load_checkpoint(path)["epoch"]}))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_write_that_hits_a_full_disk_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    out = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["outcome"] == (f"CheckpointWriteError: cannot write checkpoint {path}: File too large "
                                 f"(the previous checkpoint is kept)")
    assert result["epoch"] == 1  # the previous checkpoint is intact and loadable
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left


def test_a_write_into_an_unwritable_place_is_a_checkpoint_write_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the checkpoints folder should be")
    with pytest.raises(CheckpointWriteError, match="cannot write checkpoint .*last.pt: .*"):
        save_checkpoint(blocker / "last.pt", {"model": {"w": torch.ones(2)}})


def test_stale_temp_files_of_interrupted_writes_are_removed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / "checkpoints" / "last.pt.abc123.tmp", tmp_path / "checkpoints" / "best.pt.link.tmp",
             tmp_path / "summary.json.4242.tmp"]
    kept = [tmp_path / "checkpoints" / "last.pt", tmp_path / "summary.json", tmp_path / "metrics.csv"]
    for path in stale + kept:
        path.write_bytes(b"x" * 10)
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


# --- tampered and foreign checkpoints -------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(model=[t for t in s["model"].values()]), "'model' is a list, not a dict"),
    (lambda s: s.update(class_names=s["class_names"][:2]), "its head 'fc' has 3 outputs but it names 2 classes"),
    (lambda s: s["recipe"]["model"].update(arch="mobilenet_v3_small", weights="none"),
     "its weights do not fit the architecture its recipe names (MobileNetV3, 244 tensors): 244 missing "
     "(features.0.0.weight, features.0.1.weight, features.0.1.bias …); 122 unknown (conv1.weight"),
    (lambda s: s["recipe"]["model"].update(arch="mobilenet_v3_small"),
     "its recipe's model cannot be built (recipe field 'model.weights': 'TinyResNet_Weights.IMAGENET1K_V1' is "
     "not a weights entry of mobilenet_v3_small"),
    (lambda s: s["model"]["layer1.0.bn1.running_var"].fill_(float("nan")),
     "holds non-finite weights (layer1.0.bn1.running_var): it was saved from a diverged model"),
    (lambda s: s["recipe"].update(batch_size=-3), "its recipe is invalid: recipe field 'batch_size'"),
    (lambda s: s.pop("preprocessing"), "is not a Thaw checkpoint (it has no 'preprocessing')"),
])
def test_predict_refuses_a_tampered_checkpoint_in_one_sentence(trained, tmp_path, change, words):
    path = _tampered(trained, tmp_path, change)
    with pytest.raises(BadInputError) as info:
        Predictor.from_checkpoint(path)
    assert words in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


class Pickled:  # a class torch.load(weights_only=True) refuses: it would have to run code to rebuild it
    pass


@pytest.mark.parametrize("content, words", [
    ("pickle", "holds a pickled Python object ({module}.Pickled), not plain tensors"),
    ("garbage", "is not a PyTorch file of tensors and plain values"),
    ("truncated", "is truncated or corrupt"),
    ("empty", "is empty or truncated"),
    ("tensor", "is not a Thaw checkpoint (it holds a Tensor)"),
])
def test_garbage_checkpoints_never_suggest_weights_only_false(trained, tmp_path, content, words):
    path = tmp_path / "bad.pt"
    if content == "pickle":
        torch.save({"model": Pickled()}, path)
    elif content == "garbage":
        path.write_bytes(b"\x80\x02garbage" * 20)
    elif content == "truncated":
        data = checkpoint_path(trained, "last").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "empty":
        path.write_bytes(b"")
    else:
        torch.save(torch.ones(3), path)
    with pytest.raises(BadInputError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert words.format(module=Pickled.__module__) in message
    assert "weights_only" not in message and "\n" not in message


def test_resume_validation_refuses_a_checkpoint_that_cannot_continue(trained, tmp_path):
    good = load_checkpoint(checkpoint_path(trained, "last"))
    validate_checkpoint(good, "last.pt", "resume")
    check_checkpoint_fits(good, "last.pt")
    for change, words in ((lambda s: s.pop("optimizer"), "it has no 'optimizer'"),
                          (lambda s: s.update(phase=7), "phase 7 does not exist (the recipe has 1)"),
                          (lambda s: s.update(epoch=99), "epoch 99, batch 0 is outside the recipe's 1 epochs"),
                          (lambda s: s.update(epoch="1"), "'epoch' is a str, not a int")):
        state = load_checkpoint(checkpoint_path(trained, "last"))
        change(state)
        with pytest.raises(BadInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            validate_checkpoint(state, "last.pt", "resume")
    swapped = load_checkpoint(checkpoint_path(trained, "last"))
    swapped["recipe"]["model"].update(arch="resnet34", weights="none")
    with pytest.raises(BadInputError, match="its weights do not fit the architecture its recipe names"):
        check_checkpoint_fits(swapped, "last.pt")


def test_checkpoint_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    save_checkpoint(tmp_path / "a.pt", {"model": {"w": torch.ones(10)}})
    assert len(synced) == 1 and load_checkpoint(tmp_path / "a.pt")["format_version"] == FORMAT_VERSION
