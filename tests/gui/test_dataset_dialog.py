"""Issue 23: the Data tab's "Get a dataset…" dialog — the registry's list with what is on disk, a download with
progress off the GUI thread (against a loopback server), cancel that keeps the partial file, and "Use in recipe"."""

from __future__ import annotations

import pytest

from engine.data import sources
from gui.dataset_dialog import DatasetDialog
from gui.document import RecipeDocument
from gui.panels.data_panel import DataPanel
from tests import dataset_layouts as layouts
from tests.engine.test_download import eurosat_zip, md5, served
from tests.loopback_server import LoopbackServer

TIMEOUT_MS = 20_000


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("THAW_OFFLINE", raising=False)


@pytest.fixture
def dialog(qtbot, tmp_path):
    d = DatasetDialog(str(tmp_path / "data"))
    qtbot.addWidget(d)
    yield d
    d.shutdown()


def serve_eurosat(server, monkeypatch, tmp_path, padding=0):
    body = eurosat_zip(tmp_path, padding)
    url = server.serve("EuroSAT.zip", body)
    monkeypatch.setitem(sources._REGISTRY, "EuroSAT",
                        served("EuroSAT", (sources.Archive(url, "EuroSAT.zip", md5(body), "eurosat", "zip"),)))
    return body


def test_the_dialog_lists_every_downloadable_set_and_what_is_on_disk(qtbot, tmp_path):
    layouts.mnist(tmp_path / "data")
    d = DatasetDialog(str(tmp_path / "data"))
    qtbot.addWidget(d)
    names = [d.datasetTable.item(r, 0).data(0x0100) for r in range(d.datasetTable.rowCount())]
    assert names == [s.name for s in sources.all_sources() if not s.local]
    assert d.on_disk_text("MNIST") == "yes" and d.on_disk_text("Caltech101") == "no"
    d.select("MNIST")
    assert d.datasetUseButton.isEnabled() and not d.datasetDownloadButton.isEnabled()
    d.select("Caltech101")
    assert d.datasetDownloadButton.isEnabled() and not d.datasetUseButton.isEnabled()


def test_a_download_shows_progress_and_the_set_can_be_used_in_the_recipe(qtbot, dialog, tmp_path, monkeypatch):
    with LoopbackServer() as server:
        serve_eurosat(server, monkeypatch, tmp_path)
        dialog.select("EuroSAT")
        seen = []
        dialog.datasetProgress.valueChanged.connect(seen.append)
        dialog.datasetDownloadButton.click()
        assert dialog.running and dialog.datasetCancelButton.isEnabled()
        qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT_MS)
    assert "EuroSAT downloaded under" in dialog.datasetStatusLabel.text()
    assert dialog.on_disk_text("EuroSAT") == "yes" and max(seen) == 1000
    assert dialog.datasetUseButton.isEnabled()
    dialog.datasetUseButton.click()
    assert dialog.chosen == ("EuroSAT", str(tmp_path / "data"))


def test_cancel_stops_the_download_and_keeps_what_was_fetched(qtbot, dialog, tmp_path, monkeypatch):
    with LoopbackServer() as server:
        server.hold_after = 300_000  # the rest waits until the cancel was clicked: it lands mid-file, always
        serve_eurosat(server, monkeypatch, tmp_path, padding=2_000_000)
        dialog.select("EuroSAT")
        dialog.datasetDownloadButton.click()
        qtbot.waitUntil(lambda: "downloading" in dialog.datasetStatusLabel.text() and server.held.is_set(),
                        timeout=TIMEOUT_MS)
        dialog.datasetCancelButton.click()
        server.released.set()  # the download reads its next chunk, then sees the cancel
        qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT_MS)
    assert dialog.datasetStatusLabel.text().startswith("Stopped")
    assert (tmp_path / "data" / "eurosat" / "EuroSAT.zip.part").stat().st_size > 0
    assert dialog.on_disk_text("EuroSAT") == "no" and dialog.datasetDownloadButton.isEnabled()


def test_offline_the_dialog_says_where_to_put_the_archive(qtbot, dialog, tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_OFFLINE", "1")
    dialog.select("CIFAR10")
    dialog.datasetDownloadButton.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT_MS)
    text = dialog.datasetStatusLabel.text()
    assert "cifar-10-python.tar.gz" in text and str(tmp_path / "data") in text


def test_the_data_tabs_button_opens_it_and_a_chosen_set_goes_into_the_recipe(qtbot, tmp_path):
    document = RecipeDocument()
    panel = DataPanel(document)
    qtbot.addWidget(panel)
    layouts.mnist(tmp_path)
    panel.getDatasetButton.click()
    dialog = panel.findChild(DatasetDialog)
    assert dialog is not None and dialog.isVisible()
    dialog.datasetRootEdit.setText(str(tmp_path))
    dialog.datasetRootEdit.editingFinished.emit()
    dialog.select("MNIST")
    dialog.datasetUseButton.click()
    assert (document.recipe.data.dataset, document.recipe.data.root) == ("MNIST", str(tmp_path))
    assert panel.builtinNoteLabel.isVisibleTo(panel) and not panel.valFractionSpin.isEnabled()
    panel.shutdown()


def test_every_control_has_a_name_and_a_tooltip(dialog):
    from tests.gui.test_widget_names import explained, interactive_widgets

    widgets = interactive_widgets(dialog)
    names = {w.objectName() for w in widgets}
    assert {"datasetTable", "datasetRootEdit", "datasetDownloadButton", "datasetCancelButton",
            "datasetUseButton"} <= names
    assert [type(w).__name__ for w in widgets if not w.objectName()] == []
    assert [w.objectName() for w in widgets if not explained(w)] == []
