"""Model ▸ Domain pre-training…: the recipe's backbone continued self-supervised on a folder of unlabeled images
(engine/pretrain/), run as a studio job (gui/jobs/runner.py: it waits for the device, reports progress, stops on
Cancel or when the studio closes), its loss and k-NN accuracy drawn as they come, and "Use these weights" that
sets the recipe's model.weights_file to the backbone it wrote."""

from __future__ import annotations

import copy

import pyqtgraph as pg  # PySide6 is imported first (gui/__init__ via the widgets' imports)
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui.document import RecipeDocument
from gui.jobs.runner import JobRunner, TaskState
from gui.widgets.plot_style import new_plot, series_color

REDRAW_MS = 250  # the curves redraw at most 4 times a second, whatever the batch rate


def pretraining_work(recipe, config, task: TaskState):
    """The job's work (its own thread): the run, its events handed to the dialog, Cancel turned into a stop
    between two batches (a checkpoint is kept: `python main.py resume RUN_DIR` continues it)."""
    from engine.pretrain.events import KnnMeasured, PretrainBatchFinished, PretrainEpochFinished, PretrainStarted
    from engine.pretrain.run import PretrainRun
    from engine.train.events import RunControl

    class TaskControl(RunControl):
        @property
        def stop_requested(self) -> bool:
            return super().stop_requested or task.should_stop()

    shown = (PretrainStarted, PretrainBatchFinished, KnnMeasured, PretrainEpochFinished)

    def forward(event) -> None:
        if isinstance(event, shown):
            task.partial(event)
        if isinstance(event, PretrainBatchFinished):
            task.progress(event.epoch * event.batches + event.batch + 1, config.epochs * event.batches)

    run = PretrainRun(recipe, config, [forward], TaskControl())
    status = run.run()
    return {"status": status, "run_dir": str(run.run_dir), "weights_file": str(run.run_dir / "backbone.pth")}


