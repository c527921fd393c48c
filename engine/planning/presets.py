"""Strategies of the lesson as Recipe presets. A strategy is data (a list of phases), not a code path.

feature_extraction         freeze the backbone, fit the new head to convergence on cached features (L-BFGS, L2 by
                           cross-validation: engine/train/head_fit.py; 10 epochs of Adam 1e-3, StepLR 7 × 0.1 where
                           features cannot be cached)
lesson_feature_extraction  the lesson's feature extraction exactly: the head trains 10 epochs, Adam 1e-3, StepLR 7
fine_tune_all              everything trains, discriminative rates: early 1e-5, middle 1e-4, head 1e-3
gradual_unfreezing         head fitted to convergence → + layer4 (the last body stage) 5 epochs → all 10 epochs
extract_then_finetune      the lesson's CIFAR pipeline: feature extraction (the head fitted to convergence), then
                           5 epochs all layers at a third of the rates (head 3e-4, middle 3e-5, early 3e-6)
from_scratch               no pretrained weights, everything trains (the baseline to compare against)

Every phase after a fitted head keeps BatchNorm's pretrained statistics and warms its rates up over one epoch,
then follows a cosine, and if it still ends worse than the best epoch the run goes on from the best epoch's weights
(`_after_fitted_head`; why: docs/RECIPES.md, "Fine-tuning after a fitted head").

Why a fitted head: with cached features a step of the head costs microseconds, yet the lesson's schedule gives
it ~30 Adam steps before cutting the rate, and the frozen features' accuracy is left on the table (issue 11:
77.5 % best vs 94.5 % for a logistic regression on the same features). A phase's `head_fit` says which.
"""

from __future__ import annotations

from engine.planning.run_name import generated_name, name_follows
from engine.recipe import NO_WEIGHTS, DataConfig, ModelConfig, OptimizerConfig, PhaseConfig, Recipe, ScheduleConfig

STRATEGIES = {
    "feature_extraction": "Freeze the pretrained backbone; fit the new head to convergence on cached features "
                          "(L2 by cross-validation). Fast; small data.",
    "lesson_feature_extraction": "The lesson's feature extraction exactly: the head trains 10 epochs with Adam 1e-3 "
                                 "and StepLR(7, 0.1). For comparison.",
    "fine_tune_all": "Train every layer with discriminative learning rates (early 1e-5, middle 1e-4, head 1e-3).",
    "gradual_unfreezing": "The head fitted to convergence, then also the last stage, then everything, with graded "
                          "rates.",
    "extract_then_finetune": "Feature extraction first, then fine-tune all layers at lower rates (the lesson's "
                             "CIFAR pipeline).",
    "from_scratch": "Random initialisation, everything trains: the baseline transfer learning should beat.",
}


def _adam_step(step_size: int) -> tuple[OptimizerConfig, ScheduleConfig]:
    return OptimizerConfig(name="adam"), ScheduleConfig(name="step", step_size=step_size, gamma=0.1)


def _after_fitted_head(phase: PhaseConfig) -> PhaseConfig:
    """A phase that continues from a fitted head, made not to damage it (issue 20; docs/RECIPES.md, "Fine-tuning
    after a fitted head"): BatchNorm keeps the pretrained statistics (its scale and shift still train) and the
    rates warm up over the first epoch, then follow a cosine to zero. Only the BatchNorm layers of what the phase
    trains: a frozen_stats entry trains a layer's scale and shift, and the frozen stages must stay frozen."""
    phase.bn_modes = {path: "frozen_stats" for path in phase.trainable}
    phase.schedule = ScheduleConfig(name="cosine", warmup_epochs=1)
    phase.restore_best = True  # a phase that still ends worse hands on the best epoch's weights, said in the log
    return phase


