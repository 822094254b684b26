"""DICOM import on real series from shared/data and on broken files."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from imaging.dicom import load_dicom_folder, load_dicom_series, scan_dicom_folder
from imaging.errors import InputError
from tests.conftest import data_path


def _sitk_reference(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_totalseg_jpeg2000_matches_simpleitk():
    folder = data_path("totalseg_ct", "dicom")
    vol = load_dicom_folder(folder)
    ref = _sitk_reference(folder)
    assert vol.dims_xyz == ref.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(vol.geometry.spacing_xyz, ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(vol.geometry.origin_xyz, ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(vol.geometry.direction.ravel(), ref.GetDirection(), atol=1e-6)
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(ref))
    # HU range from the data README (RescaleIntercept -1024 applied).
    assert (int(vol.array.min()), int(vol.array.max())) == (-1024, 1839)
    assert any("SeriesInstanceUID missing" in w for w in vol.warnings)


def test_philips_sorted_by_position_not_name():
    folder = data_path("dcm_qa_ct_philips")
    scan = scan_dicom_folder(folder)
    series = scan.find()
    z = [s.position[2] for s in series.slices]
    np.testing.assert_allclose(np.diff(z), 5.0, atol=1e-3)
    assert [s.instance for s in series.slices] == list(range(1, 29))
    assert series.warnings == []
    assert {k.reason for k in scan.skipped} == {"not a DICOM file"}  # LICENSE, SHA256SUMS
    summary = series.summary()
    assert summary["dims_xyz"] == [512, 512, 28]
    np.testing.assert_allclose(summary["origin"], [-115.5, -1.85, 696.21], atol=1e-3)


def test_gantry_tilt_detected_and_slices_placed_by_position():
    folder = data_path("dcm_qa_ct_ge_tilt")
    series = scan_dicom_folder(folder).find()
    text = " ".join(series.warnings)
    assert "gantry tilt 18.5 deg" in text
    assert "non-uniform slice spacing" in text
    vol = load_dicom_series(series)
    assert np.allclose(vol.geometry.direction.T @ vol.geometry.direction, np.eye(3), atol=1e-6)
    # 1.08 mm = smallest step along the normal (README: 4.00 / 1.08 / 7.00 mm)
    assert vol.geometry.spacing_xyz[2] == pytest.approx(1.081, abs=2e-3)
    # Every input slice's pixels are found at their own ImagePositionPatient.
    errs = []
    for s in (series.slices[0], series.slices[14], series.slices[27]):
        ds = pydicom.dcmread(s.path)
        iop = np.array(ds.ImageOrientationPatient, float).reshape(2, 3)
        img = ds.pixel_array.astype(float)
        rows, cols = np.mgrid[64:448:32, 64:448:32]
        pts = (s.position + cols.ravel()[:, None] * 0.48828125 * iop[0]
               + rows.ravel()[:, None] * 0.48828125 * iop[1])
        ijk = vol.geometry.lps_to_index(pts)
        got = sitk_interp(vol, ijk)
        errs.append(np.median(np.abs(got - img[rows.ravel(), cols.ravel()])))
    # Tolerance: linear interpolation at sub-voxel offsets in a head CT (values are HU).
    assert max(errs) < 15.0, errs


def sitk_interp(vol, ijk):
    from scipy import ndimage

    return ndimage.map_coordinates(vol.array.astype(float), ijk[:, ::-1].T, order=1)


def test_bad_files_are_skipped_with_reasons(tmp_path):
    src = sorted(data_path("dcm_qa_ct_philips").glob("I*"), key=lambda f: int(f.name[1:]))
    good = tmp_path / "scan"
    good.mkdir()
    for f in src[:6]:
        shutil.copy(f, good / f"x{f.name}")
    (good / "notes.txt").write_text("not an image")
    raw = src[6].read_bytes()
    (good / "truncated_pixels").write_bytes(raw[: len(raw) - 1000])
    (good / "truncated_header").write_bytes(raw[:700])
    ds = pydicom.dcmread(src[7])
    del ds.PixelData
    ds.save_as(good / "no_pixels")
    (good / "empty").write_bytes(b"")
    scan = scan_dicom_folder(good)
    reasons = {k.path.rsplit("/", 1)[1]: k.reason for k in scan.skipped}
    assert reasons["notes.txt"] == "not a DICOM file"
    assert reasons["truncated_pixels"].startswith("truncated pixel data")
    assert reasons["no_pixels"] == "no pixel data"
    assert "truncated_header" in reasons and "empty" in reasons
    assert len(scan.series) == 1 and len(scan.series[0].slices) == 6
    assert scan.series[0].warnings == []
    vol = load_dicom_series(scan.series[0])
    assert vol.dims_xyz == (512, 512, 6)


def test_missing_slices_are_reported_and_placed(tmp_path):
    src = sorted(data_path("dcm_qa_ct_philips").glob("I*"), key=lambda f: int(f.name[1:]))
    for f in src[:4] + src[6:9]:  # drop slices 5 and 6
        shutil.copy(f, tmp_path / f.name)
    series = scan_dicom_folder(tmp_path).find()
    assert any(w.startswith("missing slices: 1 gap") for w in series.warnings), series.warnings
    vol = load_dicom_series(series)
    assert vol.dims_xyz == (512, 512, 9)  # 40 mm at 5 mm, the gap interpolated
    assert vol.geometry.spacing_xyz[2] == pytest.approx(5.0)


def test_two_series_in_one_folder_are_separated(tmp_path):
    for sub in ("philips", "ge"):
        (tmp_path / sub).mkdir()
    for f in sorted(data_path("dcm_qa_ct_philips").glob("I*"))[:5]:
        shutil.copy(f, tmp_path / "philips" / f.name)
    for f in sorted(data_path("dcm_qa_ct_ge_tilt").glob("*.dcm"))[:3]:
        shutil.copy(f, tmp_path / "ge" / f.name)
    scan = scan_dicom_folder(tmp_path)
    assert sorted(len(s.slices) for s in scan.series) == [3, 5]
    ge = scan.find(scan.series[1].series_uid)
    assert len(ge.slices) == 3
    with pytest.raises(InputError, match="no such series"):
        scan.find("1.2.3.4")


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        scan_dicom_folder(tmp_path / "nope")
    with pytest.raises(InputError, match="no DICOM image series"):
        load_dicom_folder(tmp_path)


@pytest.mark.parametrize("name", ["dcm_qa_ct_philips", "dcm_qa_ct_ge_tilt"])
def test_direct_pixel_read_equals_gdcm(name):
    """The fast path (uncompressed slices read at their offsets) gives GDCM's voxels exactly."""
    from imaging.dicom_pixels import load_gdcm_pixels, load_native_pixels
    from imaging.progress import no_progress

    series = scan_dicom_folder(data_path(name)).find()
    assert all(s.native is not None for s in series.slices)
    fast = load_native_pixels(series, no_progress, None)
    slow = load_gdcm_pixels(series, no_progress, None)
    assert fast.dtype == slow.dtype and np.array_equal(fast, slow)


def test_large_gap_is_refused_with_a_reason(tmp_path):
    src = sorted(data_path("dcm_qa_ct_philips").glob("I*"), key=lambda f: int(f.name[1:]))
    for f in src[:5] + src[10:14]:  # 5 slices missing: a 30 mm step in a 5 mm series
        shutil.copy(f, tmp_path / f.name)
    with pytest.raises(InputError, match=r"30.0 mm gap after slice 5 of 9 .* more than 4x the median step"):
        load_dicom_folder(tmp_path)
