"""Morphology in millimetres on anisotropic voxels.

A label is the solid made of its voxels (boxes of one spacing around each
voxel centre). Dilation by r mm adds every voxel whose centre lies within r
mm (Euclidean) of that solid; erosion by r keeps the voxels whose centre is
farther than r from the background's solid. This is exact continuous
morphology of the voxel solid, sampled at voxel centres: a face grows by r
rounded to whole voxels (on 1.5 mm slices, 1 mm adds one slice up and down,
where "centre within r of a label voxel centre" would add none and a 1 mm
hollow wall would have holes). Everything else is built from these two.
Voxels beyond the image are unknown: a label cut by the edge of the scan is
not eroded from that edge.

The distance to the voxel solid is a sum of per-axis terms
``(max(|d| - 1/2, 0) * spacing)^2`` for an index offset d, so it is computed
exactly by three 1D min-plus passes (a separable distance transform), each a
few shifted ``numpy.minimum`` calls per voxel of radius, capped at r.
Work is confined to the label's bounding box plus the radius.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.segment_common import binary_mask, bounding_box, require_nonempty, spacing_zyx, with_mask
from imaging.volume import LabelMap

MORPH_OPS = ("open", "close", "dilate", "erode", "margin", "hollow")
SHELLS = ("inside", "outside", "centered")
#: Relative slack on r^2 so voxels exactly at the radius count despite float32 sums.
_TOL = 1e-5


DISTANCES = ("solid", "centres")


def _half(distance: str) -> float:
    if distance not in DISTANCES:
        raise InputError(f"distance {distance!r}: use one of {', '.join(DISTANCES)}")
    return 0.5 if distance == "solid" else 0.0


def reach_voxels(radius_mm: float, spacing_mm: float, half: float = 0.5) -> int:
    """Largest index offset along one axis still within ``radius_mm`` (half = 0.5: of a voxel's box)."""
    return int(np.floor(radius_mm * (1 + _TOL) / spacing_mm + half))


def _dilate_block(mask: np.ndarray, radius_mm: float, sp, half: float) -> np.ndarray:
    """Exact dilation within the block (nothing is assumed beyond it)."""
    if not mask.any():
        return np.zeros_like(mask)
    cap = np.float32(radius_mm * radius_mm * (1 + _TOL))
    far = np.float32(np.inf)
    dist = np.where(mask, np.float32(0), far)
    for axis in (2, 1, 0):  # x first: rows are contiguous
        reach = reach_voxels(radius_mm, sp[axis], half)
        if reach == 0:
            continue
        src = dist
        dist = src.copy()
        for d in range(1, min(reach, mask.shape[axis] - 1) + 1):
            cost = np.float32(((d - half) * sp[axis]) ** 2)
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, -d), slice(d, None)
            np.minimum(dist[tuple(hi)], src[tuple(lo)] + cost, out=dist[tuple(hi)])
            np.minimum(dist[tuple(lo)], src[tuple(hi)] + cost, out=dist[tuple(lo)])
    return dist <= cap


def _check_radius(radius_mm: float) -> float:
    if not np.isfinite(radius_mm) or radius_mm < 0:
        raise InputError(f"--radius-mm {radius_mm:g}: must be a non-negative number")
    return float(radius_mm)


def dilate_mask(mask: np.ndarray, radius_mm: float, spacing_zyx_mm, *, distance: str = "solid") -> np.ndarray:
    """Voxels within ``radius_mm`` of a mask (exact, mm).

    Parameters
    ----------
    mask : numpy.ndarray of bool
        (z, y, x) mask.
    radius_mm : float
        Dilation radius, mm (>= 0).
    spacing_zyx_mm : (3,) floats
        Voxel spacing in array order, mm.
    distance : {"solid", "centres"}
        ``solid``: a voxel's centre within r of the mask's voxel solid (see
        the module docstring); ``centres``: within r of a mask voxel centre
        (``distance_transform_edt(~mask, sampling) <= r``).

    Returns
    -------
    numpy.ndarray of bool
        New mask.
    """
    r = _check_radius(radius_mm)
    half = _half(distance)
    mask = np.asarray(mask, dtype=bool)
    if r == 0:
        return mask.copy()
    sp = [float(s) for s in spacing_zyx_mm]
    box = bounding_box(mask, [reach_voxels(r, s, half) + 1 for s in sp])
    out = np.zeros_like(mask)
    if box is not None:
        out[box] = _dilate_block(mask[box], r, sp, half)
    return out


