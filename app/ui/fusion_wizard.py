"""Fusion wizard: lay a surface scan (STL/PLY/OBJ) onto a CT surface of the case.

Steps: import the scan, choose the CT surface (or a label, meshed on the
fly) and the region the scan covers, optionally give landmark pairs, run
``imaging.fusion.fuse_surface`` on the window's worker (progress, cancel),
look at before/after with the distance colour map in the 3D view, nudge the
result with numeric fields, and accept it into the case through the undo
stack (Edit > Undo takes it out again). Tools > Fuse surface scan opens it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pyvista as pv
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.case import Provenance
from app.pipeline import StepResult, step_mesh
from app.ui.commands import ApplyStepCommand
from app.ui.extensions import make_action, menu
from imaging.errors import InputError
from imaging.fusion import FusionResult, fuse_surface, prepare_target, surface_distances
from imaging.surface import SurfaceScan, load_surface
from imaging.transform import Transform, axis_angle_matrix, rigid_about
from viewer.scene3d import vtk_matrix

log = logging.getLogger(__name__)

REGIONS = {"Face (facial scan)": "face", "Tooth crowns (intraoral scan)": "crowns", "Whole surface": "all"}
NUDGE_AXES = (("tx", "Translate L", " mm"), ("ty", "Translate P", " mm"), ("tz", "Translate S", " mm"),
              ("rx", "Rotate about L", " deg"), ("ry", "Rotate about P", " deg"), ("rz", "Rotate about S", " deg"))
DISTANCE_CLIM_MM = 2.0  # colour map saturates at +-2 mm: sub-millimetre fits show as white
ACTOR_BEFORE, ACTOR_AFTER = "fusion_before", "fusion_after"
BAR_TITLE = "mm"


def nudge_matrix(values: dict[str, float], center_mm) -> np.ndarray:
    """4x4 patient-frame correction: rotations (deg, about L then P then S) about ``center_mm``, then shifts (mm)."""
    r = (axis_angle_matrix([0, 0, 1], values["rz"]) @ axis_angle_matrix([0, 1, 0], values["ry"])
         @ axis_angle_matrix([1, 0, 0], values["rx"]))
    return rigid_about(r, center_mm, [values["tx"], values["ty"], values["tz"]], "patient", "patient").matrix


class FusionWizard(QDialog):
    """Non-modal dialog running one fusion at a time for ``window``."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.setObjectName("fusion_wizard")
        self.setWindowTitle("Fuse surface scan")
        self.window_ = window
        self.scan: Optional[SurfaceScan] = None
        self.result: Optional[FusionResult] = None
        self._targets: dict[tuple, object] = {}  # prepared targets by (name, region, id(surface))
        self._target_surface: Optional[pv.PolyData] = None
        self._distances: Optional[np.ndarray] = None

        self.scan_label = QLabel("No scan loaded")
        self.scan_label.setWordWrap(True)
        self.import_button = QPushButton("Import scan...")
        self.import_button.setToolTip("STL, PLY (vertex colours) or OBJ (texture); units are detected")
        scan_box = QGroupBox("1. Surface scan")
        row = QHBoxLayout(scan_box)
        row.addWidget(self.scan_label, 1)
        row.addWidget(self.import_button)

        self.target = QComboBox()
        self.target.setToolTip("CT surface to match (a label is meshed on the fly)")
        self.region = QComboBox()
        self.region.addItems(list(REGIONS))
        self.region.setToolTip("Part of the CT surface the scan covers")
        target_box = QGroupBox("2. CT surface")
        form = QFormLayout(target_box)
        form.addRow("Target", self.target)
        form.addRow("Region", self.region)

        self.use_landmarks = QCheckBox("Start from landmark pairs (3 or more)")
        self.use_landmarks.setToolTip("Instead of the automatic feature search; ICP refines either start")
        self.pairs = QTableWidget(0, 6)
        self.pairs.setHorizontalHeaderLabels(["scan x", "scan y", "scan z", "CT L", "CT P", "CT S"])
        self.pairs.setMaximumHeight(110)
        self.pairs.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.add_pair = QPushButton("Add pair")
        lm_box = QGroupBox("3. Landmarks (optional, mm)")
        lm = QVBoxLayout(lm_box)
        lm.addWidget(self.use_landmarks)
        lm.addWidget(self.pairs)
        lm.addWidget(self.add_pair, 0, Qt.AlignRight)

        self.run_button = QPushButton("Run fusion")
        self.run_button.setToolTip("Global alignment + point-to-plane ICP on the worker (Esc cancels)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.result_label = QLabel("")
        self.result_label.setObjectName("fusion_result")
        self.result_label.setWordWrap(True)
        self.result_label.setMinimumHeight(56)
        self.result_label.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.show_mode = QComboBox()
        self.show_mode.addItems(["After (distance map)", "Before and after", "Before"])
        self.show_mode.setToolTip("Before: the scan as imported (grey); after: fused, coloured by distance "
                                  "(the CT surface is hidden meanwhile)")
        run_box = QGroupBox("4. Fuse and check")
        run = QGridLayout(run_box)
        run.addWidget(self.run_button, 0, 0)
        run.addWidget(self.cancel_button, 0, 1)
        run.addWidget(self.result_label, 1, 0, 1, 2)
        run.addWidget(QLabel("Show"), 2, 0)
        run.addWidget(self.show_mode, 2, 1)

        self.nudge: dict[str, QDoubleSpinBox] = {}
        nudge_box = QGroupBox("5. Manual nudge (patient frame, about the scan centre)")
        grid = QGridLayout(nudge_box)
        for n, (key, text, suffix) in enumerate(NUDGE_AXES):
            spin = QDoubleSpinBox()
            spin.setObjectName(f"nudge_{key}")
            spin.setRange(-50.0, 50.0) if suffix == " mm" else spin.setRange(-30.0, 30.0)
            spin.setDecimals(2)
            spin.setSingleStep(0.5 if suffix == " mm" else 0.5)
            spin.setSuffix(suffix)
            spin.setToolTip(f"{text}{suffix}")
            self.nudge[key] = spin
            grid.addWidget(QLabel(text), n % 3, 2 * (n // 3))
            grid.addWidget(spin, n % 3, 2 * (n // 3) + 1)
        self.reset_nudge = QPushButton("Reset nudge")
        grid.addWidget(self.reset_nudge, 3, 3)

        self.accept_button = QPushButton("Accept into case")
        self.accept_button.setToolTip("Store the fused scan as a surface of the case (undoable)")
        self.close_button = QPushButton("Close")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        for box in (scan_box, target_box, lm_box, run_box, nudge_box):
            layout.addWidget(box)
        layout.addLayout(buttons)
        self.resize(540, 820)

        self._distance_timer = QTimer(self)
        self._distance_timer.setSingleShot(True)
        self._distance_timer.setInterval(150)
        self._distance_timer.timeout.connect(self._update_distances)
        self.import_button.clicked.connect(self._import_dialog)
        self.add_pair.clicked.connect(lambda: self.pairs.insertRow(self.pairs.rowCount()))
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(window.runner.cancel)
        self.show_mode.currentTextChanged.connect(lambda _t: self._show())
        for spin in self.nudge.values():
            spin.valueChanged.connect(self._on_nudge)
        self.reset_nudge.clicked.connect(self.clear_nudge)
        self.accept_button.clicked.connect(self.accept_result)
        self.close_button.clicked.connect(self.close)
        self.refresh_targets()
        self._update_buttons()

    # -- inputs ---------------------------------------------------------------
    def refresh_targets(self) -> None:
        """Offer the case's surfaces, then its labels."""
        case = self.window_.case
        current = self.target.currentText()
        self.target.clear()
        if case is not None:
            self.target.addItems(list(case.surfaces))
            self.target.addItems([f"label: {n}" for n in case.labels])
        if current:
            self.target.setCurrentText(current)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import surface scan", "",
                                              "Surface scans (*.stl *.ply *.obj *.vtk *.vtp);;All files (*)")
        if path:
            self.load_scan(path)

    def load_scan(self, path) -> bool:
        """Read a scan file on the worker; the wizard shows it when done."""
        def step(progress, cancelled):
            return load_surface(path, progress=progress, cancelled=cancelled)

        def done(scan: SurfaceScan) -> None:
            self.scan = scan
            self.result = None
            self.clear_nudge(show=False)
            s = scan.surface
            text = (f"{Path(path).name}: {s.n_points:,} points, {s.n_faces:,} triangles; "
                    f"units {scan.units.units} ({scan.units.reason})")
            self.scan_label.setText(text + "".join(f"\nwarning: {w}" for w in scan.warnings))
            self._show()
            self._update_buttons()

        return self._run("Reading scan", step, done)

    def landmark_pairs(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(scan points, CT points) from the table; None when unused."""
        if not self.use_landmarks.isChecked():
            return None
        rows = []
        for r in range(self.pairs.rowCount()):
            cells = [self.pairs.item(r, c) for c in range(6)]
            if all(c is None or not c.text().strip() for c in cells):
                continue
            try:
                rows.append([float(c.text()) for c in cells])
            except (AttributeError, ValueError) as exc:
                raise InputError(f"landmark pair {r + 1}: six numbers (mm) are needed") from exc
        if len(rows) < 3:
            raise InputError(f"landmarks: {len(rows)} complete pair(s); at least 3 are needed")
        a = np.asarray(rows)
        return a[:, :3], a[:, 3:]

    def set_landmark_pairs(self, scan_mm, ct_mm) -> None:
        """Fill the table (and tick it) with corresponding points, mm."""
        scan_mm, ct_mm = np.atleast_2d(scan_mm), np.atleast_2d(ct_mm)
        self.pairs.setRowCount(len(scan_mm))
        for r, row in enumerate(np.hstack([scan_mm, ct_mm])):
            for c, v in enumerate(row):
                self.pairs.setItem(r, c, QTableWidgetItem(f"{v:.3f}"))
        self.use_landmarks.setChecked(True)

    # -- run ------------------------------------------------------------------
    def _run(self, title: str, step, done) -> bool:
        w = self.window_

        def on_done(result) -> None:
            done(result)
            self._update_buttons()

        def on_error(exc) -> None:
            self._update_buttons()
            w.report_error(exc, title)

        def on_cancelled() -> None:
            self._update_buttons()
            self.result_label.setText(f"Cancelled: {title}")
            w.statusBar().showMessage(f"Cancelled: {title}; nothing changed")

        if not w.runner.run(title, step, on_done=on_done, on_error=on_error, on_cancelled=on_cancelled):
            w.statusBar().showMessage(f"Busy: {w.runner.title}", 5000)
            return False
        self._update_buttons()
        return True

    def run(self) -> bool:
        """Fuse the scan to the chosen target on the worker."""
        w = self.window_
        case = w.case
        try:
            if self.scan is None:
                raise InputError("import a scan first")
            if case is None or not self.target.currentText():
                raise InputError("the case has no surface or label to fuse to")
            pairs = self.landmark_pairs()
        except InputError as exc:
            w.report_error(exc, "Fusion")
            return False
        choice = self.target.currentText()
        region = REGIONS[self.region.currentText()]
        volume = case.primary_volume()[1] if case.volumes else None
        scan = self.scan.surface
        cache = self._targets

        def step(progress, cancelled):
            if choice.startswith("label: "):
                surface = step_mesh(case, label=choice[7:], progress=lambda f, m: progress(0.2 * f, m)).item
            else:
                surface = case.surfaces[choice]
            key = (choice, region, id(surface))
            if key not in cache:
                progress(0.2, "Preparing the CT surface region")
                cache.clear()  # one target at a time: they hold feature arrays
                cache[key] = prepare_target(surface, region=None if region == "all" else region, volume=volume)
            result = fuse_surface(scan, cache[key], landmarks=pairs, progress=lambda f, m: progress(0.3 + 0.7 * f, m),
                                  cancelled=cancelled)
            return surface, result

        def done(out) -> None:
            self._target_surface, self.result = out
            self._distances = self.result.distances_mm
            self.clear_nudge(show=False)
            self._show(reset_camera=True)

        return self._run(f"Fusing {Path(str(self.scan.path)).name}", step, done)

    # -- result, nudge, view --------------------------------------------------
    def nudge_values(self) -> dict[str, float]:
        return {key: spin.value() for key, spin in self.nudge.items()}

    def clear_nudge(self, show: bool = True) -> None:
        """Set the nudge back to zero (the fused pose)."""
        for spin in self.nudge.values():
            spin.blockSignals(True)
            spin.setValue(0.0)
            spin.blockSignals(False)
        if self.result is not None and show:
            self._distances = self.result.distances_mm
            self._show()

    def nudge_correction(self) -> np.ndarray:
        """The current correction (4x4, patient frame) applied after the fused transform."""
        if self.result is None:
            return np.eye(4)
        centre = np.asarray(self.result.moved.points).mean(axis=0)
        return nudge_matrix(self.nudge_values(), centre)

    def current_transform(self) -> Optional[Transform]:
        """Scan -> patient transform: the fusion result with the manual nudge."""
        if self.result is None:
            return None
        t = self.result.transform
        return Transform(self.nudge_correction() @ t.matrix, t.from_frame, t.to_frame)

    def current_surface(self) -> Optional[pv.PolyData]:
        """The scan in the patient frame (fused and nudged) with ``distance_mm``."""
        if self.result is None:
            return None
        moved = self.scan.surface.copy(deep=True)
        transform = self.current_transform()
        moved.points = transform.apply(np.asarray(self.scan.surface.points, dtype=float))
        if "Normals" in moved.point_data:
            moved.point_data["Normals"] = transform.apply_to_vectors(moved.point_data["Normals"])
        moved.point_data["distance_mm"] = self._distances
        return moved

    def _on_nudge(self, _value: float) -> None:
        if self.result is None:
            return
        actor = self.window_.scene.plotter.renderer.actors.get(ACTOR_AFTER)
        if actor is not None:  # instant feedback; distances follow a moment later
            actor.SetUserMatrix(vtk_matrix(self.nudge_correction()))
            self.window_.scene.request_render()
        self._distance_timer.start()
        self._show_numbers()

    def _update_distances(self) -> None:
        if self.result is None or self._target_surface is None:
            return
        pts = self.current_transform().apply(np.asarray(self.scan.surface.points, dtype=float))
        self._distances = surface_distances(pts, self._target_surface)
        self._show()

    def _show_numbers(self) -> None:
        r = self.result
        if r is None:
            self.result_label.setText("")
            return
        d = np.abs(self._distances)
        inl = d <= r.inlier_mm
        rms = float(np.sqrt(np.mean(d[inl] ** 2))) if inl.any() else float("nan")
        t = self.current_transform()
        self.result_label.setText(
            f"RMS {rms:.3f} mm over {100 * inl.mean():.1f}% of points within {r.inlier_mm:g} mm "
            f"(fit: {r.rms_mm:.3f} mm, {r.method}, {r.seconds:.1f} s)\n"
            f"rotation {t.rotation_deg:.2f} deg, translation "
            f"({', '.join(f'{v:.1f}' for v in t.translation_mm)}) mm; median |d| {np.median(d):.2f} mm")

    def _show(self, reset_camera: bool = False) -> None:
        """Before (grey, as imported) and after (distance colours) in the 3D view."""
        scene = self.window_.scene
        plotter = scene.plotter
        mode = self.show_mode.currentText()
        self._remove_actors()
        if self.scan is not None and (mode != "After (distance map)" or self.result is None):
            plotter.add_mesh(self.scan.surface, color=(0.7, 0.7, 0.72), opacity=0.45, name=ACTOR_BEFORE,
                             reset_camera=False, render=False)
        if self.result is not None and mode != "Before":
            after = self.scan.surface.copy(deep=True)
            after.points = self.result.transform.apply(np.asarray(self.scan.surface.points, dtype=float))
            after.point_data["distance_mm"] = self._distances
            actor = plotter.add_mesh(after, scalars="distance_mm", cmap="coolwarm",
                                     clim=(-DISTANCE_CLIM_MM, DISTANCE_CLIM_MM), name=ACTOR_AFTER,
                                     reset_camera=False, render=False, smooth_shading=True,
                                     scalar_bar_args={"title": BAR_TITLE, "n_labels": 5, "vertical": True,
                                                      "fmt": "%.1f", "width": 0.05, "position_x": 0.82,
                                                      "position_y": 0.15, "height": 0.7})
            actor.SetUserMatrix(vtk_matrix(self.nudge_correction()))
        self._hide_target(self.result is not None and mode == "After (distance map)")
        if reset_camera:
            scene.reset_camera("anterior")
        scene.request_render()
        self._show_numbers()

    def _hide_target(self, hide: bool) -> None:
        """The fused scan lies on the CT surface: "After" hides the surface so the map is not interleaved."""
        w = self.window_
        target = self.target.currentText()
        if target in w.scene.surface_actors:
            w.scene.set_surface_visible(target, not hide and w.seg_panel.is_visible("surface", target))

    def _remove_actors(self) -> None:
        plotter = self.window_.scene.plotter
        for name in (ACTOR_BEFORE, ACTOR_AFTER):
            plotter.remove_actor(name, render=False)
        if BAR_TITLE in plotter.scalar_bars:
            plotter.remove_scalar_bar(BAR_TITLE, render=False)

    # -- accept ---------------------------------------------------------------
    def accept_result(self) -> bool:
        """Store the fused (and nudged) scan in the case as ``<scan>_fused`` (undoable)."""
        w = self.window_
        if self.result is None or w.case is None:
            w.report_error(InputError("run the fusion first"), "Accept fusion")
            return False
        case = w.case
        name = f"{Path(str(self.scan.path)).stem}_fused"
        t = self.current_transform()
        params = {"matrix": t.matrix.tolist(), "fit_rms_mm": round(self.result.rms_mm, 4),
                  "nudge": self.nudge_values(), "method": self.result.method, "target": self.target.currentText(),
                  "region": REGIONS[self.region.currentText()], "scan": str(self.scan.path),
                  "units": self.scan.units.units}
        target = self.target.currentText()
        ref = (case.input_ref("label", target[7:]) if target.startswith("label: ")
               else case.input_ref("surface", target))
        prov = Provenance("fuse_surface", params, [ref])
        w.undo_stack.push(ApplyStepCommand(case, StepResult("surface", name, self.current_surface(), prov),
                                           f"Fuse {name}"))
        w.statusBar().showMessage(f"Fused scan stored as surface {name!r} (Ctrl+Z takes it out)", 10000)
        self.show_mode.setCurrentText("Before")  # the case's own surface now shows the result
        return True

    def _update_buttons(self) -> None:
        busy = self.window_.runner.busy
        self.run_button.setEnabled(not busy and self.scan is not None)
        self.cancel_button.setEnabled(busy)
        self.import_button.setEnabled(not busy)
        self.accept_button.setEnabled(not busy and self.result is not None)
        for spin in self.nudge.values():
            spin.setEnabled(self.result is not None)

    def closeEvent(self, event) -> None:  # noqa: N802
        self._remove_actors()
        self._hide_target(False)
        self.window_.scene.request_render()
        super().closeEvent(event)


def open_fusion_wizard(window) -> FusionWizard:
    """Show the (one) fusion wizard of ``window``."""
    wizard = getattr(window, "fusion_wizard", None)
    if wizard is None:
        wizard = FusionWizard(window)
        window.fusion_wizard = wizard
    wizard.refresh_targets()
    wizard.show()
    wizard.raise_()
    return wizard


def install(window) -> None:
    action = make_action(window, "fusion_wizard", "&Fuse surface scan...", lambda: open_fusion_wizard(window),
                         "Ctrl+Shift+F",
                         "Lay an intraoral or facial surface scan onto a CT surface (landmarks + ICP)")
    menu(window, "&Tools").addAction(action)
