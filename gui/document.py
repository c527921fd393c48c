"""The studio's document: the Recipe being edited, plus what is known about its data and model.

Panels never keep their own copy of a fact: they read the document and edit it through `edit()` with the
engine's edit functions (engine/planning/*_edits.py, presets.apply_strategy), and every panel refreshes on
`recipe_changed`. The engine's plan (layer tree per phase, groups, lr curves) is derived from the recipe on demand
and cached until the recipe changes. Every change marks the document modified until it is saved (or replaced by a
recipe read from a file): the main window asks before unsaved edits would be lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from engine.data.scan import ScanReport
from engine.planning.presets import make_recipe
from engine.recipe import Recipe
from engine.train.runs import runs_root_for

if TYPE_CHECKING:
    from engine.planning.module_index import ModuleIndex
    from engine.planning.plan import RunPlan

STUDIO_STRATEGY, STUDIO_ARCH = "feature_extraction", "resnet18"
LOADING_TEXT = "Loading torch and the model zoo …"  # what a view that needs the engine says while it loads


def fresh_recipe(data_root: str = "", weights_resolved: bool = True) -> Recipe:
    """The recipe a new document starts with: the feature-extraction preset exactly as the Strategy menu gives it,
    with the pretrained weights this machine can use (offline, a cached version rather than an absent default).
    `weights_resolved=False` leaves the preset's "DEFAULT" (no torch needed): RecipeDocument.set_engine_loaded
    resolves it once the model zoo is imported."""
    recipe = make_recipe(STUDIO_STRATEGY, STUDIO_ARCH, data_root)
    if weights_resolved:
        _resolve_weights(recipe)
    return recipe


def _resolve_weights(recipe: Recipe) -> None:
    from engine.model.zoo import preferred_weights  # torch: the studio imports it off the GUI thread first

    recipe.model.weights = preferred_weights(recipe.model.arch)


class RecipeDocument(QObject):
    recipe_changed = Signal()  # any field of the recipe changed
    data_scanned = Signal()  # a new scan report is available (or it was cleared)
    path_changed = Signal(str)  # the recipe file this document is saved to
    modified_changed = Signal(bool)  # edits not saved yet (True), or saved / freshly read (False)
    engine_loaded = Signal()  # torch and the model zoo are imported: the plan and the model's facts can be read

    def __init__(self, recipe: Recipe | None = None, parent: QObject | None = None, engine_loaded: bool = True):
        """`engine_loaded=False`: the studio is starting and imports torch in a thread (gui/workers/loading.py); the
        document is usable for the data meanwhile, its plan is None ("loading") until set_engine_loaded()."""
        super().__init__(parent)
        self._engine_loaded = engine_loaded
        self._weights_pending = recipe is None and not engine_loaded  # a fresh recipe's weights, see fresh_recipe
        self._recipe = recipe or fresh_recipe(weights_resolved=engine_loaded)
        self._scan: ScanReport | None = None
        self._plan: RunPlan | None = None
        self._plan_error = ""
        self._modified = False
        self.path = ""

    # --- the engine ---------------------------------------------------------------------------------------------
    @property
    def is_engine_loaded(self) -> bool:
        """torch and the model zoo are imported (always, except while the studio starts)."""
        return self._engine_loaded

    def set_engine_loaded(self) -> None:
        """The studio's background imports ended: a fresh recipe gets its weights (as fresh_recipe gives them, not
        an edit: the modified state stays), the plan can be made, and every view refreshes."""
        if self._engine_loaded:
            return
        self._engine_loaded = True
        if self._weights_pending and self._recipe.model.weights == "DEFAULT":  # not chosen meanwhile
            _resolve_weights(self._recipe)
        self._weights_pending = False
        self._plan = None
        self.engine_loaded.emit()
        self.recipe_changed.emit()

    # --- the recipe -------------------------------------------------------------------------------------------
    @property
    def recipe(self) -> Recipe:
        """The live recipe. Read freely; change it only through edit() so that views refresh."""
        return self._recipe

    def set_recipe(self, recipe: Recipe) -> None:
        self._weights_pending = False  # the recipe names its own weights
        self._recipe = recipe.copy()
        self._changed()

    def edit(self, change: Callable[[Recipe], None]) -> None:
        """Apply `change` to the recipe and notify the views once."""
        change(self._recipe)
        self._changed()

    def _changed(self) -> None:
        self._plan = None
        self.set_modified(True)
        self.recipe_changed.emit()

    @property
    def runs_root(self) -> Path:
        """Where the recipe's runs are written (the engine's rule: its output_dir, else the default runs folder)."""
        return runs_root_for(self._recipe.output_dir)

    def set_path(self, path: str) -> None:
        self.path = path
        self.path_changed.emit(path)

    @property
    def is_modified(self) -> bool:
        """The recipe has edits that no file holds yet."""
        return self._modified

    def set_modified(self, modified: bool) -> None:
        if modified != self._modified:
            self._modified = modified
            self.modified_changed.emit(modified)

    # --- data ---------------------------------------------------------------------------------------------------
    @property
    def scan(self) -> ScanReport | None:
        return self._scan

    def set_scan(self, report: ScanReport | None) -> None:
        self._scan = report
        self._plan = None
        self.data_scanned.emit()

    @property
    def num_classes(self) -> int:
        if self._scan is not None and self._scan.classes:
            return max(2, len(self._scan.classes))
        return 2

    # --- the derived plan -------------------------------------------------------------------------------------
    def plan(self) -> RunPlan | None:
        """What the recipe will do per phase (layer tree, groups, lr curves); None if it cannot be planned."""
        if not self._engine_loaded:
            self._plan_error = LOADING_TEXT
            return None
        if self._plan is None:
            from engine.planning.plan import plan_run  # torch (see fresh_recipe)

            try:
                self._plan = plan_run(self._recipe, self.num_classes)
                self._plan_error = ""
            except Exception as exc:  # noqa: BLE001 - shown to the user, never fatal for the editor
                self._plan_error = str(exc)
                return None
        return self._plan

    @property
    def plan_error(self) -> str:
        return self._plan_error

    def trains_only_the_head(self, index: int) -> bool:
        """Does phase `index` train the head's parameters and nothing else (False when the recipe cannot be
        planned)?"""
        plan = self.plan()
        if plan is None:
            return False
        phase = plan.phases[index]

        def find(node):
            if node.path == plan.head_path:
                return node
            return next((found for child in node.children if (found := find(child)) is not None), None)

        head = find(phase.tree)
        return head is not None and 0 < phase.trainable_params == head.trainable_params

    def fits_head(self, index: int) -> bool:
        """Will phase `index` fit its head to convergence, as one epoch of the run: it asks for it, trains only the
        head and the features can be cached (engine/train/phase.py's head_fit_plan, before a model is built)."""
        phase = self._recipe.phases[index]
        return (phase.head_fit == "converge" and self._recipe.data.cache_features != "off"
                and self.trains_only_the_head(index))

    def run_epochs(self) -> list[int]:
        """Epochs per phase as the run will count them (a fitted head is one), for the views that draw phases."""
        return [1 if self.fits_head(i) else p.epochs for i, p in enumerate(self._recipe.phases)]

    def module_index(self) -> ModuleIndex | None:
        """The structure the freeze and group edits work on (the plan's model); None when the recipe cannot be
        planned (an unknown architecture)."""
        if self.plan() is None:
            return None
        from engine.planning.module_index import index_for

        return index_for(self._recipe.model, self.num_classes)
