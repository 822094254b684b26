"""Virtual FFR session: a lumen, its centerlines, scenario lesions, a stent plan, 1D and 3D results (no Qt).

The FFR panel drives one of these: centerlines are computed once (worker),
then every change of a scenario lesion or of the stent re-solves the 1D
model at once (milliseconds) for the baseline and the plan. A 3D
Navier-Stokes run of the baseline geometry (``mesh_baseline_3d`` on a worker,
then ``mechanics.flow_worker`` in a child process) comes back through
``read_flow_result`` and is compared with the 1D values outlet by outlet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyvista as pv

from imaging.centerline import extract_centerlines
from imaging.lesions import Lesion, apply_stent, deform_surface, detect_lesions, introduce_lesion
from imaging.vessel_tree import VesselTree
from imaging.vessels import Lumen, lumen_from_surface
from mechanics.fields import sample_point_field
from mechanics.reduced import ReducedResult, solve_ffr_1d


@dataclass
class ScenarioLesion:
    """A lesion introduced on purpose (not a finding): branch, throat arc length (mm), severity, length (mm)."""

    branch: int
    position_mm: float
    severity: float
    length_mm: float


@dataclass
class StentPlan:
    """Stent on one lesion of the baseline table (0-based row); None length/diameter = defaults."""

    lesion: int
    length_mm: Optional[float] = None
    diameter_mm: Optional[float] = None


@dataclass
class Ffr3dResult:
    """A 3D Navier-Stokes FFR run, read back from the flow worker's files.

    Attributes
    ----------
    per_outlet : dict
        FFR at each outlet, by port name.
    ffr_min : float
        Lowest outlet FFR.
    dofs : int
        Velocity + pressure degrees of freedom.
    report : dict
        Solver report (``newton_iterations``, ``seconds``, ...).
    wall : pv.PolyData
        Lumen wall with point arrays ``FFR``, ``wss_pa``, ``pressure_mmhg``.
    grid : pv.UnstructuredGrid
        Volume fields ``ffr``, ``pressure_mmhg``, ``velocity`` (m/s).
    scenario : list of ScenarioLesion
        The scenario lesions of the geometry that was solved.
    params : dict
        Meshing parameters (``radius_fraction``) and the mesh size (``tets``).
    """

    per_outlet: dict
    ffr_min: float
    dofs: int
    report: dict
    wall: pv.PolyData
    grid: pv.UnstructuredGrid
    scenario: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict, repr=False)  # path -> (s, FFR), sampled once

    def summary(self) -> str:
        """One line: FFR min, DOFs, tets, Newton iterations, solver seconds."""
        r = self.report
        return (f"3D FFR min {self.ffr_min:.3f}: {self.dofs:,} DOFs, {self.params.get('tets', 0):,} tets, "
                f"{r.get('newton_iterations', '?')} Newton iterations, {float(r.get('seconds', 0.0)):.1f} s")


def read_flow_result(out_dir: Path, *, scenario: Optional[list] = None, params: Optional[dict] = None) -> Ffr3dResult:
    """Read ``result.json``, ``result.vtu`` and ``wall.vtp`` written by ``mechanics.flow_worker``.

    Parameters
    ----------
    out_dir : Path
        The worker's output folder.
    scenario : list of ScenarioLesion, optional
        Scenario lesions of the solved geometry (kept to tell a stale result).
    params : dict, optional
        Meshing parameters to keep with the result.

    Returns
    -------
    Ffr3dResult
    """
    out_dir = Path(out_dir)
    data = json.loads((out_dir / "result.json").read_text())
    wall = pv.read(out_dir / "wall.vtp")
    wall.point_data["FFR"] = np.asarray(wall.point_data["ffr"])  # the name the FFR view colours by
    return Ffr3dResult({k: float(v) for k, v in data["per_outlet"].items()}, float(data["ffr_min"]),
                       int(data["dofs"]), data.get("report", {}), wall, pv.read(out_dir / "result.vtu"),
                       list(scenario or []), dict(params or {}))


def mesh_baseline_3d(lumen: Lumen, tree: VesselTree, baseline_tree: VesselTree, *, radius_fraction: float = 0.5,
                     progress=None, cancelled=None):
    """Tet mesh of the baseline lumen (scenario lesions carried to the surface) for the 3D solver.

    Parameters
    ----------
    lumen : Lumen
        The scanned lumen and its ports.
    tree, baseline_tree : VesselTree
        Centerlines as extracted and with the scenario lesions (same points).
    radius_fraction : float
        Core element size as a fraction of the local radius (smaller is finer).

    Returns
    -------
    imaging.lumen_mesh.LumenMesh

    Raises
    ------
    InputError, MeshError
        From ``imaging.lumen_mesh.mesh_lumen_surface``.
    """
    from imaging.lumen_mesh import mesh_lumen_surface

    surface = lumen.surface if baseline_tree is tree else deform_surface(lumen.surface, tree, baseline_tree)
    return mesh_lumen_surface(surface, lumen.ports, radius_fraction=radius_fraction,
                              centerlines=baseline_tree.to_polydata(), progress=progress, cancelled=cancelled)


@dataclass
class FfrSession:
    lumen: Lumen
    tree: VesselTree  # as extracted from the scan
    scenario: list[ScenarioLesion] = field(default_factory=list)
    stent: Optional[StentPlan] = None
    min_stenosis: float = 0.3
    baseline_tree: Optional[VesselTree] = None
    lesions: list[Lesion] = field(default_factory=list)
    baseline: Optional[ReducedResult] = None
    plan_tree: Optional[VesselTree] = None
    plan: Optional[ReducedResult] = None
    result3d: Optional[Ffr3dResult] = None

    @classmethod
    def from_surface(cls, surface: pv.PolyData, *, progress=None, cancelled=None) -> "FfrSession":
        """Ports and centerlines of a lumen surface (the slow part: run it on a worker)."""
        lumen = lumen_from_surface(surface)
        tree = extract_centerlines(lumen, progress=progress, cancelled=cancelled)
        session = cls(lumen, tree)
        session.update()
        return session

    def update(self) -> None:
        """Re-apply the scenario lesions and the stent and re-solve both 1D models (instant)."""
        tree = self.tree
        for s in self.scenario:
            tree = introduce_lesion(tree, s.branch, s.position_mm, s.severity, s.length_mm)
        self.baseline_tree = tree
        self.lesions = detect_lesions(tree, min_stenosis=self.min_stenosis)
        for les in self.lesions:
            les.introduced = any(s.branch == les.branch and abs(s.position_mm - les.throat_mm) <= s.length_mm / 2
                                 for s in self.scenario)
        self.baseline = solve_ffr_1d(tree, lesions=self.lesions)
        if self.stent is not None and self.stent.lesion < len(self.lesions):
            self.plan_tree = apply_stent(tree, self.lesions[self.stent.lesion], self.stent.length_mm,
                                         self.stent.diameter_mm)
            self.plan = solve_ffr_1d(self.plan_tree, min_stenosis=self.min_stenosis)
        else:
            self.plan_tree, self.plan = None, None

    def coloured(self, which: str = "baseline") -> tuple[pv.PolyData, pv.PolyData]:
        """(lumen surface, centerlines) with point array ``FFR`` for the baseline or the plan."""
        result = self.baseline if which == "baseline" else self.plan
        tree = self.baseline_tree if which == "baseline" else self.plan_tree
        if result is None or tree is None:
            raise ValueError(f"no {which} result")
        surface = deform_surface(self.lumen.wall_surface(), self.tree, tree)
        surface.point_data["FFR"] = result.ffr_along(surface)
        return surface, result.to_polydata()

    def worst_path(self, result: Optional[ReducedResult] = None) -> list[int]:
        """Branch indices from the inlet to the outlet with the lowest baseline FFR."""
        result = result or self.baseline
        terminal = min(self.tree.terminal_branches(), key=lambda i: result.ffr_branch[i][-1])
        return self.tree.path_to_root(terminal)

    def ffr_along_path(self, path: list[int], which: str = "baseline") -> tuple[np.ndarray, np.ndarray]:
        """(distance from the inlet mm, FFR) along a branch path."""
        result = self.baseline if which == "baseline" else self.plan
        s_all, f_all, offset = [], [], 0.0
        for i in path:
            s = result.tree.branches[i].arclength_mm
            s_all.append(s + offset)
            f_all.append(result.ffr_branch[i])
            offset += s[-1]
        return np.concatenate(s_all), np.concatenate(f_all)

    @property
    def stale_3d(self) -> bool:
        """True when the scenario lesions changed since the 3D run (its geometry is not the baseline's)."""
        return self.result3d is not None and self.result3d.scenario != self.scenario

    def ffr3d_along_path(self, path: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(distance from the inlet mm, 3D FFR) along a branch path of the baseline centerlines."""
        key = tuple(path)
        if key not in self.result3d.curves:
            s, _ = self.ffr_along_path(path, "baseline")
            points = np.vstack([self.baseline_tree.branches[i].points for i in path])
            self.result3d.curves[key] = (s, sample_point_field(self.result3d.grid, points, "ffr"))
        return self.result3d.curves[key]

    def comparison_rows(self) -> list[dict]:
        """Per outlet: ``outlet``, ``ffr_1d`` (baseline), ``ffr_3d``, ``difference`` (3D - 1D)."""
        if self.result3d is None:
            return []
        rows = []
        for name, f1 in self.baseline.per_outlet.items():
            f3 = self.result3d.per_outlet.get(name, float("nan"))
            rows.append({"outlet": name, "ffr_1d": float(f1), "ffr_3d": f3, "difference": f3 - float(f1)})
        return rows

    def lesion_rows(self) -> list[dict]:
        """Lesion table rows: baseline grading and FFR drop, plus the plan's FFR at the same outlet path."""
        rows = []
        for i, row in enumerate(self.baseline.lesions):
            rows.append(dict(row, row=i + 1, stented=self.stent is not None and self.stent.lesion == i))
        return rows
