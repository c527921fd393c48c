"""Evaluation: the metrics are right (a hand computation), confusion shows where two classes are alike, each
image's record agrees with inference, the run's evaluation.json is written (also by the event subscriber), and
the CLI lists unreadable files and refuses folders of unknown classes with exit 2."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.errors import BadInputError
from engine.infer.evaluation import (
    EVALUATION_FILE,
    VALIDATION_SPLIT,
    Evaluation,
    RunEvaluator,
    evaluate_checkpoint,
    folder_samples,
    write_run_evaluation,
)
from engine.infer.fit_and_evaluate import fit_and_evaluate
from engine.infer.inference import Predictor
from engine.infer.metrics import classification_metrics
from engine.infer.ood import calibration_path
from engine.train import events as ev
from engine.train.runs import checkpoint_path
from engine.train.trainer import Trainer
from tests.evaluation_helpers import make_styled_folder, train_run
from tests.helpers import tiny_recipe

ROOT = Path(__file__).parents[2]
ALIKE = {"cat": "cat", "dog": "cat", "fox": "fox"}  # dog images are drawn exactly like cat images


# --- the numbers -------------------------------------------------------------------------------------------------


def hand_case():
    labels = np.array([0, 0, 0, 1, 1, 2])
    probabilities = np.array([[0.70, 0.20, 0.10],   # 0 → 0
                              [0.50, 0.40, 0.10],   # 0 → 0
                              [0.25, 0.60, 0.15],   # 0 → 1
                              [0.15, 0.80, 0.05],   # 1 → 1
                              [0.60, 0.30, 0.10],   # 1 → 0
                              [0.30, 0.50, 0.20]])  # 2 → 1 (class 2 is never predicted)
    return labels, probabilities


def test_metrics_equal_a_hand_computation():
    labels, probabilities = hand_case()
    losses = -np.log(probabilities[np.arange(6), labels])
    m = classification_metrics(labels, probabilities, ["a", "b", "c"], losses, top_k=2)
    assert m.confusion == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    assert m.accuracy == pytest.approx(3 / 6)
    assert m.top_k == 2 and m.top_k_accuracy == pytest.approx(5 / 6)  # only the c image misses its top 2
    a, b, c = m.per_class
    assert (a.precision, a.recall, a.f1, a.support, a.predicted) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3, 3))
    assert (b.precision, b.recall, b.support, b.predicted) == pytest.approx((1 / 3, 1 / 2, 2, 3))
    assert b.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))  # 0.4
    assert (c.precision, c.recall, c.f1, c.support, c.predicted) == (0.0, 0.0, 0.0, 1, 0)
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.4 + 0) / 3)
    assert m.weighted_f1 == pytest.approx((3 * 2 / 3 + 2 * 0.4) / 6)
    assert m.mean_loss == pytest.approx(losses.mean())
    assert m.most_confused(2) == [("a", "b", 1), ("b", "a", 1)]


def test_a_class_absent_from_the_data_does_not_count_in_macro_averages():
    labels, probabilities = hand_case()
    three = classification_metrics(labels, probabilities, ["a", "b", "c"])
    four = classification_metrics(labels, np.hstack([probabilities, np.zeros((6, 1))]), ["a", "b", "c", "d"])
    assert four.per_class[3].support == 0 and four.per_class[3].predicted == 0
    assert four.macro_f1 == pytest.approx(three.macro_f1)
    assert four.macro_recall == pytest.approx(three.macro_recall)
    with pytest.raises(ValueError, match="do not fit"):
        classification_metrics(labels, probabilities, ["a", "b"])


# --- a run on data where two classes are alike ---------------------------------------------------------------


@pytest.fixture(scope="module")
def alike_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("alike")
    data = make_styled_folder(root / "data", ALIKE, per_class=12, seed=0)
    run = train_run(data, root / "runs", "feature_extraction", epochs=3)
    test_folder = make_styled_folder(root / "test", ALIKE, per_class=12, seed=1)  # unseen images
    return run, test_folder


@pytest.fixture(scope="module")
def run_evaluation(alike_run):
    run, _ = alike_run
    return write_run_evaluation(run)


def test_two_alike_classes_show_in_the_confusion_matrix(alike_run):
    run, test_folder = alike_run
    evaluation = evaluate_checkpoint(run, test_folder)
    m = evaluation.metrics
    cat, dog, fox = 0, 1, 2
    assert evaluation.classes == ["cat", "dog", "fox"] and m.count == 36
    assert m.confusion[fox] == [0, 0, 12], "fox is unlike the others: every fox image is a fox"
    assert m.confusion[cat][fox] == m.confusion[dog][fox] == 0
    mixed = m.confusion[cat][dog] + m.confusion[dog][cat]
    assert mixed >= 4, f"cat and dog cannot be told apart, yet only {mixed} of 24 were confused"
    assert m.per_class[fox].f1 == 1.0
    assert max(m.per_class[cat].f1, m.per_class[dog].f1) < 0.9
    assert {m.most_confused(1)[0][:2]} <= {("cat", "dog"), ("dog", "cat")}
    # A cell's images are exactly the images behind its count.
    cell = evaluation.cell("cat", "dog")
    assert len(cell) == m.confusion[cat][dog]
    assert all(r.true_class == "cat" and r.predicted == "dog" and "/cat/" in r.path for r in cell)
    assert len(evaluation.misclassified()) == mixed


def test_each_image_record_agrees_with_inference(alike_run):
    run, test_folder = alike_run
    evaluation = evaluate_checkpoint(run, test_folder)
    predictor = Predictor.from_checkpoint(checkpoint_path(run, "best"))
    predictions = {p.path: p for p in predictor.predict([r.path for r in evaluation.images], topk=3)}
    for record in evaluation.images:
        predicted = predictions[record.path]
        assert record.predicted == predicted.top[0][0]
        assert [c for c, _ in record.top] == [c for c, _ in predicted.top]
        assert [p for _, p in record.top] == pytest.approx([p for _, p in predicted.top], abs=1e-5)
        assert record.true_class == Path(record.path).parent.name
        true_probability = dict(record.top)[record.true_class]  # three classes: the top 3 is every class
        assert record.loss == pytest.approx(-math.log(true_probability), rel=1e-4, abs=1e-6)
        assert record.confidence == record.top[0][1]
    assert evaluation.metrics.mean_loss == pytest.approx(np.mean([r.loss for r in evaluation.images]))
    worst = evaluation.top_losses(3)
    assert [r.loss for r in worst] == sorted((r.loss for r in evaluation.images), reverse=True)[:3]


def test_the_run_evaluation_is_written_with_calibration_and_drift(alike_run, run_evaluation):
    run, _ = alike_run
    saved = Evaluation.load(run / EVALUATION_FILE)
    assert saved.to_dict() == run_evaluation.to_dict()
    assert saved.source == VALIDATION_SPLIT and saved.checkpoint.endswith("best.pt")
    summary = json.loads((run / "summary.json").read_text())
    assert saved.metrics.count == summary["val_size"]
    assert saved.metrics.accuracy == pytest.approx(summary["best_val_acc"])  # the same images, the same model
    assert calibration_path(checkpoint_path(run, "best")).is_file()
    assert saved.ood is not None and saved.ood["method"] == "mahalanobis"
    assert all(r.ood_score is not None for r in saved.images)
    assert saved.drift is not None and saved.drift.relative_of("fc") > 0
    assert saved.drift.relative_of("layer1.0.conv1") == 0.0
    assert saved.notes == []



def test_a_finished_run_is_evaluated_once_and_every_subscriber_hears_it(image_folder, runs_dir):
    """fit_and_evaluate (the CLI's and the studio's one way to train): evaluation.json is written after RunFinished,
    and EvaluationWritten reaches every subscriber of the run's bus, last."""
    heard: list[list[ev.Event]] = [[], []]
    trainer = Trainer(tiny_recipe(image_folder, epochs=1, out=runs_dir), [heard[0].append, heard[1].append])
    result = fit_and_evaluate(trainer)
    assert result.status == "finished", result.error
    run = Path(result.run_dir)
    for events in heard:
        *_, finished, written = events
        assert isinstance(finished, ev.RunFinished) and isinstance(written, ev.EvaluationWritten)
        assert written.path == str(run / EVALUATION_FILE) and written.run_dir == str(run)
        assert sum(isinstance(e, ev.EvaluationWritten) for e in events) == 1
    saved = Evaluation.load(run / EVALUATION_FILE)
    assert saved.checkpoint.endswith("best.pt") and saved.source == VALIDATION_SPLIT
    assert heard[0][-1].count == saved.metrics.count and heard[0][-1].accuracy == saved.metrics.accuracy


