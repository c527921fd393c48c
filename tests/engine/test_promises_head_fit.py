"""The fitted head's cross-validation (engine/train/head_fit.py) is honest: every image is held out exactly once per
repeat, in folds of equal size and class balance, every view of an image in its image's fold; each repeat draws a
new shuffle and the reported scores pool them all; the strength chosen is the one the monitored metric prefers, in
its own direction (val_acc up, val_loss down)."""

from __future__ import annotations

import pytest
import torch

from engine.train.head_fit import FitSettings, fit_head, stratified_folds

GRID = (10.0, 1.0, 0.1, 0.01, 1e-3)


@pytest.mark.parametrize("sizes", [(3, 3, 3), (10, 7, 5), (4, 9, 2, 6), (2, 2), (11,)])
@pytest.mark.parametrize("folds", [2, 3, 5])
def test_every_image_is_in_one_fold_and_the_folds_are_balanced(sizes, folds):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]  # classes interleaved
    assignment = stratified_folds(labels, folds, torch.Generator().manual_seed(0))
    assert assignment.shape == labels.shape and int(assignment.min()) >= 0 and int(assignment.max()) < folds
    totals = torch.bincount(assignment, minlength=folds)
    assert int(totals.max() - totals.min()) <= 1, totals  # as many held-out images in every fold (± 1)
    for cls in range(len(sizes)):
        per_class = torch.bincount(assignment[labels == cls], minlength=folds)
        assert int(per_class.max() - per_class.min()) <= 1, (cls, per_class)  # each class spread evenly


def test_the_folds_are_a_shuffle_drawn_from_the_generator():
    labels = torch.arange(40) % 4
    draws = {tuple(stratified_folds(labels, 5, torch.Generator().manual_seed(s)).tolist()) for s in range(6)}
    assert len(draws) == 6  # another seed, other folds
    first = stratified_folds(labels, 5, torch.Generator().manual_seed(3))
    assert torch.equal(first, stratified_folds(labels, 5, torch.Generator().manual_seed(3)))


def _head(dim: int, classes: int) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(dim, classes)


def test_each_repeat_draws_its_own_shuffle_and_the_scores_pool_every_repeat():
    g = torch.Generator().manual_seed(11)
    x, labels = torch.randn(1, 60, 12, generator=g), torch.arange(60) % 3
    x[0, :, 0] += labels * 1.5  # some signal
    criterion = torch.nn.CrossEntropyLoss()

    def fit(generator: torch.Generator, repeats: int):
        return fit_head(_head(12, 3), x, labels, criterion, generator=generator,
                        settings=FitSettings(grid=GRID, repeats=repeats))

    both = fit(torch.Generator().manual_seed(5), 2)
    first = fit(torch.Generator().manual_seed(5), 1)
    after_first = torch.Generator().manual_seed(5)
    stratified_folds(labels, 5, after_first)  # the first repeat's shuffle, drawn: the generator is where the second
    second = fit(after_first, 1)              # repeat starts
    assert first.cv_loss != second.cv_loss  # the second repeat held out other images
    assert both.repeats == 2 and both.folds == 5
    assert both.cv_loss == pytest.approx([(a + b) / 2 for a, b in zip(first.cv_loss, second.cv_loss)], rel=1e-9)
    assert both.cv_acc == pytest.approx([(a + b) / 2 for a, b in zip(first.cv_acc, second.cv_acc)], rel=1e-9)


def test_every_view_of_an_image_is_held_out_with_it():
    """Random labels, three identical views of each image, more feature dimensions than images: a weak penalty
    memorises the training rows, so a held-out image whose other views were trained on would be recognised. Held
    out with all its views, it is a guess: chance-level accuracy at every strength."""
    g = torch.Generator().manual_seed(2)
    n, dim, classes = 60, 120, 3
    images = torch.randn(n, dim, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    views = images.expand(3, n, dim).clone()
    fit = fit_head(_head(dim, classes), views, labels, torch.nn.CrossEntropyLoss(),
                   generator=torch.Generator().manual_seed(0), settings=FitSettings(grid=(1e-4,), repeats=1))
    assert fit.rows == 3 * n and fit.folds == 5
    assert fit.cv_acc[0] < 0.6, fit.cv_acc  # memorised neighbours would give ~1.0


def _overlapping(seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(90) % 3
    centres = torch.randn(3, 40, generator=g) * 0.3
    x = centres[labels] + torch.randn(90, 40, generator=g)
    return x[None], labels


def test_the_strength_chosen_is_the_best_in_the_metrics_own_direction():
    """On these features the held-out accuracy peaks at the strongest penalty and the held-out loss in the middle
    of the grid: val_acc must choose the first, val_loss the second (the lowest loss, not the highest)."""
    x, labels = _overlapping(4)
    chosen = {}
    for metric in ("val_acc", "val_loss"):
        fit = fit_head(_head(40, 3), x, labels, torch.nn.CrossEntropyLoss(), metric,
                       generator=torch.Generator().manual_seed(0), settings=FitSettings(grid=GRID))
        if metric == "val_loss":
            best = min(range(len(GRID)), key=lambda i: (fit.cv_loss[i], i))
            assert fit.cv_loss[best] < min(fit.cv_loss[0], fit.cv_loss[-1])  # an inner minimum
        else:
            best = max(range(len(GRID)), key=lambda i: (fit.cv_acc[i], -i))
            assert fit.cv_acc[best] > max(fit.cv_acc[1:])
        assert fit.l2 == GRID[best], (metric, fit.cv_loss, fit.cv_acc)
        chosen[metric] = fit.l2
    assert chosen["val_acc"] != chosen["val_loss"]
