"""Import InVesalius 3 projects (``.inv3``): CT volume, masks and surfaces.

An ``.inv3`` file is a tar (gzipped or plain) holding one folder with
``main.plist``, the raw image ``matrix.dat``, ``mask_N.plist``/``.dat`` and
``surface_N.plist``/``.vtp``. Members are read into memory, never extracted.

Geometry. InVesalius stores spacing but no origin or direction. Its world
frame, measured on the Debian example ``Cranium.inv3`` (InVesalius 3.0b3) by
sampling the CT at 20 000 points of ``surface_0.vtp`` (made at 226 HU), is
``(x, y, z) = (i*sx, -j*sy, k*sz)`` for raw voxel ``matrix[k, j, i]``: median
|HU - 226| = 12.5 (99.2 % of points within 100 HU), versus 213-1250 HU for the
other y/z flip/sign candidates; shifting any axis by half a voxel raises it to
72-93 HU. Anatomy in the same frame: the teeth (> 2000 HU) and the
nasal cavity lie at high raw j, the CT head-rest at low raw j, the maxilla at
k = 0 and the skull vertex at high k. So world y grows posterior and world z
superior: the InVesalius world frame *is* LPS up to a translation (left-right
cannot be checked on anatomy; x is taken as toward patient left, as in DICOM).

We therefore flip the array on y (``j' = ny-1-j``, the usual DICOM row order:
anterior first), use an identity direction and the origin
``(0, -(ny-1)*sy, 0)``. LPS then equals InVesalius world coordinates, so the
stored surfaces (and any coordinates exported from InVesalius) need no
transform. Masks (``mask_shape`` = shape + 1: row/column/slice 0 are
InVesalius flags, value > 127 means inside) get the same flip; on the example
both masks agree with thresholding the matrix at their range on 100 % of
voxels.
"""
from __future__ import annotations

import plistlib
import posixpath
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.volume import Geometry, LabelInfo, LabelMap, Volume

if TYPE_CHECKING:  # pragma: no cover
    import pyvista

#: Matrix dtypes accepted (converted losslessly to int16).
SUPPORTED_DTYPES = ("int16", "uint8", "int8", "uint16")
_CHUNK = 8 << 20
_MAX_PLIST_BYTES = 64 << 20
_AXIAL = (1, "1", "AXIAL", "axial")


@dataclass
class InvesaliusProject:
    """Content of an InVesalius 3 project, in TwinPlan types (LPS mm)."""

    volume: Volume
    masks: list[LabelMap] = field(default_factory=list)
    mask_thresholds: list[tuple[float, float]] = field(default_factory=list)
    surfaces: list[tuple[str, "pyvista.PolyData"]] = field(default_factory=list)
    window_level: tuple[float, float] = (400.0, 40.0)  # (window, level)


def invesalius_geometry(spacing_xyz, shape_zyx) -> Geometry:
    """Grid of a y-flipped InVesalius matrix such that LPS == InVesalius world.

    Parameters
    ----------
    spacing_xyz : sequence of 3 floats
        ``spacing`` from ``main.plist`` (x, y, z order, mm).
    shape_zyx : sequence of 3 ints
        Matrix shape (z, y, x).

    Returns
    -------
    Geometry
        Identity direction, origin ``(0, -(ny-1)*sy, 0)``.
    """
    sx, sy, sz = (float(s) for s in spacing_xyz)
    return Geometry((sx, sy, sz), (0.0, -(int(shape_zyx[1]) - 1) * sy, 0.0), np.eye(3))


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and ".." not in parts and "\\" not in name


def _read_members(path: Path, keep_vtp: bool, progress: ProgressFn,
                  cancelled: Optional[CancelledFn]) -> dict[str, bytes]:
    """Regular members (.plist, .dat, .vtp) of the tar as ``{path: bytes}``."""
    files: dict[str, bytes] = {}
    suffixes = (".plist", ".dat", ".vtp") if keep_vtp else (".plist", ".dat")
    total = max(path.stat().st_size, 1)
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                check_cancelled(cancelled)
                name = member.name
                if not (member.isfile() and _safe_name(name) and name.endswith(suffixes)):
                    continue
                if name.endswith(".plist") and member.size > _MAX_PLIST_BYTES:
                    raise InputError(f"{path}: {name} is implausibly large")
                src = tar.extractfile(member)
                chunks = []
                while chunk := src.read(_CHUNK):
                    chunks.append(chunk)
                    check_cancelled(cancelled)
                    progress(0.8 * min(raw.tell() / total, 1.0), f"Reading {posixpath.basename(name)}")
                files[name] = b"".join(chunks)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise InputError(f"{path}: not a readable InVesalius project (gzip/tar): {exc}") from exc
    return files


