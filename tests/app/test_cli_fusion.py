"""`twinplan fuse`, `register` and `surface-info` as a user runs them (subprocess, real data).

The case is the Cranium demo CT with a skin label. The scan is that skin
cropped to the face, re-tessellated (quadric decimation), given 0.1 mm noise,
moved by a known rigid transform and saved in metres as a scanner might.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.app.test_cli import run
from tests.conftest import data_path

FACE_BOX_MM = np.array([55.0, 195.0, -240.0, -150.0, 10.0, 150.0])


@pytest.fixture(scope="module")
def work(tmp_path_factory, demo_case_path):
    """A Cranium case with a skin label, a face scan STL (metres) and the true scan -> patient transform."""
    from app.case import Provenance
    from app.project import load_case, save_case
    from imaging.meshing import export_surface, mesh_labelmap
    from imaging.surface import decimate_surface
    from imaging.transform import random_rigid

    folder = tmp_path_factory.mktemp("fusion_cli")
    case = folder / "cranium.twin"
    run("import", demo_case_path, "--out", case)
    run("segment", case, "--label", "skin", "--preset", "skin")
    loaded = load_case(case)
    skin = mesh_labelmap(loaded.labels["skin"])
    # Also stored as a surface under another name, for fusion to a surface of the case.
    loaded.set_item("surface", "skin_surface", skin, Provenance("mesh_labelmap", {}, [loaded.input_ref("label", "skin")]))
    save_case(loaded, case)
    p = np.asarray(skin.points)
    keep = np.all((p >= FACE_BOX_MM[0::2]) & (p <= FACE_BOX_MM[1::2]), axis=1)
    face = skin.extract_points(keep, adjacent_cells=False).extract_surface(algorithm="dataset_surface").triangulate()
    face = decimate_surface(face, face.n_cells // 2)
    rng = np.random.default_rng(11)
    patient_pts = np.asarray(face.points) + rng.normal(0.0, 0.1, (face.n_points, 3))
    to_scanner = random_rigid(rng, 30.0, 20.0, center_mm=patient_pts.mean(axis=0), from_frame="patient",
                              to_frame="scan")
    face.points = to_scanner.apply(patient_pts) / 1000.0  # the scanner wrote metres
    scan = export_surface(face, folder / "face_scan.stl")
    return {"folder": folder, "case": case, "scan": scan, "truth": to_scanner.inverse(),
            "scan_mm": to_scanner.apply(patient_pts)}


def _check_matrix(matrix, work):
    from imaging.transform import Transform, transform_error

    e = transform_error(Transform(np.array(matrix)), work["truth"], points_mm=work["scan_mm"])
    assert e["rotation_deg"] < 1.0 and e["tre_rms_mm"] < 0.3, e


def test_fuse_json_contract_and_stored_scan(work):
    from app.project import load_case

    out = json.loads(run("fuse", work["scan"], work["case"], "--target", "skin", "--region", "face",
                         "--json").stdout)
    assert set(out) >= {"rms_mm", "inlier_fraction", "matrix", "seconds", "rotation_deg", "translation_mm",
                        "n_points", "units", "target_kind", "saved_as"}
    assert out["units"] == "m" and out["target_kind"] == "label meshed on the fly"
    # Residual = the 0.1 mm noise plus re-tessellation; all points within 1 mm.
    assert 0.05 < out["rms_mm"] < 0.2 and out["inlier_fraction"] > 0.99
    _check_matrix(out["matrix"], work)
    case = load_case(work["case"])
    moved = case.surfaces[out["saved_as"]]
    assert moved.n_points == out["n_points"] and "distance_mm" in moved.point_data
    truth_pts = work["truth"].apply(work["scan_mm"])
    assert np.sqrt(np.mean(np.sum((np.asarray(moved.points) - truth_pts) ** 2, axis=1))) < 0.3
    prov = case.provenance[f"surface/{out['saved_as']}"]
    assert prov.operation == "fuse_surface" and prov.params["matrix"] == out["matrix"]
    assert prov.inputs[0]["id"] == "file:face_scan.stl" and prov.inputs[1]["id"] == "label/skin"
    assert len(prov.inputs[0]["hash"]) == 64


def test_fuse_to_a_stored_surface_from_landmarks(work):
    from app.project import load_case

    rows = []
    scan_mm = work["scan_mm"]
    for i in (int(np.argmin(scan_mm[:, 0])), int(np.argmax(scan_mm[:, 0])), int(np.argmin(scan_mm[:, 2])),
              int(np.argmax(scan_mm[:, 2]))):
        # Landmarks in the scan file's units (metres), picked on the CT within ~1 mm.
        rows.append([*(scan_mm[i] / 1000.0), *(work["truth"].apply(scan_mm[i]) + 1.0)])
    csv = work["folder"] / "landmarks.csv"
    np.savetxt(csv, np.array(rows), delimiter=",", header="scan x,y,z (m); patient x,y,z (mm)")
    out = json.loads(run("fuse", work["scan"], work["case"], "--target", "skin_surface", "--landmarks", csv,
                         "--units", "m", "--name", "face_lm", "--json").stdout)
    assert out["method"] == "landmarks+icp" and out["target_kind"] == "surface"
    _check_matrix(out["matrix"], work)
    assert "face_lm" in load_case(work["case"]).surfaces


def test_fuse_errors_are_one_line(work):
    for args, needle in [
        (("--target", "liver"), "--target liver"),
        (("--target", "skin", "--region", "elbow"), "--region elbow"),
        (("--target", "skin", "--name", "skin"), "--name skin"),
    ]:
        proc = run("fuse", work["scan"], work["case"], *args, check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run("fuse", work["folder"] / "nope.stl", work["case"], "--target", "skin", check=False)
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_register_case_to_nifti(work):
    import SimpleITK as sitk

    from app.project import load_case
    from imaging.registration import resample_volume
    from imaging.transform import Transform, axis_angle_matrix, rigid_about, transform_error

    ct = load_case(work["case"]).volumes["ct"]
    centre = np.array([122.0, -122.0, 80.0])
    truth = rigid_about(axis_angle_matrix([0, 1, 1], 6.0), centre, [4.0, -3.0, 5.0], "moving", "fixed")
    moving = resample_volume(ct, ct, truth.inverse(), default_value=-1024)
    nifti = work["folder"] / "moved.nii.gz"
    sitk.WriteImage(moving.to_sitk(), str(nifti))
    out_img = work["folder"] / "back.nrrd"
    out = json.loads(run("register", work["case"], nifti, "--levels", "4,2", "--out", out_img, "--json").stdout)
    assert set(out) >= {"matrix", "metric", "iterations", "seconds", "iterations_per_level", "stop_condition"}
    assert out["iterations"] == sum(out["iterations_per_level"]) and out["metric"] < -0.5
    targets = truth.inverse().apply(centre + np.array([[80, 0, 0], [0, 80, 0], [0, 0, 70], [-80, -80, -70]]))
    e = transform_error(Transform(np.array(out["matrix"]), "moving", "fixed"), truth, points_mm=targets)
    assert e["rotation_deg"] < 0.5 and e["tre_max_mm"] < 0.5
    back = sitk.ReadImage(str(out_img))
    assert back.GetSize() == (256, 256, 108)
    proc = run("register", work["case"], nifti, "--levels", "x", check=False)
    assert proc.returncode == 2 and "--levels" in proc.stderr


def test_surface_info():
    fran = json.loads(run("surface-info", data_path("vtk_data", "fran_cut.vtk"), "--json").stdout)
    assert fran["units"] == "m" and fran["scale_to_mm"] == 1000.0 and fran["has_colors"]
    assert (fran["n_points"], fran["n_faces"], fran["holes"], fran["watertight"]) == (2205, 4224, 1, False)
    assert fran["repairs_possible"] == []  # its only opening is the scan border (102 mm), not a hole
    tooth = json.loads(run("surface-info", data_path("dfemtoolz", "tooth", "2.stl"), "--json").stdout)
    assert tooth["watertight"] and tooth["n_faces"] == 6180 and tooth["units"] == "mm"
    assert tooth["file_vertices"] == 3 * 6180 and tooth["n_points"] == 3088
    text = run("surface-info", data_path("dfemtoolz", "coronary", "m1_fluid.stl")).stdout
    assert "7170 points, 14336 faces, units mm" in text and "watertight True" in text
