"""The Model tab: the architecture and its weights, the new head, a strategy preset, the run's name, and the
selected phase's layer tree, where ticking a module freezes it. Every change is an engine edit
(engine/planning/) applied through the document."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, QPoint, QSignalBlocker, Qt
from PySide6.QtGui import QAction, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSpinBox,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from engine.infer.drift import WeightDrift
from engine.model import zoo
from engine.model.groups import phase_groups
from engine.model.layer_tree import trainable_summary
from engine.planning.group_edits import move_to_group
from engine.planning.model_edits import set_arch, set_in_channels, set_weights, set_weights_file
from engine.planning.presets import STRATEGIES, apply_strategy
from engine.planning.run_name import generated_name, has_generated_name, set_run_name
from engine.recipe import BN_MODES
from gui.document import RecipeDocument
from gui.models.layer_tree_model import COL_MODULE, COLUMNS, LayerTreeModel, PathRole
from gui.models.phase_selection import PhaseCombo, PhaseSelection
from gui.widgets.tooltips import set_tooltips

ArchRole = Qt.ItemDataRole.UserRole + 1
DEFAULT, NONE, LOCAL_FILE, CHOOSE_FILE = "DEFAULT", "none", "<local file>", "<choose file>"
TREE_LEGEND = ("☑ ticked = frozen ❄ (keeps its pretrained weights) · ☐ unticked = trains · ◪ partly frozen · "
               "right-click for BatchNorm modes and parameter groups")
TIPS = {
    "modelCombo": "A torchvision classification model, by family; the line below gives its size, input and "
                  "ImageNet accuracy",
    "weightsCombo": "The pretrained weights to start from: torchvision's (exact versions, cached or to download), "
                    "a state dict (.pth) you have (“Local file…”), or none (train from scratch). Offline "
                    "(THAW_OFFLINE) only cached weights or a local file can load",
    "headDropoutSpin": "Dropout before the new classifier's last layer (0: none); helps against overfitting small "
                       "data",
    "headHiddenSpin": "Units of a hidden layer in the new head (Linear → ReLU → Dropout → Linear); 0: one Linear "
                      "layer, as in the lesson",
    "phaseCombo": "The phase whose freeze plan the tree shows and edits",
}


class ModelCombo(QComboBox):
    """Every torchvision classification model, under a heading per family."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        items = QStandardItemModel(self)
        families: dict[str, list[str]] = {}
        for name in zoo.list_model_names():
            families.setdefault(zoo.family_of(name), []).append(name)
        for family in sorted(families):
            heading = QStandardItem(family)
            heading.setFlags(Qt.ItemFlag.NoItemFlags)
            font = heading.font()
            font.setBold(True)
            heading.setFont(font)
            items.appendRow(heading)
            for name in sorted(families[family]):
                item = QStandardItem(name)
                item.setData(name, ArchRole)
                items.appendRow(item)
        self.setModel(items)
        self.setMaxVisibleItems(25)

    def arch(self) -> str:
        return self.currentData(ArchRole) or ""

    def set_arch(self, arch: str) -> None:
        self.setCurrentIndex(self.findData(arch, ArchRole))


