"""Scenario kinds: how each kind checks its parameters, runs, and is swept (no Qt).

A kind bundles
* ``check(params) -> params``: defaults filled in, bad values refused (InputError);
* ``run(case, scenario, progress, cancelled) -> ScenarioRun``: full results and surfaces;
* ``prepare(case, params) -> setup``: everything one sweep sample needs, picklable (sent to Dask workers);
* ``evaluate(setup, sample) -> {outcome: number}``: one sample (a module-level function, so a Dask worker
  process can import it);
* ``uncertain``: the uncertain parameters and their ranges (uniform between low and high).

``tissue``: soft-tissue prediction for a rigid bone move (``app.plan``). ``ffr``: 1D FFR on a centerline tree
stored as a case surface (``mechanics.reduced``), with virtual lesions and stents.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import pyvista as pv
from scipy.spatial import cKDTree

from app.case import Case, Provenance, hash_surface
from imaging.errors import InputError
from mechanics.reduced import DEFAULT_STENOSIS_MODEL

#: Placed landmarks farther than this from the skin are not skin landmarks (mm).
SKIN_LANDMARK_MAX_MM = 10.0
SOLVER_KEYS = ("solver", "model", "dofs", "degree", "iterations", "residual", "newton_iterations", "load_steps",
               "seconds", "peak_memory_mb", "stenosis_model")


def jsonable(value: Any) -> Any:
    """A deep copy that survives JSON unchanged (tuples become lists, numpy becomes Python)."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON-able")
    return json.loads(json.dumps(value, default=default))


@dataclass
class ScenarioRun:
    """What running a scenario produced, not yet stored in the case."""

    results: dict
    surfaces: dict[str, pv.PolyData]
    provenance: Optional[Provenance]


@dataclass
class ScenarioKind:
    """The functions of one scenario kind (see the module docstring)."""

    check: Callable[[dict], dict]
    run: Callable[..., ScenarioRun]
    prepare: Callable[[Case, dict], Any]
    evaluate: Callable[[Any, dict], dict]
    uncertain: dict[str, tuple[float, float]]


def _complete(kind: str, defaults: dict, params: dict) -> dict:
    unknown = set(params) - set(defaults)
    if unknown:
        raise InputError(f"{kind} scenario: unknown parameter(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(defaults)})")
    return {**copy.deepcopy(defaults), **jsonable(params)}


def _in_range(kind: str, out: dict, key: str, lo: float, hi: float) -> None:
    try:
        v = float(out[key])
    except (TypeError, ValueError) as exc:
        raise InputError(f"{kind} scenario: {key}={out[key]!r} is not a number") from exc
    if not lo <= v <= hi:
        raise InputError(f"{kind} scenario: {key}={v} outside [{lo}, {hi}]")
    out[key] = v


# -- tissue -------------------------------------------------------------------
#: Tissue parameters and defaults (mm, deg, Pa); see ``app.plan.TissuePlan``.
TISSUE_DEFAULTS = {"segment": None, "move": [0.0] * 6, "fixed": [], "skin": "skin", "model": "linear",
                   "voxel_mm": 4.0, "youngs_modulus_pa": 3000.0, "poisson_ratio": 0.45}
#: Facial soft tissue: E of the order of kPa, nearly incompressible (Chabanas et al. 2003 used E = 15 kPa,
#: Mollemans et al. 2007 nu = 0.45-0.49; app.plan cites both). With displacement-only loading the linear and
#: neo-Hookean predictions do not depend on E (the sweep shows flat bands in E); nu matters.
TISSUE_UNCERTAIN = {"youngs_modulus_pa": (1000.0, 15000.0), "poisson_ratio": (0.40, 0.49)}


