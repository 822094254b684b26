"""Threshold segmentation into named labels (SimpleITK)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

from imaging.errors import InputError, SegmentationError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.volume import LabelInfo, LabelMap, Volume, default_color

#: HU ranges for common tissues (InVesalius/Slicer-style presets).
HU_PRESETS: dict[str, tuple[float, float]] = {
    "bone": (226.0, 3071.0),
    "teeth": (1200.0, 3071.0),
    "skin": (-300.0, 3071.0),
    "soft_tissue": (-100.0, 200.0),
    "vessels": (150.0, 600.0),
}


def presets_for(volume: Volume) -> dict[str, tuple[float, float]]:
    """Threshold presets that suit the scan.

    Calibrated CT gets the fixed HU presets. Dental cone-beam CT grey values
    are not Hounsfield units (they vary by device, field of view and patient),
    so its presets come from the image: a three-class Otsu split (air / soft
    tissue / bone) of a subsample; teeth are the upper half of the bone range.
    """
    if volume.kind != "cbct":
        return dict(HU_PRESETS)
    sample = sitk.GetImageFromArray(np.ascontiguousarray(volume.array[::2, ::2, ::2]).astype(np.float32))
    otsu = sitk.OtsuMultipleThresholdsImageFilter()
    otsu.SetNumberOfThresholds(2)
    otsu.SetNumberOfHistogramBins(256)
    otsu.Execute(sample)
    low, high = sorted(otsu.GetThresholds())
    top = float(volume.array.max())
    return {
        "bone": (high, top),
        "teeth": (high + 0.5 * (top - high), top),
        "skin": (low, top),
        "soft_tissue": (low, high),
    }


def segment_threshold(
    volume: Volume,
    hu_range: tuple[float, float],
    *,
    name: str = "bone",
    keep_largest: bool = True,
    fill_holes: bool = True,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> LabelMap:
    """Binary label of voxels within ``hu_range``.

    Parameters
    ----------
    volume : Volume
        CT in HU.
    hu_range : (float, float)
        Inclusive lower and upper threshold, HU.
    name : str
        Label name stored in the label table (value 1).
    keep_largest : bool
        Keep only the largest 3D connected component (26-connectivity).
    fill_holes : bool
        Fill cavities fully enclosed by the label (3D).

    Returns
    -------
    LabelMap
        uint8 label (0 background, 1 ``name``) on the volume's grid.

    Raises
    ------
    InputError
        If the range is empty or inverted.
    SegmentationError
        If no voxel falls within the range.
    """
    progress = progress or no_progress
    lo, hi = float(hu_range[0]), float(hu_range[1])
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise InputError(f"--hu {lo:g} {hi:g}: the lower threshold must not exceed the upper one")
    progress(0.05, f"Thresholding {lo:g}..{hi:g} HU")
    mask = (volume.array >= lo) & (volume.array <= hi)
    if not mask.any():
        raise SegmentationError(
            f"label {name!r}: no voxel between {lo:g} and {hi:g} HU "
            f"(volume range {volume.array.min()}..{volume.array.max()})"
        )
    check_cancelled(cancelled)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    if keep_largest:
        progress(0.3, "Keeping the largest connected component")
        cc = sitk.ConnectedComponent(image, True)
        check_cancelled(cancelled)
        image = sitk.Cast(sitk.RelabelComponent(cc, sortByObjectSize=True) == 1, sitk.sitkUInt8)
    check_cancelled(cancelled)
    if fill_holes:
        progress(0.6, "Filling enclosed holes")
        image = sitk.BinaryFillhole(image, fullyConnected=False, foregroundValue=1)
    check_cancelled(cancelled)
    array = sitk.GetArrayFromImage(image).astype(np.uint8)
    progress(1.0, f"Label {name!r}: {int(array.sum())} voxels")
    return LabelMap(array, volume.geometry, {1: LabelInfo(name, default_color(name))})
