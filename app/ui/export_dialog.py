"""File > Export volume or label...: NRRD, NIfTI, DICOM CT or DICOM SEG, de-identified by default.

The dialog only collects choices; ``app.exporting.export_item`` writes the
files on the window's worker thread (progress in the status bar, Esc cancels).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPushButton, QVBoxLayout, QWidget,
)

from app.exporting import FORMATS_BY_KIND
from app.ui.extensions import make_action, menu

FORMAT_TEXT = {"nrrd": "NRRD (.nrrd)", "nifti": "NIfTI (.nii.gz)", "dicom": "DICOM CT series (folder)",
               "seg": "DICOM SEG (folder)"}
SUFFIX = {"nrrd": ".nrrd", "nifti": ".nii.gz", "dicom": "_dicom", "seg": "_seg"}


class ExportDialog(QDialog):
    """Choose an item of the case, a format, a destination and de-identification."""

    def __init__(self, case, folder: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("export_dialog")
        self.setWindowTitle("Export volume or label")
        self._folder = folder
        self._path_edited = False
        self.item_combo = QComboBox()
        for kind, store in (("volume", case.volumes), ("label", case.labels)):
            for name in store:
                self.item_combo.addItem(f"{kind.capitalize()}: {name}", (kind, name))
        self.format_combo = QComboBox()
        self.path_edit = QLineEdit()
        self.path_edit.textEdited.connect(lambda _t: setattr(self, "_path_edited", True))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.deid_check = QCheckBox("De-identify (DICOM PS3.15 basic profile: names, IDs, UIDs, dates)")
        self.burned_check = QCheckBox("Export images flagged with burned-in annotation (warn instead of refusing)")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Item", self.item_combo)
        form.addRow("Format", self.format_combo)
        form.addRow("Destination", path_row)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.deid_check)
        layout.addWidget(self.burned_check)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self.item_combo.currentIndexChanged.connect(self._item_changed)
        self.format_combo.currentIndexChanged.connect(self._format_changed)
        self._item_changed()

    def choice(self) -> dict:
        kind, name = self.item_combo.currentData()
        return {"kind": kind, "name": name, "fmt": self.format_combo.currentData(),
                "out": self.path_edit.text().strip(), "deidentify": self.deid_check.isChecked(),
                "allow_burned_in": self.burned_check.isChecked()}

    def _item_changed(self) -> None:
        data = self.item_combo.currentData()
        self.format_combo.blockSignals(True)
        self.format_combo.clear()
        if data is not None:
            for fmt in FORMATS_BY_KIND[data[0]]:
                self.format_combo.addItem(FORMAT_TEXT[fmt], fmt)
        self.format_combo.blockSignals(False)
        self._format_changed()

    def _format_changed(self) -> None:
        fmt = self.format_combo.currentData()
        dicom = fmt in ("dicom", "seg")
        # On by default for DICOM, where names, IDs and dates live; NRRD/NIfTI headers carry geometry only.
        self.deid_check.setEnabled(dicom)
        self.deid_check.setChecked(dicom)
        self.burned_check.setEnabled(dicom)
        self.note.setText("DICOM files carry the patient's identity unless de-identified." if dicom else
                          "NRRD and NIfTI headers hold geometry only: no patient data is written.")
        data = self.item_combo.currentData()
        if data is not None and fmt and not self._path_edited:
            self.path_edit.setText(str(Path(self._folder) / f"{data[1]}{SUFFIX[fmt]}"))

    def _browse(self) -> None:
        fmt = self.format_combo.currentData()
        if fmt in ("dicom", "seg"):
            path = QFileDialog.getExistingDirectory(self, "Export into a new folder inside", self._folder)
            if path:
                path = str(Path(path) / Path(self.path_edit.text()).name)
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export as", self.path_edit.text(), FORMAT_TEXT[fmt])
        if path:
            self.path_edit.setText(path)
            self._path_edited = True


def install(window) -> None:
    action = make_action(window, "export_item", "Export &volume or label...", lambda: export_item_dialog(window),
                         "Ctrl+Shift+E",
                         "Write a volume or label as NRRD, NIfTI, DICOM CT or DICOM SEG (de-identified by default)")
    file_menu = menu(window, "&File")
    mesh_action = window.actions_by_name.get("export_mesh")
    after = file_menu.actions()
    index = after.index(mesh_action) + 1 if mesh_action in after else len(after)
    file_menu.insertAction(after[index] if index < len(after) else None, action)


def export_item_dialog(window, accept=None) -> bool:
    """Ask what to export and start it; ``accept(dialog)`` replaces ``exec`` in tests."""
    from imaging.errors import InputError

    if window.case is None or not (window.case.volumes or window.case.labels):
        window.report_error(InputError("nothing to export: open a scan first"), "Export")
        return False
    folder = window._last_dir() if hasattr(window, "_last_dir") else str(Path.home())
    dialog = ExportDialog(window.case, folder, window)
    ok = accept(dialog) if accept is not None else dialog.exec() == QDialog.Accepted
    if not ok:
        return False
    return start_export(window, **dialog.choice())


def start_export(window, kind: str, name: str, fmt: str, out: str, deidentify: bool,
                 allow_burned_in: bool = False) -> bool:
    """Run the export on the window's worker; the result goes to the status bar."""
    from app.exporting import export_item
    from imaging.deidentify import DeidentifyContext
    from imaging.errors import InputError

    if not out:
        window.report_error(InputError("export: choose a destination"), "Export")
        return False
    if not window._check_idle():
        return False
    case = window.case
    ctx = DeidentifyContext(allow_burned_in=allow_burned_in) if deidentify else None

    def step(progress, cancelled):
        return export_item(case, kind, name, fmt, out, deidentify=deidentify, context=ctx, progress=progress,
                           cancelled=cancelled)

    def done(result) -> None:
        window.last_export = result
        data = result.to_json()
        extra = " (de-identified)" if result.deidentified else ""
        warn = f"; {len(result.warnings)} warning(s): {result.warnings[0]}" if result.warnings else ""
        window.statusBar().showMessage(f"Exported {kind} {name} as {data['what']} to {out}{extra}{warn}", 10000)

    return window._run_step(f"Exporting {name}", step, done)
