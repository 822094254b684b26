"""Query/retrieve dialog: pick a PACS, search studies, fetch a series into a folder.

Every network call (echo, study search, series listing, retrieve) runs on the
``TaskRunner`` worker thread with progress and Cancel; the dialog only
collects parameters and shows results. Servers are kept in QSettings under
``pacs/servers``. Patient names appear in the results because the user asked
the PACS for them; they are never logged.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QDate, QSettings, QStandardPaths, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.workers import TaskRunner
from imaging.errors import TwinPlanError
from imaging.pacs import DEFAULT_CALLING_AE, PacsNode, echo, find_series, find_studies, get_series

log = logging.getLogger(__name__)

MODALITIES = ("", "CT", "MR", "PT", "NM", "US", "CR", "DX", "XA", "MG", "SEG", "RTSTRUCT")
COLUMNS = ("Patient / series", "Patient ID", "Date", "Modality", "Description", "Series / images")
_ROLE = Qt.UserRole


class ServerDialog(QDialog):
    """Edit one PACS entry: display name, host, port and AE title."""

    def __init__(self, parent: Optional[QWidget] = None, name: str = "", node: Optional[PacsNode] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS server")
        self.name_edit = QLineEdit(name)
        self.host_edit = QLineEdit(node.host if node else "")
        self.port_spin = QSpinBox()
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(node.port if node else 104)
        self.aet_edit = QLineEdit(node.ae_title if node else "")
        self.aet_edit.setMaxLength(16)
        form = QFormLayout(self)
        form.addRow("Name", self.name_edit)
        form.addRow("Host", self.host_edit)
        form.addRow("Port", self.port_spin)
        form.addRow("AE title", self.aet_edit)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #b00020")
        form.addRow(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def server(self) -> tuple[str, PacsNode]:
        """(name, node) from the fields; raises ``InputError`` on a bad field."""
        node = PacsNode(self.host_edit.text().strip(), self.port_spin.value(), self.aet_edit.text().strip())
        return self.name_edit.text().strip() or f"{node.ae_title}@{node.host}", node

    def accept(self) -> None:
        try:
            self.server()
        except TwinPlanError as exc:
            self.error_label.setText(str(exc))
            return
        super().accept()


class PacsDialog(QDialog):
    """Search a PACS and retrieve a series (C-GET) into a folder.

    Parameters
    ----------
    parent : QWidget, optional
    settings : QSettings, optional
        Where the server list, our AE title and the download folder are kept.

    Signals
    -------
    retrieved(str)
        Folder holding the retrieved series (DICOM files), ready to import.
    """

    retrieved = Signal(str)

    def __init__(self, parent: Optional[QWidget] = None, settings: Optional[QSettings] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Query / retrieve from PACS")
        self.settings = settings or QSettings("TwinPlan", "TwinPlan")
        self.runner = TaskRunner(self)
        self.servers: dict[str, PacsNode] = {}
        self._build()
        self._load_settings()
        self.runner.started.connect(self._on_started)
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self._update_buttons()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        server_box = QGroupBox("Server")
        grid = QGridLayout(server_box)
        self.server_combo = QComboBox()
        self.server_combo.setMinimumWidth(260)
        self.add_button, self.edit_button = QPushButton("Add..."), QPushButton("Edit...")
        self.remove_button, self.echo_button = QPushButton("Remove"), QPushButton("Test connection")
        self.calling_edit = QLineEdit()
        self.calling_edit.setMaxLength(16)
        self.calling_edit.setMaximumWidth(180)
        self.calling_edit.setToolTip("Our AE title, as configured on the PACS")
        grid.addWidget(QLabel("PACS"), 0, 0)
        grid.addWidget(self.server_combo, 0, 1)
        for col, button in enumerate((self.add_button, self.edit_button, self.remove_button, self.echo_button), 2):
            grid.addWidget(button, 0, col)
        grid.addWidget(QLabel("Our AE title"), 1, 0)
        grid.addWidget(self.calling_edit, 1, 1, Qt.AlignLeft)
        grid.setColumnStretch(6, 1)

        search_box = QGroupBox("Search")
        sgrid = QGridLayout(search_box)
        self.name_edit, self.id_edit = QLineEdit(), QLineEdit()
        self.name_edit.setPlaceholderText("e.g. DOE^J*")
        self.id_edit.setPlaceholderText("wildcards * and ? allowed")
        self.from_check, self.to_check = QCheckBox("From"), QCheckBox("To")
        self.from_date, self.to_date = QDateEdit(QDate.currentDate().addYears(-1)), QDateEdit(QDate.currentDate())
        for check, date in ((self.from_check, self.from_date), (self.to_check, self.to_date)):
            date.setCalendarPopup(True)
            date.setDisplayFormat("yyyy-MM-dd")
            date.setEnabled(False)
            check.toggled.connect(date.setEnabled)
        self.modality_combo = QComboBox()
        self.modality_combo.setEditable(True)
        self.modality_combo.addItems(MODALITIES)
        self.modality_combo.lineEdit().setPlaceholderText("any")
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        sgrid.addWidget(QLabel("Patient name"), 0, 0)
        sgrid.addWidget(self.name_edit, 0, 1)
        sgrid.addWidget(QLabel("Patient ID"), 0, 2)
        sgrid.addWidget(self.id_edit, 0, 3)
        sgrid.addWidget(QLabel("Modality"), 0, 4)
        sgrid.addWidget(self.modality_combo, 0, 5)
        sgrid.addWidget(QLabel("Study date"), 1, 0)
        dates = QHBoxLayout()
        for w in (self.from_check, self.from_date, self.to_check, self.to_date):
            dates.addWidget(w)
        dates.addStretch(1)
        sgrid.addLayout(dates, 1, 1, 1, 3)
        sgrid.addWidget(self.search_button, 1, 5)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setSelectionMode(QAbstractItemView.SingleSelection)
        self.tree.setAlternatingRowColors(True)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.tree.header().setStretchLastSection(False)
        self.tree.header().setSectionResizeMode(4, QHeaderView.Stretch)

        self.folder_edit = QLineEdit()
        self.browse_button = QPushButton("Browse...")
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("Save to"))
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.status_label = QLabel("Add or pick a PACS, then search.")
        self.status_label.setWordWrap(True)
        self.retrieve_button, self.cancel_button = QPushButton("Retrieve"), QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        bottom = QHBoxLayout()
        bottom.addWidget(self.progress_bar, 1)
        for button in (self.retrieve_button, self.cancel_button, self.close_button):
            bottom.addWidget(button)

        layout = QVBoxLayout(self)
        layout.addWidget(server_box)
        layout.addWidget(search_box)
        layout.addWidget(self.tree, 1)
        layout.addLayout(folder_row)
        layout.addWidget(self.status_label)
        layout.addLayout(bottom)
        self.resize(980, 640)

        self.add_button.clicked.connect(self._on_add)
        self.edit_button.clicked.connect(self._on_edit)
        self.remove_button.clicked.connect(self._on_remove)
        self.echo_button.clicked.connect(self.test_connection)
        self.server_combo.currentTextChanged.connect(self._on_server_changed)
        self.search_button.clicked.connect(self.search)
        self.tree.itemSelectionChanged.connect(self._on_selection)
        self.tree.itemExpanded.connect(self._load_series)
        self.browse_button.clicked.connect(self._on_browse)
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.close_button.clicked.connect(self.reject)

    # -- settings and server list -------------------------------------------------------------
    def _load_settings(self) -> None:
        try:
            entries = json.loads(str(self.settings.value("pacs/servers", "[]") or "[]"))
            for e in entries:
                self.servers[e["name"]] = PacsNode(e["host"], int(e["port"]), e["ae_title"])
        except (ValueError, KeyError, TypeError, TwinPlanError):
            log.warning("ignoring an unreadable PACS server list in the settings")
        self.calling_edit.setText(str(self.settings.value("pacs/calling_ae", DEFAULT_CALLING_AE)))
        default_dir = Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or Path.home()) / "pacs"
        self.folder_edit.setText(str(self.settings.value("pacs/download_dir", str(default_dir))))
        self._refresh_combo(str(self.settings.value("pacs/current", "")))

    def _save_settings(self) -> None:
        entries = [{"name": n, "host": s.host, "port": s.port, "ae_title": s.ae_title} for n, s in self.servers.items()]
        self.settings.setValue("pacs/servers", json.dumps(entries))
        self.settings.setValue("pacs/current", self.server_combo.currentText())
        self.settings.setValue("pacs/calling_ae", self.calling_edit.text().strip())
        self.settings.setValue("pacs/download_dir", self.folder_edit.text().strip())

    def _refresh_combo(self, current: str = "") -> None:
        self.server_combo.blockSignals(True)
        self.server_combo.clear()
        self.server_combo.addItems(sorted(self.servers))
        self.server_combo.blockSignals(False)
        if current in self.servers:
            self.server_combo.setCurrentText(current)
        self._on_server_changed(self.server_combo.currentText())

    def add_server(self, name: str, node: PacsNode) -> None:
        """Add (or replace) a server entry, select it and save the list."""
        self.servers[name] = node
        self._refresh_combo(name)
        self._save_settings()

    def current_node(self) -> Optional[PacsNode]:
        return self.servers.get(self.server_combo.currentText())

    def _on_add(self) -> None:
        dialog = ServerDialog(self)
        if dialog.exec() == QDialog.Accepted:
            self.add_server(*dialog.server())

    def _on_edit(self) -> None:
        name = self.server_combo.currentText()
        dialog = ServerDialog(self, name, self.servers.get(name))
        if dialog.exec() == QDialog.Accepted:
            self.servers.pop(name, None)
            self.add_server(*dialog.server())

    def _on_remove(self) -> None:
        self.servers.pop(self.server_combo.currentText(), None)
        self._refresh_combo()
        self._save_settings()

    def _on_server_changed(self, name: str) -> None:
        node = self.servers.get(name)
        self.server_combo.setToolTip(str(node) if node else "")
        self.tree.clear()
        self._update_buttons()

    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save retrieved series in", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    # -- network actions (worker thread) ------------------------------------------------------
    def _start(self, title: str, step, on_done) -> bool:
        node = self.current_node()
        if node is None:
            self.show_error("Add a PACS server first.")
            return False
        self._save_settings()
        self.status_label.setStyleSheet("")
        return self.runner.run(title, step, on_done, self._on_error,
                               lambda: self.status_label.setText(f"{title}: cancelled."))

    def test_connection(self) -> bool:
        """C-ECHO the current server; the result goes to the status line."""
        node, calling = self.current_node(), self.calling_edit.text().strip()
        return self._start("Testing connection", lambda progress, cancelled: echo(node, calling_ae=calling),
                           lambda seconds: self.status_label.setText(
                               f"{node} answers (C-ECHO {seconds * 1000:.0f} ms)."))

    def search(self) -> bool:
        """Search studies with the current fields (runs on the worker thread)."""
        node, calling = self.current_node(), self.calling_edit.text().strip()
        query = {"patient_name": self.name_edit.text().strip() or None,
                 "patient_id": self.id_edit.text().strip() or None,
                 "date_from": self.from_date.date().toString("yyyyMMdd") if self.from_check.isChecked() else None,
                 "date_to": self.to_date.date().toString("yyyyMMdd") if self.to_check.isChecked() else None,
                 "modality": self.modality_combo.currentText().strip() or None}

        def step(progress, cancelled):
            progress(0.0, "Searching")
            return find_studies(node, **query, calling_ae=calling, cancelled=cancelled)

        return self._start("Searching studies", step, self._show_studies)

    def _show_studies(self, studies: list[dict]) -> None:
        self.tree.clear()
        for study in studies:
            item = QTreeWidgetItem([
                str(study.get("PatientName", "")).replace("^", " ").strip(), study.get("PatientID", ""),
                _pretty_date(study.get("StudyDate", "")), "/".join(study.get("ModalitiesInStudy") or []),
                study.get("StudyDescription", ""), str(study.get("NumberOfStudyRelatedSeries") or "")])
            item.setData(0, _ROLE, ("study", study))
            item.setChildIndicatorPolicy(QTreeWidgetItem.ShowIndicator)
            self.tree.addTopLevelItem(item)
        self.status_label.setText(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found. "
                                  "Select a study to list its series.")

    def _load_series(self, item: QTreeWidgetItem) -> bool:
        kind, study = item.data(0, _ROLE)
        if kind != "study" or item.childCount() or self.runner.busy:
            return False
        node, calling, uid = self.current_node(), self.calling_edit.text().strip(), study["StudyInstanceUID"]

        def done(series: list[dict]) -> None:
            for s in series:
                child = QTreeWidgetItem([
                    f"Series {s.get('SeriesNumber', '')}".strip(), "", "", s.get("Modality", ""),
                    s.get("SeriesDescription", ""), str(s.get("NumberOfSeriesRelatedInstances") or "")])
                child.setData(0, _ROLE, ("series", dict(s, StudyInstanceUID=uid)))
                item.addChild(child)
            item.setExpanded(True)
            self.status_label.setText(f"{len(series)} series. Select one and press Retrieve.")

        return self._start("Listing series",
                           lambda progress, cancelled: find_series(node, uid, calling_ae=calling, cancelled=cancelled),
                           done)

    def selected_series(self) -> Optional[dict]:
        """The selected series (its C-FIND values plus StudyInstanceUID), or None."""
        items = self.tree.selectedItems()
        data = items[0].data(0, _ROLE) if items else None
        return data[1] if data and data[0] == "series" else None

    def retrieve(self) -> bool:
        """Fetch the selected series with C-GET into ``<Save to>/<SeriesInstanceUID>``."""
        series = self.selected_series()
        if series is None:
            self.show_error("Select a series to retrieve.")
            return False
        node, calling = self.current_node(), self.calling_edit.text().strip()
        if not self.folder_edit.text().strip():
            self.show_error("Choose a folder to save to.")
            return False
        folder = Path(self.folder_edit.text().strip()) / series["SeriesInstanceUID"]

        def step(progress, cancelled):
            progress(0.0, "Connecting")
            return get_series(node, series["StudyInstanceUID"], series["SeriesInstanceUID"], folder,
                              progress=progress, cancelled=cancelled, calling_ae=calling)

        def done(files) -> None:
            self.status_label.setText(f"Retrieved {len(files)} images into {folder}.")
            self.retrieved.emit(str(folder))

        return self._start("Retrieving series", step, done)

    # -- task feedback ------------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        """Show an error in the status line (no modal box: the dialog stays usable)."""
        self.status_label.setStyleSheet("color: #b00020")
        self.status_label.setText(message)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, TwinPlanError):
            self.show_error(str(exc))
        else:
            log.error("PACS task failed", exc_info=(type(exc), exc, exc.__traceback__))
            self.show_error(f"Unexpected error ({type(exc).__name__}: {exc}); details are in the log.")

    def _on_started(self, title: str) -> None:
        self.progress_bar.setValue(0)
        self.status_label.setText(f"{title}...")
        self._update_buttons()

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(1000 * max(0.0, min(1.0, fraction))))
        if message:
            self.status_label.setText(message)

    def _on_finished(self, state: str) -> None:
        self.progress_bar.setValue(1000 if state == "done" else 0)
        self._update_buttons()

    def _on_selection(self) -> None:
        items = self.tree.selectedItems()
        if items and items[0].data(0, _ROLE)[0] == "study":
            self._load_series(items[0])
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy, has_node = self.runner.busy, self.current_node() is not None
        for button in (self.search_button, self.echo_button):
            button.setEnabled(has_node and not busy)
        self.edit_button.setEnabled(has_node and not busy)
        self.remove_button.setEnabled(has_node and not busy)
        self.add_button.setEnabled(not busy)
        self.retrieve_button.setEnabled(has_node and not busy and self.selected_series() is not None)
        self.cancel_button.setEnabled(busy)

    def done(self, result: int) -> None:
        """Closing cancels a running task and waits for the worker thread."""
        self.runner.shutdown()
        self._save_settings()
        super().done(result)


def _pretty_date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value
