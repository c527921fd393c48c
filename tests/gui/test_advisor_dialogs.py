"""Issue 23 items 3-4 in the studio: Model → "Compare architectures…" (a table, the accuracy-vs-latency scatter with
its Pareto front, "Use in recipe") and the Phases tab's "Advise a strategy…" (reasons with the measured numbers,
"Apply" in one click), both measuring off the GUI thread with progress and a Cancel that leaves no thread — as studio
jobs (issue 28 item 1): they wait in the device queue behind another device job, leave it on Cancel, and stop when
the dialog or the studio closes."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtWidgets import QWidget

from gui.compare_models_dialog import COLUMNS, CompareModelsDialog
from gui.document import RecipeDocument
from gui.jobs.board import job_board
from gui.jobs.runner import IDLE, QUEUED, RUNNING, JobRunner
from gui.panels.phases_panel import PhasesPanel
from tests.helpers import tiny_recipe

TIMEOUT_MS = 120_000


@pytest.fixture
def document(image_folder):
    return RecipeDocument(tiny_recipe(image_folder, strategy="fine_tune_all"))


@pytest.fixture
def compare(qtbot, document):
    dialog = CompareModelsDialog(document)
    qtbot.addWidget(dialog)
    yield dialog
    dialog.shutdown()


@pytest.fixture
def device_holder(qtbot):
    """An estimate-like device job that holds the device until the test sets its event; its work writes "holder
    ended" into the events list as its last act."""
    owner = QWidget()
    qtbot.addWidget(owner)
    runner = JobRunner("holder", "Estimate", owner, uses_device=True)
    release = threading.Event()
    events: list[str] = []

    def hold(task) -> None:
        while not task.should_stop() and not release.wait(0.01):
            pass
        events.append("holder ended")

    assert runner.start(hold, "Holding the device") and runner.is_running
    yield runner, release, events
    release.set()
    job_board().shutdown([runner])


def _column(table, col):
    return [table.item(r, col).text() for r in range(table.rowCount())]


def test_the_comparison_fills_the_table_and_the_plot_and_puts_the_chosen_model_into_the_recipe(
        qtbot, compare, document, no_thread_left_running):
    compare.models_edit.setText("tiny_resnet,mobilenet_v3_small,resnet50")
    with qtbot.waitSignal(compare.measurement_finished, timeout=TIMEOUT_MS):
        compare.measure_button.click()
        assert compare.running and compare.cancel_button.isEnabled() and not compare.measure_button.isEnabled()
    table = compare.table
    assert _column(table, 0) == ["tiny_resnet", "mobilenet_v3_small", "resnet50"]
    status = _column(table, table.columnCount() - 1)
    assert status[2] == "no local weights" and "not downloaded" in table.item(2, table.columnCount() - 1).toolTip()
    assert set(status[:2]) <= {"measured", "Pareto front"} and "Pareto front" in status[:2]
    assert all(float(v) >= 0 for v in _column(table, 1)[:2]) and _column(table, 1)[2] == ""
    xs, ys = compare.scatter.getData()
    assert len(xs) == 2  # the two measured models
    assert list(ys) == [100 * r.cv_accuracy for r in compare.comparison.rows[:2]]
    assert compare.comparison.path and not compare.running
    compare.select("resnet50")
    assert not compare.use_button.isEnabled()  # nothing measured to use
    compare.select("mobilenet_v3_small")
    assert compare.use_button.isEnabled()
    compare.use_button.click()
    model = document.recipe.model
    assert (model.arch, model.weights) == ("mobilenet_v3_small", compare.comparison.rows[1].weights)
    assert all(not t.isRunning() for t in no_thread_left_running)


