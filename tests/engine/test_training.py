"""The trainer's promises: frozen means bit-identical, groups get the rates asked for, phases change the trainable
set as planned, checkpoints predict what the model predicted, and resume reproduces the uninterrupted run."""

from __future__ import annotations

import math

import pytest
import torch

from engine.infer.inference import Predictor
from engine.model.build import build_model
from engine.recipe import GroupSpec, ScheduleConfig
from engine.train import events as ev
from engine.train.checkpoints import load_checkpoint
from engine.train.runs import checkpoint_path, read_metrics
from engine.train.trainer import Trainer, fit, resume
from tests.helpers import tiny_recipe


class Recorder:
    def __init__(self):
        self.events: list[ev.Event] = []

    def __call__(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


def initial_state(recipe, num_classes):
    """The model exactly as the trainer builds it before training (same seed → same new head)."""
    from engine.train.sampling import seed_everything

    seed_everything(recipe.seed)
    return {k: v.clone() for k, v in build_model(recipe.model, num_classes, recipe.data).model.state_dict().items()}


def test_feature_extraction_keeps_backbone_bit_identical(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=2, out=runs_dir)
    before = initial_state(recipe, 3)
    rec = Recorder()
    result = fit(recipe, [rec])
    assert result.status == "finished", result.error
    after = load_checkpoint(checkpoint_path(result.run_dir, "last"))["model"]
    backbone = [k for k in before if not k.startswith("fc.")]
    assert any("running_mean" in k for k in backbone)  # BN buffers are checked too
    for key in backbone:
        assert torch.equal(before[key], after[key]), f"{key} moved although frozen"
    assert not torch.equal(before["fc.weight"], after["fc.weight"]), "the head did not train"
    verified = rec.of(ev.FreezeVerified)
    # frozen params + BN running stats (tiny_resnet has resnet18's 60 backbone parameters and 20 BatchNorm layers)
    assert verified and verified[0].moved == [] and verified[0].checked_tensors == 60 + 2 * 20
    assert result.summary["phases"][0]["freeze_verified"] is True
    assert result.summary["phases"][0]["trainable_params"] == 32 * 3 + 3


def test_weights_name_is_recorded_exactly(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir)
    assert recipe.model.weights == "DEFAULT"
    result = fit(recipe)
    assert result.summary["weights"] == "TinyResNet_Weights.IMAGENET1K_V1"
    import json
    from pathlib import Path

    saved = json.loads((Path(result.run_dir) / "recipe.json").read_text())
    assert saved["model"]["weights"] == "TinyResNet_Weights.IMAGENET1K_V1"


def test_group_learning_rates_follow_recipe_through_a_step_schedule(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=2, out=runs_dir)
    phase = recipe.phases[0]
    phase.groups = [GroupSpec("early", ["stem", "layer1", "layer2"], 2e-5),
                    GroupSpec("late", ["layer3", "layer4"], 3e-4, weight_decay=0.01),
                    GroupSpec("head", ["head"], 4e-3)]
    phase.schedule = ScheduleConfig(name="step", step_size=1, gamma=0.5)
    rec = Recorder()
    result = fit(recipe, [rec])
    assert result.status == "finished", result.error
    epochs = rec.of(ev.EpochFinished)
    assert epochs[0].lrs == pytest.approx({"early": 2e-5, "late": 3e-4, "head": 4e-3})
    assert epochs[1].lrs == pytest.approx({"early": 1e-5, "late": 1.5e-4, "head": 2e-3})
    rows = read_metrics(result.run_dir)
    assert rows[1]["lr_late"] == pytest.approx(1.5e-4)
    ckpt = load_checkpoint(checkpoint_path(result.run_dir, "last"))
    decays = {g["name"]: g["weight_decay"] for g in ckpt["optimizer"]["param_groups"]}
    assert decays["late"] == 0.01 and decays["head"] == 0.0


def test_lesson_discriminative_rates(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=1, out=runs_dir)
    rec = Recorder()
    fit(recipe, [rec])
    assert rec.of(ev.PhaseStarted)[0].groups == pytest.approx({"early": 1e-5, "middle": 1e-4, "head": 1e-3})


def test_gradual_unfreezing_changes_trainable_set_at_each_boundary(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=3, out=runs_dir)
    assert [p.trainable for p in recipe.phases] == [["head"], ["layer4", "head"], ["all"]]
    rec = Recorder()
    result = fit(recipe, [rec])
    assert result.status == "finished", result.error
    phases = rec.of(ev.PhaseStarted)
    everything = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]  # the shallowest modules that train
    assert [p.trainable_modules for p in phases] == [["fc"], ["layer4", "fc"], everything]
    model = build_model(recipe.model, 3, recipe.data).model
    layer4 = sum(p.numel() for p in model.layer4.parameters())
    head = sum(p.numel() for p in model.fc.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert [p.trainable_params for p in phases] == [head, head + layer4, total]
    assert phases[1].groups == pytest.approx({"middle": 1e-4, "head": 1e-3})
    assert all(v.moved == [] for v in rec.of(ev.FreezeVerified))


def test_frozen_batchnorm_statistics_do_not_move_unless_asked(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir)
    recipe.phases[0].bn_modes = {"layer4": "train"}  # layer4's BN statistics adapt, its weights stay frozen
    before = initial_state(recipe, 3)
    result = fit(recipe)
    after = load_checkpoint(checkpoint_path(result.run_dir, "last"))["model"]
    assert torch.equal(before["layer1.0.bn1.running_mean"], after["layer1.0.bn1.running_mean"])
    assert not torch.equal(before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"])
    assert torch.equal(before["layer4.0.bn1.weight"], after["layer4.0.bn1.weight"])


def test_checkpoint_predicts_what_the_model_predicted(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir)
    result = fit(recipe)
    ckpt = checkpoint_path(result.run_dir, "best")
    predictor = Predictor.from_checkpoint(ckpt)
    images = sorted((image_folder / "dog").glob("*.png"))[:4]
    batch = torch.stack([predictor.prepare(p) for p in images])
    # The reference: a model built independently and loaded from the same state dict.
    state = load_checkpoint(ckpt)
    reference = build_model(recipe.model, 3, recipe.data, pretrained=False).model
    reference.load_state_dict(state["model"])
    reference.eval()
    with torch.no_grad():
        expected = torch.softmax(reference(batch), 1)
    results = predictor.predict(images + [image_folder / "cat" / "notes.jpg"], topk=3)
    for row, probs in zip(results, expected):
        assert row.ok
        best = int(probs.argmax())
        assert row.top[0][0] == state["class_names"][best]
        assert row.top[0][1] == pytest.approx(float(probs[best]), abs=1e-6)
        assert len(row.top) == 3 and sum(p for _, p in row.top) == pytest.approx(1.0, abs=1e-5)
    assert not results[-1].ok and "not an image" in results[-1].error


def test_unusable_files_are_skipped_and_reported(image_folder, runs_dir):
    rec = Recorder()
    result = fit(tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir), [rec])
    assert result.status == "finished"
    skipped = dict(rec.of(ev.DataPrepared)[0].skipped)
    assert {p.split("/")[-1] for p in skipped} == {"truncated.jpg", "notes.jpg"}
    assert "truncated" in " ".join(skipped.values())
    from pathlib import Path

    assert "notes.jpg" in (Path(result.run_dir) / "skipped_files.txt").read_text()
    assert result.summary["train_size"] + result.summary["val_size"] == 36


def metrics_of(run_dir):
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    return [{k: row[k] for k in keys} for row in read_metrics(run_dir)]


def assert_same_metrics(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for key in ra:
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), key


def stop_when(condition):
    control = ev.RunControl()

    def callback(event):
        if condition(event):
            control.request_stop()

    return control, callback


def test_resume_across_a_phase_boundary_reproduces_the_uninterrupted_run(image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=4, out=tmp_path / "a")
    recipe.phases[2].schedule = ScheduleConfig(name="cosine", warmup_epochs=0.5)
    full = fit(recipe)
    assert full.status == "finished", full.error

    recipe.output_dir = str(tmp_path / "b")
    # Stop right after phase 1 ends: the next phase has been set up but has not trained a batch.
    control, cb = stop_when(lambda e: isinstance(e, ev.EpochFinished) and e.epoch == 0)
    stopped = Trainer(recipe, [cb], control).fit()
    assert stopped.status == "stopped"
    ckpt = load_checkpoint(checkpoint_path(stopped.run_dir, "last"))
    assert ckpt["phase"] == 1 and ckpt["epoch"] == 1 and ckpt["batch"] == 0
    assert set(ckpt["freeze"]["trainable"]) == {n for n in ckpt["model"] if n.startswith(("layer4.", "fc.")) and
                                                 "running" not in n and "num_batches" not in n}
    rec = Recorder()
    resumed = resume(stopped.run_dir, [rec])
    assert resumed.status == "finished", resumed.error
    assert rec.of(ev.RunStarted)[0].resumed
    assert_same_metrics(metrics_of(full.run_dir), metrics_of(resumed.run_dir))
    a = load_checkpoint(checkpoint_path(full.run_dir, "last"))["model"]
    b = load_checkpoint(checkpoint_path(resumed.run_dir, "last"))["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, "extract_then_finetune", epochs=3, out=tmp_path / "a")
    full = fit(recipe)
    recipe.output_dir = str(tmp_path / "b")
    control, cb = stop_when(lambda e: isinstance(e, ev.BatchFinished) and e.epoch == 1 and e.batch == 1)
    stopped = Trainer(recipe, [cb], control).fit()
    assert stopped.status == "stopped"
    ckpt = load_checkpoint(checkpoint_path(stopped.run_dir, "last"))
    assert (ckpt["epoch"], ckpt["batch"]) == (1, 2)
    resumed = resume(stopped.run_dir)
    assert_same_metrics(metrics_of(full.run_dir), metrics_of(resumed.run_dir))


def test_nan_loss_fails_cleanly_and_keeps_the_last_checkpoint(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=runs_dir)
    holder = {}

    def poison(event):  # after epoch 1's checkpoint, corrupt the head so that epoch 2's loss is NaN
        if isinstance(event, ev.CheckpointSaved) and event.epoch == 1:
            with torch.no_grad():
                holder["trainer"].model.fc.weight.fill_(float("nan"))

    rec = Recorder()
    trainer = Trainer(recipe, [poison, rec])
    holder["trainer"] = trainer
    result = trainer.fit()
    assert result.status == "failed"
    assert "nan" in result.error.lower() and "learning rate" in result.error
    failed = rec.of(ev.RunFailed)[0]
    assert failed.checkpoint.endswith("last.pt")
    kept = load_checkpoint(failed.checkpoint)
    assert kept["epoch"] == 1 and torch.isfinite(kept["model"]["fc.weight"]).all()
    import json
    from pathlib import Path

    assert json.loads((Path(result.run_dir) / "summary.json").read_text())["status"] == "failed"


def test_early_stopping(image_folder, runs_dir):
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=6, out=runs_dir)
    recipe.phases[0].lr = 1e-9  # nothing improves after the first epoch
    recipe.early_stopping.patience = 2
    result = fit(recipe)
    assert result.status == "early_stopped"
    assert result.summary["epochs_done"] == 3


def test_pause_blocks_until_resumed(image_folder, runs_dir):
    import threading

    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=1, out=runs_dir)
    control = ev.RunControl()
    seen = []
    paused_at = threading.Event()

    def cb(event):
        if isinstance(event, ev.BatchFinished):
            seen.append(event.batch)
            if event.batch == 0:
                control.pause()
                paused_at.set()

    thread = threading.Thread(target=lambda: Trainer(recipe, [cb], control).fit())
    thread.start()
    assert paused_at.wait(30)
    thread.join(timeout=0.5)
    assert thread.is_alive() and seen == [0]  # paused: no further batch
    control.unpause()
    thread.join(timeout=60)
    assert not thread.is_alive() and len(seen) > 1


