"""One preset, one result, wherever it is chosen (the Strategy menu, the Model tab's "Apply strategy", the Phases
tab's gradual button), and a run name that follows the model and the strategy unless the user typed one."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLineEdit, QPushButton

from engine.planning.presets import STRATEGIES, apply_strategy
from engine.recipe import Recipe
from gui.document import RecipeDocument, fresh_recipe
from gui.main_window import MainWindow
from tests.helpers import tiny_recipe


@pytest.fixture
def window(qtbot, image_folder, tmp_path, monkeypatch) -> MainWindow:
    window = MainWindow(RecipeDocument(start_recipe(image_folder, tmp_path)))
    monkeypatch.setattr(window, "_show_error", lambda title, message: pytest.fail(f"{title}: {message}"))
    qtbot.addWidget(window)
    return window


def start_recipe(image_folder, tmp_path) -> Recipe:
    """A recipe whose epochs differ from every preset's: applying a strategy must not keep them."""
    return tiny_recipe(image_folder, "feature_extraction", epochs=2, out=tmp_path / "runs")


def from_menu(window: MainWindow, strategy: str) -> None:
    window.strategy_actions[strategy].trigger()


def from_model_tab(window: MainWindow, strategy: str) -> None:
    combo = window.model_panel.findChild(QComboBox, "strategyCombo")
    combo.setCurrentIndex(combo.findData(strategy))
    window.model_panel.findChild(QPushButton, "applyStrategyButton").click()


def from_phases_tab(window: MainWindow, strategy: str) -> None:
    assert strategy == "gradual_unfreezing"  # the only preset the Phases tab offers
    window.phases_panel.findChild(QPushButton, "gradualPresetButton").click()


ENTRY_POINTS = {"Strategy menu": from_menu, "Model tab": from_model_tab, "Phases tab": from_phases_tab}


def entry_points_for(strategy: str) -> dict:
    return {name: apply for name, apply in ENTRY_POINTS.items()
            if apply is not from_phases_tab or strategy == "gradual_unfreezing"}


def run_name_edit(window: MainWindow) -> QLineEdit:
    return window.model_panel.findChild(QLineEdit, "runNameEdit")


def type_run_name(qtbot, window: MainWindow, text: str) -> None:
    edit = run_name_edit(window)
    edit.setFocus()
    edit.selectAll()
    if text:
        qtbot.keyClicks(edit, text)
    else:
        edit.clear()
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def test_every_place_a_strategy_is_chosen_gives_the_same_recipe(window, image_folder, tmp_path):
    # Every strategy in one window (a window costs 1–3 s to build); each place starts from the same recipe.
    for strategy in STRATEGIES:
        start = start_recipe(image_folder, tmp_path)
        results = {}
        for place, apply in entry_points_for(strategy).items():
            window.document.set_recipe(start)
            apply(window, strategy)
            results[place] = window.document.recipe.to_dict()
        expected = start.copy()
        apply_strategy(expected, strategy)  # the engine's one rule
        for place, result in results.items():
            assert result == expected.to_dict(), (strategy, place)
        assert window.document.recipe.strategy == strategy
        assert window.strategy_actions[strategy].isChecked(), strategy


def test_the_gradual_preset_gives_the_lessons_epochs_from_every_place(window, image_folder, tmp_path):
    for place, apply in ENTRY_POINTS.items():
        window.document.set_recipe(start_recipe(image_folder, tmp_path))
        apply(window, "gradual_unfreezing")
        phases = window.document.recipe.phases
        assert [(p.name, p.epochs) for p in phases] == [("head", 5), ("head+layer4", 5), ("all", 10)], place
        assert window.document.recipe.batch_size == 8  # the rest of the recipe stays


def test_a_new_document_is_the_feature_extraction_preset_exactly(qtbot):
    document = RecipeDocument()
    assert document.recipe.to_dict() == fresh_recipe().to_dict()
    chosen = document.recipe.copy()
    apply_strategy(chosen, "feature_extraction")  # what the Strategy menu would make of it
    assert chosen.to_dict() == document.recipe.to_dict()
    assert [p.epochs for p in document.recipe.phases] == [10]


# --- the run name ------------------------------------------------------------------------------------------------

def test_a_generated_run_name_follows_the_strategy_from_every_place(window, image_folder, tmp_path):
    for strategy in STRATEGIES:
        for place, apply in entry_points_for(strategy).items():
            window.document.set_recipe(start_recipe(image_folder, tmp_path))
            assert window.document.recipe.name == "tiny_resnet-feature_extraction"
            apply(window, strategy)
            assert window.document.recipe.name == f"tiny_resnet-{strategy}", place
            assert window.windowTitle() == f"Thaw — tiny_resnet-{strategy}[*]"
            edit = run_name_edit(window)
            assert edit.text() == "" and edit.placeholderText() == f"tiny_resnet-{strategy}"  # greyed: generated


def test_the_issues_path_fresh_start_then_the_gradual_button_names_the_run_gradual(qtbot):
    window = MainWindow()
    qtbot.addWidget(window)
    from_phases_tab(window, "gradual_unfreezing")
    assert window.document.recipe.name == "resnet18-gradual_unfreezing"


def test_a_generated_run_name_follows_the_model(window):
    from_menu(window, "fine_tune_all")
    window.model_panel.findChild(QComboBox, "modelCombo").set_arch("mobilenet_v3_small")
    assert window.document.recipe.name == "mobilenet_v3_small-fine_tune_all"
    assert run_name_edit(window).placeholderText() == "mobilenet_v3_small-fine_tune_all"


def test_a_typed_run_name_is_kept_by_every_place_and_by_a_model_change(qtbot, window):
    type_run_name(qtbot, window, "pets baseline")
    assert window.document.recipe.name == "pets baseline"
    assert window.windowTitle() == "Thaw — pets baseline[*]"
    for place, apply in ENTRY_POINTS.items():
        for strategy in ("fine_tune_all", "gradual_unfreezing"):
            if apply is from_phases_tab and strategy != "gradual_unfreezing":
                continue
            apply(window, strategy)
            assert window.document.recipe.name == "pets baseline", (place, strategy)
    window.model_panel.findChild(QComboBox, "modelCombo").set_arch("mobilenet_v3_small")
    assert window.document.recipe.name == "pets baseline"
    assert run_name_edit(window).text() == "pets baseline"


def test_clearing_the_typed_name_gives_back_a_name_that_follows(qtbot, window):
    type_run_name(qtbot, window, "pets baseline")
    type_run_name(qtbot, window, "")
    assert window.document.recipe.name == "tiny_resnet-feature_extraction"
    from_menu(window, "from_scratch")
    assert window.document.recipe.name == "tiny_resnet-from_scratch"


def test_an_opened_recipe_keeps_its_typed_name_and_a_generated_one_follows(window, image_folder, tmp_path):
    window.document.set_recipe(tiny_recipe(image_folder, "feature_extraction", name="from-a-file"))
    from_menu(window, "fine_tune_all")
    assert window.document.recipe.name == "from-a-file"
    assert run_name_edit(window).text() == "from-a-file"
