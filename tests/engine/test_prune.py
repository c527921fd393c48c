"""`prune`: a run's model loses the channels asked for (torch-pruning), keeps one output per class, recovers in a
short fine-tune and becomes a new run that predict, evaluate, export (every format, parity-checked) and the runs
table use; its structure travels in the checkpoint as plain values (weights_only); a model that lost too much is
refused leaving only the report; bad input, a missing torch-pruning and Ctrl-C are one line and nothing written."""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.cli.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_STOPPED
from engine.errors import BadInputError
from engine.infer import prune_run as prune_run_module
from engine.infer.export_formats import FORMATS as EXPORT_FORMATS
from engine.infer.export_metadata import FORMATS, SUFFIXES
from engine.infer.inference import Predictor
from engine.infer.prune_run import FAILED_SUFFIX, PruneCancelled, PruneRequest, prune_run
from engine.infer.recovery import RecoverySettings, fine_tune
from engine.infer.run_checkpoint import open_checkpoint, run_split, trained_model
from engine.model.build import build_model
from engine.model.pruned_structure import PRUNING_KEY, apply_structure
from engine.recipe import PhaseConfig
from engine.train.checkpoints import load_checkpoint, save_checkpoint
from engine.train.runs import RunRecord, checkpoint_path

AMOUNT = 0.5
FINE_TUNE_ALL = PhaseConfig("all", 2, ["all"], lr=1e-2)  # the run tests/engine/test_export.py exports


@pytest.fixture(scope="module")
def source_run(trained_runs, tmp_path_factory) -> Path:
    """tiny_resnet fine-tuned (every layer) on the generated folder: 3 classes, 6 validation images."""
    return trained_runs.copy(trained_runs.get("fine_tune_all", epochs=2, phases=[FINE_TUNE_ALL]),
                             tmp_path_factory.mktemp("prune-source"))


@pytest.fixture(scope="module")
def pruned(source_run, tmp_path_factory, cli) -> tuple[Path, dict]:
    """The CLI's prune of the source run at AMOUNT, one recovery epoch, into a runs folder of its own: (run, report)."""
    out = tmp_path_factory.mktemp("pruned-runs")
    code, stdout, stderr = cli("prune", source_run, "--amount", AMOUNT, "--epochs", 1, "--max-drop", 100,
                               "--device", "cpu", "--out", out, "--latency-runs", 3, "--json")
    assert code == EXIT_OK, stderr
    assert "prune: pruning 50 % of each layer's channels" in stderr and "fine-tune:" in stderr  # progress lines
    report = json.loads(stdout)
    runs = [p for p in out.iterdir()]
    assert runs == [Path(report["run_dir"])], runs  # the new run and nothing else (no temporary folder)
    return Path(report["run_dir"]), report


def _convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def test_the_pruned_run_lost_the_channels_asked_for_and_the_head_keeps_its_classes(source_run, pruned):
    run, report = pruned
    original = trained_model(open_checkpoint(source_run)).model
    model = trained_model(open_checkpoint(run)).model
    before, after = _convs(original), _convs(model)
    for name, conv in after.items():  # every conv keeps half its filters: the share asked for, layer by layer
        assert conv.out_channels == before[name].out_channels - int(AMOUNT * before[name].out_channels), name
    assert after["conv1"].in_channels == 3  # the image's channels stay
    params = [c["parameters"] for c in report["costs"]]
    assert params[0] == sum(p.numel() for p in original.parameters())
    assert params[1] == params[2] == sum(p.numel() for p in model.parameters())
    assert params[1] < (1 - AMOUNT) * params[0]  # a conv loses inputs and outputs: about (1 - amount)² remains
    head = model.fc
    assert head.out_features == 3 and head.weight.shape[0] == 3  # one output per class
    assert head.in_features == after["layer4.1.conv2"].out_channels < original.fc.in_features
    assert [c["label"] for c in report["costs"]] == ["original", "pruned", "pruned + fine-tuned (1 ep)"]
    assert report["costs"][2]["size_bytes"] < report["costs"][0]["size_bytes"]
    assert all(c["latency_ms"] > 0 for c in report["costs"])


def test_the_new_run_is_a_run_the_runs_table_reads_and_resume_refuses(pruned, cli):
    run, report = pruned
    record = RunRecord.load(run)
    assert record is not None and record.status == "finished" and record.arch == "tiny_resnet"
    assert record.name.endswith("-pruned50") and record.epochs_done == 1
    assert record.final_val_acc == pytest.approx(report["costs"][-1]["val_accuracy"])
    assert json.loads((run / "prune.json").read_text())["costs"] == report["costs"]
    code, _, stderr = cli("resume", run)
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1
    assert "pruned model" in stderr and "cannot be resumed" in stderr, stderr


