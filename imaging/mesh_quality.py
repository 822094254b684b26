"""Quality report of a triangle surface: shape, topology, closedness, self-intersections.

Conventions: the aspect ratio of a triangle is ``l_max * (a + b + c) /
(4 sqrt(3) area)`` (1 for an equilateral triangle, growing without bound as
it degenerates; VTK's ``vtkMeshQuality`` "aspect ratio"); angles are in
degrees, lengths in mm (the surface's units). Only vertices used by a
triangle count for the Euler characteristic ``V - E + F`` and the connected
components; the genus ``(2 C - chi) / 2`` is reported for closed, manifold,
consistently oriented surfaces only.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import pyvista as pv
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from imaging.errors import MeshError

_EPS_AREA = 1e-12  # relative to the squared mean edge: below it a triangle is degenerate
_PAIR_CHUNK = 1 << 20


def triangles(surface: pv.PolyData) -> tuple[np.ndarray, np.ndarray]:
    """Points (n, 3) float64 and triangles (m, 3) int64 of a surface (triangulated if needed).

    Raises
    ------
    MeshError
        If the surface has no triangle.
    """
    tri = surface if surface.is_all_triangles else surface.triangulate()
    if tri.n_cells == 0 or tri.faces.size == 0:
        raise MeshError("mesh quality: the surface has no triangle")
    faces = np.asarray(tri.faces).reshape(-1, 4)[:, 1:].astype(np.int64)
    return np.asarray(tri.points, dtype=np.float64), faces


def _stats(values: np.ndarray, percentile: Optional[float] = None) -> dict:
    if values.size == 0:
        return {"min": None, "mean": None, "max": None}
    out = {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}
    if percentile is not None:
        out[f"p{percentile:g}"] = float(np.percentile(values, percentile))
    return out


def _edges(faces: np.ndarray, n_points: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Unique undirected edges (k, 2), how many triangles use each, duplicated directed edges."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys_directed = directed[:, 0] * n_points + directed[:, 1]
    _u, dcount = np.unique(keys_directed, return_counts=True)
    und = np.sort(directed, axis=1)
    keys, counts = np.unique(und[:, 0] * n_points + und[:, 1], return_counts=True)
    edges = np.column_stack([keys // n_points, keys % n_points])
    return edges, counts, int(np.count_nonzero(dcount > 1))


def mesh_quality(surface: pv.PolyData, *, self_intersections: bool = False,
                 max_pairs: int = 50_000_000) -> dict:
    """Shape, topology and closedness statistics of a triangle surface.

    Parameters
    ----------
    surface : pyvista.PolyData
        Surface (polygons are triangulated first), mm.
    self_intersections : bool
        Also count pairs of non-adjacent triangles that cross each other
        (grid-hashed candidates, exact segment/triangle tests). Costs about
        as much as the rest of the report on large meshes.
    max_pairs : int
        Give up the self-intersection count (report None) beyond this many
        candidate pairs.

    Returns
    -------
    dict
        ``n_points``, ``n_triangles``, ``n_edges``, ``area_mm2``,
        ``aspect_ratio`` and ``min_angle_deg`` (min/mean/max and a
        percentile), ``min_angle_below_10deg`` (fraction of triangles),
        ``edge_length_mm``, ``degenerate_triangles``, ``components``,
        ``euler_characteristic``, ``genus`` (None unless closed manifold),
        ``boundary_edges``, ``non_manifold_edges``, ``watertight``,
        ``consistently_oriented``, ``self_intersections`` (pairs, or None),
        ``seconds``.

    Raises
    ------
    MeshError
        If the surface has no triangle.
    """
    t0 = time.perf_counter()
    points, faces = triangles(surface)
    used = np.unique(faces)
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    la, lb, lc = (np.linalg.norm(v, axis=1) for v in (c - b, a - c, b - a))  # opposite a, b, c
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    edges, counts, dup_directed = _edges(faces, len(points))
    edge_len = np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1)
    degenerate = area <= _EPS_AREA * max(float(edge_len.mean()) ** 2, 1e-300)
    ok = ~degenerate
    lmax = np.maximum(np.maximum(la, lb), lc)
    aspect = lmax[ok] * (la + lb + lc)[ok] / (4.0 * np.sqrt(3.0) * area[ok])

    def angle(u, v):
        return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v), axis=1), np.einsum("ij,ij->i", u, v)))

    min_angle = np.minimum(np.minimum(angle(b - a, c - a), angle(a - b, c - b)), angle(a - c, b - c))[ok]
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(points),) * 2)
    _n, comp = connected_components(graph, directed=False)
    n_components = int(np.unique(comp[used]).size)
    boundary = int(np.count_nonzero(counts == 1))
    nonmanifold = int(np.count_nonzero(counts > 2))
    chi = int(used.size - len(edges) + len(faces))
    closed = boundary == 0 and nonmanifold == 0
    oriented = dup_directed == 0
    genus = (2 * n_components - chi) // 2 if closed and oriented else None
    report = {
        "n_points": int(used.size),
        "n_triangles": int(len(faces)),
        "n_edges": int(len(edges)),
        "area_mm2": float(area.sum()),
        "aspect_ratio": _stats(aspect, 95),
        "min_angle_deg": _stats(min_angle, 5),
        "min_angle_below_10deg": float(np.mean(min_angle < 10.0)) if min_angle.size else None,
        "edge_length_mm": dict(_stats(edge_len), std=float(edge_len.std())),
        "degenerate_triangles": int(degenerate.sum()),
        "components": n_components,
        "euler_characteristic": chi,
        "genus": genus,
        "boundary_edges": boundary,
        "non_manifold_edges": nonmanifold,
        "watertight": bool(closed),
        "consistently_oriented": bool(oriented),
        "self_intersections": count_self_intersections(points, faces, max_pairs) if self_intersections else None,
    }
    report["seconds"] = round(time.perf_counter() - t0, 4)
    return report


# -- self-intersections -----------------------------------------------------------------
def _candidate_pairs(points: np.ndarray, faces: np.ndarray, max_pairs: int,
                     cell_factor: float = 1.0) -> Optional[np.ndarray]:
    """Pairs (i < j) of non-adjacent triangles whose bounding boxes overlap (uniform grid hashing)."""
    tri = points[faces]
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    faces32 = faces.astype(np.int32)
    lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)  # halves the memory traffic of the filters
    cell = max(float(np.median((hi - lo).max(axis=1))) * cell_factor, 1e-9)
    origin = lo.min(axis=0)
    clo = np.floor((lo - origin) / cell).astype(np.int64)
    chi = np.floor((hi - origin) / cell).astype(np.int64)
    span = chi - clo + 1
    n_cells = span.prod(axis=1)
    if n_cells.sum() > max_pairs:
        return None
    owner = np.repeat(np.arange(len(faces)), n_cells)
    local = np.arange(owner.size) - np.repeat(np.cumsum(n_cells) - n_cells, n_cells)
    sy, sz = span[owner, 1], span[owner, 2]
    idx = clo[owner] + np.column_stack([local // (sy * sz), (local // sz) % sy, local % sz])
    dims = chi.max(axis=0) + 1
    key = (idx[:, 0] * dims[1] + idx[:, 1]) * dims[2] + idx[:, 2]
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    # Entries after each one in the same cell: pair i with i + d for d = 1, 2, ...
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], key.size]
    remaining = np.repeat(ends, ends - starts) - np.arange(key.size) - 1
    active = np.flatnonzero(remaining > 0)
    pairs, total, d = [], 0, 1
    while active.size:
        i, j = owner[active], owner[active + d]
        keep = np.all((lo32[i] <= hi32[j]) & (lo32[j] <= hi32[i]), axis=1)
        i, j = i[keep], j[keep]
        keep = ~(faces32[i][:, :, None] == faces32[j][:, None, :]).any(axis=(1, 2))
        pairs.append(np.sort(np.column_stack([i[keep], j[keep]]), axis=1))
        total += int(keep.sum())
        if total > max_pairs:
            return None
        d += 1
        active = active[remaining[active] >= d]
    p = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    p = np.unique(p[:, 0] * len(faces) + p[:, 1])
    return np.column_stack([p // len(faces), p % len(faces)])


def _segments_cross(p0: np.ndarray, p1: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Whether segments p0-p1 cross triangles abc (Moller-Trumbore, strictly inside)."""
    eps = 1e-12
    d = p1 - p0
    e1, e2 = b - a, c - a
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    valid = np.abs(det) > eps * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1) * np.linalg.norm(d, axis=1)
    inv = np.where(valid, 1.0 / np.where(valid, det, 1.0), 0.0)
    s = p0 - a
    u = np.einsum("ij,ij->i", s, h) * inv
    q = np.cross(s, e1)
    v = np.einsum("ij,ij->i", d, q) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    tol = 1e-9
    return valid & (u > tol) & (v > tol) & (u + v < 1 - tol) & (t > tol) & (t < 1 - tol)


def count_self_intersections(points: np.ndarray, faces: np.ndarray, max_pairs: int = 50_000_000) -> Optional[int]:
    """Number of pairs of non-adjacent triangles that cross each other (None if too many candidates).

    Coplanar overlaps and contacts at a single point or along an edge are
    not counted (they are not crossings of the kind smoothing produces).
    """
    pairs = _candidate_pairs(points, faces, max_pairs)
    if pairs is None:
        return None
    hits = 0
    for s in range(0, len(pairs), _PAIR_CHUNK):
        p = pairs[s:s + _PAIR_CHUNK]
        t1, t2 = points[faces[p[:, 0]]], points[faces[p[:, 1]]]
        crossed = np.zeros(len(p), dtype=bool)
        for x, y in ((t1, t2), (t2, t1)):
            for i, j in ((0, 1), (1, 2), (2, 0)):
                crossed |= _segments_cross(x[:, i], x[:, j], y[:, 0], y[:, 1], y[:, 2])
        hits += int(crossed.sum())
    return hits
