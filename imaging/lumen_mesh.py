"""Tetrahedral meshes of a vessel lumen with tagged wall, inlet and outlets (gmsh).

Facet tags follow ``imaging.ports``: wall 1, inlet 2, outlets 3, 4, ...;
symmetry planes of quarter models carry ``SYMMETRY_TAG``. Coordinates are
millimetres. Element size follows the local lumen radius (``radius_fraction``
times the radius) and shrinks towards the wall (``wall_fraction`` of that
size at the wall), so thin branches and boundary layers get enough elements.

Two ways in:

* ``mesh_lumen_surface``: a lumen surface (open at its ports or capped) plus
  the ``Port`` list, e.g. from ``imaging.vessels``.
* analytic, axisymmetric shapes in ``imaging.lumen_shapes`` (pipe, stenosed
  tube, FDA nozzle) used for verification.
"""
from __future__ import annotations

import logging
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from imaging.errors import InputError, MeshError
from imaging.ports import WALL_TAG, Port

log = logging.getLogger(__name__)

SYMMETRY_TAG = 90
#: gmsh element type ids
_TET = {4: 1, 11: 2}
_TRI = {2: 1, 9: 2}


@dataclass
class LumenMesh:
    """Tet mesh of a lumen in gmsh node order (mm), with tagged boundary facets.

    Attributes
    ----------
    points : ndarray (n, 3)
        Node coordinates, mm.
    cells : ndarray (m, 4) or (m, 10)
        Tetrahedra (gmsh node order; 10 nodes when ``order == 2``).
    facets : ndarray (k, 3) or (k, 6)
        Boundary triangles carrying a tag.
    facet_tags : ndarray (k,)
        Wall 1, inlet 2, outlets 3.., symmetry ``SYMMETRY_TAG``.
    ports : list of Port
        Inlet and outlets, their ``tag`` matches ``facet_tags``.
    """

    points: np.ndarray
    cells: np.ndarray
    facets: np.ndarray
    facet_tags: np.ndarray
    ports: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def order(self) -> int:
        return 2 if self.cells.shape[1] == 10 else 1

    @property
    def n_tets(self) -> int:
        return int(len(self.cells))

    @property
    def has_symmetry(self) -> bool:
        return bool(np.any(self.facet_tags == SYMMETRY_TAG))

    def to_pyvista(self):
        """Linear ``pv.UnstructuredGrid`` of the tets (mm)."""
        import pyvista as pv

        used, tets = np.unique(self.cells[:, :4], return_inverse=True)  # vertices only (drop P2 mid-edge nodes)
        tets = tets.reshape(-1, 4)
        cells = np.hstack([np.full((len(tets), 1), 4), tets]).ravel()
        return pv.UnstructuredGrid(cells, np.full(len(tets), pv.CellType.TETRA, dtype=np.uint8), self.points[used])

    def boundary(self, tag: int):
        """Triangles (linear) of one facet tag as ``pv.PolyData`` (mm)."""
        import pyvista as pv

        used, tri = np.unique(self.facets[self.facet_tags == tag][:, :3], return_inverse=True)
        tri = tri.reshape(-1, 3)
        return pv.PolyData(self.points[used], np.hstack([np.full((len(tri), 1), 3), tri]).ravel())

    def save(self, path: Path) -> None:
        """Write to ``.npz`` (used to hand the mesh to a worker process)."""
        ports = np.array([repr(p.to_json()) for p in self.ports])
        np.savez(path, points=self.points, cells=self.cells, facets=self.facets,
                 facet_tags=self.facet_tags, ports=ports, info=np.array(repr(self.info)))

    @classmethod
    def load(cls, path: Path) -> "LumenMesh":
        import ast

        d = np.load(path, allow_pickle=False)
        ports = [Port.from_json(ast.literal_eval(s)) for s in d["ports"]]
        return cls(d["points"], d["cells"], d["facets"], d["facet_tags"], ports, ast.literal_eval(str(d["info"])))


SizeFn = Callable[[np.ndarray], np.ndarray]


