"""Series that break other readers, generated with known answers.

The phantom is an analytic sphere in LPS space sampled on each acquisition
grid, so wherever and however the slices lie, the segmented sphere must
come back centred on the same LPS point.
"""
from __future__ import annotations

import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLSLossless, RLELossless

from app.pipeline import apply_result, import_scan, step_mesh, step_segment
from imaging.dicom import load_dicom_folder, load_dicom_series, scan_dicom_folder
from imaging.phantom import SpherePhantom, write_oriented_series
from tests.conftest import data_path

PHANTOM = SpherePhantom(center_xyz=(12.0, -30.0, 85.0), radius_mm=9.0)


def _rot(axis, deg):
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.array([[c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
                     [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
                     [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)]])


def _write(folder, row, col, step=1.0, n=48, size=48, spacing=(1.0, 1.0), **kw):
    row, col = np.asarray(row, float), np.asarray(col, float)
    normal = np.cross(row, col)
    centre = np.asarray(PHANTOM.center_xyz)
    # First slice so that the sphere sits in the middle of the stack.
    first = (centre - (size / 2) * spacing[0] * row - (size / 2) * spacing[1] * col
             - np.sign(step) * (n / 2) * abs(step) * normal)
    return write_oriented_series(PHANTOM, folder, size_rc=(size, size), n_slices=n, pixel_spacing_xy=spacing,
                                 slice_step_mm=step, row_dir=row, col_dir=col, first_position=first, **kw)


ORIENTATIONS = {
    "axial": ((1, 0, 0), (0, 1, 0), 1.0),
    "sagittal": ((0, 1, 0), (0, 0, -1), 1.0),
    "coronal": ((1, 0, 0), (0, 0, -1), 1.0),
    "axial_reversed_stack": ((1, 0, 0), (0, 1, 0), -1.0),
    "oblique": (tuple(_rot((1, 1, 0), 25) @ [1, 0, 0]), tuple(_rot((1, 1, 0), 25) @ [0, 1, 0]), 1.0),
}


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_any_orientation_puts_the_sphere_at_its_lps_centre(tmp_path, name):
    row, col, step = ORIENTATIONS[name]
    _write(tmp_path, row, col, step)
    case = import_scan(tmp_path)
    d = case.volumes["ct"].geometry.direction
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-6) and np.linalg.det(d) == pytest.approx(1.0)
    apply_result(case, step_segment(case, label="bone", hu_range=(600, 3000)))
    report = step_mesh(case, label="bone").report
    # Tolerance: 1 mm voxels; the centroid of a smoothed voxel sphere is good to ~0.1 mm.
    assert np.linalg.norm(np.subtract(report["centroid"], PHANTOM.center_xyz)) < 0.3
    assert report["volume_mm3"] == pytest.approx(PHANTOM.sphere_volume_mm3, rel=0.05)


