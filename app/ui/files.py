"""File operations of the main window: open, save, export, screenshot.

A mixin of ``MainWindow`` (it uses the window's runner, case, status bar and
error handler); kept apart so each module stays readable.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from app.autosave import repair_project, save_case_checked
from app.case import Case
from app.logsetup import register_dicom_identifiers, register_identifiers_under
from app.memory_guard import MemoryCheck, check_memory, import_dicom_downsampled
from app.pipeline import DEMO_CASE, INVESALIUS_SUFFIXES, import_scan
from app.project import load_case
from app.ui.import_warnings import scan_kind
from imaging.dicom import DicomScan, scan_dicom_folder
from imaging.dicom_series import SeriesInfo
from imaging.errors import InputError, TwinPlanError
from imaging.meshing import EXPORT_FORMATS, export_surface
from imaging.segment import HU_PRESETS, presets_for

log = logging.getLogger(__name__)
MESH_FILTERS = "STL (*.stl);;PLY (*.ply);;Wavefront OBJ (*.obj);;VTK PolyData (*.vtp)"


@dataclass
class TooLarge:
    """An open step's answer when the series needs more memory than is free."""

    check: MemoryCheck
    series_uid: str


def is_project(path: Path) -> bool:
    """True for a TwinPlan project folder (``*.twin`` or holding ``case.json``)."""
    return path.suffix == ".twin" or (path.is_dir() and (path / "case.json").is_file())


def with_presets(step):
    """Wrap an open step to also return the threshold presets of the scan it opened.

    Cone-beam presets come from the image (a histogram split): computed on the
    worker, not on the GUI thread.
    """
    def run(progress, cancelled):
        result = step(progress, cancelled)
        if isinstance(result, Case) and result.volumes:
            return result, presets_for(result.primary_volume()[1])
        return result, None

    return run


def series_label(series: SeriesInfo) -> str:
    """One line describing a series for the series chooser (no patient data)."""
    spacing = series.geometry().spacing_xyz
    return (f"{series.modality or '?'}  {series.columns} x {series.rows} x {len(series.slices)}  "
            f"({spacing[0]:.2f} x {spacing[1]:.2f} x {spacing[2]:.2f} mm)  {series.description}")


