"""Resample an irregular slice stack (gantry tilt, uneven spacing) onto a regular grid.

Each slice is placed by its own ImagePositionPatient: in the orthonormal
frame (row, column, normal) slice i sits at normal distance d_i with an
in-plane shift (a_i, b_i) (non-zero under gantry tilt). Output slices are
spaced by the smallest input step, each interpolated linearly between the
two input slices that bracket it; the in-plane field of view grows to hold
every shifted slice. Nothing is averaged: no slice is moved off its position.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.volume import Geometry


def regrid_slices(
    array: np.ndarray,
    positions: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    pixel_spacing_xy: tuple[float, float],
    *,
    fill_value: Optional[float] = None,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> tuple[np.ndarray, Geometry]:
    """Resample slices at arbitrary positions onto a regular orthogonal grid.

    Parameters
    ----------
    array : ndarray (n, rows, cols)
        Slices ordered along the normal.
    positions : ndarray (n, 3)
        ImagePositionPatient of each slice, LPS mm.
    row_dir, col_dir : ndarray (3,)
        ImageOrientationPatient row and column directions.
    pixel_spacing_xy : (float, float)
        In-plane spacing along rows (x) and columns (y), mm.
    fill_value : float, optional
        Value outside the scanned region (default: the array minimum).

    Returns
    -------
    (ndarray, Geometry)
        The regular volume (same dtype) and its geometry (orthonormal).
    """
    progress = progress or no_progress
    row = np.asarray(row_dir, float)
    col = np.asarray(col_dir, float)
    normal = np.cross(row, col)
    rel = np.asarray(positions, float) - positions[0]
    a, b, d = rel @ row, rel @ col, rel @ normal
    steps = np.diff(d)
    if np.any(steps <= 0):
        raise ValueError("slices must be ordered along the normal without duplicates")
    sx, sy = pixel_spacing_xy
    dz = float(steps.min())
    # ceil: the last output slice reaches (or just passes) the last input slice
    nz = int(np.ceil((d[-1] - d[0]) / dz - 1e-6)) + 1
    n, rows, cols = array.shape
    x0, x1 = a.min(), a.max() + (cols - 1) * sx
    y0, y1 = b.min(), b.max() + (rows - 1) * sy
    nx = int(round((x1 - x0) / sx)) + 1
    ny = int(round((y1 - y0) / sy)) + 1
    fill = float(array.min()) if fill_value is None else float(fill_value)
    out = np.empty((nz, ny, nx), dtype=array.dtype)

    def placed(j: int) -> np.ndarray:
        # output pixel (Y, X) samples input pixel (Y + (y0 - b_j)/sy, X + (x0 - a_j)/sx)
        offset = ((y0 - b[j]) / sy, (x0 - a[j]) / sx)
        return ndimage.affine_transform(
            array[j].astype(np.float32), [1.0, 1.0], offset=offset,
            output_shape=(ny, nx), order=1, cval=fill,
        )

    cache: dict[int, np.ndarray] = {}
    for k in range(nz):
        check_cancelled(cancelled)
        dk = k * dz
        i = int(np.clip(np.searchsorted(d, dk, side="right") - 1, 0, n - 2)) if n > 1 else 0
        for j in list(cache):
            if j < i:
                del cache[j]
        if n == 1:
            value = placed(0)
        else:
            w = float(np.clip((dk - d[i]) / (d[i + 1] - d[i]), 0.0, 1.0))
            lo = cache.setdefault(i, placed(i))
            hi = cache.setdefault(i + 1, placed(i + 1))
            value = (1.0 - w) * lo + w * hi
        if np.issubdtype(out.dtype, np.integer):
            value = np.rint(value)
        out[k] = value.astype(out.dtype)
        progress((k + 1) / nz, f"Resampling slice {k + 1}/{nz}")
    origin = positions[0] + x0 * row + y0 * col
    geometry = Geometry((sx, sy, dz), tuple(origin), np.column_stack([row, col, normal]))
    return out, geometry
