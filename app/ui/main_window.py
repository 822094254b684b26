"""TwinPlan main window: slice views + 3D view, docks, menus, worker and undo.

The window owns one case at a time. Long steps (import, segment, mesh,
project load/save, soft-tissue plan) run through ``TaskRunner``; their results
are applied through the undo stack. Every error reaches the user through
``report_error`` (status bar + ``show_error``) and leaves the case as it was.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (
    QDockWidget,
    QGridLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QWidget,
)

from app.case import Case
from app.pipeline import step_mesh, step_segment
from app.ui.commands import ApplyStepCommand
from app.ui.extensions import install_all
from app.ui.files import FileActionsMixin
from app.ui.import_warnings import ImportWarningsDialog, ScanStatus
from app.ui.menus import RecentFiles, about_html, build_menus, shortcuts_html, window_level_for
from app.ui.panels import RenderingPanel, SegmentationPanel, item_color
from app.ui.plan_actions import PlanActionsMixin
from app.ui.plan_panel import PlanPanel
from app.ui.workers import TaskRunner
from imaging.errors import InputError, TwinPlanError
from viewer.linked_views import LinkedSliceViews
from viewer.plan_overlay import PlanOverlay
from viewer.scene3d import Scene3D

log = logging.getLogger(__name__)


class MainWindow(FileActionsMixin, PlanActionsMixin, QMainWindow):
    """The TwinPlan workstation window.

    Parameters
    ----------
    settings : QSettings, optional
        Where recent files and window state live (tests pass a temporary one).
    """

    def __init__(self, settings: Optional[QSettings] = None) -> None:
        super().__init__()
        self.setObjectName("main_window")
        self.settings = settings or QSettings("TwinPlan", "TwinPlan")
        self.case: Optional[Case] = None
        self.source_path: Optional[Path] = None
        self.project_path: Optional[Path] = None
        self.undo_stack = QUndoStack(self)
        self.runner = TaskRunner(self)
        self.recent = RecentFiles(self.settings, self)
        self._layout_mode = "four-up"
        self._closed = False
        self.close_hooks: list = []  # called after a confirmed close (extensions add theirs)
        self.case_hooks: list = []  # called with the new case (or None) at the end of set_case

        self.views = LinkedSliceViews(self)
        self.scene = Scene3D()
        self.plan_overlay = PlanOverlay(self.scene)
        self._build_central()
        self.seg_panel = SegmentationPanel()
        self.render_panel = RenderingPanel()
        self.plan_panel = PlanPanel()
        seg_dock = self._dock("Segmentation", self.seg_panel)
        self.plan_dock = self._dock("Plan", self.plan_panel)
        self.setTabPosition(Qt.RightDockWidgetArea, QTabWidget.North)
        self.tabifyDockWidget(seg_dock, self.plan_dock)
        seg_dock.raise_()
        self.docks = [seg_dock, self.plan_dock, self._dock("3D view", self.render_panel)]
        self.warnings_dialog = ImportWarningsDialog(self)
        self._build_status_bar()
        self.actions_by_name = build_menus(self)
        self._connect()
        install_all(self)
        self.setAcceptDrops(True)
        self.resize(1500, 950)
        geometry = self.settings.value("window_geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("window_state")
        if state is not None:
            self.restoreState(state)
        self._update_title()
        self.statusBar().showMessage("Open a CT: File > Open DICOM folder (Ctrl+O), or drop a folder here")

    # -- construction --------------------------------------------------------
    def _build_central(self) -> None:
        central = QWidget()
        grid = self._grid = QGridLayout(central)
        grid.setContentsMargins(2, 2, 2, 2)
        grid.setSpacing(3)
        grid.addWidget(self.views.views["axial"], 0, 0)
        grid.addWidget(self.scene, 0, 1)
        grid.addWidget(self.views.views["coronal"], 1, 0)
        grid.addWidget(self.views.views["sagittal"], 1, 1)
        for i in range(2):
            grid.setRowStretch(i, 1)
            grid.setColumnStretch(i, 1)
        self.setCentralWidget(central)

    def _dock(self, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{widget.objectName()}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable
                         | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.cursor_label = QLabel("")
        self.cursor_label.setObjectName("cursor_info")
        self.cursor_label.setMinimumWidth(420)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMaximumWidth(320)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running task (Esc); nothing in the case changes")
        self.scan_status = ScanStatus()
        bar.addPermanentWidget(self.scan_status)
        bar.addPermanentWidget(self.cursor_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        self.progress_bar.hide()
        self.cancel_button.hide()

    def _connect(self) -> None:
        self.views.hovered.connect(self._show_cursor_info)
        self.views.point_changed.connect(self.scene.set_point)
        self.views.window_level_changed.connect(self._on_mouse_window_level)
        for view in self.views.views.values():
            view.double_clicked.connect(lambda v=view.view: self.set_layout(
                "four-up" if self._layout_mode == v else v))
        self.wl_combo.currentTextChanged.connect(self._on_wl_choice)
        self.seg_panel.preview_changed.connect(self.views.set_preview)
        self.seg_panel.segment_requested.connect(self.segment)
        self.seg_panel.mesh_requested.connect(self.build_mesh)
        self.seg_panel.visibility_changed.connect(self._on_visibility)
        self.render_panel.volume_rendering_changed.connect(self._on_volume_rendering)
        self.render_panel.slices_toggled.connect(self.scene.set_slices_visible)
        self.render_panel.camera_requested.connect(self.scene.reset_camera)
        self.runner.started.connect(self._on_task_started)
        self.runner.progress.connect(self._on_task_progress)
        self.runner.finished.connect(self._on_task_finished)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.undo_stack.cleanChanged.connect(self._update_title)
        self.scan_status.warnings_requested.connect(self.show_import_warnings)
        self._connect_plan()

    # -- case ----------------------------------------------------------------
    def set_case(self, case: Optional[Case]) -> None:
        """Show ``case`` (or nothing); the undo history starts empty."""
        if self.case is not None:
            self.case.changed.disconnect(self._on_case_changed)
        self.clear_plan()
        self.case = case
        self.undo_stack.clear()
        self.scene.clear()
        self.seg_panel.forget_visibility()
        volume = None
        if case is not None:
            case.changed.connect(self._on_case_changed)
            if case.volumes:
                volume = case.primary_volume()[1]
        self.views.set_volume(volume)
        self.scene.set_volume(volume)
        self.scan_status.set_scan(volume, 0 if volume is None else len(volume.warnings))
        self._on_wl_choice(self.wl_combo.currentText())
        if case is not None:
            for i, (name, surface) in enumerate(case.surfaces.items()):
                self.scene.set_surface(name, surface, item_color(case, "surface", name, i))
        self._refresh_labels()
        self.views.set_preview(self.seg_panel.preview_range())
        self._update_title()
        for hook in self.case_hooks:
            hook(case)

    def _on_case_changed(self, kind: str, name: str) -> None:
        case = self.case
        if kind == "volume" and case.volumes and name == case.primary_volume()[0]:
            self.views.set_volume(case.volumes[name])
            self.scene.set_volume(case.volumes[name])
        elif kind == "surface":
            if name in case.surfaces:
                index = list(case.surfaces).index(name)
                self.scene.set_surface(name, case.surfaces[name], item_color(case, kind, name, index),
                                       self.seg_panel.is_visible(kind, name))
            else:
                self.scene.remove_surface(name)
        self._refresh_labels()
        self._plan_case_changed(kind, name)

    def _refresh_labels(self) -> None:
        self.seg_panel.set_case(self.case)
        self.plan_panel.set_case(self.case)
        self._show_labels()

    def _show_labels(self) -> None:
        labels = [] if self.case is None else [
            lab for name, lab in self.case.labels.items() if self.seg_panel.is_visible("label", name)]
        self.views.set_labels(labels)

    def _on_visibility(self, kind: str, name: str, visible: bool) -> None:
        if kind == "surface":
            if not self._plan_owns_surface(name, visible):
                self.scene.set_surface_visible(name, visible)
        else:
            # Not ``_refresh_labels``: rebuilding the item tree here would delete the
            # item whose check box is still emitting this signal (a crash).
            self._show_labels()

    def _update_title(self, *_args) -> None:
        name = (self.project_path or self.source_path)
        title = "TwinPlan" if name is None else f"{name.name}[*] - TwinPlan"
        self.setWindowTitle(title)
        self.setWindowModified(not self.undo_stack.isClean())

    # -- steps ---------------------------------------------------------------
    def segment(self, label: str, lo: float, hi: float) -> bool:
        """Threshold the CT into ``label`` on the worker (undoable)."""
        case = self.case
        if case is None or not case.volumes:
            self.report_error(InputError("no CT open: open a scan first"), "Segment")
            return False
        if not self._check_idle():
            return False

        def step(progress, cancelled):
            return step_segment(case, label=label, hu_range=(lo, hi), progress=progress, cancelled=cancelled)

        def done(result):
            if case is self.case:
                self.undo_stack.push(ApplyStepCommand(case, result, f"Segment {label}"))
                r = result.report
                self.statusBar().showMessage(f"Label {label}: {r['voxels']:,} voxels, "
                                             f"{r['volume_mm3'] / 1000:.1f} mL ({r['seconds']:.1f} s)", 10000)
                self.seg_panel.preview.setChecked(False)
                self.seg_panel.mesh_label.setCurrentText(label)

        return self._run_step(f"Segmenting {label}", step, done)

    def build_mesh(self, label: str, smoothing_iterations: int = 20, decimate: float = 0.5) -> bool:
        """Surface of ``label`` on the worker (undoable)."""
        case = self.case
        if case is None or label not in case.labels:
            self.report_error(InputError(f"label {label!r}: segment it first"), "Build mesh")
            return False
        if not self._check_idle():
            return False

        def step(progress, cancelled):
            return step_mesh(case, label=label, smoothing_iterations=smoothing_iterations,
                             decimate=decimate, progress=progress, cancelled=cancelled)

        def done(result):
            if case is self.case:
                self.undo_stack.push(ApplyStepCommand(case, result, f"Mesh {label}"))
                r = result.report
                closed = "closed" if r["watertight"] else f"{r['boundary_edges']} open edges"
                self.statusBar().showMessage(
                    f"Surface {label}: {r['n_faces']:,} triangles, {r['area_mm2'] / 100:.1f} cm2, "
                    f"{r['volume_mm3'] / 1000:.1f} mL, {closed} ({r['seconds']:.1f} s)", 10000)

        return self._run_step(f"Meshing {label}", step, done)

    def _run_step(self, title: str, step, done, cancellable: bool = True) -> bool:
        return self.runner.run(
            title, step, on_done=done,
            on_error=lambda exc: self.report_error(exc, title),
            on_cancelled=lambda: self.statusBar().showMessage(f"Cancelled: {title}; nothing changed"),
            cancellable=cancellable,
        )

    def _check_idle(self) -> bool:
        if self.runner.busy:
            self.statusBar().showMessage(f"Busy: {self.runner.title} (Esc cancels)", 5000)
            return False
        return True

    # -- display -------------------------------------------------------------
    def _on_wl_choice(self, choice: str) -> None:
        volume = self.views.volume
        wl = window_level_for(choice, None if volume is None else volume.array)
        if wl is not None:
            self.views.set_window_level(*wl)
            self.scene.set_window_level(*wl)

    def _on_mouse_window_level(self, window: float, level: float) -> None:
        self.wl_combo.blockSignals(True)
        self.wl_combo.setCurrentText("Custom")
        self.wl_combo.blockSignals(False)
        self.scene.set_window_level(window, level)

    def _on_volume_rendering(self, enabled: bool, preset: str, shift: float, scale: float) -> None:
        self.actions_by_name["volume_rendering"].setChecked(enabled)
        try:
            self.scene.set_volume_rendering(enabled, preset, shift, scale)
        except Exception as exc:  # noqa: BLE001 -- e.g. no usable OpenGL volume mapper
            self.report_error(exc, "Volume rendering")

    def toggle_volume_rendering(self) -> None:
        self.render_panel.enabled.toggle()

    def set_layout(self, mode: str) -> None:
        """``four-up`` or one of ``axial``/``coronal``/``sagittal``/``3d`` maximised."""
        self._layout_mode = mode
        if hasattr(self, "welcome"):
            self.welcome.show_views()  # choosing a layout means the user wants the views
        for name, view in self.views.views.items():
            view.setVisible(mode in ("four-up", name))
        self.scene.setVisible(mode in ("four-up", "3d"))
        # Hidden cells keep their stretch: give it all to the maximised view's row and column.
        row, col = {"axial": (0, 0), "3d": (0, 1), "coronal": (1, 0), "sagittal": (1, 1)}.get(mode, (None, None))
        for i in range(2):
            self._grid.setRowStretch(i, 1 if row in (None, i) else 0)
            self._grid.setColumnStretch(i, 1 if col in (None, i) else 0)

    def _show_cursor_info(self, ijk) -> None:
        volume = self.views.volume
        if ijk is None or volume is None:
            self.cursor_label.setText("")
            return
        i, j, k = ijk
        hu = volume.array[k, j, i]
        x, y, z, _ = volume.geometry.index_to_lps() @ np.array([i, j, k, 1.0])
        text = f"HU {hu:.0f}   LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm   voxel ({i}, {j}, {k})"
        names = [n for n, lab in (self.case.labels.items() if self.case else [])
                 if lab.array.shape == volume.array.shape and lab.array[k, j, i]]
        if names:
            text += "   " + ", ".join(names)
        self.cursor_label.setText(text)

    # -- tasks and errors ----------------------------------------------------
    def _on_task_started(self, title: str) -> None:
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(f"{title} %p%")
        self.progress_bar.show()
        self.cancel_button.setEnabled(self.runner.cancellable)
        self.cancel_button.show()
        self.statusBar().showMessage(title)

    def _on_task_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(max(0.0, min(fraction, 1.0)) * 1000))
        self.progress_bar.setFormat(f"{message}  %p%")

    def _on_task_finished(self, state: str) -> None:
        self.progress_bar.hide()
        self.cancel_button.hide()

    def report_error(self, exc: BaseException | str, context: str = "Error") -> None:
        """The one place errors reach the user: log, status bar, message box."""
        if isinstance(exc, TwinPlanError) or isinstance(exc, str):
            message = f"{context}: {exc}"
            log.warning(message)
        else:
            message = (f"{context}: unexpected error ({type(exc).__name__}: {exc}). "
                       "The case is unchanged; details are in the log.")
            log.error("%s", context, exc_info=(type(exc), exc, exc.__traceback__))
        self.statusBar().showMessage(f"Error - {message}", 15000)
        self.show_error(message)

    def show_error(self, message: str) -> None:
        """Show an error without blocking the event loop (tests replace this)."""
        box = QMessageBox(QMessageBox.Critical, "TwinPlan", message, QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()

    def confirm_discard(self) -> bool:
        """Ask before dropping unsaved changes; True to go on (tests replace this)."""
        if self.case is None or self.undo_stack.isClean():
            return True
        answer = QMessageBox.question(
            self, "TwinPlan", "The case has unsaved changes. Discard them?",
            QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Cancel)
        return answer == QMessageBox.Discard

    def show_shortcuts(self) -> None:
        box = QMessageBox(QMessageBox.NoIcon, "Keyboard shortcuts", shortcuts_html(self), QMessageBox.Close, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Information, "About TwinPlan", about_html(), QMessageBox.Close, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()

    # -- Qt events -----------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            event.acceptProposedAction()
            self.open_path(urls[0].toLocalFile())

    def closeEvent(self, event) -> None:  # noqa: N802
        if self._closed:
            event.accept()
            return
        if not self.confirm_discard():
            event.ignore()
            return
        self.runner.shutdown()
        self.warnings_dialog.close()
        self.settings.setValue("window_geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        if self.case is not None:
            self.case.changed.disconnect(self._on_case_changed)
        self.undo_stack.cleanChanged.disconnect(self._update_title)
        self.scene.close()
        self._closed = True
        for hook in self.close_hooks:
            hook()
        event.accept()