def tissue_params(params: dict) -> dict:
    """Complete and check tissue parameters (defaults ``TISSUE_DEFAULTS``); InputError names the bad one."""
    out = _complete("tissue", TISSUE_DEFAULTS, params)
    if not out["segment"]:
        raise InputError("tissue scenario: parameter segment (the moved bone label) is required")
    move = out["move"]
    if isinstance(move, str):
        move = move.split(",")
    try:
        out["move"] = [float(v) for v in move]
    except (TypeError, ValueError) as exc:
        raise InputError(f"tissue scenario: move {move!r}: expected six numbers tx,ty,tz,rx,ry,rz") from exc
    if len(out["move"]) != 6 or not all(math.isfinite(v) for v in out["move"]):
        raise InputError(f"tissue scenario: move {move!r}: expected six finite numbers tx,ty,tz,rx,ry,rz")
    if isinstance(out["fixed"], str):
        out["fixed"] = [n for n in out["fixed"].split(",") if n]
    if out["model"] not in ("linear", "neohookean"):
        raise InputError(f"tissue scenario: model {out['model']!r}: use linear or neohookean")
    for key, lo, hi in (("voxel_mm", 0.5, 50.0), ("youngs_modulus_pa", 1e-6, 1e12), ("poisson_ratio", 0.0, 0.4999)):
        _in_range("tissue", out, key, lo, hi)
    return out


def tissue_plan_of(params: dict):
    """``app.plan.TissuePlan`` of tissue scenario parameters."""
    from app.plan import TissuePlan
    from mechanics.whatif import RigidMove

    p = tissue_params(params)
    move = RigidMove(tuple(p["move"][:3]), tuple(p["move"][3:]))
    return TissuePlan(p["segment"], move, fixed=list(p["fixed"]), skin=p["skin"], model=p["model"],
                      voxel_mm=p["voxel_mm"], youngs_modulus_pa=p["youngs_modulus_pa"],
                      poisson_ratio=p["poisson_ratio"])


def placed_landmark_displacements(positions: dict[str, list[float]], skin: pv.PolyData) -> dict[str, dict]:
    """Displacement of placed landmarks lying on the skin (within 10 mm): that of the nearest skin point."""
    if not positions:
        return {}
    tree = cKDTree(skin["original_points_mm"])
    out = {}
    for name, pos in positions.items():
        dist, i = tree.query(np.asarray(pos, float))
        if dist <= SKIN_LANDMARK_MAX_MM:
            d = skin["displacement_mm"][i]
            out[name] = {"position_mm": [float(v) for v in pos], "displacement_mm": d.tolist(),
                         "displacement_norm_mm": float(np.linalg.norm(d)), "distance_to_skin_mm": float(dist)}
    return out


def _landmark_positions(case: Case) -> dict[str, list[float]]:
    return {n: [float(v) for v in m.position_lps] for n, m in case.landmarks.items()}


def tissue_summary(max_mm: float, landmarks: dict[str, dict]) -> dict[str, float]:
    """Outcomes of a tissue prediction: max skin displacement and per-landmark displacement norms (mm)."""
    summary = {"max_skin_displacement_mm": float(max_mm)}
    for name, v in landmarks.items():
        summary[f"{name}_displacement_mm"] = float(v["displacement_norm_mm"])
    return summary


def run_tissue(case: Case, scenario, progress, cancelled) -> ScenarioRun:
    """Soft-tissue prediction of a tissue scenario (``app.plan.run_tissue_plan``)."""
    from app.plan import run_tissue_plan

    result = run_tissue_plan(case, tissue_plan_of(scenario.params), progress=progress, cancelled=cancelled)
    r = result.report
    skin = result.item
    landmarks = dict(r["landmarks"], **placed_landmark_displacements(_landmark_positions(case), skin))
    results = {"summary": tissue_summary(r["max_skin_displacement_mm"], landmarks), "landmarks": landmarks,
               "solver": {k: r[k] for k in SOLVER_KEYS if k in r}, "mesh": r["mesh"],
               "segment_center_mm": r["segment_center_mm"], "seconds": r["seconds"]}
    prov = result.provenance
    prov.params = dict(prov.params, scenario=scenario.name)
    prov.output_hash = hash_surface(skin)
    return ScenarioRun(jsonable(results), {"skin": skin}, prov)


