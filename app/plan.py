"""Surgical-plan steps on a case: soft-tissue response to a planned bone move (no Qt).

Labels: the moved segment (a bone label), fixed bone labels, and the skin
label (everything inside the skin). The soft tissue is skin minus bones.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyvista as pv
from scipy.spatial import cKDTree

from app.case import Case, Provenance
from app.pipeline import StepResult, step_segment
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, no_progress
from imaging.segment import HU_PRESETS, segment_threshold
from imaging.volume import LabelInfo, LabelMap

#: Default soft-tissue material: E = 3 kPa, nu = 0.45. FE and mass-tensor
#: models of facial soft tissue for orthognathic prediction use a nearly
#: incompressible material with E of the order of kPa (Chabanas, Luboz & Payan,
#: Med Image Anal 7:131-151, 2003; Mollemans et al., Med Image Anal 11:282-301,
#: 2007). With displacement-only loading the linear prediction does not depend
#: on E at all; nu does matter.
DEFAULT_YOUNGS_PA = 3000.0
DEFAULT_POISSON = 0.45


@dataclass
class TissuePlan:
    """Parameters of one soft-tissue prediction."""

    segment: str
    move: "object"  # mechanics.whatif.RigidMove
    fixed: list[str] = field(default_factory=list)
    skin: str = "skin"
    model: str = "linear"
    voxel_mm: float = 4.0
    youngs_modulus_pa: float = DEFAULT_YOUNGS_PA
    poisson_ratio: float = DEFAULT_POISSON


def ensure_skin(case: Case, name: str = "skin") -> LabelMap:
    """The skin label of the case, segmented from the CT (preset) if missing."""
    if name in case.labels:
        return case.labels[name]
    vol_name, vol = case.primary_volume()
    lab = segment_threshold(vol, HU_PRESETS["skin"], name=name)
    case.set_item("label", name, lab, Provenance("segment_threshold", {"label": name, "hu_range": list(
        HU_PRESETS["skin"]), "keep_largest": True, "fill_holes": True}, [case.input_ref("volume", vol_name)]))
    return lab


def _mask(case: Case, name: str) -> np.ndarray:
    if name not in case.labels:
        known = ", ".join(sorted(case.labels)) or "none"
        raise InputError(f"--segment/--fixed {name}: no such label in the case (labels: {known})")
    return case.labels[name].array > 0


@dataclass
class _Prepared:
    mesh: object  # mechanics.tissue_mesh.TissueMesh
    moved_tag: int
    fixed_tags: list[int]
    center: np.ndarray


def _prepare(case: Case, plan: TissuePlan, progress: ProgressFn) -> _Prepared:
    """Soft-tissue mesh of the plan with its moved and fixed boundary tags."""
    from mechanics.tissue_mesh import CUT_TAG, FIRST_BONE_TAG, build_tissue_mesh

    skin = ensure_skin(case, plan.skin)
    moved = _mask(case, plan.segment)
    fixed = np.zeros_like(moved)
    for name in plan.fixed:
        fixed |= _mask(case, name)
    fixed &= ~moved
    geom = skin.geometry
    bones = {"moved": LabelMap(moved.astype(np.uint8), geom, {1: LabelInfo(plan.segment)})}
    if fixed.any():
        bones["fixed"] = LabelMap(fixed.astype(np.uint8), geom, {1: LabelInfo("fixed")})
    progress(0.05, "Meshing the soft tissue")
    tm = build_tissue_mesh(skin, bones, voxel_mm=plan.voxel_mm)
    interface = tm.points[tm.nodes_on(FIRST_BONE_TAG)]
    if len(interface) == 0:
        raise InputError(f"--segment {plan.segment}: the segment touches no soft tissue")
    fixed_tags = [CUT_TAG] + ([FIRST_BONE_TAG + 1] if "fixed" in bones else [])
    return _Prepared(tm, FIRST_BONE_TAG, fixed_tags, interface.mean(axis=0))


def run_tissue_plan(
    case: Case,
    plan: TissuePlan,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> StepResult:
    """Predict the skin after moving ``plan.segment``; returns the predicted skin surface.

    The surface carries point arrays ``displacement_mm`` (vector) and
    ``displacement_norm_mm``; the report has the solver report, max skin
    displacement and landmark displacements.
    """
    from mechanics.tissue import Material, TissueProblem, solve_tissue_linear, solve_tissue_neohookean

    progress = progress or no_progress
    t0 = time.perf_counter()
    prep = _prepare(case, plan, progress)
    tm, center = prep.mesh, prep.center
    mesh, tags = tm.to_dolfinx()
    material = Material(plan.youngs_modulus_pa, plan.poisson_ratio)
    move_fn = lambda x: plan.move.displacement(x.T, center).T  # noqa: E731
    # Later conditions win at shared nodes: the moved bone over fixed/cut faces.
    dirichlet = {**{t: None for t in prep.fixed_tags}, prep.moved_tag: move_fn}
    problem = TissueProblem(mesh, tags, material, dirichlet=dirichlet, degree=1)
    sub = lambda f, m: progress(0.15 + 0.8 * f, m)  # noqa: E731
    if plan.model == "linear":
        result = solve_tissue_linear(problem, progress=sub, cancelled=cancelled)
    elif plan.model == "neohookean":
        result = solve_tissue_neohookean(problem, progress=sub, cancelled=cancelled)
    else:
        raise InputError(f"--model {plan.model}: use linear or neohookean")
    x, u = _gather_dofs(result, mesh.comm)
    node_u = u[cKDTree(x).query(tm.points)[1]]
    surface = _skin_surface(tm, node_u)
    landmarks = _landmarks(surface, center)
    report = dict(result.report,
                  max_skin_displacement_mm=float(surface["displacement_norm_mm"].max()),
                  landmarks=landmarks, mesh=tm.quality(), segment_center_mm=center.tolist(), mpi_ranks=mesh.comm.size,
                  seconds=round(time.perf_counter() - t0, 3))
    name = f"predicted_skin_{plan.segment}"
    progress(1.0, "Prediction ready")
    return StepResult("surface", name, surface, Provenance(f"tissue_{plan.model}", _params(plan),
                                                           _inputs(case, plan)), report)


def _gather_dofs(result, comm) -> tuple[np.ndarray, np.ndarray]:
    """Dof coordinates and displacements of every rank, on every rank (serial: this rank's)."""
    x, u = result.displacement_at_dofs()
    if comm.size > 1:
        x, u = np.concatenate(comm.allgather(x)), np.concatenate(comm.allgather(u))
    return x, u


def plan_case(case: Case, plan: TissuePlan) -> Case:
    """The part of ``case`` a plan reads: its labels, and the scan only if the skin must be segmented.

    What a worker process is sent; the case object itself is not (it has listeners).
    """
    part = Case(case.name)
    for name in [plan.skin, plan.segment, *plan.fixed]:
        if name in case.labels:
            part.labels[name] = case.labels[name]
            key = f"label/{name}"
            if key in case.provenance:
                part.provenance[key] = case.provenance[key]
    if plan.skin not in case.labels and case.volumes:
        vol_name, vol = case.primary_volume()
        part.volumes[vol_name] = vol
    return part


def build_live_plan(case: Case, plan: TissuePlan, *, progress: Optional[ProgressFn] = None,
                    cancelled: Optional[CancelledFn] = None) -> tuple["LivePlan", Optional[StepResult]]:
    """A ``LivePlan``, segmenting the skin label first if the case lacks it.

    Returns the live plan and the skin segmentation step (None if the label
    existed), which the caller applies to its own case. A module-level step,
    so it can run in a worker process (``mechanics.process_runner``).
    """
    progress = progress or no_progress
    skin, span = None, 0.0
    if plan.skin not in case.labels:
        span = 0.1
        skin = step_segment(case, label=plan.skin, preset="skin", cancelled=cancelled,
                            progress=lambda f, m: progress(span * f, f"Segmenting {plan.skin}: {m}"))
        case.labels[plan.skin] = skin.item
    live = LivePlan(case, plan, cancelled=cancelled, progress=lambda f, m: progress(span + (1 - span) * f, m))
    return live, skin


def _params(plan: TissuePlan) -> dict:
    return {"segment": plan.segment, "fixed": plan.fixed, "skin": plan.skin, "model": plan.model,
            "move": {"translation_mm": list(plan.move.translation_mm),
                     "rotation_deg": list(plan.move.rotation_deg)},
            "voxel_mm": plan.voxel_mm, "youngs_modulus_pa": plan.youngs_modulus_pa,
            "poisson_ratio": plan.poisson_ratio}


def _inputs(case: Case, plan: TissuePlan) -> list[dict]:
    return [case.input_ref("label", n) for n in [plan.skin, plan.segment, *plan.fixed]]


class LivePlan:
    """Linear what-if for one segment, updated instantly for any rigid move.

    Building it meshes the soft tissue and solves the 12 unit responses (seconds
    to a minute, run it in a worker); ``skin(move)`` then costs milliseconds.
    """

    def __init__(self, case: Case, plan: TissuePlan, *, progress: Optional[ProgressFn] = None,
                 cancelled: Optional[CancelledFn] = None) -> None:
        from mechanics.tissue import Material
        from mechanics.whatif import UnitResponses

        progress = progress or no_progress
        self.plan = plan
        prep = _prepare(case, plan, progress)
        self.mesh, self.center = prep.mesh, prep.center
        dmesh, tags = self.mesh.to_dolfinx()
        self.responses = UnitResponses(dmesh, tags, Material(plan.youngs_modulus_pa, plan.poisson_ratio),
                                       prep.moved_tag, prep.fixed_tags, prep.center)
        self.responses.compute(progress=lambda f, m: progress(0.1 + 0.9 * f, m), cancelled=cancelled)
        self.base = _skin_surface(self.mesh, np.zeros_like(self.mesh.points))
        x = self.responses.V.tabulate_dof_coordinates()
        self._dof_of_skin = cKDTree(x).query(self.base["original_points_mm"])[1]

    def skin_displacement(self, move) -> np.ndarray:
        """Displacement (n_skin_points, 3) mm of the skin points for a rigid move."""
        return self.responses.superpose(move).reshape(-1, 3)[self._dof_of_skin]

    def skin(self, move) -> pv.PolyData:
        """The predicted skin surface (a copy of ``base`` moved) for a rigid move."""
        u = self.skin_displacement(move)
        out = self.base.copy()
        out.points = self.base["original_points_mm"] + u
        out["displacement_mm"] = u
        out["displacement_norm_mm"] = np.linalg.norm(u, axis=1)
        return out


class SkinDistance:
    """Signed distance (mm) from points to the original skin: + outward, - inward.

    The distance map surgeons read after a plan: unlike the displacement, it
    ignores sliding along the skin. Measured to the tangent plane at the
    nearest original skin point (exact to within the surface's curvature over
    one element). Outward is away from the skin's centroid: the FE skin is an
    open shell, cut at the field of view. Built once per skin; each call is a
    k-d tree query (milliseconds), fast enough while dragging.
    """

    def __init__(self, original: pv.PolyData) -> None:
        surface = pv.PolyData(np.asarray(original.points, float), np.asarray(original.faces))
        oriented = surface.compute_normals(cell_normals=False, point_normals=True, consistent_normals=True,
                                           split_vertices=False, auto_orient_normals=False)
        self.points = np.asarray(oriented.points)
        self.normals = np.asarray(oriented.point_data["Normals"])
        if np.mean(np.sum((self.points - self.points.mean(axis=0)) * self.normals, axis=1)) < 0:
            self.normals = -self.normals
        self.tree = cKDTree(self.points)

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        """Signed distances (n,) mm of ``points_mm`` (n, 3)."""
        p = np.asarray(points_mm, float)
        nearest = self.tree.query(p)[1]
        return np.einsum("ij,ij->i", p - self.points[nearest], self.normals[nearest])


def _skin_surface(tm, node_u: np.ndarray) -> pv.PolyData:
    from mechanics.tissue_mesh import SKIN_TAG

    faces = tm.faces[tm.face_tags == SKIN_TAG]
    used, inverse = np.unique(faces, return_inverse=True)
    tri = inverse.reshape(-1, 3)
    cells = np.hstack([np.full((len(tri), 1), 3), tri]).ravel()
    surface = pv.PolyData(tm.points[used] + node_u[used], cells)
    surface["displacement_mm"] = node_u[used]
    surface["displacement_norm_mm"] = np.linalg.norm(node_u[used], axis=1)
    surface["original_points_mm"] = tm.points[used]
    return surface


def _landmarks(surface: pv.PolyData, segment_center: np.ndarray) -> dict:
    """Automatic soft-tissue points until placed landmarks exist (LPS: anterior is -y).

    ``pronasale``: most anterior skin point; ``soft_tissue_over_segment``: the
    most anterior skin point within 15 mm (axially) of the segment centre.
    """
    p0 = surface["original_points_mm"]
    disp = surface["displacement_mm"]
    out = {}
    idx = {"pronasale": int(np.argmin(p0[:, 1]))}
    band = np.abs(p0[:, 2] - segment_center[2]) < 15.0
    if band.any():
        cand = np.nonzero(band)[0]
        idx["soft_tissue_over_segment"] = int(cand[np.argmin(p0[cand, 1])])
    for name, i in idx.items():
        out[name] = {"position_mm": p0[i].tolist(), "displacement_mm": disp[i].tolist(),
                     "displacement_norm_mm": float(np.linalg.norm(disp[i]))}
    return out