def test_onnx_latency_is_measured_when_asked(qtbot, compare):
    compare.models_edit.setText("tiny_resnet")
    compare.onnx_check.setChecked(True)
    with qtbot.waitSignal(compare.measurement_finished, timeout=TIMEOUT_MS):
        compare.measure_button.click()
        assert not compare.onnx_check.isEnabled()
    onnx = compare.table.item(0, COLUMNS.index("ONNX ms")).text()
    assert float(onnx) > 0 and onnx == f"{compare.comparison.rows[0].onnx_latency_ms:.2f}"


def test_cancel_stops_the_comparison_and_leaves_no_thread(qtbot, compare, no_thread_left_running):
    compare.models_edit.setText("tiny_resnet,mobilenet_v3_small")
    with qtbot.waitSignal(compare.measurement_finished, timeout=TIMEOUT_MS):
        compare.measure_button.click()
        qtbot.waitUntil(lambda: "tiny_resnet" in compare.progress.label.text(), timeout=TIMEOUT_MS)
        compare.cancel_button.click()
    assert not compare.running and no_thread_left_running
    assert all(not t.isRunning() for t in no_thread_left_running)
    assert compare.comparison.stopped and compare.comparison.rows[-1].status == "stopped"
    assert compare.measure_button.isEnabled() and not compare.cancel_button.isEnabled()


def test_the_advisor_shows_its_reasons_and_applies_its_preset_in_one_click(qtbot, document, no_thread_left_running):
    panel = PhasesPanel(document)
    qtbot.addWidget(panel)
    dialog = panel.open_advisor()
    with qtbot.waitSignal(dialog.measurement_finished, timeout=TIMEOUT_MS):
        dialog.measure_button.click()
    advice = dialog.advice
    assert advice is not None, dialog.status.text()
    text = dialog.text.toPlainText()
    cv = advice.measurements["cv_accuracy"]
    assert f"{100 * cv:.1f} % cross-validated accuracy" in text
    assert f"{advice.measurements['domain_shift']['score']:.3f} nats" in text
    assert document.recipe.strategy == "fine_tune_all"
    dialog.apply_button.click()
    assert document.recipe.strategy == advice.preset == "feature_extraction"  # 10 images a class: rule 6
    assert [p.name for p in document.recipe.phases] == ["feature_extraction"]
    dialog.shutdown()


def test_cancelling_the_advisor_gives_no_advice_and_leaves_no_thread(qtbot, document, no_thread_left_running):
    panel = PhasesPanel(document)
    qtbot.addWidget(panel)
    dialog = panel.open_advisor()
    with qtbot.waitSignal(dialog.measurement_finished, timeout=TIMEOUT_MS):
        dialog.measure_button.click()
        dialog.cancel_button.click()  # before the worker's first check: it stops at once
    assert dialog.advice is None and not dialog.apply_button.isEnabled()
    assert dialog.status.text().startswith("Stopped")
    assert dialog.runner in panel.findChildren(JobRunner) and dialog.runner.uses_device  # the window's close finds it
    assert all(not t.isRunning() for t in no_thread_left_running)
    dialog.shutdown()


def test_the_model_menu_opens_the_comparison(qtbot):
    from gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    action = window.findChild(type(window.startRunAction), "compareModelsAction")
    assert action is not None and action.text() == "&Compare architectures…"
    assert "&Model" in [a.text() for a in window.menuBar().actions()]
    action.trigger()
    dialog = window.findChild(CompareModelsDialog, "compareModelsDialog")
    assert dialog is not None and dialog.isVisible()
    assert dialog.runner in window.findChildren(JobRunner)  # reached by the window's close (shutdown_jobs)
    dialog.close()


