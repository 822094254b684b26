"""DICOM series import: scan a folder once (headers only), then load pixels.

File names mean nothing: series are grouped by SeriesInstanceUID and slices
ordered by ImagePositionPatient projected on the slice normal (the series
model and that ordering live in :mod:`imaging.dicom_series`). Pixel data is
decoded by SimpleITK (GDCM) so compressed transfer syntaxes (JPEG 2000...)
work; values are rescaled to HU. Geometry comes from the headers, never
from file order. Patient identifiers are not read into our types.
"""
from __future__ import annotations

import hashlib
from collections import Counter
import zipfile
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from imaging.archive import extract_zip
from imaging.dicom_header import HeaderValues
from imaging.dicom_multiframe import frame_headers, load_frames
from imaging.dicom_pixels import load_gdcm_pixels, load_native_pixels, native_pixel_recipe, pixel_data_problem
from imaging.dicom_series import SeriesInfo, SkippedFile, build_series
from imaging.errors import InputError
from imaging.regrid import regrid_slices
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.volume import Volume

log = logging.getLogger(__name__)
# ITK prints its own spacing warnings to stderr; ours are collected per series instead.
sitk.ProcessObject_SetGlobalWarningDisplay(False)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class DicomScan:
    """Result of scanning a folder: the series found and the files skipped."""

    series: list[SeriesInfo]
    skipped: list[SkippedFile]
    keepalive: Optional[object] = None

    def find(self, series_uid: Optional[str] = None) -> SeriesInfo:
        """The requested series, or the largest one when no UID is given."""
        if not self.series:
            if self.skipped:
                reasons = Counter(k.reason for k in self.skipped)
                reason, count = reasons.most_common(1)[0]
                raise InputError(f"no DICOM image series found: {len(self.skipped)} file(s) skipped "
                                 f"({count} x {reason})")
            raise InputError("no DICOM image series found")
        if series_uid is None:
            return max(self.series, key=lambda s: len(s.slices))
        for s in self.series:
            if s.series_uid == series_uid:
                return s
        raise InputError(f"--series {series_uid}: no such series in this folder")

    def to_json(self) -> dict:
        return {
            "series": [s.summary() for s in self.series],
            "skipped": [{"path": k.path, "reason": k.reason} for k in self.skipped],
        }


def _read_header(path: str) -> tuple[Optional[list[dict]], Optional[str]]:
    """Read one file's header; return (one dict per frame, None) or (None, reason)."""
    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            hv = HeaderValues(ds)
            problem, pixel_offset = pixel_data_problem(fh, ds, hv)
    except InvalidDicomError:
        return None, "not a DICOM file"
    except (OSError, EOFError) as exc:
        return None, f"unreadable ({exc.__class__.__name__})"
    except Exception as exc:  # pydicom raises many types on corrupt headers
        return None, f"corrupt DICOM header ({exc.__class__.__name__})"
    if problem:
        if str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS:
            return None, "DICOMDIR index (the images it lists are scanned directly)"
        return None, problem
    image_type = hv.text("ImageType").upper()
    if "LOCALIZER" in image_type or "SCOUT" in image_type:
        return None, "localizer/scout image"
    try:
        description = str(getattr(ds, "SeriesDescription", "") or "")
    except Exception:  # undecodable text must not lose the image
        description = ""
    try:
        uid = hv.text("SeriesInstanceUID")
        ipp = np.array(hv.numbers("ImagePositionPatient"))
        iop = np.array(hv.numbers("ImageOrientationPatient"))
        ps = hv.numbers("PixelSpacing")
        rows, cols = hv.us("Rows", 0), hv.us("Columns", 0)
        frames = int(hv.number("NumberOfFrames", 1))
        fields = {
            "uid": uid,
            "rows": rows,
            "columns": cols,
            "description": description,
            "uid_derived": not uid,
            "uid_source": "|".join(
                hv.text(k) for k in ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesNumber", "Modality",
                                     "SeriesDate", "SeriesTime")
            ) + "|" + description,
            "instance": int(hv.number("InstanceNumber", 0)),
            "tilt": hv.number("GantryDetectorTilt", 0.0),
            "modality": hv.text("Modality"),
            "stack_key": (hv.text("EchoNumbers"), hv.text("AcquisitionNumber"),
                          hv.text("TemporalPositionIdentifier")),
            "vendor": f"{hv.text('Manufacturer')} {hv.text('ManufacturerModelName')}".strip(),
        }
    except (ValueError, TypeError, KeyError):
        return None, "malformed image geometry"
    if rows > 0 and cols > 0 and frames > 1:
        try:
            return frame_headers(ds, fields), None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return None, f"multi-frame image: {exc}"
    if ipp.shape != (3,) or iop.shape != (6,) or len(ps) != 2 or rows <= 0 or cols <= 0:
        return None, "missing image geometry (position, orientation, pixel spacing or size)"
    return [dict(fields, **{
        "position": ipp,
        "orientation": iop.reshape(2, 3),
        "pixel_spacing": (ps[1], ps[0]),  # DICOM gives (row spacing, column spacing)
        "native": native_pixel_recipe(ds, hv, pixel_offset),
    })], None


