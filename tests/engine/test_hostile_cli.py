"""The CLI as a hostile user meets it, in real processes: a mistyped command, one Ctrl-C, two processes on one
run, a run whose data folder moved, a tampered checkpoint, a device this machine lacks. Every refusal is one
line and a documented exit code, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from engine.cli import main as cli_main
from engine.train import events as ev
from engine.train.run_lock import RunLock
from engine.train.runs import checkpoint_path
from engine.train.trainer import Trainer
from tests.helpers import make_image_folder, tiny_recipe

ROOT = Path(__file__).parents[2]


def test_a_mistyped_command_is_an_unknown_command_not_the_studio(thaw):
    out = thaw("trian", "recipe.json")
    assert out.returncode == 2
    assert out.stderr.startswith("error: unknown command 'trian' (and no such file or folder). Did you mean "
                                 "'train'? Commands: train, resume, lr-find, predict")
    assert out.stderr.count("\n") == 1 and out.stdout == ""


def test_an_existing_file_or_folder_still_opens_the_studio(tmp_path, monkeypatch):
    import main as entry

    opened = []
    studio = types.ModuleType("gui.app")
    studio.run_studio = lambda argv: opened.append(list(argv)) or 0
    monkeypatch.setitem(sys.modules, "gui.app", studio)
    recipe = tmp_path / "my.json"
    recipe.write_text("{}")
    assert entry.main([str(recipe)]) == 0 and entry.main([str(tmp_path)]) == 0 and entry.main([]) == 0
    assert entry.main(["-style", "fusion"]) == 0  # Qt's own options go to the studio
    assert opened == [[str(recipe)], [str(tmp_path)], [], ["-style", "fusion"]]
    assert entry.main(["scna"]) == 2 and len(opened) == 4


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_one_ctrl_c_stops_cleanly_with_its_own_exit_code(tmp_path, image_folder):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=200, out=tmp_path / "runs")
    recipe.data.max_train_batches = recipe.data.max_val_batches = 1
    recipe.data.cache_features = "off"
    recipe.save(tmp_path / "long.json")
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "train", str(tmp_path / "long.json"), "--quiet"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("Epoch 1/200"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err
    assert "stopping after this batch" in err and "continue with: python main.py resume" in err
    run_dir = next((tmp_path / "runs").iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "stopped"


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped after its first epoch, on a data folder of its own (the test moves it)."""
    folder = tmp_path_factory.mktemp("stopped")
    data = make_image_folder(folder / "data", classes=3, per_class=6, seed=4)
    control = ev.RunControl()
    recipe = tiny_recipe(data, "lesson_feature_extraction", epochs=2, out=folder / "runs")
    stop = lambda e: isinstance(e, ev.EpochFinished) and control.request_stop()  # noqa: E731
    result = Trainer(recipe, [stop], control).fit()
    assert result.status == "stopped", result.error
    return Path(result.run_dir), data


def test_resume_is_refused_while_another_process_trains_the_run_and_follows_a_moved_data_folder(stopped_run,
                                                                                              capsys, thaw, cli):
    run_dir, data = stopped_run
    with RunLock(run_dir):  # this test process "trains" it
        out = thaw("resume", run_dir, "--quiet")
    assert out.returncode == 2
    assert out.stderr == f"error: {run_dir} is already running (pid {os.getpid()}); wait for it to finish or " \
                         f"stop it first\n"

    moved = data.with_name("moved_data")
    data.rename(moved)
    other = make_image_folder(data.with_name("other_classes"), classes=4, per_class=2)
    shutil.rmtree(other / "fox")
    assert cli_main(["resume", str(run_dir), "--data", str(other)]) == 2
    assert "holds other classes than the run was trained on (missing fox; new owl)" in capsys.readouterr().err

    stale = [run_dir / "checkpoints" / "last.pt.x1y2.tmp", run_dir / "summary.json.999.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)  # what a kill -9 during a write leaves
    out = cli("resume", run_dir, "--data", moved, "--quiet")  # the lock is free again: in this process
    assert out.returncode == 0, out.stderr
    assert f"Removed 2 temporary file(s) an interrupted write left in {run_dir}" in out.stderr
    assert not any(p.exists() for p in stale)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert json.loads((run_dir / "recipe.json").read_text())["data"]["root"] == str(moved)


def test_predict_refuses_a_tampered_checkpoint_and_a_missing_device(stopped_run, tmp_path, capsys, cli):
    run_dir, _ = stopped_run
    image = next(Path(run_dir).parent.parent.rglob("*.png"))
    state = torch.load(checkpoint_path(run_dir, "last"), weights_only=True)
    state["class_names"] = state["class_names"][:2]
    torch.save(state, tmp_path / "fewer_classes.pt")
    out = cli("predict", tmp_path / "fewer_classes.pt", image)
    assert out.returncode == 2
    assert out.stderr == (f"error: checkpoint {tmp_path / 'fewer_classes.pt'}: its head 'fc' has 3 outputs but "
                          f"it names 2 classes\n")

    checkpoint = checkpoint_path(run_dir, "last")
    assert cli_main(["predict", str(checkpoint), str(image), "--device", "bogus"]) == 2
    assert "--device 'bogus' is not a device: use cpu, cuda, cuda:N, mps or auto" in capsys.readouterr().err
    assert cli_main(["predict", str(checkpoint), str(image), "--device", "cuda:7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda:7: ") and ("CUDA is not available" in err or "device(s)" in err)
