"""Surface scans: import (STL, PLY, OBJ, VTK), units, topology checks, repair, decimation.

Imported surfaces are ``pyvista.PolyData`` in millimetres, in the frame the
scanner saved them in (not patient LPS until fused, see ``imaging.fusion``).
Vertex colours are kept as the uint8 point array ``"RGB"``; a texture is
baked into ``"RGB"`` at import (its coordinates stay in ``"TCoords"``).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyvista as pv
import vtk
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from imaging.errors import InputError, MeshError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress

log = logging.getLogger(__name__)

SCAN_FORMATS = (".stl", ".ply", ".obj", ".vtk", ".vtp")
TEXTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: mm per unit for the units we recognise.
UNIT_SCALE_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4, "um": 0.001}
_UNIT_WORDS = {"millimeter": "mm", "millimetre": "mm", "centimeter": "cm", "centimetre": "cm", "meter": "m",
               "metre": "m", "inch": "in", "inche": "in", "micron": "um", **{u: u for u in UNIT_SCALE_MM}}
_UNIT_RE = re.compile(rb"units?\s*[=:]?\s*\"?([a-z]+)", re.IGNORECASE)


@dataclass
class UnitsGuess:
    """What unit a file's coordinates are in, and why we think so."""

    units: str
    scale_to_mm: float
    confident: bool
    reason: str


@dataclass
class SurfaceScan:
    """An imported surface scan (mm, scanner frame) and what import found."""

    surface: pv.PolyData
    path: Path
    units: UnitsGuess
    has_colors: bool = False
    texture_file: Optional[str] = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"file": str(self.path), "units": self.units.units, "scale_to_mm": self.units.scale_to_mm,
                "units_confident": self.units.confident, "units_reason": self.units.reason,
                "n_points": int(self.surface.n_points), "n_faces": int(self.surface.n_faces),
                "has_colors": self.has_colors, "texture_file": self.texture_file, "warnings": list(self.warnings)}


def guess_units(max_extent: float, header: bytes = b"") -> UnitsGuess:
    """Guess the unit of a surface from an explicit header tag or its size.

    Parameters
    ----------
    max_extent : float
        Largest side of the bounding box, in file units.
    header : bytes
        Start of the file (an STL header or PLY/OBJ comments may say ``units=mm``).

    Returns
    -------
    UnitsGuess
        A file tag wins. Otherwise, anatomy scanned as a surface spans about
        3 mm (a tooth part) to 2 m (a whole body): an extent under 3 is read
        as metres; 3..30 is ambiguous (a 1 cm tooth in mm, or a 10 cm bone in
        cm) and is kept as mm but flagged not confident.
    """
    for match in _UNIT_RE.finditer(header):
        text = match.group(1).decode("ascii", "ignore").lower()
        word = _UNIT_WORDS.get(text) or _UNIT_WORDS.get(text.rstrip("s"))
        if word:
            return UnitsGuess(word, UNIT_SCALE_MM[word], True, f"the file says units={word}")
    e = float(max_extent)
    if not np.isfinite(e) or e <= 0:
        raise InputError(f"surface has zero or invalid size (largest extent {e})")
    if e < 3.0:
        return UnitsGuess("m", 1000.0, True, f"largest extent {e:.4g}: as millimetres the object would be "
                          f"under 3 mm, as metres {e * 1000:.0f} mm; read as metres")
    if e < 30.0:
        return UnitsGuess("mm", 1.0, False, f"largest extent {e:.4g}: {e:.1f} mm (a tooth?) or, if the file "
                          f"is in centimetres, {e * 10:.0f} mm (a bone?); kept as millimetres, check it")
    note = "; larger than a human body, check the units" if e > 2500 else ""
    return UnitsGuess("mm", 1.0, e <= 2500, f"largest extent {e:.4g}: read as millimetres{note}")


def _read_header(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2048)
    if path.suffix.lower() == ".stl":
        return head[:80]
    # PLY/OBJ: only comment lines may carry a units tag (never geometry lines).
    return b"\n".join(ln for ln in head.splitlines() if ln.startswith((b"comment", b"#", b"obj_info")))


