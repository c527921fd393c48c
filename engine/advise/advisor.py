"""The lesson's "when to use each strategy", decided on measurements of the user's data.

The lesson's guide: small dataset + similar domain → feature extraction; large dataset + different domain →
fine-tuning; very different domain → custom pre-training. Here "small", "different" and "very different" are
numbers measured by the probe (probe.py), and each threshold sits between measured cases of bench/advisor.py
(the three transfer tasks of bench/tasks.py, whose strategies were each trained to the end, bench/README.md
"Issue 20"; docs/RECIPES.md "The strategy advisor"):

  task                                   smallest class  domain shift  frozen CV acc  best measured strategy
  a  textures, similar domain                 32            0.043          76.9 %     FE 78.5 ≈ best 79.0
  b  line drawings, another domain            48            0.458          75.4 %     gradual 88.3 (FE 77.1)
  c  textures, more images a class           200            0.043          82.8 %     gradual 85.2 (FE 83.6)

The rules, in the order they are tried (the first that holds decides):
  1. frozen features already separate the classes (CV accuracy ≥ 95 %) → feature extraction: fine-tuning has
     at most a few points to win, for 10-80× the time (bench/README.md, wall times of issue 20);
  2. the domain is far (shift ≥ 0.15 nats: between 0.043 for a and c and 0.458 for b) and the smallest class
     has fewer than 10 images → domain pre-training: too few labels to move the backbone, and its features do
     not fit (pre-training is a run of its own, engine/pretrain/: the advice says how to start it, and Apply
     sets feature extraction, to be trained from the pre-trained weights);
  3. the domain is far and the smallest class has ≥ 1000 images → fine-tune every layer with discriminative
     rates (the lesson's rule; not measured here: at 48 a class gradual unfreezing beat it, 88.3 against 85.0);
  4. the domain is far → gradual unfreezing (task b);
  5. the smallest class has ≥ 100 training images → gradual unfreezing (task c at 200; a at 32 did not gain);
  6. otherwise → feature extraction (task a).
The smallest class counts, not the mean: with imbalance the rare classes are where fine-tuning overfits first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.advise.probe import Probe

FEATURE_EXTRACTION, FINE_TUNE, GRADUAL, PRETRAIN = ("feature_extraction", "fine_tune_all", "gradual_unfreezing",
                                                    "domain_pretraining")
# The recipe preset each recommendation applies (engine/planning/presets.py). Domain pre-training is a run of its
# own (engine/pretrain/), not a preset: feature extraction is what to train from its weights.
PRESETS = {FEATURE_EXTRACTION: "feature_extraction", FINE_TUNE: "fine_tune_all", GRADUAL: "gradual_unfreezing",
           PRETRAIN: "feature_extraction"}
TITLES = {FEATURE_EXTRACTION: "feature extraction", FINE_TUNE: "fine-tuning with discriminative learning rates",
          GRADUAL: "gradual unfreezing", PRETRAIN: "domain pre-training"}


@dataclass(frozen=True)
class AdvisorRules:
    """The thresholds of the rules (see the module's docstring for where each comes from)."""

    separated_accuracy: float = 0.95  # frozen features' CV accuracy above which fine-tuning is not worth it
    far_shift: float = 0.15  # nats: between the measured similar (0.043) and distant (0.458) tasks
    many_per_class: int = 100  # images in the smallest class: between a (32, FE best) and c (200, gradual best)
    large_per_class: int = 1000  # far domain with this many: every layer trains (the lesson's rule)
    few_per_class: int = 10  # far domain with fewer: pre-training on the domain, labels cannot move the backbone


@dataclass
class Advice:
    strategy: str
    preset: str  # what "apply" puts into the recipe
    reasons: list[str]
    measurements: dict
    rule: int  # which rule decided (1-6), for tests and the bench
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES[self.strategy]

    def to_dict(self) -> dict:
        return asdict(self)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def advise(probe: Probe, rules: AdvisorRules = AdvisorRules()) -> Advice:
    """The strategy the measurements call for, with its reasons in the lesson's words and the numbers."""
    smallest, classes = probe.smallest_class, len(probe.classes)
    cv = probe.cv_accuracy
    shift = probe.shift.score if probe.shift is not None else None
    far = shift is not None and shift >= rules.far_shift
    facts = [f"{classes} classes, {sum(probe.train_counts)} training images: {smallest} in the smallest class"
             + (f", {max(probe.train_counts)} in the largest (imbalance {probe.imbalance:.1f}×: the smallest class "
                "decides, it is where fine-tuning overfits first)" if probe.imbalance >= 1.5 else ""),
             (f"the frozen {probe.arch} features with a fitted head: {_pct(cv)} cross-validated accuracy "
              f"({probe.cv_folds}-fold, chance {_pct(probe.chance)}), {_pct(probe.val_accuracy)} on the "
              f"{probe.val_images} validation images") if cv is not None else
             (f"the frozen {probe.arch} features with a fitted head: {_pct(probe.val_accuracy)} on the "
              f"{probe.val_images} validation images (too few images a class to cross-validate)"),
             (f"domain shift {shift:.3f} nats (BatchNorm statistics of your images against the backbone's "
              f"pretraining images; {'far' if far else 'near'}: the line is {rules.far_shift})") if shift is not None
             else "domain shift not measured (the backbone has no BatchNorm layer): decided on the data's size"]
    if cv is not None and cv >= rules.separated_accuracy:
        rule, strategy = 1, FEATURE_EXTRACTION
        why = (f"The frozen features already separate your classes ({_pct(cv)} ≥ {_pct(rules.separated_accuracy)}): "
               "feature extraction, in seconds; fine-tuning has little left to win for 10-80× the time.")
    elif far and smallest < rules.few_per_class:
        rule, strategy = 2, PRETRAIN
        why = (f"Very different domain (shift {shift:.3f} ≥ {rules.far_shift}) with only {smallest} images in the "
               f"smallest class (< {rules.few_per_class}): custom pre-training on unlabelled images of your domain. "
               "Pre-training is a run of its own, not a recipe preset (no pre-training preset): `python main.py "
               "pretrain RECIPE --unlabeled DIR --out W.pth` or Model ▸ Domain pre-training…, then start the recipe "
               "from its weights (model.weights_file). Apply sets feature extraction, the safest with so few labels.")
    elif far and smallest >= rules.large_per_class:
        rule, strategy = 3, FINE_TUNE
        why = (f"Large dataset ({smallest} ≥ {rules.large_per_class} images in the smallest class) and a different "
               f"domain (shift {shift:.3f} ≥ {rules.far_shift}): fine-tune every layer with discriminative rates.")
    elif far:
        rule, strategy = 4, GRADUAL
        why = (f"Different domain (shift {shift:.3f} ≥ {rules.far_shift}): the pretrained features fit your images "
               f"poorly, so the backbone must adapt; with {smallest} images in the smallest class, unfreeze it "
               "gradually (head, then the last stage, then all) so the small data does not wreck it. On the "
               "line-drawing task (shift 0.458) this won 88.3 % against feature extraction's 77.1 %.")
    elif smallest >= rules.many_per_class:
        rule, strategy = 5, GRADUAL
        why = (f"Similar domain (shift {shift:.3f} < {rules.far_shift})" if shift is not None else "")
        why = (why + ", and " if why else "") + (
            f"enough images ({smallest} ≥ {rules.many_per_class} in the smallest class) to fine-tune without "
            "overfitting: gradual unfreezing. At 200 images a class it won 85.2 % against feature extraction's "
            "83.6 %.")
        why = why[0].upper() + why[1:]
    else:
        rule, strategy = 6, FEATURE_EXTRACTION
        why = (f"Small dataset ({smallest} < {rules.many_per_class} images in the smallest class)"
               + (f" and similar domain (shift {shift:.3f} < {rules.far_shift})" if shift is not None else "")
               + ": feature extraction. At 32 images a class it was within one validation image of the best "
                 "strategy (78.5 % against 79.0 %), in 12 s against 37-167 s.")
    measurements = probe.to_dict()
    measurements["thresholds"] = asdict(rules)
    return Advice(strategy, PRESETS[strategy], [why, *facts], measurements, rule, list(probe.notes))
