"""Issue 24 in the studio: Model ▸ Domain pre-training… runs as a job — its curves fill as it trains, "Use these
weights" puts the backbone into the recipe, Cancel stops it between two batches and leaves no thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from gui.document import RecipeDocument
from tests.helpers import make_image_folder, tiny_recipe

pytest.importorskip("lightly", reason="domain pre-training needs lightly (pip install '.[test]' installs it)")

TIMEOUT_MS = 60_000


@pytest.fixture
def dialog(qtbot, tmp_path):
    from gui.pretrain_dialog import PretrainDialog

    images = make_image_folder(tmp_path / "images", classes=2, per_class=4, size=20)
    recipe = tiny_recipe(images, out=tmp_path / "runs")
    recipe.data.resize_size, recipe.data.crop_size, recipe.batch_size = 18, 16, 4
    document = RecipeDocument(recipe.validate())
    dialog = PretrainDialog(document)
    qtbot.addWidget(dialog)
    dialog.folder_edit.setText(str(images))
    yield dialog
    dialog.runner.shutdown()


def test_a_pretraining_draws_its_curves_and_its_weights_go_into_the_recipe_and_cancel_stops_it(
        qtbot, dialog, no_thread_left_running):
    dialog.method_combo.setCurrentText("moco")
    dialog.epochs_spin.setValue(1)
    with qtbot.waitSignal(dialog.runner.job_finished, timeout=TIMEOUT_MS):
        dialog.start_button.click()
        assert dialog.cancel_button.isEnabled() and not dialog.start_button.isEnabled()

    assert dialog.use_button.isEnabled(), dialog.status.text()
    xs, ys = dialog.loss_curve.getData()
    assert list(xs) == [1.0, 2.0] and len(ys) == 2  # 8 images, batches of 4: two steps drawn
    knn_x, _ = dialog.knn_curve.getData()
    assert list(knn_x) == [0.0, 1.0]  # the starting backbone, then after the epoch
    dialog.use_button.click()
    weights = dialog.document.recipe.model.weights_file
    assert weights == dialog.weights_file and Path(weights).name == "backbone.pth" and Path(weights).is_file()

    dialog.epochs_spin.setValue(500)
    with qtbot.waitSignal(dialog.runner.job_cancelled, timeout=TIMEOUT_MS):
        dialog.start_button.click()
        qtbot.waitUntil(lambda: len(dialog.losses) >= 1, timeout=TIMEOUT_MS)
        dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.runner.is_busy, timeout=TIMEOUT_MS)
    assert "Stopped" in dialog.status.text() and not dialog.use_button.isEnabled()
    assert dialog.start_button.isEnabled()
    dialog.close_button.click()
    assert all(not t.isRunning() for t in no_thread_left_running)
