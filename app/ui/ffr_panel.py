"""Virtual FFR dock: centerlines of a lumen surface, lesion table, scenario lesion and stent with instant 1D FFR.

The centerlines are computed on the window's worker; every later change
(scenario lesion severity/length/position, stent on/off, length, diameter)
re-solves the 1D model at once (``app.ffr_session``) and redraws baseline
and plan side by side (``viewer.ffr_view``). A 3D Navier-Stokes run of the
baseline goes on in the background (``app.ui.ffr3d``) and is shown next to
the 1D values when it is done.
"""
from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDockWidget, QDoubleSpinBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QPushButton, QSlider, QSpinBox, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from app.ffr_session import FfrSession, ScenarioLesion, StentPlan
from app.ui.extensions import make_action, menu
from app.ui.ffr3d import Ffr3dBox, Ffr3dController
from viewer.ffr_view import FfrView

log = logging.getLogger(__name__)

COLUMNS = ("#", "Branch", "DS %", "AS %", "Length mm", "dFFR", "Kind")


class FfrPanel(QWidget):
    """Controls (left) and the FFR view (right)."""

    #: The session was replaced (new centerlines, new case).
    session_changed = Signal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("ffr_panel")
        self.session: Optional[FfrSession] = None
        self.surface_combo = QComboBox()
        self.compute_button = QPushButton("Compute centerlines && FFR")
        self.summary = QLabel("Choose the lumen surface and compute.")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setMinimumHeight(110)

        self.lesion_box = QGroupBox("Scenario lesion (introduced, not a finding)")
        self.lesion_box.setCheckable(True)
        self.lesion_box.setChecked(False)
        self.branch = QSpinBox()
        self.position = QDoubleSpinBox(suffix=" mm", decimals=1, maximum=1000.0, value=10.0)
        self.severity = QSlider(Qt.Horizontal)
        self.severity.setRange(0, 90)
        self.severity.setValue(70)
        self.severity_label = QLabel("70 %")
        self.lesion_length = QDoubleSpinBox(suffix=" mm", decimals=1, minimum=1.0, maximum=100.0, value=8.0)
        form = QFormLayout(self.lesion_box)
        form.addRow("Branch", self.branch)
        form.addRow("Position", self.position)
        sev = QHBoxLayout()
        sev.addWidget(self.severity, 1)
        sev.addWidget(self.severity_label)
        form.addRow("Diameter stenosis", sev)
        form.addRow("Length", self.lesion_length)

        self.stent_box = QGroupBox("Virtual stent")
        self.stent_box.setCheckable(True)
        self.stent_box.setChecked(False)
        self.stent_lesion = QSpinBox(minimum=1)
        self.stent_length = QDoubleSpinBox(suffix=" mm", decimals=1, minimum=0.0, maximum=100.0, value=0.0,
                                           specialValueText="lesion + 4 mm")
        self.stent_diameter = QDoubleSpinBox(suffix=" mm", decimals=2, minimum=0.0, maximum=20.0, value=0.0,
                                             specialValueText="reference")
        sform = QFormLayout(self.stent_box)
        sform.addRow("Lesion (table row)", self.stent_lesion)
        sform.addRow("Length", self.stent_length)
        sform.addRow("Diameter", self.stent_diameter)

        self.box3d = Ffr3dBox()

        controls = QWidget()
        controls.setMinimumWidth(470)
        left = QVBoxLayout(controls)
        row = QHBoxLayout()
        row.addWidget(QLabel("Lumen"))
        row.addWidget(self.surface_combo, 1)
        left.addLayout(row)
        left.addWidget(self.compute_button)
        left.addWidget(self.summary)
        left.addWidget(self.table, 1)
        left.addWidget(self.lesion_box)
        left.addWidget(self.stent_box)
        left.addWidget(self.box3d)
        self.view = FfrView()
        split = QSplitter()
        split.addWidget(controls)
        split.addWidget(self.view)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(split)
        for w in (self.branch, self.stent_lesion):
            w.valueChanged.connect(lambda *_: self.refresh())
        for w in (self.position, self.lesion_length, self.stent_length, self.stent_diameter):
            w.valueChanged.connect(lambda *_: self.refresh())
        self.severity.valueChanged.connect(lambda v: (self.severity_label.setText(f"{v} %"), self.refresh()))
        self.lesion_box.toggled.connect(lambda *_: self.refresh())
        self.stent_box.toggled.connect(lambda *_: self.refresh())
        self._set_enabled(False)

    def _set_enabled(self, on: bool) -> None:
        for w in (self.lesion_box, self.stent_box, self.table, self.box3d):
            w.setEnabled(on)

    def set_surfaces(self, names: list[str], preferred: Optional[str]) -> None:
        current = self.surface_combo.currentText()
        self.surface_combo.blockSignals(True)
        self.surface_combo.clear()
        self.surface_combo.addItems(names)
        pick = current if current in names else preferred
        if pick:
            self.surface_combo.setCurrentText(pick)
        self.surface_combo.blockSignals(False)
        self.compute_button.setEnabled(bool(names))

    def set_session(self, session: Optional[FfrSession]) -> None:
        self.session = session
        self._set_enabled(session is not None)
        if session is not None:
            self.branch.setRange(0, len(session.tree.branches) - 1)
            self.position.setMaximum(max(b.length_mm for b in session.tree.branches))
        self.box3d.show_rows([], False)
        self.box3d.status.setText("Not computed.")
        self.view.show_3d(None)
        self.session_changed.emit()
        self.refresh()

    def show_3d(self) -> None:
        """Draw the session's 3D result (vessel coloured by the 3D FFR) and refresh the tables and curves."""
        r = self.session.result3d
        self.view.show_3d(r.wall, f"3D FFR min {r.ffr_min:.2f}")
        self.refresh()

    # -- live 1D update ------------------------------------------------------
    def refresh(self) -> None:
        s = self.session
        if s is None:
            return
        s.scenario = ([ScenarioLesion(self.branch.value(), min(self.position.value(),
                                                                s.tree.branches[self.branch.value()].length_mm),
                                      self.severity.value() / 100.0, self.lesion_length.value())]
                      if self.lesion_box.isChecked() and self.severity.value() > 0 else [])
        s.stent = (StentPlan(self.stent_lesion.value() - 1, self.stent_length.value() or None,
                             self.stent_diameter.value() or None) if self.stent_box.isChecked() else None)
        try:
            s.update()
        except Exception as exc:  # bad scenario values: say so, keep the last good display
            self.summary.setText(f"Cannot update: {exc}")
            return
        self.stent_lesion.setMaximum(max(1, len(s.lesions)))
        self._fill_table()
        base = s.baseline
        text = f"Baseline FFR min {base.ffr_min:.3f} ({base.seconds * 1000:.0f} ms)"
        if s.plan is not None:
            text += f"  |  stented {s.plan.ffr_min:.3f}"
        self.summary.setText(text)
        self.box3d.show_rows(s.comparison_rows(), s.stale_3d)
        self._draw()

    def _fill_table(self) -> None:
        rows = self.session.lesion_rows()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            kind = "scenario" if row["introduced"] else "found"
            values = (str(row["row"]), str(row["branch"]), f"{row['diameter_stenosis_pct']:.0f}",
                      f"{row['area_stenosis_pct']:.0f}", f"{row['length_mm']:.1f}", f"{row['delta_ffr']:.3f}",
                      kind + (" + stent" if row["stented"] else ""))
            for c, v in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(v))

    def _draw(self) -> None:
        s = self.session
        surf, lines = s.coloured("baseline")
        baseline = (surf, lines, f"FFR min {s.baseline.ffr_min:.2f}")
        plan = None
        path = s.worst_path()
        curves = {"baseline": s.ffr_along_path(path, "baseline")}
        if s.plan is not None:
            psurf, plines = s.coloured("plan")
            plan = (psurf, plines, f"FFR min {s.plan.ffr_min:.2f}")
            curves["stented"] = s.ffr_along_path(path, "plan")
        if s.result3d is not None and not s.stale_3d:
            curves["3D Navier-Stokes"] = s.ffr3d_along_path(path)
        self.view.show_results(baseline, plan)
        outlet = s.tree.branches[path[-1]].port or "outlet"
        self.view.plot_along(curves, f"FFR from the inlet to {outlet}")


