"""Check a scan against the free memory before loading it; load it downsampled (no Qt).

The estimate comes from the DICOM headers alone (rows x columns x slices), so
the user hears about a too-large volume before anything is read. A
downsampled load keeps every k-th slice and averages k x k pixel blocks, one
chunk of slices at a time, so peak memory stays near the downsampled size.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from app.case import Case
from imaging.dicom import load_dicom_series
from imaging.dicom_series import SeriesInfo
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, no_progress
from imaging.volume import Geometry, Volume

#: Working bytes per voxel of an open CT: int16 voxels (2), the VTK texture and
#: volume-rendering copies (2 + 2) and float32 temporaries of a threshold or
#: region-growing step (4). Measured peaks of the GUI on the 28-slice Philips
#: series (14.7 MB of voxels) stay under this multiple.
WORKING_BYTES_PER_VOXEL = 10
#: Share of MemAvailable a volume may take: the app, VTK and Qt need the rest.
MEMORY_SHARE = 0.7
SLICES_PER_CHUNK = 16


def available_memory_bytes() -> int:
    """Memory the system can give us now (MemAvailable, bytes)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with distributed
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        raise


@dataclass
class MemoryCheck:
    """Outcome of :func:`check_memory` (sizes in bytes)."""

    needed_bytes: int
    available_bytes: int
    factor: int  # 1: load as is; k > 1: suggested downsampling factor

    @property
    def fits(self) -> bool:
        return self.factor == 1

    def message(self) -> str:
        """A sentence for the user (no patient data)."""
        need, have = self.needed_bytes / 2**30, self.available_bytes / 2**30
        if self.fits:
            return f"The volume needs about {need:.1f} GB; {have:.1f} GB free."
        return (f"This volume needs about {need:.1f} GB of memory but only {have:.1f} GB is free. "
                f"Load it downsampled by {self.factor} (every {self.factor}th slice, "
                f"{self.factor} x {self.factor} pixels averaged, about {need / self.factor**3:.2f} GB)?")


def check_memory(series: SeriesInfo, available_bytes: Optional[int] = None) -> MemoryCheck:
    """Compare the working size of ``series`` with the free memory.

    Parameters
    ----------
    series : SeriesInfo
        A scanned series (headers only).
    available_bytes : int, optional
        Free memory (bytes); default :func:`available_memory_bytes`.

    Returns
    -------
    MemoryCheck
        ``factor`` is the smallest integer k with (needed / k^3) within
        ``MEMORY_SHARE`` of the free memory.
    """
    voxels = int(series.rows) * int(series.columns) * len(series.slices)
    needed = voxels * WORKING_BYTES_PER_VOXEL
    available = available_memory_bytes() if available_bytes is None else int(available_bytes)
    budget = max(1.0, available * MEMORY_SHARE)
    factor = 1 if needed <= budget else max(2, math.ceil((needed / budget) ** (1 / 3)))
    return MemoryCheck(needed, available, factor)


def _shrink_inplane(block: np.ndarray, k: int) -> np.ndarray:
    n, rows, cols = block.shape
    r, c = rows // k * k, cols // k * k
    out = block[:, :r, :c].reshape(n, r // k, k, c // k, k).mean(axis=(2, 4), dtype=np.float32)
    return np.rint(out).astype(block.dtype) if np.issubdtype(block.dtype, np.integer) else out


def load_series_downsampled(
    series: SeriesInfo,
    factor: int,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> Volume:
    """Load ``series`` keeping every ``factor``-th slice and averaging factor x factor pixels.

    Parameters
    ----------
    series : SeriesInfo
        The scanned series.
    factor : int
        Downsampling factor k >= 1 along every axis.
    progress, cancelled : callable, optional
        ``progress(fraction, message)``; ``cancelled()`` is checked between chunks.

    Returns
    -------
    Volume
        Spacing multiplied by k; the origin moves to the centre of the first
        k x k pixel block (LPS mm), so physical positions are preserved.

    Raises
    ------
    InputError
        If ``factor`` < 1 or the pixel data cannot be decoded.
    concurrent.futures.CancelledError
        When ``cancelled()`` turns true.
    """
    from concurrent.futures import CancelledError

    progress = progress or no_progress
    k = int(factor)
    if k < 1:
        raise InputError(f"downsample factor {factor}: use an integer >= 1")
    if k == 1:
        return load_dicom_series(series, progress=progress, cancelled=cancelled)
    kept = dataclasses.replace(series, slices=series.slices[::k], warnings=list(series.warnings))
    if len(kept.slices) < 2:
        raise InputError(f"series {series.series_uid}: {len(series.slices)} slices cannot be downsampled by {k}")
    if kept.is_irregular():
        whole = load_dicom_series(kept, progress=progress, cancelled=cancelled)
        chunks, geometry0 = [_shrink_inplane(whole.array, k)], whole.geometry
    else:
        chunks = []
        for start in range(0, len(kept.slices), SLICES_PER_CHUNK):
            if cancelled is not None and cancelled():
                raise CancelledError()
            part = dataclasses.replace(kept, slices=kept.slices[start:start + SLICES_PER_CHUNK], warnings=[])
            chunks.append(_shrink_inplane(load_dicom_series(part).array, k))
            progress(min(1.0, (start + SLICES_PER_CHUNK) / len(kept.slices)), "Loading downsampled slices")
        geometry0 = kept.geometry()
    array = np.concatenate(chunks, axis=0)
    sx, sy, sz = geometry0.spacing_xyz
    direction = np.asarray(geometry0.direction, dtype=float).reshape(3, 3)
    shift = direction[:, 0] * sx * (k - 1) / 2 + direction[:, 1] * sy * (k - 1) / 2
    origin = tuple(float(v) for v in np.asarray(geometry0.origin_xyz) + shift)
    geometry = Geometry((sx * k, sy * k, sz), origin, direction)
    warnings = list(kept.warnings) + [f"downsampled by {k} to fit in memory: every {k}th slice, "
                                      f"{k} x {k} pixel blocks averaged"]
    return Volume(array, geometry, modality=series.modality, series_uid=series.series_uid,
                  description=series.description, warnings=warnings, kind=series.kind)


def import_dicom_downsampled(
    path: str | Path,
    factor: int,
    *,
    series_uid: Optional[str] = None,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> Case:
    """Like :func:`app.pipeline.import_scan` for a DICOM folder, downsampled by ``factor``.

    Raises
    ------
    InputError
        Missing folder, no series, bad factor.
    """
    from app.pipeline import import_scan

    return import_scan(path, series_uid=series_uid, downsample=factor, progress=progress, cancelled=cancelled)
