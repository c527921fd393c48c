"""The Data tab: scanning on a worker thread, the class/problem report, split truth, recipe edits, previews."""

from __future__ import annotations

from pathlib import Path

import pytest
import shiboken6
from PySide6.QtCore import QSize, Qt

from gui.document import RecipeDocument
from gui.panels.data_panel import DataPanel, looks_like_characters
from gui.widgets.image_utils import qimage_to_rgb
from tests.gui.drops import drop_urls
from tests.helpers import make_image_folder

SCAN_TIMEOUT_MS = 15000


@pytest.fixture
def document():
    return RecipeDocument()


@pytest.fixture
def panel(qtbot, document):
    widget = DataPanel(document)
    qtbot.addWidget(widget)
    yield widget
    thread = widget.worker_thread.thread  # None when the test never needed the worker
    widget.shutdown()
    assert widget.worker_thread.thread is None
    if thread is not None:
        assert thread.qthread.isFinished()


def scan(qtbot, panel: DataPanel, folder: Path) -> None:
    """Type the folder and press Enter, as a user would; wait for the document to receive the scan."""
    with qtbot.waitSignal(panel.document.data_scanned, timeout=SCAN_TIMEOUT_MS):
        panel.dataFolderEdit.setText(str(folder))
        panel.dataFolderEdit.editingFinished.emit()


def column(table, index: int) -> list[str]:
    return [table.item(row, index).text() for row in range(table.rowCount())]


def test_scan_reports_classes_split_and_problems(qtbot, panel, document, image_folder):
    scan(qtbot, panel, image_folder)

    assert document.recipe.data.root == str(image_folder)
    assert document.scan is not None and document.scan.num_samples == 36
    table = panel.classesTable
    assert column(table, 0) == ["cat", "dog", "fox"]
    assert column(table, 1) == ["12", "12", "12"]  # the truncated JPEG and the non-image are not counted
    assert column(table, 3) == ["33.3 %"] * 3
    # The default val_fraction 0.2 takes round(12 × 0.2) = 2 images per class, as training will.
    assert column(table, 4) == ["10"] * 3 and column(table, 5) == ["2"] * 3
    assert "1.0×" in panel.imbalanceLabel.text() and "Warning" not in panel.imbalanceLabel.text()

    problems = dict(zip(column(panel.problemsTable, 0), column(panel.problemsTable, 1)))
    assert set(problems) == {str(Path("cat") / "truncated.jpg"), str(Path("cat") / "notes.jpg")}
    assert all(reason for reason in problems.values())
    assert not panel.scanProgress.isVisible()
    assert "36 usable images in 3 classes" in panel.scanStatusLabel.text()


def test_split_columns_follow_the_validation_fraction(qtbot, panel, document, image_folder):
    scan(qtbot, panel, image_folder)
    panel.valFractionSpin.setValue(0.5)
    assert document.recipe.data.val_fraction == 0.5
    assert column(panel.classesTable, 4) == ["6"] * 3 and column(panel.classesTable, 5) == ["6"] * 3


def test_train_val_layout_shows_the_folders_split(qtbot, panel, tmp_path):
    folder = make_image_folder(tmp_path / "tv", classes=2, per_class=9, layout="train_val")
    scan(qtbot, panel, folder)
    assert column(panel.classesTable, 1) == ["12", "12"]
    assert column(panel.classesTable, 4) == ["9", "9"] and column(panel.classesTable, 5) == ["3", "3"]
    assert panel.problemsTable.rowCount() == 0


def test_imbalance_and_empty_class_folders_are_reported(qtbot, panel, tmp_path):
    folder = make_image_folder(tmp_path / "imb", classes=3, per_class=12)
    for path in sorted((folder / "dog").iterdir())[3:]:
        path.unlink()
    for path in (folder / "fox").iterdir():
        path.unlink()
    scan(qtbot, panel, folder)
    assert column(panel.classesTable, 1) == ["12", "3", "0"]
    assert "fox" in panel.imbalanceLabel.text() and "Warning" in panel.imbalanceLabel.text()
    assert column(panel.problemsTable, 0) == ["fox/"]

    for path in (folder / "cat").iterdir():  # with fox gone too, only the 12 : 3 ratio is left
        path.rename(folder / "fox" / path.name)
    for path in sorted((folder / "fox").iterdir())[3:]:
        path.unlink()
    with qtbot.waitSignal(panel.document.data_scanned, timeout=SCAN_TIMEOUT_MS):
        panel.rescanButton.click()
    assert column(panel.classesTable, 1) == ["0", "3", "3"]