def extract_gmsh_mesh(gmsh, ports: list, info: Optional[dict] = None) -> LumenMesh:
    """LumenMesh from the current gmsh model (physical surfaces = tags, one physical volume)."""
    node_tags, coords, _ = gmsh.model.mesh.getNodes()
    coords = coords.reshape(-1, 3)
    index = np.zeros(int(node_tags.max()) + 1, dtype=np.int64)
    index[node_tags.astype(np.int64)] = np.arange(len(node_tags))
    cells = []
    for _, vtag in gmsh.model.getEntities(3):
        types, _, nodes = gmsh.model.mesh.getElements(3, vtag)
        for t, n in zip(types, nodes):
            if t not in _TET:
                raise MeshError(f"gmsh produced element type {t}, expected tetrahedra")
            cells.append(n.reshape(-1, 4 if _TET[t] == 1 else 10))
    if not cells:
        raise MeshError("gmsh produced no tetrahedra (is the lumen surface closed and valid?)")
    facets, ftags = [], []
    for dim, ptag in gmsh.model.getPhysicalGroups(2):
        for ent in gmsh.model.getEntitiesForPhysicalGroup(dim, ptag):
            types, _, nodes = gmsh.model.mesh.getElements(2, ent)
            for t, n in zip(types, nodes):
                f = n.reshape(-1, 3 if _TRI[t] == 1 else 6)
                facets.append(f)
                ftags.append(np.full(len(f), ptag, dtype=np.int32))
    cells = index[np.vstack(cells).astype(np.int64)]
    facets = index[np.vstack(facets).astype(np.int64)]
    used = np.unique(cells)  # drop nodes of surfaces outside the volume
    remap = -np.ones(len(coords), dtype=np.int64)
    remap[used] = np.arange(len(used))
    if np.any(remap[facets] < 0):
        raise MeshError("tagged boundary facets are not on the volume mesh")
    return LumenMesh(coords[used], remap[cells], remap[facets], np.concatenate(ftags), list(ports), dict(info or {}))