class _Archive:
    """Files of the project folder (the one holding main.plist)."""

    def __init__(self, path: Path, files: dict[str, bytes]):
        self.path = path
        mains = [n for n in files if posixpath.basename(n) == "main.plist"]
        if not mains:
            raise InputError(f"{path}: no main.plist, not an InVesalius 3 project")
        if len(mains) > 1:
            raise InputError(f"{path}: several main.plist files ({', '.join(sorted(mains))})")
        self.folder = posixpath.dirname(mains[0])
        self.files = files

    def data(self, ref) -> bytes:
        """Bytes of a file referenced by a plist (a bare name); taken out to free memory."""
        if not isinstance(ref, str) or not ref or "/" in ref or "\\" in ref or ref in (".", ".."):
            raise InputError(f"{self.path}: bad file reference {ref!r}")
        key = posixpath.join(self.folder, ref) if self.folder else ref
        if key not in self.files:
            raise InputError(f"{self.path}: {ref} is missing from the project")
        return self.files.pop(key)

    def plist(self, ref) -> dict:
        try:
            value = plistlib.loads(self.data(ref))
        except (plistlib.InvalidFileException, ValueError, SyntaxError) as exc:
            raise InputError(f"{self.path}: {ref} is not a valid plist: {exc}") from exc
        if not isinstance(value, dict):
            raise InputError(f"{self.path}: {ref} is not a plist dictionary")
        return value


def _ordered(refs) -> list:
    """Values of a plist ``{"0": ..., "1": ...}`` dict in numeric key order."""
    if not isinstance(refs, dict):
        return []
    def key(k):
        return (0, int(k), "") if str(k).isdigit() else (1, 0, str(k))
    return [refs[k] for k in sorted(refs, key=key)]


def _number(value, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _shape3(value, what: str, path: Path) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"{path}: {what} has a bad shape {value!r}")
    return shape  # type: ignore[return-value]


def _read_matrix(arc: _Archive, info: dict) -> np.ndarray:
    """InVesalius matrix (z, y, x) as int16, flipped on y (see module docstring)."""
    if not isinstance(info, dict) or "filename" not in info:
        raise InputError(f"{arc.path}: main.plist has no matrix entry")
    fname = info["filename"]
    shape = _shape3(info.get("shape"), fname, arc.path)
    dtype_name = str(info.get("dtype", ""))
    if dtype_name not in SUPPORTED_DTYPES:
        raise InputError(f"{arc.path}: {fname} has unsupported dtype {dtype_name!r} "
                         f"(supported: {', '.join(SUPPORTED_DTYPES)})")
    dtype = np.dtype(dtype_name).newbyteorder("<")
    data = arc.data(fname)
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise InputError(f"{arc.path}: {fname} has {len(data)} bytes, expected {expected} "
                         f"for {dtype_name} {list(shape)} (truncated or corrupt)")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype_name == "uint16" and array.size and int(array.max()) > np.iinfo(np.int16).max:
        raise InputError(f"{arc.path}: {fname} uint16 values exceed the int16 range")
    return np.ascontiguousarray(array[:, ::-1, :], dtype=np.int16)


def _read_mask(arc: _Archive, ref, shape, geometry: Geometry, index: int):
    info = arc.plist(ref)
    fname = info.get("mask_file")
    mshape = _shape3(info.get("mask_shape"), str(fname), arc.path)
    if mshape != tuple(s + 1 for s in shape):
        raise InputError(f"{arc.path}: {fname} shape {list(mshape)} does not match image {list(shape)} + 1")
    data = arc.data(fname)
    if len(data) != int(np.prod(mshape)):
        raise InputError(f"{arc.path}: {fname} has {len(data)} bytes, expected {int(np.prod(mshape))}")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(mshape)[1:, 1:, 1:]
    binary = (raw[:, ::-1, :] > 127).astype(np.uint8)  # InVesalius: > 127 is inside
    name = str(info.get("name") or f"Mask {index + 1}")
    colour = info.get("colour") or (0.3, 0.6, 0.9)
    label = LabelInfo(name, tuple(_number(c, 0.5) for c in list(colour)[:3]))
    rng = info.get("threshold_range")
    rng = list(rng) if isinstance(rng, (list, tuple)) and len(rng) == 2 else [np.nan, np.nan]
    return LabelMap(binary, geometry, {1: label}), (_number(rng[0], np.nan), _number(rng[1], np.nan))


