"""Landmarks dock: the cephalometric template filled in order, measurements, exchange files.

Clicking in a slice view (or, with "Pick on 3D surface", on a surface in the
3D view) places the selected landmark, or the next one of the template not
placed yet, at the clicked voxel's centre (LPS mm). Every placement, removal
and import is one step on the window's undo stack. Landmarks are drawn in
the slice views and in 3D. Export and import 3D Slicer ``.mrk.json`` (RAS in
the file) and CSV. Installed as a UI extension (Tools > Landmarks, Ctrl+Shift+L).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pyvista as pv
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.case_watch import on_case_refresh
from app.ui.edit_commands import LandmarkCommand
from app.ui.extensions import make_action, menu
from imaging.errors import InputError
from imaging.landmarks import (CEPHALOMETRIC_TEMPLATE, Landmark, cephalometric_measurements, distance_mm,
                               next_template_landmark, read_csv, read_slicer_markups, write_csv, write_slicer_markups)
from viewer.brush_tool import PointTool
from viewer.picking import SurfacePicker

log = logging.getLogger(__name__)

MARKER_COLOR = "#ff4fd8"
ACTOR_NAME = "landmarks"
_DESCRIPTIONS = dict(CEPHALOMETRIC_TEMPLATE)


class LandmarkPanel(QWidget):
    """Landmark list, placing tools, measurements and import/export for one main window."""

    def __init__(self, window) -> None:
        super().__init__()
        self.setObjectName("landmark_panel")
        self.window_ = window
        self.tool = PointTool("landmark", self._on_slice_click, on_deactivate=self._tool_gone)
        self.picker = SurfacePicker(window.scene.plotter, self.place_at)

        self.place = QPushButton("Place landmarks")
        self.place.setCheckable(True)
        self.place.setToolTip("Click in a slice view to place the selected landmark (or the next of the template)")
        self.place.setStyleSheet("QPushButton:checked { background: #3d6fb6; color: white; }")
        self.pick3d = QCheckBox("Pick on 3D surface")
        self.pick3d.setToolTip("Also place by clicking on a surface in the 3D view (a drag still rotates)")
        self.next_label = QLabel("")
        self.next_label.setObjectName("landmark_next")
        self.table = QTableWidget(0, 4)
        self.table.setObjectName("landmark_table")
        self.table.setHorizontalHeaderLabels(["Landmark", "L (mm)", "P (mm)", "S (mm)"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Remove the selected landmark (undoable)")
        place_box = QGroupBox("Cephalometric template")
        place = QGridLayout(place_box)
        place.addWidget(self.place, 0, 0)
        place.addWidget(self.pick3d, 0, 1)
        place.addWidget(self.next_label, 1, 0, 1, 2)
        place.addWidget(self.table, 2, 0, 1, 2)
        place.addWidget(self.delete_button, 3, 1)

        self.measures = QTableWidget(0, 2)
        self.measures.setObjectName("landmark_measurements")
        self.measures.setHorizontalHeaderLabels(["Measurement", "Value"])
        self.measures.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.measures.verticalHeader().setVisible(False)
        self.measures.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.measures.setMaximumHeight(150)
        self.dist_a, self.dist_b = QComboBox(), QComboBox()
        self.distance_label = QLabel("")
        self.distance_label.setObjectName("landmark_distance")
        measure_box = QGroupBox("Measurements")
        mb = QVBoxLayout(measure_box)
        mb.addWidget(self.measures)
        row = QHBoxLayout()
        row.addWidget(QLabel("Distance"))
        row.addWidget(self.dist_a)
        row.addWidget(self.dist_b)
        row.addWidget(self.distance_label, 1)
        mb.addLayout(row)

        self.export_button = QPushButton("Export...")
        self.export_button.setToolTip("3D Slicer .mrk.json (RAS) or CSV (LPS)")
        self.import_button = QPushButton("Import...")
        self.import_button.setToolTip("3D Slicer .mrk.json (RAS or LPS) or TwinPlan CSV")
        files = QHBoxLayout()
        files.addStretch(1)
        files.addWidget(self.import_button)
        files.addWidget(self.export_button)

        layout = QVBoxLayout(self)
        layout.addWidget(place_box, 1)
        layout.addWidget(measure_box)
        layout.addLayout(files)

        self.place.toggled.connect(self.set_placing)
        self.pick3d.toggled.connect(lambda on: self.picker.set_enabled(on and self.place.isChecked()))
        self.delete_button.clicked.connect(self.delete_selected)
        self.dist_a.currentTextChanged.connect(self._show_distance)
        self.dist_b.currentTextChanged.connect(self._show_distance)
        self.export_button.clicked.connect(self._export_dialog)
        self.import_button.clicked.connect(self._import_dialog)
        self.refresh()

    # -- state ----------------------------------------------------------------
    @property
    def case(self):
        return self.window_.case

    def marks(self) -> dict[str, Landmark]:
        return {} if self.case is None else dict(self.case.landmarks)

    def names(self) -> list[str]:
        """Rows: the template in order, then other landmarks of the case."""
        template = [n for n, _ in CEPHALOMETRIC_TEMPLATE]
        return template + [n for n in self.marks() if n not in template]

    def selected_name(self) -> Optional[str]:
        rows = self.table.selectionModel().selectedRows()
        return None if not rows else self.table.item(rows[0].row(), 0).text()

    def target_name(self) -> Optional[str]:
        """What the next click places: the selected row if not placed yet, else the next of the template."""
        selected = self.selected_name()
        if selected is not None and selected not in self.marks():
            return selected
        nxt = next_template_landmark(self.marks())
        return None if nxt is None else nxt[0]

    # -- placing --------------------------------------------------------------
    def set_placing(self, on: bool) -> None:
        """Arm (or disarm) placing by clicks in the slice views (and the 3D view if ticked)."""
        if self.place.isChecked() != on:
            self.place.setChecked(on)  # comes back here through ``toggled``
            return
        views = self.window_.views
        if on:
            views.set_tool(self.tool)
        elif views.tool is self.tool:
            views.set_tool(None)
        self.picker.set_enabled(on and self.pick3d.isChecked())
        self._show_next()

    def _tool_gone(self) -> None:
        if self.window_.views.tool is not self.tool and self.place.isChecked():
            self.place.blockSignals(True)
            self.place.setChecked(False)
            self.place.blockSignals(False)
            self.picker.set_enabled(False)

    def _on_slice_click(self, _view: str, _ijk, lps: np.ndarray) -> None:
        self.place_at(lps)

    def place_at(self, position_lps, name: Optional[str] = None) -> Optional[str]:
        """Place ``name`` (default: ``target_name()``) at a position (LPS mm), undoable."""
        if self.case is None:
            return None
        name = name or self.target_name()
        if name is None:
            self.window_.statusBar().showMessage("Every template landmark is placed; select one to move it", 5000)
            return None
        mark = Landmark(name, tuple(float(v) for v in position_lps), _DESCRIPTIONS.get(name, ""))
        verb = "Move" if name in self.case.landmarks else "Place"
        self.window_.undo_stack.push(LandmarkCommand(self.case, name, mark, f"{verb} landmark {name}"))
        self.table.clearSelection()
        self._show_next()
        return name

    def delete_selected(self) -> bool:
        name = self.selected_name()
        if self.case is None or name not in self.case.landmarks:
            return False
        self.window_.undo_stack.push(LandmarkCommand(self.case, name, None, f"Delete landmark {name}"))
        return True

    # -- display --------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the list, the measurements and the markers from the case."""
        marks = self.marks()
        selected = self.selected_name()
        self.table.setRowCount(0)
        for r, name in enumerate(self.names()):
            self.table.insertRow(r)
            item = QTableWidgetItem(name)
            item.setToolTip(_DESCRIPTIONS.get(name, marks[name].description if name in marks else ""))
            self.table.setItem(r, 0, item)
            for c in range(3):
                text = f"{marks[name].position_lps[c]:.2f}" if name in marks else ""
                cell = QTableWidgetItem(text)
                cell.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, c + 1, cell)
            if name == selected:
                self.table.selectRow(r)
        values = cephalometric_measurements(marks)
        self.measures.setRowCount(0)
        for r, (key, value) in enumerate(values.items()):
            self.measures.insertRow(r)
            label, unit = key.rsplit("_", 1)
            self.measures.setItem(r, 0, QTableWidgetItem(label))
            self.measures.setItem(r, 1, QTableWidgetItem(f"{value:.2f} {'deg' if unit == 'deg' else 'mm'}"))
        for combo in (self.dist_a, self.dist_b):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(list(marks))
            if current in marks:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if self.dist_b.count() > 1 and self.dist_b.currentText() == self.dist_a.currentText():
            self.dist_b.setCurrentIndex(1)
        self._show_distance()
        self._show_next()
        self._show_markers(marks)

    def distance(self) -> Optional[float]:
        """Distance (mm) between the two landmarks chosen under Measurements."""
        marks = self.marks()
        a, b = self.dist_a.currentText(), self.dist_b.currentText()
        return distance_mm(marks[a], marks[b]) if a in marks and b in marks else None

    def _show_distance(self) -> None:
        d = self.distance()
        self.distance_label.setText("" if d is None else f"{d:.2f} mm")

    def _show_next(self) -> None:
        name = self.target_name()
        text = "All template landmarks placed" if name is None else (
            f"Next: {name} ({_DESCRIPTIONS.get(name, 'custom')})")
        self.next_label.setText(text if self.place.isChecked() else "")

    def _show_markers(self, marks: dict[str, Landmark]) -> None:
        views = self.window_.views
        volume = views.volume
        markers = []
        if volume is not None:
            for name, mark in marks.items():
                ijk = volume.geometry.lps_to_index(np.asarray([mark.position_lps]))[0]
                markers.append((ijk, name, MARKER_COLOR))
        views.set_markers(markers)
        plotter = self.window_.scene.plotter
        plotter.remove_actor(ACTOR_NAME, render=False)
        if marks:
            cloud = pv.PolyData(np.array([m.position_lps for m in marks.values()]))
            plotter.add_mesh(cloud, color=MARKER_COLOR, point_size=12, render_points_as_spheres=True,
                             name=ACTOR_NAME, reset_camera=False, render=False, pickable=False)
        self.window_.scene.request_render()

    # -- files ----------------------------------------------------------------
    def export_file(self, path) -> Path:
        """Write the landmarks: ``.mrk.json`` (Slicer, RAS) or ``.csv`` (LPS)."""
        marks = list(self.marks().values())
        if not marks:
            raise InputError("no landmarks to export")
        path = Path(path)
        return write_csv(marks, path) if path.suffix.lower() == ".csv" else write_slicer_markups(marks, path)

    def import_file(self, path) -> int:
        """Read landmarks (``.mrk.json`` or ``.csv``) into the case as one undo step; returns how many."""
        path = Path(path)
        marks = read_csv(path) if path.suffix.lower() == ".csv" else read_slicer_markups(path)
        if self.case is None:
            raise InputError("open a case before importing landmarks")
        stack = self.window_.undo_stack
        stack.beginMacro(f"Import {len(marks)} landmarks from {path.name}")
        for mark in marks:
            stack.push(LandmarkCommand(self.case, mark.name, mark, f"Import landmark {mark.name}"))
        stack.endMacro()
        return len(marks)

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export landmarks", "landmarks.mrk.json",
                                              "3D Slicer markups (*.mrk.json);;CSV (*.csv)")
        if path:
            try:
                self.export_file(path)
            except InputError as exc:
                self.window_.report_error(exc, "Export landmarks")

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import landmarks", "",
                                              "Landmarks (*.mrk.json *.json *.csv);;All files (*)")
        if path:
            try:
                self.import_file(path)
            except InputError as exc:
                self.window_.report_error(exc, "Import landmarks")


def install(window) -> LandmarkPanel:
    """Add the Landmarks dock (tabbed with the Segmentation dock) and Tools > Landmarks."""
    panel = LandmarkPanel(window)
    window.landmark_panel = panel
    dock = QDockWidget("Landmarks", window)
    dock.setObjectName("dock_landmarks")
    dock.setWidget(panel)
    window.addDockWidget(Qt.RightDockWidgetArea, dock)
    window.tabifyDockWidget(window.docks[0], dock)
    window.docks[0].raise_()
    window.landmark_dock = dock

    def show_panel() -> None:
        dock.show()
        dock.raise_()

    menu(window, "&Tools").addAction(make_action(
        window, "landmarks", "&Landmarks", show_panel, "Ctrl+Shift+L",
        "Place cephalometric landmarks, measure, export to 3D Slicer"))
    on_case_refresh(window, panel.refresh)
    return panel
