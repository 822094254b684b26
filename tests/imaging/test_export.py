"""Exports read back: NRRD / NIfTI geometry, DICOM CT series through our importer, DICOM SEG with highdicom."""
from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from imaging.deidentify import DeidentifyContext
from imaging.dicom import load_dicom_folder, load_dicom_series, scan_dicom_folder
from imaging.errors import InputError
from imaging.export import (
    encode_ct_values, export_dicom_seg, export_dicom_series, export_image_file, labelmap_to_seg,
)
from imaging.volume import Geometry, LabelInfo, LabelMap, Volume
from imaging.volume_io import load_volume_file
from tests.conftest import data_path
from tests.imaging.test_deidentify import assert_no_identifiers, original_identifiers

GEOMETRY_TOL_MM = 1e-4  # DS values keep 16 characters: far below this


def _rotation(deg_z: float, deg_x: float) -> np.ndarray:
    z, x = np.radians(deg_z), np.radians(deg_x)
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return rz @ rx


def _volume(direction: np.ndarray, dtype=np.int16, shape=(6, 10, 12)) -> Volume:
    rng = np.random.default_rng(7)
    array = rng.integers(-1024, 3000, size=shape).astype(dtype)
    return Volume(array, Geometry((0.7, 0.9, 2.5), (-12.5, 30.25, 100.0), direction), modality="CT")


def _labels(volume: Volume) -> LabelMap:
    array = np.zeros(volume.array.shape, np.uint8)
    array[volume.array > 1500] = 2
    array[(volume.array > -200) & (volume.array < 0)] = 5
    array[0, :3, :3] = 7  # a value missing from the table
    table = {2: LabelInfo("bone", (0.95, 0.91, 0.8)), 5: LabelInfo("skin", (0.94, 0.72, 0.62))}
    return LabelMap(array, volume.geometry, table)


@pytest.mark.parametrize("name", ["v.nrrd", "v.nii.gz", "v.nii"])
def test_nrrd_nifti_keep_geometry_and_voxels(tmp_path, name):
    direction = _rotation(30, 20) @ np.diag([-1.0, 1.0, 1.0])  # oblique and left-handed: RAS conversion must hold
    vol = _volume(direction)
    for item, fname in ((vol, name), (_labels(vol), "lab_" + name)):
        export_image_file(item, tmp_path / fname)
        back = sitk.ReadImage(str(tmp_path / fname))
        np.testing.assert_allclose(back.GetSpacing(), item.geometry.spacing_xyz, atol=1e-6)
        np.testing.assert_allclose(back.GetOrigin(), item.geometry.origin_xyz, atol=1e-5)
        np.testing.assert_allclose(np.reshape(back.GetDirection(), (3, 3)), direction, atol=1e-6)
        array = sitk.GetArrayFromImage(back)
        assert array.dtype == item.array.dtype and np.array_equal(array, item.array)
    reread = load_volume_file(tmp_path / name)
    assert reread.geometry.same_grid(vol.geometry, tol=1e-5) and np.array_equal(reread.array, vol.array)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "lab_" + name])  # no temporary left


def test_image_file_needs_a_known_ending(tmp_path):
    with pytest.raises(InputError, match="nii.gz"):
        export_image_file(_volume(np.eye(3)), tmp_path / "v.mhd.txt")


def test_dicom_series_round_trip_oblique(tmp_path):
    vol = _volume(_rotation(25, -15))
    result = export_dicom_series(vol, tmp_path / "ct")
    assert len(result.files) == 6 and not result.warnings and not result.deidentified
    back = load_dicom_folder(tmp_path / "ct")
    assert back.array.dtype == np.int16 and np.array_equal(back.array, vol.array)
    assert back.geometry.same_grid(vol.geometry, tol=GEOMETRY_TOL_MM)
    headers = [pydicom.dcmread(f) for f in result.files]
    assert {h.SeriesInstanceUID for h in headers} == {result.series_uid}
    assert len({h.SOPInstanceUID for h in headers}) == 6
    h = headers[3]
    assert h.SOPClassUID == pydicom.uid.CTImageStorage and h.Modality == "CT"
    np.testing.assert_allclose([float(v) for v in h.PixelSpacing], [0.9, 0.7])  # rows (y) first
    assert float(h.SliceThickness) == 2.5 and float(h.RescaleSlope) == 1 and float(h.RescaleIntercept) == 0
    expected = np.array(vol.geometry.origin_xyz) + 3 * 2.5 * vol.geometry.direction[:, 2]
    np.testing.assert_allclose([float(v) for v in h.ImagePositionPatient], expected, atol=GEOMETRY_TOL_MM)


def test_dicom_values_beyond_int16_and_floats(tmp_path):
    wide = np.array([[[0, 40000], [65000, 12]]], dtype=np.int32)
    stored, slope, intercept, exact = encode_ct_values(wide)
    assert exact and stored.dtype == np.uint16 and np.array_equal(stored * slope + intercept, wide)
    vol = _volume(np.eye(3), dtype=np.float32)
    vol.array = vol.array + np.float32(0.37)
    result = export_dicom_series(vol, tmp_path / "ct")
    assert any("not bit-exact" in w for w in result.warnings)
    back = load_dicom_folder(tmp_path / "ct")
    step = (vol.array.max() - vol.array.min()) / 65535
    assert np.abs(back.array - vol.array).max() <= step / 2 + 1e-3


