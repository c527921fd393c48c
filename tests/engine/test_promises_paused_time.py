"""Paused time is not training time, in every kind of phase: a head fitted by L-BFGS (paused between two chunks of
the fit), a head trained in epochs on cached features and a model trained on image batches (paused between two
batches). Deterministic and without a second thread: the run's RunControl is paused by a subscriber, and its pause
"lasts an hour" — every clock the engine reads jumps an hour forward while the engine holds the run — so a pause
that leaked into any figure (epoch seconds, images/s, the fit's seconds, the run's time) shows as an hour.

The studio's side of the same promise (the log, the progress line's ETA, the Runs tab) is tests/gui/test_paused_time.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.train import events as ev
from engine.train.runs import SUMMARY_FILE, read_metrics
from engine.train.trainer import Trainer
from tests.helpers import jump_clocks, tiny_recipe

PAUSE_S = 3600.0


class AnHourLongPause(ev.RunControl):
    """A RunControl whose pause, once the engine holds the run, lasts an hour by every clock and then ends (the
    user pressed Continue): the engine's own accounting of the pause is what is under test."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.monkeypatch = monkeypatch
        self.pauses = 0

    def wait_while_paused(self) -> float:
        if not self.paused:
            return super().wait_while_paused()
        started = time.perf_counter()
        jump_clocks(self.monkeypatch, PAUSE_S)
        self.pauses += 1
        self.unpause()
        return time.perf_counter() - started


# (strategy, the event after which the run is paused, the kind of phase as the epoch reports it)
PHASE_KINDS = {
    "fitted head": ("feature_extraction", ev.HeadFitProgressed, "lbfgs"),
    "cached-feature epochs": ("lesson_feature_extraction", ev.BatchFinished, "batches"),
    "image epochs": ("fine_tune_all", ev.BatchFinished, "batches"),
}


@pytest.mark.parametrize("kind", list(PHASE_KINDS))
def test_an_hour_of_pause_is_in_no_time_or_rate_of_any_kind_of_phase(kind, image_folder, tmp_path, monkeypatch,
                                                                    recorder):
    strategy, pause_after, fit = PHASE_KINDS[kind]
    recipe = tiny_recipe(image_folder, strategy, epochs=2, out=tmp_path / "runs",
                         head_fit="converge" if fit == "lbfgs" else "epochs")
    recipe.data.max_train_batches = 3
    control = AnHourLongPause(monkeypatch)

    def pause_once(event: ev.Event) -> None:
        if isinstance(event, pause_after) and not control.pauses and not control.paused:
            control.pause()

    result = Trainer(recipe, [recorder, pause_once], control).fit()
    assert result.status == "finished", result.error
    assert control.pauses == 1  # the engine reached the pause (between two batches, or two chunks of the fit)

    epochs = recorder.of(ev.EpochFinished)
    assert epochs[0].fit == fit
    assert all(0 < e.seconds < PAUSE_S / 10 for e in epochs), [e.seconds for e in epochs]
    assert all(e.elapsed_seconds < PAUSE_S / 10 for e in epochs)
    assert epochs[0].images_per_s > 1.0  # images in an hour would be < 0.1 images/s
    (finished,) = recorder.of(ev.RunFinished)
    assert 0 < finished.elapsed_seconds < PAUSE_S / 10
    if kind == "fitted head":
        (fitted,) = recorder.of(ev.HeadFitted)
        assert 0 < fitted.seconds < PAUSE_S / 10
    else:
        assert all(b.images_per_s > 1.0 for b in recorder.of(ev.BatchFinished))

    run = Path(result.run_dir)
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert 0 < summary["wall_seconds"] < PAUSE_S / 10
    assert summary["train_images_per_s"] > 1.0
    assert all(0 < row["seconds"] < PAUSE_S / 10 for row in read_metrics(run))
