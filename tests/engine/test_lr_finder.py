"""The learning-rate range test: its suggestion lands within a decade of a rate known to be good, it stops when
the loss explodes, and it leaves the model, the optimizer, BatchNorm statistics and every RNG exactly as they were."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import torch

from engine.errors import BadInputError
from engine.train import events as ev
from engine.train.devices import DeviceSetup
from engine.train.lr_finder import (
    SweepSettings,
    find_lr,
    lr_range_test,
    optimizer_step,
    suggest,
    sweep_rates,
    valley_index,
)
from engine.train.phase import ActivePhase
from engine.train.setup import assemble
from tests.helpers import tiny_recipe

CPU = DeviceSetup(torch.device("cpu"), "fp32", False)


def softmax_regression(seed: int, scale: float, n: int = 600, dim: int = 16, classes: int = 3):
    """Features of a given scale and labels from a noisy linear teacher: SGD's good rate goes as 1 / scale²."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    teacher = torch.randn(dim, classes, generator=g)
    gumbel = -torch.log(-torch.log(torch.rand(n, classes, generator=g)))
    return x * scale, (x @ teacher + gumbel).argmax(1)


def batches(x, y, batch_size: int, seed: int):
    for epoch in range(10**6):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            yield x[order[start:start + batch_size]], y[order[start:start + batch_size]]


def known_good_rate(head, x, y) -> float:
    """The rate, among half-decades from 1e-6 to 10, whose 3 epochs of SGD reach the lowest training loss."""
    losses = {}
    for k in range(-12, 3):
        lr = 10 ** (k / 2)
        model = copy.deepcopy(head)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        stream = batches(x, y, 32, seed=7)
        for _ in range(3 * len(x) // 32):
            xb, yb = next(stream)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            value = float(torch.nn.functional.cross_entropy(model(x), y))
        losses[lr] = value if math.isfinite(value) else math.inf
    return min(losses, key=losses.get)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_suggestion_lands_within_a_decade_of_the_known_good_rate(seed):
    settings = SweepSettings()
    suggestions, goods = [], []
    for scale in (1.0, 10.0):  # the same problem, its good rate 100 times smaller
        x, y = softmax_regression(seed, scale)
        torch.manual_seed(seed)
        head = torch.nn.Linear(x.shape[1], 3)
        model = copy.deepcopy(head)
        optimizer = torch.optim.SGD([{"params": model.parameters(), "lr": 1.0, "name": "head"}], lr=1.0)
        step = optimizer_step(model, optimizer, batches(x, y, 32, seed), torch.nn.CrossEntropyLoss(), CPU)
        trace = sweep_rates(step, {"head": 1.0}, settings)
        _, suggestion, _, _ = suggest(trace.lrs, trace.losses, settings)
        good = known_good_rate(head, x, y)
        assert abs(math.log10(suggestion / good)) <= 1.0, (scale, suggestion, good)
        suggestions.append(suggestion)
        goods.append(good)
    assert suggestions[0] / suggestions[1] > 10  # it follows the problem, not a constant


def test_the_sweep_stops_when_the_loss_explodes_or_is_asked_to():
    settings = SweepSettings(iterations=100)
    rising = iter([1.0] * 30 + [1.0 + 0.5 * i for i in range(70)])
    trace = sweep_rates(lambda rates: next(rising), {"g": 1.0}, settings)
    assert trace.ended == "diverged" and 30 < len(trace.lrs) < 100
    values = iter([1.0, 0.9, float("nan")])
    trace = sweep_rates(lambda rates: next(values), {"g": 1.0}, settings)
    assert trace.ended == "diverged" and len(trace.losses) == 2  # the NaN is not recorded
    trace = sweep_rates(lambda rates: 1.0, {"g": 1.0}, settings, should_stop=lambda: True)
    assert (trace.ended, trace.lrs) == ("stopped", [])
    trace = sweep_rates(lambda rates: 1.0, {"g": 1.0}, settings)
    assert trace.ended == "end" and trace.lrs[0] == pytest.approx(1e-7) and trace.lrs[-1] == pytest.approx(10)


def test_every_swept_group_keeps_its_ratio_to_the_reference():
    seen = []
    sweep_rates(lambda rates: seen.append(dict(rates)) or 1.0, {"early": 0.01, "head": 1.0},
                SweepSettings(iterations=5))
    assert all(r["early"] == pytest.approx(0.01 * r["head"]) for r in seen)


def test_the_rules_read_the_curve_where_they_should():
    # fastai's valley: the longest descent is 5 → 0.5 (indices 0 to 6, n = 6): start + 2 + 1 = index 3.
    assert valley_index([5, 5, 4, 3, 2, 1, 0.5, 3, 9]) == 3
    lrs = [10.0 ** (i / 4) for i in range(60)]
    losses = [1.0] * 20 + [1.0 - 0.045 * i for i in range(20)] + [0.1 + 0.3 * i for i in range(20)]
    smoothed, steepest, valley, tenth = suggest(lrs, losses, SweepSettings(skip_start=0, skip_end=0))
    assert lrs[22] <= steepest <= lrs[37]  # inside the fall (indices 20–39), not in the flat start or the climb
    assert lrs[36] / 10 <= tenth <= lrs[41] / 10  # the minimum is where the fall ends (index 39)
    assert abs(smoothed.index(min(smoothed)) - 39) <= 2  # centred: the smoothing does not shift the minimum
    assert lrs[20] <= valley <= lrs[39]


def snapshot(phase: ActivePhase) -> dict:
    model = phase.setup.model
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            "modes": [m.training for m in model.modules()],
            "optimizer": copy.deepcopy(phase.optimizer.state_dict()),
            "rng": (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()),
            "epoch": phase.setup.data.train.epoch}


def assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, tensor in before["state"].items():
        assert torch.equal(tensor, after["state"][key]), key  # weights and BatchNorm statistics, bit for bit
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before["grads"], after["grads"]))
    assert before["modes"] == after["modes"]
    opt_a, opt_b = before["optimizer"], after["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for key, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][key][name])), (key, name)
    assert torch.equal(before["rng"][0], after["rng"][0])
    assert np.array_equal(before["rng"][1], after["rng"][1]) and before["rng"][2] == after["rng"][2]
    assert before["epoch"] == after["epoch"]


def test_a_sweep_on_images_leaves_everything_exactly_as_it_was(image_folder):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=1)  # every layer, BatchNorm statistics training
    setup = assemble(recipe, ev.EventBus())
    phase = ActivePhase.begin(setup, 0, "max")
    images, labels = next(iter(setup.loader(setup.data.train, list(range(8)))))
    phase.set_train_mode()
    loss = setup.criterion(phase.forward(images), labels)  # a real step first: Adam state and gradients exist
    loss.backward()
    phase.optimizer.step()
    setup.model.eval()
    setup.data.train.set_epoch(3)
    random.seed(5)
    before = snapshot(phase)
    sweep = lr_range_test(phase, settings=SweepSettings(end_lr=1e-2, iterations=12, skip_start=2, skip_end=1))
    assert len(sweep.lrs) >= 6 and len(set(sweep.losses)) > 1 and not sweep.on_features  # it trained
    assert sweep.swept == ["early", "middle", "head"] and sweep.group == "head"
    assert sweep.ratios == pytest.approx({"early": 0.01, "middle": 0.1, "head": 1.0})
    assert sweep.suggestion_for("early") == pytest.approx(sweep.suggestion * 0.01)
    assert_same(before, snapshot(phase))


def test_a_sweep_on_cached_features_sweeps_one_group_and_restores_it(image_folder):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1)
    sweep = find_lr(recipe, 0, "all")
    assert sweep.on_features and sweep.swept == ["all"] and sweep.suggestion is not None
    assert sweep.ended in ("end", "diverged") and sweep.lrs == sorted(sweep.lrs)
    setup = assemble(recipe, ev.EventBus())
    phase = ActivePhase.begin(setup, 0, "max")
    phase.cache_features(ev.EventBus(), lambda: False)
    before = snapshot(phase)
    lr_range_test(phase, "all")
    assert_same(before, snapshot(phase))


def test_a_phase_or_group_that_does_not_exist_is_bad_input(image_folder):
    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=3)
    with pytest.raises(BadInputError, match="phase 4 does not exist: the recipe has 3 phases"):
        find_lr(recipe, 3)
    with pytest.raises(BadInputError, match="no parameter group 'layer9'; its groups: middle, head"):
        find_lr(recipe, 1, "layer9", SweepSettings(iterations=5))
    with pytest.raises(BadInputError, match="start lr < end lr"):
        find_lr(recipe, 0, settings=SweepSettings(start_lr=1.0, end_lr=0.1))


def test_the_lr_find_command_prints_a_suggestion_or_exits_2(image_folder, tmp_path, cli):
    import json

    tiny_recipe(image_folder, "gradual_unfreezing", epochs=3).save(tmp_path / "r.json")
    out = cli("lr-find", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    assert "phase 1 'head'" in out.stdout and "on cached features" in out.stdout
    assert "Suggested lr:" in out.stdout and "steepest descent" in out.stdout and "valley" in out.stdout
    data = json.loads(cli("lr-find", tmp_path / "r.json", "--json", "--iterations", "40").stdout)
    assert data["rule"] == "steepest" and len(data["lrs"]) == len(data["losses"]) <= 40
    assert data["suggested_lrs"] == {"all": data["suggestion"]}
    out = cli("lr-find", tmp_path / "r.json", "--phase", "5")
    assert out.returncode == 2 and "phase 5 does not exist" in out.stderr and "Traceback" not in out.stderr