def _from_trimesh(path: Path) -> tuple[pv.PolyData, Optional[np.ndarray], Optional[np.ndarray], Optional[str]]:
    """(surface, RGB colours, UV, texture name) of a file read with trimesh, vertices unmerged."""
    import trimesh

    try:
        geom = trimesh.load(str(path), process=False, maintain_order=True)
        if isinstance(geom, trimesh.Scene):
            geom = geom.to_mesh() if geom.geometry else trimesh.Trimesh()
    except Exception as exc:  # trimesh raises many types for bad files
        raise InputError(f"{path}: cannot read surface ({exc.__class__.__name__}: {exc})") from exc
    if isinstance(geom, trimesh.PointCloud):
        colors = np.asarray(geom.colors)[:, :3].astype(np.uint8) if len(geom.colors) else None
        return _polydata(np.asarray(geom.vertices, dtype=float), np.empty((0, 3), np.int64)), colors, None, None
    points = np.asarray(getattr(geom, "vertices", np.empty((0, 3))), dtype=float)
    faces = np.asarray(getattr(geom, "faces", np.empty((0, 3))), dtype=np.int64).reshape(-1, 3)
    surface = _polydata(points, faces)
    colors = uv = None
    texture = None
    visual = getattr(geom, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        colors = np.asarray(visual.vertex_colors)[:, :3].astype(np.uint8)
    elif kind == "face":
        # Per-face colours: give each vertex the colour of a face using it.
        fc = np.asarray(visual.face_colors)[:, :3].astype(np.uint8)
        colors = np.zeros((len(points), 3), np.uint8)
        colors[faces.ravel()] = np.repeat(fc, 3, axis=0)
    elif kind == "texture" and getattr(visual, "uv", None) is not None:
        uv = np.asarray(visual.uv, dtype=float)
        image = getattr(visual.material, "image", None) or getattr(visual.material, "baseColorTexture", None)
        if image is not None:
            colors = _sample_texture(np.asarray(image.convert("RGB")), uv)
            texture = getattr(visual.material, "name", None) or "material"
    return surface, colors, uv, texture


def _sample_texture(image_rgb: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest-texel colour (uint8 RGB) at UV coordinates (origin bottom-left, as in OBJ/VTK)."""
    h, w = image_rgb.shape[:2]
    u, v = np.clip(np.nan_to_num(uv[:, 0]), 0, 1), np.clip(np.nan_to_num(uv[:, 1]), 0, 1)
    return image_rgb[np.rint((1.0 - v) * (h - 1)).astype(int), np.rint(u * (w - 1)).astype(int), :3].astype(np.uint8)


def _read_texture(path: Path) -> np.ndarray:
    """Texture image as (rows top-down, columns, RGB) uint8."""
    try:
        image = pv.read(str(path))
    except Exception as exc:  # VTK image readers raise several types
        raise InputError(f"{path}: cannot read texture image ({exc})") from exc
    nx, ny = image.dimensions[:2]
    rgb = np.asarray(image.point_data.active_scalars).reshape(ny, nx, -1)[::-1]  # VTK rows start at the bottom
    return (rgb[..., :3] if rgb.shape[2] >= 3 else np.repeat(rgb[..., :1], 3, axis=2)).astype(np.uint8)


def _polydata(points: np.ndarray, faces: np.ndarray) -> pv.PolyData:
    if len(faces):
        cells = np.hstack([np.full((len(faces), 1), 3, np.int64), faces]).ravel()
        return pv.PolyData(points, cells)
    return pv.PolyData(points)


def load_surface(
    path: str | os.PathLike,
    *,
    units: str = "auto",
    texture_path: Optional[str | os.PathLike] = None,
    merge: bool = True,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> SurfaceScan:
    """Read a surface scan (STL, PLY, OBJ through trimesh; VTK/VTP through VTK) into mm.

    Parameters
    ----------
    path : path-like
        The scan file.
    units : str
        ``"auto"`` (guess, see :func:`guess_units`) or one of ``mm, cm, m, in, um``.
    texture_path : path-like, optional
        Texture image for a file whose texture is not referenced by the file
        itself (VTK files: a same-named ``.png``/``.jpg`` beside it is used).
    merge : bool
        Merge coincident vertices (STL stores every triangle's corners apart).

    Returns
    -------
    SurfaceScan
        Surface in mm with ``"RGB"`` colours when the file has colour or texture.

    Raises
    ------
    InputError
        Missing file, unsupported format, unreadable or empty surface, bad units.
    """
    progress = progress or no_progress
    src = Path(path)
    ext = src.suffix.lower()
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    if ext not in SCAN_FORMATS:
        raise InputError(f"{src}: unsupported surface format {ext or '(none)'}; use {', '.join(SCAN_FORMATS)}")
    if units != "auto" and units not in UNIT_SCALE_MM:
        raise InputError(f"--units {units}: use auto or one of {', '.join(UNIT_SCALE_MM)}")
    progress(0.05, f"Reading {src.name}")
    warnings: list[str] = []
    surface, colors, uv, texture = _from_vtk(src) if ext in (".vtk", ".vtp") else _from_trimesh(src)
    if texture_path is None and uv is not None and ext in (".vtk", ".vtp"):
        texture_path = next((src.with_suffix(s) for s in TEXTURE_SUFFIXES if src.with_suffix(s).is_file()), None)
    if texture_path is not None and uv is not None:
        colors, texture = _sample_texture(_read_texture(Path(texture_path)), uv), Path(texture_path).name
    check_cancelled(cancelled)
    if surface.n_points == 0:
        raise InputError(f"{src}: the file holds no vertices")
    if colors is not None:
        surface.point_data["RGB"] = colors
    if uv is not None:
        surface.point_data["TCoords"] = uv
        surface.GetPointData().SetActiveTCoords("TCoords")
    if merge and surface.n_faces:
        progress(0.5, "Merging coincident vertices")
        surface, _ = merge_vertices(surface)
    extent = float(np.ptp(np.asarray(surface.points), axis=0).max())
    if units == "auto":
        guess = guess_units(extent, _read_header(src))
    else:
        guess = UnitsGuess(units, UNIT_SCALE_MM[units], True, f"given: {units}")
    if not guess.confident:
        warnings.append(f"units uncertain: {guess.reason}")
    if guess.scale_to_mm != 1.0:
        surface.points = np.asarray(surface.points, dtype=float) * guess.scale_to_mm
    log.info("%s: %d points, %d faces, units %s (%s)", src.name, surface.n_points, surface.n_faces,
             guess.units, guess.reason)
    progress(1.0, f"{surface.n_points} points, units {guess.units}")
    return SurfaceScan(surface, src, guess, colors is not None, texture, warnings)


def _from_vtk(src: Path) -> tuple[pv.PolyData, Optional[np.ndarray], Optional[np.ndarray], None]:
    try:
        data = pv.read(str(src))
    except Exception as exc:  # VTK readers raise several types
        raise InputError(f"{src}: cannot read VTK surface ({exc})") from exc
    surface = data if isinstance(data, pv.PolyData) else data.extract_surface(algorithm="dataset_surface")
    uv = surface.active_texture_coordinates
    uv = None if uv is None else np.asarray(uv, dtype=float)
    colors = next((np.asarray(surface.point_data[n])[:, :3] for n in ("RGB", "RGBA", "Colors", "colors")
                   if n in surface.point_data and surface.point_data[n].dtype == np.uint8), None)
    return _polydata(np.asarray(surface.points, dtype=float), triangle_faces(surface)), colors, uv, None


# -- topology ---------------------------------------------------------------
def triangle_faces(surface: pv.PolyData) -> np.ndarray:
    """Triangles (n, 3) of a surface, triangulating polygons; empty for a point cloud."""
    if surface.n_faces == 0:
        return np.empty((0, 3), np.int64)
    if not surface.is_all_triangles:
        surface = surface.triangulate()
    return surface.faces.reshape(-1, 4)[:, 1:].astype(np.int64)


def _rebuild(surface: pv.PolyData, points_index: np.ndarray, faces: np.ndarray) -> pv.PolyData:
    """New surface from a subset of points (old indices) and faces in new indices, keeping point data."""
    out = _polydata(np.asarray(surface.points)[points_index], faces)
    for name in surface.point_data.keys():
        out.point_data[name] = np.asarray(surface.point_data[name])[points_index]
    tc = surface.GetPointData().GetTCoords()
    if tc is not None and tc.GetName() in out.point_data:
        out.GetPointData().SetActiveTCoords(tc.GetName())
    return out


def merge_vertices(surface: pv.PolyData) -> tuple[pv.PolyData, int]:
    """Merge vertices with identical coordinates; returns (surface, vertices merged).

    Point data (colours, UV) of the first of each group is kept.
    """
    points = np.asarray(surface.points)
    _, first, inverse = np.unique(points, axis=0, return_index=True, return_inverse=True)
    merged = len(points) - len(first)
    if merged == 0:
        return surface, 0
    order = np.argsort(first)  # keep the file's vertex order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    faces = rank[inverse.ravel()][triangle_faces(surface)]
    return _rebuild(surface, first[order], faces), merged


def _bad_faces(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of degenerate faces (a corner repeated) and of repeats of an earlier face (any winding)."""
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    repeat = np.ones(len(faces), bool)
    repeat[first] = False
    return degenerate, repeat & ~degenerate


def _edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique undirected edges, the count of faces on each, and the edge index of every face side."""
    e = np.sort(np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1).reshape(-1, 2), axis=1)
    unique, inverse, counts = np.unique(e, axis=0, return_inverse=True, return_counts=True)
    return unique, counts, inverse.reshape(-1, 3)


def boundary_loops(surface: pv.PolyData) -> list[dict]:
    """Holes and open borders: one entry per connected ring of boundary edges.

    Returns
    -------
    list of dict
        ``n_edges``, ``perimeter_mm`` and ``radius_mm`` (largest distance of
        the ring's points from their centroid), largest first.
    """
    faces = triangle_faces(surface)
    if not len(faces):
        return []
    edges, counts, _ = _edges(faces)
    border = edges[counts == 1]
    if not len(border):
        return []
    _, label = connected_components(_graph(surface.n_points, border[:, 0], border[:, 1]), directed=False)
    points = np.asarray(surface.points, dtype=float)
    edge_label = label[border[:, 0]]
    loops = []
    for lab in np.unique(edge_label):
        ring = border[edge_label == lab]
        verts = points[np.unique(ring)]
        loops.append({
            "n_edges": int(len(ring)),
            "perimeter_mm": float(np.linalg.norm(points[ring[:, 0]] - points[ring[:, 1]], axis=1).sum()),
            "radius_mm": float(np.linalg.norm(verts - verts.mean(axis=0), axis=1).max()),
        })
    return sorted(loops, key=lambda d: -d["perimeter_mm"])


def inspect_surface(surface: pv.PolyData, max_hole_mm: float = 5.0) -> dict:
    """Topology problems of a triangle surface and what :func:`repair_surface` could fix.

    Returns
    -------
    dict
        Counts of ``duplicate_vertices``, ``degenerate_faces``,
        ``duplicate_faces``, ``non_manifold_edges``, ``boundary_edges``,
        ``holes`` (boundary rings), ``small_holes`` (radius <= ``max_hole_mm``),
        ``components``, ``watertight`` and the list ``repairs_possible``.
    """
    faces = triangle_faces(surface)
    points = np.asarray(surface.points)
    dup_vertices = len(points) - len(np.unique(points, axis=0)) if len(points) else 0
    report = {"n_points": int(surface.n_points), "n_faces": int(len(faces)), "duplicate_vertices": int(dup_vertices)}
    if not len(faces):
        report.update(degenerate_faces=0, duplicate_faces=0, non_manifold_edges=0, boundary_edges=0, holes=0,
                      small_holes=0, largest_hole_radius_mm=0.0, components=0, watertight=False,
                      repairs_possible=[])
        return report
    merged, _ = merge_vertices(surface)
    mf = triangle_faces(merged)
    degenerate, repeat = _bad_faces(mf)
    dup_faces = int(repeat.sum())
    good = mf[~degenerate & ~repeat]  # count edge problems once, not again for each duplicate
    _, counts, _ = _edges(good) if len(good) else (None, np.zeros(0, int), None)
    loops = boundary_loops(merged)
    small = [h for h in loops if h["radius_mm"] <= max_hole_mm]
    n_comp = connected_components(_graph(merged.n_points, good.ravel(), np.roll(good, 1, axis=1).ravel()),
                                  directed=False)[0] if len(good) else 0
    used = np.unique(good)
    report.update(
        degenerate_faces=int(degenerate.sum()), duplicate_faces=int(dup_faces),
        non_manifold_edges=int((counts > 2).sum()), boundary_edges=int((counts == 1).sum()),
        holes=len(loops), small_holes=len(small), largest_hole_radius_mm=loops[0]["radius_mm"] if loops else 0.0,
        components=int(n_comp - (merged.n_points - len(used))),
        watertight=bool(len(loops) == 0 and not (counts > 2).any() and len(good) > 0),
    )
    possible = [name for name, n in (("merge duplicate vertices", dup_vertices), ("remove degenerate faces",
                report["degenerate_faces"]), ("remove duplicate faces", dup_faces), ("fix non-manifold edges",
                report["non_manifold_edges"]), (f"fill holes up to {max_hole_mm:g} mm radius", len(small))) if n]
    report["repairs_possible"] = possible
    return report


def _graph(n: int, a: np.ndarray, b: np.ndarray) -> coo_matrix:
    """Sparse n x n graph with edges a[i] - b[i]."""
    return coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))


def repair_surface(surface: pv.PolyData, *, max_hole_mm: float = 5.0) -> tuple[pv.PolyData, dict]:
    """Merge vertices, drop degenerate/duplicate faces, fix non-manifold edges, fill small holes.

    Parameters
    ----------
    surface : pyvista.PolyData
        Triangle surface (mm).
    max_hole_mm : float
        Fill holes whose radius (see :func:`boundary_loops`) is at most this;
        larger openings (the border of a partial scan) stay open. 0 = no filling.

    Returns
    -------
    (pyvista.PolyData, dict)
        The repaired surface (point data kept) and a report with the counts
        ``before`` and ``after`` (:func:`inspect_surface`) and what was done.

    Raises
    ------
    MeshError
        If the surface has no faces.
    """
    if surface.n_faces == 0:
        raise MeshError("cannot repair a point cloud (no faces)")
    before = inspect_surface(surface, max_hole_mm)
    out, merged = merge_vertices(surface)
    faces = triangle_faces(out)
    degenerate, repeat = _bad_faces(faces)
    done = {"merged_vertices": merged, "degenerate_faces_removed": int(degenerate.sum()),
            "duplicate_faces_removed": int(repeat.sum())}
    faces = faces[~degenerate & ~repeat]
    faces, removed = _drop_non_manifold(faces)
    done["non_manifold_faces_removed"] = removed
    used = np.unique(faces)
    remap = np.full(out.n_points, -1, np.int64)
    remap[used] = np.arange(len(used))
    done["unused_vertices_removed"] = int(out.n_points - len(used))
    out = _rebuild(out, used, remap[faces])
    holes_before = len(boundary_loops(out))
    if max_hole_mm > 0 and holes_before:
        out = _fill_holes(out, max_hole_mm)
    after = inspect_surface(out, max_hole_mm)
    done["holes_filled"] = int(holes_before - after["holes"])
    return out, {"before": before, "done": done, "after": after}


def _drop_non_manifold(faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Remove faces beyond the first two on every edge shared by more than two faces."""
    removed = 0
    while len(faces):
        _, counts, side_edge = _edges(faces)
        if not (counts > 2).any():
            break
        order = np.argsort(side_edge.ravel(), kind="stable")
        edge_sorted = side_edge.ravel()[order]
        starts = np.searchsorted(edge_sorted, edge_sorted)
        rank = np.arange(len(order)) - starts  # 0, 1, 2... within each edge, in face order
        drop = np.zeros(len(faces), bool)
        drop[order[rank >= 2] // 3] = True
        removed += int(drop.sum())
        faces = faces[~drop]
    return faces, removed


def _fill_holes(surface: pv.PolyData, max_hole_mm: float) -> pv.PolyData:
    """Close holes up to a radius with VTK's hole filler; the patches have no new vertices."""
    fill = vtk.vtkFillHolesFilter()
    fill.SetInputData(surface)
    fill.SetHoleSize(float(max_hole_mm))
    fill.Update()
    # The filler does not always wind its patches like their neighbours: make them consistent.
    out = pv.wrap(fill.GetOutput()).triangulate().compute_normals(
        cell_normals=False, split_vertices=False, consistent_normals=True, auto_orient_normals=False)
    out.point_data.pop("Normals", None)
    return out


def decimate_surface(surface: pv.PolyData, target_faces: int, *, progress: Optional[ProgressFn] = None
                     ) -> pv.PolyData:
    """Quadric decimation to about ``target_faces`` triangles, interpolating colours.

    Raises
    ------
    InputError
        If ``target_faces`` is not positive.
    """
    if target_faces <= 0:
        raise InputError(f"--max-faces {target_faces}: must be positive")
    progress = progress or no_progress
    tri = surface if surface.is_all_triangles else surface.triangulate()
    if tri.n_cells <= target_faces:
        return tri
    progress(0.1, f"Decimating {tri.n_cells} -> {target_faces} triangles")
    dec = vtk.vtkQuadricDecimation()
    dec.SetInputData(tri)
    dec.SetTargetReduction(1.0 - target_faces / tri.n_cells)
    dec.VolumePreservationOn()
    dec.MapPointDataOn()  # interpolates RGB/UV onto the kept vertices
    dec.Update()
    out = pv.wrap(dec.GetOutput())
    if "RGB" in out.point_data:
        out.point_data["RGB"] = np.clip(np.rint(np.asarray(out.point_data["RGB"], float)), 0, 255).astype(np.uint8)
    progress(1.0, f"{out.n_cells} triangles")
    return out
