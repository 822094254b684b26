"""Surface scan -> CT surface fusion (rigid), with a per-vertex distance map.

Pipeline (open3d): voxel down-sampling, FPFH features and feature-matching
RANSAC for a global alignment from any starting pose (or 3+ landmark pairs,
or a given initial transform), then point-to-plane ICP, coarse to fine.
The CT surface (target) may be restricted to the region the scan covers:
``"face"`` for facial scans, ``"crowns"`` for intraoral scans, or a box.
Everything is in millimetres; the target is in patient LPS.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import open3d as o3d
import pyvista as pv

from imaging.errors import InputError, MeshError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.surface import triangle_faces
from imaging.transform import Transform, axis_angle_matrix, rigid_from_landmarks
from imaging.volume import Volume

log = logging.getLogger(__name__)
reg = o3d.pipelines.registration

Region = Union[None, str, Sequence[float], np.ndarray]
REGION_PRESETS = ("all", "face", "crowns")
#: HU above which the CT just outside a tooth surface is bone (a root), not mouth.
CROWN_BONE_HU = 300.0


@dataclass
class FusionResult:
    """A fused scan: the transform, its quality and the distance map.

    Attributes
    ----------
    transform : Transform
        Scan frame -> patient frame (rigid).
    rms_mm : float
        RMS distance from the moved scan's vertices to the target surface,
        over inliers (|distance| <= ``inlier_mm``).
    inlier_fraction : float
        Fraction of scan vertices within ``inlier_mm`` of the target.
    distances_mm : numpy.ndarray
        Signed distance of every scan vertex to the target (mm; + outside).
    moved : pyvista.PolyData
        The scan in the patient frame with point data ``"distance_mm"``.
    """

    transform: Transform
    rms_mm: float
    inlier_fraction: float
    inlier_mm: float
    distances_mm: np.ndarray
    moved: pv.PolyData
    method: str
    seconds: float
    voxel_mm: float
    timings: dict[str, float] = field(default_factory=dict)
    landmark_rms_mm: Optional[float] = None

    def to_json(self) -> dict:
        """Summary for reports and the CLI (no per-vertex data)."""
        d = np.abs(self.distances_mm)
        out = {
            "rms_mm": round(self.rms_mm, 4), "inlier_fraction": round(self.inlier_fraction, 4),
            "inlier_mm": self.inlier_mm, "matrix": self.transform.matrix.tolist(),
            "from_frame": self.transform.from_frame, "to_frame": self.transform.to_frame,
            "rotation_deg": round(self.transform.rotation_deg, 4),
            "translation_mm": [round(float(t), 4) for t in self.transform.translation_mm],
            "n_points": int(len(d)), "median_distance_mm": round(float(np.median(d)), 4),
            "p95_distance_mm": round(float(np.percentile(d, 95)), 4), "method": self.method,
            "voxel_mm": round(self.voxel_mm, 4), "seconds": round(self.seconds, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }
        if self.landmark_rms_mm is not None:
            out["landmark_rms_mm"] = round(self.landmark_rms_mm, 4)
        return out


# -- helpers -----------------------------------------------------------------
def point_normals(surface: pv.PolyData) -> Optional[np.ndarray]:
    """Unit vertex normals from the triangles' winding (area weighted), or None without faces."""
    if "Normals" in surface.point_data:
        return np.asarray(surface.point_data["Normals"], dtype=float)
    faces = triangle_faces(surface)
    if not len(faces):
        return None
    p = np.asarray(surface.points, dtype=float)
    fn = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
    n = np.stack([np.bincount(faces.ravel(), np.repeat(fn[:, i], 3), minlength=len(p)) for i in range(3)], axis=1)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(length > 0, length, 1.0)


def _cloud(points: np.ndarray, normals: Optional[np.ndarray]) -> o3d.geometry.PointCloud:
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(points, dtype=float)))
    if normals is not None:
        pc.normals = o3d.utility.Vector3dVector(np.ascontiguousarray(normals, dtype=float))
    return pc