class ModelPanel(QWidget):
    def __init__(self, document: RecipeDocument, parent: QWidget | None = None,
                 selection: PhaseSelection | None = None):
        super().__init__(parent)
        self.setObjectName("modelPanel")
        self._document = document
        self._selection = selection or PhaseSelection.for_document(document)
        self._model_infos: dict[str, zoo.ModelInfo] = {}  # model_info looks at files; once per arch is enough
        self.tree_model = LayerTreeModel(document, self._selection, self)
        self._expanded: set[str] = {""}
        self._drift_run = ""  # the run whose weight drift the tree shows
        self._build()

        self._model_combo.currentIndexChanged.connect(self._on_model_chosen)
        self._weights_combo.currentIndexChanged.connect(self._on_weights_chosen)
        self._in_channels_spin.valueChanged.connect(self._on_in_channels_changed)
        self._head_dropout_spin.valueChanged.connect(self._on_head_dropout_changed)
        self._head_hidden_spin.valueChanged.connect(self._on_head_hidden_changed)
        self._apply_strategy_button.clicked.connect(self._on_apply_strategy)
        self._run_name_edit.editingFinished.connect(self._on_run_name_edited)
        self._tree.customContextMenuRequested.connect(self._on_context_menu)
        self._tree.expanded.connect(lambda index: self._expanded.add(index.data(PathRole)))
        self._tree.collapsed.connect(lambda index: self._expanded.discard(index.data(PathRole)))
        self.tree_model.modelReset.connect(self._restore_expansion)

        document.recipe_changed.connect(self._refresh)
        document.data_scanned.connect(self._refresh)
        self._selection.index_changed.connect(self._refresh)
        self._refresh()
        self._restore_expansion()

    # --- layout --------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self._model_combo = ModelCombo()
        self._model_combo.setObjectName("modelCombo")
        self._model_info_label = QLabel()
        self._model_info_label.setObjectName("modelInfoLabel")
        self._weights_combo = QComboBox()
        self._weights_combo.setObjectName("weightsCombo")
        self._in_channels_spin = QSpinBox()
        self._in_channels_spin.setObjectName("inChannelsSpin")
        self._in_channels_spin.setRange(1, 16)
        self._in_channels_spin.setToolTip("Input channels: 1 for greyscale, 4+ for extra bands (IR, depth); the "
                                          "first convolution is adapted, keeping the pretrained RGB filters")
        self._head_dropout_spin = QDoubleSpinBox()
        self._head_dropout_spin.setObjectName("headDropoutSpin")
        self._head_dropout_spin.setRange(0.0, 0.95)
        self._head_dropout_spin.setSingleStep(0.05)
        self._head_hidden_spin = QSpinBox()
        self._head_hidden_spin.setObjectName("headHiddenSpin")
        self._head_hidden_spin.setRange(0, 8192)
        self._head_hidden_spin.setSingleStep(64)
        self._head_hidden_spin.setSpecialValueText("none (one Linear layer)")
        for spin in (self._in_channels_spin, self._head_dropout_spin, self._head_hidden_spin):
            spin.setKeyboardTracking(False)

        self._strategy_combo = QComboBox()
        self._strategy_combo.setObjectName("strategyCombo")
        self._strategy_combo.setToolTip("A strategy of the lesson; \"Apply strategy\" makes the recipe's phases its "
                                        "phases")
        for i, (name, description) in enumerate(STRATEGIES.items()):
            self._strategy_combo.addItem(name.replace("_", " "), name)
            self._strategy_combo.setItemData(i, description, Qt.ItemDataRole.ToolTipRole)
        self._apply_strategy_button = QPushButton("Apply strategy")
        self._apply_strategy_button.setObjectName("applyStrategyButton")
        self._apply_strategy_button.setToolTip("Replace the phases by the strategy's, with the lesson's epochs (data, "
                                               "model, batch and device settings stay)")
        self._run_name_edit = QLineEdit()
        self._run_name_edit.setObjectName("runNameEdit")
        self._run_name_edit.setClearButtonEnabled(True)
        self._run_name_edit.setToolTip("The run's name in the Runs tab and its folder. Left empty, it follows the "
                                       "model and the strategy (shown greyed); a typed name is kept")

        form = QFormLayout()
        form.addRow("Model", self._model_combo)
        form.addRow("", self._model_info_label)
        form.addRow("Weights", self._weights_combo)
        form.addRow("Input channels", self._in_channels_spin)
        head_row = QHBoxLayout()
        head_row.addWidget(QLabel("dropout"))
        head_row.addWidget(self._head_dropout_spin)
        head_row.addWidget(QLabel("hidden units"))
        head_row.addWidget(self._head_hidden_spin)
        head_row.addStretch(1)
        form.addRow("New head", head_row)
        strategy_row = QHBoxLayout()
        strategy_row.addWidget(self._strategy_combo, 1)
        strategy_row.addWidget(self._apply_strategy_button)
        form.addRow("Strategy", strategy_row)
        form.addRow("Run name", self._run_name_edit)

        self._phase_combo = PhaseCombo(self._document, self._selection)
        self._phase_combo.setObjectName("phaseCombo")
        self._trainable_label = QLabel()
        self._trainable_label.setObjectName("trainableLabel")
        phase_row = QHBoxLayout()
        phase_row.addWidget(QLabel("Phase"))
        phase_row.addWidget(self._phase_combo)
        phase_row.addWidget(self._trainable_label, 1)

        self._tree = QTreeView()
        self._tree.setObjectName("layerTree")
        self._tree.setModel(self.tree_model)
        self._tree.setUniformRowHeights(True)  # keeps ViT-L / EfficientNet-B7 trees fast to scroll
        self._tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._tree.setToolTip("Tick a module to freeze it (❄), untick to train it; right-click for BN modes and "
                              "parameter groups")
        # Fixed widths: ResizeToContents would measure every expanded row on every change (minutes on B7).
        header = self._tree.header()
        header.setStretchLastSection(False)
        for i, column in enumerate(COLUMNS):
            header.resizeSection(i, column.width)

        self._tree_legend = QLabel(TREE_LEGEND)
        self._tree_legend.setObjectName("treeLegendLabel")
        self._tree_legend.setWordWrap(True)
        self._verified_label = QLabel()
        self._verified_label.setObjectName("verifiedLabel")
        self._verified_label.setWordWrap(True)
        self._drift_label = QLabel()
        self._drift_label.setObjectName("treeDriftLabel")
        self._drift_label.setWordWrap(True)
        self._drift_label.setText("Drift: evaluate a run (Evaluate tab) to see how far each layer moved from where "
                                  "it started.")
        self._error_label = QLabel()
        self._error_label.setObjectName("modelErrorLabel")
        self._error_label.setWordWrap(True)
        self._error_label.setStyleSheet("color: #c62828;")

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(phase_row)
        layout.addWidget(self._tree_legend)
        layout.addWidget(self._tree, 1)
        layout.addWidget(self._verified_label)
        layout.addWidget(self._drift_label)
        layout.addWidget(self._error_label)
        set_tooltips(self, TIPS)

    # --- reading the document ------------------------------------------------------------------------------
    def _refresh(self) -> None:
        model = self._document.recipe.model
        with QSignalBlocker(self._model_combo):
            self._model_combo.set_arch(model.arch)
        self._fill_weights()
        for spin, value in ((self._in_channels_spin, model.in_channels), (self._head_dropout_spin, model.head.dropout),
                            (self._head_hidden_spin, model.head.hidden)):
            with QSignalBlocker(spin):
                spin.setValue(value)
        with QSignalBlocker(self._strategy_combo):
            position = self._strategy_combo.findData(self._document.recipe.strategy)
            if position >= 0:
                self._strategy_combo.setCurrentIndex(position)
        self._show_run_name()
        self._show_summary()

    def _show_run_name(self) -> None:
        """A generated name as the greyed placeholder of an empty field (it follows the model and the strategy);
        a typed one as the text."""
        recipe = self._document.recipe
        self._run_name_edit.setPlaceholderText(generated_name(recipe.model.arch, recipe.strategy))
        text = "" if has_generated_name(recipe) else recipe.name
        edit = self._run_name_edit
        if edit.hasFocus() and edit.isModified():
            return  # being typed: editingFinished writes it
        if edit.text() != text:
            with QSignalBlocker(edit):
                edit.setText(text)

    def _info(self, arch: str) -> zoo.ModelInfo | None:
        if arch not in self._model_infos:
            try:
                self._model_infos[arch] = zoo.model_info(arch)
            except Exception:  # noqa: BLE001 - an unknown arch is reported by the plan's error
                return None
        return self._model_infos[arch]

    def _fill_weights(self) -> None:
        model = self._document.recipe.model
        info = self._info(model.arch)
        combo = self._weights_combo
        with QSignalBlocker(combo):
            combo.clear()
            if info is not None and info.default_weights is not None:
                combo.addItem(f"DEFAULT ({info.default_weights.name})", DEFAULT)
                for weights in info.weights:
                    acc = f"acc@1 {weights.acc1:.2f} %" if weights.acc1 is not None else "no ImageNet accuracy"
                    where = "cached" if weights.cached else (
                        f"download {weights.file_size_mb:.0f} MB" if weights.file_size_mb else "not cached")
                    combo.addItem(f"{weights.name} — {acc} — {where}", weights.name)
            if model.weights_file:
                combo.addItem(f"Local file: {Path(model.weights_file).name}", LOCAL_FILE)
                combo.setItemData(combo.count() - 1, model.weights_file, Qt.ItemDataRole.ToolTipRole)
            combo.addItem("Local file…", CHOOSE_FILE)
            combo.addItem("None (train from scratch)", NONE)
            combo.setCurrentIndex(max(0, combo.findData(self._selected_weights_key(info))))
        self._model_info_label.setText(self._info_text(info))

    def _selected_weights_key(self, info: zoo.ModelInfo | None) -> str:
        model = self._document.recipe.model
        if model.weights_file:
            return LOCAL_FILE
        spec = model.weights.strip()
        if spec.lower() in zoo.NO_WEIGHTS:
            return NONE
        if spec == DEFAULT or info is None:
            return DEFAULT
        return next((w.name for w in info.weights if w.name == spec or w.name.endswith("." + spec)), DEFAULT)

    def _info_text(self, info: zoo.ModelInfo | None) -> str:
        if info is None:
            return ""
        text = (f"{info.family} · {info.num_params:,} parameters · input {info.input_size} px "
                f"(resize {info.resize_size})")
        key = self._selected_weights_key(info)
        weights = info.default_weights if key == DEFAULT else next((w for w in info.weights if w.name == key), None)
        if key == LOCAL_FILE:
            return f"{text} · weights from a local file"
        if key == NONE or weights is None:
            return f"{text} · random initialisation"
        acc = f"{weights.acc1:.2f} %" if weights.acc1 is not None else "n/a"
        return f"{text} · ImageNet acc@1 {acc} ({weights.name})"

    def _show_summary(self) -> None:
        tree = self.tree_model.tree()
        self._trainable_label.setText(trainable_summary(tree) if tree is not None else "")
        plan = self._document.plan()
        if plan is None:
            self._error_label.setText(f"⚠ {self._document.plan_error}")
        else:
            error = plan.phases[self._selection.index].error
            self._error_label.setText(f"⚠ {error}" if error else "")
        self._show_verification()
        if self.tree_model.drift is not None:
            self._show_drift_source()  # another model may have been chosen: the drift may no longer apply

    def _restore_expansion(self) -> None:
        for path in sorted(self._expanded, key=len):
            index = self.tree_model.index_of(path)
            if index.isValid():
                self._tree.expand(index)

    # --- the freeze check after a run ------------------------------------------------------------------------
    def show_freeze_verification(self, phase_index: int, moved: list[str], checked: int) -> None:
        """Show what a run found: did the frozen tensors of a phase stay bit-identical?"""
        self.tree_model.set_verification(phase_index, moved, checked)
        self._show_verification()

    def _show_verification(self) -> None:
        result = self.tree_model.verification(self._selection.index)
        if result is None:
            self._verified_label.setText("")
            return
        moved, checked = result
        if moved:
            shown = ", ".join(moved[:6]) + (" …" if len(moved) > 6 else "")
            self._verified_label.setStyleSheet("color: #c62828;")
            self._verified_label.setText(f"⚠ {len(moved)} of {checked} frozen tensors changed during the last run of "
                                         f"this phase: {shown}")
        else:
            self._verified_label.setStyleSheet("color: #2e7d32;")
            self._verified_label.setText(f"✓ Verified after the last run: all {checked} frozen tensors of this phase "
                                         "are bit-identical to their values at the phase start")

    # --- a run's weight drift ------------------------------------------------------------------------------
    def show_drift(self, drift: WeightDrift | None, run_name: str = "") -> None:
        """The Drift column: how far each module of run `run_name` moved from where it started (None: clear)."""
        self.tree_model.set_drift(drift)
        self._show_drift_source(run_name)

    def _show_drift_source(self, run_name: str = "") -> None:
        drift = self.tree_model.drift
        if run_name:
            self._drift_run = run_name
        run = self._drift_run
        if drift is None:
            self._drift_label.setText(f"Drift: the run {run} has no weight drift in its evaluation." if run else
                                      "Drift: evaluate a run (Evaluate tab) to see how far each layer moved.")
        elif not self.tree_model.drift_applies():
            self._drift_label.setText(f"Drift: the run {run} trained another model; its drift does not apply to "
                                      "this one.")
        else:
            frozen = sum(1 for layer in drift.layers if layer.relative == 0.0)
            self._drift_label.setText(
                f"Drift column: how far each module moved during the run {run}, ‖w − w₀‖ / ‖w₀‖; {frozen} of "
                f"{len(drift.layers)} layers are bit-identical to the start (0: they did not train).")

    # --- model edits --------------------------------------------------------------------------------------
    def _on_model_chosen(self) -> None:
        arch = self._model_combo.arch()
        if not arch or arch == self._document.recipe.model.arch:
            return

        self._document.edit(lambda recipe: set_arch(recipe, arch))

    def _on_weights_chosen(self) -> None:
        key = self._weights_combo.currentData()
        if key == LOCAL_FILE:
            return
        if key == CHOOSE_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Pretrained weights (a state dict)", "",
                                                  "PyTorch state dict (*.pth *.pt);;All files (*)")
            if path:
                self.set_weights_file(path)
            else:
                self._fill_weights()  # back to what the recipe says
            return
        self._document.edit(lambda recipe: set_weights(recipe, key))

    def set_weights_file(self, path: str) -> None:
        self._document.edit(lambda recipe: set_weights_file(recipe, path))

    def _on_in_channels_changed(self, channels: int) -> None:
        self._document.edit(lambda recipe: set_in_channels(recipe, channels))

    def _on_head_dropout_changed(self, value: float) -> None:
        self._document.edit(lambda recipe: setattr(recipe.model.head, "dropout", value))

    def _on_head_hidden_changed(self, value: int) -> None:
        self._document.edit(lambda recipe: setattr(recipe.model.head, "hidden", value))

    def _on_apply_strategy(self) -> None:
        self.apply_strategy(self._strategy_combo.currentData())

    def apply_strategy(self, strategy: str) -> None:
        """The strategy's phases with the lesson's epochs (engine/planning/presets.py `apply_strategy`)."""
        self._document.edit(lambda recipe: apply_strategy(recipe, strategy))

    def _on_run_name_edited(self) -> None:
        text = self._run_name_edit.text()
        self._run_name_edit.setModified(False)  # written now: refreshes may show the recipe's name again
        recipe = self._document.recipe
        shown = "" if has_generated_name(recipe) else recipe.name
        if text.strip() != shown:
            self._document.edit(lambda r: set_run_name(r, text))
        else:
            self._show_run_name()

    # --- the tree's context menu ---------------------------------------------------------------------------
    def _on_context_menu(self, position: QPoint) -> None:
        index = self._tree.indexAt(position)
        if index.isValid():
            menu = self.context_menu(index)
            menu.exec(self._tree.viewport().mapToGlobal(position))
            menu.deleteLater()

    def context_menu(self, index: QModelIndex) -> QMenu:
        """Freeze / thaw / BN mode / group actions for the module at `index`."""
        path = index.siblingAtColumn(COL_MODULE).data(PathRole)
        node = self.tree_model.tree().find(path) if self.tree_model.tree() is not None else None
        menu = QMenu(self)
        freeze = menu.addAction("Freeze subtree", lambda: self.tree_model.freeze(path))
        freeze.setEnabled(bool(path) and node is not None and node.total_params > 0)
        menu.addAction("Thaw subtree", lambda: self.tree_model.thaw(path))

        bn_menu = menu.addMenu("Set BN mode")
        bn_menu.setEnabled(node is not None and any(n.bn_mode for n in node.walk()))
        for mode in BN_MODES:
            bn_menu.addAction(mode, lambda m=mode: self.tree_model.set_bn_mode(path, m))
        bn_menu.addSeparator()
        bn_menu.addAction("default (follows the freeze plan)", lambda: self.tree_model.set_bn_mode(path, None))

        group_menu = menu.addMenu("Add to group")
        plan = self._document.plan()
        if plan is not None:
            phase = self._document.recipe.phases[self._selection.index]
            for spec in phase_groups(plan.stages, phase):
                action: QAction = group_menu.addAction(spec.name, lambda g=spec.name: self.add_to_group(path, g))
                action.setCheckable(True)
                action.setChecked(node is not None and node.group == spec.name)
        group_menu.addSeparator()
        group_menu.addAction("New group…", lambda: self._on_new_group(path))
        return menu

    def add_to_group(self, path: str, group: str) -> None:
        index = self._document.module_index()
        if index is None:
            return
        phase_index = self._selection.index
        self._document.edit(lambda recipe: move_to_group(recipe.phases[phase_index], index, path, group))

    def _on_new_group(self, path: str) -> None:
        name, ok = QInputDialog.getText(self, "New parameter group", "Group name:", text=path.rsplit(".", 1)[-1])
        if ok and name.strip():
            self.add_to_group(path, name.strip())
