"""What-if scenarios of a case: named parameter sets over the baseline twin (no Qt).

A scenario is a plan (a bone move, a stent, a material choice) whose results
are computed from the baseline items of the case. Scenarios are branched
(copy, then change), renamed, deleted (with what is needed to undo), run and
compared. ``Case.scenarios`` keeps them in creation order; every change emits
``Case.changed("scenario", name)``.

Kinds (``app.scenario_kinds.KINDS``): ``tissue`` (soft-tissue prediction for
a bone move, ``app.plan``) and ``ffr`` (1D FFR on a centerline tree with
virtual lesions and stents, ``mechanics.reduced``).
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyvista as pv
from scipy.spatial import cKDTree

from app.case import Case, Provenance
from app.scenario_kinds import KINDS, ScenarioRun
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress

log = logging.getLogger(__name__)

BASELINE = "baseline"


@dataclass
class Scenario:
    """One what-if instance of the patient.

    Attributes
    ----------
    name : str
        Unique within the case (``baseline`` is reserved).
    kind : str
        ``tissue`` | ``ffr`` | ... (a key of ``app.scenario_kinds.KINDS``).
    params : dict
        JSON-able parameters (tissue: segment, move [tx, ty, tz mm, rx, ry, rz deg], fixed, skin, model,
        voxel_mm, youngs_modulus_pa, poisson_ratio).
    parent : str or None
        ``baseline`` or the scenario it was branched from.
    results : dict
        JSON-able; ``results["summary"]`` = {outcome: number}, ``results["solver"]`` = solver report,
        ``results["sweep"]`` = uncertainty bands (``app.sweep``). Empty until run.
    surfaces : dict of str to pyvista.PolyData
        Result surfaces (tissue: ``skin`` with point arrays ``displacement_mm`` and
        ``displacement_norm_mm``, LPS mm).
    provenance : Provenance or None
        How the results were computed.
    """

    name: str
    kind: str
    params: dict
    parent: Optional[str] = BASELINE
    results: dict = field(default_factory=dict)
    surfaces: dict[str, pv.PolyData] = field(default_factory=dict)
    provenance: Optional[Provenance] = None

    @property
    def summary(self) -> dict[str, float]:
        return self.results.get("summary", {})

    def to_json(self) -> dict:
        """Everything but the surfaces (those are files next to case.json)."""
        return {"name": self.name, "kind": self.kind, "params": self.params, "parent": self.parent,
                "results": self.results, "provenance": None if self.provenance is None
                else self.provenance.to_json()}

    @classmethod
    def from_json(cls, d: dict, surfaces: Optional[dict[str, pv.PolyData]] = None) -> "Scenario":
        prov = d.get("provenance")
        return cls(d["name"], d["kind"], d["params"], d.get("parent", BASELINE), d.get("results", {}),
                   dict(surfaces or {}), None if prov is None else Provenance.from_json(prov))


def _check_name(case: Case, name: str, *, new: bool = True) -> str:
    name = (name or "").strip()
    if not name:
        raise InputError("scenario name: a name is required")
    if name == BASELINE:
        raise InputError(f"scenario name {name!r} is reserved for the unchanged twin")
    if new and name in case.scenarios:
        raise InputError(f"scenario name {name!r}: already used in this case")
    return name


def get_scenario(case: Case, name: str) -> Scenario:
    """The scenario ``name`` of the case; InputError naming the known ones otherwise."""
    if name not in case.scenarios:
        known = ", ".join(case.scenarios) or "none"
        raise InputError(f"scenario {name!r}: no such scenario in the case (scenarios: {known})")
    return case.scenarios[name]


# -- editing ------------------------------------------------------------------
def add_scenario(case: Case, name: str, kind: str, params: dict, *, parent: str = BASELINE) -> Scenario:
    """Add a new scenario (not run yet) at the end of ``case.scenarios``.

    Raises
    ------
    InputError
        Empty, reserved or duplicate name; unknown kind; bad parameters.
    """
    name = _check_name(case, name)
    if kind not in KINDS:
        raise InputError(f"scenario kind {kind!r}: unknown (known: {', '.join(KINDS)})")
    if parent != BASELINE:
        get_scenario(case, parent)
    scenario = Scenario(name, kind, KINDS[kind].check(params), parent)
    case.scenarios[name] = scenario
    case.changed.emit("scenario", name)
    return scenario


def branch_scenario(case: Case, source: str, name: str, changes: Optional[dict] = None) -> Scenario:
    """Copy scenario ``source`` as ``name`` (parent ``source``), then apply ``changes`` to its parameters.

    The branch starts without results: they belonged to the source's parameters.
    """
    src = get_scenario(case, source)
    params = {**copy.deepcopy(src.params), **(changes or {})}
    return add_scenario(case, name, src.kind, params, parent=src.name)


def set_scenario_params(case: Case, name: str, params: dict) -> Scenario:
    """Replace the parameters of ``name`` (results are dropped); returns the previous scenario."""
    old = get_scenario(case, name)
    new = Scenario(old.name, old.kind, KINDS[old.kind].check(params), old.parent)
    case.scenarios[name] = new
    case.changed.emit("scenario", name)
    return old


def put_scenario(case: Case, scenario: Scenario) -> None:
    """Store ``scenario`` under its name (replacing one of the same name, keeping its place)."""
    case.scenarios[scenario.name] = scenario
    case.changed.emit("scenario", scenario.name)


def rename_scenario(case: Case, old: str, new: str) -> None:
    """Rename keeping the order; children branched from ``old`` follow the new name."""
    scenario = get_scenario(case, old)
    new = _check_name(case, new, new=new != old)
    if new == old:
        return
    case.scenarios = {(new if k == old else k): v for k, v in case.scenarios.items()}
    scenario.name = new
    for child in case.scenarios.values():
        if child.parent == old:
            child.parent = new
    case.changed.emit("scenario", old)
    case.changed.emit("scenario", new)


@dataclass
class DeletedScenario:
    """What ``delete_scenario`` removed: enough for ``restore_scenario`` to undo it."""

    index: int
    scenario: Scenario
    children: list[str]  # scenarios re-parented to the deleted one's parent


def delete_scenario(case: Case, name: str) -> DeletedScenario:
    """Remove a scenario; its children are re-parented to its parent. Returns the undo record."""
    scenario = get_scenario(case, name)
    index = list(case.scenarios).index(name)
    children = [k for k, v in case.scenarios.items() if v.parent == name]
    for k in children:
        case.scenarios[k].parent = scenario.parent
    del case.scenarios[name]
    case.changed.emit("scenario", name)
    return DeletedScenario(index, scenario, children)


def restore_scenario(case: Case, deleted: DeletedScenario) -> None:
    """Undo ``delete_scenario``: the scenario returns at its place, its children to it."""
    items = list(case.scenarios.items())
    items.insert(deleted.index, (deleted.scenario.name, deleted.scenario))
    case.scenarios = dict(items)
    for k in deleted.children:
        if k in case.scenarios:
            case.scenarios[k].parent = deleted.scenario.name
    case.changed.emit("scenario", deleted.scenario.name)


# -- running ------------------------------------------------------------------
def evaluate_scenario(
    case: Case,
    name: str,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> ScenarioRun:
    """Compute a scenario's results without storing them (GUI workers use this on a snapshot).

    Raises
    ------
    InputError
        Unknown scenario, a kind that cannot run yet, bad parameters for this case.
    SolverError
        The solver failed.
    concurrent.futures.CancelledError
        ``cancelled()`` became true.
    """
    scenario = get_scenario(case, name)
    check_cancelled(cancelled)
    return KINDS[scenario.kind].run(case, scenario, progress or no_progress, cancelled)


def store_run(case: Case, name: str, run: ScenarioRun) -> Scenario:
    """Put a run's results into scenario ``name`` (a new object); returns the previous scenario (undo)."""
    old = get_scenario(case, name)
    results = dict(run.results)
    if "sweep" in old.results and "sweep" not in results:
        results["sweep"] = old.results["sweep"]  # the uncertainty bands belong to the parameters, not the run
    put_scenario(case, Scenario(old.name, old.kind, old.params, old.parent, results, dict(run.surfaces),
                                run.provenance))
    return old


