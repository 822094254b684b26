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

    @property
    def sphere_volume_mm3(self) -> float:
        return 4.0 / 3.0 * np.pi * self.radius_mm**3


def write_ct_series(
    array: np.ndarray,
    folder: str | os.PathLike,
    *,
    spacing_xyz: tuple[float, float, float],
    origin_xyz: tuple[float, float, float],
    rescale_intercept: float = -1024.0,
    random_names: bool = True,
    series_uid: Optional[str] = None,
    seed: int = 0,
) -> list[Path]:
    """Write an int16 HU array (z, y, x) as an axial CT series, one file a slice.

    Stored values are unsigned (HU - intercept), as many scanners write them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study, series, frame = generate_uid(), series_uid or generate_uid(), generate_uid()
    sx, sy, sz = spacing_xyz
    paths = []
    for k in rng.permutation(array.shape[0]) if random_names else range(array.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = f"{uuid.UUID(int=int(rng.integers(0, 2**63)))}" if random_names else f"slice{k:04d}.dcm"
        path = folder / name
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT"
        ds.SeriesDescription = "TwinPlan phantom"
        ds.PatientName = "Phantom^Sphere"
        ds.PatientID = "PHANTOM-0001"
        ds.InstanceNumber = int(array.shape[0] - k)  # deliberately not the spatial order
        ds.ImagePositionPatient = [float(origin_xyz[0]), float(origin_xyz[1]), float(origin_xyz[2] + k * sz)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(sy), float(sx)]
        ds.SliceThickness = float(sz)
        ds.Rows, ds.Columns = int(array.shape[1]), int(array.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = rescale_intercept
        ds.RescaleSlope = 1.0
        ds.PixelData = (array[k].astype(np.int32) - int(rescale_intercept)).astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
