"""Issue 20: what happens at the boundary between a fitted head and the first phase that moves the backbone.

For each variant of a fine-tuning recipe (gradual unfreezing or extract-then-fine-tune) on a transfer task of
bench/transfer_task.py, one run, and at the boundary:
  - the fitted head's confidence: the mean largest softmax probability and the mean norm of the logits on the
    validation images, and the training loss the head reached;
  - the first batches of the next phase: their training loss (one line, batch by batch);
  - feature drift: the relative L2 change of the backbone's features of the validation images (the head's input)
    after the first epoch and at the end, against the features at the boundary;
  - training and validation accuracy at the end of every epoch, best and final.

    .venv/bin/python bench/phase_boundary.py [--task a] [--strategy gradual_unfreezing] [--epochs 10]
        [--batch-size 32] [--variants baseline,...] [--seeds 1]

Variants change the recipe only (every knob a user has): `--list` prints them. `baseline` is the presets as shipped
(with issue 20's remedies: frozen BatchNorm statistics after the head, warm-up into a cosine); `before_issue_20`
takes them out; the other variants add a remedy on top of the baseline.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import bench_dirs
from tasks import TASKS, prepare_task


def variants() -> dict[str, callable]:
    """name → a function that edits a recipe in place (the phases after the first)."""
    from engine.recipe import ScheduleConfig

    def after_first(recipe, edit):
        for phase in recipe.phases[1:]:
            edit(phase)

    def bn_frozen(recipe):  # only what the phase trains: a frozen_stats entry also trains the layer's scale/shift
        after_first(recipe, lambda p: p.bn_modes.update(dict.fromkeys(p.trainable, "frozen_stats")))

    def before_issue_20(recipe):
        """The presets as they were: BatchNorm statistics re-estimated, no warm-up (gradual: a constant rate;
        extract-then-fine-tune: StepLR(5)), the rates at 1e-3."""
        def edit(p):
            p.bn_modes = {}
            p.lr = 1e-3
            p.schedule = (ScheduleConfig(name="step", step_size=min(5, p.epochs), gamma=0.1)
                          if recipe.strategy == "extract_then_finetune" else ScheduleConfig())
        after_first(recipe, edit)

    def warmup(recipe):
        after_first(recipe, lambda p: setattr(p, "schedule", ScheduleConfig(name="cosine", warmup_epochs=1)))

    def head_lr_low(recipe):
        def edit(p):
            p.lr = p.lr / 10
        after_first(recipe, edit)

    def sgd(recipe):
        def edit(p):
            p.optimizer.name, p.optimizer.momentum = "sgd", 0.9
            p.lr = 1e-2
        after_first(recipe, edit)

    def views(recipe):
        recipe.data.feature_views = 4

    return {
        "baseline": lambda r: None,  # the presets as shipped
        "before_issue_20": before_issue_20,
        "views4": views,
        "cv_loss": lambda r: None,  # patched in run_variant: the L2 strength chosen by held-out loss
        "cv_loss+bn": bn_frozen,
        "cv_loss+bn+warmup": lambda r: (bn_frozen(r), warmup(r)),
        "views4+bn+warmup": lambda r: (views(r), bn_frozen(r), warmup(r)),
        "views4+cv_loss+bn+warmup": lambda r: (views(r), bn_frozen(r), warmup(r)),
        "bn_frozen_stats": bn_frozen,
        "warmup": warmup,
        "head_lr/10": head_lr_low,
        "sgd": sgd,
        "bn+warmup": lambda r: (bn_frozen(r), warmup(r)),
        "bn+warmup+lr/10": lambda r: (bn_frozen(r), warmup(r), head_lr_low(r)),
    }


class BoundaryProbe:
    """A subscriber that measures the model at the boundary of phase 1 (0-based) and at every later epoch end."""

    def __init__(self, trainer_ref: list):
        self.trainer_ref = trainer_ref
        self.boundary_features: torch.Tensor | None = None
        self.boundary_batches: list[float] = []
        self.drift: list[float] = []
        self.epochs: list[tuple[int, int, float, float]] = []
        self.confidence: tuple[float, float] | None = None
        self.phase = 0

    def _features_and_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        trainer = self.trainer_ref[0]
        setup = trainer.setup
        model = setup.model
        head = model.get_submodule(setup.built.head_path)
        captured: list[torch.Tensor] = []
        hook = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().flatten(1)))
        logits = []
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with torch.no_grad():
                for images, _labels in setup.loader(setup.data.val, list(range(len(setup.data.val)))):
                    logits.append(model(images))
        finally:
            hook.remove()
            for m, training in modes.items():
                m.training = training
        return torch.cat(captured), torch.cat(logits)

    def __call__(self, event) -> None:
        from engine.train import events as ev

        if isinstance(event, ev.PhaseStarted):
            self.phase = event.phase_index
            if event.phase_index == 1:
                features, logits = self._features_and_logits()
                self.boundary_features = features
                probs = logits.softmax(1)
                self.confidence = (float(probs.max(1).values.mean()), float(logits.norm(dim=1).mean()))
        elif isinstance(event, ev.BatchFinished) and self.phase == 1 and len(self.boundary_batches) < 12:
            self.boundary_batches.append(event.train_loss)
        elif isinstance(event, ev.EpochFinished):
            self.epochs.append((event.epoch, event.phase_index, event.train_acc, event.val_acc))
            if self.boundary_features is not None:
                features, _ = self._features_and_logits()
                base = self.boundary_features
                self.drift.append(float((features - base).norm() / base.norm()))


def run_variant(task: str, strategy: str, epochs: int, batch_size: int, name: str, edit, seed: int, runs) -> dict:
    from engine.planning.presets import make_recipe
    from engine.train.trainer import Trainer

    data = prepare_task(task)
    recipe = make_recipe(strategy, "resnet18", str(data), epochs=epochs)
    spec = TASKS[task]
    recipe.data.resize_size, recipe.data.crop_size = spec.resize, spec.crop
    recipe.batch_size, recipe.data.num_workers, recipe.output_dir = batch_size, 0, str(runs)
    recipe.data.feature_cache_mb = 0
    recipe.seed = seed
    edit(recipe)
    ref: list = []
    probe = BoundaryProbe(ref)
    from engine.train import head_fit

    original_best = head_fit._best
    if "cv_loss" in name:
        head_fit._best = lambda cv_loss, cv_acc, metric: original_best(cv_loss, cv_acc, "val_loss")
    trainer = Trainer(recipe.validate() if hasattr(recipe, "validate") else recipe, [probe])
    ref.append(trainer)
    started = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        head_fit._best = original_best
    seconds = time.perf_counter() - started
    s = result.summary
    return {"status": result.status, "seconds": seconds, "best": s.get("best_val_acc"), "final": s.get("final_val_acc"),
            "head_l2": (s["phases"][0].get("head_fit") or {}).get("l2"), "probe": probe, "error": result.error}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="a", choices=sorted(TASKS))
    parser.add_argument("--strategy", default="gradual_unfreezing")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", default="baseline")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    table = variants()
    if args.list:
        print("\n".join(table))
        return
    _base, runs = bench_dirs()
    print(f"task {args.task} ({TASKS[args.task].description}); {args.strategy}, {args.epochs} epochs, batch "
          f"{args.batch_size}; threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    for name in args.variants.split(","):
        for seed in range(args.seeds):
            out = run_variant(args.task, args.strategy, args.epochs, args.batch_size, name, table[name], seed, runs)
            p: BoundaryProbe = out["probe"]
            conf = p.confidence or (float("nan"), float("nan"))
            print(f"\n== {name} (seed {seed}): {out['status']} in {out['seconds']:.0f} s; best "
                  f"{100 * (out['best'] or 0):.1f} % final {100 * (out['final'] or 0):.1f} %; head l2 {out['head_l2']}"
                  f"{'; ' + out['error'] if out['error'] else ''}")
            print(f"   fitted head on val: mean max prob {conf[0]:.3f}, mean logit norm {conf[1]:.1f}")
            print("   phase-2 first batches' loss: " + " ".join(f"{v:.2f}" for v in p.boundary_batches))
            print("   epochs (phase: train/val acc): " + "  ".join(
                f"{e + 1}[{ph}] {100 * ta:.0f}/{100 * va:.0f}" for e, ph, ta, va in p.epochs))
            print("   feature drift from the boundary per epoch: " + " ".join(f"{d:.3f}" for d in p.drift))


if __name__ == "__main__":
    main()
