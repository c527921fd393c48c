"""Runs over two real processes (torchrun, gloo on the CPU), as `train --processes 2` and the studio start them:
the same weights as one process with the whole batch, one run folder, an exact resume after a stop, a failed run
when a rank is killed (and `resume` continuing it), a head fitted over two processes that is the one-process head, a
resume by another number of processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from engine.train import events as ev
from engine.train.checkpoints import load_checkpoint, validate_checkpoint
from engine.train.launch import ProcessRun
from engine.train.runs import checkpoint_path, read_batches, read_metrics
from engine.train.trainer import Trainer
from tests.helpers import make_image_folder, tiny_recipe

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def forty_images(tmp_path_factory) -> Path:
    """4 classes × 10 training images (5 global batches of 8) and 3 validation images each."""
    return make_image_folder(tmp_path_factory.mktemp("ddp-data"), classes=4, per_class=10, layout="train_val")


def unfreezing_recipe(data: Path, out: Path, batch_size: int, processes: int):
    """Head on cached features, then the last stage, then everything — BatchNorm frozen throughout (its statistics
    are per process, the one thing two processes cannot share without SyncBatchNorm)."""
    recipe = tiny_recipe(data, "gradual_unfreezing", epochs=3, out=out, batch_size=batch_size)
    for phase in recipe.phases:
        phase.bn_modes = {"all": "frozen"}
    recipe.phases[0].head_fit = "epochs"  # batches in every phase: the data order is what these tests compare
    recipe.phases[2].schedule.name = "cosine"  # a per-batch schedule across the stop and the resume
    recipe.distributed.processes = processes
    return recipe.validate()


def only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs  # one run folder, written by rank 0 alone
    return runs[0]


def test_two_processes_stopped_and_resumed_train_what_one_process_trains(forty_images, tmp_path, monkeypatch, cli):
    one = Trainer(unfreezing_recipe(forty_images, tmp_path / "one", batch_size=8, processes=1)).fit()
    assert one.status == "finished"

    monkeypatch.setenv("THAW_CACHE_DIR", str(tmp_path / "fresh-cache"))  # the features are computed, sharded
    recipe = unfreezing_recipe(forty_images, tmp_path / "two", batch_size=4, processes=2)
    recipe.save(tmp_path / "two.json")
    run = ProcessRun(["train", str(tmp_path / "two.json")], 2).start()
    events = []
    for event in run.events():
        events.append(event)
        if isinstance(event, ev.BatchFinished) and event.epoch == 1 and event.batch == 0:
            run.request_stop()  # inside the second phase's epoch: the ranks agree on a batch to stop before
    assert run.wait() == 0 and run.exit is not None and run.exit.code == 3, run.failure_text()
    started = next(e for e in events if isinstance(e, ev.DistributedStarted))
    assert (started.world_size, started.backend, started.global_batch, started.steps_per_epoch) == (2, "gloo", 8, 5)
    cached = next(e for e in events if isinstance(e, ev.FeaturesCached))
    assert not cached.from_disk and cached.images == 40
    stopped = next(e for e in events if isinstance(e, ev.RunStopped))
    run_dir = only_run(tmp_path / "two")
    assert load_checkpoint(checkpoint_path(run_dir, "last"))["world_size"] == 2

    # The CLI in this process launches torchrun as from a terminal (its ranks are real processes either way)
    resumed = cli("resume", run_dir, "--quiet")  # as many processes as the run used: exact
    assert resumed.returncode == 0, resumed.stderr
    assert "2 processes (gloo): batch 4 per process = 8 per step" in resumed.stderr
    assert only_run(tmp_path / "two") == run_dir

    mine, reference = load_checkpoint(checkpoint_path(run_dir, "last")), load_checkpoint(
        checkpoint_path(one.run_dir, "last"))
    worst = max(float((mine["model"][k].float() - reference["model"][k].float()).abs().max()) for k in mine["model"])
    assert worst < 1e-5, f"stopped at epoch {stopped.epoch + 1} batch {stopped.batch}: weights differ by {worst}"
    rows, ref_rows = read_metrics(run_dir), read_metrics(one.run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # one row per epoch, the stopped epoch once
    assert [r["train_images"] for r in rows] == [r["train_images"] for r in ref_rows] == [40, 40, 40]
    for mine_row, ref_row in zip(rows, ref_rows):
        assert mine_row["train_loss"] == pytest.approx(ref_row["train_loss"], rel=1e-4)
        assert mine_row["val_loss"] == pytest.approx(ref_row["val_loss"], rel=1e-4)
        assert mine_row["val_acc"] == ref_row["val_acc"]
    steps = [b["global_step"] for b in read_batches(run_dir)]
    assert steps == list(range(1, 16))  # every step once, across the stop
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["distributed"]["world_size"] == 2
    assert summary["device"].startswith("2 processes (gloo) × CPU")  # what the runs table shows
    assert json.loads((run_dir / "recipe.json").read_text())["distributed"]["processes"] == 2

    predicted = cli("predict", checkpoint_path(run_dir, "best"), forty_images / "val", "--json")  # one process
    assert predicted.returncode == 0 and len(predicted.stdout.strip().splitlines()) == 12, predicted.stderr


def test_a_checkpoint_of_two_processes_resumed_by_one_restarts_the_epoch(forty_images, tmp_path, monkeypatch):
    recipe = unfreezing_recipe(forty_images, tmp_path / "runs", batch_size=2, processes=2)  # 10 steps per epoch
    recipe.distributed.lr_scaling = "linear"  # rates × 2 with two processes, × 1 again with one
    recipe.save(tmp_path / "two.json")
    run = ProcessRun(["train", str(tmp_path / "two.json")], 2).start()
    phases = []
    for event in run.events():
        if isinstance(event, ev.PhaseStarted):
            phases.append(event)
        if isinstance(event, ev.BatchFinished) and event.epoch == 2 and event.batch == 0:
            run.request_stop()
    assert run.wait() == 0 and run.exit.code == 3, run.failure_text()
    assert phases[0].groups == {"all": 2 * recipe.phases[0].lr}
    run_dir = only_run(tmp_path / "runs")
    saved = load_checkpoint(checkpoint_path(run_dir, "last"))
    assert saved["epoch"] == 2 and saved["batch"] > 0, "the stop should land inside the third epoch"

    said = []
    result = Trainer.from_run_dir(run_dir, [said.append]).fit()  # one process, in this one
    assert result.status == "finished"
    note = next(e for e in said if isinstance(e, ev.DistributedStarted))
    assert note.world_size == 1 and "restarts from its first batch" in note.note
    started = next(e for e in said if isinstance(e, ev.RunStarted))
    assert (started.start_epoch, started.start_batch) == (2, 0)
    resumed_phase = next(e for e in said if isinstance(e, ev.PhaseStarted))
    assert resumed_phase.phase_index == 2
    assert resumed_phase.groups == {name: lr / 2 for name, lr in phases[2].groups.items()}  # back to one process
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2, 3]
    steps = [b["global_step"] for b in read_batches(run_dir)]
    assert steps == list(range(1, 41))  # two epochs of 10 steps of 4 images, then 20 of one process with 2
    assert json.loads((run_dir / "recipe.json").read_text())["distributed"]["processes"] == 1


def rank_process(launcher: subprocess.Popen, rank: int) -> psutil.Process:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "main.py" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no process of rank {rank}")


def fitted_then_tuned(data: Path, out: Path, processes: int):
    """The head fitted to convergence on cached features, then everything fine-tuned for 3 epochs."""
    recipe = tiny_recipe(data, "extract_then_finetune", epochs=4, out=out, batch_size=4, head_fit="converge")
    recipe.phases[1].epochs = 3
    recipe.distributed.processes = processes
    return recipe.validate()


def test_killing_a_rank_fails_the_run_and_resume_continues_it(forty_images, tmp_path, monkeypatch, cli):
    """Also: the head fitted over two processes is the one-process head. Every rank fits on the gathered features
    (computed sharded) and rank 0's head is kept; the epoch reports the fit. The kill comes when that epoch's line
    is printed: the next phase cannot take a step without the killed rank, so last.pt is the fitted epoch's."""
    one = Trainer(fitted_then_tuned(forty_images, tmp_path / "one", 1)).fit()
    assert one.status == "finished", one.error
    monkeypatch.setenv("THAW_CACHE_DIR", str(tmp_path / "fresh-cache"))  # computed sharded, then gathered
    fitted_then_tuned(forty_images, tmp_path / "runs", 1).save(tmp_path / "recipe.json")
    launcher = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "train", str(tmp_path / "recipe.json"),
                                 "--processes", "2", "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in launcher.stderr:
        seen.append(line)
        if line.startswith("Epoch 1/4"):
            rank_process(launcher, 1).send_signal(signal.SIGKILL)
            break
    rest = launcher.stderr.read()
    assert launcher.wait(timeout=120) == 1, "".join(seen) + rest
    assert "Run failed: a process of this 2-process run" in rest  # lost (gloo) or ended by torchrun: one is first
    run_dir = only_run(tmp_path / "runs")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "a process of this 2-process run" in summary["error"]
    kept = load_checkpoint(checkpoint_path(run_dir, "last"))
    validate_checkpoint(kept, "last.pt", "resume")
    assert kept["epoch"] == 1 and kept["world_size"] == 2
    assert not list(run_dir.rglob("*.tmp"))

    fit = summary["phases"][0]["head_fit"]  # HeadFitted, said once by rank 0, for the whole training set
    assert fit["method"] == "lbfgs" and fit["rows"] == 40
    fitted_epoch = read_metrics(run_dir)[0]
    assert fitted_epoch["train_loss"] == pytest.approx(fit["train_loss"], rel=1e-6)
    assert fitted_epoch["train_images"] == 40  # rank 0's sums, counted once
    one_fit = json.loads((Path(one.run_dir) / "summary.json").read_text())["phases"][0]["head_fit"]
    assert fit["l2"] == one_fit["l2"] and fit["train_loss"] == pytest.approx(one_fit["train_loss"], rel=1e-4)
    head_one = load_checkpoint(checkpoint_path(Path(one.run_dir), "best"))["model"]["fc.weight"]
    assert float((head_one - kept["model"]["fc.weight"]).abs().max()) < 1e-3  # the same fit, to float rounding

    # Continued by one process, in this one (a 2-process resume is the first test's): the launch killed above was
    # the CLI's own, and a launch here would add a torchrun and two ranks for nothing this test is about.
    resumed = cli("resume", run_dir, "--processes", "1", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


def test_bad_input_found_by_rank_zero_is_one_line_and_exit_2(forty_images, tmp_path, cli):
    """The runs folder is rank 0's to make: its refusal reaches the other rank, which says nothing."""
    recipe = tiny_recipe(forty_images, batch_size=4)
    recipe.save(tmp_path / "recipe.json")
    (tmp_path / "a-file").write_text("not a folder")
    out = cli("train", tmp_path / "recipe.json", "--processes", "2", "--out", tmp_path / "a-file", "--quiet")
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert out.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: "), out.stderr
    assert "a-file" in errors[0] and "Traceback" not in out.stderr
