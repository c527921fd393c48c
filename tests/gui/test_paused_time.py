"""Paused time is not training time anywhere the studio shows a time or a rate: summary, metrics, the log, the
progress line's images/s and ETA, the Runs tab. Deterministic: while the engine holds the run (RunControl.holding)
every clock the run reads jumps an hour forward, so a pause that leaked into any figure would show as an hour."""

from __future__ import annotations

import json
import re
from pathlib import Path

from PySide6.QtCore import Qt

from engine.train import events as ev
from engine.train.runs import SUMMARY_FILE, read_metrics
from gui.document import RecipeDocument
from gui.main_window import MainWindow
from gui.panels.runs_panel import COLUMNS
from gui.widgets.formatting import duration_text
from gui.widgets.run_progress import RunProgress
from tests.helpers import jump_clocks, tiny_recipe

RUN_TIMEOUT_MS = 60_000
PAUSE_S = 3600.0
WALL = [c.title for c in COLUMNS].index("Training time")


def test_an_hour_of_pause_is_in_no_time_or_rate_the_studio_shows(qtbot, monkeypatch, image_folder, tmp_path,
                                                                  pause_at_first):
    recipe = tiny_recipe(image_folder, "lesson_feature_extraction", epochs=2, out=tmp_path / "runs")
    recipe.data.max_train_batches = 3
    window = MainWindow(RecipeDocument(recipe))
    window.training_panel.show_error_dialogs = False
    qtbot.addWidget(window)
    batches: list[ev.BatchFinished] = []
    window.controller.batches_finished.connect(batches.extend)
    pause_at_first(window.controller)
    window.startRunAction.trigger()
    worker = window.controller.worker
    qtbot.waitUntil(lambda: worker.control.holding, timeout=RUN_TIMEOUT_MS)

    jump_clocks(monkeypatch, PAUSE_S)  # the pause now lasts an hour by every clock
    with qtbot.waitSignal(window.controller.running_changed, check_params_cb=lambda running: not running,
                          timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(window.training_panel.pauseButton, Qt.MouseButton.LeftButton)  # Continue

    (run,) = window.runs_panel.selected_runs()
    summary = json.loads((Path(run.path) / SUMMARY_FILE).read_text())
    assert summary["status"] == "finished" and 0 < summary["wall_seconds"] < PAUSE_S / 10
    rows = read_metrics(run.path)
    assert len(rows) == 2 and all(0 < row["seconds"] < PAUSE_S / 10 for row in rows)
    assert rows[0]["images_per_s"] > 0.01 * rows[1]["images_per_s"]  # not an hour's worth of slowness
    assert summary["train_images_per_s"] > 0.01 * rows[1]["images_per_s"]
    (after_pause,) = [b for b in batches if (b.epoch, b.batch) == (0, 1)]  # held before it: it waited an hour
    assert after_pause.images_per_s > 1.0  # 8 images in an hour would be 0.002 images/s

    cell = window.runs_panel.model.data(window.runs_panel.model.index(
        window.runs_panel.model.row_of(run.path), WALL))
    assert cell == duration_text(summary["wall_seconds"]) and not cell.startswith("1:00:")
    assert duration_text(summary["wall_seconds"]) in window.runs_panel.comparison.runsSummaryLabel.text()
    log = window.training_panel.runLog.toPlainText()
    epoch_seconds = [float(s) for s in re.findall(r"\] .* · ([\d.]+) s, \d+ images/s", log)]
    assert len(epoch_seconds) == 2 and max(epoch_seconds) < PAUSE_S / 10
    assert f"in {duration_text(summary['wall_seconds'])}" in log and "1:00:" not in log


def test_the_eta_clock_stops_while_paused(qtbot, monkeypatch):
    progress = RunProgress()
    qtbot.addWidget(progress)
    progress.start(total_epochs=2, start_epoch=0)
    batch = ev.BatchFinished(epoch=0, batch=0, batches=10, global_step=1, train_loss=1.0, train_acc=0.5,
                             lrs={"head": 1e-3}, images_per_s=100.0)
    progress.set_paused(True)
    jump_clocks(monkeypatch, PAUSE_S)
    progress.set_paused(False)

    progress.show_batch(batch)  # 1/20 of the run done after (almost) no training time
    progress._redraw.flush()

    eta = progress.progressLabel.text().rsplit("ETA ", 1)[1]
    assert eta.startswith("0:0"), progress.progressLabel.text()  # seconds, not the 19 hours a counted pause gives
