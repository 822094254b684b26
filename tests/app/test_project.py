"""Project folders round-trip exactly and are written atomically."""
from __future__ import annotations

import numpy as np
import pytest

import app.project as project
from app.case import Case, Provenance
from app.pipeline import apply_result, step_mesh, step_segment
from app.project import load_case, save_case
from imaging.errors import InputError
from imaging.volume import Geometry, Volume


def _case() -> Case:
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 2000, size=(24, 40, 36)).astype(np.int16)
    arr[6:18, 10:30, 8:28] = 1500
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    case = Case("roundtrip")
    vol = Volume(arr, Geometry((0.7, 0.9, 1.3), (-12.345678901, 7.1, 99.9), rot), modality="CT",
                 series_uid="1.2.3", description="test", warnings=["w"])
    case.set_item("volume", "ct", vol, Provenance("import_dicom", {"path": "x"}))
    apply_result(case, step_segment(case, label="bone", hu_range=(1400, 1600)))
    apply_result(case, step_mesh(case, label="bone", decimate=0.3))
    return case


def test_roundtrip_is_exact(tmp_path):
    case = _case()
    out = save_case(case, tmp_path / "p")
    assert out.name == "p.twin"
    back = load_case(out)
    v0, v1 = case.volumes["ct"], back.volumes["ct"]
    assert v1.array.dtype == v0.array.dtype and np.array_equal(v1.array, v0.array)
    assert v1.geometry.same_grid(v0.geometry, tol=0.0)
    assert (v1.modality, v1.series_uid, v1.description, v1.warnings) == ("CT", "1.2.3", "test", ["w"])
    assert np.array_equal(back.labels["bone"].array, case.labels["bone"].array)
    assert back.labels["bone"].labels[1].name == "bone"
    s0, s1 = case.surfaces["bone"], back.surfaces["bone"]
    assert np.array_equal(s0.points, s1.points) and np.array_equal(s0.faces, s1.faces)
    assert back.provenance.keys() == case.provenance.keys()
    for k in case.provenance:
        assert back.provenance[k] == case.provenance[k]
    seg = back.provenance["label/bone"]
    assert seg.operation == "segment_threshold"
    assert seg.inputs[0] == {"id": "volume/ct", "hash": v0.content_hash()}


def test_failed_save_keeps_previous_project(tmp_path, monkeypatch):
    case = _case()
    out = save_case(case, tmp_path / "p.twin")
    before = (out / "case.json").read_text()

    def boom(case, folder):
        (folder / "volumes").mkdir()
        (folder / "volumes" / "half.nrrd").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(project, "_write_contents", boom)
    case.name = "changed"
    with pytest.raises(InputError, match="No space left"):
        save_case(case, out)
    assert (out / "case.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.twin"]  # no temp folder left
    assert load_case(out).name == "roundtrip"


def test_tampered_or_foreign_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a TwinPlan project"):
        load_case(tmp_path)
    out = save_case(_case(), tmp_path / "p")
    (out / "surfaces" / "bone.vtp").unlink()
    with pytest.raises(InputError, match="missing data file"):
        load_case(out)


def test_writer_runtime_error_is_a_clear_input_error(tmp_path, monkeypatch):
    """SimpleITK reports a failed write as RuntimeError: it must reach the user as InputError."""
    case = _case()
    out = save_case(case, tmp_path / "p.twin")

    def sitk_fails(array, geometry, path):
        raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute:\n"
                           "itk::ERROR: NrrdImageIO: Write: could not write file")

    monkeypatch.setattr(project, "_write_image", sitk_fails)
    with pytest.raises(InputError, match="saving failed .*could not write file.*still open"):
        save_case(case, out)
    assert load_case(out).name == "roundtrip"
    assert [p.name for p in tmp_path.iterdir()] == ["p.twin"]