def run_scenario(
    case: Case,
    name: str,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> Scenario:
    """Run scenario ``name`` and store its results and surfaces in the case; returns the updated scenario."""
    store_run(case, name, evaluate_scenario(case, name, progress=progress, cancelled=cancelled))
    return case.scenarios[name]


# -- comparing ----------------------------------------------------------------
def compare_scenarios(case: Case, names: list[str]) -> dict:
    """Key outcomes of several scenarios side by side.

    Returns
    -------
    dict
        ``{"scenarios": names, "outcomes": {outcome: {scenario: number or None}}, "bands": {outcome: {scenario:
        [p5, p50, p95]}}, "solver": {scenario: report}, "params": {scenario: params}, "not_run": [names]}``.
        Outcomes are the union of the scenarios' summaries in first-seen order (mm for displacements,
        dimensionless FFR).
    """
    if not names:
        raise InputError("compare: name at least one scenario")
    scenarios = [get_scenario(case, n) for n in names]
    outcomes: dict[str, dict[str, Optional[float]]] = {}
    for s in scenarios:
        for key in s.summary:
            outcomes.setdefault(key, {})
    for key, row in outcomes.items():
        for s in scenarios:
            row[s.name] = s.summary.get(key)
    bands: dict[str, dict[str, list[float]]] = {}
    for s in scenarios:
        for key, band in s.results.get("sweep", {}).get("bands", {}).items():
            bands.setdefault(key, {})[s.name] = [band["p5"], band["p50"], band["p95"]]
    return {"scenarios": [s.name for s in scenarios], "outcomes": outcomes, "bands": bands,
            "solver": {s.name: s.results.get("solver", {}) for s in scenarios},
            "params": {s.name: s.params for s in scenarios},
            "not_run": [s.name for s in scenarios if not s.results.get("summary")]}


def difference_map(case: Case, a: str, b: str, surface: str = "skin") -> pv.PolyData:
    """Result surface of ``b`` coloured by how it differs from that of ``a``.

    Point arrays: ``difference_mm``, the distance (mm) from each point of ``b`` to the surface (or, for
    centerlines, the nearest point) of ``a``; ``displacement_difference_mm``, |u_b - u_a| at the nearest
    original point of ``a``, when both carry displacements (meaningful even where the meshes differ);
    ``ffr_difference``, FFR_b - FFR_a at the nearest point, for FFR centerlines. The active scalars are
    the FFR difference when present, otherwise ``difference_mm``.

    Raises
    ------
    InputError
        A scenario has not been run or lacks the surface.
    """
    surfaces = []
    for n in (a, b):
        s = get_scenario(case, n)
        if surface not in s.surfaces:
            raise InputError(f"scenario {n!r}: no {surface} result yet (run it first)")
        surfaces.append(s.surfaces[surface])
    sa, sb = surfaces
    out = sb.copy()
    dist, nearest = cKDTree(sa.points).query(sb.points)
    if sa.faces.size:
        dist = np.abs(pv.PolyData(sb.points).compute_implicit_distance(sa)["implicit_distance"])
    out["difference_mm"] = dist
    if "displacement_mm" in sa.point_data and "original_points_mm" in sa.point_data:
        j = cKDTree(sa["original_points_mm"]).query(sb["original_points_mm"])[1]
        out["displacement_difference_mm"] = np.linalg.norm(sb["displacement_mm"] - sa["displacement_mm"][j], axis=1)
    if "FFR" in sa.point_data and "FFR" in sb.point_data:
        out["ffr_difference"] = sb["FFR"] - sa["FFR"][nearest]
        out.set_active_scalars("ffr_difference")
    else:
        out.set_active_scalars("difference_mm")
    return out
