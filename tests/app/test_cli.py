"""The `twinplan` command line as a user runs it (subprocess, real data)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import data_path

TWINPLAN = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[2]


def run(*args, check=True):
    proc = subprocess.run([*TWINPLAN, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def test_info_json_contract():
    out = json.loads(run("info", data_path("totalseg_ct", "dicom"), "--json").stdout)
    assert set(out) >= {"series", "skipped"}
    (s,) = out["series"]
    assert set(s) >= {"series_uid", "modality", "description", "n_slices", "dims_xyz",
                      "spacing_xyz", "origin", "warnings"}
    assert s["n_slices"] == 20 and s["dims_xyz"] == [512, 512, 20]
    np.testing.assert_allclose(s["spacing_xyz"], [0.9765625, 0.9765625, 2.0], atol=1e-5)
    np.testing.assert_allclose(s["origin"], [-249.51, -437.51, -804.5], atol=0.01)


def test_info_reports_tilt_and_skipped_files():
    out = json.loads(run("info", data_path("dcm_qa_ct_ge_tilt"), "--json").stdout)
    assert any("gantry tilt" in w for w in out["series"][0]["warnings"])
    assert {Path(k["path"]).name for k in out["skipped"]} == {"LICENSE", "SHA256SUMS"}
    assert all(k["reason"] for k in out["skipped"])


def test_import_segment_mesh_chain(tmp_path):
    case = tmp_path / "abd.twin"
    run("import", data_path("totalseg_ct", "dicom"), "--out", case)
    seg = json.loads(run("segment", case, "--label", "bone", "--hu", 200, 3000, "--json").stdout)
    assert seg["voxels"] > 10000
    for ext in ("stl", "ply", "obj", "vtp"):
        rep = json.loads(run("mesh", case, "--label", "bone", "--out", tmp_path / f"b.{ext}", "--json").stdout)
        assert set(rep) >= {"n_points", "n_faces", "area_mm2", "volume_mm3", "watertight", "bounds", "seconds"}
        assert rep["watertight"] is True and (tmp_path / f"b.{ext}").stat().st_size > 1000
    # The vertebra/rib mesh volume agrees with the voxel count (surface smoothing shrinks a little).
    assert rep["volume_mm3"] == pytest.approx(seg["volume_mm3"], rel=0.08)
    # The mesh is in patient LPS mm: inside the scanned field of view.
    b = rep["bounds"]
    assert -250 < b[0] < b[1] < 250 and -805.5 - 2 < b[4] < b[5] < -766 + 2


@pytest.mark.parametrize("args, needle", [
    (("info", "/no/such/dir"), "/no/such/dir"),
    (("import", "/no/such/dir", "--out", "x.twin"), "/no/such/dir"),
    (("segment", "missing.twin", "--label", "b", "--hu", 1, 2), "missing.twin"),
    (("segment", "missing.twin", "--label", "b", "--hu", 1), "--hu"),
    (("mesh", "missing.twin", "--label", "b", "--out", "x.xyz"), "x.xyz"),
])
def test_bad_input_exit_2_one_line(args, needle):
    proc = run(*args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_errors_from_steps(tmp_path):
    case = tmp_path / "c.twin"
    run("import", data_path("dcm_qa_ct_philips"), "--out", case)
    proc = run("segment", case, "--label", "x", "--hu", 5000, 6000, check=False)
    assert proc.returncode == 2 and "no voxel between 5000 and 6000 HU" in proc.stderr
    proc = run("mesh", case, "--label", "nothing", "--out", tmp_path / "a.stl", check=False)
    assert proc.returncode == 2 and "no such label" in proc.stderr
    proc = run("import", data_path("dcm_qa_ct_philips"), "--out", case, "--series", "1.2.3", check=False)
    assert proc.returncode == 2 and "--series 1.2.3" in proc.stderr


def test_patient_identifiers_never_printed(tmp_path):
    # The Philips phantom's PatientName is HEAD and PatientID PLASTIC.
    case = tmp_path / "p.twin"
    outputs = [run("info", data_path("dcm_qa_ct_philips"), "--json"),
               run("import", data_path("dcm_qa_ct_philips"), "--out", case, "--json")]
    text = "".join(p.stdout + p.stderr for p in outputs) + (case / "case.json").read_text()
    assert "PLASTIC" not in text