def derive_series_uid(source: str) -> str:
    """Deterministic UID (2.25 form) for files whose SeriesInstanceUID is empty."""
    digest = hashlib.sha256(source.encode("utf-8", "replace")).hexdigest()
    return "2.25." + str(int(digest[:30], 16))


def _iter_files(folder: Path) -> list[str]:
    files = []
    for root, _dirs, names in os.walk(folder):
        for n in names:
            files.append(os.path.join(root, n))
    files.sort()
    return files


def scan_dicom_folder(
    path: str | os.PathLike,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> DicomScan:
    """Scan a folder recursively for DICOM image series (headers only).

    Parameters
    ----------
    path : path-like
        Folder (or a single file) to scan.
    progress, cancelled : callables, optional
        ``progress(fraction, message)``; ``cancelled() -> bool``.

    Returns
    -------
    DicomScan
        Series sorted along their normal, plus skipped files with reasons.

    Raises
    ------
    InputError
        If ``path`` does not exist.
    """
    progress = progress or no_progress
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    keepalive = None
    if root.is_file() and zipfile.is_zipfile(root):
        keepalive = extract_zip(root)
        root = Path(keepalive.name)
    files = [str(root)] if root.is_file() else _iter_files(root)
    groups: dict[str, list[dict]] = {}
    skipped: list[SkippedFile] = []
    n = max(len(files), 1)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for i, (f, (hdr, reason)) in enumerate(zip(files, pool.map(_read_header, files))):
            if i % 32 == 0:
                check_cancelled(cancelled)
                progress(i / n, f"Scanning headers {i}/{len(files)}")
            if hdr is None:
                skipped.append(SkippedFile(f, reason or "unknown"))
                continue
            for frame in hdr:
                frame["path"] = f
                if frame["uid_derived"]:
                    frame["uid"] = derive_series_uid(frame["uid_source"])
                groups.setdefault(frame["uid"], []).append(frame)
    series = []
    for uid, headers in groups.items():
        series.extend(build_series(uid, headers, skipped))
    series.sort(key=lambda s: -len(s.slices))
    progress(1.0, f"Found {len(series)} series, skipped {len(skipped)} files")
    scan = DicomScan(series, skipped)
    scan.keepalive = keepalive  # extracted zip lives as long as the scan
    return scan


#: Largest slice step, as a multiple of the median step, that is still interpolated.
#: Beyond it (three or more consecutive slices missing) resampling would invent anatomy.
MAX_GAP_RATIO = 4.0


def _check_gaps(series: SeriesInfo) -> None:
    steps = series.steps_mm()
    if steps.size < 2:
        return
    median = float(np.median(steps))
    worst = int(np.argmax(steps))
    if median > 0 and steps[worst] > MAX_GAP_RATIO * median:
        raise InputError(
            f"series {series.series_uid}: {steps[worst]:.1f} mm gap after slice {worst + 1} of "
            f"{len(series.slices)} is more than {MAX_GAP_RATIO:g}x the median step ({median:.2f} mm); "
            "refusing to interpolate across it (load the slices on either side as separate folders)"
        )


def load_dicom_series(
    series: SeriesInfo,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> Volume:
    """Load a scanned series as a ``Volume`` in HU (LPS mm).

    Slices are decoded in parallel chunks by SimpleITK (GDCM), so JPEG 2000
    and other compressed syntaxes work; rescale slope/intercept is applied.

    Raises
    ------
    InputError
        If pixel data cannot be decoded (names the file).
    """
    progress = progress or no_progress
    files = series.files
    if not files:
        raise InputError(f"series {series.series_uid}: no slices")
    _check_gaps(series)
    if any(s.frame >= 0 for s in series.slices):
        out = load_frames(series, progress, cancelled)
    elif all(s.native is not None for s in series.slices):
        out = load_native_pixels(series, progress, cancelled)
    else:
        out = load_gdcm_pixels(series, progress, cancelled)
    geometry = series.geometry()
    warnings = list(series.warnings)
    if series.is_irregular():
        positions = np.array([s.position for s in series.slices])
        out, geometry = regrid_slices(
            out, positions, series.orientation[0], series.orientation[1], series.pixel_spacing,
            cancelled=cancelled,
        )
        warnings.append(
            f"resampled onto a regular grid: {out.shape[0]} slices at {geometry.spacing_xyz[2]:.3f} mm, "
            "each input slice placed by its ImagePositionPatient"
        )
    return Volume(
        out,
        geometry,
        modality=series.modality,
        series_uid=series.series_uid,
        description=series.description,
        warnings=warnings,
        kind=series.kind,
    )


def load_dicom_folder(
    path: str | os.PathLike,
    series_uid: Optional[str] = None,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> Volume:
    """Scan ``path`` and load one series (the largest unless ``series_uid``)."""
    progress = progress or no_progress
    scan = scan_dicom_folder(path, progress=lambda f, m: progress(0.2 * f, m), cancelled=cancelled)
    series = scan.find(series_uid)
    return load_dicom_series(series, progress=lambda f, m: progress(0.2 + 0.8 * f, m), cancelled=cancelled)
