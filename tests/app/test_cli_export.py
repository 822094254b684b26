"""`twinplan export` / `twinplan deidentify` on a case imported from real DICOM."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from app.cli import main
from app.project import load_case
from imaging.dicom import load_dicom_folder
from imaging.volume_io import load_volume_file
from tests.conftest import data_path
from tests.imaging.test_deidentify import assert_no_identifiers, original_identifiers

ROOT = Path(__file__).resolve().parents[2]


def twinplan(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """The Philips head CT imported into a case, with a bone label."""
    path = tmp_path_factory.mktemp("case") / "head.twin"
    assert main(["import", str(data_path("dcm_qa_ct_philips")), "--out", str(path)]) == 0
    assert main(["segment", str(path), "--label", "bone", "--hu", "300", "3000"]) == 0
    return path


@pytest.fixture
def key_file(tmp_path) -> Path:
    key = tmp_path / "deid.key"
    key.write_bytes(bytes(range(32)))  # fixed key: the mapping (and this test) is reproducible
    return key


def test_export_dicom_is_deidentified_by_default(case, tmp_path, key_file):
    out = tmp_path / "ct"
    proc = subprocess.run([sys.executable, "-m", "app.cli", "export", str(case), "--volume", "ct", "--format",
                           "dicom", "--out", str(out), "--key-file", str(key_file), "--json"],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= {"files", "format", "deidentified", "n_files", "series_uid", "study_uid", "item", "warnings"}
    assert data["format"] == "dicom" and data["deidentified"] is True and data["study_from_source"] is True
    files = [Path(f) for f in data["files"]]
    assert len(files) == data["n_files"] == 28 and all(f.parent == out for f in files)
    texts, uids = original_identifiers(data_path("dcm_qa_ct_philips"))
    assert_no_identifiers(files, texts, uids)
    assert not any(t in proc.stderr + proc.stdout for t in texts | uids if len(t) >= 3)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert {h.SeriesInstanceUID for h in headers} == {data["series_uid"]}
    assert {h.PatientIdentityRemoved for h in headers} == {"YES"}
    vol = load_case(case).volumes["ct"]
    back = load_dicom_folder(out)
    assert np.array_equal(back.array, vol.array) and back.geometry.same_grid(vol.geometry, tol=1e-4)


def test_export_dicom_without_deidentification_joins_the_study(case, tmp_path, capsys):
    code, out, err = twinplan(capsys, "export", case, "--volume", "ct", "--format", "dicom", "--out",
                              tmp_path / "ct", "--no-deidentify", "--json")
    assert code == 0, err
    data = json.loads(out)
    source = pydicom.dcmread(data_path("dcm_qa_ct_philips", "I10"), stop_before_pixels=True)
    first = pydicom.dcmread(data["files"][0], stop_before_pixels=True)
    assert data["deidentified"] is False and data["study_uid"] == source.StudyInstanceUID
    assert (first.PatientID, first.FrameOfReferenceUID) == (source.PatientID, source.FrameOfReferenceUID)
    code, out, err = twinplan(capsys, "export", case, "--volume", "ct", "--format", "dicom", "--out",
                              tmp_path / "synthetic", "--no-deidentify", "--source", "none", "--json")
    data = json.loads(out)
    assert code == 0 and data["study_from_source"] is False and data["study_uid"] != source.StudyInstanceUID


def test_export_seg_references_deidentified_ct(case, tmp_path, capsys, key_file):
    code, out, err = twinplan(capsys, "export", case, "--label", "bone", "--format", "seg", "--out",
                              tmp_path / "seg", "--key-file", key_file, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["deidentified"] is True and data["format"] == "seg"
    files = [Path(f) for f in data["files"]]
    assert files[-1].name == "seg.dcm" and len(files) == 29
    texts, uids = original_identifiers(data_path("dcm_qa_ct_philips"))
    assert_no_identifiers(files, texts, uids)
    assert not any(t in out + err for t in texts | uids if len(t) >= 3)  # nor in what the command printed
    voxels = load_case(case).labels["bone"].voxel_count(1)
    assert data["segments"] == [{"number": 1, "label": "bone", "value": 1, "voxels": voxels}]
    seg = hd.seg.segread(files[-1])
    assert seg.get_segment_numbers() == [1] and int(seg.pixel_array.sum()) == voxels
    ct_series = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files[:-1]}
    assert ct_series == {seg.ReferencedSeriesSequence[0].SeriesInstanceUID} == {data["referenced_series_uid"]}


@pytest.mark.parametrize("fmt, name", [("nrrd", "ct.nrrd"), ("nifti", "ct.nii.gz")])
def test_export_volume_files(case, tmp_path, capsys, fmt, name):
    code, out, err = twinplan(capsys, "export", case, "--volume", "ct", "--format", fmt, "--out", tmp_path / name,
                              "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["files"] == [str(tmp_path / name)] and data["format"] == fmt and data["deidentified"] is False
    vol, back = load_case(case).volumes["ct"], load_volume_file(tmp_path / name)
    assert np.array_equal(back.array, vol.array) and back.geometry.same_grid(vol.geometry, tol=1e-5)


def test_deidentify_folder_command(tmp_path, capsys, key_file):
    src = data_path("dcm_qa_ct_ge_tilt")
    code, out, err = twinplan(capsys, "deidentify", src, "--out", tmp_path / "out", "--key-file", key_file, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["n_files"] == 28 and data["deidentified"] is True and len(data["series"]) == 1
    assert {k["path"] for k in data["skipped"]} == {"LICENSE", "SHA256SUMS"}
    texts, uids = original_identifiers(src)
    assert_no_identifiers([Path(f) for f in data["files"]], texts, uids)
    again = tmp_path / "again"
    assert twinplan(capsys, "deidentify", src, "--out", again, "--key-file", key_file, "--json")[0] == 0
    first, second = (pydicom.dcmread(d / "IM00001.dcm") for d in (tmp_path / "out", again))
    assert first.SOPInstanceUID == second.SOPInstanceUID  # same key, same mapping


def test_burned_in_annotation_needs_consent(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    ds = pydicom.dcmread(data_path("dcm_qa_ct_philips", "I10"))
    ds.BurnedInAnnotation = "YES"
    ds.save_as(src / "x.dcm")
    code, out, err = twinplan(capsys, "deidentify", src, "--out", tmp_path / "refused")
    assert code == 2 and "burned-in" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "refused").exists()
    code, out, err = twinplan(capsys, "deidentify", src, "--out", tmp_path / "ok", "--allow-burned-in", "--json")
    assert code == 0 and any("burned-in" in w for w in json.loads(out)["warnings"])


@pytest.mark.parametrize("args, out_name, needle", [
    (("--volume", "nope", "--format", "dicom"), "out", "--volume nope"),
    (("--volume", "ct", "--format", "seg"), "out", "--label"),
    (("--label", "bone", "--format", "dicom"), "out", "--format seg"),
    (("--label", "nope", "--format", "seg"), "out", "--label nope"),
    (("--volume", "ct", "--format", "nrrd"), "x.nii.gz", "x.nii.gz"),
    (("--volume", "ct", "--format", "dicom", "--source", "/no/such/dir"), "out", "/no/such/dir"),
])
def test_export_errors_exit_2_one_line(case, tmp_path, capsys, args, out_name, needle):
    code, _out, err = twinplan(capsys, "export", case, *args, "--out", tmp_path / out_name)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / out_name).exists()


def test_export_refuses_a_non_empty_folder(case, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    code, _out, err = twinplan(capsys, "export", case, "--volume", "ct", "--format", "dicom", "--out",
                               tmp_path / "taken")
    assert code == 2 and "not an empty folder" in err
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