def test_a_bad_phase_fails_before_training(image_folder, runs_dir):
    from engine.errors import RecipeError

    recipe = tiny_recipe(image_folder, "gradual_unfreezing", epochs=3, out=runs_dir)
    recipe.phases[2].trainable = ["layer9"]
    with pytest.raises(RecipeError) as info:
        fit(recipe)
    assert info.value.field == "phases[2].trainable[0]"
    assert not any(runs_dir.iterdir())  # no half-made run folder


def test_unassigned_trainable_parameter_is_an_error(image_folder, runs_dir):
    from engine.errors import GroupAssignmentError

    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=1, out=runs_dir)
    recipe.phases[0].groups = [GroupSpec("head", ["head"], 1e-3),
                               GroupSpec("body", ["layer1", "layer2", "layer3", "layer4"], 1e-4)]
    with pytest.raises(GroupAssignmentError, match="conv1.weight"):
        fit(recipe)


def test_throughput_and_summary_fields(image_folder, runs_dir):
    result = fit(tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_dir))
    s = result.summary
    for key in ("best_val_acc", "final_val_acc", "wall_seconds", "train_images_per_s", "device", "weights", "phases"):
        assert s[key] is not None, key
    assert s["train_images_per_s"] > 0 and math.isfinite(s["wall_seconds"])