def prepare_tissue(case: Case, params: dict) -> dict:
    """Mesh once for a sweep: the tagged tet mesh, boundary tags, segment centre, move, placed landmarks."""
    from app.plan import _prepare
    from imaging.progress import no_progress

    plan = tissue_plan_of(params)
    prep = _prepare(case, plan, no_progress)
    return {"params": tissue_params(params), "mesh": prep.mesh, "moved_tag": prep.moved_tag,
            "fixed_tags": list(prep.fixed_tags), "center": np.asarray(prep.center),
            "landmarks": _landmark_positions(case)}


def evaluate_tissue(setup: dict, sample: dict) -> dict:
    """Outcomes (mm) of one tissue sample: a full FE solve with the sample's material on the prepared mesh."""
    from mpi4py import MPI

    from app.plan import _landmarks, _skin_surface
    from mechanics.tissue import Material, TissueProblem, solve_tissue_linear, solve_tissue_neohookean

    p = {**setup["params"], **sample}
    tm, center = setup["mesh"], setup["center"]
    move = tissue_plan_of(p).move
    mesh, tags = tm.to_dolfinx(MPI.COMM_SELF)
    dirichlet = {**{t: None for t in setup["fixed_tags"]},
                 setup["moved_tag"]: lambda x: move.displacement(x.T, center).T}
    problem = TissueProblem(mesh, tags, Material(p["youngs_modulus_pa"], p["poisson_ratio"]),
                            dirichlet=dirichlet, degree=1)
    solve = solve_tissue_linear if p["model"] == "linear" else solve_tissue_neohookean
    result = solve(problem)
    x, u = result.displacement_at_dofs()
    skin = _skin_surface(tm, u[cKDTree(x).query(tm.points)[1]])
    landmarks = dict(_landmarks(skin, center), **placed_landmark_displacements(setup["landmarks"], skin))
    return tissue_summary(float(skin["displacement_norm_mm"].max()), landmarks)


# -- ffr ----------------------------------------------------------------------
#: FFR parameters: the centerline surface (polylines with point array Radius, mm), virtual lesions
#: [{branch, position_mm, severity, length_mm}], stents (indices into the lesions found after the virtual
#: ones are added), boundary conditions.
FFR_DEFAULTS = {"centerline": None, "lesions": [], "stents": [], "aortic_pressure_mmhg": 93.0,
                "outlet_resistance_scale": 1.0, "stenosis_model": DEFAULT_STENOSIS_MODEL, "min_stenosis": 0.3}
#: Mean aortic pressure 80-106 mmHg spans normal resting means; +-30 % hyperaemic microvascular resistance
#: covers the spread of adenosine response reported around Wilson et al. 1990's 0.24 fraction.
FFR_UNCERTAIN = {"outlet_resistance_scale": (0.7, 1.3), "aortic_pressure_mmhg": (80.0, 106.0)}


def ffr_params(params: dict) -> dict:
    """Complete and check FFR parameters (defaults ``FFR_DEFAULTS``)."""
    out = _complete("ffr", FFR_DEFAULTS, params)
    if not out["centerline"]:
        raise InputError("ffr scenario: parameter centerline (a case surface with a Radius array) is required")
    _in_range("ffr", out, "aortic_pressure_mmhg", 20.0, 250.0)
    _in_range("ffr", out, "outlet_resistance_scale", 0.01, 100.0)
    _in_range("ffr", out, "min_stenosis", 0.0, 0.99)
    for i, les in enumerate(out["lesions"]):
        if set(les) != {"branch", "position_mm", "severity", "length_mm"}:
            raise InputError(f"ffr scenario: lesions[{i}] needs exactly branch, position_mm, severity, length_mm")
    return out