def erode_mask(mask: np.ndarray, radius_mm: float, spacing_zyx_mm, *, distance: str = "solid") -> np.ndarray:
    """Voxels of a mask farther than ``radius_mm`` from the background (exact, mm).

    Parameters as :func:`dilate_mask` (the distance is to the background's
    solid or voxel centres). Voxels beyond the array are not background.
    """
    r = _check_radius(radius_mm)
    half = _half(distance)
    mask = np.asarray(mask, dtype=bool)
    if r == 0:
        return mask.copy()
    sp = [float(s) for s in spacing_zyx_mm]
    # A one-voxel background rim is enough: the nearest background voxel of any
    # point in the box is either inside the box or no nearer than the rim.
    box = bounding_box(mask, (1, 1, 1))
    out = np.zeros_like(mask)
    if box is not None:
        sub = mask[box]
        out[box] = sub & ~_dilate_block(~sub, r, sp, half)
    return out


def morphology(
    labelmap: LabelMap,
    op: str,
    radius_mm: float,
    *,
    value: int = 1,
    shell: str = "inside",
    distance: str = "solid",
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> LabelMap:
    """Morphological edit of a label with an exact ball of ``radius_mm``.

    Parameters
    ----------
    labelmap : LabelMap
        The label volume (not modified).
    op : {"open", "close", "dilate", "erode", "margin", "hollow"}
        ``open`` = erode then dilate (removes parts thinner than 2r);
        ``close`` = dilate then erode (fills gaps narrower than 2r);
        ``margin`` grows by ``radius_mm`` or, if negative, shrinks by it;
        ``hollow`` keeps a wall of thickness ``radius_mm`` (see ``shell``).
    radius_mm : float
        Ball radius (margin: signed distance; hollow: wall thickness), mm.
    value : int
        Label value edited; other values are left alone (but dilation
        paints over them).
    shell : {"inside", "outside", "centered"}
        For ``hollow``: the wall lies inside the label surface, outside it,
        or half each side.
    distance : {"solid", "centres"}
        Distance model (see :func:`dilate_mask`); ``solid`` by default
        because it rounds each face's move to the nearest voxel instead of
        down (a 2 mm margin on 1.5 mm slices moves 1 slice either way, but a
        2.9 mm one moves 2 slices, not 1) and keeps thin hollow walls closed.

    Returns
    -------
    LabelMap
        The edited copy.

    Raises
    ------
    InputError
        Unknown op/shell/distance, or a negative radius (except for margin).
    SegmentationError
        If the label is empty.
    """
    progress = progress or no_progress
    if op not in MORPH_OPS:
        raise InputError(f"--morph {op}: use one of {', '.join(MORPH_OPS)}")
    if shell not in SHELLS:
        raise InputError(f"--shell {shell}: use one of {', '.join(SHELLS)}")
    _half(distance)
    if op == "margin" and np.isfinite(radius_mm) and radius_mm < 0:
        op, radius_mm = "erode", -radius_mm
    elif op == "margin":
        op = "dilate"
    r = _check_radius(radius_mm)
    mask = binary_mask(labelmap, value)
    require_nonempty(mask, f"morphology {op}")
    sp = spacing_zyx(labelmap.geometry)

    def dilate(m, radius):
        return dilate_mask(m, radius, sp, distance=distance)

    def erode(m, radius):
        return erode_mask(m, radius, sp, distance=distance)

    progress(0.1, f"{op} {r:g} mm")
    if op == "dilate":
        out = dilate(mask, r)
    elif op == "erode":
        out = erode(mask, r)
    elif op == "open":
        eroded = erode(mask, r)
        check_cancelled(cancelled)
        progress(0.5, "open: dilating")
        out = dilate(eroded, r)
    elif op == "close":
        dilated = dilate(mask, r)
        check_cancelled(cancelled)
        progress(0.5, "close: eroding")
        out = erode(dilated, r)
    elif shell == "inside":
        out = mask & ~erode(mask, r)
    elif shell == "outside":
        out = dilate(mask, r) & ~mask
    else:
        out = dilate(mask, r / 2) & ~erode(mask, r / 2)
    check_cancelled(cancelled)
    progress(1.0, f"{op}: {int(out.sum())} voxels")
    return with_mask(labelmap, out, value)
