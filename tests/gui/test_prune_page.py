"""The Export dialog's Prune page (issue 25): a real run pruned in the studio's job, the original and the pruned
model side by side, a new run kept within the accuracy limit and refused beyond it (only its report written), Stop
and closing the dialog mid-job writing nothing and leaving no thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from engine.infer import prune_run as prune_run_module
from engine.infer.prune_run import FAILED_SUFFIX, REPORT_FILE
from engine.recipe import PhaseConfig
from gui.document import RecipeDocument
from gui.main_window import MainWindow
from gui.panels.export_dialog import ExportDialog
from gui.panels.prune_page import DEFAULTS, KEPT_COLOUR, REFUSED_COLOUR
from tests.gui.running import still_running
from tests.helpers import tiny_recipe

WAIT_MS = 180_000
FINE_TUNE_ALL = PhaseConfig("all", 2, ["all"], lr=1e-2)  # the run tests/engine/test_prune.py prunes


@pytest.fixture
def source_run(trained_runs, tmp_path) -> Path:
    """tiny_resnet fine-tuned on the generated folder (3 classes, 6 validation images), in a runs folder of its own:
    a kept pruned run is written beside it."""
    return trained_runs.copy(trained_runs.get("fine_tune_all", epochs=2, phases=[FINE_TUNE_ALL]), tmp_path / "runs")


@pytest.fixture
def dialog(qtbot, source_run):
    dialog = ExportDialog(str(source_run))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.exportTabs.setCurrentWidget(dialog.prunePage)
    yield dialog
    dialog.shutdown()


def others(source_run: Path) -> list[Path]:
    return sorted(p for p in source_run.parent.iterdir() if p != source_run)


def test_the_page_starts_from_the_clis_defaults_and_every_control_says_what_it_does(dialog):
    page = dialog.prunePage
    request = page.request()
    assert (request.amount, request.epochs, request.max_drop, request.checkpoint) == (
        DEFAULTS.amount, DEFAULTS.epochs, DEFAULTS.max_drop, "best")
    for name in ("pruneCheckpointCombo", "pruneAmountSpin", "pruneEpochsSpin", "pruneMaxDropSpin",
                 "pruneStartButton", "pruneResultsTable"):
        widget = getattr(page, name)
        assert widget.objectName() == name and widget.toolTip()
    assert page.pruneProgress.cancelButton.objectName() == "pruneCancelButton"
    assert page.pruneProgress.isHidden()  # the progress line shows only while the job waits or runs


def test_a_pruned_model_within_the_limit_is_kept_as_a_new_run_with_its_costs_beside_the_original(qtbot, dialog,
                                                                                               source_run):
    page = dialog.prunePage
    page.pruneAmountSpin.setValue(50)
    page.pruneEpochsSpin.setValue(1)
    page.pruneMaxDropSpin.setValue(100)
    with qtbot.waitSignal(page.run_pruned, timeout=WAIT_MS) as kept:
        qtbot.mouseClick(page.pruneStartButton, Qt.MouseButton.LeftButton)
        assert page.running and page.pruneProgress.cancelButton.isEnabled() and not page.pruneStartButton.isEnabled()
    new_run = Path(kept.args[0])
    assert others(source_run) == [new_run] and (new_run / REPORT_FILE).is_file()
    report = json.loads((new_run / REPORT_FILE).read_text())
    assert report["kept"] and report["amount"] == 0.5 and report["epochs"] == 1
    table = page.pruneResultsTable  # original, pruned, pruned + fine-tuned: the engine's rows, as the CLI prints
    assert [table.item(row, 0).text() for row in range(table.rowCount())] == [
        "original", "pruned", "pruned + fine-tuned (1 ep)"] == [cost["label"] for cost in report["costs"]]
    original, pruned = (int(table.item(row, 1).text().split()[0].replace(",", "")) for row in (0, 2))
    assert (original, pruned) == (report["costs"][0]["parameters"], report["costs"][2]["parameters"])
    assert pruned < original and f"({100 * pruned / original:.0f} %)" in table.item(2, 1).text()
    assert table.item(2, 4).text() == f"{100 * report['costs'][2]['val_accuracy']:.1f} %"
    assert table.horizontalHeaderItem(3).text() == (f"Batch-1 latency (cpu, {report['latency_threads']} thread"
                                                    f"{'s' * (report['latency_threads'] > 1)})")
    assert "Kept as a new run" in page.pruneVerdictLabel.text() and str(new_run) in page.pruneVerdictLabel.text()
    assert KEPT_COLOUR in page.pruneVerdictLabel.styleSheet()
    assert not page.running and page.pruneStartButton.isEnabled() and page.pruneProgress.isHidden()


def test_a_model_that_lost_more_than_allowed_is_refused_with_only_its_report(qtbot, dialog, source_run):
    page = dialog.prunePage
    page.pruneAmountSpin.setValue(90)
    page.pruneEpochsSpin.setValue(0)
    page.pruneMaxDropSpin.setValue(0)
    with qtbot.waitSignal(page.prune_ended, timeout=WAIT_MS) as ended:
        qtbot.mouseClick(page.pruneStartButton, Qt.MouseButton.LeftButton)
    assert "was not kept: validation accuracy fell by" in ended.args[0]
    left = others(source_run)
    assert len(left) == 1 and left[0].name.endswith(FAILED_SUFFIX) and left[0].is_file()  # no run folder
    assert REFUSED_COLOUR in page.pruneVerdictLabel.styleSheet() and str(left[0]) in page.pruneVerdictLabel.text()
    assert page.pruneResultsTable.rowCount() == 2  # original and pruned (no fine-tune): what was refused, shown


def test_stop_during_the_fine_tune_writes_nothing(qtbot, dialog, source_run, monkeypatch):
    page = dialog.prunePage
    real = prune_run_module.fine_tune

    def stop_at_first_batch(model, train_set, val_set, settings, device, should_stop, on_batch):
        def first(*args):
            page.pruneRunner.cancel()  # what Cancel asks, from the job's thread (the runner's cancel is thread-safe)
            on_batch(*args)

        return real(model, train_set, val_set, settings, device, should_stop, first)

    seen = []
    page.pruneRunner.stage_changed.connect(seen.append)  # the progress line's steps, in this (the GUI) thread
    monkeypatch.setattr(prune_run_module, "fine_tune", stop_at_first_batch)
    page.pruneEpochsSpin.setValue(2)
    with qtbot.waitSignal(page.prune_ended, timeout=WAIT_MS) as ended:
        qtbot.mouseClick(page.pruneStartButton, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "pruning stopped; nothing was written"
    assert others(source_run) == [] and "nothing was written" in page.pruneVerdictLabel.text()
    assert seen[0].startswith("loading ") and "fine-tune epoch 1/2" in seen  # each step, the epoch the count is in


def test_closing_the_dialog_while_pruning_stops_it_and_closes_with_no_thread_left(qtbot, dialog, source_run,
                                                                                  no_thread_left_running):
    page = dialog.prunePage
    page.pruneEpochsSpin.setValue(3)
    with qtbot.waitSignal(page.prune_ended, timeout=WAIT_MS):
        qtbot.mouseClick(page.pruneStartButton, Qt.MouseButton.LeftButton)
        dialog.reject()  # Escape, the window's close button, or Close
        assert dialog.isVisible()  # it closes once the job has stopped
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    assert others(source_run) == []
    assert not still_running(no_thread_left_running)


def test_quitting_the_studio_while_pruning_cancels_it_writes_nothing_and_leaves_no_thread(
        qtbot, source_run, image_folder, monkeypatch, no_thread_left_running):
    window = MainWindow(RecipeDocument(tiny_recipe(image_folder, out=source_run.parent)))
    qtbot.addWidget(window)
    monkeypatch.setattr(window, "_confirm_close", lambda: True)
    dialog = window.runs_panel.open_export_dialog(str(source_run))  # the Runs tab's Export…, a child of the window
    page = dialog.prunePage
    page.pruneEpochsSpin.setValue(5)
    with qtbot.waitSignal(page.pruneRunner.stage_changed, timeout=WAIT_MS,
                          check_params_cb=lambda stage: stage.startswith("fine-tune epoch")):
        page.start_prune()
    assert page.running
    assert window.close()  # the studio's quit: every job of the window is cancelled and waited for
    assert not still_running(no_thread_left_running)
    assert others(source_run) == []  # stopped mid fine-tune: no run, no report
