"""Synthetic CT phantoms written as real DICOM series (answers known exactly).

Used by tests and benchmarks: a water cylinder with a bone sphere of known
centre and radius, written slice by slice with pydicom under random names.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


@dataclass
class SpherePhantom:
    """Geometry of the phantom, LPS mm."""

    shape_zyx: tuple[int, int, int] = (80, 128, 128)
    spacing_xyz: tuple[float, float, float] = (0.8, 0.8, 1.25)
    origin_xyz: tuple[float, float, float] = (-51.2, -40.0, 100.0)
    center_xyz: tuple[float, float, float] = (3.7, 12.4, 148.9)
    radius_mm: float = 18.0
    bone_hu: int = 1200
    tissue_hu: int = 40
    air_hu: int = -1000

    def volume_array(self) -> np.ndarray:
        """HU array (z, y, x), partial-volume free (voxel centres decide)."""
        nz, ny, nx = self.shape_zyx
        sx, sy, sz = self.spacing_xyz
        ox, oy, oz = self.origin_xyz
        z = oz + sz * np.arange(nz)[:, None, None]
        y = oy + sy * np.arange(ny)[None, :, None]
        x = ox + sx * np.arange(nx)[None, None, :]
        cx, cy, cz = self.center_xyz
        r2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        body = (x - cx) ** 2 + (y - cy) ** 2 <= (0.45 * nx * sx) ** 2
        arr = np.broadcast_to(np.where(body, self.tissue_hu, self.air_hu), (nz, ny, nx)).astype(np.int16, order="C")
        arr[r2 <= self.radius_mm**2] = self.bone_hu
        return arr

    def sample(self, points_lps: np.ndarray) -> np.ndarray:
        """HU at arbitrary LPS points (..., 3): bone sphere in a tissue ball, air outside."""
        d = np.linalg.norm(points_lps - np.asarray(self.center_xyz), axis=-1)
        out = np.where(d <= 2.2 * self.radius_mm, self.tissue_hu, self.air_hu)
        return np.where(d <= self.radius_mm, self.bone_hu, out).astype(np.int16)

    @property
    def sphere_volume_mm3(self) -> float:
        return 4.0 / 3.0 * np.pi * self.radius_mm**3


def write_oriented_series(
    phantom: SpherePhantom,
    folder: str | os.PathLike,
    *,
    size_rc: tuple[int, int],
    n_slices: int,
    pixel_spacing_xy: tuple[float, float],
    slice_step_mm: float,
    row_dir,
    col_dir,
    first_position,
    extra: Optional[dict] = None,
    slope: float = 1.0,
    intercept: float = -1024.0,
    signed: bool = False,
    transfer_syntax: Optional[str] = None,
    seed: int = 0,
) -> list[Path]:
    """Write the phantom sampled on any slice orientation (sagittal, oblique...).

    Slice k sits at ``first_position + k * slice_step_mm * normal`` (a negative
    step stacks against the normal); pixel (r, c) at ``+ c*sx*row + r*sy*col``.
    ``extra`` tags are set on every slice; ``transfer_syntax`` compresses
    (RLE Lossless natively, JPEG-LS with pyjpegls).
    """
    row, col = np.asarray(row_dir, float), np.asarray(col_dir, float)
    normal = np.cross(row, col)
    rows, cols = size_rc
    sx, sy = pixel_spacing_xy
    r, c = np.mgrid[0:rows, 0:cols]
    slices = []
    for k in range(n_slices):
        ipp = np.asarray(first_position, float) + k * slice_step_mm * normal
        pts = ipp + c[..., None] * sx * row + r[..., None] * sy * col
        slices.append((ipp, phantom.sample(pts)))
    return _write_slices(slices, folder, row, col, (sx, sy), abs(slice_step_mm), extra or {},
                         slope, intercept, signed, transfer_syntax, seed)


def _write_slices(slices, folder, row, col, spacing_xy, thickness, extra, slope, intercept, signed,
                  transfer_syntax, seed) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in rng.permutation(len(slices)):
        ipp, hu = slices[k]
        ds = _base_dataset(study, series, frame, int(len(slices) - k))
        ds.ImagePositionPatient = [float(v) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.PixelSpacing = [float(spacing_xy[1]), float(spacing_xy[0])]
        ds.SliceThickness = float(thickness)
        ds.Rows, ds.Columns = int(hu.shape[0]), int(hu.shape[1])
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleIntercept, ds.RescaleSlope = float(intercept), float(slope)
        stored = np.rint((hu.astype(np.float64) - intercept) / slope)
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
        for key, value in extra.items():
            setattr(ds, key, value)
        if transfer_syntax:
            ds.compress(transfer_syntax)
        path = folder / f"{uuid.UUID(int=int(rng.integers(0, 2**63)))}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _base_dataset(study: str, series: str, frame: str, instance: int) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.Modality = "CT"
    ds.SeriesDescription = "TwinPlan phantom"
    ds.PatientName = "Phantom^Sphere"
    ds.PatientID = "PHANTOM-0001"
    ds.InstanceNumber = instance
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20260101", "120000", "1", 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def write_ct_series(
    array: np.ndarray,
    folder: str | os.PathLike,
    *,
    spacing_xyz: tuple[float, float, float],
    origin_xyz: tuple[float, float, float],
    rescale_intercept: float = -1024.0,
    seed: int = 0,
) -> list[Path]:
    """Write an int16 HU array (z, y, x) as an axial CT series, one file a slice.

    Stored values are unsigned (HU - intercept), as many scanners write them;
    file names are random and InstanceNumber runs against the slice order.
    """
    sx, sy, sz = spacing_xyz
    slices = [(np.asarray(origin_xyz, float) + [0.0, 0.0, k * sz], array[k]) for k in range(array.shape[0])]
    return _write_slices(slices, folder, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (sx, sy), sz, {},
                         1.0, rescale_intercept, False, None, seed)
