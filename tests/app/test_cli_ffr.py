"""`twinplan centerline` and `twinplan ffr` on the real coronary and aorta (JSON contracts, errors)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import pyvista as pv

from app.cli import main
from tests.app.test_cli import run
from tests.conftest import data_path
from tests.vessel_cases import coronary_files


def _json(capsys, *args) -> dict:
    assert main([*map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def open_tube(radius_mm: float, length_mm: float, sides: int = 32, rings: int = 41) -> pv.PolyData:
    """Open triangulated tube along z, rings every length / (rings - 1) mm."""
    th = np.linspace(0.0, 2 * np.pi, sides, endpoint=False)
    z = np.linspace(-length_mm / 2, length_mm / 2, rings)
    pts = np.array([[radius_mm * np.cos(a), radius_mm * np.sin(a), zz] for zz in z for a in th])
    quads = [[4, k * sides + i, k * sides + (i + 1) % sides, (k + 1) * sides + (i + 1) % sides, (k + 1) * sides + i]
             for k in range(rings - 1) for i in range(sides)]
    return pv.PolyData(pts, np.array(quads).ravel()).triangulate()


@pytest.fixture(scope="module")
def tube_case(tmp_path_factory):
    """A CASE.twin holding an open tube named "vessel" and a larger decoy surface (the name rule wins)."""
    from app.case import Case, Provenance
    from app.project import save_case

    case = Case("tube")
    tube = open_tube(1.5, 16.0)
    case.set_item("surface", "vessel", tube, Provenance("import_surface", {}))
    case.set_item("surface", "skin", pv.Sphere(radius=30.0), Provenance("import_surface", {}))
    return save_case(case, tmp_path_factory.mktemp("ffr_cli") / "tube.twin")


def test_centerline_json_and_file_as_a_user_runs_it(tmp_path):
    stl, _ = coronary_files()
    out = tmp_path / "cl.vtp"
    data = json.loads(run("centerline", stl, "--out", out, "--json").stdout)
    assert {"n_branches", "length_mm", "seconds"} <= set(data)
    assert data["n_branches"] == 11 and data["port_detection"] == "planar caps"
    poly = pv.read(out)
    assert poly.n_lines == 11 and "Radius" in poly.point_data
    lengths = [np.linalg.norm(np.diff(poly.points[poly.get_cell(i).point_ids], axis=0), axis=1).sum()
               for i in range(poly.n_cells)]
    assert data["length_mm"] == pytest.approx(sum(lengths), rel=1e-6)
    # the lumen's coordinates: every centerline point lies within the lumen's bounds
    lo, hi = np.array(pv.read(stl).bounds).reshape(3, 2).T
    assert np.all(poly.points >= lo - 1e-6) and np.all(poly.points <= hi + 1e-6)


def test_centerline_from_case_uses_the_lumen_surface(capsys, tube_case, tmp_path):
    data = _json(capsys, "centerline", tube_case, "--out", tmp_path / "c.vtp")
    assert data["lumen"] == "surface vessel" and data["port_detection"] == "open boundary loops"
    assert data["n_branches"] == 1 and data["length_mm"] == pytest.approx(16.0, rel=0.01)
    assert data["radius_mm"]["max"] == pytest.approx(1.5, rel=0.03)


def test_ffr_json_contract_baseline_and_stent(capsys):
    """One run gives the stented plan and its baseline (the real ~84 % lesion found on the coronary)."""
    stl, caps = coronary_files()
    out = _json(capsys, "ffr", stl, "--caps", *caps, "--stent", "lesion=1,length=14")
    assert {"ffr_min", "per_outlet", "lesions", "dofs", "seconds"} <= set(out)
    assert set(out["per_outlet"]) == {f"outlet_{i}" for i in range(1, 7)} and out["model"] == "1d"
    worst = out["lesions"][0]
    assert worst["diameter_stenosis_pct"] > 75 and worst["introduced"] is False and worst["delta_ffr"] > 0.1
    base = out["baseline"]
    assert 0.84 < base["ffr_min"] < 0.9 and set(base["per_outlet"]) == set(out["per_outlet"])  # 3D: 0.894
    assert out["ffr_min"] > 0.9 and out["stents"][0]["length_mm"] == 14.0


def test_ffr_introduced_lesion_scenario_on_the_aorta(capsys):
    from mechanics.reduced import solve_ffr_1d
    from tests.vessel_cases import aorta_tree

    healthy = solve_ffr_1d(aorta_tree()).per_outlet
    sick = _json(capsys, "ffr", data_path("vmtk_aorta", "aorta-surface.vtp"),
                 "--lesion", "branch=1,position=20,severity=0.6,length=10")
    assert sick["introduced_lesions"][0]["severity"] == 0.6
    (les,) = [les for les in sick["lesions"] if les["introduced"]]
    assert les["diameter_stenosis_pct"] == pytest.approx(60, abs=6)
    assert sick["per_outlet"]["outlet_1"] < healthy["outlet_1"] - 0.05
    assert sick["per_outlet"]["outlet_2"] == pytest.approx(healthy["outlet_2"], abs=0.01)


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "sphere.stl"
    pv.Sphere(radius=2.0).save(bad)
    tube = tmp_path / "tube.stl"
    pv.Cylinder(radius=1.5, height=12.0, resolution=24, capping=False).triangulate().save(tube)
    for args, needle in [
        (["ffr", tmp_path / "missing.stl"], "no such file"),
        (["ffr", bad], "no outlet"),
        (["centerline", bad, "--out", tmp_path / "x.vtk"], ".vtp"),
        (["ffr", tube, "--stent", "lesion=9"], "lesion 9 does not exist"),
        (["ffr", tube, "--stent", "length=3"], "name the lesion"),
        (["ffr", tube, "--stent", "lesion=one"], "bad value"),
        (["ffr", tube, "--lesion", "branch=0,severity=0.5"], "missing"),
        (["ffr", tube, "--lesion", "branch=0,position=6,severity=1.5,length=4"], "severity"),
        (["ffr", tmp_path / "notes.txt"], "CASE.twin"),
    ]:
        assert main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err, err


def test_3d_without_the_flow_module_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    tube = tmp_path / "tube.stl"
    open_tube(1.5, 12.0).save(tube)
    monkeypatch.setitem(sys.modules, "mechanics.flow", None)  # as if mechanics/flow.py were absent
    assert main(["ffr", str(tube), "--model", "3d"]) == 2
    err = capsys.readouterr().err.strip()
    assert "mechanics.flow" in err and "\n" not in err
