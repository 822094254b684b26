"""Synthetic CT with a bone sphere of known centre and radius through import, segment, mesh."""
from __future__ import annotations

import numpy as np
import pytest

from app.pipeline import apply_result, import_scan, step_mesh, step_segment
from imaging.errors import MeshError, SegmentationError
from imaging.meshing import mesh_labelmap
from imaging.phantom import SpherePhantom, write_ct_series


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory):
    p = SpherePhantom()
    folder = tmp_path_factory.mktemp("phantom")
    write_ct_series(p.volume_array(), folder, spacing_xyz=p.spacing_xyz, origin_xyz=p.origin_xyz)
    return p, import_scan(folder)


def test_phantom_geometry_from_shuffled_random_names(phantom_case):
    p, case = phantom_case
    vol = case.volumes["ct"]
    assert vol.dims_xyz == (128, 128, 80)
    np.testing.assert_allclose(vol.geometry.spacing_xyz, p.spacing_xyz, atol=1e-6)
    np.testing.assert_allclose(vol.geometry.origin_xyz, p.origin_xyz, atol=1e-6)
    assert np.array_equal(vol.array, p.volume_array())


def test_sphere_mesh_volume_and_centroid(phantom_case):
    p, case = phantom_case
    apply_result(case, step_segment(case, label="bone", hu_range=(600, 3000)))
    report = step_mesh(case, label="bone").report
    # Issue targets: volume within 2 %, centroid within 0.5 mm.
    assert report["volume_mm3"] == pytest.approx(p.sphere_volume_mm3, rel=0.02)
    assert np.linalg.norm(np.subtract(report["centroid"], p.center_xyz)) < 0.5
    assert report["watertight"]


def test_empty_threshold_and_empty_label_are_clear_errors(phantom_case):
    _p, case = phantom_case
    with pytest.raises(SegmentationError, match="no voxel between 5000 and 6000 HU"):
        step_segment(case, label="metal", hu_range=(5000, 6000))
    lab = step_segment(case, label="bone", hu_range=(600, 3000)).item
    lab.array[:] = 0
    with pytest.raises(MeshError, match="empty"):
        mesh_labelmap(lab)


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([1.0, -1.0, 1.0]), np.diag([-1.0, -1.0, 1.0])])
def test_surface_faces_outward_in_lps(direction):
    from imaging.meshing import _signed_volume
    from imaging.volume import Geometry, LabelMap

    arr = np.zeros((20, 24, 28), dtype=np.uint8)
    arr[5:15, 6:18, 4:20] = 1  # 10 x 12 x 16 voxels
    lab = LabelMap(arr, Geometry((0.5, 0.7, 1.1), (10.0, -20.0, 30.0), direction))
    surface = mesh_labelmap(lab, smoothing_iterations=0)
    # Raw discrete surface encloses the voxels exactly, with outward winding.
    assert _signed_volume(surface) == pytest.approx(10 * 12 * 16 * 0.5 * 0.7 * 1.1, rel=0.05)
    centre = np.array(lab.geometry.origin_xyz) + direction @ (np.array([11.5, 11.5, 9.5]) * [0.5, 0.7, 1.1])
    np.testing.assert_allclose(surface.center, centre, atol=0.6)