def test_the_structure_round_trips_through_the_checkpoint_without_pickle(pruned):
    run, _ = pruned
    path = checkpoint_path(run, "best")
    raw = torch.load(path, weights_only=True)  # plain values and tensors only: nothing to unpickle

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return isinstance(value, (str, int, float, bool)) or value is None

    structure = raw[PRUNING_KEY]
    assert plain(structure) and structure["modules"]
    assert structure["modules"]["layer1.0.conv1"]["ints"]["out_channels"] == 4
    assert structure["modules"]["layer1.0.conv1"]["shapes"]["weight"] == [4, 4, 3, 3]
    checkpoint = open_checkpoint(run)
    fresh = build_model(checkpoint.recipe.model, 3, checkpoint.recipe.data, pretrained=False).model
    apply_structure(fresh, structure)
    fresh.load_state_dict(raw["model"])  # strict: every tensor has its pruned shape
    batch = torch.stack([run_split(checkpoint).val[i][0] for i in range(3)])
    predictor = Predictor.from_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(batch), predictor.logits(batch))


def test_a_checkpoint_without_its_structure_is_refused_in_one_line(pruned, image_folder, tmp_path, cli):
    run, _ = pruned
    state = load_checkpoint(checkpoint_path(run, "best"))
    del state[PRUNING_KEY]
    loose = save_checkpoint(tmp_path / "stripped.pt", state)
    code, _, stderr = cli("predict", loose, image_folder / "dog")
    assert code == EXIT_BAD_INPUT and "do not fit the architecture" in stderr, stderr


def test_predict_and_evaluate_use_the_pruned_model(pruned, image_folder, cli):
    run, report = pruned
    code, stdout, stderr = cli("evaluate", run, "--json")
    assert code == EXIT_OK, stderr
    evaluation = json.loads(stdout)
    assert evaluation["drift"] is None
    # the job measured this very model on the same split
    assert evaluation["metrics"]["accuracy"] == pytest.approx(report["costs"][-1]["val_accuracy"])
    code, stdout, stderr = cli("predict", run / "checkpoints" / "best.pt", image_folder / "dog", "--json")
    assert code == EXIT_OK, stderr
    predictions = [json.loads(line) for line in stdout.splitlines()]
    predictor = Predictor.from_checkpoint(checkpoint_path(run, "best"))
    for row in predictions[:4]:
        logits = predictor.logits(predictor.prepare(row["path"]).unsqueeze(0))
        assert row["top"][0]["class"] == predictor.class_names[int(logits.argmax())]


# The formats that run here (a Core ML package is checked only on macOS: tests/engine/test_export_coreml.py).
@pytest.mark.parametrize("fmt", [f for f in FORMATS if not EXPORT_FORMATS[f].unavailable_here()])
def test_every_export_format_of_the_pruned_run_passes_its_parity_check(pruned, fmt, tmp_path, cli):
    run, _ = pruned
    out = tmp_path / f"pruned{SUFFIXES[fmt]}"
    code, stdout, stderr = cli("export", run, "--format", fmt, "--out", out, "--latency-runs", 0, "--json")
    assert code == EXIT_OK, stderr
    result = json.loads(stdout)
    assert result["passed"] and out.exists()
    assert result["parity"][0]["top1_agreement"] == 1.0


def test_a_model_that_lost_more_than_max_drop_is_refused_leaving_only_the_report(source_run, tmp_path, cli):
    out = tmp_path / "runs"
    code, _, stderr = cli("prune", source_run, "--amount", 0.9, "--epochs", 0, "--max-drop", 0, "--device", "cpu",
                          "--out", out, "--latency-runs", 0)
    assert code == EXIT_FAILED, stderr
    assert "error: the pruned model was not kept: validation accuracy fell by" in stderr, stderr
    left = list(out.iterdir())
    assert len(left) == 1 and left[0].name.endswith(FAILED_SUFFIX) and left[0].is_file(), left
    report = json.loads(left[0].read_text())
    assert not report["kept"] and report["run_dir"] == "" and report["drop_points"] > 0
    assert "more than --max-drop 0" in report["failure"]


@pytest.mark.parametrize("amount", ["0", "1", "-0.1", "nan"])
def test_a_bad_amount_is_refused_in_one_line(source_run, amount, tmp_path, cli):
    code, _, stderr = cli("prune", source_run, "--amount", amount, "--out", tmp_path / "runs")
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1, stderr
    assert "--amount must be between 0 and 1" in stderr and amount in stderr
    assert not (tmp_path / "runs").exists()


