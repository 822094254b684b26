"""Paint/erase brushes (3D sphere, 2D disk in a slice view) and 3D scissors.

Brush sizes are radii in mm, exact on anisotropic voxels: a voxel is painted
when its centre lies within the radius of the brush centre (LPS mm, any
sub-voxel position). ``*_change`` functions return only the edited box as a
``RegionChange`` (what ``EditHistory.apply`` records cheaply while the user
drags a brush); ``paint_*`` return a whole edited copy.
"""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np
from matplotlib.path import Path as PolygonPath

from imaging.edit_history import RegionChange
from imaging.errors import InputError
from imaging.segment_common import VIEW_AXES, bounding_box, points_array, spacing_zyx, view_array_axis
from imaging.volume import LabelMap

_CHUNK = 1 << 21  # voxels projected at once by scissors (bounds temporary memory)


def _center_zyx(labelmap: LabelMap, center_lps) -> np.ndarray:
    ijk = labelmap.geometry.lps_to_index(points_array(center_lps, "brush centre"))[0]
    return ijk[::-1]


def _check_radius(radius_mm: float) -> None:
    if not np.isfinite(radius_mm) or radius_mm <= 0:
        raise InputError(f"--radius-mm {radius_mm:g}: must be positive")


def _brush_box(labelmap: LabelMap, center_zyx: np.ndarray, radius_mm: float, axes) -> Optional[tuple]:
    """Index box around the brush on ``axes`` (others: one slice), clipped; None if off the grid."""
    sp = spacing_zyx(labelmap.geometry)
    box = []
    for a, n in enumerate(labelmap.array.shape):
        if a in axes:
            lo = int(np.ceil(center_zyx[a] - radius_mm / sp[a] - 1e-9))
            hi = int(np.floor(center_zyx[a] + radius_mm / sp[a] + 1e-9)) + 1
        else:
            lo = int(np.rint(center_zyx[a]))
            hi = lo + 1
        lo, hi = max(lo, 0), min(hi, n)
        if lo >= hi:
            return None
        box.append(slice(lo, hi))
    return tuple(box)


def _brush_change(labelmap: LabelMap, center_lps, radius_mm: float, axes, value: int,
                  editable: Optional[int]) -> Optional[RegionChange]:
    _check_radius(radius_mm)
    c = _center_zyx(labelmap, center_lps)
    box = _brush_box(labelmap, c, radius_mm, axes)
    if box is None:
        return None
    sp = spacing_zyx(labelmap.geometry)
    d2 = np.zeros(tuple(s.stop - s.start for s in box))
    for a in axes:
        shape = [1, 1, 1]
        shape[a] = -1
        d2 = d2 + (((np.arange(box[a].start, box[a].stop) - c[a]) * sp[a]) ** 2).reshape(shape)
    inside = d2 <= radius_mm * radius_mm * (1 + 1e-9)
    block = labelmap.array[box].copy()
    if editable is not None:
        inside &= block == editable
    block[inside] = value
    return RegionChange(tuple(s.start for s in box), block)


def sphere_change(labelmap: LabelMap, center_lps, radius_mm: float, *, value: int = 1,
                  editable: Optional[int] = None) -> Optional[RegionChange]:
    """Box edited by a 3D spherical brush stroke.

    Parameters
    ----------
    labelmap : LabelMap
        The painted label map (not modified).
    center_lps : (3,) array_like
        Brush centre, LPS mm.
    radius_mm : float
        Brush radius, mm.
    value : int
        Value painted; 0 erases.
    editable : int, optional
        Only voxels currently of this value are changed (e.g. 0: paint only
        into background; the label value with ``value=0``: erase only it).

    Returns
    -------
    RegionChange or None
        New values of the brush's box; None if the sphere misses the grid.

    Raises
    ------
    InputError
        If the radius is not positive.
    """
    return _brush_change(labelmap, center_lps, radius_mm, (0, 1, 2), value, editable)


def disk_change(labelmap: LabelMap, center_lps, radius_mm: float, *, axis: str = "axial", value: int = 1,
                editable: Optional[int] = None) -> Optional[RegionChange]:
    """Box edited by a 2D disk brush in the slice of a view through ``center_lps``.

    Parameters as :func:`sphere_change`, plus ``axis``, the slice view
    (``"axial"``, ``"coronal"`` or ``"sagittal"``): the disk lies in the
    slice of that view nearest to the centre.
    """
    normal_axis = view_array_axis(labelmap.geometry, axis)
    in_plane = tuple(a for a in range(3) if a != normal_axis)
    return _brush_change(labelmap, center_lps, radius_mm, in_plane, value, editable)


def _painted(labelmap: LabelMap, change: Optional[RegionChange]) -> LabelMap:
    out = LabelMap(labelmap.array.copy(), labelmap.geometry, copy.deepcopy(labelmap.labels))
    if change is not None:
        change.apply_to(out.array)
    return out


def paint_sphere(labelmap: LabelMap, center_lps, radius_mm: float, *, value: int = 1,
                 editable: Optional[int] = None) -> LabelMap:
    """Copy of ``labelmap`` painted with a 3D sphere (``value=0`` erases); see :func:`sphere_change`."""
    return _painted(labelmap, sphere_change(labelmap, center_lps, radius_mm, value=value, editable=editable))


