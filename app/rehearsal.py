"""Rehearse a plan: a scenario played step by step as a list of scenes (no Qt).

A tissue scenario plays as baseline -> cut (the moved segment highlighted) ->
move (the segment carried along the planned rigid move, interpolated frames)
-> soft-tissue result (predicted skin coloured by displacement). Scenarios of
other kinds play their baseline and then each result surface coloured by its
first point array (e.g. FFR on a lumen).

The scenes are plain lists of :class:`Layer`; the offscreen renderer and video
export in :mod:`app.rehearsal_video` and the GUI rehearsal panel draw the same
lists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pyvista as pv

from app.case import Case
from imaging.errors import InputError
from imaging.progress import ProgressFn, no_progress
from imaging.volume import Geometry, LabelInfo, LabelMap

BONE_COLOR = (0.92, 0.89, 0.80)
SEGMENT_COLOR = (1.0, 0.75, 0.15)
SKIN_COLOR = (0.95, 0.75, 0.65)


@dataclass
class ScenarioView:
    """What the report and the rehearsal read from one scenario (H4's Scenario or a stored plan result)."""

    name: str
    kind: str
    params: dict
    results: dict
    surfaces: dict[str, pv.PolyData]
    provenance: object = None
    parent: Optional[str] = None


def list_scenarios(case: Case) -> dict[str, ScenarioView]:
    """Scenarios of the case: ``case.scenarios`` if present, plus soft-tissue plan results.

    A stored soft-tissue prediction (a surface whose provenance operation is
    ``tissue_*``) counts as a tissue scenario named after the surface.
    """
    out: dict[str, ScenarioView] = {}
    for name, sc in (getattr(case, "scenarios", None) or {}).items():
        out[name] = ScenarioView(name, str(getattr(sc, "kind", "")), dict(getattr(sc, "params", {}) or {}),
                                 dict(getattr(sc, "results", {}) or {}), dict(getattr(sc, "surfaces", {}) or {}),
                                 getattr(sc, "provenance", None), getattr(sc, "parent", None))
    for sname, surface in case.surfaces.items():
        prov = case.provenance.get(f"surface/{sname}")
        if prov is None or not prov.operation.startswith("tissue_") or sname in out:
            continue
        norm = surface.point_data.get("displacement_norm_mm")
        summary = {"max_skin_displacement_mm": float(np.max(norm))} if norm is not None else {}
        out[sname] = ScenarioView(sname, "tissue", dict(prov.params), {"summary": summary},
                                  {"predicted_skin": surface}, prov)
    return out


@dataclass
class Layer:
    """One mesh of a scene: colour or scalar colouring, opacity."""

    name: str
    mesh: pv.PolyData
    color: tuple[float, float, float] = BONE_COLOR
    opacity: float = 1.0
    scalars: Optional[str] = None
    clim: Optional[tuple[float, float]] = None
    cmap: str = "viridis"


@dataclass
class RehearsalStep:
    """One step of a rehearsal; ``frames`` frames in the exported video."""

    title: str
    description: str
    frames: int


@dataclass
class Rehearsal:
    """A playable scenario: steps and the scene at any (step, t in 0..1)."""

    scenario: str
    steps: list[RehearsalStep]
    scene: Callable[[int, float], list[Layer]]
    camera: tuple = field(default_factory=tuple)  # (position, focal point, view up)

    @property
    def n_frames(self) -> int:
        return sum(s.frames for s in self.steps)

    def frame_plan(self) -> list[tuple[int, float]]:
        """(step index, t) of every video frame in order; t runs 0..1 within a step."""
        plan = []
        for i, s in enumerate(self.steps):
            plan += [(i, k / max(s.frames - 1, 1)) for k in range(s.frames)]
        return plan


# -- surfaces of labels ------------------------------------------------------
def _pooled_label(mask: np.ndarray, geometry: Geometry, factor: int) -> LabelMap:
    """``mask`` max-pooled by ``factor`` (keeps thin bone) on the matching coarser grid."""
    z, y, x = (-(-n // factor) * factor for n in mask.shape)
    padded = np.zeros((z, y, x), dtype=bool)
    padded[: mask.shape[0], : mask.shape[1], : mask.shape[2]] = mask
    pooled = padded.reshape(z // factor, factor, y // factor, factor, x // factor, factor).any(axis=(1, 3, 5))
    spacing = np.asarray(geometry.spacing_xyz) * factor
    origin = np.asarray(geometry.origin_xyz) + geometry.direction @ (np.asarray(geometry.spacing_xyz)
                                                                     * (factor - 1) / 2.0)
    g = Geometry(tuple(spacing), tuple(origin), geometry.direction)
    return LabelMap(pooled.astype(np.uint8), g, {1: LabelInfo("mask")})


def label_surface(mask: np.ndarray, geometry: Geometry, *, factor: int = 2, decimate: float = 0.0) -> pv.PolyData:
    """A light preview surface (LPS mm) of a binary mask for scenes (pooled by ``factor``)."""
    from imaging.meshing import mesh_labelmap

    if not mask.any():
        raise InputError("cannot draw an empty label")
    surface = mesh_labelmap(_pooled_label(mask, geometry, factor), smoothing_iterations=10, decimate=decimate)
    return with_normals(surface)


def with_normals(mesh: pv.PolyData) -> pv.PolyData:
    """``mesh`` with point normals (smooth shading) and no split vertices."""
    return mesh.compute_normals(cell_normals=False, split_vertices=False, auto_orient_normals=False)


def _moved(mesh: pv.PolyData, move, center: np.ndarray, t: float) -> pv.PolyData:
    """``mesh`` carried a fraction ``t`` of the way along a rigid move."""
    from mechanics.whatif import RigidMove

    part = RigidMove(tuple(t * np.asarray(move.translation_mm)), tuple(t * np.asarray(move.rotation_deg)))
    out = mesh.copy()
    out.points = mesh.points + part.displacement(mesh.points, center)
    if "Normals" in mesh.point_data:
        out.point_data["Normals"] = np.asarray(mesh.point_data["Normals"]) @ part.matrix().T
    return out


def _skin_pair(surface: pv.PolyData) -> tuple[pv.PolyData, pv.PolyData]:
    """(skin before, predicted skin) from a prediction carrying ``original_points_mm``."""
    after = surface.copy()
    if "displacement_norm_mm" not in after.point_data and "displacement_mm" in after.point_data:
        after["displacement_norm_mm"] = np.linalg.norm(after["displacement_mm"], axis=1)
    before = surface.copy()
    if "original_points_mm" in surface.point_data:
        before.points = np.asarray(surface["original_points_mm"])
    elif "displacement_mm" in surface.point_data:
        before.points = surface.points - np.asarray(surface["displacement_mm"])
    return before, after


def _camera(meshes: list[pv.PolyData]) -> tuple:
    """Anterior-left oblique view (LPS: anterior is -y, left is +x) framing all meshes."""
    bounds = np.array([m.bounds for m in meshes])
    lo, hi = bounds[:, 0::2].min(axis=0), bounds[:, 1::2].max(axis=0)
    center = (lo + hi) / 2.0
    radius = float(np.linalg.norm(hi - lo)) / 2.0
    look = np.array([0.5, -1.0, 0.15])
    look /= np.linalg.norm(look)
    return (tuple(center + look * radius * 3.8), tuple(center), (0.0, 0.0, 1.0))


def _tissue_rehearsal(case: Case, sc: ScenarioView, frames_per_step: int, move_frames: int,
                      progress: ProgressFn) -> Rehearsal:
    from mechanics.whatif import RigidMove

    segment = sc.params.get("segment")
    if not segment or segment not in case.labels:
        raise InputError(f"--scenario {sc.name}: its segment label {segment!r} is not in the case")
    skin = next((s for s in sc.surfaces.values() if "displacement_mm" in s.point_data), None)
    if skin is None:
        raise InputError(f"--scenario {sc.name}: no predicted skin surface (point array displacement_mm)")
    move = sc.params.get("move") or [0.0] * 6
    if isinstance(move, dict):  # a plan's provenance: {"translation_mm", "rotation_deg"}
        move = [*move.get("translation_mm", (0, 0, 0)), *move.get("rotation_deg", (0, 0, 0))]
    move = RigidMove(tuple(map(float, move[:3])), tuple(map(float, move[3:6])))
    seg_label = case.labels[segment]
    seg_mask = seg_label.array > 0
    progress(0.1, "Drawing the segment")
    seg_surface = label_surface(seg_mask, seg_label.geometry)
    solver = sc.results.get("solver") or {}
    center = np.asarray(sc.results.get("segment_center_mm") or solver.get("segment_center_mm")
                        or seg_surface.center, float)
    progress(0.4, "Drawing the bone")
    fixed = np.zeros_like(seg_mask)
    for name in sc.params.get("fixed") or (["bone"] if "bone" in case.labels else []):
        if name in case.labels and case.labels[name].geometry.same_grid(seg_label.geometry):
            fixed |= case.labels[name].array > 0
    fixed &= ~seg_mask
    bone = label_surface(fixed, seg_label.geometry, factor=3) if fixed.any() else None  # ~3 mm: 0.3 s
    before, after = (with_normals(s) for s in _skin_pair(skin))
    top = float(np.max(after["displacement_norm_mm"])) or 1.0
    moved_segment = _moved(seg_surface, move, center, 1.0)
    bones = [Layer("bone", bone)] if bone is not None else []
    dist = np.linalg.norm(move.translation_mm)
    steps = [
        RehearsalStep("Baseline", "The patient as scanned: skin and bone", frames_per_step),
        RehearsalStep("Cut", f"Osteotomy: segment '{segment}' highlighted", frames_per_step),
        RehearsalStep("Move", f"Segment moved {dist:.1f} mm, rotated {list(move.rotation_deg)} deg", move_frames),
        RehearsalStep("Soft tissue", f"Predicted skin, displacement up to {top:.1f} mm", frames_per_step),
    ]

    def scene(step: int, t: float) -> list[Layer]:
        if step == 0:
            return bones + [Layer("segment", seg_surface), Layer("skin", before, SKIN_COLOR, 0.45)]
        if step == 1:
            return bones + [Layer("segment", seg_surface, SEGMENT_COLOR), Layer("skin", before, SKIN_COLOR, 0.15)]
        if step == 2:
            return bones + [Layer("segment", _moved(seg_surface, move, center, t), SEGMENT_COLOR),
                            Layer("skin", before, SKIN_COLOR, 0.15)]
        return bones + [Layer("segment", moved_segment, SEGMENT_COLOR),
                        Layer("skin", after, opacity=1.0, scalars="displacement_norm_mm", clim=(0.0, top),
                              cmap="plasma")]

    cam = _camera([m for m in (bone, seg_surface, before, after) if m is not None])
    return Rehearsal(sc.name, steps, scene, cam)


def result_scalars(mesh: pv.PolyData) -> Optional[str]:
    """The point array a result is coloured by: FFR first, then displacement, then the first scalar array."""
    arrays = [a for a in mesh.point_data if np.asarray(mesh.point_data[a]).ndim == 1 and a != "Normals"]
    for key in ("FFR", "displacement_norm_mm", "difference_mm"):
        if key in arrays:
            return key
    return arrays[0] if arrays else None


def _solid(mesh: pv.PolyData) -> pv.PolyData:
    """Centerlines (lines only) as tubes of their ``Radius`` (mm) so they show in a render."""
    if mesh.n_lines == 0 or mesh.GetNumberOfPolys():
        return mesh
    radius = float(np.median(mesh["Radius"])) if "Radius" in mesh.point_data else 1.0
    return mesh.tube(radius=radius, n_sides=16)


def _generic_rehearsal(case: Case, sc: ScenarioView, frames_per_step: int) -> Rehearsal:
    results = [(n, _solid(s)) for n, s in sc.surfaces.items() if s.n_points]
    if not results:
        raise InputError(f"--scenario {sc.name}: the scenario has no result surface to show")
    steps = [RehearsalStep("Baseline", "The geometry of the result, uncoloured", frames_per_step)]
    steps += [RehearsalStep(f"Result: {n}", f"{sc.kind} result {n}", frames_per_step) for n, _ in results]

    def scene(step: int, t: float) -> list[Layer]:
        if step == 0:
            return [Layer(n, s, BONE_COLOR) for n, s in results]
        n, s = results[step - 1]
        key = result_scalars(s)
        clim = (min(0.5, float(np.min(s[key]))), 1.0) if key == "FFR" else None
        return [Layer(n, s, scalars=key, clim=clim, cmap="RdYlGn" if key == "FFR" else "viridis")]

    return Rehearsal(sc.name, steps, scene, _camera([s for _, s in results]))


def build_rehearsal(case: Case, scenario: str, *, frames_per_step: int = 8, move_frames: int = 16,
                    progress: Optional[ProgressFn] = None) -> Rehearsal:
    """The rehearsal of one scenario of ``case``.

    Parameters
    ----------
    case : Case
        The case holding the scenario.
    scenario : str
        Scenario name (see :func:`list_scenarios`).
    frames_per_step : int
        Video frames for each still step (baseline, cut, result).
    move_frames : int
        Video frames interpolating the bone move.

    Raises
    ------
    InputError
        Unknown scenario, missing segment label or result surface, bad frame counts.
    """
    progress = progress or no_progress
    if frames_per_step < 1 or move_frames < 2:
        raise InputError("frames per step must be >= 1 and move frames >= 2")
    scenarios = list_scenarios(case)
    if scenario not in scenarios:
        known = ", ".join(sorted(scenarios)) or "none"
        raise InputError(f"--scenario {scenario}: no such scenario in the case (scenarios: {known})")
    sc = scenarios[scenario]
    if sc.kind == "tissue" or "segment" in sc.params:
        reh = _tissue_rehearsal(case, sc, frames_per_step, move_frames, progress)
    else:
        reh = _generic_rehearsal(case, sc, frames_per_step)
    progress(1.0, "Rehearsal ready")
    return reh
