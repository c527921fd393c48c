"""The parts of a run over several processes that need no process group: each rank's share of the one seeded order,
sharded validation, the recipe's distributed fields, learning-rate scaling, a resume by another number of processes,
and the channel a launcher talks to rank 0 through. Runs with real processes: test_distributed_runs.py."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine.errors import RecipeError
from engine.recipe import GroupSpec, Recipe, lr_factor
from engine.train import events as ev
from engine.train.distributed import DistContext, Ranks, SyncedControl
from engine.train.distributed_data import val_shard
from engine.train.distributed_model import scaled_groups
from engine.train.distributed_resume import adapt_state
from engine.train.launch import ControlWatcher, EventStream, ProcessRun, first_errors, recorded_processes
from engine.train.optim import build_optimizer, build_schedule
from engine.train.sampling import epoch_order, global_batches, rank_order
from engine.train.state import RunningSums, TrainingState
from tests.helpers import tiny_recipe

# --- the order of an epoch ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("world", [2, 3, 4])
def test_the_global_batches_do_not_depend_on_the_number_of_processes(world):
    n, global_batch = 103, 12
    one = global_batches(epoch_order(n, global_batch, seed=7, epoch=3, max_batches=0), global_batch, 1)
    order = epoch_order(n, global_batch, seed=7, epoch=3, max_batches=0)
    many = global_batches(order, global_batch // world, world)
    full = n // global_batch
    assert many[:full] == one[:full]  # every full global batch: the same images, in the same steps
    last = n - full * global_batch  # 7 images: each rank takes 7 // W of them, or the batch is dropped
    share = last // world
    assert len(many) == full + (share >= 2)
    if share >= 2:
        assert many[-1] == [i for r in range(world) for i in one[-1][r * share:(r + 1) * share]]


def test_every_rank_trains_equal_shares_and_no_image_twice():
    order = epoch_order(50, 16, seed=1, epoch=0, max_batches=0)
    shares = [rank_order(order, 4, r, 4) for r in range(4)]
    assert {len(s) for s in shares} == {12}  # 3 full steps of 4 each; the 2 left over are too few for 4 ranks
    flat = [i for s in shares for i in s]
    assert len(set(flat)) == len(flat) == 48 and set(flat) <= set(order)
    # a step's share is contiguous in the global order: rank r's j-th batch is the r-th quarter of global batch j
    assert shares[1][:4] == order[4:8] and shares[3][4:8] == order[28:32]


def test_a_capped_epoch_counts_global_batches():
    order = epoch_order(100, 8, seed=0, epoch=0, max_batches=3)  # 3 global batches of 4 × 2
    assert len(order) == 24 and [len(rank_order(order, 4, r, 2)) for r in range(2)] == [12, 12]


def test_validation_shards_cover_every_image_once():
    for world in (1, 2, 3):
        shards = [val_shard(23, 4, 0, r, world) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(23))
    capped = [val_shard(100, 4, 2, r, 2) for r in range(2)]  # 2 global batches of 4 × 2 = the first 16 images
    assert sorted(i for s in capped for i in s) == list(range(16))


def test_a_distributed_setup_steps_through_its_share(image_folder):
    from engine.train.setup import RunSetup

    recipe = tiny_recipe(image_folder, batch_size=4)
    data = type("Data", (), {"train": list(range(30))})()
    two = RunSetup(recipe, None, data, None, None, None, [], [], DistContext(Ranks(1, 2, 1), "gloo"))
    one = RunSetup(recipe, None, data, None, None, None, [], [])
    assert two.global_batch == 8 and one.global_batch == 4
    assert two.steps_per_epoch == 4 and one.steps_per_epoch == math.ceil(30 / 4)  # 3 × 8 + 6 (3 each)
    assert two.epoch_order(2) == rank_order(epoch_order(30, 8, recipe.seed, 2, 0), 4, 1, 2)


# --- the recipe ----------------------------------------------------------------------------------------------

def test_the_distributed_fields_are_checked_and_named(image_folder):
    recipe = tiny_recipe(image_folder)
    data = recipe.to_dict()
    assert data["distributed"] == {"processes": 1, "lr_scaling": "none", "sync_batchnorm": False}
    for edit, field, words in [
        ({"processes": 0}, "distributed.processes", "[1, 1024]"),
        ({"lr_scaling": "cubic"}, "distributed.lr_scaling", "none, linear, sqrt"),
        ({"processes": 2, "sync_batchnorm": True}, "distributed.sync_batchnorm", "needs CUDA"),
    ]:
        with pytest.raises(RecipeError) as info:
            Recipe.from_dict({**data, "distributed": {**data["distributed"], **edit}})
        assert info.value.field == field and words in str(info.value)
    for device in ("cuda:1", "mps"):
        with pytest.raises(RecipeError) as info:
            Recipe.from_dict({**data, "device": device, "distributed": {"processes": 2}})
        assert info.value.field == "device"
    Recipe.from_dict({**data, "device": "cuda:1"})  # one process may name its GPU
    Recipe.from_dict({**data, "distributed": {"sync_batchnorm": True}})  # one process: nothing to synchronise


def test_the_learning_rate_scaling_rule():
    assert lr_factor("none", 8) == 1 and lr_factor("linear", 8) == 8 and lr_factor("sqrt", 4) == 2
    groups = [GroupSpec("head", ["fc"], 1e-3), GroupSpec("body", ["layer4"], 1e-4, 0.01)]
    scaled = scaled_groups(groups, 4.0)
    assert [g.lr for g in scaled] == [4e-3, 4e-4] and scaled[1].weight_decay == 0.01
    assert [g.lr for g in groups] == [1e-3, 1e-4]  # the recipe's own groups are untouched


def test_sync_batchnorm_converts_every_batchnorm_and_keeps_the_checkpoint_format(image_folder):
    from torch.nn.modules.batchnorm import _BatchNorm
    from torchvision.models import resnet18

    from engine.model.freezing import bn_layers
    from engine.train.distributed_model import with_sync_batchnorm

    recipe = tiny_recipe(image_folder)
    model = resnet18()
    keys = list(model.state_dict())
    assert with_sync_batchnorm(model, recipe, DistContext(Ranks(0, 2, 0), "nccl")) is model  # not asked for
    recipe.distributed.sync_batchnorm = True
    assert with_sync_batchnorm(model, recipe, DistContext()) is model  # one process: nothing to synchronise
    synced = with_sync_batchnorm(model, recipe, DistContext(Ranks(0, 2, 0), "nccl"))
    layers = bn_layers(synced)
    assert len(layers) == 20 and all(isinstance(m, torch.nn.SyncBatchNorm) for m in layers.values())
    assert all(isinstance(m, _BatchNorm) for m in layers.values())  # freezing still finds and sets them
    assert list(synced.state_dict()) == keys  # a checkpoint loads in one process's plain BatchNorm model


def test_the_plan_shows_the_rates_a_scaled_run_trains_with(image_folder):
    from engine.planning.plan import plan_run

    recipe = tiny_recipe(image_folder)
    plain = plan_run(recipe).phases[0].groups
    recipe.distributed.processes, recipe.distributed.lr_scaling = 4, "sqrt"
    scaled = plan_run(recipe).phases[0].groups
    assert scaled == {name: lr * 2 for name, lr in plain.items()} and plain


# --- resuming with another number of processes ---------------------------------------------------------------

def _state(batch: int) -> TrainingState:
    return TrainingState(phase=0, epoch=2, batch=batch, global_step=23, running=RunningSums(9.0, 30, 40, 2.0),
                         rng={"torch": torch.get_rng_state(), "ranks": ["r0", "r1"]})


def test_a_mid_epoch_checkpoint_of_another_world_size_restarts_its_epoch():
    state = _state(batch=3)
    note = adapt_state(state, {"world_size": 2}, DistContext())
    assert (state.epoch, state.batch, state.global_step, state.rng) == (2, 0, 20, None)
    assert state.running == RunningSums()
    assert "2 processes" in note and "1 process" in note and "epoch 3" in note and "restarts" in note


def test_an_epoch_end_checkpoint_of_another_world_size_continues_there():
    state = _state(batch=0)
    note = adapt_state(state, {"world_size": 4}, DistContext(Ranks(0, 2, 0), "gloo"))
    assert (state.epoch, state.batch, state.global_step) == (2, 0, 23) and "continues at epoch 3" in note


def test_the_same_world_size_resumes_each_rank_exactly():
    state = _state(batch=3)
    assert adapt_state(state, {"world_size": 2}, DistContext(Ranks(1, 2, 1), "gloo")) == ""
    assert (state.batch, state.global_step, state.rng) == (3, 23, "r1")  # rank 1's own random stream
    assert (state.running.loss_sum, state.running.correct, state.running.seen) == (4.5, 15, 20)  # an equal share


def test_a_per_batch_schedule_is_placed_at_the_restarted_epoch(image_folder):
    """A 2-process cosine schedule resumed by 1 process: its rate at the restarted epoch's first step is that of a
    fresh 1-process schedule at that step (not the 2-process step count's)."""
    from engine.train.distributed_model import adapt_resumed_phase

    recipe = tiny_recipe(image_folder, epochs=4)
    recipe.phases[0].schedule.name = "cosine"
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = build_optimizer([{"params": params, "lr": 0.1, "name": "head"}], recipe.phases[0].optimizer)
    two_steps = 5
    schedule = build_schedule(optimizer, recipe.phases[0].schedule, 4, two_steps)
    for _ in range(2 * two_steps + 2):  # two epochs and two steps of the 2-process run
        optimizer.step()
        schedule.step_batch()
    saved = {"optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(), "world_size": 2}

    class Setup:
        steps_per_epoch = 9
        dist = DistContext()

    Setup.recipe = recipe
    phase = type("Phase", (), {})()
    phase.setup, phase.config, phase.group_lrs = Setup, recipe.phases[0], {"head": 0.1}
    phase.optimizer = build_optimizer([{"params": params, "lr": 0.1, "name": "head"}], recipe.phases[0].optimizer)
    phase.schedule = build_schedule(phase.optimizer, recipe.phases[0].schedule, 4, 9)
    phase.schedule.load_state_dict(saved["scheduler"])
    phase.optimizer.load_state_dict(saved["optimizer"])
    adapt_resumed_phase(phase, saved, DistContext(), epoch_in_phase=2)
    fresh_opt = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1}],
                                recipe.phases[0].optimizer)
    fresh = build_schedule(fresh_opt, recipe.phases[0].schedule, 4, 9)
    for _ in range(18):
        fresh_opt.step()
        fresh.step_batch()
    assert phase.optimizer.param_groups[0]["lr"] == pytest.approx(fresh_opt.param_groups[0]["lr"], rel=1e-12)
    assert phase.optimizer.param_groups[0]["lr"] != pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-3)