def _down(pc: o3d.geometry.PointCloud, voxel_mm: float) -> o3d.geometry.PointCloud:
    """Voxel down-sampling; averaged normals re-normalised (or estimated when absent)."""
    out = pc.voxel_down_sample(voxel_mm)
    if out.has_normals():
        out.normalize_normals()
    else:
        out.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2.5 * voxel_mm, max_nn=30))
        _orient_outward(out)
    return out


def _orient_outward(pc: o3d.geometry.PointCloud) -> None:
    """Give estimated normals one consistent side, pointing away from the centroid on balance."""
    if len(pc.points) > 10:
        pc.orient_normals_consistent_tangent_plane(10)
    p, n = np.asarray(pc.points), np.asarray(pc.normals)
    if np.einsum("ij,ij->i", p - p.mean(axis=0), n).sum() < 0:
        pc.normals = o3d.utility.Vector3dVector(-n)


def _scene(surface: pv.PolyData, faces: np.ndarray) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(surface.points, dtype=np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


def surface_distances(points_mm: np.ndarray, target: pv.PolyData, margin_mm: float = 10.0) -> np.ndarray:
    """Signed distance (mm) from points to the closest point of a triangle surface.

    Positive on the side the target's normals point to (outside for CT
    surfaces). Only triangles near the points' bounding box are searched
    (building the search tree is the cost): distances up to ``margin_mm`` are
    exact; a larger one is an upper bound (the true distance also exceeds the
    margin). A target without faces gives the distance to its nearest vertex,
    unsigned.
    """
    pts = np.ascontiguousarray(points_mm, dtype=np.float32)
    faces = triangle_faces(target)
    if not len(faces):
        from scipy.spatial import cKDTree

        return cKDTree(np.asarray(target.points)).query(pts, workers=-1)[0]
    tp = np.asarray(target.points)
    lo, hi = pts.min(axis=0) - margin_mm, pts.max(axis=0) + margin_mm
    near = np.all((tp >= lo) & (tp <= hi), axis=1)
    faces = faces[near[faces].any(axis=1)]
    if not len(faces):
        return np.full(len(pts), np.inf)
    ans = _scene(target, faces).compute_closest_points(o3d.core.Tensor(pts))
    diff = pts - ans["points"].numpy()
    dist = np.linalg.norm(diff, axis=1)
    side = np.sign(np.einsum("ij,ij->i", diff, ans["primitive_normals"].numpy()))
    return (dist * np.where(side == 0, 1.0, side)).astype(float)


# -- regions -----------------------------------------------------------------
def face_region(target: pv.PolyData, *, max_yaw_deg: float = 45.0, max_pitch_deg: float = 20.0) -> np.ndarray:
    """Vertices a frontal face scanner would see on a CT skin surface (patient LPS).

    A vertex is kept if, for one of 15 view directions within ``max_yaw_deg``
    left/right and ``max_pitch_deg`` up/down of anterior (-y in LPS), its outward
    normal faces the camera (cosine > 0.5) and no part of the surface hides it.
    This drops the back of the head and the nasal cavity and airway walls.
    """
    faces = triangle_faces(target)
    normals = point_normals(target)
    if normals is None:
        raise InputError("region 'face' needs a target surface with faces")
    scene = _scene(target, faces)
    p = np.asarray(target.points, dtype=np.float32)
    seen = np.zeros(len(p), bool)
    for yaw in np.linspace(-max_yaw_deg, max_yaw_deg, 5):
        for pitch in (-max_pitch_deg, 0.0, max_pitch_deg):
            view = axis_angle_matrix([0, 0, 1], yaw) @ axis_angle_matrix([1, 0, 0], pitch) @ [0.0, -1.0, 0.0]
            facing = np.flatnonzero(~seen & (normals @ view > 0.5))
            if not len(facing):
                continue
            rays = np.hstack([p[facing] + 0.05 * normals[facing].astype(np.float32),
                              np.broadcast_to(view.astype(np.float32), (len(facing), 3))])
            hidden = scene.test_occlusions(o3d.core.Tensor(np.ascontiguousarray(rays, dtype=np.float32))).numpy()
            seen[facing[~hidden]] = True
    return seen


def crown_region(target: pv.PolyData, volume: Volume, *, bone_hu: float = CROWN_BONE_HU,
                 offset_mm: float = 1.0) -> np.ndarray:
    """Vertices of a CT teeth surface on the crowns (what an intraoral scanner sees).

    The CT is sampled ``offset_mm`` outside each vertex along its outward
    normal: bone there (> ``bone_hu``) means a root in its socket; air, soft
    tissue or the scan's edge means an exposed crown.
    """
    normals = point_normals(target)
    if normals is None:
        raise InputError("region 'crowns' needs a target surface with faces")
    outside = np.asarray(target.points, dtype=float) + offset_mm * normals
    ijk = np.rint(volume.geometry.lps_to_index(outside)).astype(int)
    nz, ny, nx = volume.array.shape
    inside_grid = np.all((ijk >= 0) & (ijk < [nx, ny, nz]), axis=1)
    hu = np.full(len(ijk), -1000.0)
    i, j, k = ijk[inside_grid].T
    hu[inside_grid] = volume.array[k, j, i]
    return hu <= bone_hu


def region_mask(target: pv.PolyData, region: Region, *, volume: Optional[Volume] = None) -> np.ndarray:
    """Boolean mask of the target vertices to match against.

    Parameters
    ----------
    region : None, str, sequence of 6 floats or bool array
        ``None``/``"all"``; ``"face"`` (:func:`face_region`); ``"crowns"``
        (:func:`crown_region`, needs ``volume``); LPS bounds
        ``(xmin, xmax, ymin, ymax, zmin, zmax)`` in mm; or a mask.

    Raises
    ------
    InputError
        Unknown preset, wrong shape, ``"crowns"`` without a volume, or an empty region.
    """
    n = target.n_points
    if region is None or (isinstance(region, str) and region == "all"):
        mask = np.ones(n, bool)
    elif isinstance(region, str):
        if region == "face":
            mask = face_region(target)
        elif region == "crowns":
            if volume is None:
                raise InputError("--region crowns: needs the CT volume of the case")
            mask = crown_region(target, volume)
        else:
            raise InputError(f"--region {region}: unknown region (use {', '.join(REGION_PRESETS)} or a box)")
    else:
        arr = np.asarray(region)
        if arr.dtype == bool and arr.shape == (n,):
            mask = arr
        elif arr.shape == (6,):
            b = arr.astype(float)
            p = np.asarray(target.points)
            mask = np.all((p >= b[0::2]) & (p <= b[1::2]), axis=1)
        else:
            raise InputError(f"region: expected a preset name, 6 bounds or {n} booleans, got shape {arr.shape}")
    if mask.sum() < 10:
        raise InputError(f"region {region if isinstance(region, str) else 'box/mask'}: "
                         f"only {int(mask.sum())} target points selected")
    return mask


# -- fusion ------------------------------------------------------------------
@dataclass
class FusionTarget:
    """A CT surface made ready for fusion: region, normals, down-sampled cloud, features.

    Build it once with :func:`prepare_target` to fuse several scans to one surface.
    """

    surface: pv.PolyData
    mask: np.ndarray
    voxel_mm: float
    full: o3d.geometry.PointCloud
    down: o3d.geometry.PointCloud
    fpfh: reg.Feature
    seconds: float


def auto_voxel_mm(points_mm: np.ndarray) -> float:
    """Feature scale: 1/50 of the bounding-box diagonal, 0.2..4 mm."""
    diag = float(np.linalg.norm(np.ptp(np.asarray(points_mm), axis=0)))
    return float(np.clip(diag / 50.0, 0.2, 4.0))


def _fpfh(cloud: o3d.geometry.PointCloud, voxel_mm: float) -> reg.Feature:
    return reg.compute_fpfh_feature(cloud, o3d.geometry.KDTreeSearchParamHybrid(radius=5.0 * voxel_mm, max_nn=100))


def prepare_target(target: pv.PolyData, *, region: Region = None, volume: Optional[Volume] = None,
                   voxel_mm: Optional[float] = None) -> FusionTarget:
    """Select the region of a CT surface and compute its normals, samples and FPFH features.

    Parameters
    ----------
    target : pyvista.PolyData
        CT surface (triangles, patient LPS mm).
    region, volume
        See :func:`region_mask`.
    voxel_mm : float, optional
        Feature scale; default :func:`auto_voxel_mm` of the region.

    Raises
    ------
    InputError
        A target without faces, or a bad region.
    """
    t0 = time.perf_counter()
    if target.n_points < 10:
        raise InputError(f"the target surface has {target.n_points} points; fusion needs at least 10")
    normals = point_normals(target)
    if normals is None:
        raise InputError("the target surface has no faces (a CT surface mesh is expected)")
    mask = region_mask(target, region, volume=volume)
    points = np.asarray(target.points)[mask]
    voxel = float(voxel_mm) if voxel_mm else auto_voxel_mm(points)
    full = _cloud(points, normals[mask])
    down = _down(full, voxel)
    return FusionTarget(target, mask, voxel, full, down, _fpfh(down, voxel), time.perf_counter() - t0)


def _global_ransac(src, tgt: FusionTarget, seed: int) -> reg.RegistrationResult:
    o3d.utility.random.seed(int(seed))
    dist = 1.5 * tgt.voxel_mm
    return reg.registration_ransac_based_on_feature_matching(
        src, tgt.down, _fpfh(src, tgt.voxel_mm), tgt.fpfh, True, dist,
        reg.TransformationEstimationPointToPoint(False), 3,
        [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(dist)],
        reg.RANSACConvergenceCriteria(100000, 0.999))


def _best_global(src_down, tgt: FusionTarget, seed: int) -> np.ndarray:
    """RANSAC start pose; retried with flipped scan normals when the match is poor.

    FPFH depends on the normals' side; a scan saved inside-out (or with
    estimated normals pointing in) matches better flipped.
    """
    best = _global_ransac(src_down, tgt, seed)
    if best.fitness < 0.5:
        flipped = o3d.geometry.PointCloud(src_down)
        flipped.normals = o3d.utility.Vector3dVector(-np.asarray(src_down.normals))
        other = _global_ransac(flipped, tgt, seed)
        if other.fitness > best.fitness:
            best = other
    if best.fitness == 0:
        raise MeshError("fusion failed: no feature match between the scan and the target region "
                        "(wrong region or units?)")
    return np.asarray(best.transformation)


def _icp(src, tgt, max_dist_mm: float, init: np.ndarray, iterations: int, kernel_mm: Optional[float] = None):
    method = (reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=kernel_mm)) if kernel_mm
              else reg.TransformationEstimationPointToPlane())
    return reg.registration_icp(src, tgt, max_dist_mm, init, method,
                                reg.ICPConvergenceCriteria(1e-6, 1e-6, iterations))


