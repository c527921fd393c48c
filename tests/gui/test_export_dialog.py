"""The Export dialog exports a real run in its worker thread, shows the parity verdict and the costs, refuses to
keep a disagreeing export, and stops cleanly when closed mid-export; the Runs tab opens it for the selected run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QItemSelectionModel, Qt

from engine.infer import export_run as export_run_module
from engine.infer.export_run import FAILED_SUFFIX, REPORT_SUFFIX
from engine.infer.exported import open_export
from engine.model.surgery import find_classifier
from engine.train.trainer import fit
from gui.document import RecipeDocument
from gui.panels.export_dialog import FAILED_COLOUR, NOT_CHECKED_COLOUR, PASSED_COLOUR, ExportDialog
from gui.panels.runs_panel import RunsPanel
from tests.helpers import tiny_recipe

WAIT_MS = 180_000


@pytest.fixture(scope="module")
def runs_root(image_folder, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export-dialog-runs")
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=root, name="to-export")
    recipe.data.max_train_batches = 1
    result = fit(recipe)
    assert result.status == "finished", result.error
    return root


@pytest.fixture
def run_dir(runs_root) -> Path:
    return next(p for p in runs_root.iterdir() if p.is_dir())


@pytest.fixture
def dialog(qtbot, run_dir):
    dialog = ExportDialog(str(run_dir))
    qtbot.addWidget(dialog)
    dialog.show()
    yield dialog
    dialog.shutdown()


def choose(dialog: ExportDialog, fmt: str, out: Path) -> None:
    dialog.exportFormatCombo.setCurrentIndex(dialog.exportFormatCombo.findData(fmt))
    dialog.exportPathEdit.setText(str(out))


def test_every_control_has_a_name_and_a_tooltip(dialog):
    for name in ("exportFormatCombo", "exportCheckpointCombo", "exportInt8Check", "exportFp16Check", "exportPathEdit",
                 "exportBrowseButton", "exportStartButton", "exportCloseButton", "exportResultsTable"):
        widget = getattr(dialog, name)
        assert widget.objectName() == name and widget.toolTip()


def test_int8_is_offered_for_onnx_only_and_the_default_file_follows_the_choices(dialog, run_dir):
    assert dialog.format() == "onnx" and dialog.exportInt8Check.isEnabled()
    assert dialog.exportPathEdit.text() == str(run_dir / "exports" / "best.onnx")
    dialog.exportInt8Check.setChecked(True)
    assert dialog.exportPathEdit.text() == str(run_dir / "exports" / "best-int8.onnx")
    dialog.exportFormatCombo.setCurrentIndex(dialog.exportFormatCombo.findData("pt2"))
    assert not dialog.exportInt8Check.isEnabled() and not dialog.exportInt8Check.isChecked()
    assert dialog.exportPathEdit.text() == str(run_dir / "exports" / "best.pt2")
    assert dialog.request().quantize == "none"


def test_every_registered_format_is_listed_and_one_whose_library_is_missing_says_which(qtbot, run_dir,
                                                                                      monkeypatch):
    import importlib.util

    from engine.infer.export_formats import FORMATS

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    dialog = ExportDialog(str(run_dir))
    qtbot.addWidget(dialog)
    combo = dialog.exportFormatCombo
    assert [combo.itemData(i) for i in range(combo.count())] == list(FORMATS)
    row = combo.findData("openvino")
    assert not combo.model().item(row).isEnabled() and "needs openvino" in combo.itemText(row)
    assert "pip install openvino" in combo.itemData(row, Qt.ItemDataRole.ToolTipRole)
    assert all(combo.model().item(i).isEnabled() for i in range(combo.count()) if i != row)
    dialog.shutdown()


def test_export_runs_in_the_worker_and_shows_the_verdict_and_costs(qtbot, dialog, tmp_path):
    out = tmp_path / "model.pt2"
    choose(dialog, "pt2", out)
    with qtbot.waitSignal(dialog.export_succeeded, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(dialog.exportStartButton, Qt.MouseButton.LeftButton)
        assert dialog.running and not dialog.exportStartButton.isEnabled()
    assert blocker.args == [str(out)]
    assert out.is_file() and out.with_name(out.name + REPORT_SUFFIX).is_file()
    assert "Parity check passed" in dialog.exportVerdictLabel.text()
    table = dialog.exportResultsTable
    assert [table.item(row, 0).text() for row in range(table.rowCount())] == ["checkpoint (torch)", "pt2"]
    assert table.item(1, 4).text() == "100.0 %" and table.item(1, 2).text().endswith("thread)")
    assert not dialog.running and dialog.exportStartButton.isEnabled()


def test_also_quantizing_to_int8_keeps_the_fp32_model_beside_it(qtbot, dialog, tmp_path):
    """Issue 28, bug 6: "Also quantize to int8" wrote only the int8 file."""
    out = tmp_path / "model-int8.onnx"
    dialog.exportInt8Check.setChecked(True)
    dialog.exportPathEdit.setText(str(out))
    with qtbot.waitSignal(dialog.export_succeeded, timeout=WAIT_MS):
        qtbot.mouseClick(dialog.exportStartButton, Qt.MouseButton.LeftButton)
    fp32 = tmp_path / "model.onnx"
    assert out.is_file() and fp32.is_file() and fp32.stat().st_size > out.stat().st_size
    assert fp32.with_name(fp32.name + REPORT_SUFFIX).is_file() and out.with_name(out.name + REPORT_SUFFIX).is_file()
    assert open_export(fp32).metadata.quantization["method"] == "none"
    assert open_export(out).metadata.quantization["method"] == "int8-static"
    assert f"Saved {out} and the fp32 model {fp32}" in dialog.exportVerdictLabel.text()
    table = dialog.exportResultsTable
    assert [table.item(row, 0).text() for row in range(table.rowCount())] == ["checkpoint (torch)", "onnx",
                                                                              "onnx int8"]


def test_a_core_ml_export_is_shown_as_not_checked_on_this_os_neither_passed_nor_failed(qtbot, dialog, run_dir,
                                                                                        tmp_path):
    combo = dialog.exportFormatCombo
    assert "not checked" in combo.itemData(combo.findData("coreml"), Qt.ItemDataRole.ToolTipRole)
    assert not dialog.exportFp16Check.isEnabled()
    choose(dialog, "coreml", tmp_path / "unused.mlpackage")
    assert dialog.exportFp16Check.isEnabled() and not dialog.exportInt8Check.isEnabled()
    dialog._path_edited = False
    dialog.exportFp16Check.setChecked(True)  # fp16: offered for Core ML, named in the default file
    assert dialog.exportPathEdit.text() == str(run_dir / "exports" / "best-fp16.mlpackage")
    dialog.exportFp16Check.setChecked(False)
    out = tmp_path / "model.mlpackage"
    dialog.exportPathEdit.setText(str(out))
    with qtbot.waitSignal(dialog.export_succeeded, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(dialog.exportStartButton, Qt.MouseButton.LeftButton)
    assert blocker.args == [str(out)] and out.is_dir() and dialog.last_result.verdict == "not checked"
    text = dialog.exportVerdictLabel.text()
    assert text.startswith("Not checked on this OS: coreml: a Core ML package") and "passed" not in text
    assert f"Saved {out}" in text
    colour = dialog.exportVerdictLabel.styleSheet()
    assert NOT_CHECKED_COLOUR in colour and PASSED_COLOUR not in colour and FAILED_COLOUR not in colour
    table = dialog.exportResultsTable
    assert [table.item(row, 0).text() for row in range(table.rowCount())] == ["checkpoint (torch)", "coreml"]
    assert [table.item(1, column).text() for column in (2, 4, 5)] == ["—", "—", "—"]  # no number made up
    assert table.item(1, 0).foreground().color().name() == NOT_CHECKED_COLOUR
    assert "runs only on macOS" in table.item(1, 0).toolTip()
    assert dialog.exportProgressBar.value() == 1


def test_a_disagreeing_export_is_shown_as_failed_and_nothing_is_saved(qtbot, dialog, tmp_path, monkeypatch):
    real = export_run_module.write_export

    def skewing_writer(model, example, fmt, path, metadata, opset=None):
        broken = copy.deepcopy(model)
        with torch.no_grad():
            broken.get_submodule(find_classifier(broken)).bias[0] += 0.5
        return real(broken, example, fmt, path, metadata, opset)

    monkeypatch.setattr(export_run_module, "write_export", skewing_writer)
    out = tmp_path / "model.pt2"
    choose(dialog, "pt2", out)
    with qtbot.waitSignal(dialog.export_failed, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(dialog.exportStartButton, Qt.MouseButton.LeftButton)
    assert "disagrees with the checkpoint" in blocker.args[0]
    assert "disagrees" in dialog.exportVerdictLabel.text()
    assert not out.exists() and out.with_name(out.name + FAILED_SUFFIX).is_file()
    assert dialog.exportResultsTable.item(1, 0).foreground().color().name() == "#b01e1e"


def test_closing_during_an_export_stops_it_and_writes_nothing(qtbot, dialog, tmp_path):
    out = tmp_path / "model.onnx"
    choose(dialog, "onnx", out)
    with qtbot.waitSignal(dialog.export_failed, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(dialog.exportStartButton, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(dialog.exportCloseButton, Qt.MouseButton.LeftButton)  # "Stop" while it runs
        assert dialog.isVisible()  # it closes once the worker has stopped
    assert "stopped" in blocker.args[0]
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5_000)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_the_runs_tab_opens_the_dialog_for_the_selected_run(qtbot, runs_root, run_dir, image_folder):
    panel = RunsPanel(RecipeDocument(tiny_recipe(image_folder, "feature_extraction", epochs=1, out=runs_root)))
    panel.show_error_dialogs = False
    qtbot.addWidget(panel)
    assert panel.exportRunButton.toolTip() and not panel.exportRunButton.isEnabled()
    panel.runsTable.selectionModel().select(
        panel.model.index(0, 0), QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
    assert panel.exportRunButton.isEnabled()
    qtbot.mouseClick(panel.exportRunButton, Qt.MouseButton.LeftButton)
    dialog = panel.export_dialog
    assert isinstance(dialog, ExportDialog) and dialog.isVisible() and dialog.run_dir == run_dir
    dialog.close()
