"""NIfTI input on real data: direction matrices honoured, label maps placed by physical position."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.pipeline import import_scan
from imaging.dicom import load_dicom_folder
from imaging.errors import InputError
from imaging.volume_io import load_labelmap_file, load_volume_file
from tests.conftest import data_path


def _names() -> dict[int, str]:
    table = json.loads(data_path("totalseg_ct", "labels_total.json").read_text())
    return {int(k): v for k, v in table.items()}


def test_nifti_direction_and_origin():
    vol = load_volume_file(data_path("totalseg_ct", "example_ct_sm.nii.gz"))
    assert vol.dims_xyz == (122, 101, 30)
    np.testing.assert_allclose(vol.geometry.direction, np.diag([-1.0, -1.0, 1.0]))
    np.testing.assert_allclose(vol.geometry.origin_xyz, [177.96, -11.32, 94.3], atol=0.01)
    assert (int(vol.array.min()), int(vol.array.max())) == (-1100, 1207)


def test_flipped_label_map_lands_on_dicom_by_physical_position():
    """README numbers: by physical position liver 89 HU, T11/T12 274 HU, aorta 177 HU (by index: -75, -294)."""
    ct = load_dicom_folder(data_path("totalseg_ct", "dicom"))
    seg = load_labelmap_file(data_path("totalseg_ct", "example_seg_dicom.nii.gz"), _names(), reference=ct)
    assert seg.array.shape == ct.array.shape and seg.geometry.same_grid(ct.geometry)

    def mean_hu(*names):
        values = [seg.value_of(n) for n in names]
        return float(ct.array[np.isin(seg.array, values)].mean())

    # Tolerance: a few HU for nearest-neighbour resampling at label borders.
    assert mean_hu("liver") == pytest.approx(89, abs=5)
    assert mean_hu("vertebrae_T11", "vertebrae_T12") == pytest.approx(274, abs=10)
    assert mean_hu("aorta") == pytest.approx(177, abs=8)


def test_import_cli_path_accepts_nifti(tmp_path):
    case = import_scan(data_path("totalseg_ct", "example_ct_sm.nii.gz"))
    assert case.volumes["ct"].dims_xyz == (122, 101, 30)
    assert case.provenance["volume/ct"].operation == "import_volume_file"
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="bad.nii.gz"):
        import_scan(bad)
