"""Soft-tissue plan actions of the main window: prepare, move, refine, apply.

A mixin of ``MainWindow`` (like ``FileActionsMixin``). The slow parts (mesh
and unit responses, the neo-Hookean solve) run in a separate process
(``mechanics.process_runner``), driven from the window's worker thread, on the
part of the case they read: the window stays responsive, Cancel terminates the
process, and a solver crash becomes an error message, never the end of the
app. Every move is then a few milliseconds on the GUI thread
(``LivePlan.skin``). What reaches the case goes through the undo stack.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Optional

import numpy as np
import pyvista as pv
from PySide6.QtCore import Qt, QTimer
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from app.case import Case, Provenance
from app.pipeline import StepResult
from app.plan import (LivePlan, SkinDistance, TissuePlan, _inputs, _landmarks, _params, build_live_plan, plan_case,
                      run_tissue_plan)
from app.ui.commands import ApplyStepCommand
from imaging.errors import InputError
from mechanics.process_runner import run_in_process, set_preload, warm_up
from viewer.plan_gizmo import SegmentGizmo

log = logging.getLogger(__name__)
#: Run the solves in a worker process (False: on the worker thread, e.g. for stubbed steps in tests).
SOLVE_IN_PROCESS = True


def solve_step(fn, *args, title: str = ""):
    """A worker step calling ``fn(*args, progress=, cancelled=)`` in a process (or in this one)."""
    def step(progress, cancelled):
        if SOLVE_IN_PROCESS:
            return run_in_process(fn, *args, progress=progress, cancelled=cancelled, title=title)
        return fn(*args, progress=progress, cancelled=cancelled)

    return step


def snapshot_case(case: Case) -> Case:
    """A case sharing the items of ``case`` in its own dicts.

    Worker steps read the snapshot: the GUI may add or undo items meanwhile,
    and a step that creates a missing label adds it to the snapshot, never to
    the case the window shows.
    """
    snap = Case(case.name)
    snap.volumes = dict(case.volumes)
    snap.labels = dict(case.labels)
    snap.surfaces = dict(case.surfaces)
    snap.provenance = dict(case.provenance)
    return snap


def rigid_move(values) -> Any:
    """``RigidMove`` from (tx, ty, tz, rx, ry, rz), mm and degrees."""
    from mechanics.whatif import RigidMove  # imports dolfinx: keep it off the start-up path

    return RigidMove(tuple(values[:3]), tuple(values[3:]))


def move_matrix(move, center: np.ndarray) -> np.ndarray:
    """4 x 4 matrix of the rigid move about ``center`` (LPS mm), for drawing.

    The move is affine, so its action on the origin and the three unit points
    determines it; taking those from ``move.displacement`` keeps one
    definition of the move.
    """
    points = np.vstack([np.zeros(3), np.eye(3)])
    moved = points + move.displacement(points, np.asarray(center, float))
    m = np.eye(4)
    m[:3, 3] = moved[0]
    m[:3, :3] = (moved[1:] - moved[0]).T
    return m


def move_values(matrix: np.ndarray, center: np.ndarray) -> tuple[float, ...]:
    """(tx, ty, tz mm, rx, ry, rz deg) of a rigid 4 x 4 matrix, as a move about ``center``.

    x -> R x + b is x -> R (x - c) + c + t with t = R c + b - c; the angles are
    extrinsic x, y, z like ``RigidMove``.
    """
    R, b = np.asarray(matrix, float)[:3, :3], np.asarray(matrix, float)[:3, 3]
    c = np.asarray(center, float)
    t = R @ c + b - c
    angles = Rotation.from_matrix(R).as_euler("xyz", degrees=True)
    return tuple(float(v) for v in (*t, *angles))


@dataclasses.dataclass
class LiveState:
    """The prepared live prediction and what it was prepared from."""

    live: LivePlan
    plan: TissuePlan
    labels: dict[str, Any]  # the label objects it was built from (to notice edits/undo)
    prepared_s: float
    values: tuple[float, ...] = (0.0,) * 6
    predicted: Optional[pv.PolyData] = None
    landmarks: dict = dataclasses.field(default_factory=dict)
    refined: Optional[tuple[tuple[float, ...], StepResult, float]] = None  # (move, result, max diff mm)
    distance: Optional[SkinDistance] = None  # to the original skin, built on first use
    refined_shown: Optional[tuple[float, ...]] = None  # the move whose neo-Hookean skin the view shows


class PlanActionsMixin:
    """Soft-tissue plan of ``MainWindow`` (needs ``plan_panel`` and ``plan_overlay``)."""

    plan_state: Optional[LiveState] = None

    def _connect_plan(self) -> None:
        panel = self.plan_panel
        panel.prepare_requested.connect(self._on_prepare_clicked)
        panel.move_changed.connect(self.set_plan_move)
        panel.view_changed.connect(self._on_plan_view)
        panel.smooth_toggled.connect(self.plan_overlay.set_smooth)
        panel.refine_requested.connect(self.refine_plan)
        panel.apply_requested.connect(self.apply_plan)
        self.plan_gizmo = SegmentGizmo(self.scene, self._on_gizmo_move, self._on_gizmo_release)
        self._refine_pending = False
        self.runner.finished.connect(self._start_pending_refine)
        set_preload(["app.plan"])
        # Once the plan dock shows, the worker-process server imports in the background (seconds of
        # CPU), so the first solve starts quickly; sessions that never plan do not pay for it.
        self.plan_dock.visibilityChanged.connect(lambda visible: warm_up() if visible else None)

    def focus_plan_panel(self) -> None:
        """Show and raise the plan dock; focus its first field (Ctrl+P)."""
        self.plan_dock.show()
        self.plan_dock.raise_()
        panel = self.plan_panel
        target = panel.move_spins["tx"] if self.plan_state is not None else panel.segment
        target.setFocus(Qt.ShortcutFocusReason)

    # -- prepare -------------------------------------------------------------
    def _on_prepare_clicked(self) -> None:
        if self.plan_panel.preparing:
            self.runner.cancel()
        else:
            self.prepare_live_plan()

    def prepare_live_plan(self, plan: Optional[TissuePlan] = None) -> bool:
        """Mesh the soft tissue and solve the unit responses on the worker.

        A missing skin label is segmented with the scan's skin preset first and
        added to the case (undoable) when the preparation succeeds; a cancel or
        an error leaves the case as it was.
        """
        case = self.case
        plan = plan or self.plan_panel.tissue_plan()
        if case is None or not case.volumes:
            self.report_error(InputError("no CT open: open a scan first"), "Plan")
            return False
        if plan.segment not in case.labels:
            self.report_error(InputError(f"moved segment {plan.segment or '(none)'!r}: choose a label of the case"),
                              "Plan")
            return False
        if not self._check_idle():
            return False
        snap = plan_case(case, plan)
        t0 = time.perf_counter()
        step = solve_step(build_live_plan, snap, plan, title="live prediction")

        def done(out):
            self.plan_panel.set_preparing(False)
            live, skin = out
            if case is not self.case:
                return
            used = [plan.segment, *plan.fixed, plan.skin]
            changed = [n for n in used if case.labels.get(n) is not snap.labels.get(n)
                       and not (skin is not None and n == plan.skin and n not in case.labels)]
            if changed:
                self.plan_panel.set_ready(None)
                self.statusBar().showMessage(
                    f"Label {changed[0]} changed while preparing: prepare the live prediction again", 10000)
                return
            if skin is not None:
                self.undo_stack.push(ApplyStepCommand(case, skin, f"Segment {plan.skin}"))
            seconds = time.perf_counter() - t0
            self._install_plan(LiveState(live, plan, {n: case.labels[n] for n in used}, seconds))

        def stopped(message: Optional[str] = None, exc: Optional[BaseException] = None) -> None:
            self.plan_panel.set_preparing(False)
            self.plan_panel.set_ready(None)
            if exc is not None:
                self.report_error(exc, "Prepare live prediction")
            else:
                self.statusBar().showMessage(message)

        self.clear_plan()
        started = self.runner.run(
            f"Preparing live prediction ({plan.segment})", step, on_done=done,
            on_error=lambda exc: stopped(exc=exc),
            on_cancelled=lambda: stopped("Cancelled: live prediction; nothing changed"))
        if started:
            self.plan_panel.set_preparing(True)
        return started

    def _install_plan(self, state: LiveState) -> None:
        self.plan_state = state
        live = state.live
        self.plan_overlay.show_skin(live.base, smooth=self.plan_panel.smooth.isChecked())
        self.plan_overlay.set_mode(*self.plan_panel.view_settings())
        self._show_plan_segment()
        self.plan_gizmo.place(self._segment_bounds())
        self._update_gizmo()
        dofs = live.responses.report.get("dofs", 0)
        fixed = ", ".join(state.plan.fixed) or "none"
        self.plan_panel.set_ready(
            state.plan, f"Live: {state.plan.segment} moves, fixed {fixed}; {live.base.n_points:,} skin points, "
            f"{dofs:,} DOFs, {state.plan.voxel_mm:g} mm elements ({state.prepared_s:.0f} s).")
        self.plan_panel.set_apply_text("linear")
        self.set_plan_move(self.plan_panel.move_values())
        self.statusBar().showMessage(
            f"Live prediction ready ({state.prepared_s:.1f} s): move the {state.plan.segment} in the Plan panel", 10000)

    def _segment_bounds(self) -> tuple[float, ...]:
        """Bounds (mm) of the unmoved segment: its surface, else its soft-tissue interface."""
        state = self.plan_state
        surface = self.case.surfaces.get(state.plan.segment)
        if surface is not None and surface.n_points:
            return tuple(surface.bounds)
        from mechanics.tissue_mesh import FIRST_BONE_TAG

        mesh = state.live.mesh
        p = mesh.points[mesh.nodes_on(FIRST_BONE_TAG)]
        lo, hi = p.min(axis=0), p.max(axis=0)
        return (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])

    def _update_gizmo(self) -> None:
        """The gizmo shows whenever the planned place of the segment does."""
        self.plan_gizmo.set_enabled(self.plan_state is not None and self.plan_overlay.mode != "before")

    def _on_plan_view(self, mode: str, opacity: float) -> None:
        self.plan_overlay.set_mode(mode, opacity)
        self._update_gizmo()
        if mode == "distance" and self.plan_state is not None:
            self.set_plan_move(self.plan_state.values)  # the distances are computed only when shown

    def _on_gizmo_move(self, matrix: np.ndarray) -> None:
        """The user drags the gizmo: show the prediction for the move it makes."""
        state = self.plan_state
        if state is None:
            return
        names = [name for name in self.plan_panel.move_spins]
        self.plan_panel.set_move(**dict(zip(names, move_values(matrix, state.live.center))))

    def _on_gizmo_release(self) -> None:
        """On release, refine with neo-Hookean in the background if the panel asks for it."""
        state = self.plan_state
        if state is None:
            return
        # Snap the box to the planned move (the fields round to 0.1 and clamp at their limits).
        self.plan_gizmo.set_matrix(move_matrix(rigid_move(state.values), state.live.center))
        if self.plan_panel.refine_on_release.isChecked():
            if self.runner.busy and self.runner.title.startswith("Refining"):
                self._refine_pending = True  # restart for the newest move once the old run stops
                self.runner.cancel()
            else:
                self.refine_plan()

    def _start_pending_refine(self, _state: str) -> None:
        if self._refine_pending:
            self._refine_pending = False
            QTimer.singleShot(0, self.refine_plan)

    def _show_plan_segment(self) -> None:
        """Draw the case surface of the segment (if any) at its planned place."""
        state = self.plan_state
        name = state.plan.segment
        surface = self.case.surfaces.get(name)
        self.plan_overlay.set_segment(surface, self.seg_panel.is_visible("surface", name))
        if surface is not None:
            self.scene.set_surface_visible(name, False)  # the moved copy stands in for it

    def _plan_owns_surface(self, name: str, visible: bool) -> bool:
        """Show/hide the moved copy if ``name`` is the plan's segment; True if it was."""
        state = self.plan_state
        if state is None or name != state.plan.segment:
            return False
        self.plan_overlay.set_segment_visible(visible)
        return True

    def clear_plan(self, reason: str = "") -> None:
        """Forget the live prediction (new case, or its labels changed)."""
        state = self.plan_state
        self.plan_state = None
        self.plan_overlay.clear()
        self.plan_gizmo.clear()
        self.plan_panel.set_ready(None)
        if state is not None and self.case is not None and state.plan.segment in self.case.surfaces:
            name = state.plan.segment
            self.scene.set_surface_visible(name, self.seg_panel.is_visible("surface", name))
        if reason:
            self.statusBar().showMessage(reason, 10000)

    def _plan_case_changed(self, kind: str, name: str) -> None:
        state = self.plan_state
        if state is None:
            return
        if kind == "label" and name in state.labels and self.case.labels.get(name) is not state.labels[name]:
            self.clear_plan(f"Label {name} changed: prepare the live prediction again")
        elif kind == "surface" and name == state.plan.segment:
            self._show_plan_segment()

    # -- move ----------------------------------------------------------------
    def set_plan_move(self, values) -> None:
        """Show the prediction for a move (tx, ty, tz mm, rx, ry, rz deg): milliseconds."""
        state = self.plan_state
        if state is None:
            return
        values = tuple(float(v) for v in values)
        move = rigid_move(values)
        predicted = state.live.skin(move)
        state.values, state.predicted = values, predicted
        state.landmarks = _landmarks(predicted, state.live.center)
        if self.plan_overlay.mode == "distance":
            if state.distance is None:
                state.distance = SkinDistance(state.live.base)
            predicted["distance_mm"] = state.distance(predicted.points)
        self.plan_overlay.update_skin(predicted)
        matrix = move_matrix(move, state.live.center)
        self.plan_overlay.set_segment_matrix(matrix)
        if not self.plan_gizmo.dragging:  # while dragging, the gizmo leads
            self.plan_gizmo.set_matrix(matrix)
        self.plan_panel.show_prediction(float(predicted["displacement_norm_mm"].max()), state.landmarks)
        self._show_refine_state()

    # -- refine --------------------------------------------------------------
    def refine_plan(self) -> bool:
        """Neo-Hookean solve of the current move on the worker; compare with the linear one."""
        state = self.plan_state
        if state is None or not self._check_idle():
            return False
        case = self.case
        values = state.values
        plan = dataclasses.replace(state.plan, move=rigid_move(values), model="neohookean")
        step = solve_step(run_tissue_plan, plan_case(case, plan), plan, title="neo-Hookean solve")

        def done(result: StepResult):
            if self.plan_state is not state:
                return
            linear = state.live.skin_displacement(plan.move)
            diff = float(np.linalg.norm(_on_points(result.item, state.live.base) - linear, axis=1).max())
            state.refined = (values, result, diff)
            state.refined_shown = None
            self._show_refine_state()
            self.statusBar().showMessage(f"Neo-Hookean prediction ready ({result.report.get('seconds', 0):.0f} s)",
                                         10000)

        return self._run_step(f"Refining {plan.segment} (neo-Hookean)", step, done)

    def _show_refine_state(self) -> None:
        state = self.plan_state
        if state.refined is None:
            self.plan_panel.refine_info.setText("")
            self.plan_panel.set_apply_text("linear")
            return
        values, result, diff = state.refined
        current = values == state.values
        if not current:
            self.plan_overlay.set_refined(None)
            state.refined_shown = None
        elif state.refined_shown != values:
            base = state.live.base
            u_nh = _on_points(result.item, base)
            u_lin = state.live.skin_displacement(rigid_move(values))
            self.plan_overlay.set_refined(base["original_points_mm"] + u_nh, np.linalg.norm(u_nh - u_lin, axis=1))
            state.refined_shown = values
        text = (f"Neo-Hookean: max {result.report['max_skin_displacement_mm']:.2f} mm; "
                f"differs from linear by up to {diff:.2f} mm")
        self.plan_panel.refine_info.setText(text + ("" if current else " (for an earlier move)"))
        self.plan_panel.set_apply_text("neo-Hookean" if current else "linear")

    # -- apply ---------------------------------------------------------------
    def plan_result(self) -> Optional[StepResult]:
        """What Apply stores: the neo-Hookean result for this move if refined, else the linear one."""
        state = self.plan_state
        if state is None or state.predicted is None:
            return None
        if state.refined is not None and state.refined[0] == state.values:
            return state.refined[1]
        plan = dataclasses.replace(state.plan, move=rigid_move(state.values))
        surface = state.predicted
        report = {"max_skin_displacement_mm": float(surface["displacement_norm_mm"].max()),
                  "landmarks": state.landmarks, "segment_center_mm": state.live.center.tolist(),
                  "method": "superposition of 12 unit responses", **state.live.responses.report}
        return StepResult("surface", f"predicted_skin_{plan.segment}", surface.copy(),
                          Provenance("tissue_linear", _params(plan), _inputs(self.case, plan)), report)

    def apply_plan(self) -> bool:
        """Store the predicted skin in the case through the undo stack."""
        result = self.plan_result()
        if result is None or self.case is None:
            self.report_error(InputError("no prediction: prepare the live prediction first"), "Apply plan")
            return False
        self.undo_stack.push(ApplyStepCommand(self.case, result, f"Apply {result.name}"))
        # The plan view draws this surface already; a second copy would z-fight with it.
        self.seg_panel.set_visible("surface", result.name, False)
        self.statusBar().showMessage(
            f"Stored {result.name} in the case ({result.provenance.operation}, max "
            f"{result.report['max_skin_displacement_mm']:.2f} mm; the plan view draws it, "
            "tick it under Surfaces to see it alone); Ctrl+Z undoes", 10000)
        return True


def _on_points(result_surface: pv.PolyData, base: pv.PolyData) -> np.ndarray:
    """Displacements of a result surface at the points of ``base`` (same mesh, maybe reordered)."""
    u = np.asarray(result_surface["displacement_mm"])
    p, q = np.asarray(result_surface["original_points_mm"]), np.asarray(base["original_points_mm"])
    if p.shape == q.shape and np.allclose(p, q):
        return u
    return u[cKDTree(p).query(q)[1]]