def test_a_comparison_waits_in_the_device_queue_behind_another_device_job_then_runs(
        qtbot, compare, device_holder, no_thread_left_running):
    holder, release, events = device_holder
    compare.runner.state_changed.connect(events.append)
    compare.models_edit.setText("tiny_resnet")
    compare.measure_button.click()
    assert compare.runner.state == QUEUED and compare.running and not compare.measure_button.isEnabled()
    assert job_board().queued() == [compare.runner]
    assert "Comparing 1 architecture: waiting for the estimate to end (place 1 in the queue)" in \
        compare.progress.label.text()
    assert len(no_thread_left_running) == 1  # the holder's: the comparison has not started a thread
    shown: list[tuple[str, int, int]] = []  # the line, the bar's value and maximum at each count
    compare.runner.progressed.connect(lambda *_: shown.append((compare.progress.label.text(),
                                                               compare.progress.bar.value(),
                                                               compare.progress.bar.maximum())))
    with qtbot.waitSignal(compare.measurement_finished, timeout=TIMEOUT_MS):
        release.set()
    stage = "Comparing 1 architecture · [1/1] tiny_resnet"
    features = [(value, maximum) for text, value, maximum in shown if text.startswith(f"{stage}: features · ")]
    assert features and features[-1][0] == features[-1][1] > 0  # the stage, its count and the bar's percent
    assert (f"{stage}: latency …", 0) in [(text, maximum) for text, _, maximum in shown]  # no count: a busy bar
    assert events == [QUEUED, "holder ended", RUNNING, IDLE]
    assert [r.status for r in compare.comparison.rows] == ["measured"] and not compare.comparison.stopped
    assert not job_board().device_busy and not job_board().queued()


def test_cancel_of_a_queued_comparison_takes_it_out_of_the_queue_and_nothing_runs(
        qtbot, compare, device_holder, no_thread_left_running):
    holder, release, _ = device_holder
    states: list[str] = []
    compare.runner.state_changed.connect(states.append)
    compare.measure_button.click()
    assert compare.runner.is_queued and compare.cancel_button.isEnabled()
    with qtbot.waitSignal(compare.measurement_finished, timeout=TIMEOUT_MS):
        compare.cancel_button.click()
    assert not job_board().queued() and compare.runner.state == IDLE and states == [QUEUED, IDLE]
    assert compare.status.text().startswith("Stopped") and compare.measure_button.isEnabled()
    with qtbot.waitSignal(holder.job_finished, timeout=TIMEOUT_MS):
        release.set()
    assert states == [QUEUED, IDLE] and compare.comparison is None  # the device came free: nothing ran
    assert len(no_thread_left_running) == 1 and not job_board().device_busy


def test_closing_the_dialog_while_it_measures_stops_it_keeps_what_was_measured_and_then_closes(
        qtbot, compare, no_thread_left_running):
    compare.show()
    compare.models_edit.setText("tiny_resnet,mobilenet_v3_small")
    compare.measure_button.click()
    qtbot.waitUntil(lambda: "tiny_resnet" in compare.progress.label.text(), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(compare.measurement_finished, timeout=TIMEOUT_MS):
        compare.close()
        assert compare.isVisible() and "stopping" in compare.progress.label.text()  # until the step ends
    assert not compare.isVisible() and not compare.running
    assert compare.comparison.stopped and compare.comparison.rows[-1].status == "stopped"
    assert all(not t.isRunning() for t in no_thread_left_running)


def test_the_studio_closing_stops_a_running_measurement_and_waits_for_its_thread(
        qtbot, document, no_thread_left_running):
    window = QWidget()  # the main window's close: job_board().shutdown(self.findChildren(JobRunner))
    qtbot.addWidget(window)
    dialog = CompareModelsDialog(document, window)
    dialog.models_edit.setText("tiny_resnet")
    dialog.measure_button.click()
    qtbot.waitUntil(lambda: "tiny_resnet" in dialog.progress.label.text(), timeout=TIMEOUT_MS)
    assert dialog.runner in window.findChildren(JobRunner)
    job_board().shutdown(window.findChildren(JobRunner))
    assert dialog.runner.state == IDLE and not dialog.running
    assert no_thread_left_running and all(not t.isRunning() for t in no_thread_left_running)  # ended, not ending
    dialog.measure_button.click()
    assert not dialog.running and "closing" in dialog.status.text()  # nothing starts after the shutdown
