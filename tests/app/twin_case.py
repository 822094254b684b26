"""A small real twin for report/rehearsal tests: Cranium CT, bone/skin/maxilla, two tissue scenarios, one FFR.

Built once per test session (module cache): the soft-tissue solves use 8 mm
elements (about 2 s each). The FFR scenario is the 1D model on a stenosed
tube (``mechanics.reduced``) with synthetic +-0.02 bands standing in for a sweep.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_CACHE: dict[str, Path] = {}
#: The patient/project name InVesalius stored in Cranium.inv3's main.plist.
CRANIUM_PATIENT_NAME = "ProMED CT 0051"


def _maxilla(case):
    from imaging.volume import LabelInfo, LabelMap

    bone = case.labels["bone"]
    g = bone.geometry
    z = g.origin_xyz[2] + np.arange(bone.array.shape[0]) * g.spacing_xyz[2]
    y = g.origin_xyz[1] + np.arange(bone.array.shape[1]) * g.spacing_xyz[1]
    # Le Fort I-like segment: anterior bone below z = 20 mm (as in tests/mechanics/test_whatif.py).
    maxilla = (bone.array > 0) & (z[:, None, None] < 20.0) & (y[None, :, None] < -150.0)
    return LabelMap(maxilla.astype(np.uint8), g, {1: LabelInfo("maxilla", (0.95, 0.8, 0.3))})


def ffr_scenario():
    """An FFR scenario: 1D solution on a 60 % stenosed 3 mm tube, centerline with FFR and bands."""
    from app.scenarios import Scenario
    from mechanics.reduced import solve_ffr_1d, stenosed_tube_tree

    tree = stenosed_tube_tree(60.0, 1.5, 0.6, 10.0)
    res = solve_ffr_1d(tree)
    line = res.to_polydata()
    line["FFR_p5"] = line["FFR"] - 0.02
    line["FFR_p95"] = np.minimum(line["FFR"] + 0.02, 1.0)
    fmin = res.ffr_min
    results = {"summary": {"ffr_min": fmin}, "solver": {"solver": "1d", "dofs": res.dofs},
               "sweep": {"bands": {"ffr_min": {"p5": fmin - 0.02, "p50": fmin, "p95": fmin + 0.02}},
                         "probability_ffr_below_0_80": {"ffr_min": 1.0}, "seed": 7}}
    return Scenario("stenosis60", "ffr", {"severity": 0.6}, results=results, surfaces={"centerline": line})


def cranium_twin(root: Path) -> Path:
    """Path of the saved test twin (built on first call of the session)."""
    if "twin" in _CACHE:
        return _CACHE["twin"]
    from app.pipeline import DEMO_CASE, apply_result, import_scan, step_segment
    from app.project import save_case
    from app.scenarios import add_scenario, branch_scenario, run_scenario

    case = import_scan(DEMO_CASE)
    apply_result(case, step_segment(case, label="bone", preset="bone"))
    apply_result(case, step_segment(case, label="skin", preset="skin"))
    case.set_item("label", "maxilla", _maxilla(case))
    add_scenario(case, "advance5", "tissue", {"segment": "maxilla", "move": [0, -5, 0, 0, 0, 0],
                                              "fixed": ["bone"], "voxel_mm": 8.0})
    run_scenario(case, "advance5")
    branch_scenario(case, "advance5", "advance3_tilt", {"move": [0, -3, 0, 5, 0, 0]})
    run_scenario(case, "advance3_tilt")
    case.scenarios["stenosis60"] = ffr_scenario()
    _CACHE["twin"] = save_case(case, root / "cranium.twin")
    return _CACHE["twin"]