class FileActionsMixin:
    """Open / save / export / screenshot actions of ``MainWindow``."""

    # -- opening -------------------------------------------------------------
    def open_path(self, path: str | Path, series_uid: Optional[str] = None) -> bool:
        """Open a DICOM folder/file, an ``.inv3`` project or a ``.twin`` project.

        A folder holding several image series asks which one to load
        (:meth:`choose_series`) unless ``series_uid`` is given.

        Returns False if nothing was started (busy, or the user kept the case).
        """
        if not self._check_idle() or not self.confirm_discard():
            return False
        return self._start_open(Path(path), series_uid)

    def _start_open(self, src: Path, series_uid: Optional[str], downsample: int = 1) -> bool:
        if is_project(src):
            title = f"Opening project {src.name}"

            def step(progress, cancelled):
                progress(0.1, "Reading project")
                repair_project(src)  # a save killed midway may have left the project aside
                return load_case(src)
        elif not src.is_dir() and series_uid is None:
            title = f"Importing {src.name}"

            def step(progress, cancelled):
                if src.suffix.lower() not in INVESALIUS_SUFFIXES:
                    register_dicom_identifiers([src])
                return import_scan(src, progress=progress, cancelled=cancelled)
        else:
            title = f"Importing {src.name}" + (f" (downsampled by {downsample})" if downsample > 1 else "")

            def step(progress, cancelled):
                scan = scan_dicom_folder(src, progress=lambda f, m: progress(0.1 * f, m), cancelled=cancelled)
                if len(scan.series) > 1 and series_uid is None:
                    return scan
                series = scan.find(series_uid)
                register_dicom_identifiers(series.files[:1])  # before anything could log them
                if downsample <= 1:
                    check = check_memory(series)
                    if not check.fits:
                        return TooLarge(check, series.series_uid)
                    return import_scan(src, series_uid=series_uid, cancelled=cancelled,
                                       progress=lambda f, m: progress(0.1 + 0.9 * f, m))
                return import_dicom_downsampled(src, downsample, series_uid=series.series_uid, cancelled=cancelled,
                                                progress=lambda f, m: progress(0.1 + 0.9 * f, m))

        if not is_project(src) and src.suffix.lower() not in INVESALIUS_SUFFIXES:
            register_identifiers_under(src)  # before the task's first log line names the folder
        return self.runner.run(
            title, with_presets(step),
            on_done=lambda out: self._opened(*out, src),
            on_error=lambda exc: self.report_error(exc, f"Could not open {src}"),
            on_cancelled=lambda: self.statusBar().showMessage(f"Cancelled: {title}; nothing changed"),
        )

    def _opened(self, result: Case | DicomScan, presets: Optional[dict], src: Path) -> None:
        if isinstance(result, TooLarge):
            if self.confirm_downsample(result.check):
                self._start_open(src, result.series_uid, downsample=result.check.factor)
            else:
                self.statusBar().showMessage(f"Not loaded: {src.name} needs more memory than is free", 10000)
            return
        if isinstance(result, DicomScan):
            uid = self.choose_series(result.series)
            if uid is None:
                self.statusBar().showMessage(f"Cancelled: no series chosen in {src.name}; nothing changed")
            else:
                self._start_open(src, uid)
            return
        self.source_path = src
        self.project_path = src if is_project(src) else None
        self.set_case(result)
        self.recent.add(src)
        volume = result.primary_volume()[1] if result.volumes else None
        size = "" if volume is None else " x ".join(str(d) for d in volume.dims_xyz)
        warnings = [] if volume is None else volume.warnings
        kind = scan_kind(volume)[0]
        cbct = volume is not None and volume.kind == "cbct"
        self.seg_panel.set_presets(presets or HU_PRESETS, "grey value" if cbct else "HU")
        message = (f"Opened {src.name}: {kind + ', ' if kind else ''}{size} voxels, {len(result.labels)} labels, "
                   f"{len(result.surfaces)} surfaces")
        if cbct:
            message += "; threshold presets taken from this cone-beam scan"
        if warnings:
            # Geometry caveats (resampled tilt, uneven slices, assumed orientation) matter for planning.
            message += f". {len(warnings)} import warning{'s' if len(warnings) > 1 else ''}: see the warnings box"
            self.warnings_dialog.set_warnings(src.name, kind or "scan", warnings)
            self.show_import_warnings()
        else:
            self.warnings_dialog.hide()
        self.statusBar().showMessage(message, 15000)
        for warning in warnings:
            log.warning("%s: %s", src.name, warning)

    def confirm_downsample(self, check: MemoryCheck) -> bool:
        """Ask before loading a volume larger than free memory allows (tests replace this)."""
        answer = QMessageBox.question(self, "Not enough memory", check.message(),
                                      QMessageBox.Yes | QMessageBox.Cancel, QMessageBox.Yes)
        return answer == QMessageBox.Yes

    def show_import_warnings(self) -> None:
        """Show the warnings box without blocking (it stays until closed)."""
        if self.warnings_dialog.list.count():
            self.warnings_dialog.show()
            self.warnings_dialog.raise_()

    def choose_series(self, series: list[SeriesInfo]) -> Optional[str]:
        """Ask which series of a folder to load; its UID, or None (tests replace this)."""
        labels = [series_label(s) for s in series]
        choice, ok = QInputDialog.getItem(self, "Choose a series",
                                          "The folder holds several image series:", labels, 0, False)
        return series[labels.index(choice)].series_uid if ok else None

    def open_dicom_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self._last_dir())
        if folder:
            self.open_path(folder)

    def open_invesalius_dialog(self) -> None:
        suffixes = " ".join(f"*{s}" for s in INVESALIUS_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Open InVesalius project", self._last_dir(),
                                              f"InVesalius project ({suffixes})")
        if path:
            self.open_path(path)

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open TwinPlan project (.twin folder)", self._last_dir())
        if folder:
            self.open_path(folder)

    def open_demo(self) -> None:
        if not DEMO_CASE.is_file():
            self.report_error(InputError(f"{DEMO_CASE}: demo case not installed "
                                         "(apt-get install invesalius-examples)"), "Demo")
            return
        self.open_path(DEMO_CASE)

    def _last_dir(self) -> str:
        recent = self.recent.paths()
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    # -- saving and export ---------------------------------------------------
    def save_project(self) -> bool:
        """Save to the current project folder, or ask for one."""
        if self.project_path is None:
            return self.save_project_as()
        return self._save_to(self.project_path)

    def save_project_as(self, path: str | Path | None = None) -> bool:
        """Save to a new ``.twin`` folder (asks for it when ``path`` is None)."""
        if self.case is None:
            self.report_error(InputError("nothing to save: open a scan first"), "Save")
            return False
        if path is None:
            suggestion = str(Path(self._last_dir()) / f"{self.case.name}.twin")
            path, _ = QFileDialog.getSaveFileName(self, "Save project as", suggestion, "TwinPlan project (*.twin)")
            if not path:
                return False
        return self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        if not self._check_idle():
            return False
        case = self.case

        def step(progress, cancelled):
            progress(0.1, "Writing project")
            return save_case_checked(case, path)  # disk full / read-only: a clear InputError

        def done(target: Path):
            self.project_path = target
            self.source_path = target
            self.undo_stack.setClean()
            self.recent.add(target)
            self._update_title()
            self.statusBar().showMessage(f"Saved {target}", 8000)

        return self._run_step(f"Saving {path.name}", step, done, cancellable=False)

    def export_mesh(self, name: Optional[str] = None, path: str | Path | None = None) -> Optional[Path]:
        """Write a surface as STL/PLY/OBJ/VTP (LPS mm); asks for what is not given."""
        surfaces = [] if self.case is None else list(self.case.surfaces)
        if not surfaces:
            self.report_error(InputError("no surface to export: build a mesh first"), "Export mesh")
            return None
        if name is None:
            name = self._surface_to_export(surfaces)
            if name is None:
                return None
        if path is None:
            path, chosen = QFileDialog.getSaveFileName(
                self, "Export mesh", str(Path(self._last_dir()) / f"{name}.stl"), MESH_FILTERS)
            if not path:
                return None
            if Path(path).suffix.lower() not in EXPORT_FORMATS:
                path = f"{path}.{chosen.split('*.')[1].rstrip(')')}"
        try:
            out = export_surface(self.case.surfaces[name], path)
        except Exception as exc:  # noqa: BLE001 -- the one error path
            self.report_error(exc, f"Export {name}")
            return None
        self.statusBar().showMessage(f"Exported {name} to {out}", 8000)
        return out

    def _surface_to_export(self, surfaces: list[str]) -> Optional[str]:
        selected = self.seg_panel.items.currentItem()
        key = selected.data(0, Qt.UserRole) if selected is not None else None
        if key and key[0] == "surface":
            return key[1]
        if len(surfaces) == 1:
            return surfaces[0]
        name, ok = QInputDialog.getItem(self, "Export mesh", "Surface", surfaces, 0, False)
        return name if ok else None

    # -- screenshot ----------------------------------------------------------
    def grab_window(self) -> QImage:
        """The whole window as an image, the 3D view taken from VTK's own render."""
        image = self.grab().toImage().convertToFormat(QImage.Format_RGB888)
        render_widget = self.scene.plotter.interactor
        if render_widget.isVisible():
            shot = np.ascontiguousarray(self.scene.screenshot())
            h, w, _ = shot.shape
            vtk_image = QImage(shot.data, w, h, 3 * w, QImage.Format_RGB888).copy()
            painter = QPainter(image)
            painter.drawImage(render_widget.mapTo(self, QPoint(0, 0)), vtk_image.scaled(render_widget.size()))
            painter.end()
        return image

    def save_screenshot(self, path: str | Path) -> Path:
        """Write :meth:`grab_window` to a PNG file."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab_window().save(str(out)):
            raise InputError(f"{out}: cannot write the screenshot")
        return out

    def save_screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", str(Path(self._last_dir()) / "twinplan.png"),
                                              "PNG image (*.png)")
        if path:
            try:
                self.statusBar().showMessage(f"Saved {self.save_screenshot(path)}", 8000)
            except TwinPlanError as exc:
                self.report_error(exc, "Screenshot")