def test_a_stopped_run_is_not_evaluated(image_folder, runs_dir):
    control = ev.RunControl()
    heard: list[ev.Event] = []

    def stop_at_once(event: ev.Event) -> None:
        heard.append(event)
        if isinstance(event, ev.PhaseStarted):
            control.request_stop()

    result = fit_and_evaluate(Trainer(tiny_recipe(image_folder, epochs=2, out=runs_dir), [stop_at_once], control))
    assert result.status == "stopped"
    assert not (Path(result.run_dir) / EVALUATION_FILE).exists()
    assert isinstance(heard[-1], ev.RunStopped) and not [e for e in heard if isinstance(e, ev.EvaluationWritten)]

def test_the_event_subscriber_evaluates_finished_runs_only(alike_run, tmp_path, caplog):
    run, _ = alike_run
    (run / EVALUATION_FILE).unlink(missing_ok=True)
    told = []
    evaluator = RunEvaluator(emit=told.append)
    evaluator(ev.RunStopped(run_dir=str(run), checkpoint="", epoch=1, batch=0, elapsed_seconds=1.0))
    assert not (run / EVALUATION_FILE).exists()
    evaluator(ev.RunFinished(run_dir=str(run), status="finished", epochs_done=2, best_epoch=2, best_val_acc=1.0,
                             final_val_acc=1.0, elapsed_seconds=1.0))
    assert (run / EVALUATION_FILE).is_file() and evaluator.written == [run / EVALUATION_FILE]
    saved = Evaluation.load(run / EVALUATION_FILE)
    (written,) = told
    assert isinstance(written, ev.EvaluationWritten) and written.path == str(run / EVALUATION_FILE)
    assert (written.count, written.accuracy) == (saved.metrics.count, saved.metrics.accuracy)
    (tmp_path / "empty-run").mkdir()
    with caplog.at_level(logging.WARNING):
        evaluator(ev.RunFinished(run_dir=str(tmp_path / "empty-run"), status="finished", epochs_done=1, best_epoch=1,
                                 best_val_acc=1.0, final_val_acc=1.0, elapsed_seconds=1.0))  # no checkpoint
    assert "not evaluated" in caplog.text and "empty-run" in caplog.text and len(told) == 1
    assert not (tmp_path / "empty-run" / EVALUATION_FILE).exists()


