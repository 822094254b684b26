"""Compressed and unusual transfer syntaxes: pydicom's own test files (shipped in its wheel).

The same MR slice is stored uncompressed, RLE, JPEG-LS lossless, JPEG 2000
lossless, big endian, implicit VR and deflated; every encoding must give
identical voxels and geometry through our reader.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from imaging.dicom import load_dicom_folder
from imaging.errors import InputError

VARIANTS = ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
            "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm"]


def _load_single(tmp_path: Path, name: str):
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(get_testdata_file(name), folder / "slice")
    return load_dicom_folder(folder)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _load_single(tmp_path_factory.mktemp("ref"), "MR_small.dcm")


@pytest.mark.parametrize("name", VARIANTS)
def test_encodings_give_identical_voxels(tmp_path, reference, name):
    vol = _load_single(tmp_path, name)
    assert vol.dims_xyz == reference.dims_xyz == (64, 64, 1)
    assert np.array_equal(vol.array, reference.array)
    assert vol.geometry.same_grid(reference.geometry)


def test_reference_matches_pydicom():
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    arr = ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0))
    vol = load_dicom_folder(Path(get_testdata_file("MR_small.dcm")))
    assert np.array_equal(vol.array[0].astype(np.float64), arr)


def test_slice_without_geometry_is_refused_with_the_reason(tmp_path):
    with pytest.raises(InputError, match=r"1 file\(s\) skipped \(1 x missing image geometry"):
        _load_single(tmp_path, "JPGExtended.dcm")


def test_jpeg_extended_12bit_through_our_reader(tmp_path):
    """JPEG process 2/4 (1.2.840.10008.1.2.4.51): pydicom's file, given geometry in a temporary copy."""
    import SimpleITK as sitk

    ds = pydicom.dcmread(get_testdata_file("JPEG-lossy.dcm"))
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    (tmp_path / "s").mkdir()
    ds.save_as(tmp_path / "s" / "slice")
    vol = load_dicom_folder(tmp_path / "s")
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "s" / "slice")))
    assert vol.dims_xyz == (256, 1024, 1)
    assert np.array_equal(vol.array.reshape(ref.shape), ref) and vol.array.std() > 0
