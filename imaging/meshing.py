"""Label map -> triangle surface (VTK discrete flying edges), reports and export.

Surfaces are in patient LPS millimetres.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pyvista as pv
import vtk
from vtk.util.numpy_support import numpy_to_vtk

from imaging.errors import InputError, MeshError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.volume import LabelMap

EXPORT_FORMATS = (".stl", ".ply", ".obj", ".vtp")
_smp_ready = False


def use_all_cores() -> None:
    """Switch VTK's SMP backend to threads (the wheel defaults to sequential)."""
    global _smp_ready
    if not _smp_ready:
        vtk.vtkSMPTools.SetBackend("STDThread")
        _smp_ready = True


def _touches_edge(array: np.ndarray, value: int) -> bool:
    """True if the label reaches a face of the grid (its surface would be open there)."""
    faces = (array[0], array[-1], array[:, 0], array[:, -1], array[:, :, 0], array[:, :, -1])
    return any(np.any(f == value) for f in faces)


def _label_image(array: np.ndarray, value: int, spacing: tuple[float, float, float]) -> vtk.vtkImageData:
    """vtkImageData over the label array in the index frame (mm, origin 0).

    Shares memory with ``array`` unless the label touches the grid edge, where
    a one-voxel zero border is added so the surface closes.
    """
    origin = (0.0, 0.0, 0.0)
    data = np.ascontiguousarray(array)
    if _touches_edge(data, value):
        data = np.pad(data, 1)
        origin = (-spacing[0], -spacing[1], -spacing[2])
    image = vtk.vtkImageData()
    nz, ny, nx = data.shape
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    scalars = numpy_to_vtk(data.reshape(-1), deep=False)
    scalars.SetName("label")
    image.GetPointData().SetScalars(scalars)
    image._keep_alive = data  # the VTK array borrows this buffer
    return image


@functools.lru_cache(maxsize=1)
def _flying_edges_outward() -> bool:
    """Whether discrete flying edges winds triangles outward (probed on a small cube)."""
    block = np.zeros((6, 6, 6), dtype=np.uint8)
    block[2:4, 2:4, 2:4] = 1
    fe = vtk.vtkDiscreteFlyingEdges3D()
    fe.SetInputData(_label_image(block, 1, (1.0, 1.0, 1.0)))
    fe.SetValue(0, 1.0)
    fe.Update()
    return _signed_volume(pv.wrap(fe.GetOutput())) > 0


