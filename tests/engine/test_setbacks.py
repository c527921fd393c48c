"""A phase that makes the model worse is said (engine/train/setbacks.py): the rules, both kinds, the thresholds on
each side, the state a resume carries, and the causes read off the phase's settings."""

from __future__ import annotations

import pytest

from engine.train.setbacks import EpochFigures, PhaseContext, PhaseWatch, likely_causes


def context(**changes) -> PhaseContext:
    settings = dict(phase_name="head+layer4", previous_name="head", previous_fitted_head=True,
                    group_lrs={"middle": 1e-4, "head": 1e-3}, head_group="head", warmup=False,
                    bn_layers_training=4, batch_size=16)
    settings.update(changes)
    return PhaseContext(**settings)


def figures(phase: int, epoch: int, train_acc: float, val_acc: float, train_loss: float = 0.1,
            val_loss: float = 0.3) -> EpochFigures:
    return EpochFigures(phase, epoch, train_loss, train_acc, val_loss, val_acc)


def watch_after_head(val_size: int = 40, train_acc: float = 1.0, val_acc: float = 0.925) -> PhaseWatch:
    watch = PhaseWatch(val_size)
    assert watch.epoch_finished(figures(0, 0, train_acc, val_acc, train_loss=0.004), context(), True) == []
    return watch


def test_the_issue_s_collapse_is_said_with_its_figures_and_causes():
    watch = watch_after_head()
    said = watch.epoch_finished(figures(1, 1, 0.54, 0.875, train_loss=3.67), context(), False)
    assert [s.kind for s in said] == ["first_epoch"]
    s = said[0]
    assert (s.phase_index, s.phase_name, s.previous_name, s.epoch) == (1, "head+layer4", "head", 1)
    assert (s.train_acc_before, s.train_acc_after, s.val_acc_before, s.val_acc_after) == (1.0, 0.54, 0.925, 0.875)
    assert (s.train_loss_before, s.train_loss_after) == (0.004, 3.67)
    text = " ".join(s.causes)
    assert "warm-up" in text and "middle 0.0001" in text  # the body's rate, named
    assert "frozen_stats" in text and "batches of 16" in text
    assert "fitted to convergence in 'head'" in text
    assert "0.004 to 3.67" in text


@pytest.mark.parametrize(("fitted", "train_acc", "val_acc", "said"), [
    (False, 0.86, 0.925, False),  # 14 points of training accuracy: augmentation and train-mode BN cost that much
    (False, 0.85, 0.925, True),  # 15 points: TRAIN_DROP
    (True, 0.66, 0.925, False),  # after a fitted head (its accuracy on clean features): 34 points
    (True, 0.65, 0.925, True),  # 35 points: TRAIN_DROP_AFTER_FIT
    (True, 0.785, 0.935, False),  # bench task b: 100 -> 78.5 % while validation rose
    (True, 1.0, 0.875, False),  # 2 of 40 validation images (5 points): not more than two images
    (True, 1.0, 0.85, True),  # 3 images, 7.5 points
    (False, 1.0, 0.85, True),
    (True, 1.0, 0.90, False),  # 1 image
])
def test_first_epoch_thresholds(fitted, train_acc, val_acc, said):
    watch = watch_after_head()
    out = watch.epoch_finished(figures(1, 1, train_acc, val_acc), context(previous_fitted_head=fitted), False)
    assert bool(out) is said


def test_two_images_on_a_large_split_is_not_much_but_five_points_are():
    # 200 validation images: 2 images = 1 point (noise); 5 points = 10 images
    watch = watch_after_head(val_size=200, val_acc=0.90)
    assert watch.epoch_finished(figures(1, 1, 1.0, 0.89), context(), False) == []
    watch = watch_after_head(val_size=200, val_acc=0.90)
    assert len(watch.epoch_finished(figures(1, 1, 1.0, 0.85), context(), False)) == 1


def test_the_first_phase_and_later_epochs_of_a_phase_are_not_compared_with_the_previous_phase():
    watch = PhaseWatch(40)
    assert watch.epoch_finished(figures(0, 0, 0.2, 0.2), context(), False) == []
    assert watch.epoch_finished(figures(0, 1, 0.9, 0.9), context(), False) == []
    assert watch.epoch_finished(figures(0, 2, 0.3, 0.3), context(), True) == []  # phase 0 falls: not a boundary
    watch = watch_after_head()
    assert watch.epoch_finished(figures(1, 1, 0.95, 0.925), context(), False) == []
    # the second epoch of the phase falls far below the phase's start: the first-epoch rule does not apply again
    assert watch.epoch_finished(figures(1, 2, 0.40, 0.925), context(), False) == []


def test_a_phase_that_ends_below_its_start_is_said_at_its_last_epoch_with_its_best():
    watch = watch_after_head(val_acc=0.925)
    assert watch.epoch_finished(figures(1, 1, 0.95, 0.875), context(), False) == []  # two images down: quiet
    assert watch.epoch_finished(figures(1, 2, 0.95, 0.80), context(), False) == []  # not the last epoch yet
    said = watch.epoch_finished(figures(1, 3, 0.95, 0.85), context(), True)
    assert [s.kind for s in said] == ["whole_phase"]
    assert said[0].val_acc_before == 0.925 and said[0].val_acc_after == 0.875  # the phase's best, not its last


def test_a_phase_whose_best_is_within_one_image_of_its_start_is_not_said():
    watch = watch_after_head(val_acc=0.925)
    watch.epoch_finished(figures(1, 1, 0.95, 0.90), context(), False)
    assert watch.epoch_finished(figures(1, 2, 0.95, 0.80), context(), True) == []  # best 0.90 = start − 1 image


def test_the_next_phase_compares_with_where_the_previous_one_ended_not_with_the_first():
    watch = watch_after_head(val_acc=0.60)
    watch.epoch_finished(figures(1, 1, 0.95, 0.90), context(), True)
    said = watch.epoch_finished(figures(2, 2, 0.95, 0.80), context(phase_name="all"), False)
    assert said and said[0].val_acc_before == 0.90 and said[0].phase_name == "all"


def test_a_resumed_run_compares_with_the_same_start():
    watch = watch_after_head(val_acc=0.925)
    watch.epoch_finished(figures(1, 1, 0.95, 0.875), context(), False)
    resumed = PhaseWatch(40)
    resumed.load_state_dict(watch.state_dict())
    said = resumed.epoch_finished(figures(1, 2, 0.95, 0.85), context(), True)
    assert [s.kind for s in said] == ["whole_phase"] and said[0].val_acc_before == 0.925
    fresh = PhaseWatch(40)  # without the state the start would be unknown and nothing said
    fresh.load_state_dict({})
    assert fresh.epoch_finished(figures(1, 2, 0.95, 0.85), context(), True) == []


def test_causes_follow_the_phase_settings():
    start, now = figures(0, 0, 1.0, 0.9, train_loss=0.5), figures(1, 1, 0.5, 0.6, train_loss=0.9)
    calm = likely_causes(context(group_lrs={"middle": 1e-5, "head": 1e-4}, warmup=True, bn_layers_training=0,
                                 batch_size=64), start, now)
    assert len(calm) == 1 and calm[0].startswith("overfitting")
    warm = likely_causes(context(warmup=True, bn_layers_training=0), start, now)
    assert any("try a tenth" in c for c in warm) and not any("warm-up" in c for c in warm)
    big_batch = likely_causes(context(batch_size=64), start, now)
    assert not any("BatchNorm" in c for c in big_batch)
    no_fit = likely_causes(context(previous_fitted_head=False), start, now)
    assert not any("fitted to convergence" in c for c in no_fit)
