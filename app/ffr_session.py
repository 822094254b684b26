"""Virtual FFR session: a lumen, its centerlines, scenario lesions, a stent plan, and 1D results (no Qt).

The FFR panel drives one of these: centerlines are computed once (worker),
then every change of a scenario lesion or of the stent re-solves the 1D
model at once (milliseconds) for the baseline and the plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyvista as pv

from imaging.centerline import extract_centerlines
from imaging.lesions import Lesion, apply_stent, deform_surface, detect_lesions, introduce_lesion
from imaging.vessel_tree import VesselTree
from imaging.vessels import Lumen, lumen_from_surface
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

    def lesion_rows(self) -> list[dict]:
        """Lesion table rows: baseline grading and FFR drop, plus the plan's FFR at the same outlet path."""
        rows = []
        for i, row in enumerate(self.baseline.lesions):
            rows.append(dict(row, row=i + 1, stented=self.stent is not None and self.stent.lesion == i))
        return rows
