"""The out-of-distribution score: the Mahalanobis distance is what its formula says, about 5 % of held-out
in-distribution inputs pass the threshold, a clearly foreign input is flagged by `predict` (text and JSON), and a
calibration made for other weights is ignored."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.infer.evaluation import write_run_evaluation
from engine.infer.inference import Predictor
from engine.infer.ood import calibration_path, fit_ood, head_digest, load_calibration
from engine.train.checkpoints import load_checkpoint, save_checkpoint
from engine.train.runs import checkpoint_path
from tests.evaluation_helpers import make_styled_folder, noise_image, train_run


def gaussian_classes(n: int, seed: int, dim: int = 6):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    centres = torch.tensor([[4.0] * dim, [-4.0] * dim])
    scale = torch.linspace(0.5, 2.0, dim)  # unequal variances: a Euclidean distance would be wrong
    return centres[labels] + torch.randn(n, dim, generator=g) * scale, labels


def test_the_distance_is_the_mahalanobis_distance_to_the_nearest_class():
    from sklearn.covariance import LedoitWolf

    train, labels = gaussian_classes(400, 0)
    val, _ = gaussian_classes(2000, 1)
    calibration = fit_ood(train, labels, val, "digest")
    x = train.double().numpy()
    y = labels.numpy()
    means = np.stack([x[y == c].mean(0) for c in (0, 1)])
    precision = np.linalg.inv(LedoitWolf(assume_centered=True).fit(x - means[y]).covariance_)
    probe = torch.tensor([[0.0] * 6, [4.0, 4.0, 4.0, 4.0, 4.0, 9.0], [-4.0] * 6])
    expected = [min((p - m) @ precision @ (p - m) for m in means) for p in probe.double().numpy()]
    assert calibration.distances(probe).numpy() == pytest.approx(expected, rel=1e-6)
    # The threshold is the 95th percentile of the validation distances: about 5 % of them lie above it.
    assert np.mean(calibration.scores(val) > 1.0) == pytest.approx(0.05, abs=0.002)
    fresh, _ = gaussian_classes(2000, 2)
    assert np.mean(calibration.scores(fresh) > 1.0) == pytest.approx(0.05, abs=0.02)
    assert calibration.scores(probe[:1])[0] > 5  # halfway between the classes: far from both
    with pytest.raises(ValueError, match="needs training and validation images"):
        fit_ood(train[:1], labels[:1], val, "digest")


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    data = make_styled_folder(root / "data", {"cat": "cat", "dog": "dog", "fox": "fox"}, per_class=12)
    run = train_run(data, root / "runs", "feature_extraction", epochs=3)
    write_run_evaluation(run)
    foreign = noise_image(root / "foreign" / "noise.png")
    return run, data, foreign


def test_predict_flags_a_clearly_foreign_input(calibrated_run):
    run, data, foreign = calibrated_run
    predictor = Predictor.from_checkpoint(checkpoint_path(run, "best"))
    assert predictor.ood is not None
    inside = sorted((data / "dog").glob("*.png")) + sorted((data / "fox").glob("*.png"))
    results = predictor.predict([foreign, *inside])
    assert results[0].unfamiliar is True and results[0].ood_score > 3
    flagged = [r for r in results[1:] if r.unfamiliar]
    assert len(flagged) <= 2, f"{len(flagged)} of {len(inside)} training images flagged"
    assert all(r.ood_score is not None and r.unfamiliar == (r.ood_score > 1) for r in results)
    assert results[0].to_dict()["unfamiliar"] is True


def test_the_command_line_shows_the_flag(calibrated_run, capsys):
    run, data, foreign = calibrated_run
    assert main(["predict", str(run), str(foreign), str(data / "cat" / "cat_000.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "unlike the training data" in lines[0] and "do not trust" in lines[0]
    assert "unlike the training data" not in lines[1]
    assert main(["predict", str(run), str(foreign), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["unfamiliar"] is True and row["ood_score"] > 1


def test_a_calibration_for_other_weights_is_ignored(calibrated_run, tmp_path, caplog, capsys):
    run, _, foreign = calibrated_run
    best = checkpoint_path(run, "best")
    state = load_checkpoint(best)
    state["model"]["fc.bias"] = state["model"]["fc.bias"] + 0.5  # other head weights
    other = save_checkpoint(tmp_path / "other.pt", state)
    shutil.copyfile(calibration_path(best), calibration_path(other))
    with caplog.at_level(logging.WARNING):
        predictor = Predictor.from_checkpoint(other)
    assert predictor.ood is None and "calibrated for other weights" in caplog.text
    result = predictor.predict([foreign])[0]
    assert result.ood_score is None and result.unfamiliar is None
    assert load_calibration(best, head_digest(state["model"], "fc")) is None
    assert load_calibration(best, head_digest(load_checkpoint(best)["model"], "fc")) is not None
    assert main(["predict", str(other), str(foreign)]) == 0
    assert "no out-of-distribution check for other.pt" in capsys.readouterr().err