def test_last_checkpoint_and_bad_targets(alike_run, tmp_path):
    run, test_folder = alike_run
    last = evaluate_checkpoint(run, test_folder, "last")
    assert last.checkpoint.endswith("last.pt") and last.metrics.count == 36
    with pytest.raises(BadInputError, match="not a run folder"):
        evaluate_checkpoint(tmp_path, test_folder)
    with pytest.raises(BadInputError, match="does not exist"):
        evaluate_checkpoint(tmp_path / "nowhere", test_folder)
    with pytest.raises(BadInputError, match="not one of best, last"):
        evaluate_checkpoint(run, test_folder, "first")


def test_a_folder_may_hold_some_of_the_classes_and_empty_folders(tmp_path):
    folder = make_styled_folder(tmp_path / "some", {"fox": "fox", "cat": "cat"}, per_class=2)
    (folder / "zebra").mkdir()  # empty: not a class of the folder
    (folder / "fox" / "readme.txt").write_text("not an image")
    paths, labels, splits, skipped = folder_samples(folder, ["cat", "dog", "fox"], 3)
    assert [Path(p).parent.name for p in paths] == ["cat", "cat", "fox", "fox"]
    assert labels == [0, 0, 2, 2] and splits == [""] * 4  # indices of the checkpoint's classes
    assert [(Path(p).name, reason) for p, reason in skipped] == [("readme.txt", "not an image file (extension .txt)")]
    (folder / "zebra" / "z.png").write_bytes((folder / "cat" / "cat_000.png").read_bytes())
    with pytest.raises(BadInputError, match=r"class folder 'zebra' is not among the checkpoint's classes \(cat, dog"):
        folder_samples(folder, ["cat", "dog", "fox"], 3)


