"""The Evaluate tab's "Network" page: what the network sees and how much it changed. The first convolution's filters
as image grids and a chosen stage's feature maps for a chosen image, for the model the run started from (pretrained)
and the fine-tuned one side by side; and the weight drift of every stage (or layer) as bars, frozen ones exactly 0.

Both models are built off the GUI thread (NetworkViewWorker) the first time the page is seen for a run: the
pretrained one needs the weights in the local cache, and when they are missing the page says so."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.data.images import IMAGE_EXTENSIONS
from engine.infer.drift import WeightDrift
from engine.infer.run_checkpoint import CHECKPOINT_KINDS
from engine.train.runs import checkpoint_path
from gui.widgets.buttons import named_button
from gui.widgets.captioned_image import CaptionedImage
from gui.widgets.drift_plot import DriftPlot
from gui.workers.network_view import NetworkViewWorker
from gui.workers.requests import PanelThread

DEFAULT_MAPS = 16
ERROR_STYLE = "color: #c62828;"
IMAGE_FILTER = "Images ({});;All files (*)".format(" ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS)))


class NetworkView(QWidget):
    filters_requested = Signal(int, str, str, bool)  # → NetworkViewWorker.filters
    feature_maps_requested = Signal(int, str, str, str, str, int)  # → NetworkViewWorker.feature_maps
    filters_shown = Signal(dict)  # the worker's answer (error included) once drawn
    feature_maps_shown = Signal(dict)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dir = ""
        self.image = ""
        self.drift: WeightDrift | None = None
        self.drift_of = ""  # which checkpoint the drift is of, in words
        self._opened = ""  # the run whose filters were asked for
        self._stages: list[str] = []
        self._worker = NetworkViewWorker()
        self.worker_thread = PanelThread("networkViewThread", [self._worker], self)
        self._filters_request = 0
        self._build()
        self._connect()

    # --- construction -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.networkStatusLabel = QLabel(objectName="networkStatusLabel")
        self.networkStatusLabel.setWordWrap(True)
        self.networkProgress = QProgressBar(objectName="networkProgress")
        self.networkProgress.setRange(0, 0)  # building a model has no count: busy until it answers
        self.networkProgress.setMaximumWidth(160)
        self.networkCancelButton = named_button("networkCancelButton", "Cancel", "Stop waiting for the models: "
                                                "nothing is shown (choose the checkpoint again to build them)")
        self._set_building(False)
        self.networkCheckpointCombo = QComboBox(objectName="networkCheckpointCombo")
        self.networkCheckpointCombo.setToolTip("Which of the run's checkpoints is compared with the pretrained model: "
                                               "best.pt (the best validation epoch — in a gradual run possibly before "
                                               "the backbone trained) or last.pt (where the run ended)")
        self.filtersSameScaleCheck = QCheckBox("Same scale for both", objectName="filtersSameScaleCheck")
        self.filtersSameScaleCheck.setToolTip("Draw both models' filters on one symmetric scale (grey is 0) so that "
                                              "their magnitudes compare; off, each filter is stretched to its range")
        self.pretrainedFiltersView = CaptionedImage("pretrainedFiltersView", "The first convolution's filters of "
                                                    "the pretrained model the run started from", pixelated=True)
        self.finetunedFiltersView = CaptionedImage("finetunedFiltersView", "The same filters after fine-tuning",
                                                   pixelated=True)

        self.featureStageCombo = QComboBox(objectName="featureStageCombo")
        self.featureStageCombo.setToolTip("The stage whose output (feature maps) is shown")
        self.featureMapCountSpin = QSpinBox(objectName="featureMapCountSpin")
        self.featureMapCountSpin.setRange(1, 256)
        self.featureMapCountSpin.setValue(DEFAULT_MAPS)
        self.featureMapCountSpin.setSuffix(" maps")
        self.featureMapCountSpin.setKeyboardTracking(False)
        self.featureMapCountSpin.setToolTip("How many channels to show: the most active ones (by mean activation) of "
                                            "the pretrained model, the same channels of the fine-tuned one")
        self.chooseFeatureImageButton = QPushButton("Choose image…", objectName="chooseFeatureImageButton")
        self.chooseFeatureImageButton.setToolTip("The image whose feature maps are shown (selecting an image in the "
                                                 "Errors gallery chooses it too)")
        self.featureInputView = CaptionedImage("featureInputView", "The crop the models see")
        self.pretrainedFeatureMapsView = CaptionedImage("pretrainedFeatureMapsView", "The stage's feature maps in the "
                                                        "pretrained model", pixelated=True)
        self.finetunedFeatureMapsView = CaptionedImage("finetunedFeatureMapsView", "The stage's feature maps in the "
                                                       "fine-tuned model", pixelated=True)

        self.drift_plot = DriftPlot("driftPlot")
        self.driftByLayerCheck = QCheckBox("Per layer", objectName="driftByLayerCheck")
        self.driftByLayerCheck.setToolTip("One bar per layer instead of per stage")
        self.driftLabel = QLabel(objectName="driftLabel")
        self.driftLabel.setWordWrap(True)

        grid = QGridLayout()
        filters_header = QHBoxLayout()
        filters_header.addWidget(QLabel("First convolution's filters"), 1)
        filters_header.addWidget(QLabel("Checkpoint"))
        filters_header.addWidget(self.networkCheckpointCombo)
        filters_header.addWidget(self.filtersSameScaleCheck)
        grid.addLayout(filters_header, 0, 0, 1, 3)
        grid.addWidget(self.pretrainedFiltersView, 1, 0)
        grid.addWidget(self.finetunedFiltersView, 1, 1)
        maps_header = QHBoxLayout()
        maps_header.addWidget(QLabel("Feature maps of stage"))
        maps_header.addWidget(self.featureStageCombo)
        maps_header.addWidget(self.featureMapCountSpin)
        maps_header.addWidget(self.chooseFeatureImageButton)
        maps_header.addStretch(1)
        grid.addLayout(maps_header, 2, 0, 1, 3)
        grid.addWidget(self.featureInputView, 3, 2)
        grid.addWidget(self.pretrainedFeatureMapsView, 3, 0)
        grid.addWidget(self.finetunedFeatureMapsView, 3, 1)
        for row in (1, 3):
            grid.setRowStretch(row, 1)
        sees = QWidget()
        sees_layout = QVBoxLayout(sees)
        sees_layout.setContentsMargins(0, 0, 0, 0)
        status_row = QHBoxLayout()
        status_row.addWidget(self.networkProgress)
        status_row.addWidget(self.networkStatusLabel, 1)
        status_row.addWidget(self.networkCancelButton)
        sees_layout.addLayout(status_row)
        sees_layout.addLayout(grid, 1)

        drift = QWidget()
        drift_layout = QVBoxLayout(drift)
        drift_layout.setContentsMargins(0, 0, 0, 0)
        drift_header = QHBoxLayout()
        drift_header.addWidget(self.driftLabel, 1)
        drift_header.addWidget(self.driftByLayerCheck)
        drift_layout.addLayout(drift_header)
        drift_layout.addWidget(self.drift_plot.widget, 1)

        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(sees)
        body.addWidget(drift)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(body)

    def _connect(self) -> None:
        self.filtersSameScaleCheck.toggled.connect(lambda _on: self._request_filters())
        self.networkCheckpointCombo.activated.connect(lambda _i: self._request_filters())
        self.featureStageCombo.currentIndexChanged.connect(lambda _i: self._request_feature_maps())
        self.featureMapCountSpin.valueChanged.connect(lambda _n: self._request_feature_maps())
        self.chooseFeatureImageButton.clicked.connect(self._on_choose_image)
        self.networkCancelButton.clicked.connect(self.cancel)
        self.driftByLayerCheck.toggled.connect(lambda _on: self._show_drift())
        self.filters_requested.connect(self._worker.filters)
        self.feature_maps_requested.connect(self._worker.feature_maps)
        self._worker.filters_ready.connect(self._on_filters_ready)
        self._worker.feature_maps_ready.connect(self._on_feature_maps_ready)

    # --- what to show -------------------------------------------------------------------------------------------
    def set_run(self, run_dir: str, drift: WeightDrift | None, image: str = "", drift_of: str = "best.pt") -> None:
        """A run (its evaluation's drift now, of the checkpoint `drift_of`; filters and maps when the page is seen)
        and a default image for the maps."""
        self.drift, self.drift_of = drift, drift_of
        self._show_drift()
        if run_dir != self.run_dir:
            self.run_dir = run_dir
            self.networkCheckpointCombo.clear()
            for kind in CHECKPOINT_KINDS:
                if run_dir and checkpoint_path(run_dir, kind).is_file():
                    self.networkCheckpointCombo.addItem(f"{kind}.pt", kind)
            self._opened = ""
            self._stages = []
            self.featureStageCombo.clear()
            for view in (self.pretrainedFiltersView, self.finetunedFiltersView, self.featureInputView,
                         self.pretrainedFeatureMapsView, self.finetunedFeatureMapsView):
                view.clear()
            self.image = image
            self._status("" if run_dir else "Choose a run.")
        if self.isVisible():
            self.open_views()

    def set_image(self, path: str) -> None:
        """The image whose feature maps are shown."""
        if path and path != self.image:
            self.image = path
            self._request_feature_maps()

    def open_views(self) -> None:
        """Build the run's two models (once) and show their filters, then the feature maps."""
        if self.run_dir and self._opened != self.run_dir:
            self._request_filters()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.open_views()  # the models cost memory and seconds: built when the page is first looked at

    # --- filters ---------------------------------------------------------------------------------------------------
    def _request_filters(self) -> None:
        if not self.run_dir or not self._ensure_thread():
            return
        self._opened = self.run_dir
        self._filters_request = self._worker.begin_request()
        self._status(f"Building the pretrained model and {self.kind()}.pt …")
        self._set_building(True)
        self.filters_requested.emit(self._filters_request, self.run_dir, self.kind(),
                                    self.filtersSameScaleCheck.isChecked())

    def kind(self) -> str:
        """The checkpoint shown beside the pretrained model: best or last."""
        return self.networkCheckpointCombo.currentData() or "best"

    def set_kind(self, kind: str) -> None:
        index = self.networkCheckpointCombo.findData(kind)
        if index >= 0 and index != self.networkCheckpointCombo.currentIndex():
            self.networkCheckpointCombo.setCurrentIndex(index)
            self._request_filters()

    @Slot()
    def cancel(self) -> None:
        """Abandon the models being built: the worker finishes the build it is in (a model cannot be stopped half
        built) and its answer is dropped; choosing the run or checkpoint again builds them."""
        if not self._building:
            return
        self._worker.cancel()
        self._opened = ""
        self._set_building(False)
        self._status("Cancelled: the models were not shown (choose the checkpoint again to build them).")

    def _set_building(self, building: bool) -> None:
        self._building = building
        self.networkProgress.setVisible(building)
        self.networkCancelButton.setVisible(building)

    @Slot(int, dict)
    def _on_filters_ready(self, request: int, answer: dict) -> None:
        if request != self._filters_request or not self._building:
            return
        self._set_building(False)
        if answer["error"]:
            self._opened = ""  # choosing the run again retries
            self._status(f"Cannot show what the network sees: {answer['error']}", error=True)
            self.filters_shown.emit(answer)
            return
        scale = "one symmetric scale (grey = 0)" if self.filtersSameScaleCheck.isChecked() else "each stretched"
        self.pretrainedFiltersView.set_image(answer["start"], f"pretrained: {answer['filters']} filters of "
                                                              f"{answer['layer']} ({scale})")
        self.finetunedFiltersView.set_image(answer["tuned"], f"fine-tuned: the same filters in {answer['checkpoint']}")
        self.drift, self.drift_of = answer["drift"], answer["checkpoint"]
        self._show_drift()
        self._status("")
        if answer["stages"] != self._stages:
            self._stages = list(answer["stages"])
            self.featureStageCombo.blockSignals(True)
            self.featureStageCombo.clear()
            self.featureStageCombo.addItems(self._stages)
            # The middle of the body: early stages show edges, the last one is nearly 1×1 at small crops.
            self.featureStageCombo.setCurrentIndex(max(0, len(self._stages) // 2))
            self.featureStageCombo.blockSignals(False)
        self.filters_shown.emit(answer)
        self._request_feature_maps()

    # --- feature maps ---------------------------------------------------------------------------------------------
    def stage(self) -> str:
        return self.featureStageCombo.currentText()

    def set_stage(self, stage: str) -> None:
        self.featureStageCombo.setCurrentIndex(self.featureStageCombo.findText(stage))

    def _request_feature_maps(self) -> None:
        if not (self.run_dir and self.image and self.stage()) or not self._ensure_thread():
            return
        # The filters' request id: a newer run abandons these too; answers for an older image or stage are ignored.
        self.feature_maps_requested.emit(self._filters_request, self.run_dir, self.kind(), self.image, self.stage(),
                                         self.featureMapCountSpin.value())

    @Slot(int, dict)
    def _on_feature_maps_ready(self, request: int, answer: dict) -> None:
        if (answer["run_dir"], answer["kind"], answer["image"], answer["stage"]) != (self.run_dir, self.kind(),
                                                                                    self.image, self.stage()):
            return  # an older choice
        name = os.path.basename(answer["image"])
        if answer["error"]:
            for view in (self.featureInputView, self.pretrainedFeatureMapsView, self.finetunedFeatureMapsView):
                view.clear()
            self.featureInputView.clear(f"{name}: {answer['error']}")
        else:
            h, w = answer["size"]
            self.featureInputView.set_image(answer["input"], f"{name}: the crop both models see")
            self.pretrainedFeatureMapsView.set_image(
                answer["start"], f"pretrained: the {answer['shown']} most active of {answer['channels']} channels "
                                 f"({h}×{w}) of {answer['layer']}")
            self.finetunedFeatureMapsView.set_image(answer["tuned"], f"fine-tuned ({answer['kind']}.pt): the same "
                                                                     f"channels")
        self.feature_maps_shown.emit(answer)

    @Slot()
    def _on_choose_image(self) -> None:
        start = os.path.dirname(self.image) if self.image else ""
        path, _ = QFileDialog.getOpenFileName(self, "Image to look at", start, IMAGE_FILTER)
        if path:
            self.set_image(path)

    # --- drift ------------------------------------------------------------------------------------------------------
    def _show_drift(self) -> None:
        self.drift_plot.show(self.drift, by_layer=self.driftByLayerCheck.isChecked())
        if self.drift is None:
            self.driftLabel.setText("No weight drift in this evaluation (the pretrained weights were not available).")
            return
        moved = [s.name for s in self.drift.stages if s.relative]
        still = [s.name for s in self.drift.stages if s.relative == 0.0]
        self.driftLabel.setText(f"How far the weights of {self.drift_of} moved from the run's start "
                                "(‖w − w₀‖ / ‖w₀‖). "
                                + (f"Bit-identical (frozen): {', '.join(still)}. " if still else "")
                                + (f"Trained: {', '.join(moved)}." if moved else ""))

    def _status(self, text: str, error: bool = False) -> None:
        self.networkStatusLabel.setStyleSheet(ERROR_STYLE if error else "")
        self.networkStatusLabel.setText(text)

    # --- the worker thread ------------------------------------------------------------------------------------------
    def _ensure_thread(self) -> bool:
        return self.worker_thread.ensure()

    def shutdown(self) -> None:
        self.worker_thread.shutdown()