class PretrainDialog(QDialog):
    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__(parent)
        from engine.cli.pretrain import METHOD_NAMES

        self.setObjectName("pretrainDialog")
        self.setWindowTitle("Domain pre-training")
        self.document = document
        self.weights_file = ""
        self.runner = JobRunner("pretrainJob", "Domain pre-training", self, uses_device=True)
        self.runner.partial_result_produced.connect(self._on_event)
        self.runner.progressed.connect(self._on_progress)
        self.runner.job_succeeded.connect(self._on_succeeded)
        self.runner.job_failed.connect(self._on_failed)
        self.runner.job_cancelled.connect(self._on_cancelled)
        self.runner.state_changed.connect(self._on_state)

        self.folder_edit = QLineEdit()
        self.folder_edit.setObjectName("pretrainFolderEdit")
        self.folder_edit.setPlaceholderText("a folder of unlabeled images of your domain (subfolders are read)")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setObjectName("pretrainBrowseButton")
        self.browse_button.clicked.connect(self._browse)
        self.method_combo = QComboBox()
        self.method_combo.setObjectName("pretrainMethodCombo")
        self.method_combo.addItems(METHOD_NAMES)
        self.method_combo.setToolTip("simclr: the simplest, wants batches of 64+; moco: small batches are fine; "
                                     "byol: no negatives; dino: strongest on ViTs, the costliest (docs/RECIPES.md)")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setObjectName("pretrainEpochsSpin")
        self.epochs_spin.setRange(0, 10_000)
        self.epochs_spin.setToolTip("0: only re-estimate the BatchNorm statistics on the images (AdaBN), no training")
        self.epochs_spin.setValue(10)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("Unlabeled images", folder_row)
        form.addRow("Method", self.method_combo)
        form.addRow("Epochs", self.epochs_spin)

        self.loss_plot = new_plot("pretrainLossPlot", "Self-supervised loss", "step", "loss")
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen(series_color(0), width=2))
        self.loss_curve.setClipToView(True)
        self.loss_curve.setDownsampling(auto=True, method="peak")
        self.knn_plot = new_plot("pretrainKnnPlot", "k-NN accuracy on the recipe's validation images", "epochs done",
                                 "accuracy (%)")
        self.knn_curve = self.knn_plot.plot([], [], pen=pg.mkPen(series_color(1), width=2), symbol="o")
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.knn: list[tuple[float, float]] = []
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self._draw)

        self.progress = QProgressBar()
        self.progress.setObjectName("pretrainProgress")
        self.progress.setVisible(False)
        self.status = QLabel("Pick a folder of unlabeled images; the recipe's model is the starting point.")
        self.status.setObjectName("pretrainStatusLabel")
        self.status.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("pretrainStartButton")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("pretrainCancelButton")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.use_button = QPushButton("Use these weights")
        self.use_button.setObjectName("pretrainUseButton")
        self.use_button.setToolTip("Set the recipe's model.weights_file to the pre-trained backbone")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self.use_weights)
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("pretrainCloseButton")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.knn_plot, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(720, 640)

    @Slot()
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Unlabeled images", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    @Slot()
    def start(self) -> None:
        from engine.errors import ThawError
        from engine.pretrain.config import PretrainConfig

        config = PretrainConfig(method=self.method_combo.currentText(), unlabeled=self.folder_edit.text().strip(),
                                epochs=self.epochs_spin.value())
        try:
            config.validate()
        except ThawError as exc:
            self.status.setText(str(exc))
            return
        recipe = copy.deepcopy(self.document.recipe)  # a snapshot: the user may edit while it runs
        self.steps, self.losses, self.knn, self.weights_file = [], [], [], ""
        self._draw()
        self.use_button.setEnabled(False)
        self.runner.start(lambda task: pretraining_work(recipe, config, task), f"{config.method} pre-training")

    @Slot(str)
    def _on_state(self, state: str) -> None:
        busy = state != "idle"
        self.start_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)
        if state == "queued":
            self.status.setText("Waiting for the device (a run or another job holds it) …")
        elif state == "running":
            self.progress.setRange(0, 0)
            self.status.setText("Checking the images and building the model …")

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    @Slot(object)
    def _on_event(self, event) -> None:
        from engine.pretrain.events import KnnMeasured, PretrainBatchFinished, describe

        if isinstance(event, PretrainBatchFinished):
            self.steps.append(float(event.global_step))
            self.losses.append(event.loss)
        elif isinstance(event, KnnMeasured):
            self.knn.append((float(event.epochs_done), 100 * event.knn_acc))  # in % as on every accuracy axis
        line = describe(event)
        if line:
            self.status.setText(line.splitlines()[0])
        if not self._redraw.isActive():
            self._redraw.start()

    @Slot()
    def _draw(self) -> None:
        self.loss_curve.setData(self.steps, self.losses)
        self.knn_curve.setData([x for x, _ in self.knn], [y for _, y in self.knn])

    @Slot(object)
    def _on_succeeded(self, result: dict) -> None:
        self._draw()
        if result["status"] == "finished":
            self.weights_file = result["weights_file"]
            self.use_button.setEnabled(True)
            self.status.setText(f"Finished: {self.weights_file}. Use these weights to start the recipe from them.")
        else:
            self.status.setText(f"Stopped; continue with: python main.py resume {result['run_dir']}")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.status.setText(f"Pre-training failed: {message}")

    @Slot()
    def _on_cancelled(self) -> None:
        self._draw()
        self.status.setText("Stopped after the batch; the run folder keeps a checkpoint (python main.py resume).")

    @Slot()
    def use_weights(self) -> None:
        path = self.weights_file
        if not path:
            return

        def set_weights(recipe) -> None:
            recipe.model.weights_file = path

        self.document.edit(set_weights)
        self.status.setText(f"The recipe's model.weights_file is now {path}.")

    def done(self, result: int) -> None:  # Close, Escape, the window's ×: the job stops and its thread ends first
        self.runner.shutdown()
        super().done(result)