class FfrController:
    """Connects the panel to the window's case and worker."""

    def __init__(self, window) -> None:
        self.window = window
        self.panel = FfrPanel()
        self.panel.compute_button.clicked.connect(self.compute)
        self.ffr3d = Ffr3dController(window, self.panel)
        window.case_hooks.append(lambda case: self.on_case())

    def on_case(self) -> None:
        from app.cli_ffr import pick_case_surface

        case = self.window.case
        surfaces = dict(case.surfaces) if case is not None else {}
        preferred = pick_case_surface(surfaces)[0] if surfaces else None
        self.panel.set_surfaces(sorted(surfaces), preferred)
        self.panel.set_session(None)

    def compute(self) -> bool:
        case = self.window.case
        name = self.panel.surface_combo.currentText()
        if case is None or name not in case.surfaces:
            self.window.show_error("Virtual FFR: choose a lumen surface of the case first")
            return False
        surface = case.surfaces[name].copy()

        def step(progress, cancelled):
            return FfrSession.from_surface(surface, progress=progress, cancelled=cancelled)

        def done(session) -> None:
            self.panel.set_session(session)
            self.window.statusBar().showMessage(
                f"FFR: {len(session.tree.branches)} branches, {len(session.lumen.outlets)} outlets", 5000)

        return self.window.runner.run("Centerlines for FFR", step, done,
                                      lambda exc: self.window.show_error(f"Virtual FFR: {exc}"))


def install(window) -> FfrController:
    """Add the Virtual FFR dock (bottom) and Plan > Virtual FFR."""
    controller = FfrController(window)
    window.ffr_controller = controller
    window.ffr_panel = controller.panel
    dock = QDockWidget("Virtual FFR", window)
    dock.setObjectName("dock_ffr_panel")
    dock.setWidget(controller.panel)
    # not floatable: re-parenting the two VTK render windows into a floating window crashes under X11
    dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable)
    window.addDockWidget(Qt.BottomDockWidgetArea, dock)
    dock.hide()
    window.ffr_dock = dock

    def focus() -> None:
        dock.show()
        dock.raise_()
        if controller.panel.session is None:
            controller.on_case()

    menu(window, "&Plan").addAction(make_action(window, "ffr_panel", "Virtual &FFR...", focus, "Ctrl+Alt+F",
                                                "Centerlines, lesions, instant 1D FFR and virtual stent"))

    def compute_3d() -> None:
        focus()
        controller.ffr3d.start()

    menu(window, "&Plan").addAction(make_action(window, "ffr_3d", "Virtual FFR &3D (Navier-Stokes)", compute_3d,
                                                "Ctrl+Alt+3", "Mesh the lumen and solve 3D Navier-Stokes FFR in "
                                                "the background (after the 1D FFR)"))
    return controller