def test_linear_scaling_rescales_a_resumed_phase_to_its_world_size(image_folder):
    from engine.train.distributed_model import adapt_resumed_phase

    recipe = tiny_recipe(image_folder)
    recipe.distributed.lr_scaling = "linear"
    phase = type("Phase", (), {})()
    phase.setup = type("Setup", (), {"recipe": recipe, "steps_per_epoch": 3})()
    # The phase's own rates come from the recipe at this run's factor (setup.py: 0.1 × 2 processes); only what the
    # checkpoint restored — the optimizer and the schedule — carries the old one (× 4).
    phase.config, phase.group_lrs = recipe.phases[0], {"head": 0.2}
    phase.optimizer = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.4, "name": "head"}],
                                      recipe.phases[0].optimizer)  # scaled for 4 processes
    phase.schedule = build_schedule(phase.optimizer, recipe.phases[0].schedule, 1, 3)
    adapt_resumed_phase(phase, {"world_size": 4}, DistContext(Ranks(0, 2, 0), "gloo"), 0)
    assert phase.optimizer.param_groups[0]["lr"] == pytest.approx(0.2) and phase.group_lrs == {"head": 0.2}


# --- agreeing on pause and stop, and the per-batch figures -------------------------------------------------------

class FakeGroup(DistContext):
    """A 2-rank context whose all-reduce combines this rank's values with a scripted other rank's."""

    def __init__(self, other: list[list[float]]):
        super().__init__(Ranks(0, 2, 0), "gloo")
        self.other = other
        self.calls = 0

    def all_reduce(self, values, op="sum"):
        theirs = self.other[min(self.calls, len(self.other) - 1)]
        self.calls += 1
        return [max(a, b) if op == "max" else a + b for a, b in zip(values, theirs)]