def paint_disk(labelmap: LabelMap, center_lps, radius_mm: float, *, axis: str = "axial", value: int = 1,
               editable: Optional[int] = None) -> LabelMap:
    """Copy of ``labelmap`` painted with a 2D disk in one slice; see :func:`disk_change`."""
    return _painted(labelmap, disk_change(labelmap, center_lps, radius_mm, axis=axis, value=value,
                                          editable=editable))


# -- scissors -----------------------------------------------------------------------
def orthographic_view_matrix(view: str = "axial", center_lps=(0.0, 0.0, 0.0), half_width_mm: float = 1.0) -> np.ndarray:
    """World (LPS mm) to display matrix of an orthographic slice-aligned view.

    Display x, y are mm from ``center_lps`` divided by ``half_width_mm``
    along (L, A) for axial, (L, S) for coronal and (A, S) for sagittal;
    display z is the depth along the viewing direction.

    Returns
    -------
    numpy.ndarray
        4x4 matrix for :func:`scissors`.
    """
    if view not in VIEW_AXES:
        raise InputError(f"--view {view}: use one of {', '.join(VIEW_AXES)}")
    rows = {"axial": ([1, 0, 0], [0, -1, 0], [0, 0, 1]),
            "coronal": ([1, 0, 0], [0, 0, 1], [0, -1, 0]),
            "sagittal": ([0, -1, 0], [0, 0, 1], [1, 0, 0])}[view]
    m = np.eye(4)
    m[:3, :3] = np.array(rows, dtype=float) / float(half_width_mm)
    m[:3, 3] = -m[:3, :3] @ np.asarray(center_lps, dtype=float)
    return m


def _project(p: np.ndarray, k: np.ndarray, j: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Display x, y of voxel indices and whether they lie in front of the camera (w > 0)."""
    h = [p[r, 0] * i + p[r, 1] * j + p[r, 2] * k + p[r, 3] for r in (0, 1, 3)]
    w = h[2]
    valid = w > 1e-12
    safe = np.where(valid, w, 1.0)
    return h[0] / safe, h[1] / safe, valid


def _inside(path: PolygonPath, bounds, x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    (x0, y0), (x1, y1) = bounds
    cand = valid & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    out = np.zeros(x.shape, dtype=bool)
    if cand.any():
        out[cand] = path.contains_points(np.column_stack([x[cand], y[cand]]))
    return out


def scissors(labelmap: LabelMap, polygon_display_xy, view_matrix_4x4, *, mode: str = "inside",
             erase: bool = True, value: int = 1) -> LabelMap:
    """Cut (or fill) a label through the whole depth along the view direction.

    A voxel is selected when the projection of its centre falls inside the
    polygon drawn on the screen (``mode="inside"``) or outside it
    (``"outside"``). Voxels behind a perspective camera (w <= 0) are never
    inside.

    Parameters
    ----------
    labelmap : LabelMap
        The edited label map (not modified).
    polygon_display_xy : (n, 2) array_like
        Polygon vertices in display coordinates (n >= 3, closed implicitly).
    view_matrix_4x4 : (4, 4) array_like
        Maps homogeneous LPS mm to display coordinates (divided by w), e.g.
        a VTK camera's composite projection matrix or
        :func:`orthographic_view_matrix`.
    mode : {"inside", "outside"}
        Which side of the polygon is selected.
    erase : bool
        True: selected voxels of ``value`` become 0. False: selected voxels
        become ``value`` (fill).
    value : int
        Label value.

    Returns
    -------
    LabelMap
        The edited copy.

    Raises
    ------
    InputError
        Bad polygon, matrix or mode.
    """
    if mode not in ("inside", "outside"):
        raise InputError(f"scissors mode {mode!r}: use 'inside' or 'outside'")
    poly = np.asarray(polygon_display_xy, dtype=float)
    if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 3 or not np.isfinite(poly).all():
        raise InputError("scissors: the polygon needs at least 3 (x, y) display points")
    view = np.asarray(view_matrix_4x4, dtype=float)
    if view.shape != (4, 4) or not np.isfinite(view).all():
        raise InputError("scissors: the view matrix must be a finite 4x4 matrix")
    p = view @ labelmap.geometry.index_to_lps()
    path = PolygonPath(poly)
    bounds = (poly.min(axis=0), poly.max(axis=0))
    out = LabelMap(labelmap.array.copy(), labelmap.geometry, copy.deepcopy(labelmap.labels))
    array = out.array
    if erase:
        box = bounding_box(array == value)
        if box is None:
            return out
        sub = array[box]
        k, j, i = np.nonzero(sub == value)
        offset = [s.start for s in box]
        for s in range(0, k.size, _CHUNK):
            kk, jj, ii = k[s:s + _CHUNK], j[s:s + _CHUNK], i[s:s + _CHUNK]
            x, y, valid = _project(p, kk + offset[0], jj + offset[1], ii + offset[2])
            sel = _inside(path, bounds, x, y, valid)
            if mode == "outside":
                sel = ~sel
            sub[kk[sel], jj[sel], ii[sel]] = 0
        return out
    nz, ny, nx = array.shape
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    for kz in range(nz):
        x, y, valid = _project(p, np.full(jj.shape, kz), jj, ii)
        sel = _inside(path, bounds, x, y, valid)
        if mode == "outside":
            sel = ~sel
        array[kz][sel] = value
    return out