def test_localizer_in_the_series_is_skipped(tmp_path):
    _write(tmp_path, (1, 0, 0), (0, 1, 0), n=20)
    _write(tmp_path / "scout", (1, 0, 0), (0, 0, -1), n=1, extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    scan = scan_dicom_folder(tmp_path)
    assert len(scan.series) == 1 and len(scan.series[0].slices) == 20
    assert [k.reason for k in scan.skipped] == ["localizer/scout image"]


def test_two_acquisitions_in_one_series_become_two_stacks(tmp_path):
    _write(tmp_path / "a", (1, 0, 0), (0, 1, 0), n=12, extra={"AcquisitionNumber": 1})
    _write(tmp_path / "b", (1, 0, 0), (0, 1, 0), n=12, extra={"AcquisitionNumber": 2})
    uid = pydicom.dcmread(next((tmp_path / "a").iterdir())).SeriesInstanceUID
    for f in (tmp_path / "b").iterdir():  # same series UID, same positions
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.save_as(f)
    scan = scan_dicom_folder(tmp_path)
    assert sorted(s.series_uid for s in scan.series) == [f"{uid}#acq=1", f"{uid}#acq=2"]
    assert all(len(s.slices) == 12 for s in scan.series)
    assert load_dicom_folder(tmp_path, f"{uid}#acq=2").dims_xyz == (48, 48, 12)


def test_zip_and_dicomdir(tmp_path):
    from pydicom.fileset import FileSet

    src = tmp_path / "src"
    _write(src, (1, 0, 0), (0, 1, 0), n=10)
    ref = load_dicom_folder(src)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in src.iterdir():
            zf.write(f, f"DICOM/{f.name}")
    assert np.array_equal(load_dicom_folder(archive).array, ref.array)

    fs = FileSet()
    for f in src.iterdir():
        fs.add(pydicom.dcmread(f))
    fs.write(tmp_path / "media")
    scan = scan_dicom_folder(tmp_path / "media")
    assert np.array_equal(load_dicom_series(scan.find()).array, ref.array)
    assert any(k.reason.startswith("DICOMDIR index") for k in scan.skipped)


@pytest.mark.parametrize("kw", [
    {"slope": 0.5, "intercept": -1024.0},
    {"signed": True, "intercept": 0.0},
    {"transfer_syntax": RLELossless},
    {"transfer_syntax": JPEGLSLossless},
], ids=["slope0.5", "signed", "rle", "jpegls"])
def test_pixel_encodings_give_the_same_hu(tmp_path, kw):
    _write(tmp_path / "plain", (1, 0, 0), (0, 1, 0), n=8)
    _write(tmp_path / "coded", (1, 0, 0), (0, 1, 0), n=8, **kw)
    plain = load_dicom_folder(tmp_path / "plain")
    coded = load_dicom_folder(tmp_path / "coded")
    assert np.array_equal(plain.array.astype(np.float64), coded.array.astype(np.float64))


@pytest.mark.parametrize("extra, spacing, step", [
    ({"Manufacturer": "Planmeca", "ManufacturerModelName": "ProMax 3D"}, (0.4, 0.4), 0.4),
    ({"Modality": "OT"}, (0.3, 0.3), 0.3),
])
def test_dental_cbct_is_detected(tmp_path, extra, spacing, step):
    _write(tmp_path, (1, 0, 0), (0, 1, 0), step=step, n=60, size=40, spacing=spacing, extra=extra)
    series = scan_dicom_folder(tmp_path).find()
    assert series.kind == "cbct" and series.summary()["kind"] == "cbct"
    assert any("cone-beam CT" in w for w in series.warnings)
    assert load_dicom_series(series).kind == "cbct"


def test_regular_ct_is_not_cbct():
    for name in ("dcm_qa_ct_philips", "dcm_qa_ct_ge_tilt"):
        assert scan_dicom_folder(data_path(name)).find().kind == "ct"


def test_enhanced_multiframe_ct_matches_its_single_frame_source(tmp_path):
    """Real Philips slices converted to a Legacy Converted Enhanced CT (highdicom)."""
    import highdicom as hd

    src = sorted(data_path("dcm_qa_ct_philips").glob("I*"), key=lambda f: int(f.name[1:]))[:8]
    for f in src:
        (tmp_path / "single").mkdir(exist_ok=True)
        (tmp_path / "single" / f.name).write_bytes(f.read_bytes())
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(f) for f in src], series_instance_uid=hd.UID(),
        series_number=99, sop_instance_uid=hd.UID(), instance_number=1)
    (tmp_path / "multi").mkdir()
    mf.save_as(tmp_path / "multi" / "enhanced.dcm")
    single = load_dicom_folder(tmp_path / "single")
    multi = load_dicom_folder(tmp_path / "multi")
    assert multi.dims_xyz == single.dims_xyz == (512, 512, 8)
    assert multi.geometry.same_grid(single.geometry)
    assert np.array_equal(multi.array, single.array)


def test_cbct_presets_come_from_the_image(tmp_path):
    """Uncalibrated grey values (air 0, soft tissue 900, bone 2500): HU presets would fail."""
    cbct = SpherePhantom(center_xyz=PHANTOM.center_xyz, radius_mm=6.0, bone_hu=2500, tissue_hu=900, air_hu=0)
    row, col = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    first = np.asarray(cbct.center_xyz) - 9.6 * (row + col) - 9.6 * np.cross(row, col)
    write_oriented_series(cbct, tmp_path, size_rc=(64, 64), n_slices=64, pixel_spacing_xy=(0.3, 0.3),
                          slice_step_mm=0.3, row_dir=row, col_dir=col, first_position=first,
                          extra={"Manufacturer": "Planmeca"}, intercept=0.0)
    case = import_scan(tmp_path)
    assert case.volumes["ct"].kind == "cbct"
    seg = step_segment(case, label="bone", preset="bone")
    assert seg.report["volume_mm3"] == pytest.approx(cbct.sphere_volume_mm3, rel=0.05)
    apply_result(case, seg)
    # The fixed CT preset (226..3071 HU) would also take the soft tissue.
    wrong = step_segment(case, label="x", hu_range=(226, 3071))
    assert wrong.report["volume_mm3"] > 3 * cbct.sphere_volume_mm3
