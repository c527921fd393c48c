"""The studio's main window: the composition root. It creates the document, the training controller and the
panels, wires them together, and owns menus, the status bar, recipe files and the remembered window state.
It holds no facts of its own: the recipe lives in the document, runs in the runs folder. Unsaved edits are never
lost silently: New, Open, opening a run's recipe and closing ask Save / Discard / Cancel first, as document
applications do; the recipe file open last is reopened at the next start (and the status bar says so).

This module imports no torch: with `deferred=True` (how `python main.py` starts) the window shows at once with its
eight tabs and a working Data tab (choose, scan, browse a folder: none of it needs torch) while gui/workers/loading.py
imports torch and torchvision in a thread; the other tabs say they are loading until then, when they are built in
place and the window says `ready`. Without it (tests, benchmarks) everything is built in the constructor.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QEvent, Qt, QTimer, Signal, Slot, qVersion
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QToolButton,
    QWidget,
)

from engine import __version__ as thaw_version
from engine.errors import RecipeError
from engine.recipe import Recipe
from engine.train.runs import checkpoint_path
from gui.jobs.board import TrainingWaiter, job_board
from gui.jobs.runner import JobRunner
from gui.resources import app_icon
from gui.settings import StudioSettings
from gui.widgets.engine_loading_page import EngineLoadingPage
from gui.widgets.scrolling_tabs import ScrollingTabs
from gui.widgets.tooltips import install_wrapping_tooltips
from gui.workers.loading import Importer, start_imports
from gui.workers.threads import WorkerThread
from gui.workers.torch_threads import use_torch_threads

if TYPE_CHECKING:
    from gui.document import RecipeDocument

RECIPE_FILTER = "Thaw recipe (*.json);;All files (*)"
STATUS_INTERVAL_MS = 1000
STOP_ON_QUIT_TIMEOUT_MS = 120_000
STATUS_MESSAGE_MS = 15_000  # how long a start-up note (the reopened recipe) stays in the status bar
# The tabs, in order: (attribute, title, object name, tooltip). The Data tab is the one built before torch is loaded.
TABS = (
    ("data_panel", "Data", "dataPanel", "Which images, how they are split and augmented, and what cannot be used"),
    ("model_panel", "Model", "modelPanel", "The pretrained model, its weights and new head; tick what stays frozen"),
    ("optimizer_panel", "Optimizer", "optimizerPanel", "Learning rates per parameter group, the optimizer and the "
                                                       "schedule"),
    ("phases_panel", "Phases", "phasesPanel", "The run as phases: what trains, for how long"),
    ("training_panel", "Training", "trainingPanel", "Start, pause, stop and resume; live curves and the log"),
    ("runs_panel", "Runs", "runsPanel", "Every run: compare, rename, annotate, export, delete"),
    ("evaluate_panel", "Evaluate", "evaluatePanel", "Where a run's model errs, and why"),
    ("inference_panel", "Inference", "inferencePanel", "Classify images with a trained checkpoint"),
)
IMPORTS_UNPAINTED_MS = 200  # a shown window that has not painted by then starts loading torch anyway
PANEL_CLASSES = {  # attribute → (module, class): imported when the panel is made (deferred: once torch is there)
    "data_panel": ("gui.panels.data_panel", "DataPanel"),
    "model_panel": ("gui.panels.model_panel", "ModelPanel"),
    "optimizer_panel": ("gui.panels.optimizer_panel", "OptimizerPanel"),
    "phases_panel": ("gui.panels.phases_panel", "PhasesPanel"),
    "training_panel": ("gui.panels.training_panel", "TrainingPanel"),
    "runs_panel": ("gui.panels.runs_panel", "RunsPanel"),
    "evaluate_panel": ("gui.panels.evaluate_panel", "EvaluatePanel"),
    "inference_panel": ("gui.panels.inference_panel", "InferencePanel"),
}
WALKTHROUGH_WIDTH = 320  # pixels: the walkthrough's dock beside the tabs, narrow enough to leave them room


def process_memory_bytes() -> tuple[int, bool] | None:
    """(bytes, is_peak): the resident memory of this process from /proc, else the peak from `resource`."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"), False
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), True  # macOS reports bytes, Linux KiB