def test_thumbnails_are_loaded_off_the_gui_thread(qtbot, panel, image_folder):
    with qtbot.waitSignal(panel.thumbnails_shown, timeout=SCAN_TIMEOUT_MS) as shown:
        scan(qtbot, panel, image_folder)
    assert shown.args == [12]  # 4 per class
    view = panel.thumbnailsView
    assert [view.item(i).text() for i in range(view.count())] == ["cat"] * 4 + ["dog"] * 4 + ["fox"] * 4
    assert view.item(0).icon().availableSizes()[0] == QSize(40, 40)  # 40 px images are not enlarged


def test_settings_edit_the_recipe_and_follow_it(qtbot, panel, document):
    combo = panel.augmentationCombo
    combo.setCurrentIndex(combo.findData("trivialaugment"))
    assert document.recipe.data.augmentation == "trivialaugment"
    panel.splitSeedSpin.setValue(7)
    panel.cropSizeSpin.setValue(112)
    panel.resizeSizeSpin.setValue(128)
    panel.batchSizeSpin.setValue(24)
    data = document.recipe.data
    assert (data.split_seed, data.crop_size, data.resize_size, document.recipe.batch_size) == (7, 112, 128, 24)
    assert "112×112" in panel.effectiveSizeLabel.text()

    panel.resizeSizeSpin.setValue(64)  # smaller than the crop: named, not silently accepted
    assert "crop_size" in panel.dataHintLabel.text()

    document.edit(lambda recipe: setattr(recipe.data, "augmentation", "none"))
    assert combo.currentData() == "none"


def test_augmentation_preview_uses_the_training_transform(qtbot, panel, document, image_folder):
    document.edit(lambda recipe: (setattr(recipe.data, "resize_size", 36), setattr(recipe.data, "crop_size", 32)))
    scan(qtbot, panel, image_folder)

    def previews() -> list:
        with qtbot.waitSignal(panel.augment_preview_shown, timeout=SCAN_TIMEOUT_MS) as shown:
            panel.augmentPreviewButton.click()
        assert shown.args == [8] and panel.augmentPreview.count() == 8
        icons = [panel.augmentPreview.item(i).icon() for i in range(8)]
        assert all(icon.availableSizes()[0] == QSize(32, 32) for icon in icons)  # the recipe's crop
        return [qimage_to_rgb(icon.pixmap(32, 32).toImage()).tobytes() for icon in icons]

    first = previews()
    assert len(set(first)) > 1  # random crops and flips differ
    assert previews() != first  # a new seed per click


def test_dropping_a_folder_sets_the_root(qtbot, panel, document, image_folder):
    with qtbot.waitSignal(document.data_scanned, timeout=SCAN_TIMEOUT_MS):
        drop = drop_urls(panel, [image_folder])
    assert drop.isAccepted()
    assert document.recipe.data.root == str(image_folder)
    assert panel.classesTable.rowCount() == 3


def test_deleting_the_panel_without_shutdown_stops_its_thread(qtbot, document, image_folder):
    widget = DataPanel(document)
    with qtbot.waitSignal(document.data_scanned, timeout=SCAN_TIMEOUT_MS):
        widget.set_data_folder(str(image_folder))
    thread = widget.worker_thread.thread.qthread
    assert thread.isRunning()
    shiboken6.delete(widget)
    assert thread.isFinished()


def test_a_missing_folder_is_a_message(qtbot, panel, document, tmp_path):
    with qtbot.waitSignal(panel.scan_failed, timeout=SCAN_TIMEOUT_MS) as failed:
        panel.set_data_folder(str(tmp_path / "nowhere"))
    assert "not found" in failed.args[0]
    assert "not found" in panel.scanStatusLabel.text()
    assert document.scan is None and panel.classesTable.rowCount() == 0


def test_builtin_datasets_skip_the_scan(qtbot, panel, document, image_folder):
    scan(qtbot, panel, image_folder)
    panel.datasetCombo.setCurrentIndex(panel.datasetCombo.findData("CIFAR10"))
    assert document.recipe.data.dataset == "CIFAR10"
    assert document.scan is None and panel.classesTable.rowCount() == 0
    assert panel.builtinNoteLabel.isVisibleTo(panel)
    assert "official: train (50 000) trains, test (10 000) validates" in panel.builtinNoteLabel.text()
    assert not panel.valFractionSpin.isEnabled()


