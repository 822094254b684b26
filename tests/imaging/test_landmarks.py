"""Landmarks: measurements, Slicer .mrk.json (RAS) and CSV exchange, checked on real data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from app.case import Case
from app.project import load_case, save_case
from imaging.errors import InputError
from imaging.landmarks import (CEPHALOMETRIC_TEMPLATE, Landmark, angle_deg, cephalometric_measurements,
                               distance_mm, distance_to_plane_mm, next_template_landmark, plane_from, read_csv,
                               read_slicer_markups, write_csv, write_slicer_markups)
from imaging.volume_io import load_volume_file
from imaging.volume import Volume
from tests.conftest import data_path

ROOT = Path(__file__).resolve().parents[2]


def _report_points():
    """Diameter end points of TotalSegmentator's aorta report: RAS mm, with diameters in cm."""
    report = json.loads(data_path("totalseg_aorta", "aorta_report.json").read_text())
    return [(lm["name"], lm["start"], lm["end"], lm["diameter"]) for lm in report["landmarks"].values()
            if len(lm.get("start") or []) == 3 and len(lm.get("end") or []) == 3]


def _as_slicer_file(tmp_path: Path) -> Path:
    points = []
    for name, start, end, _d in _report_points():
        points += [{"label": f"{name} start", "position": start}, {"label": f"{name} end", "position": end}]
    doc = {"markups": [{"type": "Fiducial", "coordinateSystem": "RAS", "coordinateUnits": "mm",
                        "controlPoints": points}]}
    path = tmp_path / "aorta.mrk.json"
    path.write_text(json.dumps(doc))
    return path


def test_ras_markups_land_on_the_aorta_wall(tmp_path):
    marks = read_slicer_markups(_as_slicer_file(tmp_path))
    aorta = load_volume_file(data_path("totalseg_aorta", "aorta.nii.gz"))
    mask = aorta.array > 0
    # Distance (mm) of every voxel to the aorta boundary.
    sx, sy, sz = aorta.geometry.spacing_xyz
    edge = mask ^ ndimage.binary_erosion(mask)
    dist = ndimage.distance_transform_edt(~edge, sampling=(sz, sy, sx))

    def wall_distance(points_lps):
        ijk = np.rint(aorta.geometry.lps_to_index(points_lps)).astype(int)
        return dist[ijk[:, 2], ijk[:, 1], ijk[:, 0]]

    lps = np.array([m.p for m in marks])
    d = wall_distance(lps)
    # Data README: the end points lie within 1-4 mm of the mask surface once in LPS
    # (measured: median 1.5 mm, one point at 8.7 mm).
    assert np.median(d) < 3.0 and np.percentile(d, 90) < 4.5 and d.max() < 10.0, d
    # Reading them as if they were LPS puts them far from the aorta: the conversion matters.
    wrong = lps * np.array([-1, -1, 1])
    inside_grid = np.all((np.rint(aorta.geometry.lps_to_index(wrong)) >= 0)
                         & (np.rint(aorta.geometry.lps_to_index(wrong)) < aorta.dims_xyz), axis=1)
    assert not inside_grid.any() or np.median(wall_distance(wrong[inside_grid])) > 20


def test_diameters_from_landmarks_match_the_report(tmp_path):
    marks = {m.name: m for m in read_slicer_markups(_as_slicer_file(tmp_path))}
    for name, _s, _e, diameter_cm in _report_points():
        d = distance_mm(marks[f"{name} start"], marks[f"{name} end"])
        # The report rounds diameters to 0.1 cm.
        assert d == pytest.approx(10 * diameter_cm, abs=1.0), name


def test_markups_and_csv_round_trip(tmp_path):
    marks = [Landmark("N", (1.5, -80.25, 40.0), "nasion"), Landmark("S", (0.0, -10.0, 45.5))]
    back = read_slicer_markups(write_slicer_markups(marks, tmp_path / "m.mrk.json"))
    assert [(m.name, m.position_lps) for m in back] == [(m.name, m.position_lps) for m in marks]
    raw = json.loads((tmp_path / "m.mrk.json").read_text())["markups"][0]
    assert raw["coordinateSystem"] == "RAS" and raw["controlPoints"][0]["position"] == [-1.5, 80.25, 40.0]
    back = read_csv(write_csv(marks, tmp_path / "m.csv"))
    assert [m.position_lps for m in back] == [m.position_lps for m in marks]
    (tmp_path / "bad.mrk.json").write_text("{}")
    with pytest.raises(InputError, match="not a 3D Slicer markups file"):
        read_slicer_markups(tmp_path / "bad.mrk.json")


def test_measurements_on_known_geometry():
    S, N = Landmark("S", (0, 0, 0)), Landmark("N", (0, -70, 0))
    A = Landmark("A", (0, -70 + 70 * np.cos(np.radians(82)), -70 * np.sin(np.radians(82))))
    B = Landmark("B", (0, -70 + 80 * np.cos(np.radians(79)), -80 * np.sin(np.radians(79))))
    m = cephalometric_measurements({"S": S, "N": N, "A": A, "B": B})
    assert m["SNA_deg"] == pytest.approx(82.0) and m["SNB_deg"] == pytest.approx(79.0)
    assert m["ANB_deg"] == pytest.approx(3.0) and m["S-N_mm"] == pytest.approx(70.0)
    plane = plane_from(Landmark("a", (0, 0, 0)), Landmark("b", (1, 0, 0)), Landmark("c", (0, 1, 0)))
    assert distance_to_plane_mm(Landmark("p", (3, 4, -2.5)), plane) == pytest.approx(-2.5)
    assert angle_deg(Landmark("a", (1, 0, 0)), S, Landmark("b", (0, 0, 1))) == pytest.approx(90)
    with pytest.raises(InputError, match="collinear"):
        plane_from(S, N, Landmark("c", (0, -140, 0)))
    assert next_template_landmark(["S", "N"]) == CEPHALOMETRIC_TEMPLATE[2]


def test_landmarks_persist_in_the_project_and_cli(tmp_path):
    case = Case("lm")
    case.set_item("volume", "ct", Volume(np.zeros((4, 4, 4), np.int16)))
    case.set_landmark(Landmark("Prn", (1.0, -100.0, 30.0)))
    path = save_case(case, tmp_path / "lm")
    assert load_case(path).landmarks["Prn"].position_lps == (1.0, -100.0, 30.0)
    out = tmp_path / "x.mrk.json"
    proc = subprocess.run([sys.executable, "-m", "app.cli", "landmarks", str(path), "--set", "S", "0", "0", "0",
                           "--export", str(out), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data["landmarks"]) == {"Prn", "S"} and data["next_template_landmark"] == "N"
    assert {m.name for m in read_slicer_markups(out)} == {"Prn", "S"}
    bad = subprocess.run([sys.executable, "-m", "app.cli", "landmarks", str(path), "--export", "x.txt"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--export x.txt" in bad.stderr