def size_callback(size_fn: SizeFn, h_min: float, h_max: float, bounds=None, max_points: int = 2_000_000):
    """gmsh size callback clamped to [h_min, h_max] (mm).

    With ``bounds`` (xmin, xmax, ymin, ymax, zmin, zmax) the size function is
    tabulated once on a grid (spacing about h_min, at most ``max_points``)
    and looked up at the nearest grid node: gmsh calls back hundreds of
    thousands of times and a Python size function per call is too slow.
    """
    if bounds is None:
        def cb(dim, tag, x, y, z, lc):
            h = float(size_fn(np.array([[x, y, z]]))[0])
            return float(min(max(h, h_min), h_max))

        return cb
    lo = np.array(bounds[0::2], dtype=float)
    hi = np.array(bounds[1::2], dtype=float)
    ext = np.maximum(hi - lo, 1e-9)
    n = np.clip(np.ceil(ext / h_min).astype(int) + 1, 2, None)
    while np.prod(n) > max_points:
        n = np.maximum(2, (n * 0.85).astype(int))
    axes = [np.linspace(lo[i], hi[i], n[i]) for i in range(3)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")
    table = np.clip(size_fn(np.column_stack([gx.ravel(), gy.ravel(), gz.ravel()])), h_min, h_max)
    flat = table.astype(float).tolist()
    step = (ext / (n - 1)).tolist()
    l0, l1, l2 = lo.tolist()
    n0, n1, n2 = (int(k) for k in n)

    def cb(dim, tag, x, y, z, lc):
        i = min(max(int((x - l0) / step[0] + 0.5), 0), n0 - 1)
        j = min(max(int((y - l1) / step[1] + 0.5), 0), n1 - 1)
        k = min(max(int((z - l2) / step[2] + 0.5), 0), n2 - 1)
        return flat[(i * n1 + j) * n2 + k]

    return cb


def generate_volume(gmsh, size_fn: SizeFn, h_min: float, h_max: float, order: int = 1,
                    optimize: bool = False, threads: int = 1, tabulate: bool = True) -> None:
    """Mesh the current gmsh model in 3D with the given size function (mm).

    ``tabulate`` looks the size up on a grid over the bounding box (cheap,
    compact analytic shapes); without it ``size_fn`` is evaluated at each
    point gmsh asks for, which suits thin branching lumens, whose bounding
    box a fine enough grid would not fit in ``size_callback``'s budget.
    ``optimize`` runs gmsh's Netgen optimiser on the tets.
    """
    bounds = None
    if tabulate:
        xmin, ymin, zmin, xmax, ymax, zmax = gmsh.model.getBoundingBox(-1, -1)
        bounds = (xmin, xmax, ymin, ymax, zmin, zmax)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.option.setNumber("Mesh.Algorithm3D", 10 if threads > 1 else 1)  # HXT is parallel
    gmsh.option.setNumber("General.NumThreads", threads)
    gmsh.model.mesh.setSizeCallback(size_callback(size_fn, h_min, h_max, bounds))
    gmsh.model.mesh.generate(3)
    if optimize:
        gmsh.model.mesh.optimize("Netgen")
    if order == 2:
        gmsh.model.mesh.setOrder(2)


def radius_size_fn(radius_at: SizeFn, wall_distance_at: Optional[SizeFn], radius_fraction: float,
                   wall_fraction: float) -> SizeFn:
    """Element size (mm) = fraction x local radius, smaller (wall_fraction) at the wall.

    The size grows linearly from the wall value to the core value over half the
    local radius: a simple boundary-layer grading for Taylor-Hood elements.
    """

    def fn(x):
        r = radius_at(x)
        core = radius_fraction * r
        if wall_distance_at is None:
            return core
        d = wall_distance_at(x)
        t = np.clip(d / (0.5 * np.maximum(r, 1e-9)), 0.0, 1.0)
        return core * (wall_fraction + (1.0 - wall_fraction) * t)

    return fn


# ----------------------------------------------------------------------------- surfaces


def tag_surface_triangles(surface, ports: list[Port]) -> tuple:
    """Close a lumen surface at its ports and tag each triangle.

    Parameters
    ----------
    surface : pv.PolyData
        Triangulated lumen surface (mm), open at the ports or capped.
    ports : list of Port
        Inlet/outlets; open rims are capped with a fan to the rim centroid.

    Returns
    -------
    points (n, 3), triangles (m, 3), tags (m,)
    """
    import pyvista as pv

    if not isinstance(surface, pv.PolyData) or surface.n_cells == 0:
        raise InputError("lumen surface: expected a non-empty pyvista PolyData")
    if not ports:
        raise InputError("ports: need at least an inlet and one outlet")
    surf = surface.triangulate().clean()
    pts = np.asarray(surf.points, dtype=float)
    tri = surf.faces.reshape(-1, 4)[:, 1:].copy()
    tags = np.full(len(tri), WALL_TAG, dtype=np.int32)
    # Capped surface: triangles on a port plane, inside its rim, facing along its normal.
    cent = pts[tri].mean(axis=1)
    nrm = np.cross(pts[tri[:, 1]] - pts[tri[:, 0]], pts[tri[:, 2]] - pts[tri[:, 0]])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-300)
    for p in ports:
        off = cent - p.center
        plane = np.abs(off @ p.normal)
        radial = np.linalg.norm(off - np.outer(off @ p.normal, p.normal), axis=1)
        on = (plane < 0.05 * p.radius_mm + 1e-6) & (radial < 1.3 * p.radius_mm) & (np.abs(nrm @ p.normal) > 0.95)
        tags[on] = p.tag
    # Open surface: fan-cap each boundary loop with the tag of the nearest port.
    edges = surf.extract_feature_edges(boundary_edges=True, feature_edges=False, manifold_edges=False,
                                       non_manifold_edges=False)
    if edges.n_cells:
        loops = edges.connectivity()
        new_pts, new_tri, new_tags = [pts], [tri], [tags]
        n = len(pts)
        for rid in np.unique(loops["RegionId"]):
            loop = loops.extract_cells(np.flatnonzero(loops.cell_data["RegionId"] == rid))
            seg = loop.cells.reshape(-1, 3)[:, 1:] if hasattr(loop, "cells") else None
            lp = np.asarray(loop.points)
            ids = _nearest_ids(pts, lp)
            segs = ids[seg]
            c = lp.mean(axis=0)
            port = min(ports, key=lambda q: np.linalg.norm(q.center - c))
            if np.linalg.norm(port.center - c) > 2.0 * port.radius_mm + 1.0:
                raise InputError(f"lumen surface has an open rim at {np.round(c, 1).tolist()} mm that matches no port")
            new_pts.append(c[None])
            fan = np.column_stack([segs, np.full(len(segs), n)])
            # Orient the fan so its normal points out of the lumen (along the port normal).
            f_n = np.cross(pts[fan[:, 1]] - pts[fan[:, 0]], c - pts[fan[:, 0]])
            flip = f_n @ port.normal < 0
            fan[flip] = fan[flip][:, [1, 0, 2]]
            new_tri.append(fan)
            new_tags.append(np.full(len(fan), port.tag, dtype=np.int32))
            n += 1
        pts, tri, tags = np.vstack(new_pts), np.vstack(new_tri), np.concatenate(new_tags)
    missing = [p.name for p in ports if not np.any(tags == p.tag)]
    if missing:
        raise InputError(f"ports {missing} match no open rim or cap of the lumen surface")
    return pts, tri, tags


