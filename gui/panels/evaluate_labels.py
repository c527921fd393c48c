"""The Evaluate tab's "Suspect labels" page: the run's images whose label is probably wrong (confident learning on
out-of-fold probabilities, engine/infer/label_issues.py), each shown side by side with a typical image of its given
class and of the suggested one; and near-duplicate images, with train/validation leaks first, the two side by side.

The report is read from the run's label_issues.json when there is one (e.g. from `python main.py label-issues`);
"Find label issues" computes it as a job (a feature pass over the run's images, then seconds) that waits for the
device, shows its progress and can be cancelled."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.infer.label_issues import NEAR_DUPLICATE_THRESHOLD, DuplicatePair, LabelIssueReport, Suspect
from gui.jobs.progress_view import JobProgress
from gui.jobs.runner import JobRunner
from gui.widgets.captioned_image import CaptionedImage
from gui.widgets.relabel_bar import RelabelBar, label_after, run_data_root
from gui.workers.label_issues import LabelIssuesWorker, label_issues_work
from gui.workers.requests import PanelThread

BACKBONES = (("start", "Pretrained backbone (the run's start)"), ("trained", "Fine-tuned backbone (the checkpoint)"))
LEAKS, ALL_PAIRS = "leaks", "all"
SUSPECT_COLUMNS = ("File", "Split", "Given", "Suggested", "p(given)", "p(suggested)")
PAIR_COLUMNS = ("Image A", "Image B", "Splits", "Similarity", "Identical")
ERROR_STYLE = "color: #c62828;"


def _table(object_name: str, columns: tuple[str, ...], tooltip: str) -> QTableWidget:
    table = QTableWidget(0, len(columns), objectName=object_name)
    table.setHorizontalHeaderLabels(columns)
    table.setToolTip(tooltip)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _item(text: str, tooltip: str = "", value=None) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setToolTip(tooltip or text)
    if value is not None:
        item.setData(Qt.ItemDataRole.UserRole, value)
    return item


class LabelIssuesView(QWidget):
    load_requested = Signal(int, str)  # → LabelIssuesWorker.load
    previews_requested = Signal(int, list)  # → LabelIssuesWorker.load_previews
    report_shown = Signal(object)  # the LabelIssueReport on display (None: none)
    previews_shown = Signal(list)  # the paths now shown side by side

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.report: LabelIssueReport | None = None
        self.run_dir = ""
        self._worker = LabelIssuesWorker()
        self.worker_thread = PanelThread("labelIssuesThread", [self._worker], self)
        self._request = 0
        self._preview_request = 0
        self._preview_targets: dict[int, list[CaptionedImage]] = {}
        self._pairs: list[DuplicatePair] = []
        self._build()
        self._connect()
        self._show_report(None)

    # --- construction -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.findLabelIssuesButton = QPushButton("Find label issues", objectName="findLabelIssuesButton")
        self.findLabelIssuesButton.setToolTip("Rank the run's images by how likely their label is wrong (confident "
                                              "learning on a k-fold head over cached features), find near-duplicates "
                                              "and train/validation leaks; writes label_issues.json")
        self.labelIssuesBackboneCombo = QComboBox(objectName="labelIssuesBackboneCombo")
        for name, title in BACKBONES:
            self.labelIssuesBackboneCombo.addItem(title, name)
        self.labelIssuesBackboneCombo.setToolTip("Whose features to use: the pretrained backbone has not seen the "
                                                 "labels (a fine-tuned one may have memorised the wrong ones)")
        self.labelIssuesRunner = JobRunner("labelIssues", "Label issues", self, uses_device=True)
        self.labelIssuesProgress = JobProgress(self.labelIssuesRunner, unit="image")
        self.labelIssuesStatusLabel = QLabel(objectName="labelIssuesStatusLabel")
        self.labelIssuesStatusLabel.setWordWrap(True)
        self.labelIssuesStatusLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(self.findLabelIssuesButton)
        top.addWidget(self.labelIssuesBackboneCombo)
        top.addWidget(self.labelIssuesProgress, 1)

        self.suspectsTable = _table("suspectsTable", SUSPECT_COLUMNS, "Images whose label is probably wrong, most "
                                    "suspect first; select one to see it beside examples of both classes")
        self.suspectImage = CaptionedImage("suspectImage", "The suspect image")
        self.givenExampleImage = CaptionedImage("givenExampleImage", "A typical image of the class it is labelled as")
        self.suggestedExampleImage = CaptionedImage("suggestedExampleImage",
                                                    "A typical image of the class the head suggests")
        suspects = self._side_by_side(self.suspectsTable, "Suspect labels",
                                      [self.suspectImage, self.givenExampleImage, self.suggestedExampleImage])
        self.suspectRelabelBar = RelabelBar("suspect")
        suspects_box = QWidget()
        suspects_layout = QVBoxLayout(suspects_box)
        suspects_layout.setContentsMargins(0, 0, 0, 0)
        suspects_layout.addWidget(suspects, 1)
        suspects_layout.addWidget(self.suspectRelabelBar)

        self.duplicatesFilterCombo = QComboBox(objectName="duplicatesFilterCombo")
        self.duplicatesFilterCombo.addItem("Train/validation leaks", LEAKS)
        self.duplicatesFilterCombo.addItem("All near-duplicates", ALL_PAIRS)
        self.duplicatesFilterCombo.setToolTip("Leaks: the same (or nearly the same) image in training and in "
                                              "validation, which makes the validation score too good")
        self.duplicatesTable = _table("duplicatesTable", PAIR_COLUMNS, "Pairs of identical or nearly identical "
                                      "images, most similar first; select one to see both")
        self.duplicateImageA = CaptionedImage("duplicateImageA", "The pair's first image")
        self.duplicateImageB = CaptionedImage("duplicateImageB", "The pair's second image")
        pairs = self._side_by_side(self.duplicatesTable, "", [self.duplicateImageA, self.duplicateImageB],
                                   self.duplicatesFilterCombo)

        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(suspects_box)
        body.addWidget(pairs)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.labelIssuesStatusLabel)
        layout.addWidget(body, 1)

    @staticmethod
    def _side_by_side(table: QTableWidget, title: str, images: list[CaptionedImage],
                      header: QWidget | None = None) -> QSplitter:
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        if title:
            left_layout.addWidget(QLabel(title))
        if header is not None:
            left_layout.addWidget(header)
        left_layout.addWidget(table, 1)
        right = QWidget()
        right_layout = QHBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        for image in images:
            right_layout.addWidget(image, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        return splitter

    def _connect(self) -> None:
        self.findLabelIssuesButton.clicked.connect(self.find_label_issues)
        self.duplicatesFilterCombo.currentIndexChanged.connect(lambda _i: self._show_pairs())
        self.suspectsTable.itemSelectionChanged.connect(self._on_suspect_selected)
        self.duplicatesTable.itemSelectionChanged.connect(self._on_pair_selected)
        self.load_requested.connect(self._worker.load)
        self.previews_requested.connect(self._worker.load_previews)
        self._worker.report_ready.connect(self._on_report_ready)
        self.labelIssuesRunner.job_succeeded.connect(self._on_report_found)
        self.labelIssuesRunner.job_failed.connect(self._on_search_failed)
        self.labelIssuesRunner.job_cancelled.connect(self._on_search_cancelled)
        self.labelIssuesRunner.job_finished.connect(self._update_button)
        self._worker.report_failed.connect(self._on_report_failed)
        self._worker.previews_ready.connect(self._on_previews_ready)
        self.suspectRelabelBar.image_relabelled.connect(self._on_image_relabelled)

    # --- a run ----------------------------------------------------------------------------------------------------
    def set_run(self, run_dir: str) -> None:
        """Show the run's label_issues.json, if it has one. The same run again changes nothing: a report being
        computed for it is not abandoned."""
        if run_dir == self.run_dir:
            return
        self.labelIssuesRunner.cancel()  # it searched another run
        self.run_dir = run_dir
        self.suspectRelabelBar.set_data_roots(run_data_root(run_dir))
        self._show_report(None)
        self._update_button()
        if run_dir and self._ensure_thread():
            self._request = self._worker.begin_request()
            self.load_requested.emit(self._request, run_dir)

    @Slot()
    def find_label_issues(self) -> None:
        if not self.run_dir or self.labelIssuesRunner.is_busy or self.worker_thread.shut_down:
            return
        self._request = self._worker.begin_request()  # a read in flight is not shown over the search
        self._status("Finding label issues: computing the features of every training and validation image …")
        self.labelIssuesRunner.start(label_issues_work(self.run_dir, self.labelIssuesBackboneCombo.currentData()),
                                     f"Finding label issues in {os.path.basename(self.run_dir)}")
        self._update_button()

    @Slot(object)
    def _on_report_found(self, result: tuple) -> None:
        run_dir, report, where = result
        if run_dir == self.run_dir:
            self._show_report(report, where)

    @Slot(str)
    def _on_search_failed(self, message: str) -> None:
        self._status(message, error=True)

    @Slot()
    def _on_search_cancelled(self) -> None:
        if self.report is None and self.run_dir:
            self._status("Finding label issues was cancelled: nothing was written.")

    @Slot()
    def _update_button(self) -> None:
        self.findLabelIssuesButton.setEnabled(bool(self.run_dir) and not self.labelIssuesRunner.is_busy)

    @Slot(int, str, object, str)
    def _on_report_ready(self, request: int, run_dir: str, report: LabelIssueReport | None, where: str) -> None:
        if request != self._request or run_dir != self.run_dir:
            return
        self._show_report(report, where)

    @Slot(int, str)
    def _on_report_failed(self, request: int, message: str) -> None:
        if request != self._request:
            return
        self._status(message, error=True)

    def _status(self, text: str, error: bool = False) -> None:
        self.labelIssuesStatusLabel.setStyleSheet(ERROR_STYLE if error else "")
        self.labelIssuesStatusLabel.setText(text)

    # --- the report -------------------------------------------------------------------------------------------------
    def _show_report(self, report: LabelIssueReport | None, where: str = "") -> None:
        self.report = report
        for image in (self.suspectImage, self.givenExampleImage, self.suggestedExampleImage, self.duplicateImageA,
                      self.duplicateImageB):
            image.clear()
        self.suspectsTable.setRowCount(0)
        self.suspectRelabelBar.set_image("")
        if report is None:
            self._pairs = []
            self.duplicatesTable.setRowCount(0)
            self._status("Find label issues to rank the images whose label is probably wrong and to find "
                         "near-duplicates and train/validation leaks." if self.run_dir else "")
            self.report_shown.emit(None)
            return
        backbone = "pretrained" if report.backbone == "start" else "fine-tuned"
        self._status(f"{len(report.suspects)} suspect label(s) among {report.images} images · "
                     f"{report.near_duplicate_total} near-duplicate pair(s), {len(report.leaks)} across the "
                     f"train/validation split · features of the {backbone} backbone, {report.folds}-fold head "
                     f"(out-of-fold accuracy {report.out_of_fold_accuracy:.1%}) · {report.created}"
                     + (f" · {where}" if where else ""))
        self.suspectsTable.setRowCount(len(report.suspects))
        for row, suspect in enumerate(report.suspects):
            cells = (_item(os.path.basename(suspect.path), suspect.path, suspect.path), _item(suspect.split),
                     _item(suspect.given), _item(suspect.suggested), _item(f"{suspect.quality:.3f}"),
                     _item(f"{suspect.suggested_probability:.3f}"))
            for column, item in enumerate(cells):
                self.suspectsTable.setItem(row, column, item)
        self._show_pairs()
        self.report_shown.emit(report)
        if report.suspects:
            self.suspectsTable.selectRow(0)

    def _show_pairs(self) -> None:
        report = self.report
        if report is None:
            return
        self._pairs = list(report.leaks if self.duplicatesFilterCombo.currentData() == LEAKS
                           else report.near_duplicates)
        self.duplicatesTable.setRowCount(len(self._pairs))
        for row, pair in enumerate(self._pairs):
            cells = (_item(os.path.basename(pair.a), pair.a), _item(os.path.basename(pair.b), pair.b),
                     _item(f"{pair.split_a} / {pair.split_b}"), _item(f"{pair.similarity:.4f}"),
                     _item("yes" if pair.exact else ""))
            for column, item in enumerate(cells):
                self.duplicatesTable.setItem(row, column, item)
        self.duplicatesTable.setToolTip(
            f"Identical files, or images whose features are closer than {NEAR_DUPLICATE_THRESHOLD} × the median "
            f"nearest-neighbour distance (radius {report.radius:.3g}); select a pair to see both")

    def suspects(self) -> list[Suspect]:
        return list(self.report.suspects) if self.report is not None else []

    def pairs(self) -> list[DuplicatePair]:
        """The pairs listed now (leaks or every near-duplicate)."""
        return list(self._pairs)

    @Slot(str, object)
    def _on_image_relabelled(self, root: str, change) -> None:
        """The suspect's row follows its image: the new class (or the trash) in the Given column; an undo brings
        the old one back. The report file keeps what was found."""
        before, after = os.path.join(root, change.source), os.path.join(root, change.target)
        for row, suspect in enumerate(self.report.suspects if self.report is not None else []):
            if os.path.abspath(suspect.path) != os.path.abspath(before):
                continue
            suspect.path = after
            label = label_after(root, change)
            if label:
                suspect.given = label
            self.suspectsTable.setItem(row, 0, _item(os.path.basename(after), after, after))
            self.suspectsTable.setItem(row, 2, _item(label or "(in the trash)"))

    # --- side by side ------------------------------------------------------------------------------------------------
    @Slot()
    def _on_suspect_selected(self) -> None:
        row = self.suspectsTable.currentRow()
        if self.report is None or not 0 <= row < len(self.report.suspects):
            return
        suspect = self.report.suspects[row]
        self.suspectRelabelBar.set_image(suspect.path, suggested=suspect.suggested)
        examples = self.report.examples
        given, suggested = examples.get(suspect.given, ""), examples.get(suspect.suggested, "")
        missing = "no example stored (find label issues again)"
        self.suspectImage.clear(f"{os.path.basename(suspect.path)} [{suspect.split}]\nlabelled {suspect.given} "
                                f"(p {suspect.quality:.2f})")
        self.givenExampleImage.clear(f"an example of {suspect.given}" if given else missing)
        self.suggestedExampleImage.clear(f"an example of {suspect.suggested}, the suggested label "
                                         f"(p {suspect.suggested_probability:.2f})" if suggested else missing)
        self._request_previews([suspect.path, given, suggested],
                               [self.suspectImage, self.givenExampleImage, self.suggestedExampleImage])

    @Slot()
    def _on_pair_selected(self) -> None:
        row = self.duplicatesTable.currentRow()
        if not 0 <= row < len(self._pairs):
            return
        pair = self._pairs[row]
        what = "identical files" if pair.exact else f"similarity {pair.similarity:.4f}"
        self.duplicateImageA.clear(f"{os.path.basename(pair.a)} [{pair.split_a}]")
        self.duplicateImageB.clear(f"{os.path.basename(pair.b)} [{pair.split_b}] · {what}")
        self._request_previews([pair.a, pair.b], [self.duplicateImageA, self.duplicateImageB])

    def _request_previews(self, paths: list[str], targets: list[CaptionedImage]) -> None:
        if not self._ensure_thread():
            return
        self._preview_request += 1
        self._preview_targets = {self._preview_request: targets}  # only the newest selection is drawn
        self.previews_requested.emit(self._preview_request, paths)

    @Slot(int, list)
    def _on_previews_ready(self, request: int, previews: list) -> None:
        targets = self._preview_targets.pop(request, None)
        if targets is None:
            return
        for target, (_path, image, error) in zip(targets, previews):
            caption = target.caption.text()
            target.set_image(image, caption + (f"\n{error}" if error else ""))
        self.previews_shown.emit([path for path, _, _ in previews])

    # --- the worker thread -------------------------------------------------------------------------------------------
    def _ensure_thread(self) -> bool:
        return self.worker_thread.ensure()

    def shutdown(self) -> None:
        self.worker_thread.shutdown()
