"""A real case with a recorded history, built once per test process (Cranium demo CT).

Import, threshold segmentation, meshing, an osteotomy cut and an in-place
edit through the CLI, a landmark and a coarse soft-tissue plan: every kind of
step the thread must replay. Shared by the thread, replay, follow-up and GUI
tests (build it once: ``cranium_twin()`` is cached per process).
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

DEMO_CASE = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
#: The planned move of the maxilla: 4 mm advancement (LPS: anterior is -y), 1.5 mm down (-z).
#: A pure translation, so the synthetic post-op can move the bone without the plan's centre.
MOVE = (0.0, -4.0, -1.5, 0.0, 0.0, 0.0)
#: Coarse tissue mesh: the thread needs a real solve, not accuracy.
VOXEL_MM = 8.0
#: Cranium has no mandible in its field of view: the moved segment is the maxilla/anterior
#: bone, as in tests/mechanics/test_whatif.py (below z = 20 mm, anterior of y = -150 mm),
#: here cut off by one oblique plane through (0, -150, 20) with normal (0, -1, -1):
#: the side y + z < -130 mm.
CUT_POINT = ("0", "-150", "20")
CUT_NORMAL = ("0", "-1", "-1")


@functools.lru_cache(maxsize=None)
def cranium_twin() -> Path:
    """Path of a saved ``.twin`` built from the Cranium demo case (read it; copy before changing)."""
    from app.cli import main
    from app.pipeline import apply_result, import_scan, step_mesh, step_segment
    from app.plan import TissuePlan, run_tissue_plan
    from app.project import load_case, save_case
    from imaging.landmarks import Landmark
    from mechanics.whatif import RigidMove

    folder = Path(tempfile.mkdtemp(prefix="twinplan_thread_"))
    case = import_scan(DEMO_CASE)
    apply_result(case, step_segment(case, label="bone", preset="bone"))
    apply_result(case, step_segment(case, label="skin", preset="skin"))
    apply_result(case, step_mesh(case, label="skin", decimate=0.5))
    skin = case.surfaces["skin"]
    case.set_landmark(Landmark("pronasale", tuple(skin.points[skin.points[:, 1].argmin()])))
    path = str(save_case(case, folder / "cranium.twin"))
    assert main(["edit", path, "--label", "bone", "--op", "split", "--plane-point", *CUT_POINT,
                 "--plane-normal", *CUT_NORMAL, "--out-labels", "maxilla", "cranium"]) == 0
    # In place: the thread keeps the superseded version (label/maxilla~1).
    assert main(["edit", path, "--label", "maxilla", "--op", "islands", "--islands", "largest"]) == 0
    case = load_case(path)
    plan = TissuePlan("maxilla", RigidMove(MOVE[:3], MOVE[3:]), fixed=["cranium"], voxel_mm=VOXEL_MM)
    apply_result(case, run_tissue_plan(case, plan))
    return save_case(case, path)


#: Known rigid move of the synthetic follow-up's frame (baseline LPS -> follow-up LPS):
#: 4 deg about an oblique axis through the volume centre, then this translation (mm).
FRAME_AXIS, FRAME_ANGLE_DEG, FRAME_SHIFT_MM = (0.3, 0.2, 1.0), 4.0, (6.0, -4.0, 3.0)
#: Noise of the synthetic follow-up: smooth tissue displacement (RMS per component, mm) and image noise (HU).
NOISE_MM, NOISE_HU = 0.3, 15.0


def synthetic_postop(case, out_file: Path, seed: int = 7) -> dict:
    """Write a synthetic post-op CT of the planned case (NRRD) and return its ground truth.

    The baseline CT is warped by the plan's displacement field (maxilla moved
    rigidly by ``MOVE``, the soft tissue by the predicted skin displacement,
    cranium fixed, smoothly interpolated between them), plus a smooth random
    tissue displacement (``NOISE_MM``) and image noise (``NOISE_HU``). Its
    frame is then moved by a known rigid transform (``FRAME_*``), so the
    follow-up must be registered back.

    Returns
    -------
    dict
        ``followup_to_baseline`` (Transform), ``displacement_at(points)`` (true
        displacement of baseline points, mm), ``to_followup(points)``.
    """
    import numpy as np
    import SimpleITK as sitk
    from scipy.interpolate import RegularGridInterpolator
    from scipy.ndimage import gaussian_filter
    from scipy.spatial import cKDTree

    from imaging.transform import Transform, axis_angle_matrix
    from imaging.volume import Geometry, Volume

    rng = np.random.default_rng(seed)
    vol = case.volumes["ct"]
    g = vol.geometry
    pred = next(s for n, s in case.surfaces.items() if n.startswith("predicted_skin_"))

    def voxel_points(label, step):
        ijk = np.argwhere(case.labels[label].array[::step, ::step, ::step] > 0)[:, ::-1] * step
        return ijk @ g.index_to_lps()[:3, :3].T + g.index_to_lps()[:3, 3]

    maxilla, cranium = voxel_points("maxilla", 2), voxel_points("cranium", 4)
    ctrl = np.vstack([pred["original_points_mm"], maxilla, cranium])
    disp = np.vstack([pred["displacement_mm"], np.tile(MOVE[:3], (len(maxilla), 1)), np.zeros_like(cranium)])
    # Coarse 3 mm grid over the volume (identity direction in Cranium), IDW of the controls,
    # fading to zero more than 10-20 mm away from any of them.
    lo = np.array(g.origin_xyz)
    hi = lo + (np.array(vol.dims_xyz) - 1) * np.array(g.spacing_xyz)
    axes = [np.arange(lo[i] - 3.0, hi[i] + 6.0, 3.0) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    dist, idx = cKDTree(ctrl).query(grid, k=8)
    w = 1.0 / np.maximum(dist, 0.5) ** 2
    u = np.einsum("nk,nkj->nj", w, disp[idx]) / w.sum(axis=1, keepdims=True)
    u *= np.clip(2.0 - dist[:, :1] / 10.0, 0.0, 1.0)
    shape = tuple(len(a) for a in axes)
    noise = np.stack([gaussian_filter(rng.standard_normal(shape), 2.0) for _ in range(3)], axis=-1)
    noise *= NOISE_MM / noise.reshape(-1, 3).std(axis=0)
    field = u.reshape(*shape, 3) + noise
    interp = RegularGridInterpolator(axes, field)
    # Pull-back warp: post(x) = base(x - u(x)), with the field on its own coarse grid.
    field_img = sitk.GetImageFromArray(np.ascontiguousarray(-field.transpose(2, 1, 0, 3)), isVector=True)
    field_img = sitk.Cast(field_img, sitk.sitkVectorFloat64)
    field_img.SetOrigin(tuple(a[0] for a in axes))
    field_img.SetSpacing((3.0, 3.0, 3.0))
    warp = sitk.DisplacementFieldTransform(field_img)
    base = vol.to_sitk()
    post = sitk.Resample(base, base, warp, sitk.sitkLinear, float(vol.array.min()), base.GetPixelID())
    arr = sitk.GetArrayFromImage(post).astype(np.float64) + rng.normal(0.0, NOISE_HU, vol.array.shape)
    arr = np.clip(np.rint(arr), -32768, 32767).astype(np.int16)
    # Move the frame: same voxels, rotated/translated grid.
    rot = axis_angle_matrix(FRAME_AXIS, FRAME_ANGLE_DEG)
    centre = (lo + hi) / 2
    frame = Transform.from_rotation_translation(rot, centre - rot @ centre + np.array(FRAME_SHIFT_MM),
                                                "baseline", "followup")
    moved = Geometry(g.spacing_xyz, tuple(frame.apply(np.array(g.origin_xyz))), rot @ g.direction)
    sitk.WriteImage(Volume(arr, moved, modality="CT").to_sitk(), str(out_file), useCompression=True)
    return {"followup_to_baseline": frame.inverse(), "to_followup": frame.apply,
            "displacement_at": lambda pts: interp(np.atleast_2d(pts))}


@functools.lru_cache(maxsize=None)
def cranium_postop() -> tuple[Path, Path, dict]:
    """(post-op NRRD, landmarks CSV located on it, ground truth) for the Cranium twin, made once."""
    import numpy as np

    from app.project import load_case
    from imaging.landmarks import Landmark, write_csv

    case = load_case(cranium_twin())
    folder = Path(tempfile.mkdtemp(prefix="twinplan_postop_"))
    truth = synthetic_postop(case, folder / "postop.nrrd")
    nose = np.asarray(case.landmarks["pronasale"].position_lps, float)
    moved_nose = nose + truth["displacement_at"](nose)[0]  # where the nose tip went, baseline frame
    write_csv([Landmark("pronasale", tuple(truth["to_followup"](moved_nose)))], folder / "found.csv")
    return folder / "postop.nrrd", folder / "found.csv", truth