def fuse_surface(
    scan: pv.PolyData,
    target: Union[pv.PolyData, FusionTarget],
    *,
    region: Region = None,
    volume: Optional[Volume] = None,
    landmarks: Optional[tuple[np.ndarray, np.ndarray]] = None,
    initial: Optional[Transform] = None,
    voxel_mm: Optional[float] = None,
    inlier_mm: float = 1.0,
    seed: int = 0,
    scan_frame: str = "scan",
    target_frame: str = "patient",
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> FusionResult:
    """Rigidly align a surface scan to a CT surface.

    Parameters
    ----------
    scan : pyvista.PolyData
        The scan (mm, any pose): a mesh, or points (normals are then estimated).
    target : pyvista.PolyData or FusionTarget
        CT surface in patient LPS mm (e.g. skin or teeth from ``mesh_labelmap``),
        or one prepared by :func:`prepare_target` (its region and scale are used).
    region, volume
        Part of the target the scan covers, see :func:`region_mask`.
    landmarks : (array (n, 3), array (n, 3)), optional
        n >= 3 corresponding points (scan frame, patient frame) giving the
        start pose instead of the feature search.
    initial : Transform, optional
        Start pose (scan -> patient) instead of the feature search.
    voxel_mm : float, optional
        Feature and down-sampling scale; default :func:`auto_voxel_mm` of the scan.
    inlier_mm : float
        Distance under which a vertex counts as matched (RMS, inlier fraction,
        robust kernel of the last ICP stage).
    seed : int
        Seed of open3d's RANSAC (same inputs and seed: same result).

    Returns
    -------
    FusionResult

    Raises
    ------
    InputError
        Too few points, bad landmarks or region.
    MeshError
        If no pose puts the scan near the target.
    """
    progress = progress or no_progress
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        timings[name] = now - t0
        check_cancelled(cancelled)
        return now

    if scan.n_points < 10:
        raise InputError(f"the scan has {scan.n_points} points; fusion needs at least 10")
    if inlier_mm <= 0:
        raise InputError(f"inlier_mm={inlier_mm}: must be positive")
    scan_pts = np.asarray(scan.points, dtype=float)
    t0 = time.perf_counter()
    progress(0.02, "Preparing the target surface")
    if not isinstance(target, FusionTarget):
        target = prepare_target(target, region=region, volume=volume,
                                voxel_mm=voxel_mm or auto_voxel_mm(scan_pts))
    elif region is not None or voxel_mm is not None:
        raise InputError("region and voxel_mm belong to prepare_target when the target is already prepared")
    voxel = target.voxel_mm
    # Point-to-plane ICP needs only the target's normals; the scan's serve FPFH
    # and are estimated on the down-sampled cloud when the scan has no faces.
    src_full = _cloud(scan_pts, point_normals(scan))
    src_down = _down(src_full, voxel)
    t0 = lap("prepare", t0)

    pairs = None
    if landmarks is not None:
        pairs = (np.asarray(landmarks[0], float).reshape(-1, 3), np.asarray(landmarks[1], float).reshape(-1, 3))
        start, method = rigid_from_landmarks(*pairs).matrix, "landmarks+icp"
    elif initial is not None:
        start, method = initial.matrix, "initial+icp"
    else:
        progress(0.1, "Global alignment (FPFH features + RANSAC)")
        start, method = _best_global(src_down, target, seed), "fpfh_ransac+icp"
    t0 = lap("global", t0)

    progress(0.5, "Refining (point-to-plane ICP)")
    coarse = _icp(src_down, target.down, 2.0 * voxel, start, 30)
    if coarse.fitness == 0:
        raise MeshError("fusion failed: after the start pose no scan point lies near the target surface")
    # Fine stages on a ~voxel/2 sample: thousands of points average the scan noise
    # out; all 100k would only cost time.
    src_fine = src_full.voxel_down_sample(max(voxel / 2.0, inlier_mm / 2.0))
    mid = _icp(src_fine, target.full, max(voxel, 2.0 * inlier_mm), coarse.transformation, 30)
    final = _icp(src_fine, target.full, 2.0 * inlier_mm, mid.transformation, 30, kernel_mm=inlier_mm)
    t0 = lap("icp", t0)

    progress(0.85, "Distance map")
    transform = Transform(np.asarray(final.transformation), scan_frame, target_frame)
    moved = scan.copy(deep=True)
    moved.points = transform.apply(scan_pts)
    if "Normals" in moved.point_data:
        moved.point_data["Normals"] = transform.apply_to_vectors(moved.point_data["Normals"])
    distances = surface_distances(np.asarray(moved.points), target.surface)
    moved.point_data["distance_mm"] = distances
    inliers = np.abs(distances) <= inlier_mm
    rms = float(np.sqrt(np.mean(distances[inliers] ** 2))) if inliers.any() else float("nan")
    lm_rms = None
    if pairs is not None:
        lm_rms = float(np.sqrt(np.mean(np.sum((transform.apply(pairs[0]) - pairs[1]) ** 2, axis=1))))
    lap("distances", t0)
    seconds = time.perf_counter() - t_start
    progress(1.0, f"RMS {rms:.3f} mm, {100 * inliers.mean():.1f}% of points within {inlier_mm:g} mm")
    log.info("fusion %s: rms %.3f mm, inliers %.3f, %.2f s", method, rms, inliers.mean(), seconds)
    return FusionResult(transform, rms, float(inliers.mean()), float(inlier_mm), distances, moved, method,
                        seconds, voxel, timings, lm_rms)