def memory_text() -> str:
    parts = []
    memory = process_memory_bytes()
    if memory is not None:
        amount, is_peak = memory
        parts.append(f"{'peak ' if is_peak else ''}RAM {amount / 2**20:,.0f} MB")
    torch = sys.modules.get("torch")  # not imported yet while the studio loads
    if torch is not None and torch.cuda.is_initialized():  # never initialise CUDA just to show a number
        parts.append(f"GPU {torch.cuda.memory_allocated() / 2**20:,.0f} MB "
                     f"(reserved {torch.cuda.memory_reserved() / 2**20:,.0f} MB)")
    return " · ".join(parts)


def _import_pyqtgraph() -> None:
    import pyqtgraph  # noqa: F401 - loaded now so that building the panels finds it


class MainWindow(QMainWindow):
    ready = Signal()  # every panel is built (at once unless deferred), the menus too

    def __init__(self, document: RecipeDocument | None = None, settings: StudioSettings | None = None,
                 parent: QWidget | None = None, deferred: bool = False, first_run_walkthrough: bool = False):
        """`first_run_walkthrough`: the lesson walkthrough opens once the tabs are built, unless it was finished or
        skipped before (`python main.py` asks for it; tests and the self-test do not, so it never shows unasked)."""
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowIcon(app_icon())
        install_wrapping_tooltips()  # long tooltips wrap instead of running off the screen
        self.settings = settings or StudioSettings()
        self.is_ready = False
        self._closing_after_stop = False
        self._placed = False  # geometry restored or placed (before torch, when deferred)
        self._exportable_run = ""  # the last finished run, for Run → Export this run…
        self._guide = None  # Help ▸ User guide, made when first asked for
        self._walkthrough = None  # Help ▸ Lesson walkthrough, made when first shown
        self._importer: Importer | None = None
        self._import_thread: WorkerThread | None = None
        self._imports_wanted = deferred  # started once the window has painted (see event())
        if deferred:
            self._build_before_torch(document)
        else:
            self._build(document)
        if first_run_walkthrough:
            self.when_ready(self._show_walkthrough_on_first_start)

    def when_ready(self, callback) -> None:
        """Call `callback` once the panels are built (now, if they are)."""
        if self.is_ready:
            callback()
        else:
            self.ready.connect(callback, Qt.ConnectionType.SingleShotConnection)

    def _build_before_torch(self, document: RecipeDocument | None) -> None:
        """The tabs, the Data tab built and the others saying they are loading: what needs no torch."""
        from gui.document import RecipeDocument

        self.document = document or RecipeDocument(engine_loaded=False)
        self._make_panel("data_panel")
        self.tabs = ScrollingTabs()  # pages scroll on a small screen instead of pushing the window off it
        self.tabs.setObjectName("mainTabs")
        self.loading_pages: list[EngineLoadingPage] = []
        for attribute, title, name, tip in TABS:
            if attribute == "data_panel":
                page = self.data_panel
            else:
                page = EngineLoadingPage(name, title)
                self.loading_pages.append(page)
            self.tabs.setTabToolTip(self.tabs.addTab(page, title), tip)
        self.setCentralWidget(self.tabs)
        self.settings.restore_window(self)
        self._placed = True
        self._restore_current_tab()
        self._update_title()

    def event(self, event: QEvent) -> bool:  # noqa: N802 - Qt's name (called during __init__ as well)
        handled = super().event(event)
        kind = event.type()
        if getattr(self, "_imports_wanted", False) and kind in (QEvent.Type.Paint, QEvent.Type.Show):
            # The import thread holds the GIL much of the time (a library's load holds it ~0.4 s): started after
            # the first paint, it cannot delay it. A window that is never exposed (the self-test's) has no paint.
            QTimer.singleShot(0 if kind == QEvent.Type.Paint else IMPORTS_UNPAINTED_MS, self._start_imports)
        return handled

    @Slot()
    def _start_imports(self) -> None:
        if self._imports_wanted:
            self._imports_wanted = False
            self._importer, self._import_thread = start_imports(self._on_imports_finished)

    @Slot()
    def _on_imports_finished(self) -> None:
        """torch is imported (deferred start): the other tabs are built in place, one per turn of the event loop so
        that the window keeps answering (each takes a fraction of a second), then the menus; then `ready`."""
        if self._importer.closed_early:
            return  # the window was closed while torch loaded
        self._import_thread.wait()
        if self._importer.error:  # a broken install: say so on the pages, build nothing that would crash
            logging.getLogger(__name__).error("loading torch failed:\n%s", self._importer.error)
            last = self._importer.error.strip().splitlines()[-1]
            for page in self.loading_pages:
                page.show_failure(f"Thaw could not load torch and torchvision:\n{last}\n\nThe log has the "
                                  f"details; `--self-test` checks the installation.")
            return
        use_torch_threads(1)  # the GUI thread never starts a torch thread pool (gui/workers/torch_threads.py)
        modified = self.document.is_modified  # the Data tab may have been used: its edits stay edits
        self.document.set_engine_loaded()  # before the panels: they read the plan as they are built
        self._build_steps = [_import_pyqtgraph, self._make_controller,
                             *(functools.partial(self._build_in_place, tab[0]) for tab in TABS
                               if tab[0] != "data_panel"),
                             functools.partial(self._finish_build, modified, False)]
        self._next_build_step()

    @Slot()
    def _next_build_step(self) -> None:
        if self._importer.closed_early:  # closed meanwhile (closeEvent)
            return
        self._build_steps.pop(0)()
        if self._build_steps:
            QTimer.singleShot(0, self._next_build_step)

    def _make_controller(self) -> None:
        from gui.workers.training import TrainingController

        self.controller = TrainingController(self)

    def _make_panel(self, attribute: str) -> QWidget:
        """The panel of a tab (TABS), made for the document; its module imported here (most import torch)."""
        import importlib

        module, class_name = PANEL_CLASSES[attribute]
        panel_class = getattr(importlib.import_module(module), class_name)
        if attribute == "training_panel":
            panel = panel_class(self.document, self.controller)
        else:
            panel = panel_class(self.document)
        setattr(self, attribute, panel)
        if not panel.objectName():
            panel.setObjectName(next(tab[2] for tab in TABS if tab[0] == attribute))
        return panel

    def _build_in_place(self, attribute: str) -> None:
        """A panel takes its loading page's place; the tab the user is on stays the current one."""
        _attribute, title, name, tip = next(tab for tab in TABS if tab[0] == attribute)
        page = next(page for page in self.loading_pages if page.objectName() == name)
        panel = self._make_panel(attribute)
        current, index = self.tabs.currentIndex(), self.tabs.indexOf(page)
        self.tabs.removeTab(index)
        self.tabs.insertTab(index, panel, title)
        self.tabs.setTabToolTip(index, tip)
        self.tabs.setCurrentIndex(current)
        self.loading_pages.remove(page)
        page.deleteLater()

    def _build(self, document: RecipeDocument | None) -> None:
        """Everything at once (not deferred: tests, benchmarks, the self-test's second window)."""
        use_torch_threads(1)  # the GUI thread never starts a torch thread pool (gui/workers/torch_threads.py)
        from gui.document import RecipeDocument

        self.document = document or RecipeDocument()
        self._make_controller()
        self.tabs = ScrollingTabs()  # pages scroll on a small screen instead of pushing the window off it
        self.tabs.setObjectName("mainTabs")
        for attribute, title, _name, tip in TABS:
            self.tabs.setTabToolTip(self.tabs.addTab(self._make_panel(attribute), title), tip)
        self.setCentralWidget(self.tabs)
        self._finish_build(False, True)

    def _finish_build(self, modified: bool, restore_current_tab: bool) -> None:
        """The menus, the status bar and the wiring, once every panel is there; then `ready`."""
        self._build_menus()
        self._build_status_bar()
        self._wire_panels()
        self._restore_settings(restore_current_tab)  # a deferred start restored it, and the user may have moved
        self._release_tab_key()
        self.document.set_modified(modified)
        self._update_title()
        self.setWindowModified(self.document.is_modified)
        self.is_ready = True
        self.ready.emit()

    def _release_tab_key(self) -> None:
        """Tab leaves a table for the next widget instead of walking it cell by cell (arrow keys move between
        cells), in every table and list of the studio."""
        for view in self.findChildren(QAbstractItemView):
            view.setTabKeyNavigation(False)

    # --- construction ---------------------------------------------------------------------------------------------
    def _action(self, name: str, text: str, slot, shortcut: QKeySequence | str | None = None,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        from engine.planning.presets import STRATEGIES

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.newRecipeAction = self._action("newRecipeAction", "&New recipe", self.new_recipe,
                                            QKeySequence.StandardKey.New)
        self.openRecipeAction = self._action("openRecipeAction", "&Open recipe…", self._on_open_recipe, "Ctrl+O")
        self.saveRecipeAction = self._action("saveRecipeAction", "&Save recipe", self._on_save_recipe, "Ctrl+S")
        self.saveRecipeAsAction = self._action("saveRecipeAsAction", "Save recipe &as…", self._on_save_recipe_as,
                                               QKeySequence.StandardKey.SaveAs)
        self.quitAction = self._action("quitAction", "&Quit", self.close, "Ctrl+Q")
        for action in (self.newRecipeAction, self.openRecipeAction, self.saveRecipeAction, self.saveRecipeAsAction):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.quitAction)

        strategy_menu = bar.addMenu("&Strategy")
        self.strategy_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for name, description in STRATEGIES.items():
            action = self._action(f"strategyAction_{name}", name.replace("_", " ").capitalize(),
                                  lambda _checked=False, s=name: self.apply_strategy(s), tip=description)
            action.setToolTip(description)
            action.setCheckable(True)
            group.addAction(action)
            strategy_menu.addAction(action)
            self.strategy_actions[name] = action

        model_menu = bar.addMenu("&Model")
        self.compareModelsAction = self._action("compareModelsAction", "&Compare architectures…",
                                                self._on_compare_models, None,
                                                "Measure architectures on this recipe's data: accuracy of a fitted "
                                                "head on frozen features against latency and size")
        model_menu.addAction(self.compareModelsAction)
        self.domainPretrainAction = self._action("domainPretrainAction", "&Domain pre-training…",
                                                 self._on_domain_pretraining, None,
                                                 "Continue the recipe's backbone self-supervised on unlabeled images "
                                                 "of your domain, then start the recipe from those weights")
        model_menu.addAction(self.domainPretrainAction)

        run_menu = bar.addMenu("&Run")
        run_actions = self.training_panel.run_actions  # the Training tab's buttons show these same actions
        self.startRunAction, self.pauseRunAction = run_actions.start, run_actions.pause
        self.stopRunAction, self.resumeRunAction = run_actions.stop, run_actions.resume
        for action in (self.startRunAction, self.resumeRunAction):  # a run started from the menu is shown
            action.triggered.connect(self._show_training_tab)
        self.exportRunAction = self._action("exportRunAction", "&Export this run…", self._on_export_run, None,
                                            "Export the last finished run's best checkpoint (ONNX, torch.export, "
                                            "TorchScript), checked against it")
        self.exportRunAction.setEnabled(False)
        for action in (self.startRunAction, self.pauseRunAction, self.stopRunAction, self.resumeRunAction,
                       self.exportRunAction):
            run_menu.addAction(action)

        help_menu = bar.addMenu("&Help")
        self.guideAction = self._action("guideAction", "&User guide", self.show_guide,
                                        QKeySequence.StandardKey.HelpContents,
                                        "The studio's guide: every tab, what it does and why")
        self.walkthroughAction = self._action("walkthroughAction", "&Lesson walkthrough", self.show_walkthrough,
                                              None, "The lesson's path, tab by tab: data, model, phases, optimizer, "
                                                    "training, runs, evaluate, inference")
        self.shortcutsAction = self._action("shortcutsAction", "&Keyboard shortcuts", self.show_shortcuts, None,
                                            "Every action that has a key, with its key")
        self.aboutAction = self._action("aboutAction", "&About Thaw", self._on_about)
        help_menu.addAction(self.guideAction)
        help_menu.addAction(self.walkthroughAction)
        help_menu.addAction(self.shortcutsAction)
        help_menu.addSeparator()
        help_menu.addAction(self.aboutAction)

    def _build_status_bar(self) -> None:
        from engine.train.devices import expected_device

        device = expected_device("auto")
        self.deviceStatusLabel = QLabel(f"Device: {device.text}" + (" (no GPU found)" if device.warning else ""))
        self.deviceStatusLabel.setObjectName("deviceStatusLabel")
        self.deviceStatusLabel.setToolTip(device.warning or "Where training runs with device 'auto'")
        self.memoryStatusLabel = QLabel()
        self.memoryStatusLabel.setObjectName("memoryStatusLabel")
        self._build_jobs_dock()
        self.statusBar().addPermanentWidget(self.jobsStatusButton)
        self.statusBar().addPermanentWidget(self.deviceStatusLabel)
        self.statusBar().addPermanentWidget(self.memoryStatusLabel)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_INTERVAL_MS)
        self._status_timer.timeout.connect(self._update_memory)
        self._status_timer.start()
        self._update_memory()

    def _build_jobs_dock(self) -> None:
        """The device queue, in a dock the status bar's Jobs button shows; it opens by itself when a job has to
        wait, so that a job never seems to hang."""
        from gui.jobs.queue_view import JobQueueView

        self.jobQueueView = JobQueueView()
        self.jobsDock = QDockWidget("Jobs", self)
        self.jobsDock.setObjectName("jobsDock")
        self.jobsDock.setWidget(self.jobQueueView)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.jobsDock)
        self.jobsDock.hide()
        for name, tip in (("qt_dockwidget_closebutton", "Hide the jobs (the status bar's Jobs button shows them)"),
                          ("qt_dockwidget_floatbutton", "Float the jobs in a window of their own, or dock them")):
            button = self.jobsDock.findChild(QAbstractButton, name)
            if button is not None:
                button.setToolTip(tip)
        self.jobsStatusButton = QToolButton()
        self.jobsStatusButton.setObjectName("jobsStatusButton")
        self.jobsStatusButton.setAutoRaise(True)
        self.jobsStatusButton.setToolTip("Show the jobs running and waiting for the device")
        self.jobsStatusButton.clicked.connect(lambda: self.jobsDock.setVisible(not self.jobsDock.isVisible()))
        job_board().jobs_changed.connect(self._on_jobs_changed)
        self._on_jobs_changed()

    @Slot()
    def _on_jobs_changed(self) -> None:
        self.jobsStatusButton.setText(self.jobQueueView.summary())
        if job_board().queued() and not self.jobsDock.isVisible():
            self.jobsDock.show()

    def _wire_panels(self) -> None:
        d, c = self.document, self.controller
        d.recipe_changed.connect(self._on_recipe_changed)
        d.path_changed.connect(self._update_title)
        d.modified_changed.connect(self._on_modified_changed)
        # A weak reference: a lambda holding the window would make a reference cycle, which Python's collector may
        # break in any thread, destroying the window's widgets outside the GUI thread.
        window = weakref.ref(self)
        self.runs_panel.may_replace_recipe = lambda: (w := window()) is not None and w.maybe_save_changes(
            "opening the run's recipe")
        c.running_changed.connect(self._on_running_changed)
        c.running_changed.connect(job_board().set_training)  # a run holds the device: other jobs queue behind it
        c.event_emitted.connect(self._on_event)
        c.event_emitted.connect(self.evaluate_panel.handle_event)  # a finished run's evaluation.json is shown
        self.evaluate_panel.drift_shown.connect(self.model_panel.show_drift)  # the layer tree's Drift column
        for bar in (self.evaluate_panel.labels_view.suspectRelabelBar,
                    self.evaluate_panel.errors_view.galleryRelabelBar, self.inference_panel.inferenceRelabelBar):
            bar.image_relabelled.connect(self.data_panel.follow_relabel)  # the Data tab's counts follow a move
        self.training_panel.run_ended.connect(self._on_run_ended)
        self.runs_panel.checkpoint_chosen.connect(self._on_checkpoint_chosen)
        self.runs_panel.runs_deleted.connect(self._on_runs_deleted)
        app = QApplication.instance()
        if app is not None:
            # Any other way out (Ctrl+C, app.quit()) must still not destroy a running thread.
            app.aboutToQuit.connect(self._on_about_to_quit)
        self._on_recipe_changed()

    # --- recipe files ----------------------------------------------------------------------------------------
    @Slot()
    def new_recipe(self) -> bool:
        """A fresh recipe (the studio's starting preset) for the same data folder, once unsaved edits are saved or
        discarded. False when the user cancelled."""
        from gui.document import fresh_recipe

        if not self.maybe_save_changes("starting a new recipe"):
            return False
        self.document.set_recipe(fresh_recipe(self.document.recipe.data.root))
        self.document.set_path("")
        self.document.set_modified(False)
        return True

    def open_recipe(self, path: str) -> bool:
        """Read a recipe file into the document (without asking: the menu's Open asks first)."""
        try:
            recipe = Recipe.load(path)
        except (RecipeError, OSError) as exc:
            self._show_error("Cannot open recipe", f"{path}\n\n{exc}")
            return False
        self._take_recipe_file(recipe, str(path))
        return True

    def _take_recipe_file(self, recipe: Recipe, path: str) -> None:
        self.document.set_recipe(recipe)
        self.document.set_path(path)
        self.document.set_modified(False)
        self._remember_recipe_file(path)

    def _remember_recipe_file(self, path: str) -> None:
        self.settings.set_last_folder("recipe", str(Path(path).parent))
        self.settings.last_recipe = str(Path(path).resolve())

    def save_recipe(self, path: str) -> bool:
        try:
            recipe = self.document.recipe.copy()  # validates: an invalid recipe is not written
            recipe.save(path)
        except RecipeError as exc:
            self._show_error("Cannot save recipe", f"The recipe is not valid: {exc}")
            return False
        except OSError as exc:
            self._show_error("Cannot save recipe", f"{path}\n\n{exc}")
            return False
        self.document.set_path(str(path))
        self.document.set_modified(False)
        self._remember_recipe_file(str(path))
        return True

    def reopen_last_recipe(self) -> bool:
        """At start-up without arguments: open the recipe file that was open last, and say so in the status bar
        (or say why it could not be). False when there was none or it could not be read."""
        path = self.settings.last_recipe
        if not path:
            return False
        if not Path(path).is_file():
            self.statusBar().showMessage(f"The last recipe, {path}, is gone: this is a new recipe.",
                                         STATUS_MESSAGE_MS)
            self.settings.last_recipe = ""
            return False
        try:
            recipe = Recipe.load(path)
        except (RecipeError, OSError) as exc:
            self.statusBar().showMessage(f"Could not reopen the last recipe, {path}: {exc}", STATUS_MESSAGE_MS)
            return False
        self._take_recipe_file(recipe, path)
        self.statusBar().showMessage(f"Reopened the last recipe: {path}", STATUS_MESSAGE_MS)
        return True

    def maybe_save_changes(self, doing: str) -> bool:
        """Before unsaved edits would be lost (`doing`: "quitting", "opening another recipe" …): ask Save / Discard
        / Cancel. True when the work may go on: nothing was unsaved, it was saved, or the user discarded it."""
        if not self.document.is_modified:
            return True
        answer = self._ask_unsaved_changes(doing)
        if answer == QMessageBox.StandardButton.Save:
            return self._on_save_recipe()
        return answer == QMessageBox.StandardButton.Discard

    def _ask_unsaved_changes(self, doing: str) -> QMessageBox.StandardButton:
        where = f"“{Path(self.document.path).name}”" if self.document.path else "this new recipe"
        box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved changes",
                          f"The recipe “{self.document.recipe.name}” has changes that are not saved in {where}.",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)
        box.setObjectName("unsavedChangesBox")
        box.setInformativeText(f"Save them before {doing}?")
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        box.setEscapeButton(QMessageBox.StandardButton.Cancel)
        return QMessageBox.StandardButton(box.exec())

    @Slot()
    def _on_open_recipe(self) -> None:
        if not self.maybe_save_changes("opening another recipe"):
            return
        path = self._ask_open_path()
        if path:
            self.open_recipe(path)

    @Slot()
    def _on_save_recipe(self) -> bool:
        if self.document.path:
            return self.save_recipe(self.document.path)
        return self._on_save_recipe_as()

    @Slot()
    def _on_save_recipe_as(self) -> bool:
        path = self._ask_save_path()
        if not path:
            return False
        return self.save_recipe(path if path.lower().endswith(".json") else path + ".json")

    def _ask_open_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, "Open recipe", self.settings.last_folder("recipe"), RECIPE_FILTER)
        return path

    def _ask_save_path(self) -> str:
        start = self.document.path or str(Path(self.settings.last_folder("recipe") or Path.home())
                                          / f"{self.document.recipe.name}.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save recipe", start, RECIPE_FILTER)
        return path

    def set_data_root(self, folder: str) -> None:
        self.data_panel.set_data_folder(folder)

    def apply_strategy(self, strategy: str) -> None:
        """Make the recipe follow a strategy preset: its phases with the lesson's epochs, as everywhere a strategy is
        chosen (engine/planning/presets.py `apply_strategy`)."""
        from engine.planning.presets import apply_strategy

        self.document.edit(lambda recipe: apply_strategy(recipe, strategy))

    def _show_error(self, title: str, message: str) -> None:
        QMessageBox.warning(self, title, message)

    # --- runs ------------------------------------------------------------------------------------------------
    @Slot()
    def _show_training_tab(self) -> None:
        self.tabs.setCurrentWidget(self.training_panel)

    @Slot(bool)
    def _on_running_changed(self, running: bool) -> None:
        if not running and self._closing_after_stop:
            self.close()

    @Slot(object)
    def _on_event(self, event) -> None:
        from engine.train.events import FreezeVerified, RunStarted

        if isinstance(event, RunStarted):  # the Runs tab lists the run from its start
            self.runs_panel.refresh()
        if isinstance(event, FreezeVerified):  # the layer tree marks what moved
            self.model_panel.show_freeze_verification(event.phase_index, event.moved, event.checked_tensors)

    @Slot(str, str)
    def _on_run_ended(self, run_dir: str, status: str) -> None:
        self.runs_panel.refresh()
        self.evaluate_panel.refresh_runs()
        self.inference_panel.refresh_checkpoints()
        if run_dir:
            self.runs_panel.select_run(run_dir)
        best = checkpoint_path(run_dir, "best") if run_dir else None
        finished = status in ("finished", "early_stopped") and best is not None and best.is_file()
        if finished:
            self.inference_panel.offer_checkpoint(str(best))  # the newest model, unless one was chosen by hand
        self._exportable_run = run_dir if finished else ""
        self.exportRunAction.setEnabled(finished)

    @Slot()
    def _on_compare_models(self) -> None:
        from gui.compare_models_dialog import CompareModelsDialog

        dialog = CompareModelsDialog(self.document, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    @Slot()
    def _on_domain_pretraining(self) -> None:
        from gui.pretrain_dialog import PretrainDialog

        dialog = PretrainDialog(self.document, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def _on_export_run(self) -> None:
        if self._exportable_run:
            self.runs_panel.open_export_dialog(self._exportable_run)

    @Slot(list)
    def _on_runs_deleted(self, run_dirs: list) -> None:
        """Other tabs list runs as well: they must not offer a deleted one."""
        self.evaluate_panel.refresh_runs()
        self.inference_panel.refresh_checkpoints()
        if self._exportable_run in run_dirs:
            self._exportable_run = ""
            self.exportRunAction.setEnabled(False)

    @Slot(str)
    def _on_checkpoint_chosen(self, path: str) -> None:
        self.inference_panel.set_checkpoint(path)
        self.tabs.setCurrentWidget(self.inference_panel)

    # --- title, status, about --------------------------------------------------------------------------------
    @Slot()
    def _on_recipe_changed(self) -> None:
        self._update_title()
        strategy = self.strategy_actions.get(self.document.recipe.strategy)
        for action in self.strategy_actions.values():
            action.setChecked(action is strategy)

    @Slot(bool)
    def _on_modified_changed(self, modified: bool) -> None:
        self._update_title()  # first: the title must hold the [*] placeholder before the window is marked modified
        self.setWindowModified(modified)

    def _update_title(self, *_args) -> None:
        self.setWindowTitle(f"Thaw — {self.document.recipe.name}[*]")

    @Slot()
    def _update_memory(self) -> None:
        self.memoryStatusLabel.setText(memory_text())

    def about_text(self) -> str:
        import pyqtgraph as pg
        import torch
        import torchvision

        from engine.train.devices import expected_device

        device = expected_device("auto")
        return (f"<h3>Thaw {thaw_version}</h3><p>A studio for transfer learning and fine-tuning of image "
                f"classifiers.</p><p>torch {torch.__version__} · torchvision {torchvision.__version__}<br>"
                f"PySide6 {pyside_version} (Qt {qVersion()}) · pyqtgraph {pg.__version__}<br>"
                f"Device: {device.text}{' — ' + device.warning if device.warning else ''}</p>")

    @Slot()
    def show_guide(self) -> None:
        """Help ▸ User guide: docs/GUI.md beside the window (one dialog, raised again when asked twice)."""
        from gui.help_dialogs import GuideDialog

        if self._guide is None:
            self._guide = GuideDialog(self)
        self._guide.show()
        self._guide.raise_()

    @Slot()
    def show_walkthrough(self) -> None:
        """Help ▸ Lesson walkthrough: the lesson's path from its first step, in a dock beside the tabs (one dock,
        started again when asked twice)."""
        from gui.walkthrough import LessonWalkthrough

        if self._walkthrough is None:
            self._walkthrough = LessonWalkthrough(self.tabs, self.settings, self)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self._walkthrough)
            self.resizeDocks([self._walkthrough], [WALKTHROUGH_WIDTH], Qt.Orientation.Horizontal)
        self._walkthrough.start()

    @Slot()
    def _show_walkthrough_on_first_start(self) -> None:
        if not self.settings.walkthrough_done:
            self.show_walkthrough()

    def show_shortcuts(self) -> None:
        from gui.help_dialogs import ShortcutsDialog

        # In menu order: the Run menu's actions are the Training tab's, which findChildren would list first.
        in_menus = [a for menu in self.menuBar().actions() if menu.menu() for a in menu.menu().actions()]
        dialog = ShortcutsDialog(in_menus + [a for a in self.findChildren(QAction) if a not in in_menus], self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def _on_about(self) -> None:
        QMessageBox.about(self, "About Thaw", self.about_text())

    # --- settings and closing --------------------------------------------------------------------------------
    def _restore_settings(self, current_tab: bool = True) -> None:
        if not self._placed:  # a deferred start placed the window already, and the user may have moved it since
            self.settings.restore_window(self)
            self._placed = True
        if current_tab:
            self._restore_current_tab()

    def _restore_current_tab(self) -> None:
        name = self.settings.current_tab
        for i in range(self.tabs.count()):
            if self.tabs.widget(i).objectName() == name:
                self.tabs.setCurrentIndex(i)

    def _save_settings(self) -> None:
        self.settings.save_window(self)
        self.settings.current_tab = self.tabs.currentWidget().objectName()
        self.settings.sync()

    def _confirm_close(self) -> bool:
        """Ask whether to stop the active run (its checkpoint is saved) and close. Tests replace this."""
        box = QMessageBox(QMessageBox.Icon.Question, "A run is in progress",
                          "Training is still running. Stop it and close? A checkpoint is saved, so the run can be "
                          "resumed later.", parent=self)
        stop = box.addButton("Stop and save", QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)
        box.exec()
        return box.clickedButton() is stop

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        asked = False
        if not self.is_ready:  # closed while loading: the import cannot be interrupted, it ends in a moment
            if not self.maybe_save_changes("quitting"):  # the Data tab may have been edited meanwhile
                event.ignore()
                return
            asked = True
        if not self.is_ready:  # (the question's event loop may have let the rest be built: then as any close)
            self._imports_wanted = False
            if self._importer is not None:
                self._importer.closed_early = True
                self._import_thread.wait()
            self.shutdown_jobs()  # the Data tab's scan may be running, and the tabs built so far may have jobs
            self._save_settings()
            super().closeEvent(event)
            return
        if not asked and not self._closing_after_stop and not self.maybe_save_changes("quitting"):
            event.ignore()
            return
        if self.controller.is_running:
            # Close once the run has stopped and its checkpoint is written; the window stays responsive meanwhile.
            event.ignore()
            if not self._closing_after_stop and self._confirm_close():
                self._closing_after_stop = True
                self.statusBar().showMessage("Stopping the run and saving a checkpoint …")
                self.training_panel.stop_run()
            return
        self._closing_after_stop = False
        self._status_timer.stop()
        self.shutdown_jobs()
        self._save_settings()
        super().closeEvent(event)

    def shutdown_jobs(self) -> None:
        """Cancel every background job of the window — queued or running, in any panel or dialog — and wait for
        their threads: Qt aborts the process when a running QThread is destroyed at exit."""
        for waiter in self.findChildren(TrainingWaiter):  # a start that waited for the device never comes
            waiter.cancel()
        job_board().shutdown(self.findChildren(JobRunner))
        for attribute in ("data_panel", "evaluate_panel", "inference_panel"):
            panel = getattr(self, attribute, None)  # closed while the tabs were being built: some are not there
            if panel is not None:
                panel.shutdown()

    @Slot()
    def _on_about_to_quit(self) -> None:
        self.controller.stop_and_wait(STOP_ON_QUIT_TIMEOUT_MS)
        if self.is_ready:
            self.shutdown_jobs()
