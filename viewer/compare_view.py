"""Scenarios side by side: 2 to 4 result surfaces with linked cameras, a difference map, an outcomes table.

Draws what it is given (surfaces with a displacement array, a difference
surface, a compare table as plain dicts); it computes nothing about the
scenarios. Picking the two scenarios to difference emits
``difference_requested(a, b)``; the owner answers with ``set_difference``.
A linked section (a plane at the same position in every pane) cuts all the
surfaces at once, so profiles can be compared at one place.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import pyvista as pv
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from pyvistaqt import QtInteractor

from viewer.scene3d import BACKGROUND, CAMERA_VIEWS

log = logging.getLogger(__name__)

SCALARS = "displacement_norm_mm"
DIFFERENCE = "difference_mm"
CMAP = "viridis"
DIFF_CMAP = "magma"
SKIN_COLOR = "#d9b38c"
MAX_SCENARIOS = 4
SECTION_AXES = {"off": None, "sagittal (x)": 0, "coronal (y)": 1, "axial (z)": 2}


class CompareView(QWidget):
    """Up to four scenario surfaces plus a difference pane, cameras linked.

    Signals
    -------
    difference_requested(str, str)
        The user picked scenarios A and B for the difference pane.
    """

    difference_requested = Signal(str, str)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("compare_view")
        self.setWindowTitle("Compare scenarios")
        self.names: list[str] = []
        self.surfaces: list[pv.PolyData] = []
        self.difference: Optional[pv.PolyData] = None
        self.section: tuple[Optional[int], float] = (None, 0.0)
        self.plotter: Optional[QtInteractor] = None

        self.pick_a, self.pick_b = QComboBox(), QComboBox()
        for combo in (self.pick_a, self.pick_b):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.pick_a.setToolTip("Difference map: reference scenario")
        self.pick_b.setToolTip("Difference map: scenario drawn, coloured by its distance to the reference (mm)")
        self.section_axis = QComboBox()
        self.section_axis.addItems(list(SECTION_AXES))
        self.section_axis.setToolTip("Cut every pane with the same plane (linked section)")
        self.section_slider = QSlider(Qt.Horizontal)
        self.section_slider.setRange(0, 1000)
        self.section_slider.setValue(500)
        self.section_slider.setEnabled(False)
        self.section_label = QLabel("")
        controls = QHBoxLayout()
        for w in (QLabel("Difference"), self.pick_a, QLabel("vs"), self.pick_b, QLabel("   Section"),
                  self.section_axis, self.section_slider, self.section_label):
            controls.addWidget(w)
        controls.setStretch(controls.indexOf(self.section_slider), 1)

        self.views = QWidget()
        self.views.setMinimumHeight(320)
        self.views_layout = QVBoxLayout(self.views)
        self.views_layout.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget()
        self.table.setObjectName("compare_table")
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.views)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([560, 240])
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(split, 1)

        self.pick_a.currentTextChanged.connect(self._on_pick)
        self.pick_b.currentTextChanged.connect(self._on_pick)
        self.section_axis.currentTextChanged.connect(self._on_section)
        self.section_slider.valueChanged.connect(self._on_section)

    # -- content -------------------------------------------------------------
    def show_scenarios(self, names: list[str], surfaces: list[pv.PolyData], table: dict) -> None:
        """Draw 2-4 scenario surfaces (point array ``displacement_norm_mm``) and the outcomes table."""
        if not 1 <= len(names) <= MAX_SCENARIOS or len(names) != len(surfaces):
            raise ValueError(f"compare 1 to {MAX_SCENARIOS} scenarios, got {len(names)}")
        self.names, self.surfaces, self.difference = list(names), list(surfaces), None
        self._new_plotter(len(names) + 1)
        self._draw_all(reset_camera=True)
        self.set_table(table)
        for combo, index in ((self.pick_a, 0), (self.pick_b, min(1, len(names) - 1))):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(self.names)
            combo.setCurrentIndex(index)
            combo.blockSignals(False)
        self._on_pick()

    def set_difference(self, surface: Optional[pv.PolyData], title: str = "") -> None:
        """Show ``surface`` (point array ``difference_mm``) in the last pane; None clears it."""
        self.difference = surface
        self._difference_title = title
        if self.plotter is not None:
            self._draw_pane(len(self.names), reset_camera=False)
            self.plotter.render()

    def set_table(self, table: dict) -> None:
        """Fill the outcomes table from a compare table (``app.scenarios.compare_scenarios``)."""
        names = table["scenarios"]
        rows: list[tuple[str, list[str]]] = []
        for key, row in table["outcomes"].items():
            rows.append((key, [_fmt(row.get(n)) for n in names]))
        for key, row in table.get("bands", {}).items():
            rows.append((f"{key} (5-95 %)", ["-" if n not in row else f"{row[n][0]:.3g} - {row[n][2]:.3g}"
                                             for n in names]))
        solver = [table["solver"].get(n, {}) for n in names]
        rows.append(("solver", [_fmt(s.get("solver", s.get("model"))) for s in solver]))
        for key in ("dofs", "iterations", "seconds"):
            rows.append((f"solver: {key}", [_fmt(s.get(key)) for s in solver]))
        self.table.clear()
        self.table.setColumnCount(len(names))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(names)
        self.table.setVerticalHeaderLabels([r[0] for r in rows])
        for i, (_key, cells) in enumerate(rows):
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(i, j, item)

    def table_rows(self) -> dict[str, list[str]]:
        """The table as {row label: cells} (what the user reads)."""
        return {self.table.verticalHeaderItem(i).text(): [self.table.item(i, j).text()
                                                          for j in range(self.table.columnCount())]
                for i in range(self.table.rowCount())}

    # -- drawing -------------------------------------------------------------
    def _new_plotter(self, panes: int) -> None:
        if self.plotter is not None:
            self.views_layout.removeWidget(self.plotter)
            self.plotter.close()
            self.plotter.deleteLater()
        self.plotter = QtInteractor(self.views, shape=(1, panes), border=True, border_color="#3a3f52")
        self.views_layout.addWidget(self.plotter)
        self.plotter.show()
        for i in range(panes):
            self.plotter.subplot(0, i)
            self.plotter.set_background(BACKGROUND[0], top=BACKGROUND[1])
        self.plotter.link_views()

    def _cut(self, surface: pv.PolyData) -> pv.PolyData:
        axis, position = self.section
        if axis is None or surface.n_points == 0:
            return surface
        normal = np.zeros(3)
        normal[axis] = 1.0
        origin = np.array(surface.center, dtype=float)
        origin[axis] = position
        return surface.clip(normal=normal, origin=origin)

    def _bounds(self) -> np.ndarray:
        b = np.array([s.bounds for s in self.surfaces]).reshape(-1, 3, 2)
        return np.column_stack([b[:, :, 0].min(axis=0), b[:, :, 1].max(axis=0)])

    def _draw_all(self, reset_camera: bool) -> None:
        for i in range(len(self.names) + 1):
            self._draw_pane(i, reset_camera=False)
        if reset_camera:
            extent = np.ptp(self._bounds(), axis=1)
            if all(SCALARS in s.point_data for s in self.surfaces):  # faces: from the front
                direction, up = CAMERA_VIEWS["anterior"]
            else:  # vessel trees: across their thinnest extent, where the branches spread out
                thin = int(np.argmin(extent))
                direction, up = np.eye(3)[thin], np.eye(3)[(thin + 2) % 3]
            self.plotter.subplot(0, 0)
            center = self._bounds().mean(axis=1)
            size = float(extent.max())
            self.plotter.camera_position = [tuple(center + 2.6 * size * np.array(direction)), tuple(center), up]
            self.plotter.reset_camera()  # fit the bounds from that direction (one camera: all panes follow)
        self.plotter.render()

    def _draw_pane(self, index: int, reset_camera: bool) -> None:
        p = self.plotter
        p.subplot(0, index)
        p.renderer.clear_actors()  # this pane only (Plotter.clear_actors empties every pane)
        scalars = next((k for k in (SCALARS, "FFR") if all(k in s.point_data for s in self.surfaces)), None)
        vmax = max([float(s[scalars].max()) for s in self.surfaces] + [1e-6]) if scalars else 1.0
        vmin = min(float(s[scalars].min()) for s in self.surfaces) if scalars == "FFR" else 0.0
        ffr = scalars == "FFR"
        if index < len(self.names):
            candidates = [f"{self.names[index]}: {u}" for u in ("FFR", "displacement (mm)")]
            title = candidates[0 if ffr else 1]
        else:
            candidates = ["FFR difference", "difference (mm)"]
            title = candidates[0 if self.difference is not None and
                               self.difference.active_scalars_name == "ffr_difference" else 1]
        for old in candidates:  # a pane's bar from an earlier drawing
            if old in p.scalar_bars:
                p.remove_scalar_bar(old, render=False)
        bar = {"vertical": False, "position_x": 0.15, "position_y": 0.04, "width": 0.7, "height": 0.07,
               "fmt": "%.2f" if ffr else "%.1f", "n_labels": 3, "color": "#e2e2e6", "title_font_size": 12,
               "label_font_size": 11}
        if index < len(self.names):
            surf = self._cut(self.surfaces[index])
            if scalars and surf.n_points:
                p.add_mesh(surf, scalars=scalars, cmap=CMAP if scalars == SCALARS else "RdYlGn", line_width=4,
                           clim=(vmin, vmax), name=f"scenario_{index}", scalar_bar_args=dict(bar, title=title),
                           reset_camera=False, render=False)
            elif surf.n_points:
                p.add_mesh(surf, color=SKIN_COLOR, name=f"scenario_{index}", reset_camera=False, render=False)
            p.add_text(self.names[index], position="upper_edge", font_size=8, color="#e2e2e6", name="title")
        elif self.difference is not None:
            surf = self._cut(self.difference)
            scalars = self.difference.active_scalars_name or DIFFERENCE
            values = np.asarray(self.difference[scalars])
            signed = values.min() < 0
            top = max(float(np.abs(values).max()), 1e-6)
            if surf.n_points:
                p.add_mesh(surf, scalars=scalars, cmap="coolwarm" if signed else DIFF_CMAP,
                           clim=(-top if signed else 0.0, top), name="difference", line_width=4,
                           scalar_bar_args=dict(bar, title=title), reset_camera=False, render=False)
            p.add_text(getattr(self, "_difference_title", "") or "difference", position="upper_edge",
                       font_size=8, color="#e2e2e6", name="title")
        else:
            p.add_text("difference: pick A and B", position="upper_edge", font_size=10, color="#9a9da6",
                       name="title")

    # -- controls ------------------------------------------------------------
    def _on_pick(self, *_args) -> None:
        a, b = self.pick_a.currentText(), self.pick_b.currentText()
        if a and b:
            self.difference_requested.emit(a, b)

    def _on_section(self, *_args) -> None:
        axis = SECTION_AXES[self.section_axis.currentText()]
        self.section_slider.setEnabled(axis is not None)
        if axis is None or not self.surfaces:
            self.section = (None, 0.0)
            self.section_label.setText("")
        else:
            lo, hi = self._bounds()[axis]
            position = lo + (hi - lo) * self.section_slider.value() / 1000.0
            self.section = (axis, float(position))
            self.section_label.setText(f"{'xyz'[axis]} = {position:.1f} mm")
        if self.plotter is not None and self.surfaces:
            self._draw_all(reset_camera=False)

    def cameras(self) -> list:
        """Camera position of every pane (linked views share one camera)."""
        out = []
        for i in range(len(self.names) + 1):
            self.plotter.subplot(0, i)
            out.append(self.plotter.camera)
        return out

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.plotter is not None:
            self.plotter.close()
        super().closeEvent(event)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
