"""NIfTI / NRRD / MetaImage volumes as input (research data comes that way).

SimpleITK reads them into ITK's LPS physical space (NIfTI's RAS sform/qform
is converted by ITK), so the direction matrix is honoured: a reader that
ignored it would flip such volumes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from imaging.errors import InputError
from imaging.volume import Geometry, LabelInfo, LabelMap, Volume, default_color

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_volume_file(path: str | os.PathLike) -> bool:
    """True if the file name has a volume-image suffix we read."""
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in VOLUME_SUFFIXES)


def _read(path: Path) -> sitk.Image:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: unreadable volume ({str(exc).strip().splitlines()[-1][:120]})") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: expected a 3D scalar volume, got {image.GetDimension()}D "
                         f"with {image.GetNumberOfComponentsPerPixel()} component(s)")
    return image


def load_volume_file(path: str | os.PathLike, modality: str = "") -> Volume:
    """Read a NIfTI/NRRD/MetaImage volume into a ``Volume`` (LPS mm).

    Raises
    ------
    InputError
        Missing, unreadable, not 3D, or not scalar.
    """
    p = Path(path)
    image = _read(p)
    vol = Volume.from_sitk(image, modality=modality, description=p.name)
    direction = vol.geometry.direction
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        vol.warnings.append("direction matrix is not orthonormal (sheared grid)")
    return vol


def load_labelmap_file(
    path: str | os.PathLike, names: dict[int, str] | None = None, reference: Volume | None = None
) -> LabelMap:
    """Read an integer label volume; optionally name its labels and put it on ``reference``'s grid.

    A label map stored on another grid (e.g. with flipped axes) is resampled
    onto the reference by physical position (nearest label), never by index.

    Raises
    ------
    InputError
        Unreadable, or non-integer voxels.
    """
    p = Path(path)
    image = _read(p)
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind not in "iu":
        raise InputError(f"{p}: label map must hold integers, not {array.dtype}")
    geometry = Geometry.from_sitk(image)
    if reference is not None and not (
        geometry.same_grid(reference.geometry, tol=1e-3) and array.shape == reference.array.shape
    ):
        ref = reference.to_sitk()
        image = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID())
        array = sitk.GetArrayFromImage(image)
        geometry = reference.geometry
    values = [int(v) for v in np.unique(array) if v != 0]
    names = names or {}
    table = {v: LabelInfo(names.get(v, f"label_{v}"), default_color(names.get(v, ""), i)) for i, v in enumerate(values)}
    return LabelMap(array, geometry, table)
