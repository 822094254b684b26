"""InVesalius 3 project import: the Debian example Cranium.inv3 and broken files."""
from __future__ import annotations

import io
import plistlib
import tarfile
from concurrent.futures import CancelledError

import numpy as np
import pytest

from imaging.errors import InputError
from imaging.invesalius import load_invesalius_project
from tests.conftest import DEMO_CASE

needs_demo = pytest.mark.skipif(
    not DEMO_CASE.is_file(),
    reason=f"{DEMO_CASE} absent (Debian package invesalius-examples not installed)",
)


@pytest.fixture(scope="module")
def project():
    if not DEMO_CASE.is_file():
        pytest.skip(f"{DEMO_CASE} absent (Debian package invesalius-examples not installed)")
    return load_invesalius_project(DEMO_CASE)


def _sample(volume, points_lps, flip_y=False):
    """Trilinear HU at LPS points (optionally with a mirrored y index)."""
    ijk = volume.geometry.lps_to_index(points_lps)
    a = volume.array.astype(float)
    nz, ny, nx = a.shape
    if flip_y:
        ijk[:, 1] = ny - 1 - ijk[:, 1]
    ijk = np.clip(ijk, 0, np.array([nx, ny, nz]) - 1.000001)
    i0 = np.floor(ijk).astype(int)
    f = ijk - i0
    out = np.zeros(len(ijk))
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = (np.where(dx, f[:, 0], 1 - f[:, 0]) * np.where(dy, f[:, 1], 1 - f[:, 1])
                     * np.where(dz, f[:, 2], 1 - f[:, 2]))
                out += w * a[i0[:, 2] + dz, i0[:, 1] + dy, i0[:, 0] + dx]
    return out


def _subsample(surface, n=20000):
    pts = np.asarray(surface.points, dtype=float)
    return pts[np.random.default_rng(0).choice(len(pts), min(n, len(pts)), replace=False)]


# --- the real example -------------------------------------------------------------

def test_volume_grid_and_values(project):
    vol = project.volume
    assert vol.dims_xyz == (256, 256, 108)
    np.testing.assert_allclose(vol.geometry.spacing_xyz, (0.9570312, 0.9570312, 1.5), atol=1e-6)
    np.testing.assert_allclose(vol.geometry.direction, np.eye(3))
    assert vol.array.dtype == np.int16
    # main.plist scalar_range says -1024..3033; the stored voxels reach 2986.
    assert int(vol.array.min()) == -1024
    assert 2900 <= int(vol.array.max()) <= 3033
    assert vol.modality == "CT"
    assert vol.description == "InVesalius project Cranium"  # not the plist "name"
    assert project.window_level == (406.0, -18.0)


def test_masks_names_thresholds_and_grid(project):
    assert [m.labels[1].name for m in project.masks] == ["Máscara 1", "Máscara 2"]
    assert project.mask_thresholds == [(226.0, 3071.0), (-142.0, 2986.0)]
    for m in project.masks:
        assert m.array.dtype == np.uint8 and m.array.shape == project.volume.array.shape
        assert set(np.unique(m.array)) == {0, 1}
        assert m.geometry.same_grid(project.volume.geometry)


def test_masks_agree_with_threshold_of_matrix(project):
    a = project.volume.array
    for m, (lo, hi) in zip(project.masks, project.mask_thresholds):
        agreement = np.mean(((a >= lo) & (a <= hi)) == (m.array == 1))
        assert agreement >= 0.999  # measured: 1.0 for both masks


def test_surfaces_lie_on_their_isosurface_in_lps(project):
    names = [name for name, _ in project.surfaces]
    assert names == ["Superfície 1", "Superfície 2"]
    for (_, surface), level in zip(project.surfaces, (226.0, -142.0)):
        err = np.abs(_sample(project.volume, _subsample(surface)) - level)
        assert np.median(err) < 40.0  # measured 12.5 / 10.8 HU
        assert np.mean(err < 100.0) > 0.9  # measured 0.99
    # Negative control: with the y axis mirrored the surface misses the bone.
    wrong = np.abs(_sample(project.volume, _subsample(project.surfaces[0][1]), flip_y=True) - 226.0)
    assert np.median(wrong) > 100.0


def test_face_is_anterior_and_inferior(project):
    vol = project.volume
    m = vol.geometry.index_to_lps()
    def centroid(mask):
        kji = np.argwhere(mask).astype(float)
        return (kji[:, ::-1] @ m[:3, :3].T + m[:3, 3]).mean(axis=0)
    teeth = centroid(vol.array > 2000)  # enamel/dental work
    head = centroid(vol.array > -300)
    assert teeth[1] < head[1] - 30.0  # anterior = lower LPS y
    assert teeth[2] < head[2] - 30.0  # teeth below the skull: z is superior


@needs_demo
def test_options_skip_surfaces_and_cancel():
    fractions = []
    p = load_invesalius_project(DEMO_CASE, load_surfaces=False, progress=lambda f, msg: fractions.append(f))
    assert p.surfaces == [] and len(p.masks) == 2
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    with pytest.raises(CancelledError):
        load_invesalius_project(DEMO_CASE, cancelled=lambda: True)


# --- synthetic projects -----------------------------------------------------------

SPACING = [0.5, 0.75, 2.0]