def _ffr_tree(case: Case, p: dict):
    from imaging.lesions import apply_stent, detect_lesions, introduce_lesion
    from imaging.vessel_tree import VesselTree

    if p["centerline"] not in case.surfaces:
        raise InputError(f"ffr scenario: centerline {p['centerline']!r}: no such surface in the case")
    tree = VesselTree.from_polydata(case.surfaces[p["centerline"]])
    for les in p["lesions"]:
        tree = introduce_lesion(tree, int(les["branch"]), float(les["position_mm"]), float(les["severity"]),
                                float(les["length_mm"]))
    found = detect_lesions(tree, min_stenosis=p["min_stenosis"]) if p["stents"] else []
    for i in p["stents"]:
        if not 0 <= int(i) < len(found):
            raise InputError(f"ffr scenario: stents: lesion {i} does not exist ({len(found)} found)")
        tree = apply_stent(tree, found[int(i)])
    return tree


def _ffr_solve(tree, p: dict):
    from mechanics.physiology import HYPERAEMIC_RESISTANCE_FRACTION, Physiology
    from mechanics.reduced import solve_ffr_1d

    # Outlet resistance is proportional to the hyperaemic resistance fraction (R = (Pa - Pv) fraction / Q_rest).
    ph = Physiology(p_aortic_mmhg=p["aortic_pressure_mmhg"],
                    hyperaemic_resistance_fraction=HYPERAEMIC_RESISTANCE_FRACTION * p["outlet_resistance_scale"])
    return solve_ffr_1d(tree, physiology=ph, stenosis_model=p["stenosis_model"], min_stenosis=p["min_stenosis"])


def ffr_summary(result) -> dict[str, float]:
    """Outcomes of a 1D FFR solve: minimum FFR and FFR at each outlet (keys ``ffr_*``)."""
    return {"ffr_min": result.ffr_min, **{f"ffr_{k}": float(v) for k, v in result.per_outlet.items()}}


def run_ffr(case: Case, scenario, progress, cancelled) -> ScenarioRun:
    """1D FFR of an ffr scenario; surface ``centerline`` carries point arrays FFR and Pressure_mmHg."""
    p = ffr_params(scenario.params)
    progress(0.1, "Building the vessel tree")
    tree = _ffr_tree(case, p)
    result = _ffr_solve(tree, p)
    poly = result.to_polydata()
    rep = result.to_json()
    results = {"summary": ffr_summary(result), "lesions": rep["lesions"],
               "solver": {"model": "1d", "dofs": result.dofs, "seconds": round(result.seconds, 4),
                          **{k: rep[k] for k in ("iterations", "stenosis_model") if k in rep}},
               "outlet_flow_ml_s": rep.get("outlet_flow_ml_s", {})}
    prov = Provenance("ffr_1d", dict(p, scenario=scenario.name), [case.input_ref("surface", p["centerline"])],
                      output_hash=hash_surface(poly))
    progress(1.0, "FFR ready")
    return ScenarioRun(jsonable(results), {"centerline": poly}, prov)


def prepare_ffr(case: Case, params: dict) -> dict:
    p = ffr_params(params)
    return {"params": p, "tree": _ffr_tree(case, p)}


def evaluate_ffr(setup: dict, sample: dict) -> dict:
    """FFR outcomes of one sample (boundary conditions varied on the prepared tree)."""
    return ffr_summary(_ffr_solve(setup["tree"], {**setup["params"], **sample}))


KINDS: dict[str, ScenarioKind] = {
    "tissue": ScenarioKind(tissue_params, run_tissue, prepare_tissue, evaluate_tissue, TISSUE_UNCERTAIN),
    "ffr": ScenarioKind(ffr_params, run_ffr, prepare_ffr, evaluate_ffr, FFR_UNCERTAIN),
}