def strategy_phases(strategy: str, epochs: int | None = None, last_stage: str | list[str] = "layer4"
                    ) -> list[PhaseConfig]:
    """The phases of a strategy. `epochs` scales the lesson's epoch counts to a total (None: the lesson's)."""
    tail = [last_stage] if isinstance(last_stage, str) else list(last_stage)
    if strategy in ("feature_extraction", "lesson_feature_extraction"):
        opt, sched = _adam_step(7)
        fit = "converge" if strategy == "feature_extraction" else "epochs"
        phases = [PhaseConfig("feature_extraction", 10, ["head"], lr=1e-3, optimizer=opt, schedule=sched,
                              head_fit=fit)]
    elif strategy == "fine_tune_all":
        opt, sched = _adam_step(7)
        phases = [PhaseConfig("fine_tune_all", 10, ["all"], lr_preset="discriminative", lr=1e-3, optimizer=opt,
                              schedule=sched)]
    elif strategy == "gradual_unfreezing":
        phases = [
            PhaseConfig("head", 5, ["head"], lr=1e-3, head_fit="converge"),
            _after_fitted_head(PhaseConfig(f"head+{tail[0]}", 5, [*tail, "head"], lr_preset="discriminative",
                                           lr=1e-3)),
            _after_fitted_head(PhaseConfig("all", 10, ["all"], lr_preset="discriminative", lr=1e-3)),
        ]
    elif strategy == "extract_then_finetune":
        opt, sched = _adam_step(7)
        phases = [
            PhaseConfig("feature_extraction", 10, ["head"], lr=1e-3, optimizer=opt, schedule=sched,
                        head_fit="converge"),
            # every layer thaws at once (no stage-by-stage start as in gradual unfreezing): a third of the rates,
            # as LP-FT's fine-tuning stage is slower than its probe; at 1e-3 one task of bench/fine_tuning.py ended
            # 4 validation images under its head, at 1e-4 another (docs/RECIPES.md)
            _after_fitted_head(PhaseConfig("fine_tune", 5, ["all"], lr_preset="discriminative", lr=3e-4,
                                           optimizer=OptimizerConfig(name="adam"))),
        ]
    elif strategy == "from_scratch":
        phases = [PhaseConfig("from_scratch", 20, ["all"], lr=1e-3, optimizer=OptimizerConfig(name="adam"),
                              schedule=ScheduleConfig(name="cosine", warmup_epochs=1))]
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if epochs is not None:
        _scale_epochs(phases, epochs)
    return phases


def _scale_epochs(phases: list[PhaseConfig], total: int) -> None:
    lesson_total = sum(p.epochs for p in phases)
    remaining = max(total, len(phases))
    for i, phase in enumerate(phases):
        left = len(phases) - i - 1
        share = max(1, round(phase.epochs * total / lesson_total)) if left else remaining
        share = min(share, remaining - left)
        phase.epochs = max(1, share)
        remaining -= phase.epochs
        if phase.schedule.name == "step":
            phase.schedule.step_size = max(1, min(phase.schedule.step_size, phase.epochs))


def make_recipe(strategy: str, arch: str = "resnet18", data_root: str = "", epochs: int | None = None,
                last_stage: str = "", name: str = "", **overrides) -> Recipe:
    """A complete recipe for a strategy: `apply_strategy` on a fresh recipe for `arch` and `data_root`, with the
    lesson's epochs scaled to `epochs` when given. `last_stage` is the stage the second gradual phase unfreezes
    (default: the model's last block by name, e.g. ResNet's layer4, with the neck after it; the alias
    "last_stage" where the stages cannot be named without building the model)."""
    recipe = Recipe(name=name or generated_name(arch, strategy), data=DataConfig(root=data_root),
                    model=ModelConfig(arch=arch))
    apply_strategy(recipe, strategy, last_stage)
    if epochs is not None:
        _scale_epochs(recipe.phases, epochs)
    for key, value in overrides.items():
        setattr(recipe, key, value)
    return recipe.validate()


def apply_strategy(recipe: Recipe, strategy: str, last_stage: str | list[str] = "") -> None:
    """Make `recipe` follow a strategy: the one function behind every place a strategy is chosen (the CLI's
    presets, the studio's Strategy menu, the Model tab's "Apply strategy", the Phases tab's gradual button).

    The rule: the phases become the strategy's, with the lesson's epochs (gradual unfreezing 5 / 5 / 10, feature
    extraction 10, ...) whatever the recipe had before — a strategy is its whole schedule, so one strategy gives one
    result wherever it is chosen; change the epochs afterwards. The weights follow what the strategy needs (none
    from scratch; the default pretrained ones again when leaving from-scratch without a weights file). The data,
    model, batch, device and precision settings stay. A generated run name follows (engine/planning/run_name.py),
    a typed one stays.
    """
    if not last_stage and strategy == "gradual_unfreezing":  # the one strategy that names a stage: the model's
        last_stage = tail_stages(recipe.model.arch)  # stages are known once it is built (torch, on demand)
    phases = strategy_phases(strategy, None, last_stage or "last_stage")  # raises when the strategy is unknown
    model = recipe.model
    with name_follows(recipe):
        recipe.strategy = strategy
        recipe.phases = phases
        if strategy == "from_scratch":
            model.weights, model.weights_file = "none", ""
        elif model.weights.strip().lower() in NO_WEIGHTS and not model.weights_file:
            model.weights = "DEFAULT"


def tail_stages(arch: str) -> list[str]:
    """The last block before the head and the neck after it, if any (ResNet: [layer4]; ViT: [block11, neck];
    VGG: [block4, neck]) — what the second phase of gradual unfreezing thaws."""
    from engine.model.build import stage_map_of

    stages = stage_map_of(arch)
    if stages is None or not stages.body:
        return ["last_stage"]
    names = [s.name for s in stages.body]
    blocks = [n for n in names if n != "neck"]
    return ([blocks[-1]] if blocks else []) + (["neck"] if "neck" in names else [])
