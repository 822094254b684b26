"""Small helpers shared by the segmentation editing tools.

Masks are boolean arrays indexed (z, y, x) like ``LabelMap.array``. Points are
LPS millimetres; the direction matrix is assumed orthonormal (as in DICOM), so
distances in the index frame scaled by the spacing equal distances in LPS.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np

from imaging.errors import InputError, SegmentationError
from imaging.volume import Geometry, LabelMap

#: Slice-view names and the patient axis (LPS column) each one looks along.
VIEW_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}

Box = tuple[slice, slice, slice]


def spacing_zyx(geometry: Geometry) -> tuple[float, float, float]:
    """Voxel spacing in array order (z, y, x), mm."""
    sx, sy, sz = geometry.spacing_xyz
    return (sz, sy, sx)


def voxel_volume_mm3(geometry: Geometry) -> float:
    """Volume of one voxel, mm3."""
    sx, sy, sz = geometry.spacing_xyz
    return float(sx * sy * sz)


def binary_mask(labelmap: LabelMap, value: int = 1) -> np.ndarray:
    """Boolean mask of one label value."""
    return labelmap.array == value


def with_mask(labelmap: LabelMap, mask: np.ndarray, value: int = 1) -> LabelMap:
    """Copy of ``labelmap`` where label ``value`` is replaced by ``mask``.

    Voxels of ``value`` outside the mask become 0; voxels inside the mask
    become ``value`` (over any other label). The label table is copied.
    """
    array = labelmap.array.copy()
    array[(array == value) & ~mask] = 0
    array[mask] = value
    return LabelMap(array, labelmap.geometry, copy.deepcopy(labelmap.labels))


def points_array(points_lps, what: str) -> np.ndarray:
    """One or several LPS points as an (n, 3) float array."""
    try:
        pts = np.atleast_2d(np.asarray(points_lps, dtype=float))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: not a point (X Y Z in mm): {points_lps!r}") from exc
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.isfinite(pts).all():
        raise InputError(f"{what}: expected X Y Z in LPS mm, got {points_lps!r}")
    return pts


def seed_indices(geometry: Geometry, shape_zyx: Sequence[int], points_lps, what: str = "--seed") -> list[tuple[int, int, int]]:
    """Nearest voxel (z, y, x) of each LPS point.

    Raises
    ------
    InputError
        If a point lies outside the grid.
    """
    pts = points_array(points_lps, what)
    ijk = np.rint(geometry.lps_to_index(pts)).astype(int)
    nz, ny, nx = shape_zyx
    out = []
    for p, (i, j, k) in zip(pts, ijk):
        if not (0 <= i < nx and 0 <= j < ny and 0 <= k < nz):
            raise InputError(f"{what} {' '.join(f'{c:g}' for c in p)}: outside the image "
                             f"(voxel {i}, {j}, {k} of {nx}x{ny}x{nz})")
        out.append((int(k), int(j), int(i)))
    return out


def bounding_box(mask: np.ndarray, pad: Sequence[int] = (0, 0, 0)) -> Optional[Box]:
    """Smallest box (z, y, x slices) holding the mask, grown by ``pad`` voxels and clipped."""
    shape = mask.shape
    found = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        found.append((int(hit[0]), int(hit[-1]) + 1))
        # The later axes only need the planes found so far: less to scan.
        mask = mask[(slice(None),) * axis + (slice(*found[-1]),)]
    return tuple(slice(max(lo - int(p), 0), min(hi + int(p), n))
                 for (lo, hi), p, n in zip(found, pad, shape))  # type: ignore[return-value]


def view_array_axis(geometry: Geometry, view: str) -> int:
    """Array axis (0 = z, 1 = y, 2 = x) of the slices shown in a view.

    The index axis whose direction is closest to the view's patient axis
    (S for axial, P for coronal, L for sagittal), so sagittal or oblique
    acquisitions are handled.
    """
    if view not in VIEW_AXES:
        raise InputError(f"view {view!r}: use one of {', '.join(VIEW_AXES)}")
    index_axis = int(np.argmax(np.abs(geometry.direction[VIEW_AXES[view], :])))  # 0 = i (x)
    return 2 - index_axis


def require_same_grid(a: LabelMap, b: LabelMap, what: str) -> None:
    """Raise ``InputError`` unless two label maps share shape and geometry."""
    if a.array.shape != b.array.shape or not a.geometry.same_grid(b.geometry):
        raise InputError(f"{what}: the label maps are on different grids "
                         f"({a.array.shape} vs {b.array.shape}); resample first")


def require_nonempty(mask: np.ndarray, what: str) -> None:
    """Raise ``SegmentationError`` if a mask has no voxel."""
    if not mask.any():
        raise SegmentationError(f"{what}: the label is empty")


def label_stats(labelmap: LabelMap, value: int = 1, before: Optional[np.ndarray] = None) -> dict:
    """Voxels, volume (mm3) and, given the previous array, changed voxels."""
    voxels = int(np.count_nonzero(labelmap.array == value))
    out = {"voxels": voxels, "volume_mm3": round(voxels * voxel_volume_mm3(labelmap.geometry), 3)}
    if before is not None:
        out["changed_voxels"] = int(np.count_nonzero(before != labelmap.array))
    return out