def test_dicom_series_keeps_the_source_study(tmp_path):
    series = scan_dicom_folder(data_path("dcm_qa_ct_philips")).find()
    vol = load_dicom_series(series)
    source = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    result = export_dicom_series(vol, tmp_path / "ct", source=series)
    out = pydicom.dcmread(result.files[0], stop_before_pixels=True)
    assert (out.StudyInstanceUID, out.PatientID, out.FrameOfReferenceUID) == (
        source.StudyInstanceUID, source.PatientID, source.FrameOfReferenceUID)
    assert out.SeriesInstanceUID not in (source.SeriesInstanceUID, "") and out.SOPInstanceUID != source.SOPInstanceUID
    back = load_dicom_folder(tmp_path / "ct")
    assert np.array_equal(back.array, vol.array) and back.geometry.same_grid(vol.geometry, tol=GEOMETRY_TOL_MM)


def _seg_counts(path, ct_files) -> tuple[hd.seg.Segmentation, dict[int, int], dict[tuple[int, int], int]]:
    """The SEG read by highdicom; voxels per segment; voxels per (segment, slice index of the CT)."""
    seg = hd.seg.segread(path)
    slice_of = {}
    for f in ct_files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        slice_of[ds.SOPInstanceUID] = ds
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    per_segment, per_slice = {}, {}
    for frame, group in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        ident = group if "SegmentIdentificationSequence" in group else seg.SharedFunctionalGroupsSequence[0]
        number = int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        sop = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        key = (number, float(np.dot([float(v) for v in slice_of[sop].ImagePositionPatient], [0, 0, 1])))
        per_segment[number] = per_segment.get(number, 0) + int(frame.sum())
        per_slice[key] = per_slice.get(key, 0) + int(frame.sum())
    return seg, per_segment, per_slice


@pytest.mark.parametrize("deidentify", [False, True])
def test_seg_with_exported_ct(tmp_path, deidentify):
    vol = _volume(np.eye(3))
    labels = _labels(vol)
    ctx = DeidentifyContext.from_seed("seg") if deidentify else None
    result = export_dicom_seg(labels, tmp_path / "out", volume=vol, deidentify=ctx)
    ct_files, seg_file = result.files[:-1], result.files[-1]
    assert seg_file.name == "seg.dcm" and len(ct_files) == 6 and result.deidentified == deidentify
    seg, per_segment, per_slice = _seg_counts(seg_file, ct_files)
    assert seg.get_segment_numbers() == [1, 2, 3]
    assert [seg.get_segment_description(n).SegmentLabel for n in (1, 2, 3)] == ["bone", "skin", "label_7"]
    for number, value in ((1, 2), (2, 5), (3, 7)):
        assert per_segment[number] == labels.voxel_count(value)
        for k in range(6):
            z = vol.geometry.origin_xyz[2] + 2.5 * k
            assert per_slice.get((number, z), 0) == int(np.count_nonzero(labels.array[k] == value))
    ct_series = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in ct_files}
    assert ct_series == {seg.ReferencedSeriesSequence[0].SeriesInstanceUID} == {result.referenced_series_uid}
    assert (seg.get("PatientIdentityRemoved") == "YES") == deidentify
    back = load_dicom_folder(tmp_path / "out" / "ct")
    assert np.array_equal(back.array, vol.array)


def test_seg_references_the_source_series(tmp_path):
    src = data_path("dcm_qa_ct_philips")
    series = scan_dicom_folder(src).find()
    vol = load_dicom_series(series)
    labels = LabelMap((vol.array > 300).astype(np.uint8), vol.geometry, {1: LabelInfo("bone")})
    originals = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in series.files}

    plain = export_dicom_seg(labels, tmp_path / "plain", volume=vol, source=series)
    assert [f.name for f in plain.files] == ["seg.dcm"] and plain.referenced_series_uid == series.series_uid
    seg, per_segment, _ = _seg_counts(plain.files[0], series.files)
    assert per_segment == {1: labels.voxel_count(1)}
    refs = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs <= originals

    anonymous = export_dicom_seg(labels, tmp_path / "anon", volume=vol, source=series,
                                 deidentify=DeidentifyContext.from_seed("seg"))
    ct_files = anonymous.files[:-1]
    assert len(ct_files) == len(series.files)
    texts, uids = original_identifiers(src)
    assert_no_identifiers(anonymous.files, texts, uids)
    seg, per_segment, _ = _seg_counts(anonymous.files[-1], ct_files)
    assert per_segment == {1: labels.voxel_count(1)}
    copies = load_dicom_folder(tmp_path / "anon" / "ct")
    assert np.array_equal(copies.array, vol.array)


def test_seg_refusals(tmp_path):
    vol = _volume(np.eye(3))
    empty = LabelMap(np.zeros(vol.array.shape, np.uint8), vol.geometry, {1: LabelInfo("bone")})
    with pytest.raises(InputError, match="empty"):
        labelmap_to_seg(empty, [])
    shifted = LabelMap(_labels(vol).array, Geometry((0.7, 0.9, 2.5), (0, 0, 0)), {})
    with pytest.raises(InputError, match="grid"):
        export_dicom_seg(shifted, tmp_path / "a", volume=vol)
    with pytest.raises(InputError, match="give the volume"):
        export_dicom_seg(_labels(vol), tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("x")
    with pytest.raises(InputError, match="not an empty folder"):
        export_dicom_seg(_labels(vol), tmp_path / "c", volume=vol)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
