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

from engine.train.events import RunControl
from gui.document import RecipeDocument
from gui.jobs.runner import JobRunner, TaskState
from gui.widgets.plot_style import new_plot, series_color

REDRAW_MS = 250  # the curves redraw at most 4 times a second, whatever the batch rate


class JobRunControl(RunControl):
    """The run's pause and stop: Pause and Continue from the dialog, a stop also from its job (Cancel, the dialog
    closed, the studio quitting), which wakes a paused run too (RunControl.wait_while_paused asks
    `stop_requested`)."""

    def __init__(self):
        super().__init__()
        self.task: TaskState | None = None

    @property
    def stop_requested(self) -> bool:
        return super().stop_requested or (self.task is not None and self.task.should_stop())


def pretraining_work(make_run, control: JobRunControl, task: TaskState):
    """The job's work (its own thread): the run `make_run(callbacks, control)` builds (a new one, or a stopped one
    continued), its events handed to the dialog, Cancel turned into a stop between two batches (a checkpoint is
    kept: Resume, or `python main.py resume RUN_DIR`, continues it)."""
    from engine.pretrain.events import KnnMeasured, PretrainBatchFinished, PretrainEpochFinished, PretrainStarted

    control.task = task
    shown = (PretrainStarted, PretrainBatchFinished, KnnMeasured, PretrainEpochFinished)
    epochs = [1]

    def forward(event) -> None:
        if isinstance(event, PretrainStarted):
            epochs[0] = max(1, event.epochs)
        if isinstance(event, shown):
            task.partial(event)
        if isinstance(event, PretrainBatchFinished):
            task.progress(event.epoch * event.batches + event.batch + 1, epochs[0] * event.batches)

    run = make_run([forward], control)
    status = run.run()
    return {"status": status, "run_dir": str(run.run_dir), "weights_file": str(run.run_dir / "backbone.pth")}


def new_run(recipe, config):
    def make(callbacks, control):
        from engine.pretrain.run import PretrainRun

        return PretrainRun(recipe, config, callbacks, control)

    return make


def continued_run(run_dir: str):
    def make(callbacks, control):
        from engine.pretrain.run import PretrainRun

        return PretrainRun.from_run_dir(run_dir, callbacks, control)

    return make


class PretrainDialog(QDialog):
    def __init__(self, document: RecipeDocument, parent: QWidget | None = None):
        super().__init__(parent)
        from engine.cli.pretrain import METHOD_NAMES

        self.setObjectName("pretrainDialog")
        self.setWindowTitle("Domain pre-training")
        self.document = document
        self.weights_file = ""
        self.control: JobRunControl | None = None  # the job's, while one runs
        self.run_dir = ""  # the folder of the run shown (a new one, or the one continued)
        self.stopped_run_dir = ""  # a run stopped in this dialog: Resume continues it
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
        self.cancel_button.clicked.connect(self.cancel)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pretrainPauseButton")
        self.pause_button.setToolTip("Hold the run after the current batch; Continue goes on")
        self.pause_button.setEnabled(False)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.resume_button = QPushButton("Resume…")
        self.resume_button.setObjectName("pretrainResumeButton")
        self.resume_button.setToolTip("Continue a stopped pre-training run from its checkpoint (the images must "
                                      "be the same)")
        self.resume_button.clicked.connect(self.resume)
        self.use_button = QPushButton("Use these weights")
        self.use_button.setObjectName("pretrainUseButton")
        self.use_button.setToolTip("Set the recipe's model.weights_file to the pre-trained backbone")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self.use_weights)
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("pretrainCloseButton")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.cancel_button, self.resume_button):
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
        self.steps, self.losses, self.knn = [], [], []
        self._draw()
        self._start_job(new_run(recipe, config), f"{config.method} pre-training")

    @Slot()
    def resume(self) -> None:
        """Continue the run stopped in this dialog, or one picked from disk (a run folder of `pretrain`)."""
        run_dir = self.stopped_run_dir
        if not run_dir:
            run_dir = QFileDialog.getExistingDirectory(self, "A stopped pre-training run",
                                                       str(self.document.runs_root))
            if not run_dir:
                return
        if self.stopped_run_dir != run_dir:  # another run's curves: start them afresh (its history is in its folder)
            self.steps, self.losses, self.knn = [], [], []
            self._draw()
        self._start_job(continued_run(run_dir), "resumed pre-training")

    def _start_job(self, make_run, description: str) -> None:
        self.weights_file = ""
        self.use_button.setEnabled(False)
        control = self.control = JobRunControl()
        self.runner.start(lambda task: pretraining_work(make_run, control, task), description)

    @Slot()
    def toggle_pause(self) -> None:
        control = self.control
        if control is None or not self.runner.is_busy:
            return
        if control.paused:
            control.unpause()
            self.status.setText("Continuing …")
        else:
            control.pause()
            self.status.setText("Paused after the current batch: Continue goes on, Cancel stops and keeps a "
                                "checkpoint.")
        self.pause_button.setText("Continue" if control.paused else "Pause")

    @Slot()
    def cancel(self) -> None:
        if self.control is not None:
            self.control.request_stop()  # wakes a paused run, which then stops at once
        self.runner.cancel()

    @Slot(str)
    def _on_state(self, state: str) -> None:
        busy = state != "idle"
        self.start_button.setEnabled(not busy)
        self.resume_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.pause_button.setEnabled(state == "running")
        if not busy:
            self.pause_button.setText("Pause")
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
        from engine.pretrain.events import KnnMeasured, PretrainBatchFinished, PretrainStarted, describe

        if isinstance(event, PretrainStarted):
            self.run_dir = event.run_dir
        elif isinstance(event, PretrainBatchFinished):
            self.steps.append(float(event.global_step))
            self.losses.append(event.loss)
        elif isinstance(event, KnnMeasured):
            self.knn.append((float(event.epochs_done), 100 * event.knn_acc))  # in % as on every accuracy axis
        line = describe(event)
        if line and not (self.control is not None and self.control.paused):  # "Paused" stays while it is
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
            self.stopped_run_dir = ""
            self.weights_file = result["weights_file"]
            self.use_button.setEnabled(True)
            self.status.setText(f"Finished: {self.weights_file}. Use these weights to start the recipe from them.")
        else:
            self._stopped(result["run_dir"])

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.status.setText(f"Pre-training failed: {message}")

    @Slot()
    def _on_cancelled(self) -> None:
        self._draw()
        self._stopped(self.run_dir)

    def _stopped(self, run_dir: str) -> None:
        self.stopped_run_dir = run_dir
        self.resume_button.setToolTip(f"Continue {run_dir} from its checkpoint" if run_dir else
                                      "Continue a stopped pre-training run from its checkpoint")
        self.status.setText(f"Stopped after the batch; {run_dir or 'the run folder'} keeps a checkpoint: Resume "
                            f"continues it (or python main.py resume RUN_DIR).")

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
        if self.control is not None:
            self.control.request_stop()  # a paused run wakes to stop
        self.runner.shutdown()
        super().done(result)
