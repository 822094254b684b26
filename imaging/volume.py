"""Plain data types for images: ``Volume`` (scalar image) and ``LabelMap``.

Arrays are indexed (z, y, x). Geometry is in patient LPS millimetres:
``origin`` is the centre of voxel (0, 0, 0); ``direction`` is a 3x3 matrix
whose columns are the x, y, z index axes in LPS.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk


@dataclass
class Geometry:
    """Voxel grid placement in LPS mm."""

    spacing_xyz: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        self.spacing_xyz = tuple(float(s) for s in self.spacing_xyz)
        self.origin_xyz = tuple(float(o) for o in self.origin_xyz)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous (i, j, k) voxel indices to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing_xyz)
        m[:3, 3] = self.origin_xyz
        return m

    def lps_to_index(self, points_lps: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) indices of LPS points, shape (n, 3)."""
        m = np.linalg.inv(self.index_to_lps())
        p = np.atleast_2d(np.asarray(points_lps, dtype=float))
        return p @ m[:3, :3].T + m[:3, 3]

    def same_grid(self, other: "Geometry", tol: float = 1e-4) -> bool:
        return (
            np.allclose(self.spacing_xyz, other.spacing_xyz, atol=tol)
            and np.allclose(self.origin_xyz, other.origin_xyz, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def to_json(self) -> dict:
        return {
            "spacing_xyz": list(self.spacing_xyz),
            "origin_xyz": list(self.origin_xyz),
            "direction": self.direction.tolist(),
        }

    @classmethod
    def from_json(cls, d: dict) -> "Geometry":
        return cls(d["spacing_xyz"], d["origin_xyz"], np.array(d["direction"]))

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Geometry":
        return cls(
            image.GetSpacing(),
            image.GetOrigin(),
            np.array(image.GetDirection()).reshape(3, 3),
        )

    def apply_to_sitk(self, image: sitk.Image) -> None:
        image.SetSpacing(self.spacing_xyz)
        image.SetOrigin(self.origin_xyz)
        image.SetDirection(tuple(self.direction.ravel()))


def hash_array(array: np.ndarray, geometry: Optional[Geometry] = None) -> str:
    """Content hash (sha256 hex) of voxels, dtype, shape and geometry."""
    h = hashlib.sha256()
    h.update(str(array.dtype).encode())
    h.update(str(array.shape).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    if geometry is not None:
        h.update(np.round(np.array(geometry.spacing_xyz), 6).tobytes())
        h.update(np.round(np.array(geometry.origin_xyz), 6).tobytes())
        h.update(np.round(geometry.direction, 6).tobytes())
    return h.hexdigest()


@dataclass
class Volume:
    """A scalar image (CT in HU) with its grid and the metadata used downstream.

    Patient identifiers are deliberately not part of this type.
    """

    array: np.ndarray
    geometry: Geometry = field(default_factory=Geometry)
    modality: str = ""
    series_uid: str = ""
    description: str = ""
    warnings: list[str] = field(default_factory=list)
    kind: str = ""  # "ct", "cbct", "mr"...: picks presets; "cbct" grey values are not HU

    @property
    def dims_xyz(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape
        return (x, y, z)

    def content_hash(self) -> str:
        return hash_array(self.array, self.geometry)

    def to_sitk(self) -> sitk.Image:
        """SimpleITK image (copies the voxels)."""
        image = sitk.GetImageFromArray(self.array)
        self.geometry.apply_to_sitk(image)
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, **meta) -> "Volume":
        return cls(sitk.GetArrayFromImage(image), Geometry.from_sitk(image), **meta)

    def value_at_lps(self, point_lps) -> Optional[float]:
        """Voxel value nearest to an LPS point, or None outside the grid."""
        ijk = np.rint(self.geometry.lps_to_index(point_lps)[0]).astype(int)
        i, j, k = ijk
        nz, ny, nx = self.array.shape
        if 0 <= i < nx and 0 <= j < ny and 0 <= k < nz:
            return float(self.array[k, j, i])
        return None


@dataclass
class LabelInfo:
    """One entry of a label table."""

    name: str
    color: tuple[float, float, float] = (0.9, 0.85, 0.7)


#: Default colours by label name (RGB 0..1); anything else gets a palette colour.
LABEL_COLORS = {
    "bone": (0.95, 0.91, 0.80),
    "teeth": (1.0, 1.0, 0.94),
    "skin": (0.94, 0.72, 0.62),
    "soft_tissue": (0.85, 0.45, 0.40),
    "vessels": (0.85, 0.15, 0.15),
}
_PALETTE = [(0.3, 0.6, 0.9), (0.4, 0.8, 0.4), (0.9, 0.6, 0.2), (0.7, 0.4, 0.8), (0.2, 0.8, 0.8)]


def default_color(name: str, index: int = 0) -> tuple[float, float, float]:
    """Colour for a label name (known anatomy first, then a palette)."""
    return LABEL_COLORS.get(name.lower(), _PALETTE[index % len(_PALETTE)])


@dataclass
class LabelMap:
    """Integer label volume on a Volume's grid plus its label table."""

    array: np.ndarray
    geometry: Geometry
    labels: dict[int, LabelInfo] = field(default_factory=dict)

    def value_of(self, name: str) -> int:
        """Label value for a name; raises KeyError if unknown."""
        for value, info in self.labels.items():
            if info.name == name:
                return value
        raise KeyError(name)

    def mask(self, value: int = 1) -> np.ndarray:
        return self.array == value

    def voxel_count(self, value: int = 1) -> int:
        return int(np.count_nonzero(self.array == value))

    def content_hash(self) -> str:
        return hash_array(self.array, self.geometry)

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(self.array)
        self.geometry.apply_to_sitk(image)
        return image
