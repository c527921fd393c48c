"""The Data tab's "Get a dataset…" dialog: the sets Thaw can download (the registry `python main.py datasets`
lists), which are on disk under a data folder, and a download with progress and cancel off the GUI thread
(gui/dataset_download.py runs `engine.data.download.download_source`, the same call as `python main.py download`).

"Use in recipe" puts the chosen set and folder into the recipe (`data.dataset`, `data.root`); it is offered for a
set that is on disk. Closing the dialog while a download runs cancels it (what was fetched is kept, and the next
download of the set resumes it) and closes once the worker has stopped.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.data.download import DownloadProgress, DownloadResult
from engine.data.sources import all_sources, get_source
from engine.data.sources.torchvision_sets import default_data_root
from gui.dataset_download import DownloadWorker
from gui.workers.threads import WorkerThread

COLUMNS = ("Data set", "Images", "Classes", "Download", "On disk", "Split", "Licence")
STAGE_WORDS = {"fetch": "downloading", "verify": "checking", "unpack": "unpacking"}


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class DatasetDialog(QDialog):
    """`chosen` holds (name, root) once the user picked a set for the recipe (the dialog is then accepted)."""

    def __init__(self, root: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("datasetDialog")
        self.setWindowTitle("Get a dataset")
        self.chosen: tuple[str, str] | None = None
        self.last_result: DownloadResult | None = None
        self._thread: WorkerThread | None = None
        self._worker: DownloadWorker | None = None
        self._close_when_stopped = False
        self._build(root or str(default_data_root()))
        self._fill_table()

    # --- construction -------------------------------------------------------------------------------------------
    def _build(self, root: str) -> None:
        self.datasetTable = QTableWidget(0, len(COLUMNS), objectName="datasetTable")
        self.datasetTable.setHorizontalHeaderLabels(COLUMNS)
        self.datasetTable.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.datasetTable.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.datasetTable.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.datasetTable.verticalHeader().setVisible(False)
        self.datasetTable.setToolTip("The data sets Thaw can download (python main.py datasets lists the same); "
                                     "select one to download it or to train on it")
        self.datasetTable.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.datasetTable.horizontalHeader().setStretchLastSection(True)
        self.datasetRootEdit = QLineEdit(root, objectName="datasetRootEdit")
        self.datasetRootEdit.setToolTip("The data folder: sets are downloaded here, and the recipe's data.root "
                                        "points here")
        self.datasetRootBrowseButton = self._button("datasetRootBrowseButton", "Browse…", "Choose the data folder")
        self.datasetDownloadButton = self._button(
            "datasetDownloadButton", "Download", "Fetch the selected set into the data folder: free space checked "
                                                 "first, checksum verified, resumable")
        self.datasetCancelButton = self._button("datasetCancelButton", "Cancel download",
                                                "Stop the download; what was fetched is kept and a later download "
                                                "resumes it")
        self.datasetUseButton = self._button("datasetUseButton", "Use in recipe",
                                             "Train on the selected set (it must be on disk)")
        self.datasetCloseButton = self._button("datasetCloseButton", "Close", "Close this window")
        self.datasetProgress = QProgressBar(objectName="datasetProgress")
        self.datasetProgress.setVisible(False)
        self.datasetStatusLabel = QLabel(objectName="datasetStatusLabel")
        self.datasetStatusLabel.setWordWrap(True)
        self.datasetStatusLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        root_row = QHBoxLayout()
        root_row.addWidget(QLabel("Data folder:"))
        root_row.addWidget(self.datasetRootEdit, 1)
        root_row.addWidget(self.datasetRootBrowseButton)
        buttons = QHBoxLayout()
        for button in (self.datasetDownloadButton, self.datasetCancelButton, self.datasetUseButton):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.datasetCloseButton)
        layout = QVBoxLayout(self)
        layout.addWidget(self.datasetTable, 1)
        layout.addLayout(root_row)
        layout.addWidget(self.datasetProgress)
        layout.addWidget(self.datasetStatusLabel)
        layout.addLayout(buttons)
        self.resize(980, 520)

        self.datasetTable.itemSelectionChanged.connect(self._update_buttons)
        self.datasetRootEdit.editingFinished.connect(self._fill_table)
        self.datasetRootBrowseButton.clicked.connect(self._browse)
        self.datasetDownloadButton.clicked.connect(self.start_download)
        self.datasetCancelButton.clicked.connect(self.cancel_download)
        self.datasetUseButton.clicked.connect(self._use)
        self.datasetCloseButton.clicked.connect(self.reject)

    def _button(self, name: str, text: str, tip: str):
        from PySide6.QtWidgets import QPushButton

        button = QPushButton(text, objectName=name)
        button.setToolTip(tip)
        return button

    # --- the list -----------------------------------------------------------------------------------------------
    @property
    def root(self) -> str:
        return self.datasetRootEdit.text().strip() or str(default_data_root())

    @Slot()
    def _fill_table(self) -> None:
        selected = self.selected_name()
        sources = [s for s in all_sources() if not s.local]
        self.datasetTable.setRowCount(len(sources))
        for row, source in enumerate(sources):
            cells = (source.title, f"{source.images:,}", str(source.classes), _size(source.download_bytes),
                     "yes" if source.on_disk(self.root) else "no", source.split, source.licence)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, source.name)
                item.setToolTip(f"{source.name}: {source.homepage}" if column == 0 else text)
                self.datasetTable.setItem(row, column, item)
            if source.name == selected:
                self.datasetTable.selectRow(row)
        self._update_buttons()

    def select(self, name: str) -> None:
        for row in range(self.datasetTable.rowCount()):
            if self.datasetTable.item(row, 0).data(Qt.ItemDataRole.UserRole) == name:
                self.datasetTable.selectRow(row)
                return
        raise KeyError(name)

    def selected_name(self) -> str | None:
        rows = self.datasetTable.selectionModel().selectedRows() if self.datasetTable.selectionModel() else []
        return self.datasetTable.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole) if rows else None

    def on_disk_text(self, name: str) -> str:
        for row in range(self.datasetTable.rowCount()):
            if self.datasetTable.item(row, 0).data(Qt.ItemDataRole.UserRole) == name:
                return self.datasetTable.item(row, COLUMNS.index("On disk")).text()
        raise KeyError(name)

    @property
    def running(self) -> bool:
        return self._worker is not None

    @Slot()
    def _update_buttons(self) -> None:
        name = self.selected_name()
        on_disk = name is not None and get_source(name).on_disk(self.root)
        self.datasetDownloadButton.setEnabled(name is not None and not on_disk and not self.running)
        self.datasetUseButton.setEnabled(on_disk and not self.running)
        self.datasetCancelButton.setEnabled(self.running)
        self.datasetRootEdit.setEnabled(not self.running)
        self.datasetRootBrowseButton.setEnabled(not self.running)

    @Slot()
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the data folder", self.root)
        if folder:
            self.datasetRootEdit.setText(folder)
            self._fill_table()

    @Slot()
    def _use(self) -> None:
        name = self.selected_name()
        if name is not None:
            self.chosen = (name, self.root)
            self.shutdown()
            self.accept()

    # --- downloading --------------------------------------------------------------------------------------------
    @Slot()
    def start_download(self) -> None:
        name = self.selected_name()
        if name is None or self.running:
            return
        source = get_source(name)
        self._worker = DownloadWorker(source, Path(self.root))
        self._worker.progressed.connect(self._on_progress)
        self._worker.succeeded.connect(self._on_succeeded)
        self._worker.stopped.connect(self._on_stopped)
        self._worker.failed.connect(self._on_failed)
        self._thread = WorkerThread("datasetDownloadThread", [self._worker], owner=self, job=self._worker.run,
                                    done=self._worker.finished)
        self._thread.qthread.finished.connect(self._on_thread_ended)
        self.datasetProgress.setRange(0, 0)
        self.datasetProgress.setVisible(True)
        self.datasetStatusLabel.setText(f"{source.title}: starting…")
        self._update_buttons()
        self._thread.start()

    @Slot()
    def cancel_download(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self.datasetStatusLabel.setText("stopping…")
            self.datasetCancelButton.setEnabled(False)

    @Slot(object)
    def _on_progress(self, p: DownloadProgress) -> None:
        words = f"[{p.index + 1}/{p.count}] {STAGE_WORDS.get(p.stage, p.stage)} {p.archive}"
        if p.total:
            self.datasetProgress.setRange(0, 1000)
            self.datasetProgress.setValue(int(1000 * p.done / p.total))
            words += f": {_size(p.done)} of {_size(p.total)}"
        else:
            self.datasetProgress.setRange(0, 0)  # busy: unpacking, or a server that does not say the size
        self.datasetStatusLabel.setText(words)

    @Slot(object)
    def _on_succeeded(self, result: DownloadResult) -> None:
        self.last_result = result
        brought = f" (used the archive you put there: {', '.join(result.brought)})" if result.brought else ""
        notes = "".join(f"\n{note}" for note in result.notes)
        what = "already on disk" if result.already else "downloaded"
        self.datasetStatusLabel.setText(f"{result.source} {what} under {result.root}{brought}.{notes}")

    @Slot(str)
    def _on_stopped(self, message: str) -> None:
        self.datasetStatusLabel.setText(f"Stopped: {message.split(';')[0]}. What was fetched is kept: Download "
                                        f"resumes it.")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.datasetStatusLabel.setText(message)

    @Slot()
    def _on_thread_ended(self) -> None:
        self._thread = None
        self._worker = None
        self.datasetProgress.setVisible(False)
        self._fill_table()
        if self._close_when_stopped:
            super().reject()

    # --- closing ------------------------------------------------------------------------------------------------
    def reject(self) -> None:
        """Close, Escape and the window's close button: a running download is cancelled first."""
        if self.running:
            self._close_when_stopped = True
            self.cancel_download()
            self.datasetCloseButton.setEnabled(False)
            return
        super().reject()

    def shutdown(self) -> None:
        """Stop the worker thread and wait for it (safe to call twice)."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
            self._worker = None