def mesh_labelmap(
    labelmap: LabelMap,
    value: int = 1,
    *,
    smoothing_iterations: int = 20,
    passband: float = 0.05,
    decimate: float = 0.0,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> pv.PolyData:
    """Surface of one label: flying edges, windowed-sinc smoothing, decimation.

    Parameters
    ----------
    labelmap : LabelMap
        The label volume.
    value : int
        Label value to mesh.
    smoothing_iterations : int
        Windowed-sinc iterations (0 = no smoothing).
    passband : float
        Windowed-sinc pass band (smaller = smoother), 0..2.
    decimate : float
        Target reduction of triangles, 0 (none) .. <1.

    Returns
    -------
    pyvista.PolyData
        Triangles in LPS mm with outward normals.

    Raises
    ------
    MeshError
        If the label is empty.
    """
    progress = progress or no_progress
    use_all_cores()
    if not 0.0 <= decimate < 1.0:
        raise InputError(f"decimate={decimate}: must be in [0, 1)")
    geom = labelmap.geometry
    progress(0.05, "Extracting the surface (flying edges)")
    image = _label_image(labelmap.array, value, geom.spacing_xyz)
    fe = vtk.vtkDiscreteFlyingEdges3D()
    fe.SetInputData(image)
    fe.SetValue(0, float(value))
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    poly = fe.GetOutput()
    if poly.GetNumberOfCells() == 0:
        name = labelmap.labels[value].name if value in labelmap.labels else value
        raise MeshError(f"label {name!r} is empty: nothing to mesh")
    check_cancelled(cancelled)
    if smoothing_iterations > 0:
        progress(0.4, "Smoothing")
        sm = vtk.vtkWindowedSincPolyDataFilter()
        sm.SetInputData(poly)
        sm.SetNumberOfIterations(int(smoothing_iterations))
        sm.SetPassBand(float(passband))
        sm.BoundarySmoothingOff()
        sm.FeatureEdgeSmoothingOff()
        sm.NonManifoldSmoothingOn()
        sm.NormalizeCoordinatesOn()
        sm.Update()
        poly = sm.GetOutput()
    check_cancelled(cancelled)
    if decimate > 0:
        progress(0.7, "Decimating")
        # DecimatePro with topology preserved keeps a closed surface closed;
        # quadric decimation was seen to open holes on the Cranium bone.
        dec = vtk.vtkDecimatePro()
        dec.SetInputData(poly)
        dec.SetTargetReduction(float(decimate))
        dec.PreserveTopologyOn()
        dec.SplittingOff()
        dec.BoundaryVertexDeletionOff()
        dec.Update()
        poly = dec.GetOutput()
    check_cancelled(cancelled)
    progress(0.85, "Placing in patient coordinates")
    surface = pv.wrap(poly)
    surface.clear_data()
    # index-frame mm -> LPS: rotate by the direction matrix, then translate.
    pts = np.asarray(surface.points, dtype=float)
    surface.points = pts @ geom.direction.T + np.asarray(geom.origin_xyz)
    # Flying edges winds every triangle the same way (probed once); a reflecting
    # direction matrix reverses it. Renderers compute normals themselves.
    if (np.linalg.det(geom.direction) < 0) == _flying_edges_outward():
        surface.flip_faces(inplace=True)
    progress(1.0, f"Surface: {surface.n_cells} triangles")
    return surface


def edge_counts(surface: pv.PolyData) -> tuple[int, int]:
    """(boundary edges, non-manifold edges) of a triangle surface."""
    fe = vtk.vtkFeatureEdges()
    fe.SetInputData(surface)
    fe.FeatureEdgesOff()
    fe.ManifoldEdgesOff()
    fe.BoundaryEdgesOn()
    fe.NonManifoldEdgesOff()
    fe.Update()
    boundary = fe.GetOutput().GetNumberOfCells()
    fe.BoundaryEdgesOff()
    fe.NonManifoldEdgesOn()
    fe.Update()
    return boundary, fe.GetOutput().GetNumberOfCells()


def mesh_report(surface: pv.PolyData, seconds: Optional[float] = None) -> dict:
    """Size, area (mm2), enclosed volume (mm3), closedness and bounds of a surface."""
    boundary, nonmanifold = edge_counts(surface)
    tri = surface.triangulate() if not surface.is_all_triangles else surface
    report = {
        "n_points": int(surface.n_points),
        "n_faces": int(surface.n_cells),
        "area_mm2": float(tri.area),
        "volume_mm3": float(abs(tri.volume)),
        "watertight": bool(boundary == 0 and nonmanifold == 0 and surface.n_cells > 0),
        "boundary_edges": int(boundary),
        "non_manifold_edges": int(nonmanifold),
        "bounds": [float(b) for b in surface.bounds],
        "centroid": [float(c) for c in _centroid(tri)],
    }
    if seconds is not None:
        report["seconds"] = round(float(seconds), 4)
    return report


def _tetra_volumes(tri: pv.PolyData) -> tuple[np.ndarray, np.ndarray]:
    """Signed volumes of the tetrahedra (origin, triangle) and their centroids."""
    faces = tri.faces.reshape(-1, 4)[:, 1:]
    p = np.asarray(tri.points, dtype=float)
    a, b, c = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
    return np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0, (a + b + c) / 4.0


def _signed_volume(tri: pv.PolyData) -> float:
    """Enclosed signed volume by the divergence theorem on z (cheaper than tetrahedra)."""
    faces = tri.faces.reshape(-1, 4)[:, 1:]
    p = np.asarray(tri.points)
    a, b, c = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
    nz = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    return float(np.dot(a[:, 2] + b[:, 2] + c[:, 2], nz) / 6.0)


def _centroid(tri: pv.PolyData) -> np.ndarray:
    """Centroid of the enclosed volume (signed tetrahedra from the origin)."""
    vol, centers = _tetra_volumes(tri)
    total = vol.sum()
    if abs(total) < 1e-12:
        return np.asarray(tri.points).mean(axis=0) if tri.n_points else np.zeros(3)
    return (centers * vol[:, None]).sum(axis=0) / total


def export_surface(surface: pv.PolyData, path: str | os.PathLike) -> Path:
    """Write a surface as STL, PLY, OBJ or VTP (chosen by extension), LPS mm.

    Raises
    ------
    InputError
        If the extension is unsupported or the file cannot be written.
    """
    out = Path(path)
    ext = out.suffix.lower()
    if ext not in EXPORT_FORMATS:
        raise InputError(f"{out}: unsupported mesh format {ext or '(none)'}; use one of {', '.join(EXPORT_FORMATS)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if ext == ".obj":
            writer = vtk.vtkOBJWriter()
            writer.SetFileName(str(out))
            writer.SetInputData(surface)
            if not writer.Write():
                raise OSError("VTK OBJ writer failed")
        else:
            surface.save(str(out), binary=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot write mesh ({exc})") from exc
    return out


def timed_mesh(labelmap: LabelMap, value: int = 1, **kwargs) -> tuple[pv.PolyData, dict]:
    """Mesh a label and return it with its report (including wall time)."""
    t0 = time.perf_counter()
    surface = mesh_labelmap(labelmap, value, **kwargs)
    return surface, mesh_report(surface, time.perf_counter() - t0)