def preview_of(qtbot, panel: DataPanel, act) -> list:
    with qtbot.waitSignal(panel.augment_preview_shown, timeout=SCAN_TIMEOUT_MS):
        act()
    return [panel.augmentPreview.item(i) for i in range(panel.augmentPreview.count())]


def test_switching_folders_clears_the_preview_and_drops_one_still_on_its_way(qtbot, panel, image_folder, tmp_path):
    scan(qtbot, panel, image_folder)
    assert len(preview_of(qtbot, panel, panel.augmentPreviewButton.click)) == 8
    assert panel.previewed_path.startswith(str(image_folder))

    other = make_image_folder(tmp_path / "other", classes=2, per_class=4)
    arrived = []
    panel._previewer.previews_ready.connect(lambda seed, images: arrived.append(seed))
    panel.augmentPreviewButton.click()  # a preview of the old folder is on its way …
    scan(qtbot, panel, other)  # … when the folder changes; the worker answers in order: it came before the scan

    assert len(arrived) == 1  # it did arrive, and was dropped
    assert panel.augmentPreview.count() == 0 and panel.augmentStatusLabel.text() == ""
    assert panel.previewed_path == ""


def test_clicking_a_thumbnail_previews_that_image(qtbot, panel, image_folder):
    with qtbot.waitSignal(panel.thumbnails_shown, timeout=SCAN_TIMEOUT_MS):
        scan(qtbot, panel, image_folder)
    view = panel.thumbnailsView
    item = view.item(5)  # a dog
    path = item.data(Qt.ItemDataRole.UserRole)
    point = view.visualItemRect(item).center()

    preview_of(qtbot, panel, lambda: qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point))

    assert panel.previewed_path == path and "/dog/" in path
    assert Path(path).name in panel.augmentStatusLabel.text()


def test_flips_are_a_visible_choice_that_the_preview_follows(qtbot, panel, document, image_folder):
    scan(qtbot, panel, image_folder)
    check = panel.horizontalFlipCheck
    assert check.isChecked() and document.recipe.data.horizontal_flip and check.toolTip()
    preview_of(qtbot, panel, panel.augmentPreviewButton.click)
    assert "mirrored at random" in panel.augmentStatusLabel.text()

    preview_of(qtbot, panel, check.click)  # the preview on display is drawn again without flips

    assert document.recipe.data.horizontal_flip is False
    assert "mirrored" not in panel.augmentStatusLabel.text()
    document.edit(lambda recipe: setattr(recipe.data, "augmentation", "none"))
    assert not check.isEnabled()  # nothing to mirror in the evaluation transform


def test_digit_classes_warn_about_flips_until_they_are_off(qtbot, panel, document, tmp_path, image_folder):
    scan(qtbot, panel, image_folder)
    assert not panel.flipWarningLabel.isVisibleTo(panel)  # cat, dog, fox: mirrored they are still themselves

    digits = make_image_folder(tmp_path / "digits", classes=2, per_class=4)
    for source, digit in (("cat", "0"), ("dog", "1")):
        (digits / source).rename(digits / digit)
    scan(qtbot, panel, digits)
    assert panel.flipWarningLabel.isVisibleTo(panel) and "digits or letters" in panel.flipWarningLabel.text()

    panel.horizontalFlipCheck.click()
    assert not panel.flipWarningLabel.isVisibleTo(panel)


def test_classes_named_like_digit_5_warn_about_flips_too(qtbot, panel, tmp_path):
    """Issue 28, bug 5: only names starting with a digit were checked, so digit_5 … digit_9 got no warning while
    the preview showed mirrored 5s."""
    digits = make_image_folder(tmp_path / "digits", classes=3, per_class=4)
    for source, digit in (("cat", "digit_5"), ("dog", "digit_6"), ("fox", "digit_9")):
        (digits / source).rename(digits / digit)
    scan(qtbot, panel, digits)
    assert panel.flipWarningLabel.isVisibleTo(panel) and "digits or letters" in panel.flipWarningLabel.text()


@pytest.mark.parametrize("classes, characters", [
    (["0", "1"], True), (["7_seven", "8_eight"], True), (["digit_5", "digit_9"], True),
    (["letter-b", "letter-d"], True), (["cat", "dog"], False), (["resnet_50", "resnet_18"], False),
    (["golden retriever", "pug"], False), (["digit_5", "dog"], False)])
def test_which_class_names_look_like_characters(classes, characters):
    assert looks_like_characters(classes) is characters
