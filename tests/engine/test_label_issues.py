"""Label issues: planted wrong labels rank at the top of the suspect list, a file copied from training into
validation is reported as a leak, a near copy as a near-duplicate, and what cannot be analysed says why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.errors import BadInputError
from engine.infer.label_issues import (
    LABEL_ISSUES_FILE,
    LabelIssueReport,
    duplicate_pairs,
    find_run_label_issues,
    identical_files,
    out_of_fold_probabilities,
    rank_label_issues,
    typical_examples,
)
from tests.evaluation_helpers import make_styled_folder, train_run

STYLES = {"cat": "cat", "dog": "dog", "fox": "fox", "owl": "owl"}
# (split, true class, file) → the class folder it is moved to: three wrong labels.
FLIPS = {("train", "cat", "cat_000.png"): "dog", ("train", "dog", "dog_001.png"): "fox",
         ("val", "fox", "fox_002.png"): "owl"}


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("noisy")
    data = root / "data"
    make_styled_folder(data, STYLES, per_class=12, seed=3, split="train")
    make_styled_folder(data, STYLES, per_class=4, seed=4, split="val")
    flipped = set()
    for (split, label, name), target in FLIPS.items():
        moved = data / split / target / f"was_{name}"
        shutil.move(data / split / label / name, moved)
        flipped.add(str(moved))
    leak = data / "val" / "owl" / "owl_copy.png"  # a training image, copied into validation
    shutil.copyfile(data / "train" / "owl" / "owl_005.png", leak)
    near = data / "train" / "cat" / "cat_007_brighter.png"  # the same picture, one grey level brighter
    pixels = np.asarray(Image.open(data / "train" / "cat" / "cat_007.png")).astype(np.int16) + 1
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(near)
    run = train_run(data, root / "runs", "feature_extraction", epochs=2)
    return run, data, flipped


def test_planted_wrong_labels_top_the_suspect_list(noisy_run):
    run, _, flipped = noisy_run
    report = find_run_label_issues(run)
    top = [s.path for s in report.suspects[:2 * len(flipped)]]
    assert flipped <= set(top), f"flipped {sorted(flipped)} not all in the top {len(top)}: {top}"
    by_path = {s.path: s for s in report.suspects}
    for (split, label, name), target in FLIPS.items():
        suspect = by_path[next(p for p in flipped if p.endswith(f"/{target}/was_{name}"))]
        assert (suspect.given, suspect.suggested, suspect.split) == (target, label, split)
        assert suspect.quality < 0.5 < suspect.suggested_probability
    assert report.images == 4 * 16 + 2 and report.folds == 5  # training and validation images together
    assert report.backbone == "start" and report.out_of_fold_accuracy > 0.9
    # An example of every class (what the studio shows beside a suspect): an image of that class, never a suspect.
    assert sorted(report.examples) == sorted(STYLES)
    suspected = {s.path for s in report.suspects}
    for name, path in report.examples.items():
        assert Path(path).parent.name == name and path not in suspected


def test_a_training_image_copied_into_validation_is_a_leak(noisy_run):
    run, data, _ = noisy_run
    report = find_run_label_issues(run)
    copy, original = str(data / "val" / "owl" / "owl_copy.png"), str(data / "train" / "owl" / "owl_005.png")
    leaks = [p for p in report.leaks if {p.a, p.b} == {copy, original}]
    assert len(leaks) == 1 and leaks[0].exact and leaks[0].crosses_split
    assert leaks[0].similarity == pytest.approx(1.0)
    assert all(p.crosses_split for p in report.leaks)
    near = [p for p in report.near_duplicates if {Path(p.a).name, Path(p.b).name} == {"cat_007.png",
                                                                                       "cat_007_brighter.png"}]
    assert len(near) == 1 and not near[0].exact and not near[0].crosses_split
    assert near[0].similarity > 1 - report.radius
    assert report.near_duplicate_total == len(report.near_duplicates) < 10  # the rule does not flag every pair
    saved = LabelIssueReport.load(run / LABEL_ISSUES_FILE)
    assert saved.to_dict() == report.to_dict()


def test_the_trained_backbone_can_be_asked_for(noisy_run):
    run, _, flipped = noisy_run
    report = find_run_label_issues(run, backbone="trained", write=False)
    assert report.backbone == "trained" and len(report.suspects) >= 1
    with pytest.raises(BadInputError, match="backbone 'pretrained' is not one of start, trained"):
        find_run_label_issues(run, backbone="pretrained")


def test_the_command_prints_and_writes_the_report(noisy_run, capsys):
    run, _, flipped = noisy_run
    (run / LABEL_ISSUES_FILE).unlink(missing_ok=True)
    assert main(["label-issues", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert flipped <= {s["path"] for s in result["suspects"]}
    assert (run / LABEL_ISSUES_FILE).is_file()
    assert main(["label-issues", str(run), "--limit", "2"]) == 0
    text = capsys.readouterr().out
    assert "suspect labels" in text and "looks like" in text and "train/validation leaks (1)" in text
    assert main(["label-issues", str(run), "--folds", "1"]) == 2
    assert "--folds must be at least 2" in capsys.readouterr().err


# --- the pieces, on arrays ---------------------------------------------------------------------------------------


def clusters(seed: int = 0, per_class: int = 20, classes: int = 3, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim)) * 4
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(0, 1, (len(labels), dim)), labels


def test_confident_learning_ranks_swapped_labels_first():
    features, labels = clusters()
    given = labels.copy()
    given[[3, 25, 47]] = [1, 2, 0]
    probabilities, folds = out_of_fold_probabilities(features, given, folds=5)
    assert folds == 5 and probabilities.shape == (60, 3)
    assert np.allclose(probabilities.sum(axis=1), 1)
    assert set(rank_label_issues(given, probabilities)[:3]) == {3, 25, 47}
    assert rank_label_issues(labels, out_of_fold_probabilities(features, labels)[0]) == []  # clean labels


def test_a_class_example_is_its_most_confident_image_that_is_not_suspected():
    labels = np.array([0, 0, 0, 1, 1])
    probabilities = np.array([[0.6, 0.4], [0.9, 0.1], [0.95, 0.05], [0.2, 0.8], [0.5, 0.5]])
    assert typical_examples(labels, probabilities) == {0: 2, 1: 3}
    assert typical_examples(labels, probabilities, excluded=[2]) == {0: 1, 1: 3}
    assert typical_examples(labels, probabilities, excluded=[3, 4]) == {0: 2}  # every image of class 1 suspected


def test_a_class_of_one_image_cannot_be_analysed():
    features, labels = clusters(per_class=5)
    labels[-5:-1] = 0  # class 2 keeps one image
    with pytest.raises(BadInputError, match="at least two images in every class"):
        out_of_fold_probabilities(features, labels)
    _, folds = out_of_fold_probabilities(features[:-1], np.r_[np.zeros(5, int), np.ones(6, int), [2, 2, 2]][:14])
    assert folds == 3  # never more folds than the smallest class has images


def test_near_duplicates_follow_the_median_rule():
    rng = np.random.default_rng(1)
    features = rng.normal(0, 1, (40, 8))
    features[10] = features[3] * 1.7  # same direction: cosine distance 0
    features[20] = features[5] + rng.normal(0, 0.01, 8)  # nearly the same
    features[30] = features[7] + rng.normal(0, 0.6, 8)  # related, not a duplicate
    pairs, radius = duplicate_pairs(features)
    found = {(i, j) for i, j, _, _ in pairs}
    assert (3, 10) in found and (5, 20) in found and (7, 30) not in found
    assert all(1 - sim < radius for _, _, sim, exact in pairs if not exact)
    far_but_identical, _ = duplicate_pairs(features, same_file=[(0, 1)])
    assert (0, 1, pytest.approx(float(features[0] @ features[1] / np.linalg.norm(features[0])
                                      / np.linalg.norm(features[1]))), True) in far_but_identical
    assert far_but_identical[0][:2] == (0, 1)  # identical files first


def test_identical_files_are_found_by_content(tmp_path):
    for name, content in (("a", b"one"), ("b", b"two"), ("c", b"one"), ("d", b"one")):
        (tmp_path / name).write_bytes(content)
    paths = [str(tmp_path / n) for n in "abcd"] + ["CIFAR10:val[3]"]  # an id that is no file is skipped
    assert identical_files(paths) == [(0, 2), (0, 3), (2, 3)]