def test_without_torch_pruning_one_line_names_the_package(source_run, tmp_path, monkeypatch, cli):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import and find_spec both see it missing
    code, _, stderr = cli("prune", source_run, "--out", tmp_path / "runs")
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1, stderr
    assert "'torch-pruning'" in stderr and "pip install" in stderr


def test_a_stop_during_the_fine_tune_writes_nothing(source_run, tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    stop, batches = [], []

    def listen(event) -> None:
        if event.stage == "fine-tune" and event.done:
            batches.append(event.done)
            stop.append(True)

    with pytest.raises(PruneCancelled):
        prune_run(PruneRequest(str(source_run), amount=AMOUNT, epochs=2, device="cpu", out=str(out),
                               latency_runs=0), [listen], lambda: bool(stop))
    assert batches == [1]  # heard before the next batch
    assert list(out.iterdir()) == []


def test_the_recovery_fine_tune_trains_every_layer(source_run):
    checkpoint = open_checkpoint(source_run)
    data = run_split(checkpoint)
    model = trained_model(checkpoint).model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    log = fine_tune(model, data.train, data.val, RecoverySettings(epochs=1, lr=1e-3, batch_size=8),
                    torch.device("cpu"))
    assert [e.epoch for e in log] == [1] and log[0].images == len(data.train) - len(data.train) % 8
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []  # every layer, not only the head
    assert not model.training


def test_ctrl_c_exits_3_and_writes_nothing(source_run, tmp_path, monkeypatch, cli):
    """A real SIGINT to this process during the fine-tune's first batch: the CLI's handler asks the job to stop."""
    real = prune_run_module.fine_tune

    def fine_tune(model, train_set, val_set, settings, device, should_stop, on_batch):
        def first_batch(*args) -> None:
            signal.raise_signal(signal.SIGINT)
            on_batch(*args)

        return real(model, train_set, val_set, settings, device, should_stop, first_batch)

    monkeypatch.setattr(prune_run_module, "fine_tune", fine_tune)
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "runs"
    code, _, stderr = cli("prune", source_run, "--amount", AMOUNT, "--epochs", 2, "--device", "cpu", "--out", out,
                          "--latency-runs", 0)
    assert code == EXIT_STOPPED, stderr
    assert "stopped: pruning stopped; nothing was written" in stderr
    assert list(out.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_nan_amount_is_refused_by_the_job_too():
    with pytest.raises(Exception, match="--amount"):
        PruneRequest("x", amount=math.nan).validate()


@pytest.mark.parametrize("tamper, phrase", [
    (lambda m: m.update({"layer9.conv": m["layer1.0.conv1"]}), "does not have"),
    (lambda m: m["layer1.0.conv1"].update(type="Linear"), "not what the structure says"),
    (lambda m: m["layer1.0.conv1"]["ints"].update(forward=1), "not a size Thaw sets"),
    (lambda m: m["layer1.0.conv1"]["ints"].update(out_channels=-4), "not a size"),
    (lambda m: m["layer1.0.conv1"]["shapes"].update(weight=[4, 4, 3]), "no usable shape"),
    (lambda m: m["layer1.0.conv1"]["shapes"].update(running_mean=[4]), "has no tensor"),
], ids=["unknown module", "other type", "not a size attribute", "negative size", "wrong rank", "no such tensor"])
def test_a_tampered_structure_is_refused_naming_the_entry(pruned, tamper, phrase, image_folder, tmp_path, cli):
    run, _ = pruned
    state = load_checkpoint(checkpoint_path(run, "best"))
    tamper(state[PRUNING_KEY]["modules"])
    loose = save_checkpoint(tmp_path / "tampered.pt", state)
    code, _, stderr = cli("predict", loose, image_folder / "dog")
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1, stderr
    assert "its pruned structure" in stderr and phrase in stderr, stderr


def test_the_network_views_refuse_a_pruned_run_in_one_line(pruned):
    """Filters and feature maps are set beside the pretrained model's channel by channel: a pruned layer's channel
    i is not the start's channel i (the studio's worker showed the start's order on fewer channels)."""
    from engine.infer.network_view import NetworkViews

    run, _ = pruned
    with pytest.raises(BadInputError, match="holds a pruned model"):
        NetworkViews(open_checkpoint(run, "best"))


@pytest.mark.parametrize(("drop", "said"), [(50.0, "fell by 50.00 points"), (-0.5, "rose by 0.50 points"),
                                            (0.0, "did not change")])
def test_the_accuracy_change_is_said_in_words_without_a_sign(drop, said):
    from engine.infer.prune_run import accuracy_change

    assert accuracy_change(drop) == said