def _nearest_ids(points: np.ndarray, query: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(points).query(query)[1]


def local_radius_fn(points: np.ndarray, tri: np.ndarray, tags: np.ndarray, centerlines=None) -> tuple:
    """(radius_at, wall_distance_at) size helpers for a closed, tagged surface (mm)."""
    from scipy.spatial import cKDTree

    wall = np.unique(tri[tags == WALL_TAG])
    wall_tree = cKDTree(points[wall])
    if centerlines is not None and "Radius" in centerlines.point_data:
        cl_tree = cKDTree(np.asarray(centerlines.points))
        cl_r = np.asarray(centerlines.point_data["Radius"], dtype=float)

        def radius_at(x):
            return cl_r[cl_tree.query(x)[1]]
    else:
        # Shape-diameter estimate: half the distance across the lumen along the inward normal.
        r_wall = _shape_radius(points, tri, wall)

        def radius_at(x):
            return r_wall[wall_tree.query(x)[1]]

    def wall_distance_at(x):
        return wall_tree.query(x)[0]

    return radius_at, wall_distance_at


def _shape_radius(points: np.ndarray, tri: np.ndarray, wall_ids: np.ndarray, n_samples: int = 1500) -> np.ndarray:
    """Local radius at wall nodes: ray cast along the inward normal to the opposite wall."""
    import pyvista as pv
    import vtk

    faces = np.hstack([np.full((len(tri), 1), 3), tri]).ravel()
    surf = pv.PolyData(points, faces).compute_normals(auto_orient_normals=True, cell_normals=False)
    normals = np.asarray(surf.point_data["Normals"])
    loc = vtk.vtkOBBTree()
    loc.SetDataSet(surf)
    loc.BuildLocator()
    rng = np.random.default_rng(0)
    sample = wall_ids if len(wall_ids) <= n_samples else rng.choice(wall_ids, n_samples, replace=False)
    span = float(np.linalg.norm(np.ptp(points, axis=0)))
    radii = np.empty(len(sample))
    hits = vtk.vtkPoints()
    for k, i in enumerate(sample):
        p0 = points[i] - 1e-4 * span * normals[i]
        loc.IntersectWithLine(p0, points[i] - span * normals[i], hits, None)
        radii[k] = 0.5 * np.linalg.norm(np.array(hits.GetPoint(0)) - points[i]) if hits.GetNumberOfPoints() else np.nan
    good = np.isfinite(radii) & (radii > 0)
    if not np.any(good):
        raise MeshError("could not estimate the local lumen radius (are the surface normals consistent?)")
    radii[~good] = np.median(radii[good])
    return radii[_nearest_ids(points[sample], points[wall_ids])]


def mesh_lumen_surface(
    surface,
    ports: list[Port],
    *,
    radius_fraction: float = 0.35,
    wall_fraction: float = 0.6,
    h_min_mm: Optional[float] = None,
    h_max_mm: Optional[float] = None,
    mesh_size_mm: Optional[float] = None,
    centerlines=None,
    order: int = 1,
    optimize: bool = True,
    progress=None,
    cancelled=None,
) -> LumenMesh:
    """Tet mesh of a lumen surface with tagged wall (1), inlet (2) and outlets (3..).

    Parameters
    ----------
    surface : pv.PolyData
        Lumen surface in mm, open at the ports or capped.
    ports : list of Port
        From ``imaging.vessels``; their ``tag`` values become facet tags.
    radius_fraction : float
        Core element size as a fraction of the local radius.
    wall_fraction : float
        Element size at the wall relative to the core size (boundary layer).
    h_min_mm, h_max_mm : float, optional
        Clamp of the element size (mm); default from the port radii.
    mesh_size_mm : float, optional
        Uniform size instead of radius-based sizing.
    centerlines : pv.PolyData, optional
        Polylines with point array ``Radius`` (mm) for the local radius.
    order : int
        Geometry order of the tets (1 or 2).
    optimize : bool
        Run gmsh's Netgen optimiser: it removes the near-flat tets spanning
        four surface nodes that Delaunay leaves where the kept surface is
        coarse (on the real coronary, min gamma 1e-5 -> 0.01); about twice
        the meshing time.

    Returns
    -------
    LumenMesh

    Raises
    ------
    InputError
        Surface or ports unusable; MeshError if gmsh fails.
    """
    import gmsh

    progress = progress or (lambda f, m: None)
    pts, tri, tags = tag_surface_triangles(surface, ports)
    if cancelled is not None and cancelled():
        raise CancelledError("cancelled by user")
    progress(0.1, "sizing by local radius")
    r_ports = np.array([p.radius_mm for p in ports])
    if mesh_size_mm is not None:
        if mesh_size_mm <= 0:
            raise InputError(f"mesh_size_mm must be positive, got {mesh_size_mm}")
        size_fn: SizeFn = lambda x: np.full(len(x), float(mesh_size_mm))  # noqa: E731
        h_min, h_max = float(mesh_size_mm), float(mesh_size_mm)
    else:
        radius_at, dist_at = local_radius_fn(pts, tri, tags, centerlines)
        size_fn = radius_size_fn(radius_at, dist_at, radius_fraction, wall_fraction)
        h_min = h_min_mm or 0.5 * radius_fraction * wall_fraction * r_ports.min()
        h_max = h_max_mm or radius_fraction * r_ports.max() * 2.0
    was_init = gmsh.isInitialized()
    if not was_init:
        gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("lumen")
        _add_tagged_surface(gmsh, pts, tri, tags)
        if cancelled is not None and cancelled():
            raise CancelledError("cancelled by user")
        progress(0.3, "meshing the lumen volume")
        # Delaunay, not HXT: HXT (gmsh 4.15) corrupts the heap when its boundary recovery has
        # to insert Steiner points, as on the real coronary.
        generate_volume(gmsh, size_fn, h_min, h_max, order=order, optimize=optimize, tabulate=False)
        mesh = extract_gmsh_mesh(gmsh, ports, {"source": "surface", "h_min_mm": h_min, "h_max_mm": h_max})
    except MeshError:
        raise
    except Exception as exc:  # gmsh raises bare Exceptions
        raise MeshError(f"gmsh could not mesh the lumen surface: {exc}") from exc
    finally:
        gmsh.model.remove() if gmsh.isInitialized() else None
        if not was_init:
            gmsh.finalize()
    progress(1.0, f"{mesh.n_tets} tetrahedra")
    log.info("lumen mesh: %d tets, %d nodes", mesh.n_tets, len(mesh.points))
    return mesh


def _add_tagged_surface(gmsh, pts, tri, tags) -> None:
    """One discrete surface per tag, kept as given, bounding one volume."""
    from scipy.spatial import cKDTree

    node_ids = np.arange(1, len(pts) + 1)
    for k, tag in enumerate(np.unique(tags)):
        s = gmsh.model.addDiscreteEntity(2)
        if k == 0:
            gmsh.model.mesh.addNodes(2, s, node_ids, pts.ravel())
        gmsh.model.mesh.addElementsByType(s, 2, [], (tri[tags == tag] + 1).ravel())
    # Topology only, no createGeometry: gmsh remeshes every discrete surface it can parametrise,
    # with the size function (3x finer than the given triangles at the wall); on the real coronary
    # that 2D remesh of the wall stalled for minutes in edge recovery. Without a parametrisation
    # the triangles are kept and only the volume is meshed.
    gmsh.model.mesh.createTopology()
    ents = [t for _, t in gmsh.model.getEntities(2)]
    loop = gmsh.model.geo.addSurfaceLoop(ents)
    gmsh.model.geo.addVolume([loop])
    gmsh.model.geo.synchronize()
    # createTopology may split or renumber the patches: tag each by its triangles (the input ones).
    tree = cKDTree(pts[tri].mean(axis=1))
    by_tag: dict[int, list[int]] = {}
    for e in ents:
        _, _, nodes = gmsh.model.mesh.getElements(2, e)
        if not len(nodes) or not len(nodes[0]):
            continue
        cent = pts[nodes[0].astype(np.int64).reshape(-1, 3) - 1].mean(axis=1)  # node tag = index + 1
        votes = tags[tree.query(cent)[1]]
        by_tag.setdefault(int(np.bincount(votes).argmax()), []).append(e)
    for tag, ents_t in by_tag.items():
        gmsh.model.addPhysicalGroup(2, ents_t, tag)
    gmsh.model.addPhysicalGroup(3, [t for _, t in gmsh.model.getEntities(3)], 1)
