"""Enhanced (multi-frame) CT/MR: one file, many frames, geometry per frame.

Each frame's position, orientation, pixel spacing and rescale come from the
per-frame functional groups, falling back to the shared groups. Frames then
join the ordinary slice machinery (ordering along the normal, tilt and
spacing checks), each remembered as (file, frame index).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import pydicom

from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled

if TYPE_CHECKING:
    from imaging.dicom_series import SeriesInfo


def _group(ds, per_frame, name: str):
    """First item of functional group ``name`` for a frame (per-frame, then shared)."""
    for source in (per_frame, _shared(ds)):
        if source is not None and name in source and len(source[name].value):
            return source[name].value[0]
    return None


def _shared(ds):
    seq = ds.get("SharedFunctionalGroupsSequence")
    return seq[0] if seq else None


def frame_headers(ds, common: dict) -> list[dict]:
    """One header dict per frame (same keys as a single-frame slice header).

    Raises
    ------
    ValueError
        If a frame lacks position, orientation or pixel spacing.
    """
    n = int(ds.NumberOfFrames)
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is None or len(per) != n:
        raise ValueError("multi-frame image without per-frame functional groups")
    headers = []
    for i, item in enumerate(per):
        pos, ori, meas = (_group(ds, item, k) for k in
                          ("PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence"))
        if pos is None or ori is None or meas is None:
            raise ValueError(f"frame {i + 1} has no position, orientation or pixel spacing")
        ps = [float(v) for v in meas.PixelSpacing]
        transform = _group(ds, item, "PixelValueTransformationSequence") or ds
        slope = float(getattr(transform, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(transform, "RescaleIntercept", 0.0) or 0.0)
        headers.append(dict(
            common,
            position=np.array([float(v) for v in pos.ImagePositionPatient]),
            orientation=np.array([float(v) for v in ori.ImageOrientationPatient]).reshape(2, 3),
            pixel_spacing=(ps[1], ps[0]),
            frame=i,
            rescale=(slope, intercept),
            native=None,
        ))
    return headers


def load_frames(series: "SeriesInfo", progress: ProgressFn, cancelled: Optional[CancelledFn]) -> np.ndarray:
    """Decode the frames of a multi-frame series in slice order, rescaled."""
    n = len(series.slices)
    values = np.empty((n, series.rows, series.columns), dtype=np.float64)
    by_file: dict[str, list[int]] = {}
    for k, s in enumerate(series.slices):
        by_file.setdefault(s.path, []).append(k)
    done = 0
    for path, ks in by_file.items():
        check_cancelled(cancelled)
        try:
            pixels = pydicom.dcmread(path).pixel_array
        except Exception as exc:  # decoder plugins raise many types
            raise InputError(f"{path}: cannot decode multi-frame pixel data ({exc.__class__.__name__})") from exc
        pixels = pixels.reshape((-1, series.rows, series.columns))
        for k in ks:
            s = series.slices[k]
            slope, intercept = s.rescale
            values[k] = pixels[s.frame] * slope + intercept
            done += 1
        progress(done / n, f"Loading frames {done}/{n}")
    if np.all(values == np.rint(values)) and values.min() >= -32768 and values.max() <= 32767:
        return values.astype(np.int16)
    return values.astype(np.float32)
