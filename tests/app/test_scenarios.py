"""Scenarios of a case: edit with undo, run on the Cranium CT, compare, difference map, save/load."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.project import load_case, save_case
from app.scenarios import (
    add_scenario,
    branch_scenario,
    compare_scenarios,
    delete_scenario,
    difference_map,
    rename_scenario,
    restore_scenario,
    run_scenario,
)
from imaging.errors import InputError
from imaging.landmarks import Landmark
from tests.app.scenario_case import advancement, cranium_case, vmtk_centerline_case


def test_edit_scenarios_with_undo_records():
    case = cranium_case()
    events = []
    case.changed.connect(lambda kind, name: events.append((kind, name)))
    a = add_scenario(case, "plan A", "tissue", advancement())
    assert a.parent == "baseline" and a.params["skin"] == "skin" and a.params["poisson_ratio"] == 0.45
    assert a.params["move"] == [0.0, -5.0, 0.0, 0.0, 0.0, 0.0] and a.results == {}
    b = branch_scenario(case, "plan A", "plan B", {"move": "0,-8,0,0,0,3"})
    assert b.parent == "plan A" and b.params["move"] == [0.0, -8.0, 0.0, 0.0, 0.0, 3.0]
    assert a.params["move"][1] == -5.0  # the copy is deep: the source is untouched
    c = branch_scenario(case, "plan B", "soft", {"poisson_ratio": 0.40})
    assert list(case.scenarios) == ["plan A", "plan B", "soft"]
    assert ("scenario", "plan B") in events

    rename_scenario(case, "plan B", "plan B2")
    assert list(case.scenarios) == ["plan A", "plan B2", "soft"] and c.parent == "plan B2"
    deleted = delete_scenario(case, "plan B2")
    assert list(case.scenarios) == ["plan A", "soft"] and c.parent == "plan A"  # re-parented
    restore_scenario(case, deleted)
    assert list(case.scenarios) == ["plan A", "plan B2", "soft"] and c.parent == "plan B2"

    for bad, match in ((lambda: add_scenario(case, "plan A", "tissue", advancement()), "already used"),
                       (lambda: add_scenario(case, "baseline", "tissue", advancement()), "reserved"),
                       (lambda: add_scenario(case, " ", "tissue", advancement()), "name is required"),
                       (lambda: add_scenario(case, "x", "stent3d", {}), "kind 'stent3d'"),
                       (lambda: add_scenario(case, "x", "tissue", {"move": [1, 2]}), "segment"),
                       (lambda: add_scenario(case, "x", "tissue", advancement(move=[1, 2])), "six"),
                       (lambda: add_scenario(case, "x", "tissue", advancement(poisson_ratio=0.5)), "poisson_ratio"),
                       (lambda: add_scenario(case, "x", "tissue", advancement(stiff=1)), "unknown parameter"),
                       (lambda: rename_scenario(case, "nope", "y"), "no such scenario"),
                       (lambda: rename_scenario(case, "soft", "plan A"), "already used")):
        with pytest.raises(InputError, match=match):
            bad()


@pytest.mark.fem
def test_run_compare_and_round_trip_on_cranium(tmp_path):
    case = cranium_case()
    # A placed soft-tissue landmark (subnasale-like: on the skin just below the nose tip) joins the table.
    skin = case.labels["skin"]
    add_scenario(case, "advance 5", "tissue", advancement())
    branch_scenario(case, "advance 5", "advance 5 rot", {"move": [0.0, -5.0, 0.0, 0.0, 0.0, 5.0]})
    branch_scenario(case, "advance 5", "advance 5 copy")
    run_scenario(case, "advance 5")
    nose = np.array(case.scenarios["advance 5"].results["landmarks"]["pronasale"]["position_mm"])
    case.set_landmark(Landmark("prn", tuple(nose + [0.0, 2.0, 0.0])))
    for name in case.scenarios:
        run_scenario(case, name)
    a = case.scenarios["advance 5"]
    s = a.summary
    # A translation moves no skin farther than the bone (maximum principle, solver tolerance).
    assert 0.5 < s["max_skin_displacement_mm"] <= 5.0 + 1e-6
    assert 0.5 < s["pronasale_displacement_mm"] < 5.0
    assert s["prn_displacement_mm"] == pytest.approx(s["pronasale_displacement_mm"], rel=0.3)
    assert a.results["solver"]["dofs"] > 5000 and a.results["solver"]["iterations"] > 0
    assert a.surfaces["skin"].n_points > 1000 and a.provenance.params["scenario"] == "advance 5"
    assert a.provenance.output_hash and skin is case.labels["skin"]

    table = compare_scenarios(case, ["advance 5", "advance 5 rot"])
    assert table["scenarios"] == ["advance 5", "advance 5 rot"] and table["not_run"] == []
    row = table["outcomes"]["max_skin_displacement_mm"]
    assert row["advance 5"] == s["max_skin_displacement_mm"]
    # A 5 degree yaw on top moves the lateral skin more than the pure advancement.
    assert row["advance 5 rot"] > row["advance 5"] + 0.5
    assert table["solver"]["advance 5"]["dofs"] == a.results["solver"]["dofs"]
    json.dumps(table)

    same = difference_map(case, "advance 5", "advance 5 copy")
    assert same["difference_mm"].max() < 1e-6 and same["displacement_difference_mm"].max() < 1e-6
    diff = difference_map(case, "advance 5", "advance 5 rot")
    assert diff["displacement_difference_mm"].max() > 0.5
    assert diff["difference_mm"].max() <= diff["displacement_difference_mm"].max() + 1e-6
    with pytest.raises(InputError, match="run it first"):
        add_scenario(case, "new", "tissue", advancement())
        difference_map(case, "advance 5", "new")

    # load(save(case)) gives back the scenarios exactly: order, parameters, results, surfaces, provenance.
    loaded = load_case(save_case(case, tmp_path / "c.twin"))
    assert list(loaded.scenarios) == list(case.scenarios)
    for name, sc in case.scenarios.items():
        back = loaded.scenarios[name]
        assert back.to_json() == sc.to_json()
        assert set(back.surfaces) == set(sc.surfaces)
        for key, surf in sc.surfaces.items():
            np.testing.assert_array_equal(back.surfaces[key].points, surf.points)
            np.testing.assert_array_equal(back.surfaces[key].faces, surf.faces)
            for arr in surf.point_data:
                np.testing.assert_array_equal(back.surfaces[key][arr], surf[arr])
    assert loaded.summary()["scenarios"] == list(case.scenarios)


def test_ffr_scenarios_on_vmtk_centerlines():
    case = vmtk_centerline_case()
    lesion = {"branch": 1, "position_mm": 20.0, "severity": 0.45, "length_mm": 10.0}
    add_scenario(case, "lesion 45%", "ffr", {"centerline": "centerline", "lesions": [lesion]})
    branch_scenario(case, "lesion 45%", "stented", {"stents": [0]})
    branch_scenario(case, "lesion 45%", "low pressure", {"aortic_pressure_mmhg": 75.0})
    for name in case.scenarios:
        run_scenario(case, name)
    sick, stented, low = (case.scenarios[n] for n in ("lesion 45%", "stented", "low pressure"))
    # A 45 % diameter stenosis on an iliac branch: borderline FFR there, the other branch untouched.
    assert 0.70 < sick.summary["ffr_branch_1"] < 0.85 and sick.summary["ffr_branch_2"] > 0.99
    assert sick.summary["ffr_min"] == sick.summary["ffr_branch_1"]
    # The virtual stent restores the lumen: FFR back to the healthy branch's value (within 1 %).
    assert stented.summary["ffr_branch_1"] == pytest.approx(sick.summary["ffr_branch_2"], abs=0.01)
    # Same resistances scaled with Pa keep the flow: the same pressure drop is a larger fraction of a lower Pa.
    assert low.summary["ffr_branch_1"] < sick.summary["ffr_branch_1"]
    # Detection measures against a reference radius interpolated over the shoulders of a real, tapering
    # vessel, not the radius the lesion was carved from: within 6 points of the 45 % introduced.
    assert sick.results["lesions"][0]["diameter_stenosis_pct"] == pytest.approx(45.0, abs=6.0)
    line = sick.surfaces["centerline"]
    assert line["FFR"].min() == pytest.approx(sick.summary["ffr_min"])
    table = compare_scenarios(case, ["lesion 45%", "stented"])
    assert table["outcomes"]["ffr_branch_1"] == {"lesion 45%": sick.summary["ffr_branch_1"],
                                                 "stented": stented.summary["ffr_branch_1"]}
    assert table["solver"]["stented"]["model"] == "1d"
    with pytest.raises(InputError, match="stents: lesion 3"):
        branch_scenario(case, "lesion 45%", "bad stent", {"stents": [3]})
        run_scenario(case, "bad stent")
    with pytest.raises(InputError, match="centerline 'nope'"):
        add_scenario(case, "no line", "ffr", {"centerline": "nope"})
        run_scenario(case, "no line")