def _read_surface(arc: _Archive, ref) -> tuple[str, "pyvista.PolyData"]:
    import pyvista as pv
    from vtkmodules.vtkCommonCore import vtkCommand
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    info = arc.plist(ref)
    fname = info.get("polydata")
    data = arc.data(fname)
    if not data.lstrip()[:64].startswith((b"<?xml", b"<VTKFile")):
        raise InputError(f"{arc.path}: {fname} is not a VTK XML PolyData file")
    errors: list[str] = []
    reader = vtkXMLPolyDataReader()
    reader.AddObserver(vtkCommand.ErrorEvent, lambda obj, ev: errors.append(ev))
    reader.GetExecutive().AddObserver(vtkCommand.ErrorEvent, lambda obj, ev: errors.append(ev))
    reader.ReadFromInputStringOn()
    reader.SetInputString(data)
    reader.Update()
    poly = reader.GetOutput()
    if errors or poly is None:
        raise InputError(f"{arc.path}: {fname} is not a readable VTK PolyData file")
    # LPS == InVesalius world coordinates (see module docstring): no transform.
    return str(info.get("name") or fname), pv.wrap(poly)


def load_invesalius_project(
    path: Union[str, Path],
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
    load_surfaces: bool = True,
) -> InvesaliusProject:
    """Load an InVesalius 3 project file (``.inv3``).

    Parameters
    ----------
    path : str or Path
        The ``.inv3`` file (gzipped or plain tar).
    progress : callable, optional
        ``progress(fraction, message)`` sink.
    cancelled : callable, optional
        Returns True when the user asked to stop; checked between chunks.
    load_surfaces : bool
        Also parse the stored surfaces (``surface_N.vtp``).

    Returns
    -------
    InvesaliusProject
        Volume (int16, LPS), binary masks on its grid, their threshold
        ranges, surfaces in the same LPS frame and (window, level).

    Raises
    ------
    InputError
        Unreadable archive, missing ``main.plist`` or referenced file,
        truncated data, unsupported dtype or inconsistent shapes.
    concurrent.futures.CancelledError
        If ``cancelled()`` returned True.
    """
    path = Path(path)
    progress = progress or no_progress
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    progress(0.0, f"Opening {path.name}")
    arc = _Archive(path, _read_members(path, load_surfaces, progress, cancelled))
    main = arc.plist("main.plist")
    check_cancelled(cancelled)

    array = _read_matrix(arc, main.get("matrix"))
    try:
        spacing = tuple(float(s) for s in main.get("spacing", ()))
    except (TypeError, ValueError):
        spacing = ()
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"{path}: main.plist has a bad spacing {main.get('spacing')!r}")
    geometry = invesalius_geometry(spacing, array.shape)
    warnings = ["InVesalius stores no patient orientation: x is assumed toward patient left, "
                "the position is InVesalius' own (arbitrary) origin."]
    if main.get("orientation", 1) not in _AXIAL:
        warnings.append(f"Acquisition orientation {main.get('orientation')!r} is not axial: "
                        "anatomical directions were only verified for axial projects.")
    if main.get("affine"):
        warnings.append("The project's 'affine' entry is ignored.")
    volume = Volume(
        array, geometry,
        modality=str(main.get("modality", "")),
        description=f"InVesalius project {path.stem}",
        warnings=warnings,
    )
    project = InvesaliusProject(volume, window_level=(
        _number(main.get("window_width"), 400.0), _number(main.get("window_level"), 40.0)))

    mask_refs = _ordered(main.get("masks"))
    for n, ref in enumerate(mask_refs):
        check_cancelled(cancelled)
        progress(0.8 + 0.1 * n / len(mask_refs), f"Reading {ref}")
        labels, thresholds = _read_mask(arc, ref, volume.array.shape, geometry, n)
        project.masks.append(labels)
        project.mask_thresholds.append(thresholds)

    surface_refs = _ordered(main.get("surfaces")) if load_surfaces else []
    for n, ref in enumerate(surface_refs):
        check_cancelled(cancelled)
        progress(0.9 + 0.1 * n / len(surface_refs), f"Reading {ref}")
        project.surfaces.append(_read_surface(arc, ref))
    progress(1.0, f"Loaded {path.name}")
    return project