def test_a_stop_asked_of_any_rank_stops_them_all_at_the_same_batch():
    local = ev.RunControl()
    control = SyncedControl(local, FakeGroup([[0.0, 0.0], [1.0, 0.0]]))
    assert control.wait_while_paused() == 0.0 and not control.stop_requested
    assert control.wait_while_paused() == 0.0 and control.stop_requested  # the other rank asked
    assert not local.stop_requested  # this process's own control was never asked


def test_a_paused_run_meets_the_other_ranks_until_it_is_unpaused():
    local = ev.RunControl()
    group = FakeGroup([[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])  # the other rank is paused for two meetings
    control = SyncedControl(local, group)
    assert control.wait_while_paused() > 0 and group.calls == 3 and not control.stop_requested


def test_per_batch_figures_are_over_the_global_batch():
    group = FakeGroup([[0.5, 0.25]])
    event = ev.BatchFinished(epoch=0, batch=3, batches=10, global_step=4, train_loss=1.5, train_acc=0.75,
                             lrs={"head": 0.1}, images_per_s=100.0)
    merged = group.batch_event(event)
    assert (merged.train_loss, merged.train_acc, merged.images_per_s) == (1.0, 0.5, 200.0)


def test_an_error_on_rank_zero_reaches_every_rank():
    from engine.errors import BadInputError
    from engine.train.distributed import BadInputReportedOnMain

    class Follower(DistContext):
        def broadcast_object(self, obj):
            return ("bad_input", "the runs folder cannot be written")

    with pytest.raises(BadInputReportedOnMain, match="cannot be written") as info:
        Follower(Ranks(1, 2, 1), "gloo").on_main(lambda: pytest.fail("only rank 0 runs it"))
    assert isinstance(info.value, BadInputError)


# --- the launcher's channel --------------------------------------------------------------------------------------

def test_rank_zero_streams_every_event_and_its_exit_code(tmp_path):
    stream = EventStream(tmp_path)
    sent = [ev.DistributedStarted(world_size=2, backend="gloo", per_process_batch=8, global_batch=16, steps_per_epoch=4,
                                  lr_scaling="linear", lr_factor=2.0, sync_batchnorm=False, note="a note"),
            ev.DataPrepared(classes=["a", "b"], train_size=10, val_size=2, skipped=[("x.png", "truncated")]),
            ev.BatchFinished(epoch=0, batch=1, batches=4, global_step=2, train_loss=float("nan"), train_acc=0.5,
                             lrs={"head": 0.1}, images_per_s=12.0)]
    for event in sent:
        stream(event)
    stream.write_exit(3)
    stream.close()
    run = ProcessRun(["train", "x.json"], 2, channel=tmp_path)
    received = [run._parse(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert received[:2] == sent[:2] and math.isnan(received[2].train_loss) and received[3] is None
    assert run.exit.code == 3


def test_the_control_file_pauses_and_stops_rank_zero(tmp_path):
    control = ev.RunControl()
    run = ProcessRun(["train", "x.json"], 2, channel=tmp_path)
    watcher = ControlWatcher(tmp_path, control)
    run.pause()
    watcher.check()
    assert control.paused and not control.stop_requested
    run.unpause()
    watcher.check()
    assert not control.paused
    run.request_stop()
    watcher.check()
    assert control.stop_requested


def test_a_launcher_that_is_gone_stops_the_run(tmp_path):
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    control = ev.RunControl()
    ControlWatcher(tmp_path, control, launcher_pid=int(child.stdout)).check()
    assert control.stop_requested


def test_the_launch_command_is_torchrun_with_every_rank_logged(tmp_path):
    run = ProcessRun(["train", "r.json"], 3, channel=tmp_path)
    command = run.command
    assert command[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=3" in command
    assert "--redirects=3" in command and command[-2:] == ["train", "r.json"]
    env = run.environment()
    assert env["THAW_CHANNEL"] == str(tmp_path) and "RANK" not in env
    assert ProcessRun(["train", "r.json"], 1, channel=tmp_path).command[-3:-2][0].endswith("main.py")


def test_the_first_error_of_the_logs_is_the_one_said(tmp_path):
    for rank, text in [("0", "[rank 0] nothing\n"), ("1", "Traceback (most recent call last):\n  File x\n"
                                                          "RuntimeError: CUDA out of memory\n")]:
        folder = tmp_path / "job" / "attempt_0" / rank
        folder.mkdir(parents=True)
        (folder / "stderr.log").write_text(text)
    found = first_errors(tmp_path)
    assert "[rank 1] RuntimeError: CUDA out of memory" in found and "[rank 0] nothing" in found


def test_a_run_folder_records_how_many_processes_trained_it(tmp_path):
    (tmp_path / "recipe.json").write_text(json.dumps({"distributed": {"processes": 4}}))
    assert recorded_processes(tmp_path) == 4
    assert recorded_processes(tmp_path / "missing") == 1
