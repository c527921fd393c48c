"""The Optimizer tab: the selected phase's parameter groups, lr preset, optimizer and schedule, a preview of
every group's learning rate over the whole run, and the learning-rate finder: a range test of the selected
group (engine/train/lr_finder.py) run off the GUI thread, its curve drawn, its suggestion applied to the group with
one click (through the engine's group edit)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.planning.group_edits import compress_parameter_names
from engine.planning.phase_edits import set_lr_preset, set_momentum, set_optimizer
from engine.recipe import LR_PRESETS, OPTIMIZERS, SCHEDULES, PhaseConfig
from engine.train.lr_finder import LrSweep
from gui.document import RecipeDocument
from gui.jobs.progress_view import JobProgress
from gui.jobs.runner import JobRunner
from gui.models.groups_model import COL_NAME, COL_TRAINS, GroupsModel
from gui.models.phase_selection import PhaseCombo, PhaseSelection
from gui.widgets.formatting import scientific
from gui.widgets.plot_style import fit_log_y, mark_phases, new_plot, series_color
from gui.widgets.tooltips import set_tooltips

CUSTOM = "custom"  # the lr preset combo's entry for explicit groups
_PRESET_DESCRIPTIONS = {
    "single": "one rate for everything",
    "discriminative": "early 1/100, middle 1/10, head × 1 (the lesson's 1e-5 / 1e-4 / 1e-3)",
    "layerwise": "head rate × decay^depth, per stage",
}
PRESET_LABELS = {name: f"{name}: {_PRESET_DESCRIPTIONS.get(name, '')}".rstrip(": ") for name in LR_PRESETS}
PRESET_LABELS[CUSTOM] = "custom groups (edited in the table)"
TIPS = {
    "lrPresetCombo": "How the phase's learning rates are spread over the model: one rate, the lesson's "
                     "discriminative rates (early layers slower), layer-wise decay, or your own groups",
    "layerDecaySpin": "Layer-wise decay: each stage further from the head trains at this factor of the next one's "
                      "rate",
    "optimizerCombo": "Adam (the lesson's), AdamW (decoupled weight decay) or SGD with momentum",
    "weightDecaySpin": "L2 penalty on the weights (decoupled for AdamW); 0: none",
    "momentumSpin": "SGD's momentum: how much of the previous step each step keeps",
    "nesterovCheck": "Nesterov's look-ahead momentum (SGD)",
    "noDecayNormBiasCheck": "Exempt normalisation layers and biases from weight decay (timm's rule)",
    "restoreBestCheck": "If the phase's last epoch is worse than the run's best epoch (by the early-stopping "
                        "metric), the run goes on from the best epoch's weights (best.pt) and says so "
                        "(restore_best); the presets set it on every phase after a fitted head",
    "scheduleCombo": "How the rates change over the phase: constant, stepped, cosine (with warm-up), one-cycle, or "
                     "lowered when validation stops improving",
    "stepSizeSpin": "Epochs between two steps down of the rate",
    "gammaSpin": "The factor each step multiplies the rate by",
    "warmupEpochsSpin": "Epochs over which the rate rises linearly to its peak before the cosine decay",
    "minLrRatioSpin": "The rate the cosine ends at, as a share of its peak",
    "pctStartSpin": "Share of the phase during which one-cycle's rate rises",
    "divFactorSpin": "One-cycle starts at max lr divided by this",
    "patienceSpin": "Epochs without a better validation result before the rate is lowered",
    "plateauFactorSpin": "The factor the rate is multiplied by on a plateau",
    "groupsTable": "The phase's parameter groups: name, modules, learning rate, weight decay; double-click a cell "
                   "to edit it",
    "removeGroupButton": "Remove the selected groups; their modules are in no group until added to one (the tab "
                         "warns), and the last group stays",
    "lrPreviewPlot": "Every group's learning rate over the whole run, as the run will record it",
}


class ScientificSpinBox(QDoubleSpinBox):
    """A spin box for rates: scientific text, and arrows that walk the 1-2-5 ladder (1e-4, 2e-4, 5e-4, 1e-3)."""

    SMALLEST = 1e-8

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(self.SMALLEST, 10.0)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:
        return scientific(value) if value > 0 else "0"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        stripped = text.strip()
        try:
            float(stripped)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            # A half-typed number ("1e-", "2.") is fine while typing.
            partial = stripped.lower().rstrip("e-+.")
            ok = not stripped or partial == "" or _is_number(partial)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos

    def stepBy(self, steps: int) -> None:
        value = self.value()
        if value <= 0:
            self.setValue(self.minimum() if steps < 0 else max(self.minimum(), 1e-6))
            return
        rungs = (1.0, 2.0, 5.0)
        exponent = math.floor(math.log10(value) + 1e-9)
        mantissa = value / 10 ** exponent
        rung = max(i for i, r in enumerate(rungs) if r <= mantissa + 1e-9)
        on_ladder = math.isclose(mantissa, rungs[rung], rel_tol=1e-6)
        position = 3 * exponent + rung + (steps + 1 if not on_ladder and steps < 0 else steps)
        new = rungs[position % 3] * 10.0 ** (position // 3)
        self.setValue(min(self.maximum(), max(self.minimum(), float(f"{new:.6g}"))))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class _PhaseBinding:
    """One widget bound to one field of the selected phase: how to read the field and how to write it."""

    def __init__(self, widget: QWidget, read: Callable[[PhaseConfig], Any], write: Callable[[PhaseConfig, Any], None]):
        self.widget, self.read, self.write = widget, read, write

    def show(self, phase: PhaseConfig) -> None:
        value = self.read(phase)
        with QSignalBlocker(self.widget):
            if isinstance(self.widget, QComboBox):
                self.widget.setCurrentIndex(max(0, self.widget.findData(value)))
            elif isinstance(self.widget, QCheckBox):
                self.widget.setChecked(bool(value))
            else:
                self.widget.setValue(value)

    def value(self) -> Any:
        if isinstance(self.widget, QComboBox):
            return self.widget.currentData()
        if isinstance(self.widget, QCheckBox):
            return self.widget.isChecked()
        return self.widget.value()

    def connect(self, slot: Callable[[], None]) -> None:
        if isinstance(self.widget, QComboBox):
            self.widget.currentIndexChanged.connect(slot)
        elif isinstance(self.widget, QCheckBox):
            self.widget.toggled.connect(slot)
        else:
            self.widget.valueChanged.connect(slot)


def _combo(name: str, items: dict[str, str]) -> QComboBox:
    combo = QComboBox()
    combo.setObjectName(name)
    for value, label in items.items():
        combo.addItem(label, value)
    return combo


def _spin(name: str, low: float, high: float, step: float, decimals: int | None = None) -> QSpinBox | QDoubleSpinBox:
    spin = QSpinBox() if decimals is None else QDoubleSpinBox()
    if decimals is not None:
        spin.setDecimals(decimals)
    spin.setObjectName(name)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setKeyboardTracking(False)  # one edit per finished number, not per keystroke
    return spin


class OptimizerPanel(QWidget):
    def __init__(self, document: RecipeDocument, parent: QWidget | None = None,
                 selection: PhaseSelection | None = None):
        super().__init__(parent)
        self.setObjectName("optimizerPanel")
        self._document = document
        self._selection = selection or PhaseSelection.for_document(document)
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._boundaries: list[pg.InfiniteLine] = []

        self.groups_model = GroupsModel(document, self._selection, self)
        self._build()
        self._bindings = self._make_bindings()
        for binding in self._bindings:
            binding.connect(lambda *_, b=binding: self._on_field_edited(b))  # *_: the new value
        self._lr_preset_combo.currentIndexChanged.connect(self._on_lr_preset_chosen)
        self._add_button.clicked.connect(self._on_add_group)
        self._remove_button.clicked.connect(self._on_remove_groups)
        self._merge_button.clicked.connect(self._on_merge_groups)
        self._groups_table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.groups_model.modelReset.connect(self._update_buttons)
        self.lr_finder = LrFinderBox(self)
        self._right.addWidget(self.lr_finder)

        document.recipe_changed.connect(self._refresh)
        document.data_scanned.connect(self._refresh)
        self._selection.index_changed.connect(self._refresh)
        self._refresh()

    # --- layout --------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self._phase_combo = PhaseCombo(self._document, self._selection)
        self._phase_combo.setObjectName("optimizerPhaseCombo")

        self._lr_preset_combo = _combo("lrPresetCombo", PRESET_LABELS)
        self._head_lr_spin = ScientificSpinBox()
        self._head_lr_spin.setObjectName("headLrSpin")
        self._head_lr_spin.setToolTip("The head's learning rate; the presets derive the other groups' rates from it")
        self._layer_decay_spin = _spin("layerDecaySpin", 0.01, 1.0, 0.05, 3)
        lr_form = QFormLayout()
        lr_form.addRow("Preset", self._lr_preset_combo)
        lr_form.addRow("Head lr", self._head_lr_spin)
        lr_form.addRow("Layer decay", self._layer_decay_spin)
        self._lr_form = lr_form

        self._optimizer_combo = _combo("optimizerCombo", {name: name for name in OPTIMIZERS})
        self._weight_decay_spin = ScientificSpinBox()
        self._weight_decay_spin.setObjectName("weightDecaySpin")
        self._weight_decay_spin.setRange(0.0, 1.0)
        self._momentum_spin = _spin("momentumSpin", 0.0, 0.999, 0.05, 3)
        self._nesterov_check = QCheckBox("Nesterov momentum")
        self._nesterov_check.setObjectName("nesterovCheck")
        self._no_decay_check = QCheckBox("No weight decay on norm layers and biases")
        self._no_decay_check.setObjectName("noDecayNormBiasCheck")
        self._head_fit_check = QCheckBox("Fit the head to convergence when only it trains")
        self._head_fit_check.setObjectName("headFitCheck")
        self._head_fit_check.setToolTip("On cached features, fit the head with L-BFGS and an L2 penalty chosen by "
                                        "cross-validation, as one epoch (head_fit 'converge'); unchecked, train it "
                                        "for the phase's epochs with this optimizer and schedule (the lesson's way)")
        self._restore_best_check = QCheckBox("End at the best epoch if the phase ends worse")
        self._restore_best_check.setObjectName("restoreBestCheck")
        self._head_fit_label = QLabel()
        self._head_fit_label.setObjectName("headFitLabel")
        self._head_fit_label.setWordWrap(True)
        opt_form = QFormLayout()
        opt_form.addRow("Optimizer", self._optimizer_combo)
        opt_form.addRow("Weight decay", self._weight_decay_spin)
        opt_form.addRow("Momentum", self._momentum_spin)
        opt_form.addRow("", self._nesterov_check)
        opt_form.addRow("", self._no_decay_check)
        opt_form.addRow("", self._head_fit_check)
        opt_form.addRow("", self._restore_best_check)
        opt_form.addRow(self._head_fit_label)
        self._opt_form = opt_form

        self._schedule_combo = _combo("scheduleCombo", {name: name for name in SCHEDULES})
        self._step_size_spin = _spin("stepSizeSpin", 1, 1000, 1)
        self._gamma_spin = _spin("gammaSpin", 0.001, 1.0, 0.05, 3)
        self._warmup_spin = _spin("warmupEpochsSpin", 0.0, 1000.0, 0.5, 2)
        self._min_lr_ratio_spin = _spin("minLrRatioSpin", 0.0, 0.99, 0.01, 3)
        self._pct_start_spin = _spin("pctStartSpin", 0.01, 0.99, 0.05, 2)
        self._div_factor_spin = _spin("divFactorSpin", 1.0, 1e4, 5.0, 1)
        self._patience_spin = _spin("patienceSpin", 0, 100, 1)
        self._factor_spin = _spin("plateauFactorSpin", 0.001, 1.0, 0.05, 3)
        sched_form = QFormLayout()
        sched_form.addRow("Schedule", self._schedule_combo)
        self._schedule_rows = {
            "step": [("Step size (epochs)", self._step_size_spin), ("Gamma", self._gamma_spin)],
            "cosine": [("Warm-up epochs", self._warmup_spin), ("Final lr / peak", self._min_lr_ratio_spin)],
            "onecycle": [("Rising share", self._pct_start_spin), ("Start = max lr /", self._div_factor_spin)],
            "plateau": [("Patience (epochs)", self._patience_spin), ("Factor", self._factor_spin)],
        }
        for rows in self._schedule_rows.values():
            for label, widget in rows:
                sched_form.addRow(label, widget)
        self._sched_form = sched_form

        settings = QVBoxLayout()
        phase_row = QHBoxLayout()
        phase_row.addWidget(QLabel("Phase"))
        phase_row.addWidget(self._phase_combo, 1)
        settings.addLayout(phase_row)
        for title, form in (("Learning rates", lr_form), ("Optimizer", opt_form), ("Schedule", sched_form)):
            box = QGroupBox(title)
            box.setLayout(form)
            settings.addWidget(box)
        settings.addStretch(1)
        left = QWidget()
        left.setLayout(settings)

        self._groups_table = QTableView()
        self._groups_table.setObjectName("groupsTable")
        self._groups_table.setModel(self.groups_model)
        self._groups_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._groups_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self._groups_table.verticalHeader().setVisible(False)
        self._add_button = QPushButton("Add group")
        self._add_button.setObjectName("addGroupButton")
        self._add_button.setToolTip("A new group at the phase's lr, holding the modules no group covers yet")
        self._remove_button = QPushButton("Remove")
        self._remove_button.setObjectName("removeGroupButton")
        self._merge_button = QPushButton("Merge")
        self._merge_button.setObjectName("mergeGroupsButton")
        self._merge_button.setToolTip("Merge the selected groups into the first one (its name and lr)")
        buttons = QHBoxLayout()
        for button in (self._add_button, self._remove_button, self._merge_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self._unassigned_label = QLabel()
        self._unassigned_label.setObjectName("unassignedLabel")
        self._unassigned_label.setWordWrap(True)
        self._unassigned_label.setStyleSheet("color: #c62828;")
        self._unassigned_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self._plot = new_plot("lrPreviewPlot", "", "epoch", "learning rate", legend=True)  # the studio's style
        self._plot.setLogMode(y=True)

        right_top = QWidget()
        table_box = QVBoxLayout(right_top)
        table_box.setContentsMargins(0, 0, 0, 0)
        table_box.addWidget(QLabel("Parameter groups of this phase"))
        table_box.addWidget(self._groups_table, 1)
        table_box.addLayout(buttons)
        table_box.addWidget(self._unassigned_label)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(right_top)
        right.addWidget(self._plot)
        self._right = right  # the learning-rate finder joins below the preview

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        set_tooltips(self, TIPS)

    def _make_bindings(self) -> list[_PhaseBinding]:
        widget_for = {"weight_decay": self._weight_decay_spin, "nesterov": self._nesterov_check,
                      "no_decay_norm_bias": self._no_decay_check}

        def opt(name: str) -> _PhaseBinding:
            return _PhaseBinding(widget_for[name], lambda p: getattr(p.optimizer, name),
                                 lambda p, v: setattr(p.optimizer, name, v))

        def sched(widget: QWidget, name: str) -> _PhaseBinding:
            return _PhaseBinding(widget, lambda p: getattr(p.schedule, name), lambda p, v: setattr(p.schedule, name, v))

        return [
            _PhaseBinding(self._head_lr_spin, lambda p: p.lr, lambda p, v: setattr(p, "lr", v)),
            _PhaseBinding(self._layer_decay_spin, lambda p: p.layer_decay, lambda p, v: setattr(p, "layer_decay", v)),
            _PhaseBinding(self._optimizer_combo, lambda p: p.optimizer.name, set_optimizer),
            _PhaseBinding(self._head_fit_check, lambda p: p.head_fit == "converge",
                          lambda p, v: setattr(p, "head_fit", "converge" if v else "epochs")),
            _PhaseBinding(self._restore_best_check, lambda p: p.restore_best,
                          lambda p, v: setattr(p, "restore_best", v)),
            _PhaseBinding(self._momentum_spin, lambda p: p.optimizer.momentum, set_momentum),
            opt("weight_decay"), opt("nesterov"), opt("no_decay_norm_bias"),
            _PhaseBinding(self._schedule_combo, lambda p: p.schedule.name,
                          lambda p, v: setattr(p.schedule, "name", v)),
            sched(self._step_size_spin, "step_size"), sched(self._gamma_spin, "gamma"),
            sched(self._warmup_spin, "warmup_epochs"), sched(self._min_lr_ratio_spin, "min_lr_ratio"),
            sched(self._pct_start_spin, "pct_start"), sched(self._div_factor_spin, "div_factor"),
            sched(self._patience_spin, "patience"), sched(self._factor_spin, "factor"),
        ]

    # --- reading the document ------------------------------------------------------------------------------
    def _phase(self) -> PhaseConfig:
        return self._document.recipe.phases[self._selection.index]

    @property
    def document(self) -> RecipeDocument:
        return self._document

    @property
    def phase_index(self) -> int:
        return self._selection.index

    def target_group(self) -> tuple[int, str] | None:
        """(row, name) of the group the finder sweeps: the selected row, else the last group that trains (the
        head's, in every preset); None when no group trains."""
        model = self.groups_model
        rows = self._selected_rows()
        if rows:
            return rows[0], model.index(rows[0], COL_NAME).data()
        training = [r for r in range(model.rowCount()) if model.index(r, COL_TRAINS).data() == "yes"]
        return (training[-1], model.index(training[-1], COL_NAME).data()) if training else None

    def _refresh(self) -> None:
        phase = self._phase()
        for binding in self._bindings:
            binding.show(phase)
        with QSignalBlocker(self._lr_preset_combo):
            preset = CUSTOM if phase.groups else phase.lr_preset
            self._lr_preset_combo.setCurrentIndex(self._lr_preset_combo.findData(preset))
        self._show_relevant_fields(phase)
        self._show_head_fit(phase)
        self._show_unassigned()
        self._update_plot()
        self._update_buttons()

    def _show_relevant_fields(self, phase: PhaseConfig) -> None:
        self._lr_form.setRowVisible(self._layer_decay_spin, phase.lr_preset == "layerwise" and not phase.groups)
        sgd = phase.optimizer.name == "sgd"
        self._opt_form.setRowVisible(self._momentum_spin, sgd)
        self._opt_form.setRowVisible(self._nesterov_check, sgd)
        for name, rows in self._schedule_rows.items():
            for _, widget in rows:
                self._sched_form.setRowVisible(widget, name == phase.schedule.name)

    def _show_head_fit(self, phase: PhaseConfig) -> None:
        """Say when the rates above will not be used: a head-only phase whose head is fitted to convergence."""
        head_only = self._document.trains_only_the_head(self._selection.index)
        fitted = head_only and phase.head_fit == "converge"
        self._opt_form.setRowVisible(self._head_fit_check, head_only)
        self._head_fit_label.setText(
            "This phase trains only the head: on cached features it is fitted to convergence (L-BFGS, L2 by "
            "cross-validation) and the rates and schedule here apply only if the features cannot be cached."
            if fitted else "")
        self._head_fit_label.setVisible(fitted)

    def _show_unassigned(self) -> None:
        plan = self._document.plan()
        if plan is None:
            self._unassigned_label.setText(f"⚠ {self._document.plan_error}")
            return
        phase_plan = plan.phases[self._selection.index]
        lines = []
        if phase_plan.unassigned:
            modules = compress_parameter_names(phase_plan.unassigned, phase_plan.tree, self._document.module_index())
            lines.append("⚠ Trainable but in no parameter group (add them to a group or freeze them): "
                         + ", ".join(modules))
        if phase_plan.error:
            lines.append(f"⚠ {phase_plan.error}")
        self._unassigned_label.setText("\n".join(lines))

    def _update_buttons(self) -> None:
        rows = self._selected_rows()
        self._remove_button.setEnabled(bool(rows) and len(rows) < self.groups_model.rowCount())
        self._merge_button.setEnabled(len(rows) >= 2)

    # --- the lr preview -------------------------------------------------------------------------------------
    def _update_plot(self) -> None:
        plan = self._document.plan()
        curves = plan.lr_curves if plan is not None else {}
        for name in [n for n in self._curves if n not in curves]:
            self._plot.removeItem(self._curves.pop(name))
        for i, (name, points) in enumerate(curves.items()):
            item = self._curves.get(name)
            pen = pg.mkPen(series_color(i), width=2)  # by position: no two groups share a colour
            if item is None:
                item = self._plot.plot(name=name, pen=pen)
                item.setClipToView(True)
                item.setDownsampling(auto=True, method="peak")
                self._curves[name] = item
            else:
                item.setPen(pen)
            x, y = _with_gaps(points)
            item.setData(x, y, connect="finite")
        fit_log_y(self._plot, [rate for points in curves.values() for _, rate in points])
        self._update_phase_boundaries()

    def _update_phase_boundaries(self) -> None:
        recipe = self._document.recipe
        for line in self._boundaries:
            self._plot.removeItem(line)
        self._boundaries = mark_phases(self._plot, recipe.phase_start_epochs(), [p.name for p in recipe.phases])

    # --- edits ---------------------------------------------------------------------------------------------
    def _edit_phase(self, change: Callable[[PhaseConfig], None]) -> None:
        index = self._selection.index
        self._document.edit(lambda recipe: change(recipe.phases[index]))

    def _on_field_edited(self, binding: _PhaseBinding) -> None:
        value = binding.value()
        self._edit_phase(lambda phase: binding.write(phase, value))

    def _on_lr_preset_chosen(self) -> None:
        preset = self._lr_preset_combo.currentData()
        if preset == CUSTOM:
            self.groups_model.materialise()
        else:
            self._edit_phase(lambda phase: set_lr_preset(phase, preset))

    def _selected_rows(self) -> list[int]:
        return sorted({index.row() for index in self._groups_table.selectionModel().selectedRows()})

    def _on_add_group(self) -> None:
        plan = self._document.plan()
        if plan is None:
            return
        phase_plan = plan.phases[self._selection.index]
        modules = compress_parameter_names(phase_plan.unassigned, phase_plan.tree, self._document.module_index())
        self.groups_model.add_group(modules)

    def _on_remove_groups(self) -> None:
        self.groups_model.remove_rows(self._selected_rows())

    def _on_merge_groups(self) -> None:
        self.groups_model.merge_rows(self._selected_rows())


class LrFinderBox(QGroupBox):
    """The learning-rate finder of the Optimizer tab: a range test of one group of the selected phase, on the model
    as a run would build it, off the GUI thread (a JobRunner: it waits for the device, shows its steps, draws each
    point as it is measured and can be cancelled between two steps); the sweep drawn (loss against lr, log axis,
    the suggestion marked) and the suggestion applied to that group with one click."""

    def __init__(self, panel: OptimizerPanel):
        super().__init__("Learning-rate finder")
        self.setObjectName("lrFinderBox")
        self._panel = panel
        self.runner = JobRunner("lrFinder", "LR finder", self, uses_device=True)
        self.sweep: LrSweep | None = None
        self._target: tuple[int, int, str] | None = None  # (phase index, row, group) the sweep was run for
        self._points: tuple[list[float], list[float]] = ([], [])  # the sweep so far, drawn as it comes

        self.find_button = QPushButton("Find learning rate")
        self.find_button.setObjectName("lrFindButton")
        self.find_button.setToolTip("Train a few batches while the rate grows from 1e-7 to 10 and suggest a rate for "
                                    "the selected group (or the head's); the model is left as it was")
        self.apply_button = QPushButton("Apply suggestion")
        self.apply_button.setObjectName("lrApplyButton")
        self.apply_button.setToolTip("Set the swept group's learning rate to the suggested rate")
        self.apply_button.setEnabled(False)
        self.status = QLabel("Sweeps the rate of the selected group (or the head's) on this phase.")
        self.status.setObjectName("lrFindLabel")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = JobProgress(self.runner, unit="step", total_is_bound=True)
        self.plot = new_plot("lrFindPlot", "", "learning rate", "training loss", legend=True,  # the studio's style
                             tooltip="The learning-rate range test: the training loss while the rate grows batch "
                                     "by batch; the line marks the suggested rate")
        self.plot.setLogMode(x=True)
        self.raw_curve = self.plot.plot([], [], name="loss per batch", pen=pg.mkPen("#bbbbbb", width=1))
        self.smoothed_curve = self.plot.plot([], [], name="smoothed", pen=pg.mkPen(series_color(0), width=2))
        self.marker = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(series_color(3), width=1.5),
                                      label="", labelOpts={"position": 0.9, "color": series_color(3)})
        self.marker.setVisible(False)
        self.plot.addItem(self.marker)

        buttons = QHBoxLayout()
        buttons.addWidget(self.find_button)
        buttons.addWidget(self.apply_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot, 1)
        self.find_button.clicked.connect(self.find)
        self.apply_button.clicked.connect(self.apply)
        self.runner.progressed.connect(self._on_progressed)
        self.runner.partial_result_produced.connect(self._on_point_measured)
        self.runner.job_succeeded.connect(self._on_swept)
        self.runner.job_failed.connect(self._on_failed)
        self.runner.job_cancelled.connect(self._on_cancelled)
        self.runner.job_finished.connect(self._on_finished)

    @property
    def running(self) -> bool:
        """A sweep is running or waiting for the device."""
        return self.runner.is_busy

    def find(self) -> None:
        if self.running:
            return
        target = self._panel.target_group()
        if target is None:
            self.status.setText("⚠ No group of this phase trains: there is no rate to find.")
            return
        from engine.train.lr_finder import find_lr

        row, group = target
        phase_index = self._panel.phase_index
        recipe = self._panel.document.recipe.copy()
        self._target = (phase_index, row, group)
        self.sweep = None
        self._points = ([], [])
        self.raw_curve.setData([], [])
        self.smoothed_curve.setData([], [])
        self.marker.setVisible(False)
        self.apply_button.setEnabled(False)
        self.find_button.setEnabled(False)
        self.status.setText(f"Sweeping the rate of group '{group}' in phase {phase_index + 1} …")

        def work(task):
            return find_lr(recipe, phase_index, group, should_stop=task.should_stop, progress=task.progress,
                           on_step=lambda lr, loss: task.partial((lr, loss)))

        self.runner.start(work, f"Sweeping the rate of '{group}' (phase {phase_index + 1})")

    def cancel(self) -> None:
        self.runner.cancel()

    def _on_progressed(self, done: int, total: int) -> None:
        self.status.setText(f"Sweeping the rate of group '{self._target[2]}': step {done} of at most {total} …")

    def _on_point_measured(self, point: tuple[float, float]) -> None:
        """Each step's loss as it is measured: a step that trains a backbone can take seconds."""
        self._points[0].append(point[0])
        self._points[1].append(point[1])
        self.raw_curve.setData(np.asarray(self._points[0]), np.asarray(self._points[1]))

    def _on_swept(self, sweep: LrSweep) -> None:
        self.sweep = sweep
        x = np.asarray(sweep.lrs, dtype=float)
        self.raw_curve.setData(x, np.asarray(sweep.losses, dtype=float))
        self.smoothed_curve.setData(x, np.asarray(sweep.smoothed, dtype=float))
        if sweep.smoothed:  # the explosion's last points would flatten the curve that matters
            low, high = min(sweep.smoothed), max(sweep.smoothed[: max(1, len(sweep.smoothed) - 5)])
            self.plot.setYRange(low, high + 0.1 * max(1e-9, high - low), padding=0.05)
        where = "cached features" if sweep.on_features else "images"
        ended = {"diverged": "the loss exploded", "end": "it reached 10", "stopped": "it was stopped"}[sweep.ended]
        if sweep.suggestion is None:
            self.marker.setVisible(False)
            self.status.setText(f"No suggestion: {ended} after {len(sweep.lrs)} steps.")
            return
        self.marker.setValue(np.log10(sweep.suggestion))
        self.marker.label.setFormat(scientific(float(f"{sweep.suggestion:.2g}")))
        self.marker.setVisible(True)
        self.status.setText(
            f"Suggested lr for '{sweep.group}': {scientific(self.suggested_lr)} (steepest descent of the smoothed "
            f"loss; fastai's valley {sweep.valley:.1e}) — {len(sweep.lrs)} steps on {where} in "
            f"{sweep.seconds:.2f} s, {ended}.")
        self.apply_button.setEnabled(True)

    @property
    def suggested_lr(self) -> float:
        """The suggestion as the table shows a rate (two significant digits)."""
        return float(f"{self.sweep.suggestion:.2g}")

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"⚠ {message}")

    def _on_cancelled(self) -> None:
        steps = len(self._points[0])
        self.status.setText(f"Cancelled after {steps} step{'s' * (steps != 1)}: no suggestion (the model is left as "
                            f"it was).")

    def _on_finished(self) -> None:
        self.find_button.setEnabled(True)

    def apply(self) -> None:
        """Set the swept group's lr to the suggestion (the engine's group edit: generated groups are written out)."""
        if self.sweep is None or self.sweep.suggestion is None or self._target is None:
            return
        phase_index, row, group = self._target
        if phase_index != self._panel.phase_index:
            self.status.setText(f"⚠ The sweep was for phase {phase_index + 1}; select it to apply its suggestion.")
            return
        if self._panel.groups_model.index(row, COL_NAME).data() != group:
            self.status.setText(f"⚠ Group '{group}' changed since the sweep; find the rate again.")
            return
        if self._panel.groups_model.update_row(row, lr=self.suggested_lr):
            self.status.setText(f"Applied: group '{group}' now trains at {scientific(self.suggested_lr)}.")
            self.apply_button.setEnabled(False)


def _with_gaps(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The points as arrays, with a NaN where the group skips a phase (so no line is drawn across it) and
    non-positive rates (a cosine's last step) dropped from the log plot."""
    if not points:
        return np.empty(0), np.empty(0)
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    y[y <= 0] = np.nan
    steps = np.diff(x)
    usual = np.median(steps) if len(steps) else 0.0
    gaps = np.nonzero(steps > usual * 1.5 + 1e-9)[0] + 1 if len(steps) else np.empty(0, dtype=int)
    # x stays finite (clipping to the view searches it); the NaN rate breaks the line.
    return np.insert(x, gaps, (x[gaps - 1] + x[gaps]) / 2), np.insert(y, gaps, np.nan)
