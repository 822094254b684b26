"""Segmentation editing tools: pure functions on ``Volume``/``LabelMap``.

Every tool returns a new ``LabelMap`` (or, for brushes, a ``RegionChange``)
and leaves its input untouched; ``imaging.edit_history.EditHistory.apply``
writes the result into the edited label map and records it for undo.

This module holds region growing, islands, hole filling, label logic and the
osteotomy split; brushes and scissors live in ``imaging.segment_brush``,
mm-exact morphology in ``imaging.segment_morphology``. All are re-exported
here so callers import one module. Thresholding is ``segment_threshold``
(with ``HU_PRESETS``/``presets_for``) from ``imaging.segment``.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from imaging.errors import InputError, SegmentationError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.segment import HU_PRESETS, presets_for, segment_threshold
from imaging.segment_brush import (disk_change, orthographic_view_matrix, paint_disk, paint_sphere, scissors,
                                   sphere_change)
from imaging.segment_common import (Box, binary_mask, bounding_box, points_array, require_nonempty, require_same_grid,
                                    seed_indices, view_array_axis, voxel_volume_mm3, with_mask)
from imaging.segment_morphology import MORPH_OPS, dilate_mask, erode_mask, morphology
from imaging.volume import LabelInfo, LabelMap, Volume, default_color

__all__ = [
    "HU_PRESETS", "presets_for", "segment_threshold",
    "region_grow", "island_sizes", "keep_islands", "remove_islands", "fill_holes", "combine",
    "split_by_plane", "plane_distance_mm", "copy_labelmap",
    "sphere_change", "paint_sphere", "disk_change", "paint_disk", "scissors", "orthographic_view_matrix",
    "MORPH_OPS", "morphology", "dilate_mask", "erode_mask",
]

GROW_MODES = ("connected", "confidence")
ISLAND_MODES = ("largest", "min_size", "picked")
LOGIC_OPS = ("union", "subtract", "intersect")


# -- region growing -------------------------------------------------------------
def region_grow(
    volume: Volume,
    seed_lps,
    *,
    mode: str = "connected",
    hu_range: Optional[tuple[float, float]] = None,
    multiplier: float = 2.5,
    iterations: int = 4,
    radius_vox: int = 1,
    full_connectivity: bool = True,
    name: str = "region",
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> LabelMap:
    """Grow a label from one or more seed points.

    Parameters
    ----------
    volume : Volume
        CT in HU (or any scalar image).
    seed_lps : (3,) or (n, 3) array_like
        Seed point(s), LPS mm.
    mode : {"connected", "confidence"}
        ``connected``: voxels within ``hu_range`` connected to a seed.
        ``confidence``: ITK confidence connected: the range is the mean
        +/- ``multiplier`` standard deviations of the region, re-estimated
        ``iterations`` times starting from a cube of ``radius_vox`` around
        each seed; ``hu_range``, if given, further limits it.
    hu_range : (float, float), optional
        Inclusive HU range; required for ``connected``.
    multiplier, iterations, radius_vox
        Confidence-connected parameters (see ``mode``).
    full_connectivity : bool
        26-connectivity (as ``segment_threshold``'s largest component) for
        ``connected``; False for 6-connectivity. Confidence growing is
        always 6-connected (ITK).
    name : str
        Name of the new label (value 1).

    Returns
    -------
    LabelMap
        uint8 label on the volume's grid.

    Raises
    ------
    InputError
        Unknown mode, missing or inverted range, seed outside the image.
    SegmentationError
        If a seed lies outside ``hu_range`` or nothing grew.
    """
    progress = progress or no_progress
    if mode not in GROW_MODES:
        raise InputError(f"mode {mode!r}: use one of {', '.join(GROW_MODES)}")
    if hu_range is not None:
        lo, hi = float(hu_range[0]), float(hu_range[1])
        if not lo <= hi:
            raise InputError(f"--hu {lo:g} {hi:g}: the lower threshold must not exceed the upper one")
    elif mode == "connected":
        raise InputError("--hu: connected region growing needs an HU range (or a preset)")
    if multiplier <= 0 or iterations < 0 or radius_vox < 0:
        raise InputError(f"multiplier={multiplier}, iterations={iterations}, radius_vox={radius_vox}: "
                         "must be positive")
    seeds = seed_indices(volume.geometry, volume.array.shape, seed_lps)
    if hu_range is not None:
        for (k, j, i) in seeds:
            hu = float(volume.array[k, j, i])
            if not lo <= hu <= hi:
                raise SegmentationError(f"--seed at voxel ({i}, {j}, {k}) is {hu:g} HU, "
                                        f"outside {lo:g}..{hi:g} HU")
    check_cancelled(cancelled)
    progress(0.1, f"Growing ({mode}) from {len(seeds)} seed(s)")
    image = sitk.GetImageFromArray(volume.array)
    seed_list = [(i, j, k) for (k, j, i) in seeds]
    if mode == "connected":
        f = sitk.ConnectedThresholdImageFilter()
        f.SetLower(lo)
        f.SetUpper(hi)
        f.SetConnectivity(f.FullConnectivity if full_connectivity else f.FaceConnectivity)
    else:
        f = sitk.ConfidenceConnectedImageFilter()
        f.SetMultiplier(float(multiplier))
        f.SetNumberOfIterations(int(iterations))
        f.SetInitialNeighborhoodRadius(int(radius_vox))
    f.SetSeedList(seed_list)
    f.SetReplaceValue(1)
    mask = sitk.GetArrayFromImage(f.Execute(image)).astype(bool)
    if mode == "confidence" and hu_range is not None:
        mask &= (volume.array >= lo) & (volume.array <= hi)
    if not mask.any():
        raise SegmentationError(f"label {name!r}: region growing from the seed(s) found nothing")
    progress(1.0, f"Label {name!r}: {int(mask.sum())} voxels")
    return LabelMap(mask.astype(np.uint8), volume.geometry, {1: LabelInfo(name, default_color(name))})


# -- islands --------------------------------------------------------------------
def _components(mask: np.ndarray, full_connectivity: bool) -> tuple[np.ndarray, np.ndarray]:
    """Components numbered by decreasing size (1 = largest) and their voxel counts."""
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), full_connectivity)
    labels = sitk.GetArrayFromImage(sitk.RelabelComponent(cc, sortByObjectSize=True))
    sizes = np.bincount(labels.ravel())[1:]
    return labels, sizes


def island_sizes(labelmap: LabelMap, value: int = 1, *, full_connectivity: bool = True) -> np.ndarray:
    """Volumes of the connected pieces of a label, mm3, largest first.

    Parameters
    ----------
    labelmap : LabelMap
        The label volume.
    value : int
        Label value.
    full_connectivity : bool
        26-connectivity (True) or 6-connectivity.
    """
    mask = binary_mask(labelmap, value)
    box = bounding_box(mask)
    if box is None:
        return np.zeros(0)
    _labels, sizes = _components(mask[box], full_connectivity)
    return sizes * voxel_volume_mm3(labelmap.geometry)


def _select_islands(labelmap: LabelMap, mode: str, value: int, min_size_mm3: float, seed_lps,
                    count: int, full_connectivity: bool) -> tuple[np.ndarray, np.ndarray, Box]:
    """(component labels in the box, ids selected by the mode, box)."""
    if mode not in ISLAND_MODES:
        raise InputError(f"islands mode {mode!r}: use one of {', '.join(ISLAND_MODES)}")
    mask = binary_mask(labelmap, value)
    require_nonempty(mask, "islands")
    box = bounding_box(mask)
    labels, sizes = _components(mask[box], full_connectivity)
    ids = np.arange(1, sizes.size + 1)
    if mode == "largest":
        if count < 1:
            raise InputError(f"count={count}: keep at least one island")
        chosen = ids[:count]
    elif mode == "min_size":
        if min_size_mm3 < 0:
            raise InputError(f"--min-size-mm3 {min_size_mm3:g}: must not be negative")
        chosen = ids[sizes * voxel_volume_mm3(labelmap.geometry) >= min_size_mm3]
    else:
        if seed_lps is None:
            raise InputError("--seed: picking an island needs a point on it")
        chosen = []
        for (k, j, i) in seed_indices(labelmap.geometry, labelmap.array.shape, seed_lps):
            local = (k - box[0].start, j - box[1].start, i - box[2].start)
            inside = all(0 <= c < n for c, n in zip(local, labels.shape))
            if not inside or labels[local] == 0:
                raise SegmentationError(f"--seed at voxel ({i}, {j}, {k}) is not on the label")
            chosen.append(int(labels[local]))
        chosen = np.unique(chosen)
    return labels, np.asarray(chosen, dtype=labels.dtype), box


def keep_islands(labelmap: LabelMap, mode: str = "largest", *, value: int = 1, min_size_mm3: float = 0.0,
                 seed_lps=None, count: int = 1, full_connectivity: bool = True) -> LabelMap:
    """Keep some connected pieces of a label, remove the others.

    Parameters
    ----------
    labelmap : LabelMap
        The label volume.
    mode : {"largest", "min_size", "picked"}
        Keep the ``count`` largest pieces; the pieces of at least
        ``min_size_mm3``; or the piece(s) under ``seed_lps`` (LPS mm).
    value : int
        Label value edited; other values are left alone.
    full_connectivity : bool
        26-connectivity (True) or 6-connectivity.

    Returns
    -------
    LabelMap
        The edited copy.

    Raises
    ------
    InputError
        Unknown mode or bad parameter.
    SegmentationError
        If the label is empty or a seed is not on it.
    """
    labels, chosen, box = _select_islands(labelmap, mode, value, min_size_mm3, seed_lps, count, full_connectivity)
    mask = np.zeros(labelmap.array.shape, dtype=bool)
    mask[box] = np.isin(labels, chosen)
    return with_mask(labelmap, mask, value)


def remove_islands(labelmap: LabelMap, mode: str = "min_size", *, value: int = 1, min_size_mm3: float = 0.0,
                   seed_lps=None, count: int = 1, full_connectivity: bool = True) -> LabelMap:
    """Remove some connected pieces of a label.

    ``mode`` as in :func:`keep_islands`, inverted: ``largest`` removes the
    ``count`` largest pieces, ``min_size`` removes the pieces smaller than
    ``min_size_mm3`` (the same result as keeping the others), ``picked``
    removes the piece(s) under ``seed_lps``.

    Returns
    -------
    LabelMap
        The edited copy.
    """
    if mode == "min_size":
        return keep_islands(labelmap, "min_size", value=value, min_size_mm3=min_size_mm3,
                            full_connectivity=full_connectivity)
    labels, chosen, box = _select_islands(labelmap, mode, value, min_size_mm3, seed_lps, count, full_connectivity)
    mask = binary_mask(labelmap, value)
    mask[box] &= ~np.isin(labels, chosen)
    return with_mask(labelmap, mask, value)


# -- holes ------------------------------------------------------------------------
def fill_holes(labelmap: LabelMap, *, value: int = 1, view: Optional[str] = None) -> LabelMap:
    """Fill the holes of a label.

    Parameters
    ----------
    labelmap : LabelMap
        The label volume.
    value : int
        Label value.
    view : {None, "axial", "coronal", "sagittal"}
        None fills cavities enclosed in 3D (6-connected background, as
        ``segment_threshold``); a view name fills holes enclosed within each
        slice of that view (e.g. the marrow of a bone cut by the scan).

    Returns
    -------
    LabelMap
        The edited copy.
    """
    mask = binary_mask(labelmap, value)
    require_nonempty(mask, "fill holes")
    box = bounding_box(mask, (1, 1, 1))
    sub = mask[box]
    if view is None:
        filled = sitk.GetArrayFromImage(sitk.BinaryFillhole(
            sitk.GetImageFromArray(sub.astype(np.uint8)), fullyConnected=False, foregroundValue=1)).astype(bool)
    else:
        axis = view_array_axis(labelmap.geometry, view)
        filled = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(sub, axis, 0)], axis=0)
        filled = np.moveaxis(filled, 0, axis)
    mask[box] = filled
    return with_mask(labelmap, mask, value)


# -- label logic ------------------------------------------------------------------
def combine(a: LabelMap, b: LabelMap, op: str = "union", *, value_a: int = 1, value_b: int = 1) -> LabelMap:
    """Label logic: ``a`` union / minus / intersected with ``b``.

    Parameters
    ----------
    a, b : LabelMap
        Label maps on the same grid. The result keeps ``a``'s table.
    op : {"union", "subtract", "intersect"}
        Set operation on the voxels of ``value_a`` in ``a`` and ``value_b`` in ``b``.

    Returns
    -------
    LabelMap
        Copy of ``a`` with label ``value_a`` replaced by the result.

    Raises
    ------
    InputError
        Unknown operation or different grids.
    """
    if op not in LOGIC_OPS:
        raise InputError(f"--logic {op}: use one of {', '.join(LOGIC_OPS)}")
    require_same_grid(a, b, f"combine ({op})")
    ma, mb = binary_mask(a, value_a), binary_mask(b, value_b)
    mask = {"union": ma | mb, "subtract": ma & ~mb, "intersect": ma & mb}[op]
    return with_mask(a, mask, value_a)


# -- osteotomy ----------------------------------------------------------------------
def plane_distance_mm(labelmap: LabelMap, point_lps, normal_lps, box=None) -> np.ndarray:
    """Signed distance (mm) of voxel centres to a plane, positive on the normal's side.

    Parameters
    ----------
    labelmap : LabelMap
        Gives the grid.
    point_lps, normal_lps : (3,) array_like
        A point of the plane and its normal (any length), LPS mm.
    box : tuple of slices, optional
        Only this (z, y, x) box of the grid.

    Raises
    ------
    InputError
        If the normal has zero length.
    """
    point = points_array(point_lps, "--plane-point")[0]
    normal = points_array(normal_lps, "--plane-normal")[0]
    length = np.linalg.norm(normal)
    if length < 1e-9:
        raise InputError("--plane-normal: the normal must not be zero")
    normal = normal / length
    box = box or tuple(slice(0, n) for n in labelmap.array.shape)
    m = labelmap.geometry.index_to_lps()
    a = normal @ m[:3, :3]  # d = a . (i, j, k) + c
    c = float(normal @ (m[:3, 3] - point))
    k = np.arange(box[0].start, box[0].stop)[:, None, None]
    j = np.arange(box[1].start, box[1].stop)[None, :, None]
    i = np.arange(box[2].start, box[2].stop)[None, None, :]
    return a[0] * i + a[1] * j + a[2] * k + c


def split_by_plane(
    labelmap: LabelMap,
    point_lps,
    normal_lps,
    *,
    kerf_mm: float = 0.0,
    value: int = 1,
    names: Optional[Sequence[str]] = None,
) -> tuple[LabelMap, LabelMap]:
    """Cut a label into the parts on each side of a plane (osteotomy).

    Parameters
    ----------
    labelmap : LabelMap
        The label to cut.
    point_lps, normal_lps : (3,) array_like
        A point of the cut plane and its normal, LPS mm.
    kerf_mm : float
        Width of the saw cut removed between the parts: voxels whose centre
        is closer than ``kerf_mm / 2`` to the plane belong to neither part.
    value : int
        Label value cut.
    names : (str, str), optional
        Names of the parts (default: ``<label>_a`` on the normal's side,
        ``<label>_b`` on the other).

    Returns
    -------
    (LabelMap, LabelMap)
        Binary uint8 labels (value 1): the part the normal points to, then
        the other part.

    Raises
    ------
    InputError
        Zero normal or negative kerf.
    SegmentationError
        If the plane leaves one side empty.
    """
    if kerf_mm < 0:
        raise InputError(f"--kerf-mm {kerf_mm:g}: must not be negative")
    mask = binary_mask(labelmap, value)
    require_nonempty(mask, "split")
    box = bounding_box(mask)
    d = plane_distance_mm(labelmap, point_lps, normal_lps, box)
    sub = mask[box]
    keep = sub & (np.abs(d) >= kerf_mm / 2.0) if kerf_mm > 0 else sub
    base = labelmap.labels[value].name if value in labelmap.labels else "label"
    names = list(names) if names else [f"{base}_a", f"{base}_b"]
    if len(names) != 2 or not all(n and n.strip() for n in names):
        raise InputError(f"--out-labels {' '.join(names)}: give two names")
    parts = []
    for side, part_name in zip((keep & (d >= 0), keep & (d < 0)), names):
        if not side.any():
            raise SegmentationError(f"split: the plane leaves no voxel of {base!r} on the side of {part_name!r}")
        array = np.zeros(labelmap.array.shape, dtype=np.uint8)
        array[box] = side
        info = LabelInfo(part_name, default_color(part_name, len(parts)))
        parts.append(LabelMap(array, labelmap.geometry, {1: info}))
    return parts[0], parts[1]


def copy_labelmap(labelmap: LabelMap) -> LabelMap:
    """Independent copy (array and table) of a label map."""
    return LabelMap(labelmap.array.copy(), labelmap.geometry, copy.deepcopy(labelmap.labels))