def _write_project(path, files: dict[str, bytes], compress=True, folder="tmpabc"):
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _files(matrix, dtype="int16", mask=None, surface=None):
    main = {"matrix": {"filename": "matrix.dat", "dtype": dtype, "shape": list(matrix.shape)},
            "spacing": SPACING, "modality": "CT", "name": "Doe^John", "orientation": 1,
            "window_level": 40.0, "window_width": 400.0, "masks": {}, "surfaces": {}}
    files = {"matrix.dat": matrix.astype(dtype).tobytes()}
    if mask is not None:
        main["masks"] = {"0": "mask_0.plist"}
        files["mask_0.plist"] = plistlib.dumps({
            "name": "bone", "colour": [1.0, 0.0, 0.0], "threshold_range": [5, 100],
            "mask_file": "mask_0.dat", "mask_shape": list(mask.shape)})
        files["mask_0.dat"] = mask.astype(np.uint8).tobytes()
    if surface is not None:
        main["surfaces"] = {"0": "surface_0.plist"}
        files["surface_0.plist"] = plistlib.dumps({"name": "s", "polydata": "surface_0.vtp"})
        files["surface_0.vtp"] = surface
    files["main.plist"] = plistlib.dumps(main)
    return files


@pytest.mark.parametrize("compress", [True, False])
def test_synthetic_index_mapping(tmp_path, compress):
    import pyvista as pv

    raw = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    mask = np.full((4, 5, 6), 1, np.uint8)  # flags row/column/slice 0 = 1
    mask[1:, 1:, 1:] = 0
    mask[1 + 2, 1 + 1, 1 + 3] = 255  # raw (k, j, i) = (2, 1, 3)
    vtp = pv.PolyData(np.array([[3 * 0.5, -1 * 0.75, 2 * 2.0]])).copy()
    vtp_bytes = _vtp_bytes(vtp)
    files = _files(raw, mask=mask, surface=vtp_bytes)
    p = load_invesalius_project(_write_project(tmp_path / "s.inv3", files, compress=compress))
    vol = p.volume
    assert "Doe" not in vol.description
    # InVesalius world (i*sx, -j*sy, k*sz) of raw voxel [k, j, i] is its LPS position.
    for k, j, i in np.ndindex(raw.shape):
        assert vol.value_at_lps((i * 0.5, -j * 0.75, k * 2.0)) == raw[k, j, i]
    assert p.masks[0].voxel_count() == 1
    hit = np.argwhere(p.masks[0].array == 1)[0]
    assert vol.array[tuple(hit)] == raw[2, 1, 3]
    point = p.surfaces[0][1].points[0]
    assert vol.value_at_lps(point) == raw[2, 1, 3]
    assert p.masks[0].labels[1].name == "bone" and p.mask_thresholds == [(5.0, 100.0)]


def _vtp_bytes(poly) -> bytes:
    from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter

    w = vtkXMLPolyDataWriter()
    w.SetInputData(poly)
    w.WriteToOutputStringOn()
    w.Write()
    return w.GetOutputStringAsBytes() if hasattr(w, "GetOutputStringAsBytes") else w.GetOutputString().encode()


def test_random_bytes_raise(tmp_path):
    bad = tmp_path / "random.inv3"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(InputError, match="random.inv3"):
        load_invesalius_project(bad)


def test_missing_file_raises(tmp_path):
    with pytest.raises(InputError, match="nothere.inv3"):
        load_invesalius_project(tmp_path / "nothere.inv3")


def test_tar_without_main_plist_raises(tmp_path):
    files = _files(np.zeros((2, 3, 4)))
    del files["main.plist"]
    with pytest.raises(InputError, match="main.plist"):
        load_invesalius_project(_write_project(tmp_path / "nomain.inv3", files))


def test_truncated_matrix_raises(tmp_path):
    files = _files(np.zeros((2, 3, 4)))
    files["matrix.dat"] = files["matrix.dat"][:-2]
    with pytest.raises(InputError, match=r"trunc\.inv3: matrix\.dat has 46 bytes, expected 48"):
        load_invesalius_project(_write_project(tmp_path / "trunc.inv3", files))


def test_truncated_gzip_raises(tmp_path):
    good = _write_project(tmp_path / "good.inv3", _files(np.zeros((8, 30, 40))))
    cut = tmp_path / "cut.inv3"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(InputError, match="cut.inv3"):
        load_invesalius_project(cut)


@pytest.mark.parametrize("case", ["dtype", "mask_shape", "vtp", "traversal"])
def test_inconsistent_projects_raise(tmp_path, case):
    raw = np.zeros((2, 3, 4))
    if case == "dtype":
        files, match = _files(raw, dtype="float32"), "unsupported dtype"
    elif case == "mask_shape":
        files, match = _files(raw, mask=np.zeros((2, 3, 4))), "does not match"
    elif case == "vtp":
        files, match = _files(raw, surface=b"\x00garbage"), "surface_0.vtp"
    else:
        files = _files(raw, mask=np.zeros((3, 4, 5)))
        files["mask_0.plist"] = plistlib.dumps({"mask_file": "../../etc/passwd", "mask_shape": [3, 4, 5]})
        match = "bad file reference"
    with pytest.raises(InputError, match=match):
        load_invesalius_project(_write_project(tmp_path / f"{case}.inv3", files))