# --- the command line ------------------------------------------------------------------------------------------


def test_evaluate_lists_unreadable_files_and_evaluates_the_rest(alike_run, image_folder, tmp_path, capsys, cli):
    run, test_folder = alike_run
    table = tmp_path / "images.csv"
    code, stdout, stderr = cli("evaluate", run, image_folder, "--json", "--csv", table)
    assert code == 0, stderr
    result = json.loads(stdout)
    skipped = {Path(s["path"]).name: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"truncated.jpg", "notes.jpg"}
    assert "truncated" in skipped["truncated.jpg"] and "not an image" in skipped["notes.jpg"]
    assert result["metrics"]["count"] == len(result["images"]) == 36  # every readable image was evaluated
    assert sum(result["metrics"]["confusion"][0]) == 12
    assert "truncated.jpg" in stderr and "notes.jpg" in stderr
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 38
    assert {r["path"] for r in rows[:36]} == {r["path"] for r in result["images"]}
    assert [Path(r["path"]).name for r in rows[36:]] == [Path(s["path"]).name for s in result["skipped"]]
    assert all(r["error"] for r in rows[36:]) and not any(r["error"] for r in rows[:36])
    assert Evaluation.from_dict(result).to_dict() == result
    evaluation = evaluate_checkpoint(run, test_folder)  # where cat and dog are confused
    wrong = evaluation.write_csv(tmp_path / "wrong.csv", evaluation.misclassified())  # for relabelling
    with wrong.open(newline="") as f:
        wrong_rows = list(csv.DictReader(f))
    assert wrong_rows and [r["path"] for r in wrong_rows] == [r.path for r in evaluation.misclassified()]
    assert all(r["correct"] == "False" and r["true_class"] != r["predicted"] for r in wrong_rows)
    code, stdout, _ = cli("evaluate", run, image_folder)  # the text report names them too
    assert code == 0
    assert "files not evaluated (2)" in stdout and "confusion matrix" in stdout


def test_evaluate_exits_2_naming_classes_the_checkpoint_does_not_know(alike_run, tmp_path, capsys, cli):
    run, _ = alike_run
    folder = make_styled_folder(tmp_path / "other", {"cat": "cat", "owl": "owl", "yak": "fox"}, per_class=2)
    out = cli("evaluate", run, folder)  # main.py's own error handling: tests/engine/test_hostile_cli.py
    assert out.returncode == 2
    assert "'owl', 'yak'" in out.stderr and "cat, dog, fox" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    code, _, stderr = cli("evaluate", run, tmp_path / "missing")
    assert code == 2 and "missing" in stderr
    code, _, stderr = cli("evaluate", tmp_path, folder)
    assert code == 2 and "not a run folder" in stderr


def test_evaluate_on_the_validation_split_refreshes_evaluation_json(alike_run, capsys, cli):
    run, _ = alike_run
    (run / EVALUATION_FILE).unlink(missing_ok=True)
    code, stdout, stderr = cli("evaluate", run)
    assert code == 0, stderr
    assert "on the validation split" in stdout and "weight drift" in stdout
    assert Evaluation.load(run / EVALUATION_FILE).source == VALIDATION_SPLIT
    code, stdout, _ = cli("evaluate", run, "--checkpoint", "last")  # reported, evaluation.json untouched
    assert code == 0 and "last.pt" in stdout
    assert Evaluation.load(run / EVALUATION_FILE).checkpoint.endswith("best.pt")
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert "evaluate" in help_text and "label-issues" in help_text
