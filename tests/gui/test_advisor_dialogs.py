"""Issue 23 items 3-4 in the studio: Model → "Compare architectures…" (a table, the accuracy-vs-latency scatter with
its Pareto front, "Use in recipe") and the Phases tab's "Advise a strategy…" (reasons with the measured numbers,
"Apply" in one click), both measuring off the GUI thread with progress and a Cancel that leaves no thread."""

from __future__ import annotations

import pytest

from gui.compare_models_dialog import COLUMNS, CompareModelsDialog
from gui.document import RecipeDocument
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
        qtbot.waitUntil(lambda: "tiny_resnet" in compare.status.text(), timeout=TIMEOUT_MS)
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
    dialog.close()
